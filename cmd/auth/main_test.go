package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/auth"
	"postern/internal/ipc"
)

// Cheap hashes (bcrypt cost 4, SHA-crypt 1000 rounds) of bob-secret and
// carol-secret: never use these costs for real.
const passwdFile = `# test
bob@example.org:{BLF-CRYPT}$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy:5000:5000::/var/vmail/example.org/bob::userdb_mail=maildir:~/mail
carol:{SHA512-CRYPT}$6$rounds=1000$2ruuE4NIBvAAeeIC$/C9BBWmEDOhIeJ9Z8OafTF4qbThkaC1OlahkMcSE4p6Jg6AsgC582ohyfYXnPI9Hslv4YnBbh/f9eTON/DXLf1
`

// captureLog sends fd 2, where package log writes, into a file for the
// duration of the test, and returns a function that reads it.
func captureLog(t *testing.T) func() string {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	saved, err := unix.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(f.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Dup2(saved, 2)
		unix.Close(saved)
		f.Close()
	})
	return func() string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
}

func newServer(t *testing.T, cfg auth.Config) *server {
	t.Helper()
	name := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(name, []byte(passwdFile), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := auth.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &server{a: a, timeout: 10 * time.Second, next: func(c *ipc.Conn, idle time.Duration) (*ipc.Msg, []*os.File, error) {
		return c.Recv(idle)
	}}
}

// connect runs the handler on one end of a socketpair and returns the
// other end and a channel closed when the handler returns.
func connect(t *testing.T, s *server, ctx context.Context) (*ipc.Conn, chan struct{}) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	srv, cli := conn(fds[0]), conn(fds[1])
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handle(ctx, srv)
	}()
	c := ipc.NewConn(cli, 0)
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c, done
}

func call(t *testing.T, c *ipc.Conn, kv ...string) *ipc.Msg {
	t.Helper()
	if err := c.Send(ipc.NewMsg(kv...)); err != nil {
		t.Fatalf("send: %v", err)
	}
	m, _, err := c.Recv(10 * time.Second)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

func attrs(m *ipc.Msg) string {
	var b []string
	for _, n := range m.Names() {
		b = append(b, n+"="+m.Get(n))
	}
	return strings.Join(b, " ")
}

func TestRequests(t *testing.T) {
	logs := captureLog(t)
	s := newServer(t, auth.Config{FailureLimit: 100, FailureWindow: time.Minute})
	c, _ := connect(t, s, context.Background())
	tests := []struct {
		req  []string
		want string
	}{
		{[]string{"op", "login", "service", "smtp", "user", "Bob@Example.org", "password", "bob-secret", "client_addr", "192.0.2.1"},
			"status=ok user=bob@example.org uid=5000 gid=5000 home=/var/vmail/example.org/bob mail=/var/vmail/example.org/bob/mail/"},
		{[]string{"op", "login", "service", "imap", "user", "carol", "password", "carol-secret", "client_addr", ""},
			"status=ok user=carol uid= gid= home= mail="},
		{[]string{"op", "login", "service", "pop3", "user", "bob@example.org", "password", "wrong-pw-1", "client_addr", "192.0.2.1"},
			"status=fail reason=" + reasonFail},
		{[]string{"op", "login", "service", "smtp", "user", "nobody@example.org", "password", "wrong-pw-2", "client_addr", "2001:db8::1"},
			"status=fail reason=" + reasonFail},
		{[]string{"op", "login", "service", "smtp", "user", "bob@example.org"},
			"status=fail reason=" + reasonFail},
		{[]string{"op", "login", "service", "ftp", "user", "bob@example.org", "password", "bob-secret"},
			"status=tempfail reason=bad request"},
		{[]string{"op", "lookup", "user", "BOB@example.org"},
			"status=ok user=bob@example.org uid=5000 gid=5000 home=/var/vmail/example.org/bob mail=/var/vmail/example.org/bob/mail/"},
		{[]string{"op", "lookup", "user", "nobody@example.org"}, "status=nouser"},
		{[]string{"op", "lookup", "user", "bad name"}, "status=nouser"},
		{[]string{"op", "lookup"}, "status=nouser"},
		{[]string{"op", "reload"}, "status=tempfail reason=bad request"},
		{[]string{"user", "bob"}, "status=tempfail reason=bad request"},
	}
	for _, tt := range tests {
		if got := attrs(call(t, c, tt.req...)); got != tt.want {
			t.Errorf("%v:\n got %s\nwant %s", tt.req, got, tt.want)
		}
	}
	l := logs()
	for _, want := range []string{
		"login ok for user=<Bob@Example.org> client=192.0.2.1 service=smtp",
		"login ok for user=<carol> client=unknown service=imap",
		"login failed for user=<bob@example.org> client=192.0.2.1 service=pop3: password mismatch",
		"login failed for user=<nobody@example.org> client=2001:db8::1 service=smtp: unknown user",
		"login failed for user=<bob@example.org> client=unknown service=smtp: empty password",
		"warning: bad login request: user=<bob@example.org> client=unknown service=ftp: unknown service",
		`warning: bad request: unknown op "reload"`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q; log:\n%s", want, l)
		}
	}
	for _, pw := range []string{"bob-secret", "carol-secret", "wrong-pw", "$2b$", "$6$"} {
		if strings.Contains(l, pw) {
			t.Errorf("log holds %q:\n%s", pw, l)
		}
	}
}

func TestRateLimitOverTheSocket(t *testing.T) {
	logs := captureLog(t)
	s := newServer(t, auth.Config{FailureLimit: 2, FailureWindow: time.Hour, FailureDelay: 20 * time.Millisecond})
	c, _ := connect(t, s, context.Background())
	login := func(pw string) string {
		return attrs(call(t, c, "op", "login", "service", "smtp", "user", "bob@example.org", "password", pw, "client_addr", "198.51.100.7"))
	}
	login("x1")
	login("x2")
	start := time.Now()
	got := login("bob-secret")
	if got != "status=tempfail reason="+reasonTempFail {
		t.Fatalf("after the limit: %s", got)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("refusal answered after %v", d)
	}
	if !strings.Contains(logs(), "login refused for user=<bob@example.org> client=198.51.100.7 service=smtp: too many failed logins for ip 198.51.100.7") {
		t.Errorf("log:\n%s", logs())
	}
	// Lookups are not rate limited.
	if got := attrs(call(t, c, "op", "lookup", "user", "bob@example.org")); !strings.HasPrefix(got, "status=ok") {
		t.Errorf("lookup while blocked: %s", got)
	}
}

func TestConcurrentConnections(t *testing.T) {
	captureLog(t)
	s := newServer(t, auth.Config{FailureLimit: 1000, FailureWindow: time.Minute, MaxConcurrent: 1})
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 8 {
		c, _ := connect(t, s, context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				pw, want := "bob-secret", "status=ok"
				if (i+j)%2 == 1 {
					pw, want = "nope", "status=fail"
				}
				c.Send(ipc.NewMsg("op", "login", "service", "smtp", "user", "bob@example.org", "password", pw, "client_addr", "192.0.2.9"))
				m, _, err := c.Recv(30 * time.Second)
				if err != nil || m.Get("status") != strings.TrimPrefix(want, "status=") {
					errs <- attrs(m) + " " + want
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestMalformedFrameClosesConnection(t *testing.T) {
	logs := captureLog(t)
	s := newServer(t, auth.Config{FailureLimit: 10, FailureWindow: time.Minute})
	c, done := connect(t, s, context.Background())
	// A frame over the 16 KiB limit.
	if err := c.Send(ipc.NewMsg("op", "login", "password", strings.Repeat("x", maxFrame))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still running after an over-long frame")
	}
	if !strings.Contains(logs(), "warning: read request:") {
		t.Errorf("log:\n%s", logs())
	}
}

func TestQuitDuringDelay(t *testing.T) {
	captureLog(t)
	s := newServer(t, auth.Config{FailureLimit: 10, FailureWindow: time.Minute, FailureDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	c, _ := connect(t, s, ctx)
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if got := attrs(call(t, c, "op", "login", "service", "smtp", "user", "bob@example.org", "password", "x")); got != "status=fail reason="+reasonFail {
		t.Fatalf("got %s", got)
	}
}
