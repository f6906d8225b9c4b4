package pipe

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runAs is the account the tests run commands as: nobody when the test
// runs as root (CI), else the test's own user.
func runAs(t *testing.T) (uid, gid int, home string) {
	t.Helper()
	if os.Getuid() != 0 {
		return os.Getuid(), os.Getgid(), t.TempDir()
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	home = t.TempDir()
	os.Chmod(filepath.Dir(home), 0o755) // the test's own directory is 0700
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	return uid, gid, home
}

func command(t *testing.T, line string) *Command {
	uid, gid, home := runAs(t)
	return &Command{
		Command: line, UID: uid, GID: gid, Groups: []int{gid}, User: "someone", Home: home,
		Shell: "/bin/bash", Sender: "a@example.org", Recipient: "bob+tag@here.test",
		Local: "bob+tag", Extension: "tag", Domain: "here.test",
		Stdin: strings.NewReader("Subject: x\n\nbody\n"), TimeLimit: 20 * time.Second,
	}
}

func TestEnvironmentAndCredentials(t *testing.T) {
	os.Setenv("POSTERN_SECRET_TEST", "leak")
	defer os.Unsetenv("POSTERN_SECRET_TEST")
	c := command(t, "env | sort; echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo cwd=$(pwd); cat")
	r := Run(context.Background(), c)
	if r.Status != Delivered || r.Exit != 0 {
		t.Fatalf("result %+v", r)
	}
	for _, want := range []string{
		"SENDER=a@example.org\n", "RECIPIENT=bob+tag@here.test\n", "USER=someone\n", "LOGNAME=someone\n",
		"EXTENSION=tag\n", "DOMAIN=here.test\n", "LOCAL=bob+tag\n", "HOME=" + c.Home + "\n",
		"SHELL=/bin/bash\n", "PATH=/usr/bin:/bin\n",
		"uid=" + strconv.Itoa(c.UID) + " gid=" + strconv.Itoa(c.GID) + " groups=" + strconv.Itoa(c.GID) + "\n",
		"cwd=" + c.Home + "\n", "Subject: x\n\nbody\n",
	} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("output lacks %q:\n%s", want, r.Output)
		}
	}
	if strings.Contains(r.Output, "POSTERN_SECRET_TEST") {
		t.Errorf("the caller's environment leaked into the command:\n%s", r.Output)
	}
}

func TestHomeNotAccessible(t *testing.T) {
	c := command(t, "pwd")
	c.Home = filepath.Join(c.Home, "missing")
	r := Run(context.Background(), c)
	if r.Status != Delivered || strings.TrimSpace(r.Output) != "/" {
		t.Fatalf("result %+v, want delivered in /", r)
	}
}

func TestRefusesRoot(t *testing.T) {
	c := command(t, "true")
	c.UID = 0
	if r := Run(context.Background(), c); r.Status != Deferred {
		t.Fatalf("uid 0: %+v", r)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		code   int
		status Status
		dsn    string
	}{
		{0, Delivered, "2.0.0"},
		{75, Deferred, "4.3.0"},
		{71, Deferred, "4.3.0"},
		{67, Bounced, "5.1.1"},
		{64, Bounced, "5.3.0"},
		{73, Bounced, "5.2.0"},
		{77, Bounced, "5.7.0"},
		{78, Bounced, "5.3.5"},
		{1, Bounced, "5.3.0"},
		{100, Bounced, "5.3.0"},
	} {
		c := command(t, "echo 'no such user here' >&2; exit "+strconv.Itoa(tc.code))
		r := Run(context.Background(), c)
		if r.Status != tc.status || r.DSN != tc.dsn || r.Exit != tc.code {
			t.Errorf("exit %d: %+v; want %v %s", tc.code, r, tc.status, tc.dsn)
		}
		if tc.code != 0 && !strings.Contains(r.Text, "no such user here") {
			t.Errorf("exit %d: text %q lacks the command output", tc.code, r.Text)
		}
	}
}

func TestSignalIsTemporary(t *testing.T) {
	r := Run(context.Background(), command(t, "kill -9 $$"))
	if r.Status != Deferred || !strings.Contains(r.Text, "signal 9") {
		t.Fatalf("result %+v", r)
	}
}

func TestTimeLimitKillsProcessGroup(t *testing.T) {
	c := command(t, "sleep 60 & echo $! > pidfile; sleep 60")
	c.TimeLimit = 500 * time.Millisecond
	start := time.Now()
	r := Run(context.Background(), c)
	if r.Status != Deferred || r.DSN != "4.3.0" || !strings.Contains(r.Text, "time limit") {
		t.Fatalf("result %+v", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	b, err := os.ReadFile(filepath.Join(c.Home, "pidfile"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("pidfile %q", b)
	}
	// The background child was killed with the group: it is gone (or a
	// zombie of init, reaped soon).
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(end) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("background child %d survived the time limit", pid)
		}
	}
}

func TestOutputCapturedAndBounded(t *testing.T) {
	r := Run(context.Background(), command(t, "head -c 100000 /dev/zero | tr '\\0' x; exit 65"))
	if r.Status != Bounced || r.DSN != "5.6.0" {
		t.Fatalf("result %+v", r)
	}
	if len(r.Output) != MaxOutput {
		t.Fatalf("captured %d bytes, want %d", len(r.Output), MaxOutput)
	}
}

func TestCommandIgnoringStdin(t *testing.T) {
	c := command(t, "exit 0")
	c.Stdin = strings.NewReader(strings.Repeat("x", 1<<20))
	if r := Run(context.Background(), c); r.Status != Delivered {
		t.Fatalf("result %+v", r)
	}
}

func TestBackgroundChildHoldingOutput(t *testing.T) {
	c := command(t, "sleep 30 & echo started")
	start := time.Now()
	r := Run(context.Background(), c)
	if r.Status != Delivered {
		t.Fatalf("result %+v", r)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("waited %v for a background child", d)
	}
}
