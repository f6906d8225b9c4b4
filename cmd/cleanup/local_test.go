package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"postern/internal/queue"
)

func addFor(sender, name string) *additions {
	env := &queue.Envelope{Sender: sender, Arrival: time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)}
	return &additions{hostname: "mx.example", id: "0123456789ABCDEF01", env: env, fullName: name}
}

func copyWith(t *testing.T, in string, add *additions) (string, *headerScan) {
	t.Helper()
	var b bytes.Buffer
	hs := &headerScan{add: add}
	n, err := copyMessage(&b, strings.NewReader(in), hs)
	if err != nil || n != int64(b.Len()) {
		t.Fatalf("copy: n %d len %d err %v", n, b.Len(), err)
	}
	return b.String(), hs
}

func TestLocalAdditions(t *testing.T) {
	out, _ := copyWith(t, "Subject: hi\r\nTo: bob@example.org\r\n\r\nbody\r\n", addFor("alice@example.org", "Alice Liddell"))
	want := "Subject: hi\r\nTo: bob@example.org\r\n" +
		"Message-Id: <20261203070000.0123456789ABCDEF01@mx.example>\r\n" +
		"Date: Thu, 3 Dec 2026 07:00:00 +0000 (UTC)\r\n" +
		"From: Alice Liddell <alice@example.org>\r\n\r\nbody\r\n"
	if out != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}

	in := "From: me@x\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n"
	out, hs := copyWith(t, in, addFor("alice@example.org", ""))
	if out != in || hs.messageID != "<a@b>" {
		t.Errorf("complete message changed: %q", out)
	}

	// No header section at all, and only headers without an end.
	out, _ = copyWith(t, "", addFor("", ""))
	if !strings.Contains(out, "From: MAILER-DAEMON@mx.example\r\n") || !strings.HasPrefix(out, "Message-Id: ") {
		t.Errorf("empty message: %q", out)
	}
	out, _ = copyWith(t, "Subject: x", addFor("a@b", ""))
	if !strings.HasPrefix(out, "Subject: x\r\nMessage-Id: ") {
		t.Errorf("unterminated header: %q", out)
	}
	// The body begins without an empty line: one is put after the additions.
	out, _ = copyWith(t, "Subject: x\r\njust text\r\n", addFor("a@b", ""))
	if !strings.Contains(out, "From: a@b\r\n\r\njust text\r\n") {
		t.Errorf("no separator: %q", out)
	}
	// Without add, nothing changes.
	out, _ = copyWith(t, "Subject: x\r\n\r\n", nil)
	if out != "Subject: x\r\n\r\n" {
		t.Errorf("smtpd message changed: %q", out)
	}
}

func TestPhrase(t *testing.T) {
	for in, want := range map[string]string{
		"Alice Liddell":  "Alice Liddell",
		"  Bob   Smith ": "Bob Smith",
		"Smith, John":    `"Smith, John"`,
		`a "b" \c`:       `"a \"b\" \\c"`,
		"Jürgen":         "=?utf-8?q?J=C3=BCrgen?=",
		"":               "",
		"bad\x01":        "",
	} {
		if got := phrase(in); got != want {
			t.Errorf("phrase(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCopyMessage(f *testing.F) {
	f.Add("Subject: x\r\n\r\nbody\r\n")
	f.Add("From: a\r\n continued\r\nDate: x")
	f.Fuzz(func(t *testing.T, in string) {
		var b bytes.Buffer
		hs := &headerScan{add: addFor("a@b", "N")}
		n, err := copyMessage(&b, strings.NewReader(in), hs)
		if err != nil || n != int64(b.Len()) {
			t.Fatalf("n %d len %d err %v", n, b.Len(), err)
		}
		if !strings.Contains(b.String(), "Message-Id:") && !strings.Contains(strings.ToLower(in), "message-id") {
			t.Fatalf("no Message-Id added: %q", b.String())
		}
	})
}
