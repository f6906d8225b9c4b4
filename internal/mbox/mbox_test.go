package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/privsep"
)

// TestMain doubles as the lock-holding helper process: with
// MBOX_TEST_HOLD=path it takes an fcntl write lock on path, says
// "locked" and holds it until its standard input closes.
func TestMain(m *testing.M) {
	if p := os.Getenv("MBOX_TEST_HOLD"); p != "" {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &unix.Flock_t{Type: unix.F_WRLCK}); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var when = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func opts() Options { return Options{UID: os.Getuid(), SpoolGID: -1, LockTimeout: 2 * time.Second} }

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\n", "a\n\n"},
		{"a", "a\n\n"},
		{"", "\n"},
		{"From here\nFrom x\n", ">From here\n>From x\n\n"},
		{">From x\n>>From y\n", ">>From x\n>>>From y\n\n"},
		{"From\nFromage\n From x\n>From\n", "From\nFromage\n From x\n>From\n\n"},
		{"x\n\nFrom a@b Mon Jan  1\n", "x\n\n>From a@b Mon Jan  1\n\n"},
	} {
		var b bytes.Buffer
		if err := Quote(&b, strings.NewReader(tc.in)); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("Quote(%q) = %q, want %q", tc.in, b.String(), tc.want)
		}
	}
}

func TestQuoteLongLine(t *testing.T) {
	long := strings.Repeat("x", 3*bufSize) + "From not at start\nFrom y\n"
	var b bytes.Buffer
	if err := Quote(&b, strings.NewReader(long)); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("x", 3*bufSize) + "From not at start\n>From y\n\n"
	if b.String() != want {
		t.Errorf("long line quoted wrongly")
	}
}

// unquote reverses mboxrd quoting, as a reader would.
func unquote(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, ">"), "From ") && strings.HasPrefix(l, ">") {
			l = l[1:]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func FuzzQuote(f *testing.F) {
	f.Add("From x\n>From y\nbody")
	f.Add(">>From \n\n")
	f.Fuzz(func(t *testing.T, in string) {
		var b bytes.Buffer
		if err := Quote(&b, strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		got := b.String()
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(l, "From ") {
				t.Fatalf("unquoted From line in %q", got)
			}
		}
		want := in
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if u := unquote(strings.TrimSuffix(got, "\n")); u != want {
			t.Fatalf("not reversible: %q -> %q -> %q", in, got, u)
		}
	})
}

func TestDeliverAppends(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bob")
	if err := Deliver(p, "a@example.org", when, strings.NewReader("Subject: one\n\nFrom me\n"), opts()); err != nil {
		t.Fatal(err)
	}
	if err := Deliver(p, "", when, strings.NewReader("Subject: two\n\nno newline"), opts()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "From a@example.org Wed Mar  4 05:06:07 2026\nSubject: one\n\n>From me\n\n" +
		"From MAILER-DAEMON Wed Mar  4 05:06:07 2026\nSubject: two\n\nno newline\n\n"
	if string(b) != want {
		t.Fatalf("mailbox:\n%q\nwant\n%q", b, want)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if _, err := os.Lstat(p + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot lock left behind: %v", err)
	}
}

func TestFromLineSanitized(t *testing.T) {
	if got := FromLine("a b\n@x", when); got != "From a_b_@x Wed Mar  4 05:06:07 2026\n" {
		t.Errorf("FromLine = %q", got)
	}
}

type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestTruncateOnFailure(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bob")
	if err := Deliver(p, "a@x", when, strings.NewReader("first\n"), opts()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)
	big := strings.Repeat("line of the message\n", 20000)
	err := Deliver(p, "a@x", when, &failingReader{r: strings.NewReader(big), n: 200000}, opts())
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatalf("mailbox changed by a failed delivery: %d -> %d bytes", len(before), len(after))
	}
	if _, err := os.Lstat(p + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot lock left behind: %v", err)
	}
}

func TestRefusesSymlinkAndLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if err := Deliver(link, "a@x", when, strings.NewReader("x\n"), opts()); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: %v", err)
	}
	hard := filepath.Join(dir, "hard")
	os.Link(target, hard)
	if err := Deliver(hard, "a@x", when, strings.NewReader("x\n"), opts()); err == nil || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("hard link: %v", err)
	}
	o := opts()
	o.UID = os.Getuid() + 1
	if err := Deliver(target+"2", "a@x", when, strings.NewReader("x\n"), o); err == nil || !strings.Contains(err.Error(), "owned by") {
		t.Errorf("owner: %v", err)
	}
}

func TestDotLockContention(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bob")
	if err := os.WriteFile(p+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := opts()
	o.LockTimeout = 300 * time.Millisecond
	err := Deliver(p, "a@x", when, strings.NewReader("x\n"), o)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("held dot lock: err = %v", err)
	}
	// An old lock is a dead writer's: it is removed.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p+".lock", old, old)
	o.StaleLock = time.Minute
	if err := Deliver(p, "a@x", when, strings.NewReader("x\n"), o); err != nil {
		t.Fatalf("stale dot lock: %v", err)
	}
}

func TestFcntlLockBetweenProcesses(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bob")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MBOX_TEST_HOLD="+p)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper: %q", line)
	}
	o := opts()
	o.LockTimeout = 400 * time.Millisecond
	start := time.Now()
	err := Deliver(p, "a@x", when, strings.NewReader("x\n"), o)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("locked by another process: err = %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %v", d)
	}
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Fatalf("wrote %q while locked", b)
	}
	// The holder lets go while a delivery waits: the delivery goes on.
	o.LockTimeout = 10 * time.Second
	done := make(chan error, 1)
	go func() { done <- Deliver(p, "a@x", when, strings.NewReader("x\n"), o) }()
	time.Sleep(300 * time.Millisecond)
	stdin.Close()
	cmd.Wait()
	if err := <-done; err != nil {
		t.Fatalf("after release: %v", err)
	}
	if b, _ := os.ReadFile(p); !strings.HasPrefix(string(b), "From a@x ") {
		t.Fatalf("mailbox %q", b)
	}
}

func TestSpoolGroupBorrowed(t *testing.T) {
	if os.Getuid() != 0 {
		// Only root (CI) can switch filesystem ids; the rest of the
		// package is tested above as any user.
		t.Log("not root: only the fallback without a spool group is tested")
	}
	dir := t.TempDir()
	// A spool like Debian's /var/mail: group-writable by a group the
	// owner is not in; the owner (uid 12345 here) gets in only by the
	// borrowed gid. As non-root, the directory is not writable and the
	// delivery must fail cleanly instead.
	spoolGID := 4242
	if os.Getuid() == 0 {
		os.Chmod(filepath.Dir(dir), 0o755) // the test's own directory is 0700
		os.Chown(dir, 0, spoolGID)
	}
	os.Chmod(dir, 0o2775)
	p := filepath.Join(dir, "bob")
	if os.Getuid() != 0 {
		err := Deliver(p, "a@x", when, strings.NewReader("x\n"), Options{UID: -1, SpoolGID: -1, LockTimeout: time.Second})
		if err != nil {
			t.Fatalf("own directory: %v", err)
		}
		return
	}
	o := Options{UID: 12345, SpoolGID: spoolGID, LockTimeout: time.Second}
	if os.Getuid() == 0 {
		err := privsep.AsUser(12345, 12345, func() error { return Deliver(p, "a@x", when, strings.NewReader("x\n"), o) })
		if err != nil {
			t.Fatalf("deliver with the spool group: %v", err)
		}
		var st unix.Stat_t
		unix.Stat(p, &st)
		if st.Uid != 12345 || st.Gid != uint32(spoolGID) {
			t.Errorf("mailbox owned by %d:%d", st.Uid, st.Gid)
		}
		if _, err := os.Lstat(p + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dot lock left behind: %v", err)
		}
	}
}
