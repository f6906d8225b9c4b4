package dsn

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	t0      = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	origMsg = "Received: from client.example.com by mx.example.org\r\n" +
		"From: Alice <alice@example.com>\r\n" +
		"To: bob@example.net\r\n" +
		"Subject: lunch\r\n" +
		"\r\n" +
		"See you at noon.\r\n" +
		"\r\n" +
		"-- \r\nAlice\r\n"
	origHeader = origMsg[:strings.Index(origMsg, "\r\n\r\n")+2]
)

func sample(k Kind) *Report {
	return &Report{
		Kind:         k,
		ReportingMTA: "mx.example.org",
		QueueID:      "9A3F0C12B4",
		EnvID:        "env-42",
		Sender:       "alice@example.com",
		ArrivalDate:  t0,
		Date:         t0.Add(5 * time.Hour),
		Recipients: []Recipient{{
			Addr:           "bob@example.net",
			ORcpt:          "rfc822;Robert@Example.NET",
			Status:         map[Kind]string{Failure: "5.1.1", Delay: "4.4.1", Success: "2.0.0", Relayed: "2.0.0"}[k],
			RemoteMTA:      "mx.example.net",
			Diagnostic:     map[Kind]string{Failure: "smtp; 550 5.1.1 user unknown", Delay: "smtp; 451 4.4.1 try later", Success: "smtp; 250 2.0.0 ok", Relayed: "smtp; 250 ok"}[k],
			LastAttempt:    t0.Add(4 * time.Hour),
			WillRetryUntil: t0.Add(5 * 24 * time.Hour),
		}},
	}
}

func render(t testing.TB, r *Report, orig string) string {
	t.Helper()
	var b bytes.Buffer
	var src io.Reader
	if orig != "" {
		src = strings.NewReader(orig)
	}
	if err := Write(&b, r, src); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b.String()
}

func mustParse(t testing.TB, out string) *Parsed {
	t.Helper()
	p, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, out)
	}
	return p
}

// checkLines enforces what the queue and SMTP need of every line.
func checkLines(t *testing.T, out string) {
	t.Helper()
	if !strings.HasSuffix(out, "\r\n") {
		t.Errorf("output does not end with CRLF")
	}
	for i, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("line %d is %d octets", i+1, len(line))
		}
	}
}

func TestKindsRoundTrip(t *testing.T) {
	tests := []struct {
		kind             Kind
		subject, action  string
		original         string
		retry, hasWarned bool
	}{
		{Failure, "Undelivered Mail Returned to Sender", "failed", "message/rfc822", false, false},
		{Delay, "Delayed Mail (still being retried)", "delayed", "text/rfc822-headers", true, true},
		{Success, "Successful Mail Delivery Report", "delivered", "text/rfc822-headers", false, false},
		{Relayed, "Successful Mail Delivery Report", "relayed", "text/rfc822-headers", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			r := sample(tt.kind)
			out := render(t, r, origMsg)
			checkLines(t, out)
			p := mustParse(t, out)
			h := p.Header
			if got := h.Get("Subject"); got != tt.subject {
				t.Errorf("Subject = %q, want %q", got, tt.subject)
			}
			if got := h.Get("To"); got != "<alice@example.com>" {
				t.Errorf("To = %q", got)
			}
			if got := h.Get("From"); got != "Mail Delivery System <MAILER-DAEMON@mx.example.org>" {
				t.Errorf("From = %q", got)
			}
			if got := h.Get("Auto-Submitted"); got != "auto-replied" {
				t.Errorf("Auto-Submitted = %q", got)
			}
			if got := h.Get("Date"); got != "Sun, 01 Mar 2026 15:00:00 +0000" {
				t.Errorf("Date = %q", got)
			}
			if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<20260301150000.") || !strings.HasSuffix(id, "@mx.example.org>") {
				t.Errorf("Message-ID = %q", id)
			}
			if h.Get("Content-Transfer-Encoding") != "" {
				t.Errorf("7-bit report declares %q", h.Get("Content-Transfer-Encoding"))
			}
			if p.ReportType != "delivery-status" {
				t.Errorf("report-type = %q", p.ReportType)
			}
			m := p.Message
			for k, want := range map[string]string{
				"Reporting-MTA":        "dns; mx.example.org",
				"X-Postern-Queue-ID":   "9A3F0C12B4",
				"X-Postern-Sender":     "rfc822; alice@example.com",
				"Original-Envelope-Id": "env-42",
				"Arrival-Date":         "Sun, 01 Mar 2026 10:00:00 +0000",
			} {
				if got := m.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if len(p.Recipients) != 1 {
				t.Fatalf("%d recipients", len(p.Recipients))
			}
			rc := p.Recipients[0]
			want := map[string]string{
				"Final-Recipient":    "rfc822; bob@example.net",
				"Original-Recipient": "rfc822; Robert@Example.NET",
				"Action":             tt.action,
				"Status":             r.Recipients[0].Status,
				"Remote-MTA":         "dns; mx.example.net",
				"Diagnostic-Code":    r.Recipients[0].Diagnostic,
				"Last-Attempt-Date":  "Sun, 01 Mar 2026 14:00:00 +0000",
				"Will-Retry-Until":   "",
			}
			if tt.retry {
				want["Will-Retry-Until"] = "Fri, 06 Mar 2026 10:00:00 +0000"
			}
			for k, v := range want {
				if got := rc.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if p.Original != tt.original {
				t.Errorf("original part %q, want %q", p.Original, tt.original)
			}
			text := strings.ReplaceAll(p.Text, "\r\n    ", " ")
			if !strings.Contains(text, "This is the mail system at host mx.example.org.") ||
				!strings.Contains(text, "<bob@example.net> (expanded from <Robert@Example.NET>): host mx.example.net said:") {
				t.Errorf("text part:\n%s", p.Text)
			}
			if tt.hasWarned && (!strings.Contains(p.Text, "THIS IS A WARNING ONLY") ||
				!strings.Contains(p.Text, "could not be delivered for 5 hours") ||
				!strings.Contains(p.Text, "retried until Fri, 06 Mar 2026 10:00:00 +0000")) {
				t.Errorf("delay text:\n%s", p.Text)
			}
		})
	}
}

// TestMultipart checks the output with Go's own MIME readers, part by
// part, and that the original comes back byte for byte.
func TestMultipart(t *testing.T) {
	out := render(t, sample(Failure), origMsg)
	msg, err := mail.ReadMessage(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"From", "To"} {
		if _, err := mail.ParseAddress(msg.Header.Get(k)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q %v: %v", mt, params, err)
	}
	b := params["boundary"]
	if len(b) != 34 || !strings.HasPrefix(b, "=_") {
		t.Errorf("boundary %q", b)
	}
	mr := multipart.NewReader(msg.Body, b)
	var types, bodies []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, part.Header.Get("Content-Type"))
		bodies = append(bodies, string(body))
	}
	wantTypes := []string{"text/plain; charset=us-ascii", "message/delivery-status", "message/rfc822"}
	if fmt.Sprint(types) != fmt.Sprint(wantTypes) {
		t.Fatalf("parts %q, want %q", types, wantTypes)
	}
	if bodies[2] != origMsg {
		t.Errorf("original came back as %q", bodies[2])
	}
	// Another report gets another boundary.
	if out2 := render(t, sample(Failure), origMsg); strings.Contains(out2, b) {
		t.Errorf("boundary %s reused", b)
	}
}

func thirdPart(t *testing.T, out string) (string, string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		if i == 2 {
			body, err := io.ReadAll(part)
			if err != nil {
				t.Fatal(err)
			}
			return part.Header.Get("Content-Type"), string(body)
		}
	}
}

func TestRetHeaders(t *testing.T) {
	r := sample(Failure)
	r.Ret = "hdrs"
	ct, body := thirdPart(t, render(t, r, origMsg))
	if ct != "text/rfc822-headers" || body != origHeader {
		t.Errorf("RET=HDRS gave %s %q, want %q", ct, body, origHeader)
	}
	// A delay warning returns the header even when RET=FULL.
	r = sample(Delay)
	r.Ret = "FULL"
	if ct, body := thirdPart(t, render(t, r, origMsg)); ct != "text/rfc822-headers" || body != origHeader {
		t.Errorf("delay with RET=FULL gave %s %q", ct, body)
	}
	// A message that is all header, and one with LF line ends.
	r = sample(Failure)
	r.Ret = "HDRS"
	if _, body := thirdPart(t, render(t, r, "Subject: x\r\nFrom: y")); body != "Subject: x\r\nFrom: y\r\n" {
		t.Errorf("header-only message gave %q", body)
	}
	if _, body := thirdPart(t, render(t, r, "Subject: x\nFrom: y\n\nbody\n")); body != "Subject: x\r\nFrom: y\r\n" {
		t.Errorf("LF message gave %q", body)
	}
	r.Ret = ""
	if _, body := thirdPart(t, render(t, r, "Subject: x\nFrom: y\n\nbody\rmore\n")); body != "Subject: x\r\nFrom: y\r\n\r\nbody\rmore\r\n" {
		t.Errorf("LF message gave %q", body)
	}
}

func TestMaxOriginal(t *testing.T) {
	r := sample(Failure)
	r.MaxOriginal = int64(len(origMsg))
	if ct, body := thirdPart(t, render(t, r, origMsg)); ct != "message/rfc822" || body != origMsg {
		t.Errorf("original at the limit: %s %q", ct, body)
	}
	r.MaxOriginal = int64(len(origMsg)) - 1
	if ct, body := thirdPart(t, render(t, r, origMsg)); ct != "text/rfc822-headers" || body != origHeader {
		t.Errorf("original over the limit: %s %q", ct, body)
	}
	// The header itself is cut at a line boundary.
	r.MaxOriginal = int64(strings.Index(origMsg, "To:")) + 3
	if _, body := thirdPart(t, render(t, r, origMsg)); body != origMsg[:strings.Index(origMsg, "To:")] {
		t.Errorf("cut header: %q", body)
	}
	// The caller's size decides, and an unknown size means headers only.
	r.MaxOriginal = 1000
	r.OriginalSize = 5000
	if ct, _ := thirdPart(t, render(t, r, origMsg)); ct != "text/rfc822-headers" {
		t.Errorf("OriginalSize over the limit gave %s", ct)
	}
	r.OriginalSize = 0
	var b bytes.Buffer
	if err := Write(&b, r, struct{ io.Reader }{strings.NewReader(origMsg)}); err != nil {
		t.Fatal(err)
	}
	if ct, _ := thirdPart(t, b.String()); ct != "text/rfc822-headers" {
		t.Errorf("unknown size gave %s", ct)
	}
}

func TestNoOriginal(t *testing.T) {
	p := mustParse(t, render(t, sample(Failure), ""))
	if p.Original != "" || len(p.Recipients) != 1 {
		t.Errorf("original %q, %d recipients", p.Original, len(p.Recipients))
	}
}

// TestHostile feeds peer text made to break the report: line breaks that
// would start new fields or a new group, the report's own boundary (the
// randomness is forced so that the attacker "guessed" it), NULs, invalid
// UTF-8 and a reply long enough to need folding.
func TestHostile(t *testing.T) {
	const forced = "=_00000000000000000000000000000000"
	defer func(f func([]byte) (int, error)) { randRead = f }(randRead)
	randRead = func(b []byte) (int, error) { clear(b); return len(b), nil }

	diag := "smtp; 550 5.1.1 no\r\nFinal-Recipient: rfc822; evil@example.com\r\n\r\n" +
		"--" + forced + "\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--" + forced + "--\r\n" +
		"caf\xc3\xa9 \xff\x00 \u202e" + strings.Repeat(" blah", 300) + " " + strings.Repeat("x", 1500)
	r := sample(Failure)
	r.Recipients[0].Diagnostic = diag
	r.Recipients[0].RemoteMTA = "mx.example.net\r\nX-Injected: 1"
	r.Recipients[0].Addr = "bob@example.net\nAction: delivered"
	r.EnvID = "a\r\nb"
	out := render(t, r, origMsg)
	checkLines(t, out)
	if strings.Count(out, "\r\n--"+forced) != 4 {
		t.Errorf("boundary lines: %d, want 4", strings.Count(out, "\r\n--"+forced))
	}
	if strings.Contains(out, "\r\nX-Injected") || strings.Contains(out, "\r\nAction: delivered") ||
		strings.Contains(out, "\r\nFinal-Recipient: rfc822; evil") || strings.Contains(out, "\r\nContent-Type: text/html") {
		t.Errorf("injection got through:\n%s", out)
	}
	p := mustParse(t, out)
	if len(p.Recipients) != 1 {
		t.Fatalf("%d recipients", len(p.Recipients))
	}
	rc := p.Recipients[0]
	got := rc.Get("Diagnostic-Code")
	if !strings.HasPrefix(got, "smtp; 550 5.1.1 no Final-Recipient: rfc822; evil@example.com --"+forced+" Content-Type") {
		t.Errorf("Diagnostic-Code = %q", got)
	}
	if !strings.Contains(got, "caf? ?? ? blah blah") {
		t.Errorf("non-ASCII not replaced: %q", got)
	}
	if len(got) > maxText+20 {
		t.Errorf("Diagnostic-Code is %d octets", len(got))
	}
	for _, line := range strings.Split(out, "\r\n") {
		if strings.HasPrefix(line, "Diagnostic-Code:") || strings.HasPrefix(line, " blah") {
			if len(line) > lineWidth {
				t.Errorf("unfolded line %q", line)
			}
		}
	}
	if rc.Get("Action") != "failed" || rc.Get("Final-Recipient") != "rfc822; bob@example.net Action: delivered" {
		t.Errorf("Action %q, Final-Recipient %q", rc.Get("Action"), rc.Get("Final-Recipient"))
	}
	if p.Message.Get("Original-Envelope-Id") != "a b" || rc.Get("Remote-MTA") != "dns; mx.example.net X-Injected: 1" {
		t.Errorf("ENVID %q, Remote-MTA %q", p.Message.Get("Original-Envelope-Id"), rc.Get("Remote-MTA"))
	}
	if p.Original != "message/rfc822" {
		t.Errorf("original part %q", p.Original)
	}
}

func TestInternational(t *testing.T) {
	r := sample(Failure)
	r.Sender = "用户@例子.广告"
	r.Recipients[0].Addr = "jörg@bücher.example"
	r.Recipients[0].ORcpt = "utf-8;jörg@bücher.example"
	r.Recipients[0].Diagnostic = "smtp; 550 5.1.1 unbekannter Empfänger\u200f"
	if !r.International() || !r.EightBit() {
		t.Fatal("report not international")
	}
	out := render(t, r, "Subject: héllo\r\n\r\nbody\r\n")
	checkLines(t, out)
	p := mustParse(t, out)
	if p.ReportType != "global-delivery-status" || p.Original != "message/global" ||
		p.Header.Get("Content-Transfer-Encoding") != "8bit" || p.Header.Get("To") != "<用户@例子.广告>" {
		t.Errorf("report type %q, original %q, header %v", p.ReportType, p.Original, p.Header)
	}
	rc := p.Recipients[0]
	if rc.Get("Final-Recipient") != "utf-8; jörg@bücher.example" || rc.Get("Original-Recipient") != "utf-8; jörg@bücher.example" ||
		rc.Get("Diagnostic-Code") != "smtp; 550 5.1.1 unbekannter Empfänger?" {
		t.Errorf("recipient %v", rc)
	}
	if p.Message.Get("X-Postern-Sender") != "utf-8; 用户@例子.广告" {
		t.Errorf("X-Postern-Sender %q", p.Message.Get("X-Postern-Sender"))
	}
	// ASCII addresses, 8-bit body: 8bit declared, non-ASCII text replaced.
	r = sample(Failure)
	r.Original8Bit = true
	r.Recipients[0].Diagnostic = "550 Empfänger unbekannt"
	if r.International() || !r.EightBit() {
		t.Fatal("8-bit flags")
	}
	out = render(t, r, "Subject: x\r\n\r\nh\xe9llo\r\n")
	p = mustParse(t, out)
	if p.Header.Get("Content-Transfer-Encoding") != "8bit" || p.Recipients[0].Get("Diagnostic-Code") != "smtp; 550 Empf?nger unbekannt" {
		t.Errorf("header %v, diagnostic %q", p.Header, p.Recipients[0].Get("Diagnostic-Code"))
	}
	if !strings.Contains(out, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n") {
		t.Errorf("original part not declared 8bit:\n%s", out)
	}
}

func TestDefaultsAndErrors(t *testing.T) {
	r := &Report{ReportingMTA: "mx.example.org", Sender: "a@example.com", Recipients: []Recipient{
		{Addr: "b@example.com", Diagnostic: "connect to mx.example.com[192.0.2.1]:25: Connection refused"},
		{Addr: "c@example.com", Status: "9.9.9", Action: "bogus", ORcpt: "c@example.com"},
		{Addr: "d@example.com", Diagnostic: "452-4.2.2 mailbox full"},
		{Addr: "e@example.com", Diagnostic: "smtp; 550 5.7.1 spam", Action: "delayed"},
	}}
	p := mustParse(t, render(t, r, ""))
	b, c := p.Recipients[0], p.Recipients[1]
	if b.Get("Action") != "failed" || b.Get("Status") != "5.0.0" ||
		b.Get("Diagnostic-Code") != "X-Postern; connect to mx.example.com[192.0.2.1]:25: Connection refused" {
		t.Errorf("b: %v", b)
	}
	if c.Get("Status") != "5.0.0" || c.Get("Original-Recipient") != "rfc822; c@example.com" || c.Get("Diagnostic-Code") != "" {
		t.Errorf("c: %v", c)
	}
	if d, e := p.Recipients[2], p.Recipients[3]; d.Get("Status") != "5.2.2" || e.Get("Status") != "4.7.1" ||
		d.Get("Diagnostic-Code") != "smtp; 452-4.2.2 mailbox full" {
		t.Errorf("status from the reply: %v, %v", d, e)
	}
	if !strings.Contains(p.Text, "<c@example.com>: delivery failed (status 5.0.0)") ||
		!strings.Contains(p.Text, "<b@example.com>: connect to mx.example.com[192.0.2.1]:25: Connection refused") {
		t.Errorf("text:\n%s", p.Text)
	}
	// Double bounce: the original sender was null, the postmaster gets it.
	r.Sender, r.To = "", "postmaster@example.org"
	p = mustParse(t, render(t, r, ""))
	if p.Header.Get("To") != "<postmaster@example.org>" || p.Header.Get("Subject") != "Postmaster Copy: Undelivered Mail" ||
		p.Message.Get("X-Postern-Sender") != "" {
		t.Errorf("double bounce header %v, fields %v", p.Header, p.Message)
	}
	for _, tt := range []struct {
		r    *Report
		want error
	}{
		{&Report{ReportingMTA: "h", Recipients: r.Recipients}, ErrNoRecipient},
		{&Report{ReportingMTA: "h", Sender: "\r\n", Recipients: r.Recipients}, ErrNoRecipient},
		{&Report{Sender: "a@b", Recipients: r.Recipients}, ErrNoReporting},
		{&Report{ReportingMTA: "h", Sender: "a@b"}, ErrEmpty},
		{&Report{ReportingMTA: "h", Sender: "a@b", Recipients: []Recipient{{Addr: " \r\n"}}}, ErrNoAddress},
	} {
		if err := Write(io.Discard, tt.r, nil); !errors.Is(err, tt.want) {
			t.Errorf("Write(%+v) = %v, want %v", tt.r, err, tt.want)
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("I/O error")
	}
	n := min(len(p), f.n)
	for i := range n {
		p[i] = 'a'
	}
	f.n -= n
	return n, nil
}

func TestIOErrors(t *testing.T) {
	if err := Write(&failWriter{n: 100}, sample(Failure), strings.NewReader(origMsg)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("write error: %v", err)
	}
	if err := Write(io.Discard, sample(Failure), &failReader{n: 200000}); err == nil || !strings.Contains(err.Error(), "I/O error") {
		t.Errorf("read error: %v", err)
	}
}

// bigOriginal produces a message of header plus n lines without
// holding it.
type bigOriginal struct {
	n    int
	line []byte
	off  int
}

var (
	bigHeader = []byte("Subject: big\r\n\r\n")
	bigLine   = []byte("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n")
)

func newBig(n int) *bigOriginal { return &bigOriginal{n: n, line: bigHeader} }

func bigSize(n int) int64 { return int64(len(bigHeader) + n*len(bigLine)) }

func (b *bigOriginal) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if b.off == len(b.line) {
			if b.n == 0 {
				break
			}
			b.n--
			b.line, b.off = bigLine, 0
		}
		c := copy(p[n:], b.line[b.off:])
		n += c
		b.off += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestStreaming writes a report around a 5 MB original and checks that it
// comes back intact through mime/multipart, and that Write allocates a
// small fraction of its size: it copies through and never buffers it.
func TestStreaming(t *testing.T) {
	lines := 5 << 20 / len(bigLine)
	size := bigSize(lines)
	r := sample(Failure)
	r.OriginalSize = size
	r.MaxOriginal = 10 << 20

	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var cw countWriter
	if err := Write(&cw, r, newBig(lines)); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 512<<10 {
		t.Errorf("Write allocated %d bytes for a %d-byte original", alloc, size)
	} else {
		t.Logf("Write allocated %d bytes for a %d-byte original", alloc, size)
	}
	if cw.n < size || cw.n > size+8192 {
		t.Errorf("report is %d bytes", cw.n)
	}
	if allocs := testing.AllocsPerRun(2, func() { Write(io.Discard, r, newBig(lines)) }); allocs > 200 {
		t.Errorf("%v allocations per report", allocs)
	}

	want := sha256.New()
	io.Copy(want, newBig(lines))
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Write(pw, r, newBig(lines))) }()
	msg, err := mail.ReadMessage(bufio.NewReader(pr))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; i < 3; i++ {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			got := sha256.New()
			if _, err := io.Copy(got, part); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Error("the original came back changed")
			}
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after the original: %v", err)
	}
	io.Copy(io.Discard, pr)
}

// TestLongLines checks lines longer than the copy buffer and CRLFs split
// across reads.
func TestLongLines(t *testing.T) {
	long := strings.Repeat("y", bufSize-1) + "\r\n" + strings.Repeat("z", 3*bufSize) + "\r\nend\r\n"
	orig := "Subject: long\r\n\r\n" + long
	r := sample(Failure)
	if _, body := thirdPart(t, render(t, r, orig)); body != orig {
		t.Errorf("long lines changed (%d bytes, want %d)", len(body), len(orig))
	}
	for _, n := range []int{bufSize - 1, bufSize, bufSize + 1} {
		orig := "Subject: x\r\n\r\n" + strings.Repeat("a", n-14) + "\r\nb\r\n"
		if _, body := thirdPart(t, render(t, r, orig)); body != orig {
			t.Errorf("n=%d: CRLF across reads changed the original", n)
		}
	}
	// A cap inside a long line ends that line there.
	r.Ret, r.MaxOriginal = "HDRS", 100
	if _, body := thirdPart(t, render(t, r, "X-Long: "+strings.Repeat("q", 2*bufSize)+"\r\n\r\n")); body != "" {
		t.Errorf("over-long header line: %d bytes returned", len(body))
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"Subject: x\r\n\r\nbody\r\n",
		"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
		"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n",
		"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nno colon\r\n--x--\r\n",
	} {
		if p, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, p)
		}
	}
	big := "Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n" +
		strings.Repeat("a", MaxParse) + "\r\n--x--\r\n"
	if _, err := Parse(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized report: %v", err)
	}
}

func TestClean(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		utf8     bool
	}{
		{"  a \r\n\t b  ", "a b", false},
		{"a\x00b\x7fc", "a?b?c", false},
		{"é\xff", "??", false},
		{"é\xff\u0085x\u00a0y", "é? x y", true},
		{"\u202egnp.exe", "?gnp.exe", true},
	} {
		if got := clean(tt.in, tt.utf8, 100); got != tt.want {
			t.Errorf("clean(%q, %v) = %q, want %q", tt.in, tt.utf8, got, tt.want)
		}
	}
	if got := clean("ééé", true, 5); got != "éé" {
		t.Errorf("cut inside a rune: %q", got)
	}
}
