package smtp

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// fakeAuth knows alice with password "secret"; user "temp" gets a 454,
// "weird" a 250 (a broken AuthFunc), "close" a 421.
type fakeAuth struct {
	mu    sync.Mutex
	calls []string // identity/user/password
}

func (a *fakeAuth) check(ctx context.Context, identity, user, pass string) *Reply {
	a.mu.Lock()
	a.calls = append(a.calls, identity+"/"+user+"/"+pass)
	a.mu.Unlock()
	switch {
	case user == "temp":
		return &Reply{Code: 454, Enhanced: "4.7.0", Text: "Temporary authentication failure"}
	case user == "weird":
		return &Reply{Code: 250, Text: "fine, I guess"}
	case user == "close":
		return &Reply{Code: 421, Enhanced: "4.7.0", Text: "Too many failures"}
	case user == "alice" && pass == "secret":
		return nil
	}
	return &Reply{Code: 535, Enhanced: "5.7.8", Text: "Error: authentication failed"}
}

func (a *fakeAuth) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

func authConfig() (*ServerConfig, *fakeAuth) {
	a := &fakeAuth{}
	cfg := testConfig()
	cfg.Auth = a.check
	return cfg, a
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAuthPlain(t *testing.T) {
	cfg, a := authConfig()
	h := &fakeHandler{}
	c := startSession(t, cfg, h)
	c.expect("220 ")
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "503 5.5.1 Error: send EHLO first")
	c.cmd("HELO client.test", "250 ")
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "503 5.5.1 Error: send EHLO first")
	ehlo := c.cmd("EHLO client.test", "250-")
	if !strings.Contains(ehlo, "250-AUTH PLAIN LOGIN\n") {
		t.Errorf("EHLO:\n%s", ehlo)
	}
	c.cmd("AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type")
	c.cmd("AUTH", "501 5.5.4 Syntax: AUTH mechanism")
	c.cmd("AUTH PLAIN a b", "501 5.5.4 ")
	// Wrong password, as initial response and after a challenge.
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "hunter2"), "535 5.7.8 Error: authentication failed")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(plainResp("", "alice", "hunter2"), "535 5.7.8 ")
	// Malformed PLAIN responses never reach the AuthFunc.
	n := len(a.seen())
	for _, resp := range []string{
		plainResp("bob", "alice", "secret"), // acting as another user
		b64("alice\x00secret"),              // two fields
		b64("\x00alice\x00secret\x00"),      // four fields
		plainResp("", "", "secret"),
		plainResp("", "alice", ""),
		plainResp("", "al\xffice", "secret"),
		"=",
	} {
		c.cmd("AUTH PLAIN "+resp, "535 5.7.8 Error: authentication failed")
	}
	if got := a.seen(); len(got) != n {
		t.Errorf("AuthFunc called for malformed responses: %q", got[n:])
	}
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "503 5.5.1 Error: MAIL transaction in progress")
	c.cmd("RSET", "250 ")
	if c.srv.AuthUser() != "" {
		t.Fatal("authenticated too early")
	}
	c.cmd("AUTH PLAIN "+plainResp("alice", "alice", "secret"), "235 2.7.0 Authentication successful")
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "503 5.5.1 Error: already authenticated")
	c.cmd("QUIT", "221 ")
	c.wait()
	if c.srv.AuthUser() != "alice" || len(h.authSeen) != 1 || h.authSeen[0] != "alice" {
		t.Errorf("AuthUser %q, handler saw %v", c.srv.AuthUser(), h.authSeen)
	}
	if got := a.seen(); got[len(got)-1] != "alice/alice/secret" {
		t.Errorf("AuthFunc got %q", got)
	}
	for _, want := range []string{
		"warning: unknown[pipe]: SASL PLAIN authentication failed: Error: authentication failed",
		"warning: unknown[pipe]: SASL PLAIN authentication failed: authorization identity differs from authentication identity",
		"warning: unknown[pipe]: SASL PLAIN authentication failed: malformed PLAIN response",
		"warning: unknown[pipe]: SASL PLAIN authentication failed: empty password",
		"auth=1/17",
	} {
		if !c.logs.has(want) {
			t.Errorf("no log %q:\n%s", want, c.logs)
		}
	}
	noSecrets(t, c.logs)
}

// noSecrets checks that no password, in clear or base64, reached the log.
func noSecrets(t *testing.T, l *logRec) {
	t.Helper()
	for _, s := range []string{"secret", "hunter2", b64("secret"), b64("hunter2"), "c2VjcmV0", "aHVudGVy",
		plainResp("", "alice", "secret"), plainResp("", "alice", "hunter2")} {
		if l.has(s) {
			t.Errorf("log holds %q:\n%s", s, l)
		}
	}
}

func TestAuthLogin(t *testing.T) {
	cfg, a := authConfig()
	c := startSession(t, cfg, nil)
	c.ehlo()
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("alice"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("hunter2"), "535 5.7.8 Error: authentication failed")
	c.cmd("auth login "+b64("alice"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("hunter2"), "535 5.7.8 ")
	c.cmd("AUTH LOGIN =", "334 UGFzc3dvcmQ6")
	c.cmd(b64("secret"), "535 5.7.8 ")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("alice"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("secret"), "235 2.7.0 Authentication successful")
	c.cmd("AUTH LOGIN", "503 5.5.1 Error: already authenticated")
	c.cmd("QUIT", "221 ")
	c.wait()
	if got := a.seen(); len(got) != 3 || got[2] != "/alice/secret" {
		t.Errorf("AuthFunc got %q", got)
	}
	if !c.logs.has("SASL LOGIN authentication failed: empty user name") || !c.logs.has("auth=1/5") {
		t.Errorf("logs:\n%s", c.logs)
	}
	noSecrets(t, c.logs)
}

func TestAuthExchangeErrors(t *testing.T) {
	cfg, a := authConfig()
	cfg.HardErrorLimit = 100
	c := startSession(t, cfg, nil)
	c.ehlo()
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("*", "501 5.0.0 Authentication aborted")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("alice"), "334 UGFzc3dvcmQ6")
	c.cmd("*", "501 5.0.0 Authentication aborted")
	c.cmd("AUTH PLAIN *", "501 5.0.0 Authentication aborted")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("not base64!", "501 5.5.2 Cannot decode response")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("AGFsaWNlAHNlY3JldA", "501 5.5.2 Cannot decode response") // padding missing
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("YR==", "501 5.5.2 Cannot decode response") // non-canonical padding bits
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(plainResp("", "alice", "secret")+"\r", "501 5.5.2 Cannot decode response")
	c.cmd("AUTH PLAIN !!!!", "501 5.5.2 Cannot decode response")
	// Over-long response lines are read to their end, then refused.
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(strings.Repeat("QUFB", MaxAuthLine/4)+"A", "500 5.5.6 Authentication Exchange line is too long")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(strings.Repeat("QUFB", 100000), "500 5.5.6 ")
	c.cmd("NOOP", "250 ")
	// MaxAuthLine itself is fine: the AuthFunc says no.
	long := strings.Repeat("x", MaxAuthLine/4*3-len("\x00alice\x00"))
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(plainResp("", "alice", long), "535 5.7.8 ")
	if got := a.seen(); len(got) != 1 || got[0] != "/alice/"+long {
		t.Errorf("AuthFunc calls: %d", len(got))
	}
	// The AuthFunc's replies.
	c.cmd("AUTH PLAIN "+plainResp("", "temp", "x"), "454 4.7.0 Temporary authentication failure")
	c.cmd("AUTH PLAIN "+plainResp("", "weird", "x"), "454 4.7.0 Temporary authentication failure")
	if c.srv.AuthUser() != "" {
		t.Fatal("a 250 from the AuthFunc authenticated")
	}
	c.cmd("AUTH PLAIN "+plainResp("", "close", "x"), "421 4.7.0 Too many failures")
	c.closed()
	if err := c.wait(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	for _, want := range []string{
		"SASL PLAIN authentication failed: authentication aborted by client",
		"SASL LOGIN authentication failed: authentication aborted by client",
		"SASL PLAIN authentication failed: cannot decode response",
		"SASL PLAIN authentication failed: response line too long",
		"warning: unknown[pipe]: auth function returned reply code 250",
	} {
		if !c.logs.has(want) {
			t.Errorf("no log %q:\n%s", want, c.logs)
		}
	}
	noSecrets(t, c.logs)
}

func TestAuthNotOffered(t *testing.T) {
	// No AuthFunc: AUTH does not exist.
	c := startSession(t, nil, nil)
	c.ehlo()
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "502 5.5.1 ")
	c.cmd("AUTH", "502 5.5.1 ")

	// AuthNeedsTLS without TLS.
	cfg, a := authConfig()
	cfg.AuthNeedsTLS = true
	c = startSession(t, cfg, nil)
	c.expect("220 ")
	if ehlo := c.cmd("EHLO client.test", "250-"); strings.Contains(ehlo, "AUTH") {
		t.Errorf("EHLO:\n%s", ehlo)
	}
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "538 5.7.11 Encryption required for requested authentication mechanism")
	c.cmd("AUTH LOGIN", "538 5.7.11 ")
	if len(a.seen()) != 0 {
		t.Error("AuthFunc called")
	}
}

// Failed logins count toward the error limits.
func TestAuthErrorLimit(t *testing.T) {
	cfg, _ := authConfig()
	cfg.HardErrorLimit = 3
	c := startSession(t, cfg, nil)
	c.ehlo()
	for i := 0; i < 3; i++ {
		c.cmd("AUTH PLAIN "+plainResp("", "alice", "guess"), "535 ")
	}
	c.expect("421 4.7.0 mx.test Error: too many errors")
	if err := c.wait(); !errors.Is(err, ErrTooManyErrors) {
		t.Errorf("Serve: %v", err)
	}
}

func TestAuthLostConnection(t *testing.T) {
	cfg, _ := authConfig()
	c := startSession(t, cfg, nil)
	c.ehlo()
	c.cmd("AUTH LOGIN", "334 ")
	c.send(b64("alice"))
	c.conn.Close()
	if err := c.wait(); !errors.Is(err, ErrLostConnection) {
		t.Errorf("Serve: %v", err)
	}
	if !c.logs.has("lost connection after AUTH from unknown[pipe]") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

// FuzzParsePlain checks that a PLAIN response (the decoded octets) never
// panics the parser and that what it accepts is fit for an AuthFunc.
func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{"\x00alice\x00secret", "alice\x00alice\x00secret", "bob\x00alice\x00x",
		"\x00\x00", "", "a\x00b", "\x00al\xffice\x00pw", "\x00a\x00b\x00c"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, resp []byte) {
		identity, user, pass, why := parsePlain(resp)
		if why != "" {
			if identity != "" || user != "" || pass != "" {
				t.Fatalf("refused %q but returned fields", resp)
			}
			return
		}
		if user == "" || pass == "" || identity != "" && identity != user {
			t.Fatalf("accepted %q: %q %q %q", resp, identity, user, pass)
		}
		for _, s := range []string{identity, user, pass} {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("accepted %q: field %q", resp, s)
			}
		}
		if identity+"\x00"+user+"\x00"+pass != string(resp) {
			t.Fatalf("fields of %q do not add up", resp)
		}
	})
}
