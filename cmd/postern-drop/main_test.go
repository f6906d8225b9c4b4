package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	// Exactly the limit is fine; -t needs no recipients; the null sender.
	o := base()
	o.stdin, o.recipients, o.extract, o.sender = strings.NewReader(strings.Repeat("x", 10)), nil, true, ""
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
