package tests

// Remote delivery end to end (issue 3): the smtp and lmtp transports,
// transport_maps and relayhost, retries, delay warnings, expiry and
// bounces. "Remote" servers are sinks (tests/sink_test.go) or small
// scripted servers on their own loopback addresses, one range per test
// so that no two tests want the same port 25:
//
//	127.0.0.21        TestRemoteMX
//	127.0.0.31-32     TestRemoteMXPreference
//	127.0.0.33-34     TestRemoteMXFallbackDead
//	127.0.0.35-36     TestRemoteMXFallback421
//	127.0.0.37-38     TestRemoteMXEqualPreference
//	127.0.0.39        TestRemoteImplicitMX
//	[::1]             TestRemoteAAAAOnly
//	127.0.0.41        TestRemoteRetryAfter4xx
//	127.0.0.42        TestRemotePartialBounce
//	127.0.0.43-44     TestRemoteGreetingTimeout
//	127.0.0.45-46     TestRemoteNoSMTPUTF8, TestRemoteSMTPUTF8NotNeeded
//	127.0.0.47        TestRemoteNo8BitMIME
//	127.0.0.48-49     TestRemoteSTARTTLS, TestRemoteTLSRequired
//	127.0.0.51-52     TestRemoteRelayhostAuth, TestRemoteRelayhostAuthWrongPassword
//	127.0.0.61        TestRemoteLMTP
//	127.0.0.71        TestRemoteTransportMaps
//	127.0.0.81        TestInterop* (interop_test.go)
//	127.0.0.91        TestRemoteCrash
//	none              TestRemoteNullMX, TestRemoteNXDOMAIN, TestRemoteBackoff,
//	                  TestRemoteDelayWarning (remote.example answers SERVFAIL)
//
// Every test that needs retries uses the time-travel settings below;
// the others keep the 300 s default backoff, so that a deferral where a
// bounce or a delivery is expected shows as a timeout, not as a pass.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"postern/internal/dsn"
	psmtp "postern/internal/smtp"
)

// remoteFastRetry makes the schedule testable: a deferred message comes back
// after a second.
var remoteFastRetry = []string{
	"minimal_backoff_time = 1s",
	"maximal_backoff_time = 1s",
	"queue_run_delay = 1s",
}

// TestRemoteMX: mail for a remote domain goes to its MX (found through
// the instance's own DNS server) and arrives there intact.
func TestRemoteMX(t *testing.T) {
	sink := StartSink(t, "127.0.0.21", 25, nil)
	in := Start(t, Options{})
	in.DNS.MX("example.org", 10, "mx.example.org")
	in.DNS.A("mx.example.org", "127.0.0.21")
	msg := "Subject: remote\r\n\r\nhello remote\r\n.leading dot\r\n"
	if err := smtp.SendMail(in.Addr, nil, "demo@example.test", []string{"user@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 {
		t.Fatalf("the MX got %d messages\n%s", len(got), in.Log())
	}
	if got[0].From != "demo@example.test" || len(got[0].Rcpts) != 1 || got[0].Rcpts[0] != "user@example.org" {
		t.Errorf("envelope %+v", got[0])
	}
	if !strings.HasSuffix(got[0].Data, msg) {
		t.Errorf("message differs:\n%q", got[0].Data)
	}
	if !in.WaitLog("relay=mx.example.org[127.0.0.21]:25", 5*time.Second) || !strings.Contains(in.Log(), "status=sent") {
		t.Errorf("no status=sent log line for the relay")
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteMXPreference: of two working MX hosts the one with the lower
// preference value gets every message; the other is never contacted.
func TestRemoteMXPreference(t *testing.T) {
	primary := StartSink(t, "127.0.0.31", 25, nil)
	backup := StartSink(t, "127.0.0.32", 25, nil)
	in := Start(t, Options{})
	// The backup first, so that the answer's order is not the right one.
	in.DNS.MX("pref.example", 20, "backup.pref.example")
	in.DNS.MX("pref.example", 10, "primary.pref.example")
	in.DNS.A("backup.pref.example", "127.0.0.32")
	in.DNS.A("primary.pref.example", "127.0.0.31")
	for i := range 3 {
		remoteSubmit(t, in, "demo@example.test", []string{fmt.Sprintf("user%d@pref.example", i)}, fmt.Sprintf("Subject: pref %d\r\n\r\nbody\r\n", i))
	}
	got := primary.Wait(3, 20*time.Second)
	if n := remoteSinkRcpts(got); n != 3 {
		t.Fatalf("the preference 10 MX got %d of 3 recipients: %+v\n%s", n, got, in.Log())
	}
	for i := range 3 {
		l := remoteWaitStatus(t, in, fmt.Sprintf("user%d@pref.example", i), "sent", 5*time.Second)
		if !strings.Contains(l, "relay=primary.pref.example[127.0.0.31]:25") {
			t.Errorf("log line names the wrong relay: %s", l)
		}
	}
	if conns, _ := backup.Stats(); conns != 0 {
		t.Errorf("the preference 20 MX was contacted %d times while the preferred one worked", conns)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteMXFallbackDead: the preferred MX has nothing listening; the
// next one gets the mail at once (no deferral).
func TestRemoteMXFallbackDead(t *testing.T) {
	remoteAssertFree(t, "127.0.0.33:25")
	second := StartSink(t, "127.0.0.34", 25, nil)
	in := Start(t, Options{})
	in.DNS.MX("dead.example", 10, "mx1.dead.example")
	in.DNS.MX("dead.example", 20, "mx2.dead.example")
	in.DNS.A("mx1.dead.example", "127.0.0.33")
	in.DNS.A("mx2.dead.example", "127.0.0.34")
	msg := "Subject: dead first MX\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"user@dead.example"}, msg)
	got := second.Wait(1, 20*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the second MX got %d messages: %+v\n%s", len(got), got, in.Log())
	}
	l := remoteWaitStatus(t, in, "user@dead.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=mx2.dead.example[127.0.0.34]:25") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	if strings.Contains(in.Log(), "status=deferred") {
		t.Errorf("deferred although the second MX worked")
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteMXFallback421: the preferred MX greets with 421 (busy); the
// next MX gets the mail.
func TestRemoteMXFallback421(t *testing.T) {
	busy := StartSink(t, "127.0.0.35", 25, nil)
	busy.SetGreeting(&psmtp.Reply{Code: 421, Enhanced: "4.3.2", Text: "mx1.busy.example Service not available, try later"})
	second := StartSink(t, "127.0.0.36", 25, nil)
	in := Start(t, Options{})
	in.DNS.MX("busy.example", 10, "mx1.busy.example")
	in.DNS.MX("busy.example", 20, "mx2.busy.example")
	in.DNS.A("mx1.busy.example", "127.0.0.35")
	in.DNS.A("mx2.busy.example", "127.0.0.36")
	remoteSubmit(t, in, "demo@example.test", []string{"user@busy.example"}, "Subject: busy first MX\r\n\r\nbody\r\n")
	got := second.Wait(1, 20*time.Second)
	if len(got) != 1 || len(got[0].Rcpts) != 1 || got[0].Rcpts[0] != "user@busy.example" {
		t.Fatalf("the second MX got %+v\n%s", got, in.Log())
	}
	if conns, _ := busy.Stats(); conns == 0 {
		t.Errorf("the preferred MX (421 greeting) was never tried")
	}
	l := remoteWaitStatus(t, in, "user@busy.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=mx2.busy.example[127.0.0.36]:25") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteMXEqualPreference: two MX hosts of equal preference share the
// load. Each message goes to its own domain (all with the same two MX
// hosts): a cached connection to one next hop would rightly carry every
// message of a single domain to whichever host it reached first, which
// says nothing about the order the MX lookup picks. With 10 independent
// picks, one host gets nothing with probability 2/1024.
func TestRemoteMXEqualPreference(t *testing.T) {
	a := StartSink(t, "127.0.0.37", 25, nil)
	b := StartSink(t, "127.0.0.38", 25, nil)
	in := Start(t, Options{})
	in.DNS.A("mxa.eq.example", "127.0.0.37")
	in.DNS.A("mxb.eq.example", "127.0.0.38")
	const n = 10
	for i := range n {
		d := fmt.Sprintf("eq%d.example", i)
		in.DNS.MX(d, 10, "mxa.eq.example")
		in.DNS.MX(d, 10, "mxb.eq.example")
	}
	for i := range n {
		remoteSubmit(t, in, "demo@example.test", []string{fmt.Sprintf("user@eq%d.example", i)}, fmt.Sprintf("Subject: equal %d\r\n\r\nbody\r\n", i))
	}
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) && len(a.Wait(0, 0))+len(b.Wait(0, 0)) < n {
		time.Sleep(50 * time.Millisecond)
	}
	na, nb := len(a.Wait(0, 0)), len(b.Wait(0, 0))
	t.Logf("MX a got %d, MX b got %d", na, nb)
	if na+nb != n {
		t.Fatalf("%d of %d messages arrived\n%s", na+nb, n, in.Log())
	}
	if na == 0 || nb == 0 {
		t.Errorf("one MX of equal preference got all %d messages (a %d, b %d): no random order among equal preferences", n, na, nb)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteNullMX: a domain with a null MX (RFC 7505) does not accept
// mail: the sender gets a bounce at once, not after retries.
func TestRemoteNullMX(t *testing.T) {
	in := Start(t, Options{})
	in.DNS.NullMX("nullmx.example")
	in.DNS.A("nullmx.example", "127.0.0.1") // must not be used as an implicit MX
	remoteSubmit(t, in, "demo@example.test", []string{"user@nullmx.example"}, "Subject: to a null MX\r\n\r\nbody\r\n")
	r := remoteReport(t, in, 15*time.Second)
	rc := remoteOnlyRcpt(t, r, "user@nullmx.example")
	if rc.Get("Action") != "failed" {
		t.Errorf("Action %q, want failed", rc.Get("Action"))
	}
	if st := rc.Get("Status"); st != "5.1.10" && st != "5.1.2" {
		t.Errorf("Status %q, want 5.1.10 (RFC 7505) or 5.1.2", st)
	}
	if d := strings.ToLower(rc.Get("Diagnostic-Code")); !strings.Contains(d, "nullmx.example") || !strings.Contains(d, "null") {
		t.Errorf("Diagnostic-Code %q does not say the domain has a null MX", rc.Get("Diagnostic-Code"))
	}
	remoteWaitStatus(t, in, "user@nullmx.example", "bounced", 5*time.Second)
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteImplicitMX: a domain without MX records gets its mail at its
// own address (RFC 5321 5.1).
func TestRemoteImplicitMX(t *testing.T) {
	sink := StartSink(t, "127.0.0.39", 25, nil)
	in := Start(t, Options{})
	in.DNS.A("amx.example", "127.0.0.39")
	remoteSubmit(t, in, "demo@example.test", []string{"user@amx.example"}, "Subject: implicit MX\r\n\r\nbody\r\n")
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 || got[0].Rcpts[0] != "user@amx.example" {
		t.Fatalf("the domain's A got %+v\n%s", got, in.Log())
	}
	l := remoteWaitStatus(t, in, "user@amx.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=amx.example[127.0.0.39]:25") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	if !slices.Contains(in.DNS.Queries(), "MX amx.example") {
		t.Errorf("no MX query before the fallback: %v", in.DNS.Queries())
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteAAAAOnly: an MX host with only an IPv6 address is reached
// over IPv6.
func TestRemoteAAAAOnly(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback ::1 is not configured here (%v); the test needs it", err)
	}
	l.Close()
	sink := StartSink(t, "::1", 25, nil)
	in := Start(t, Options{})
	in.DNS.MX("v6.example", 10, "mx6.v6.example")
	in.DNS.AAAA("mx6.v6.example", "::1")
	msg := "Subject: over IPv6\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"user@v6.example"}, msg)
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the IPv6 MX got %+v\n%s", got, in.Log())
	}
	ll := remoteWaitStatus(t, in, "user@v6.example", "sent", 5*time.Second)
	if !strings.Contains(ll, "relay=mx6.v6.example[::1]:25") {
		t.Errorf("log line names the wrong relay: %s", ll)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteNXDOMAIN: a domain that does not exist bounces at once.
func TestRemoteNXDOMAIN(t *testing.T) {
	in := Start(t, Options{})
	remoteSubmit(t, in, "demo@example.test", []string{"user@nx.example"}, "Subject: to nowhere\r\n\r\nbody\r\n")
	r := remoteReport(t, in, 15*time.Second)
	rc := remoteOnlyRcpt(t, r, "user@nx.example")
	if rc.Get("Action") != "failed" || !strings.HasPrefix(rc.Get("Status"), "5.") {
		t.Errorf("Action %q Status %q, want failed 5.x.x", rc.Get("Action"), rc.Get("Status"))
	}
	if !strings.Contains(rc.Get("Diagnostic-Code"), "nx.example") {
		t.Errorf("Diagnostic-Code %q does not name the domain", rc.Get("Diagnostic-Code"))
	}
	remoteWaitStatus(t, in, "user@nx.example", "bounced", 5*time.Second)
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteRetryAfter4xx: a 450 at RCPT defers the recipient with the
// server's own text; once the server takes it, the retry delivers.
func TestRemoteRetryAfter4xx(t *testing.T) {
	sink := StartSink(t, "127.0.0.41", 25, nil)
	sink.SetRcptReply("user@retry.example", &psmtp.Reply{Code: 450, Enhanced: "4.2.0", Text: "<user@retry.example>: Recipient address rejected: greylisted, come back later"})
	in := Start(t, Options{Settings: remoteFastRetry})
	in.DNS.MX("retry.example", 10, "mx.retry.example")
	in.DNS.A("mx.retry.example", "127.0.0.41")
	msg := "Subject: greylisted\r\n\r\nbody\r\n"
	id := remoteSubmit(t, in, "demo@example.test", []string{"user@retry.example"}, msg)
	l := remoteWaitStatus(t, in, "user@retry.example", "deferred", 15*time.Second)
	for _, want := range []string{"relay=mx.retry.example[127.0.0.41]:25", "dsn=4.2.0", "450 4.2.0", "greylisted, come back later", "RCPT TO"} {
		if !strings.Contains(l, want) {
			t.Errorf("deferral log line lacks %q: %s", want, l)
		}
	}
	if out, _ := in.Postern("queue", "list"); !strings.Contains(out, id) {
		t.Errorf("%s not in the queue after the deferral:\n%s", id, out)
	}
	sink.SetRcptReply("user@retry.example", nil)
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("not delivered after the retry: %+v\n%s", got, in.Log())
	}
	remoteWaitStatus(t, in, "user@retry.example", "sent", 5*time.Second)
	waitQueueEmpty(t, in, 10*time.Second)
	if n := len(Messages(in.Maildir("demo"))); n != 0 {
		t.Errorf("the sender got %d notices for a delivery that only waited", n)
	}
}

// TestRemotePartialBounce: one of three recipients is refused with a 5xx:
// the other two are delivered in one transaction, the sender gets a
// report about that one recipient alone, with the server's words.
func TestRemotePartialBounce(t *testing.T) {
	sink := StartSink(t, "127.0.0.42", 25, nil)
	sink.SetRcptReply("bob@partial.example", &psmtp.Reply{Code: 550, Enhanced: "5.1.1", Text: "<bob@partial.example>: Recipient address rejected: no such user here"})
	in := Start(t, Options{})
	in.DNS.MX("partial.example", 10, "mx.partial.example")
	in.DNS.A("mx.partial.example", "127.0.0.42")
	rcpts := []string{"alice@partial.example", "bob@partial.example", "carol@partial.example"}
	msg := "Subject: three recipients\r\nMessage-ID: <partial-1@example.test>\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", rcpts, msg)
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 {
		t.Fatalf("the MX got %d messages\n%s", len(got), in.Log())
	}
	if strings.Join(got[0].Rcpts, " ") != "alice@partial.example carol@partial.example" || !strings.HasSuffix(got[0].Data, msg) {
		t.Errorf("the MX got %v, want alice and carol", got[0].Rcpts)
	}
	r := remoteReport(t, in, 15*time.Second)
	rc := remoteOnlyRcpt(t, r, "bob@partial.example")
	if rc.Get("Action") != "failed" || rc.Get("Status") != "5.1.1" {
		t.Errorf("Action %q Status %q, want failed 5.1.1", rc.Get("Action"), rc.Get("Status"))
	}
	if d := rc.Get("Diagnostic-Code"); !strings.HasPrefix(d, "smtp;") || !strings.Contains(d, "550") || !strings.Contains(d, "no such user here") {
		t.Errorf("Diagnostic-Code %q: want smtp; with the remote reply", d)
	}
	if m := rc.Get("Remote-MTA"); !strings.Contains(m, "mx.partial.example") {
		t.Errorf("Remote-MTA %q", m)
	}
	for _, a := range []string{"alice@partial.example", "carol@partial.example"} {
		remoteWaitStatus(t, in, a, "sent", 5*time.Second)
	}
	l := remoteWaitStatus(t, in, "bob@partial.example", "bounced", 5*time.Second)
	if !strings.Contains(l, "dsn=5.1.1") || !strings.Contains(l, "no such user here") {
		t.Errorf("bounce log line: %s", l)
	}
	waitQueueEmpty(t, in, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := len(Messages(in.Maildir("demo"))); n != 1 {
		t.Errorf("the sender got %d reports, want 1", n)
	}
}

// TestRemoteGreetingTimeout: the preferred MX accepts connections and
// never says a word. With smtp_helo_timeout = 2s the attempt gives up on
// it; while the second MX is down the message is deferred, and once the
// second MX works the next attempt delivers there.
func TestRemoteGreetingTimeout(t *testing.T) {
	silent := startRemoteSilent(t, "127.0.0.43:25")
	remoteAssertFree(t, "127.0.0.44:25")
	in := Start(t, Options{Settings: append([]string{"smtp_helo_timeout = 2s", "smtp_connect_timeout = 2s"}, remoteFastRetry...)})
	in.DNS.MX("slow.example", 10, "mx1.slow.example")
	in.DNS.MX("slow.example", 20, "mx2.slow.example")
	in.DNS.A("mx1.slow.example", "127.0.0.43")
	in.DNS.A("mx2.slow.example", "127.0.0.44")
	msg := "Subject: silent MX\r\n\r\nbody\r\n"
	start := time.Now()
	id := remoteSubmit(t, in, "demo@example.test", []string{"user@slow.example"}, msg)
	remoteWaitStatus(t, in, "user@slow.example", "deferred", 20*time.Second)
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("deferred after %s: the greeting timeout of 2 s was not waited for", d)
	}
	if silent.count() == 0 {
		t.Errorf("the silent MX was never connected to")
	}
	if out, _ := in.Postern("queue", "list"); !strings.Contains(out, id) {
		t.Errorf("%s not in the queue after the deferral:\n%s", id, out)
	}
	sink := StartSink(t, "127.0.0.44", 25, nil)
	got := sink.Wait(1, 30*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the second MX got %+v\n%s", got, in.Log())
	}
	l := remoteWaitStatus(t, in, "user@slow.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=mx2.slow.example[127.0.0.44]:25") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteNoSMTPUTF8: a message that needs SMTPUTF8 (a UTF-8 recipient)
// and an MX without it: the message is returned at once with 5.6.7 and a
// clear reason, and nothing is sent to the server.
func TestRemoteNoSMTPUTF8(t *testing.T) {
	sink := StartSink(t, "127.0.0.45", 25, func(c *psmtp.ServerConfig) { c.SMTPUTF8 = false })
	in := Start(t, Options{})
	in.DNS.MX("utf8.example", 10, "mx.utf8.example")
	in.DNS.A("mx.utf8.example", "127.0.0.45")
	rcpt := "jörg@utf8.example"
	remoteSubmit(t, in, "demo@example.test", []string{rcpt}, "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody\r\n", "SMTPUTF8")
	r := remoteReport(t, in, 15*time.Second)
	rc := remoteOnlyRcpt(t, r, rcpt)
	if rc.Get("Action") != "failed" || rc.Get("Status") != "5.6.7" {
		t.Errorf("Action %q Status %q, want failed 5.6.7", rc.Get("Action"), rc.Get("Status"))
	}
	if d := rc.Get("Diagnostic-Code"); !strings.Contains(d, "SMTPUTF8") {
		t.Errorf("Diagnostic-Code %q does not say that SMTPUTF8 is missing", d)
	}
	l := remoteWaitStatus(t, in, rcpt, "bounced", 5*time.Second)
	if !strings.Contains(l, "dsn=5.6.7") {
		t.Errorf("bounce log line: %s", l)
	}
	if _, mails := sink.Stats(); mails != 0 || len(sink.Wait(0, 0)) != 0 {
		t.Errorf("the server without SMTPUTF8 was sent a transaction (%d MAIL commands)", mails)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteSMTPUTF8NotNeeded: a message submitted with the SMTPUTF8
// parameter (as Go's net/smtp and others send whenever it is offered)
// whose envelope and header are all ASCII needs no SMTPUTF8 server, and
// goes to one without it as ordinary mail, as Postfix does
// (SMTPUTF8_README, "Using Postfix SMTPUTF8 support").
func TestRemoteSMTPUTF8NotNeeded(t *testing.T) {
	sink := StartSink(t, "127.0.0.46", 25, func(c *psmtp.ServerConfig) { c.SMTPUTF8 = false })
	in := Start(t, Options{})
	in.DNS.MX("ascii.example", 10, "mx.ascii.example")
	in.DNS.A("mx.ascii.example", "127.0.0.46")
	msg := "Subject: plain ASCII\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"user@ascii.example"}, msg, "SMTPUTF8")
	if l := remoteWaitAnyStatus(t, in, "user@ascii.example", 20*time.Second); !strings.Contains(l, "status=sent") {
		t.Fatalf("the all-ASCII message was not delivered to the server without SMTPUTF8:\n%s", l)
	}
	got := sink.Wait(1, 5*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the server without SMTPUTF8 got %+v", got)
	}
	if got[0].UTF8 {
		t.Errorf("SMTPUTF8 sent to a server that does not offer it")
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteNo8BitMIME: an 8-bit message and a server without 8BITMIME:
// the message is converted to 7 bits (RFC 6152 3), and the converted body
// decodes to the original octets.
func TestRemoteNo8BitMIME(t *testing.T) {
	sink := StartSink(t, "127.0.0.47", 25, nil)
	sink.SetHide8BitMIME(true)
	in := Start(t, Options{})
	in.DNS.MX("seven.example", 10, "mx.seven.example")
	in.DNS.A("mx.seven.example", "127.0.0.47")
	body := "Grüße aus Köln – ½ € ✓\r\nzweite Zeile, noch 8 Bit: äöü\r\n"
	msg := "From: <demo@example.test>\r\nSubject: 8-bit body\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
	remoteSubmit(t, in, "demo@example.test", []string{"user@seven.example"}, msg, "BODY=8BITMIME")
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 {
		t.Fatalf("the 7-bit server got %d messages\n%s", len(got), in.Log())
	}
	m := got[0]
	if m.Body != "" {
		t.Errorf("BODY=%s sent to a server without 8BITMIME", m.Body)
	}
	for i := 0; i < len(m.Data); i++ {
		if m.Data[i] >= 0x80 {
			t.Fatalf("8-bit octet 0x%02x at %d sent to a server without 8BITMIME:\n%s", m.Data[i], i, m.Data)
		}
	}
	pm, err := mail.ReadMessage(strings.NewReader(m.Data))
	if err != nil {
		t.Fatalf("the converted message does not parse: %v\n%s", err, m.Data)
	}
	if ct, params, _ := mime.ParseMediaType(pm.Header.Get("Content-Type")); ct != "text/plain" || !strings.EqualFold(params["charset"], "utf-8") {
		t.Errorf("Content-Type changed to %q", pm.Header.Get("Content-Type"))
	}
	var r io.Reader
	switch cte := strings.ToLower(pm.Header.Get("Content-Transfer-Encoding")); cte {
	case "quoted-printable":
		r = quotedprintable.NewReader(pm.Body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, pm.Body)
	default:
		t.Fatalf("Content-Transfer-Encoding %q after conversion, want quoted-printable or base64", cte)
	}
	dec, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding the converted body: %v", err)
	}
	// Quoted-printable line ends decode as CRLF; base64 keeps what the
	// converter encoded. Both must give the original text.
	if norm := strings.ReplaceAll(string(dec), "\r\n", "\n"); norm != strings.ReplaceAll(body, "\r\n", "\n") {
		t.Errorf("converted body decodes to\n%q\nwant\n%q", dec, body)
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteSTARTTLS: an MX that offers STARTTLS gets the mail over TLS
// (smtp_tls_security_level = may, the default), and the log says so.
func TestRemoteSTARTTLS(t *testing.T) {
	sink := StartSink(t, "127.0.0.48", 25, func(c *psmtp.ServerConfig) { c.TLS = remoteTLS(t, "mx.tls.example") })
	in := Start(t, Options{})
	in.DNS.MX("tls.example", 10, "mx.tls.example")
	in.DNS.A("mx.tls.example", "127.0.0.48")
	msg := "Subject: over TLS\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"user@tls.example"}, msg)
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the TLS MX got %+v\n%s", got, in.Log())
	}
	if !got[0].TLS {
		t.Errorf("the message came in clear although the MX offered STARTTLS")
	}
	if !in.WaitLog("TLS connection established to mx.tls.example[127.0.0.48]:25", 5*time.Second) {
		t.Errorf("no \"TLS connection established\" log line")
	}
	remoteWaitStatus(t, in, "user@tls.example", "sent", 5*time.Second)
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteTLSRequired: with smtp_tls_security_level = encrypt and an MX
// that offers no TLS, the message is deferred and never sent in clear.
func TestRemoteTLSRequired(t *testing.T) {
	sink := StartSink(t, "127.0.0.49", 25, nil)
	in := Start(t, Options{Settings: []string{"smtp_tls_security_level = encrypt"}})
	in.DNS.MX("notls.example", 10, "mx.notls.example")
	in.DNS.A("mx.notls.example", "127.0.0.49")
	id := remoteSubmit(t, in, "demo@example.test", []string{"user@notls.example"}, "Subject: secret\r\n\r\nbody\r\n")
	remoteWaitStatus(t, in, "user@notls.example", "deferred", 15*time.Second)
	conns, mails := sink.Stats()
	if conns == 0 {
		t.Errorf("the MX was never contacted")
	}
	if mails != 0 || len(sink.Wait(0, 0)) != 0 {
		t.Errorf("%d MAIL commands sent in clear despite smtp_tls_security_level = encrypt", mails)
	}
	if out, _ := in.Postern("queue", "list"); !strings.Contains(out, id) {
		t.Errorf("%s not in the queue after the deferral:\n%s", id, out)
	}
	if n := len(Messages(in.Maildir("demo"))); n != 0 {
		t.Errorf("the sender got %d reports for a deferral", n)
	}
}

// TestRemoteRelayhostAuth: all remote mail goes to relayhost, a smarthost
// that wants AUTH over STARTTLS, with the credentials of
// smtp_sasl_password_maps; no MX is looked up.
func TestRemoteRelayhostAuth(t *testing.T) {
	sink := remoteSmarthost(t, "127.0.0.51")
	in := Start(t, Options{Settings: remoteSmarthostSettings(t, "127.0.0.51", "user:pass")})
	msg := "Subject: via the smarthost\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"someone@elsewhere.example"}, msg)
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the smarthost got %+v\n%s", got, in.Log())
	}
	if got[0].Auth != "user" || !got[0].TLS {
		t.Errorf("the smarthost saw auth %q, TLS %v; want user over TLS", got[0].Auth, got[0].TLS)
	}
	l := remoteWaitStatus(t, in, "someone@elsewhere.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=127.0.0.51[127.0.0.51]:2525") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	for _, q := range in.DNS.Queries() {
		if strings.HasSuffix(q, "elsewhere.example") {
			t.Errorf("DNS asked for %q although relayhost is in brackets", q)
		}
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteRelayhostAuthWrongPassword: the smarthost refuses the
// credentials (535): the mail waits in the queue (Postfix defers on an
// authentication failure, which is the administrator's to fix), it is
// neither sent nor bounced.
func TestRemoteRelayhostAuthWrongPassword(t *testing.T) {
	sink := remoteSmarthost(t, "127.0.0.52")
	in := Start(t, Options{Settings: remoteSmarthostSettings(t, "127.0.0.52", "user:wrong")})
	id := remoteSubmit(t, in, "demo@example.test", []string{"someone@elsewhere.example"}, "Subject: via the smarthost\r\n\r\nbody\r\n")
	l := remoteWaitAnyStatus(t, in, "someone@elsewhere.example", 15*time.Second)
	if !strings.Contains(l, "status=deferred") {
		t.Errorf("after a refused AUTH: %s\nwant status=deferred", l)
	}
	if !strings.Contains(l, "535") {
		t.Errorf("the log line does not give the smarthost's reply: %s", l)
	}
	if _, mails := sink.Stats(); mails != 0 {
		t.Errorf("MAIL sent after a failed AUTH")
	}
	time.Sleep(time.Second)
	if out, _ := in.Postern("queue", "list"); !strings.Contains(out, id) {
		t.Errorf("%s not in the queue:\n%s", id, out)
	}
	if n := len(Messages(in.Maildir("demo"))); n != 0 {
		t.Errorf("the sender got %d reports (a bounce?) for a wrong smarthost password", n)
	}
}

func remoteSmarthost(t *testing.T, ip string) *Sink {
	sink := StartSink(t, ip, 2525, func(c *psmtp.ServerConfig) {
		c.TLS = remoteTLS(t, "smarthost.example")
		c.AuthNeedsTLS = true
		c.Auth = func(_ context.Context, _, user, pass string) *psmtp.Reply {
			if user == "user" && pass == "pass" {
				return nil
			}
			return &psmtp.Reply{Code: 535, Enhanced: "5.7.8", Text: "Error: authentication failed"}
		}
	})
	sink.SetRequireAuth(true)
	return sink
}

func remoteSmarthostSettings(t *testing.T, ip, cred string) []string {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	pw := filepath.Join(dir, "sasl_passwd")
	if err := os.WriteFile(pw, []byte(fmt.Sprintf("[%s]:2525 %s\n", ip, cred)), 0o600); err != nil {
		t.Fatal(err)
	}
	return append([]string{
		fmt.Sprintf("relayhost = [%s]:2525", ip),
		"smtp_sasl_auth_enable = yes",
		"smtp_sasl_password_maps = texthash:" + pw,
	}, remoteFastRetry...)
}

// TestRemoteLMTP: transport_maps sends a domain to an LMTP server; LMTP
// answers after the data once per recipient (RFC 2033 4.2), so one
// recipient is delivered and the other, refused for now (452), is
// deferred and delivered alone on the next attempt.
func TestRemoteLMTP(t *testing.T) {
	first := true
	var firstMu sync.Mutex
	lm := startLMTP(t, "127.0.0.61:2424", func(rcpt string) string {
		firstMu.Lock()
		defer firstMu.Unlock()
		if rcpt == "full@lmtp.example" && first {
			first = false
			return "452 4.2.2 <full@lmtp.example> Mailbox is full"
		}
		return "250 2.0.0 <" + rcpt + "> Saved"
	})
	tm := remoteTable(t, "transport", "lmtp.example lmtp:[127.0.0.61]:2424\n")
	in := Start(t, Options{Settings: append([]string{"transport_maps = texthash:" + tm}, remoteFastRetry...)})
	msg := "Subject: to the mailbox store\r\n\r\nbody\r\n.dot line\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"ok@lmtp.example", "full@lmtp.example"}, msg)
	l := remoteWaitStatus(t, in, "full@lmtp.example", "deferred", 15*time.Second)
	if !strings.Contains(l, "452 4.2.2") || !strings.Contains(l, "Mailbox is full") {
		t.Errorf("deferral log line lacks the server's reply: %s", l)
	}
	l = remoteWaitStatus(t, in, "ok@lmtp.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=127.0.0.61[127.0.0.61]:2424") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	remoteWaitStatus(t, in, "full@lmtp.example", "sent", 15*time.Second)
	waitQueueEmpty(t, in, 10*time.Second)
	txns := lm.transactions()
	var data []lmtpTxn
	for _, x := range txns {
		if x.data != "" {
			data = append(data, x)
		}
	}
	if len(data) != 2 {
		t.Fatalf("%d transactions with data, want 2: %+v", len(data), txns)
	}
	if strings.Join(data[0].rcpts, " ") != "ok@lmtp.example full@lmtp.example" || strings.Join(data[1].rcpts, " ") != "full@lmtp.example" {
		t.Errorf("recipients per transaction: %v then %v", data[0].rcpts, data[1].rcpts)
	}
	for _, x := range data {
		if x.from != "demo@example.test" || !strings.HasSuffix(x.data, msg) {
			t.Errorf("transaction from <%s> with data %q", x.from, x.data)
		}
	}
	if !lm.sawLHLO() {
		t.Errorf("the client never sent LHLO")
	}
	if n := len(Messages(in.Maildir("demo"))); n != 0 {
		t.Errorf("the sender got %d reports", n)
	}
}

// TestRemoteTransportMaps: error: bounces with its text, discard: drops
// (logged as sent), smtp:[host]:port goes to that host without an MX
// lookup; all three for recipients of one message.
func TestRemoteTransportMaps(t *testing.T) {
	sink := StartSink(t, "127.0.0.71", 2525, nil)
	tm := remoteTable(t, "transport",
		"error.example error:no mail here\n"+
			"discard.example discard:\n"+
			"fwd.example smtp:[127.0.0.71]:2525\n")
	in := Start(t, Options{Settings: []string{"transport_maps = texthash:" + tm}})
	msg := "Subject: transport maps\r\n\r\nbody\r\n"
	remoteSubmit(t, in, "demo@example.test", []string{"user@error.example", "user@discard.example", "user@fwd.example"}, msg)
	got := sink.Wait(1, 20*time.Second)
	if len(got) != 1 || strings.Join(got[0].Rcpts, " ") != "user@fwd.example" || !strings.HasSuffix(got[0].Data, msg) {
		t.Fatalf("the forwarding host got %+v\n%s", got, in.Log())
	}
	r := remoteReport(t, in, 15*time.Second)
	rc := remoteOnlyRcpt(t, r, "user@error.example")
	if rc.Get("Action") != "failed" || !strings.HasPrefix(rc.Get("Status"), "5.") {
		t.Errorf("Action %q Status %q, want failed 5.x.x", rc.Get("Action"), rc.Get("Status"))
	}
	if d := rc.Get("Diagnostic-Code"); !strings.Contains(d, "no mail here") {
		t.Errorf("Diagnostic-Code %q lacks the text of the error: entry", d)
	}
	l := remoteWaitStatus(t, in, "user@discard.example", "sent", 5*time.Second)
	if !strings.Contains(l, "(discarded") {
		t.Errorf("discard log line: %s", l)
	}
	l = remoteWaitStatus(t, in, "user@fwd.example", "sent", 5*time.Second)
	if !strings.Contains(l, "relay=127.0.0.71[127.0.0.71]:2525") {
		t.Errorf("log line names the wrong relay: %s", l)
	}
	remoteWaitStatus(t, in, "user@error.example", "bounced", 5*time.Second)
	for _, q := range in.DNS.Queries() {
		if strings.HasSuffix(q, ".example") && !strings.HasSuffix(q, "example.test") {
			t.Errorf("DNS asked %q: transport_maps entries need no lookup", q)
		}
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestRemoteBackoff: the wait between attempts doubles from
// minimal_backoff_time (1 s) and stops at maximal_backoff_time (4 s):
// about 1, 2, 4, 4 s, each up to queue_run_delay (1 s) later, since the
// deferred queue is scanned that often.
func TestRemoteBackoff(t *testing.T) {
	in := Start(t, Options{Settings: []string{
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 4s",
		"queue_run_delay = 1s",
	}})
	remoteSubmit(t, in, "demo@example.test", []string{"user@remote.example"}, "Subject: backoff\r\n\r\nbody\r\n")
	// The test's own clock: when each deferral line appears.
	var at []time.Time
	for end := time.Now().Add(25 * time.Second); len(at) < 5 && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		n := 0
		for _, l := range remoteLogLines(in, "user@remote.example") {
			if strings.Contains(l, "status=deferred") {
				n++
			}
		}
		for len(at) < n {
			at = append(at, time.Now())
		}
	}
	if len(at) < 5 {
		t.Fatalf("%d attempts in 25 s, want 5:\n%s", len(at), in.Log())
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, w := range want {
		gap := at[i+1].Sub(at[i])
		t.Logf("wait before attempt %d: %s (backoff %s)", i+2, gap.Round(10*time.Millisecond), w)
		// A little under the backoff for the clock's and the log's
		// granularity; at most one queue_run_delay (and some slack) over.
		if gap < w-300*time.Millisecond || gap > w+2*time.Second {
			t.Errorf("wait before attempt %d was %s, want %s (+ up to queue_run_delay)", i+2, gap.Round(10*time.Millisecond), w)
		}
	}
	if n := len(Messages(in.Maildir("demo"))); n != 0 {
		t.Errorf("the sender got %d notices (delay_warning_time is 4h)", n)
	}
}

// TestRemoteDelayWarning: mail that cannot be delivered yet (SERVFAIL)
// gets the sender one "still trying" notice after delay_warning_time, and
// only one, while the message stays queued; after maximal_queue_lifetime
// one failure report, and the queue empties. The lifetime (8 s) leaves
// room for at least two more deferred attempts after the notice (one
// every 1-2 s), so that a notice per attempt would show.
func TestRemoteDelayWarning(t *testing.T) {
	in := Start(t, Options{Settings: append([]string{
		"delay_warning_time = 1s",
		"maximal_queue_lifetime = 8s",
		"bounce_queue_lifetime = 8s",
	}, remoteFastRetry...)})
	msg := "Subject: slow mail\r\nMessage-ID: <delay-1@example.test>\r\n\r\nbody\r\n"
	id := remoteSubmit(t, in, "demo@example.test", []string{"user@remote.example"}, msg)
	files := WaitMessages(t, in.Maildir("demo"), 1, 15*time.Second)
	if len(files) == 0 {
		t.Fatalf("no delay notice:\n%s", in.Log())
	}
	if out, _ := in.Postern("queue", "list"); !strings.Contains(out, id) {
		t.Errorf("%s left the queue with its delay notice:\n%s", id, out)
	}
	warn := parseReport(t, files[0])
	if s := warn.Header.Get("Subject"); !strings.Contains(s, "Delayed Mail") {
		t.Errorf("delay notice Subject %q", s)
	}
	rc := remoteOnlyRcpt(t, warn, "user@remote.example")
	if rc.Get("Action") != "delayed" || !strings.HasPrefix(rc.Get("Status"), "4.") {
		t.Errorf("delay notice: Action %q Status %q, want delayed 4.x.x", rc.Get("Action"), rc.Get("Status"))
	}
	if rc.Get("Will-Retry-Until") == "" {
		t.Errorf("delay notice without Will-Retry-Until")
	}
	if rc.Get("Diagnostic-Code") == "" {
		t.Errorf("delay notice without Diagnostic-Code")
	}
	// Expiry: a second report, the failure.
	files = WaitMessages(t, in.Maildir("demo"), 2, 20*time.Second)
	if len(files) < 2 {
		t.Fatalf("no failure report after expiry:\n%s", in.Log())
	}
	waitQueueEmpty(t, in, 10*time.Second)
	time.Sleep(2 * time.Second) // room for a wrong extra notice
	files = Messages(in.Maildir("demo"))
	var kinds []string
	failures := 0
	for _, f := range files {
		p := parseReport(t, f)
		rc := remoteOnlyRcpt(t, p, "user@remote.example")
		kinds = append(kinds, rc.Get("Action"))
		if rc.Get("Action") == "failed" {
			failures++
			if st := rc.Get("Status"); !strings.HasPrefix(st, "4.") && !strings.HasPrefix(st, "5.") {
				t.Errorf("failure report Status %q", st)
			}
			if rc.Get("Diagnostic-Code") == "" {
				t.Errorf("failure report without Diagnostic-Code")
			}
			if s := p.Header.Get("Subject"); !strings.Contains(s, "Undelivered") {
				t.Errorf("failure report Subject %q", s)
			}
		}
	}
	if len(files) != 2 || failures != 1 {
		t.Errorf("the sender got %d reports with actions %v; want one delayed, then one failed", len(files), kinds)
	}
	// The "only one" above means something only if attempts went on
	// after the notice.
	log := in.Log()
	after := 0
	if i := strings.Index(log, id+": sender delay notification"); i >= 0 {
		after = strings.Count(log[i:], id+": to=<user@remote.example>, relay=none") - strings.Count(log[i:], "status=expired")
	}
	if after < 2 {
		t.Errorf("only %d deferred attempts after the delay notice: the test proves little", after)
	}
	if !strings.Contains(log, "status=expired") {
		t.Errorf("no status=expired log line")
	}
}

// TestRemoteCrash: qmgr and smtp are killed (SIGKILL) several times while
// ten clients send to a working remote MX; every message that got its
// 250 reaches the MX (duplicates are allowed: at-least-once).
func TestRemoteCrash(t *testing.T) {
	sink := StartSink(t, "127.0.0.91", 25, nil)
	in := Start(t, Options{Settings: append([]string{"maximal_queue_lifetime = 1h"}, remoteFastRetry...)})
	in.DNS.MX("crash.example", 10, "mx.crash.example")
	in.DNS.A("mx.crash.example", "127.0.0.91")
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1e6)

	var (
		mu       sync.Mutex
		acked    []string
		failures atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for s := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				token := fmt.Sprintf("rcrash-%s-%02d-%04d", run, s, n)
				msg := fmt.Sprintf("Subject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\nbody of %s\r\n", token, token, token)
				if _, err := remoteTrySubmit(in.Addr, "demo@example.test", []string{fmt.Sprintf("s%d@crash.example", s)}, msg); err != nil {
					failures.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked = append(acked, token)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	// qmgr and smtp in turn, each as soon as master has it running
	// again (smtp runs while there is mail to deliver, which the senders
	// make sure of).
	for round := range 6 {
		time.Sleep(500 * time.Millisecond)
		target := []string{"qmgr", "smtp"}[round%2]
		var pids []int
		for end := time.Now().Add(10 * time.Second); len(pids) == 0 && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			pids = in.Daemons()[target]
		}
		if len(pids) == 0 {
			t.Errorf("round %d: no %s process to kill within 10 s (master did not start it again?)", round, target)
			continue
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Logf("round %d: kill -9 %s %v", round, target, pids)
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	ack := append([]string(nil), acked...)
	mu.Unlock()
	t.Logf("%d acknowledged, %d sessions failed (expected while daemons were down)", len(ack), failures.Load())
	if len(ack) < 50 {
		t.Errorf("only %d messages acknowledged", len(ack))
	}

	// Drain: every acknowledged message must reach the sink.
	deadline := time.Now().Add(60 * time.Second)
	lastFlush := time.Now()
	subj := regexp.MustCompile(`(?m)^Subject: (rcrash-\S+)\r?$`)
	var seen map[string]int
	for {
		seen = map[string]int{}
		for _, m := range sink.Wait(0, 0) {
			if s := subj.FindStringSubmatch(m.Data); s != nil {
				seen[s[1]]++
			}
		}
		missing := 0
		for _, a := range ack {
			if seen[a] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := in.Postern("queue", "list")
			for i, a := range ack {
				if seen[a] == 0 && i < 1000 {
					t.Errorf("LOST: %s was acknowledged but never reached the MX", a)
				}
			}
			t.Fatalf("%d of %d acknowledged messages lost; queue:\n%s", missing, len(ack), out)
		}
		if time.Since(lastFlush) > 5*time.Second {
			in.Postern("queue", "flush")
			lastFlush = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	dups := 0
	for _, a := range ack {
		if seen[a] > 1 {
			dups++
		}
	}
	t.Logf("all %d acknowledged messages reached the MX; %d more than once (allowed)", len(ack), dups)
	waitQueueEmpty(t, in, 30*time.Second)
	if ents, _ := os.ReadDir(filepath.Join(in.Spool, "corrupt")); len(ents) > 0 {
		t.Errorf("corrupt/ holds %d files after the kills", len(ents))
	}
	if strings.Contains(in.Log(), "panic:") {
		t.Errorf("a daemon panicked")
	}
}

// --- helpers -----------------------------------------------------------

var remoteQueuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// remoteSubmit sends one message to the instance over plain SMTP, with the
// given MAIL FROM parameters ("SMTPUTF8", "BODY=8BITMIME"), and returns
// its queue ID. Unlike net/smtp it adds no parameter of its own.
func remoteSubmit(t *testing.T, in *Instance, from string, to []string, msg string, params ...string) string {
	t.Helper()
	id, err := remoteTrySubmit(in.Addr, from, to, msg, params...)
	if err != nil {
		t.Fatalf("remoteSubmit: %v", err)
	}
	return id
}

// remoteTrySubmit is remoteSubmit for goroutines: it returns the error.
func remoteTrySubmit(addr, from string, to []string, msg string, params ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	tp := textproto.NewConn(c)
	step := func(code int, format string, args ...any) (string, error) {
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				return "", err
			}
		}
		_, m, err := tp.ReadResponse(code)
		return m, err
	}
	if _, err := step(220, ""); err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if _, err := step(250, "EHLO client.test"); err != nil {
		return "", fmt.Errorf("EHLO: %w", err)
	}
	p := ""
	if len(params) > 0 {
		p = " " + strings.Join(params, " ")
	}
	if _, err := step(250, "MAIL FROM:<%s>%s", from, p); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range to {
		if _, err := step(250, "RCPT TO:<%s>", r); err != nil {
			return "", fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	if _, err := step(354, "DATA"); err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	w := tp.DotWriter()
	if _, err := io.WriteString(w, msg); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	m, err := step(250, "")
	if err != nil {
		return "", fmt.Errorf("end of data: %w", err)
	}
	step(221, "QUIT")
	if s := remoteQueuedAs.FindStringSubmatch(m); s != nil {
		return s[1], nil
	}
	return "", nil
}

// remoteLogLines returns the log lines about rcpt's delivery ("to=<rcpt>,").
func remoteLogLines(in *Instance, rcpt string) []string {
	var out []string
	for _, l := range strings.Split(in.Log(), "\n") {
		if strings.Contains(l, "to=<"+rcpt+">,") {
			out = append(out, l)
		}
	}
	return out
}

// remoteWaitStatus waits for the log line that gives rcpt the status (sent,
// deferred, bounced, expired) and returns it.
func remoteWaitStatus(t *testing.T, in *Instance, rcpt, status string, d time.Duration) string {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		for _, l := range remoteLogLines(in, rcpt) {
			if strings.Contains(l, "status="+status) {
				return l
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no status=%s log line for <%s> within %s; its lines:\n%s\nlog:\n%s", status, rcpt, d, strings.Join(remoteLogLines(in, rcpt), "\n"), in.Log())
		}
	}
}

// remoteWaitAnyStatus waits for the first delivery log line of rcpt, whatever
// its status.
func remoteWaitAnyStatus(t *testing.T, in *Instance, rcpt string, d time.Duration) string {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		for _, l := range remoteLogLines(in, rcpt) {
			if strings.Contains(l, "status=") {
				return l
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no delivery log line for <%s> within %s:\n%s", rcpt, d, in.Log())
		}
	}
}

// remoteReport waits for the first message in demo@example.test's Maildir,
// checks that it is a report from the null sender, and parses it.
func remoteReport(t *testing.T, in *Instance, d time.Duration) *dsn.Parsed {
	t.Helper()
	files := WaitMessages(t, in.Maildir("demo"), 1, d)
	if len(files) == 0 {
		t.Fatalf("no report for the sender within %s:\n%s", d, in.Log())
	}
	b, _ := os.ReadFile(files[0])
	if !bytes.HasPrefix(b, []byte("Return-Path: <>\n")) {
		t.Errorf("report not from the null sender:\n%.300s", b)
	}
	return parseReport(t, files[0])
}

// remoteOnlyRcpt checks that a report is about rcpt alone and returns its
// per-recipient fields.
func remoteOnlyRcpt(t *testing.T, p *dsn.Parsed, rcpt string) textproto.MIMEHeader {
	t.Helper()
	if len(p.Recipients) != 1 {
		var names []string
		for _, r := range p.Recipients {
			names = append(names, r.Get("Final-Recipient"))
		}
		t.Fatalf("report about %d recipients %v, want only %s", len(p.Recipients), names, rcpt)
	}
	r := p.Recipients[0]
	if fr := r.Get("Final-Recipient"); !strings.HasSuffix(strings.ToLower(fr), ";"+rcpt) && !strings.HasSuffix(strings.ToLower(fr), "; "+rcpt) {
		t.Errorf("Final-Recipient %q, want %s", fr, rcpt)
	}
	return r
}

func remoteSinkRcpts(ms []SinkMessage) int {
	n := 0
	for _, m := range ms {
		n += len(m.Rcpts)
	}
	return n
}

// remoteAssertFree fails the test when addr takes connections: the
// test needs it dead.
func remoteAssertFree(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("something listens on %s; the test needs it free", addr)
	}
}

// remoteTable writes a lookup table into a directory of its own that
// every daemon can read.
func remoteTable(t *testing.T, name, content string) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// remoteTLS is a server TLS configuration with a fresh self-signed
// certificate for names.
func remoteTLS(t *testing.T, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// remoteSilent accepts connections and never says anything.
type remoteSilent struct {
	n atomic.Int64
}

func (s *remoteSilent) count() int { return int(s.n.Load()) }

func startRemoteSilent(t *testing.T, addr string) *remoteSilent {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("silent server: %v", err)
	}
	s := &remoteSilent{}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c) // read whatever comes, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return s
}

// lmtpServer is a scripted LMTP server (RFC 2033): LHLO, MAIL, RCPT,
// DATA with one reply per accepted recipient after the data, RSET, NOOP,
// QUIT. It refuses HELO and EHLO (an LMTP client must say LHLO).
type lmtpServer struct {
	reply func(rcpt string) string // the reply after the data for rcpt

	mu    sync.Mutex
	txns  []lmtpTxn
	lhlo  bool
	conns []net.Conn
}

type lmtpTxn struct {
	from  string
	rcpts []string
	data  string
}

func startLMTP(t *testing.T, addr string, reply func(rcpt string) string) *lmtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("lmtp server: %v", err)
	}
	s := &lmtpServer{reply: reply}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *lmtpServer) transactions() []lmtpTxn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]lmtpTxn(nil), s.txns...)
}

func (s *lmtpServer) sawLHLO() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lhlo
}

// lmtpPath returns what is lmtpPath < and > in a MAIL or RCPT line.
func lmtpPath(line string) string {
	i, j := strings.IndexByte(line, '<'), strings.IndexByte(line, '>')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}

func (s *lmtpServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	say := func(lines ...string) {
		for _, l := range lines {
			bw.WriteString(l + "\r\n")
		}
		bw.Flush()
	}
	say("220 lmtp.test LMTP ready")
	var cur *lmtpTxn
	for {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		if i := strings.IndexByte(verb, ':'); i >= 0 {
			verb = verb[:i]
		}
		switch verb {
		case "LHLO":
			s.mu.Lock()
			s.lhlo = true
			s.mu.Unlock()
			say("250-lmtp.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 8BITMIME")
		case "MAIL":
			cur = &lmtpTxn{from: lmtpPath(line)}
			say("250 2.1.0 Ok")
		case "RCPT":
			if cur == nil {
				say("503 5.5.1 Error: need MAIL command")
				continue
			}
			cur.rcpts = append(cur.rcpts, lmtpPath(line))
			say("250 2.1.5 Ok")
		case "DATA":
			if cur == nil || len(cur.rcpts) == 0 {
				say("503 5.5.1 Error: need RCPT command")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			cur.data = data.String()
			var replies []string
			for _, r := range cur.rcpts {
				replies = append(replies, s.reply(r))
			}
			s.mu.Lock()
			s.txns = append(s.txns, *cur)
			s.mu.Unlock()
			cur = nil
			say(replies...)
		case "RSET":
			if cur != nil {
				s.mu.Lock()
				s.txns = append(s.txns, *cur)
				s.mu.Unlock()
			}
			cur = nil
			say("250 2.0.0 Ok")
		case "NOOP":
			say("250 2.0.0 Ok")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("500 5.5.2 Error: command not recognized")
		}
	}
}
