package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/internal/maildrop"
	"postern/internal/queue"
)

func spool(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Mkdir(filepath.Join(d, queue.Maildrop), 0o1730); err != nil {
		t.Fatal(err)
	}
	return d
}

func code(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err == nil {
		return 0
	}
	return -1
}

func TestSubmit(t *testing.T) {
	sp := spool(t)
	o := &options{uid: os.Getuid(), spool: sp, maxSize: 1000, stdin: strings.NewReader("Subject: x\n\nhello\n"),
		recipients: []string{"bob@example.org", "carol"}, sender: "me@example.org", senderSet: true, notify: "failure,delay", ret: "hdrs"}
	if err := submit(o); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(sp, queue.Maildrop))
	if len(ents) != 1 || !queue.ValidID(ents[0].Name()) {
		t.Fatalf("maildrop holds %v", ents)
	}
	p := filepath.Join(sp, queue.Maildrop, ents[0].Name())
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != maildrop.ReadyMode {
		t.Errorf("mode %v", fi.Mode())
	}
	f, _ := os.Open(p)
	defer f.Close()
	br := bufio.NewReader(f)
	env, _, err := maildrop.Read(br)
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "me@example.org" || !env.SenderSet || env.UID != os.Getuid() || env.Notify != "FAILURE,DELAY" || env.Ret != "HDRS" || len(env.Recipients) != 2 {
		t.Errorf("envelope %+v", env)
	}
	msg, _ := io.ReadAll(br)
	if string(msg) != "Subject: x\n\nhello\n" {
		t.Errorf("message %q", msg)
	}
}

func TestSubmitRefusals(t *testing.T) {
	sp := spool(t)
	base := func() *options {
		return &options{uid: os.Getuid(), spool: sp, maxSize: 10, stdin: strings.NewReader("short"), recipients: []string{"bob"}, sender: "a", senderSet: true}
	}
	cases := []struct {
		mod  func(*options)
		code int
	}{
		{func(o *options) { o.stdin = strings.NewReader(strings.Repeat("x", 11)) }, exDataErr},
		{func(o *options) { o.recipients = nil }, exUsage},
		{func(o *options) { o.recipients = []string{"a b@c"} }, exUsage},
		{func(o *options) { o.recipients = []string{"x\n@y"} }, exUsage},
		{func(o *options) { o.sender = "bad@@x" }, exUsage},
		{func(o *options) { o.notify = "sometimes" }, exUsage},
		{func(o *options) { o.notify = "never,success" }, exUsage},
		{func(o *options) { o.ret = "all" }, exUsage},
		{func(o *options) { o.uid = 1<<31 - 5; o.senderSet = false }, exNoUser},
		{func(o *options) { o.spool = filepath.Join(sp, "nonexistent") }, exTempFail},
	}
	for i, c := range cases {
		o := base()
		c.mod(o)
		if got := code(submit(o)); got != c.code {
			t.Errorf("case %d: exit %d, want %d", i, got, c.code)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(sp, queue.Maildrop))
	if len(ents) != 0 {
		t.Errorf("refused submissions left %d files", len(ents))
	}
	// Exactly the limit (10 octets) is fine; the null sender; -t with a
	// recipient in the header.
	o := base()
	o.stdin, o.recipients, o.extract, o.sender = strings.NewReader("To: b\n\nhi!"), nil, true, ""
	if err := submit(o); err != nil {
		t.Fatal(err)
	}
}

func TestParseNotify(t *testing.T) {
	for in, want := range map[string]string{"never": "NEVER", "success,failure": "SUCCESS,FAILURE", "delay, failure,delay": "DELAY,FAILURE"} {
		if got, err := parseNotify(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
}

func TestConfigDirOnlyForRoot(t *testing.T) {
	if os.Getuid() == 0 {
		// Root may name any directory: the error is the missing config.
		if c := code(run([]string{"-c", "/nonexistent-postern", "bob"}, strings.NewReader(""), io.Discard)); c != exConfig {
			t.Errorf("root -c: exit %d", c)
		}
		return
	}
	if c := code(run([]string{"-c", "/nonexistent-postern", "bob"}, strings.NewReader(""), io.Discard)); c != exNoPerm {
		t.Errorf("user -c: exit %d", c)
	}
}

func TestExtractNeedsHeaderRecipients(t *testing.T) {
	sp := spool(t)
	for _, c := range []struct {
		msg  string
		code int
	}{
		{"Subject: nobody\n\nTo: body@example.org\n", exDataErr},
		{"To: <<bad\nCc: a b c\n\nx\n", exDataErr},
		{"To: undisclosed-recipients:;\n\nx\n", exDataErr},
		{"To: bob\n\nx\n", 0},
		{"Subject: x\nBcc: Carol <carol@example.org>\n\nx\n", 0},
		{"Resent-To: dave@example.org\n\nx\n", 0},
	} {
		o := &options{uid: os.Getuid(), spool: sp, maxSize: 1000, stdin: strings.NewReader(c.msg), extract: true, sender: "a", senderSet: true}
		err := submit(o)
		if got := code(err); got != c.code {
			t.Errorf("%q: exit %d (%v), want %d", c.msg, got, err, c.code)
		}
		if c.code == exDataErr && (err == nil || !strings.Contains(err.Error(), "no recipient addresses found in message header")) {
			t.Errorf("%q: error %v", c.msg, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(sp, queue.Maildrop))
	if len(ents) != 3 {
		t.Errorf("maildrop holds %d files, want 3", len(ents))
	}
	// Recipients given as arguments do not need the header.
	o := &options{uid: os.Getuid(), spool: sp, maxSize: 1000, stdin: strings.NewReader("Subject: x\n\nx\n"), extract: true, recipients: []string{"bob"}, sender: "a", senderSet: true}
	if err := submit(o); err != nil {
		t.Error(err)
	}
}

// TestSignalHelper is not a test: TestSignals runs the test binary with
// POSTERN_DROP_SIGNAL set to make it a postern-drop that gets SIGTERM
// before or after committing its file (the handler exits the process).
func TestSignalHelper(t *testing.T) {
	when, sp := os.Getenv("POSTERN_DROP_SIGNAL"), os.Getenv("POSTERN_DROP_SPOOL")
	if when == "" {
		return
	}
	term := func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond) // time for the handler to act
	}
	o := &options{uid: os.Getuid(), spool: sp, maxSize: 1 << 20, recipients: []string{"bob"}, sender: "a", senderSet: true, removeOnSignals: true}
	switch when {
	case "before":
		o.stdin = io.MultiReader(strings.NewReader("Subject: x\n\n"), readerFunc(func([]byte) (int, error) {
			term()
			return 0, io.EOF
		}))
	case "after":
		o.stdin = strings.NewReader("Subject: x\n\nx\n")
		o.onCommit = term
	}
	if err := submit(o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(code(err))
	}
	os.Exit(0)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestSignals: a signal while writing removes the file and exits 75; one
// that comes once the file is being committed is ignored, so that an exit
// 75 never hides a queued message (a retry would duplicate it).
func TestSignals(t *testing.T) {
	for _, c := range []struct {
		when  string
		code  int
		files int
	}{{"before", exTempFail, 0}, {"after", 0, 1}} {
		sp := spool(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestSignalHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "POSTERN_DROP_SIGNAL="+c.when, "POSTERN_DROP_SPOOL="+sp)
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != c.code {
			t.Errorf("signal %s commit: exit %d, want %d\n%s", c.when, got, c.code, out)
		}
		ents, _ := os.ReadDir(filepath.Join(sp, queue.Maildrop))
		if len(ents) != c.files {
			t.Errorf("signal %s commit: %d files in maildrop, want %d", c.when, len(ents), c.files)
		}
		for _, e := range ents {
			if fi, err := e.Info(); err != nil || fi.Mode().Perm() != maildrop.ReadyMode {
				t.Errorf("signal %s commit: %s not complete (%v)", c.when, e.Name(), err)
			}
		}
	}
}
