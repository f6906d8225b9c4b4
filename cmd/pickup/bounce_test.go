package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/internal/dsn"
	"postern/internal/ipc"
	"postern/internal/maildrop"
)

// submission is what the fake cleanup received.
type submission struct {
	req  *ipc.Msg
	body string
}

// fakeCleanup listens on private/cleanup (in the test's spool) and
// answers each submission with answer, which returns the status, dsn and
// reason for the envelope (before) or the message (after).
type fakeCleanup struct {
	mu     sync.Mutex
	got    []submission
	answer func(req *ipc.Msg, afterBody bool) (status, code, reason string)
}

func startCleanup(t *testing.T, answer func(*ipc.Msg, bool) (string, string, string)) *fakeCleanup {
	t.Helper()
	if err := os.MkdirAll("private", 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: "private/cleanup", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeCleanup{answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			uc, err := l.AcceptUnix()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); fc.serve(uc) }()
		}
	}()
	return fc
}

func (fc *fakeCleanup) serve(uc *net.UnixConn) {
	c := ipc.NewConn(uc, 1<<20)
	defer c.Close()
	req, _, err := c.Recv(5 * time.Second)
	if err != nil {
		return
	}
	if st, code, why := fc.answer(req, false); st != "ok" {
		c.Send(ipc.NewMsg("status", st, "dsn", code, "reason", why))
		return
	}
	c.Send(ipc.NewMsg("status", "ok", "queue_id", "Q1"))
	body, err := io.ReadAll(c.StreamReader(0, 5*time.Second))
	if err != nil {
		return // aborted
	}
	fc.mu.Lock()
	fc.got = append(fc.got, submission{req, string(body)})
	fc.mu.Unlock()
	st, code, why := fc.answer(req, true)
	if st == "ok" {
		c.Send(ipc.NewMsg("status", "ok", "queue_id", "BOUNCE1"))
		return
	}
	c.Send(ipc.NewMsg("status", st, "dsn", code, "reason", why))
}

func (fc *fakeCleanup) received() []submission {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]submission(nil), fc.got...)
}

// isBounce tells pickup's own submissions from its bounces.
func isBounce(req *ipc.Msg) bool { return req.Get("origin") != "local" }

func TestBounceTooBig(t *testing.T) {
	p := inSpool(t)
	p.maxSize, p.myhostname = 1000, "mx.example"
	fc := startCleanup(t, func(req *ipc.Msg, after bool) (string, string, string) {
		if !isBounce(req) && after {
			return "perm", "5.3.4", "Error: message file too big"
		}
		return "ok", "", ""
	})
	env := &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Login: "alice", Sender: "alice", Recipients: []string{"bob@example.org"}}
	name := dropFile(t, env, "Subject: huge\nX-Mark: héllo\n\n"+strings.Repeat("body line\n", 200), 0o744)
	if !p.process(name) {
		t.Fatal("stopped the scan")
	}
	if exists(name) || exists(name+".rejected") {
		t.Error("maildrop file kept after the bounce was queued")
	}
	got := fc.received()
	if len(got) != 2 || !isBounce(got[1].req) {
		t.Fatalf("cleanup got %d submissions", len(got))
	}
	b := got[1]
	if b.req.Get("sender") != "" || b.req.Get("rcpt") != "alice@host.example" || b.req.Get("protocol") != "bounce" || b.req.Get("body") != "8BITMIME" {
		t.Errorf("bounce request %v %v %v", b.req.Get("sender"), b.req.All("rcpt"), b.req.Get("body"))
	}
	r, err := dsn.Parse(strings.NewReader(b.body))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Recipients) != 1 || r.Recipients[0].Get("Final-Recipient") != "rfc822; bob@example.org" ||
		r.Recipients[0].Get("Status") != "5.3.4" || r.Recipients[0].Get("Diagnostic-Code") != "X-Postern; Error: message file too big" {
		t.Errorf("recipients %v", r.Recipients)
	}
	if r.Original != "text/rfc822-headers" || !strings.Contains(b.body, "Subject: huge\r\n") || strings.Contains(b.body, "body line") {
		t.Errorf("original %q:\n%s", r.Original, b.body)
	}
	if r.Header.Get("To") == "" || !strings.Contains(r.Header.Get("To"), "alice@host.example") {
		t.Errorf("To %q", r.Header.Get("To"))
	}
}

func TestBounceNoRecipients(t *testing.T) {
	p := inSpool(t)
	p.maxSize, p.myhostname = 1<<20, "mx.example"
	fc := startCleanup(t, func(*ipc.Msg, bool) (string, string, string) { return "ok", "", "" })
	env := &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Login: "alice", Sender: "me@example.org", SenderSet: true, Extract: true}
	name := dropFile(t, env, "To: <<bad\nSubject: lost\n\nthe text\n", 0o744)
	if !p.process(name) {
		t.Fatal("stopped the scan")
	}
	if exists(name) {
		t.Error("maildrop file kept")
	}
	got := fc.received()
	if len(got) != 1 || !isBounce(got[0].req) || got[0].req.Get("rcpt") != "me@example.org" {
		t.Fatalf("cleanup got %+v", got)
	}
	r, err := dsn.Parse(strings.NewReader(got[0].body))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Recipients) != 1 || !strings.Contains(r.Recipients[0].Get("Diagnostic-Code"), "no recipient addresses found in message header") {
		t.Errorf("recipients %v", r.Recipients)
	}
	// The whole message comes back: it was small.
	if r.Original != "message/rfc822" || !strings.Contains(got[0].body, "the text\r\n") {
		t.Errorf("original %q", r.Original)
	}
}

func TestBounceNullSender(t *testing.T) {
	p := inSpool(t)
	p.maxSize, p.myhostname = 1<<20, "mx.example"
	fc := startCleanup(t, func(req *ipc.Msg, after bool) (string, string, string) {
		if !isBounce(req) {
			return "perm", "5.5.4", "3 recipients, more than 2"
		}
		return "ok", "", ""
	})
	env := &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Sender: "", SenderSet: true, Recipients: []string{"a", "b", "c"}}
	name := dropFile(t, env, "Subject: x\n\nx\n", 0o744)
	p.process(name)
	got := fc.received()
	if exists(name) || len(got) != 1 || got[0].req.Get("rcpt") != "postmaster@mx.example" || got[0].req.Get("protocol") != "double-bounce" {
		t.Fatalf("kept %v; cleanup got %+v", exists(name), got)
	}
	r, err := dsn.Parse(strings.NewReader(got[0].body))
	if err != nil || len(r.Recipients) != 3 || r.Recipients[2].Get("Status") != "5.5.4" {
		t.Errorf("report %v %v", r, err)
	}
}

func TestBounceRefused(t *testing.T) {
	p := inSpool(t)
	p.maxSize, p.myhostname = 1<<20, "mx.example"
	bounceStatus := "temp"
	fc := startCleanup(t, func(req *ipc.Msg, after bool) (string, string, string) {
		if !isBounce(req) {
			return "perm", "5.4.6", "Error: too many hops"
		}
		if after {
			return bounceStatus, "5.3.4", "Error: message file too big"
		}
		return "ok", "", ""
	})
	env := &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Login: "alice", Sender: "alice", Recipients: []string{"bob"}}
	name := dropFile(t, env, "Subject: x\n\nx\n", 0o744)
	// A temporary failure of the bounce: the file waits.
	if !p.process(name) || !exists(name) {
		t.Fatal("file gone after a temporary failure of its bounce")
	}
	// A permanent one: the file is kept aside.
	bounceStatus = "perm"
	p.process(name)
	if exists(name) || !exists(name+".rejected") {
		t.Error("not moved to .rejected")
	}
	if n := len(fc.received()); n != 2 {
		t.Errorf("%d bounces tried, want 2", n)
	}
}

func TestBounceWithoutCleanup(t *testing.T) {
	p := inSpool(t)
	p.myhostname = "mx.example"
	env := &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Login: "alice", Sender: "alice", Extract: true}
	name := dropFile(t, env, "Subject: x\n\nx\n", 0o744)
	if p.process(name) || !exists(name) {
		t.Error("a bounce without cleanup: the scan goes on, or the file went")
	}
}

func TestReportRefusal(t *testing.T) {
	var b bytes.Buffer
	err := dsn.Write(&b, &dsn.Report{ReportingMTA: "x"}, nil)
	if !isReportRefusal(err) || isReportRefusal(errors.New("read error")) {
		t.Errorf("isReportRefusal(%v)", err)
	}
}
