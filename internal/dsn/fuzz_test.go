package dsn

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes: it must return, without
// panicking, within its size limit.
func FuzzParse(f *testing.F) {
	for k := Failure; k <= Relayed; k++ {
		var b bytes.Buffer
		if err := Write(&b, sample(k), strings.NewReader(origMsg)); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n" +
		"--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\n\r\n" +
		"Final-Recipient: rfc822; b\r\n  folded\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n"))
	f.Add([]byte("Content-Type: multipart/report; boundary=\"\"\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Parse(bytes.NewReader(in))
		if err == nil && p.Message == nil {
			t.Fatal("no error and no per-message fields")
		}
	})
}

// FuzzWrite renders reports from hostile peer text and checks that every
// line is a CRLF line of at most 998 octets, that the MIME structure holds
// (three parts, the original intact) and that the text stays in its
// fields: one recipient group comes back, with the address it was given
// once cleaned.
func FuzzWrite(f *testing.F) {
	f.Add("bob@example.net", "rfc822;bob@example.net", "smtp; 550 5.1.1 user unknown", "mx.example.net", "5.1.1", "env", false)
	f.Add("a\r\nAction: delivered", "x", "550\r\n\r\n--=_\r\n", "h\r\n", "", "a\r\nb", true)
	f.Add("jörg@bücher.example", "utf-8;jörg", "smtp; 550 "+strings.Repeat("ä", 600), "", "4.4.4", "", false)
	f.Fuzz(func(t *testing.T, addr, orcpt, diag, remote, status, envid string, eight bool) {
		r := sample(Failure)
		r.EnvID = envid
		r.Original8Bit = eight
		r.Recipients = []Recipient{{Addr: addr, ORcpt: orcpt, Diagnostic: diag, RemoteMTA: remote, Status: status, Reason: diag}}
		var b bytes.Buffer
		err := Write(&b, r, strings.NewReader(origMsg))
		if errors.Is(err, ErrNoAddress) && clean(addr, true, maxAddr) == "" {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for i, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if strings.ContainsAny(line, "\r\n") || len(line) > 998 {
				t.Fatalf("line %d: %q", i+1, line)
			}
		}
		if !r.International() && !isASCII(out) {
			t.Fatal("non-ASCII in a 7-bit report")
		}
		p, err := Parse(strings.NewReader(out))
		if err != nil {
			t.Fatalf("Parse: %v\n%s", err, out)
		}
		if len(p.Recipients) != 1 {
			t.Fatalf("%d recipient groups\n%s", len(p.Recipients), out)
		}
		want := clean(addr, r.International(), maxAddr)
		if got := p.Recipients[0].Get("Final-Recipient"); got != addrType(want)+"; "+want {
			t.Fatalf("Final-Recipient %q, want %q", got, want)
		}
		msg, err := mail.ReadMessage(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		for i := 0; i < 3; i++ {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v", i+1, err)
			}
			body, err := io.ReadAll(part)
			if err != nil {
				t.Fatal(err)
			}
			if i == 2 && string(body) != origMsg {
				t.Fatalf("original changed: %q", body)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Fatalf("after the original: %v", err)
		}
	})
}
