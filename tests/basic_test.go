package tests

import (
	"net/smtp"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDeliverGo is the smallest whole path: Go's net/smtp to smtpd,
// cleanup, qmgr, local, Maildir.
func TestDeliverGo(t *testing.T) {
	in := Start(t, Options{})
	msg := "From: a@example.org\r\nTo: demo@example.test\r\nSubject: go\r\n\r\nhello from net/smtp\r\n"
	if err := smtp.SendMail(in.Addr, nil, "a@example.org", []string{"demo@example.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	files := WaitMessages(t, in.Maildir("demo"), 1, 10*time.Second)
	if len(files) != 1 {
		t.Fatalf("want 1 message, have %d\n%s", len(files), in.Log())
	}
	b, _ := os.ReadFile(files[0])
	if !strings.HasSuffix(string(b), strings.ReplaceAll(msg, "\r\n", "\n")) {
		t.Fatalf("message differs:\n%s", b)
	}
}

// TestDeliverUnprivileged runs the whole Postern as an ordinary user
// (posterntest when the tests run as root): no chroot, no uid changes, one
// warning line, and mail still arrives.
func TestDeliverUnprivileged(t *testing.T) {
	in := Start(t, Options{Unprivileged: true})
	if !in.WaitLog("not root: every daemon runs as this user", 5*time.Second) {
		t.Errorf("no warning about running unprivileged:\n%s", in.Log())
	}
	msg := "Subject: unpriv\r\n\r\nhello\r\n"
	if err := smtp.SendMail(in.Addr, nil, "a@example.org", []string{"other@example.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if files := WaitMessages(t, in.Maildir("other"), 1, 10*time.Second); len(files) != 1 {
		t.Fatalf("want 1 message, have %d\n%s", len(files), in.Log())
	}
}
