package tests

import (
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
