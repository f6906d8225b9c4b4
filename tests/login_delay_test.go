package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLoginFailureDelay: with auth_failure_delay set, a wrong password
// over POP3 and IMAP is answered only after the delay (the auth daemon
// holds the answer back), a right one at once, and the limit of failures
// per connection closes it.
func TestLoginFailureDelay(t *testing.T) {
	const delay = 2 * time.Second
	in := popStart(t, "auth_failure_delay = 2s")

	c := popDial(t, in, in.POP3Addr, false)
	c.stls(in)
	start := time.Now()
	r := c.login("demo@example.test", "wrong")
	took := time.Since(start)
	if !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Fatalf("wrong password: %q", r)
	}
	if took < delay-100*time.Millisecond {
		t.Errorf("POP3 wrong password answered after %s, before auth_failure_delay %s", took, delay)
	}
	start = time.Now()
	if r := c.login("demo@example.test", "demo-secret"); r != "+OK Logged in." {
		t.Fatalf("right password after a wrong one: %q", r)
	}
	if took := time.Since(start); took > delay {
		t.Errorf("POP3 right password took %s: the delay is for failures only", took)
	}
	c.expect("QUIT", "+OK")

	// IMAP: the same delay through imap-login.
	ic := imapDial(t, in.IMAPSAddr, imapTLSConfig(t, in))
	start = time.Now()
	resp := ic.cmd(`LOGIN demo@example.test "wrong"`)
	took = time.Since(start)
	if last := resp[len(resp)-1]; !strings.Contains(last, " NO ") {
		t.Fatalf("IMAP wrong password: %q", resp)
	}
	if took < delay-100*time.Millisecond {
		t.Errorf("IMAP wrong password answered after %s, before auth_failure_delay %s", took, delay)
	}
}

// TestIMAPPlaintextHandoff: a plaintext IMAP client (allowed on loopback)
// is handed to the session, which answers the LOGIN itself with its
// capabilities and then serves the mailbox directly.
func TestIMAPPlaintextHandoff(t *testing.T) {
	in := imapStartWithMail(t)
	c := imapDial(t, in.IMAPAddr, nil)
	r := c.ok("LOGIN demo@example.test demo-secret")
	if last := r[len(r)-1]; !strings.Contains(last, "OK [CAPABILITY ") || !strings.Contains(last, "IMAP4rev2") || !strings.HasSuffix(last, "Logged in") {
		t.Fatalf("LOGIN answer %q", last)
	}
	if sel := c.ok("SELECT INBOX"); !imapHas(sel, `^\* [1-9][0-9]* EXISTS`) {
		t.Fatalf("SELECT after a handed-over login: %q", sel)
	}
	c.ok("FETCH 1 (FLAGS RFC822.SIZE)")
	c.ok("LOGOUT")
	if !in.WaitLog("login user=<demo@example.test> method=LOGIN", 5*time.Second) {
		t.Errorf("no login line in the log:\n%s", in.Log())
	}
}

// TestSessionsEndWithPostern: postern stop also ends the POP3 and IMAP
// sessions, which run as other users than the acceptor that started them.
func TestSessionsEndWithPostern(t *testing.T) {
	in := imapStartWithMail(t)
	c := imapLogin(t, in, "demo@example.test", "demo-secret")
	c.ok("SELECT INBOX")
	p := popSession(t, in, "demo@example.test", "demo-secret")
	p.expect("STAT", "+OK")
	var sessions []int
	for _, prog := range []string{"imapd", "pop3d"} {
		for _, a := range in.Daemons()[prog] {
			sessions = append(sessions, imapChildren(a)...)
		}
	}
	if len(sessions) < 2 {
		t.Fatalf("sessions found: %v", sessions)
	}
	in.Stop()
	end := time.Now().Add(5 * time.Second)
	for _, pid := range sessions {
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("session %d still runs after postern stopped", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
