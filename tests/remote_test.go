package tests

import (
	"net/smtp"
	"strings"
	"testing"
	"time"
)

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
