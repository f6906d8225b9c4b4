package tests

import (
	"net/smtp"
	"os"
	"strings"
	"testing"
	"time"

	"postern/internal/dsn"
)

// parseReport reads a delivery status notification from a Maildir file.
func parseReport(t *testing.T, file string) *dsn.Parsed {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Skip the Return-Path/Delivered-To lines local adds; the report
	// itself starts at the next header.
	p, err := dsn.Parse(strings.NewReader(strings.ReplaceAll(string(b), "\n", "\r\n")))
	if err != nil {
		t.Fatalf("%s is not a delivery report: %v\n%s", file, err, b)
	}
	return p
}

// TestBouncePermanentFailure: a recipient that fails for good at delivery
// (an alias to a command that exits 67, EX_NOUSER) gets the sender an RFC 3464
// report from the null sender, and the message leaves the queue.
func TestBouncePermanentFailure(t *testing.T) {
	in := Start(t, Options{Aliases: "postmaster: demo@example.test\nbroken: \"|exit 67\"\n"})
	msg := "Subject: will fail\r\nMessage-ID: <fail-1@example.test>\r\n\r\nbody\r\n"
	if err := smtp.SendMail(in.Addr, nil, "demo@example.test", []string{"broken@localhost"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	files := WaitMessages(t, in.Maildir("demo"), 1, 15*time.Second)
	if len(files) != 1 {
		t.Fatalf("no report in the sender's mailbox:\n%s", in.Log())
	}
	b, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(b), "Return-Path: <>\n") {
		t.Errorf("report not from the null sender:\n%.300s", b)
	}
	p := parseReport(t, files[0])
	if len(p.Recipients) != 1 {
		t.Fatalf("recipients in report: %d", len(p.Recipients))
	}
	r := p.Recipients[0]
	if got := r.Get("Final-Recipient"); !strings.Contains(got, "broken@localhost") {
		t.Errorf("Final-Recipient %q", got)
	}
	if r.Get("Action") != "failed" || !strings.HasPrefix(r.Get("Status"), "5.") {
		t.Errorf("Action %q Status %q", r.Get("Action"), r.Get("Status"))
	}
	if r.Get("Diagnostic-Code") == "" {
		t.Errorf("no Diagnostic-Code")
	}
	if !strings.Contains(string(b), "fail-1@example.test") {
		t.Errorf("the original message is not in the report")
	}
	if !in.WaitLog("sender non-delivery notification", 5*time.Second) {
		t.Errorf("no notification log line")
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestBounceExpired: a message that cannot be delivered (no remote
// transport here) past maximal_queue_lifetime is returned to the sender.
func TestBounceExpired(t *testing.T) {
	in := Start(t, Options{Settings: []string{
		"maximal_queue_lifetime = 3s", "minimal_backoff_time = 1s",
		"maximal_backoff_time = 1s", "queue_run_delay = 1s",
	}})
	msg := "Subject: will expire\r\n\r\nbody\r\n"
	if err := smtp.SendMail(in.Addr, nil, "demo@example.test", []string{"user@remote.example"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	files := WaitMessages(t, in.Maildir("demo"), 1, 20*time.Second)
	if len(files) != 1 {
		t.Fatalf("no report after expiry:\n%s", in.Log())
	}
	r := parseReport(t, files[0]).Recipients
	if len(r) != 1 || r[0].Get("Action") != "failed" || !strings.Contains(r[0].Get("Final-Recipient"), "user@remote.example") {
		t.Fatalf("report recipients: %v", r)
	}
	if !strings.Contains(in.Log(), "status=expired") {
		t.Errorf("no status=expired log line")
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestBounceDouble: a bounce that cannot be delivered goes to the
// postmaster, and is never bounced again.
func TestBounceDouble(t *testing.T) {
	in := Start(t, Options{Aliases: "postmaster: demo@example.test\nbroken: \"|exit 67\"\n"})
	msg := "Subject: a bounce that bounces\r\n\r\nbody\r\n"
	if err := smtp.SendMail(in.Addr, nil, "", []string{"broken@localhost"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	files := WaitMessages(t, in.Maildir("demo"), 1, 15*time.Second)
	if len(files) != 1 {
		t.Fatalf("no postmaster copy:\n%s", in.Log())
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "Postmaster Copy") {
		t.Errorf("not a postmaster copy:\n%.500s", b)
	}
	if !in.WaitLog("postmaster non-delivery notification", 5*time.Second) {
		t.Errorf("no postmaster notification log line")
	}
	waitQueueEmpty(t, in, 10*time.Second)
	time.Sleep(time.Second)
	if n := len(Messages(in.Maildir("demo"))); n != 1 {
		t.Errorf("%d messages for the postmaster, want exactly 1", n)
	}
}

func waitQueueEmpty(t *testing.T, in *Instance, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		out, _ := in.Postern("queue", "list")
		if strings.Contains(out, "Mail queue is empty") {
			return
		}
	}
	out, _ := in.Postern("queue", "list")
	t.Errorf("queue not empty:\n%s", out)
}
