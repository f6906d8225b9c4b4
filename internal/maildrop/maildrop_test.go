package maildrop

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Envelope {
	return &Envelope{
		Arrival: time.Unix(1700000000, 123456789), UID: 1000, Login: "alice",
		Sender: "alice", SenderSet: true, FullName: "Alice Liddell", Extract: true,
		Ret: "HDRS", EnvID: "xyz", Notify: "SUCCESS,FAILURE",
		Recipients: []string{"bob@example.org", "carol"},
	}
}

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	e := sample()
	if err := Write(&b, e); err != nil {
		t.Fatal(err)
	}
	b.WriteString("Subject: hi\n\nbody\n")
	br := bufio.NewReader(&b)
	got, n, err := Read(br)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Arrival.Equal(e.Arrival) {
		t.Errorf("arrival %v, want %v", got.Arrival, e.Arrival)
	}
	got.Arrival = e.Arrival
	if !reflect.DeepEqual(got, e) {
		t.Errorf("got %+v\nwant %+v", got, e)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "Subject: hi\n\nbody\n" {
		t.Errorf("message %q", rest)
	}
	if n <= 0 {
		t.Errorf("n = %d", n)
	}
}

func TestNullSender(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, &Envelope{Arrival: time.Now(), Sender: "", SenderSet: true, Recipients: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	e, _, err := Read(bufio.NewReader(&b))
	if err != nil || e.Sender != "" || !e.SenderSet {
		t.Fatalf("%+v %v", e, err)
	}
}

func TestWriteRefuses(t *testing.T) {
	for _, e := range []*Envelope{
		{Sender: "a", Recipients: []string{"x"}}, // no arrival time
		{Arrival: time.Now(), Sender: "a\nrcpt evil", Recipients: []string{"x"}},
		{Arrival: time.Now(), Sender: "a", Recipients: []string{"x\r"}},
		{Arrival: time.Now(), Sender: "a", FullName: strings.Repeat("x", MaxValue+1), Recipients: []string{"x"}},
		{Arrival: time.Now(), Sender: "a", FullName: "\xff", Recipients: []string{"x"}},
		{Arrival: time.Now(), Sender: "a", UID: -1, Recipients: []string{"x"}},
	} {
		if err := Write(io.Discard, e); err == nil {
			t.Errorf("%+v accepted", e)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"POSTERN-MAILDROP 2\narrival 1\nuid 1\nsender a\nrcpt b\n\n",
		"POSTFIX 1\n",
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\nrcpt b\n", // no end
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nrcpt b\n\n",         // no sender
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\n\n",       // no rcpt
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nuid 2\nsender a\nrcpt b\n\n",
		"POSTERN-MAILDROP 1\narrival x\nuid 1\nsender a\nrcpt b\n\n",
		"POSTERN-MAILDROP 1\narrival 1\nuid -1\nsender a\nrcpt b\n\n",
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\nrcpt b\nfoo bar\n\n",
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\nextract maybe\n\n",
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\x01\nrcpt b\n\n",
		"POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender\nrcpt b\n\n",
	} {
		_, _, err := Read(bufio.NewReader(strings.NewReader(in)))
		if err == nil || !errors.Is(err, ErrFormat) {
			t.Errorf("%q: err %v", in, err)
		}
	}
}

func TestReadLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\n")
	for i := 0; i <= MaxRecipients; i++ {
		b.WriteString("rcpt x@y\n")
	}
	b.WriteString("\n")
	if _, _, err := Read(bufio.NewReader(strings.NewReader(b.String()))); err == nil {
		t.Error("too many recipients accepted")
	}
	long := "POSTERN-MAILDROP 1\nlogin " + strings.Repeat("x", MaxEnvelope) + "\n\n"
	if _, _, err := Read(bufio.NewReader(strings.NewReader(long))); err == nil {
		t.Error("huge envelope accepted")
	}
}

func TestHeaderRecipients(t *testing.T) {
	msg := "From: me\nTo: Bob <bob@example.org>, carol@example.org\nCc: undisclosed-recipients:;\n" +
		"Bcc: dave@example.org,\n  erin@example.org\nSubject: x\n\nTo: notme@example.org\n"
	got, bad, err := HeaderRecipients(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bob@example.org", "carol@example.org", "dave@example.org", "erin@example.org"}
	if !reflect.DeepEqual(got, want) || len(bad) != 0 {
		t.Errorf("got %q bad %q", got, bad)
	}
	got, _, _ = HeaderRecipients(strings.NewReader("To: a@x\nResent-To: r@x\n\n"))
	if !reflect.DeepEqual(got, []string{"r@x"}) {
		t.Errorf("resent: %q", got)
	}
	got, bad, _ = HeaderRecipients(strings.NewReader("To: root, <<bad, alice@x\r\n\r\n"))
	if !reflect.DeepEqual(got, []string{"root", "alice@x"}) || len(bad) != 1 {
		t.Errorf("liberal: %q %q", got, bad)
	}
}

func TestCanonicalize(t *testing.T) {
	for _, c := range []struct {
		in, out string
		bcc     bool
	}{
		{"a\nb\n", "a\r\nb\r\n", false},
		{"a\r\nb", "a\r\nb\r\n", false},
		{"To: x\nBcc: y,\n z\nSubject: s\n\nBcc: body\n", "To: x\r\nSubject: s\r\n\r\nBcc: body\r\n", true},
		{"To: x\nBcc: y\n", "To: x\r\n", true},
		{"Bcc: y\n\nbody", "\r\nbody\r\n", true},
		{"Bcc: y\n\nbody", "Bcc: y\r\n\r\nbody\r\n", false},
		{"", "", false},
		{"a\rb\n", "a\rb\r\n", false},
		{"not a header\nBcc: y\n", "not a header\r\nBcc: y\r\n", true},
	} {
		var b bytes.Buffer
		n, err := Canonicalize(&b, strings.NewReader(c.in), c.bcc)
		if err != nil || b.String() != c.out || n != int64(b.Len()) {
			t.Errorf("%q: got %q, %d, %v; want %q", c.in, b.String(), n, err, c.out)
		}
	}
	long := strings.Repeat("x", 200000) + "\n"
	var b bytes.Buffer
	Canonicalize(&b, strings.NewReader(long), true)
	if b.String() != long[:200000]+"\r\n" {
		t.Error("long line mangled")
	}
}

func FuzzRead(f *testing.F) {
	var b bytes.Buffer
	Write(&b, sample())
	f.Add(b.Bytes())
	f.Add([]byte("POSTERN-MAILDROP 1\narrival 1\nuid 1\nsender a\nrcpt b\n\nbody"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _, err := Read(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		// What Read accepts, Write must reproduce and Read accept again.
		var out bytes.Buffer
		if err := Write(&out, e); err != nil {
			t.Fatalf("re-write of %+v: %v", e, err)
		}
		if _, _, err := Read(bufio.NewReader(&out)); err != nil {
			t.Fatalf("re-read: %v", err)
		}
	})
}

func FuzzMessage(f *testing.F) {
	f.Add([]byte("To: a@b\nBcc: c@d,\n e@f\n\nbody\r\n"), true)
	f.Add([]byte("Resent-To: x\r\nCc: <>\r\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, bcc bool) {
		HeaderRecipients(bytes.NewReader(data))
		var b bytes.Buffer
		n, err := Canonicalize(&b, bytes.NewReader(data), bcc)
		if err != nil || n != int64(b.Len()) {
			t.Fatalf("n %d len %d err %v", n, b.Len(), err)
		}
		if !bcc && len(data) > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
			t.Fatalf("no line end: %q", b.Bytes())
		}
	})
}
