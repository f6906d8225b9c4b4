package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	in := "USER a\r\nPASS b c\nQUIT\r\n" + strings.Repeat("x", MaxLine) + "\r\n" + "partial"
	r := NewReader(strings.NewReader(in))
	for _, want := range []string{"USER a", "PASS b c", "QUIT", strings.Repeat("x", MaxLine)} {
		got, err := r.ReadLine()
		if err != nil || got != want {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := r.ReadLine(); err != io.ErrUnexpectedEOF {
		t.Fatalf("partial last line: %v, want io.ErrUnexpectedEOF", err)
	}
	r = NewReader(strings.NewReader(""))
	if _, err := r.ReadLine(); err != io.EOF {
		t.Fatalf("empty input: %v, want io.EOF", err)
	}
	for _, n := range []int{MaxLine + 1, MaxLine + 100, 3 * MaxLine} {
		r = NewReader(strings.NewReader(strings.Repeat("y", n) + "\r\nNOOP\r\n"))
		if _, err := r.ReadLine(); err != ErrLineTooLong {
			t.Fatalf("%d octets: %v, want ErrLineTooLong", n, err)
		}
	}
}

func TestBuffered(t *testing.T) {
	r := NewReader(strings.NewReader("STLS\r\nUSER x\r\n"))
	r.ReadLine()
	if r.Buffered() != len("USER x\r\n") {
		t.Fatalf("Buffered = %d", r.Buffered())
	}
}

func TestParseCommand(t *testing.T) {
	good := []struct {
		line, name, arg string
		args            []string
	}{
		{"user demo@example.test", "USER", "demo@example.test", []string{"demo@example.test"}},
		{"PASS with  two spaces ", "PASS", "with  two spaces ", []string{"with", "two", "spaces"}},
		{"STAT", "STAT", "", nil},
		{"top 1 10", "TOP", "1 10", []string{"1", "10"}},
		{"AUTH PLAIN AGRlbW8Ac2VjcmV0", "AUTH", "PLAIN AGRlbW8Ac2VjcmV0", []string{"PLAIN", "AGRlbW8Ac2VjcmV0"}},
	}
	for _, g := range good {
		c, err := ParseCommand(g.line)
		if err != nil || c.Name != g.name || c.Arg != g.arg || strings.Join(c.Args, "|") != strings.Join(g.args, "|") {
			t.Errorf("ParseCommand(%q) = %+v, %v", g.line, c, err)
		}
	}
	for _, bad := range []string{"", " USER x", "US3R x", "RETR\x001", "PASS a\rb", "ÜSER x", strings.Repeat("A", 17), "\x7f"} {
		if c, err := ParseCommand(bad); err != ErrBadCommand {
			t.Errorf("ParseCommand(%q) = %+v, %v; want ErrBadCommand", bad, c, err)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for s, want := range map[string]int{"1": 1, "0": 0, "007": 7, "4294967295": 4294967295} {
		if n, ok := ParseNumber(s, 1<<40); !ok || n != want {
			t.Errorf("ParseNumber(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "-1", "+1", "1a", "12345678901", " 1", "0x1"} {
		if n, ok := ParseNumber(s, 1<<40); ok {
			t.Errorf("ParseNumber(%q) = %d, ok", s, n)
		}
	}
	if _, ok := ParseNumber("11", 10); ok {
		t.Error("ParseNumber above max accepted")
	}
}

func TestUIDL(t *testing.T) {
	// Dovecot's %08Xu%08Xv: lower-case hex, UID first.
	if got := UIDL(1, 0x5e8f9a12); got != "000000015e8f9a12" {
		t.Fatalf("UIDL = %q", got)
	}
}

func TestReplies(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.OK("2 320")
	w.Err(CodeInUse, "Mailbox is locked\r\n+OK forged")
	w.Err("", "Unknown command")
	w.Flush()
	want := "+OK 2 320\r\n-ERR [IN-USE] Mailbox is locked  +OK forged\r\n-ERR Unknown command\r\n"
	if b.String() != want {
		t.Fatalf("replies %q, want %q", b.String(), want)
	}
}

func TestDotWriter(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"x\r\n.y\r\n..z\r\n", "x\r\n..y\r\n...z\r\n.\r\n"},
		{"a\r.b\r\n", "a\r.b\r\n.\r\n"},
		{"a\r\n\r\n.", "a\r\n\r\n..\r\n.\r\n"},
	}
	for _, c := range cases {
		for _, step := range []int{1, 2, 3, 1000} {
			var b bytes.Buffer
			w := NewWriter(&b)
			d := w.Multi()
			in := []byte(c.in)
			for len(in) > 0 {
				n := min(step, len(in))
				if m, err := d.Write(in[:n]); m != n || err != nil {
					t.Fatalf("Write = %d, %v", m, err)
				}
				in = in[n:]
			}
			d.Close()
			w.Flush()
			if b.String() != c.want {
				t.Errorf("stuff(%q) in steps of %d = %q, want %q", c.in, step, b.String(), c.want)
			}
		}
	}
}

// unstuff undoes DotWriter the way a client does (RFC 1939 3).
func unstuff(t testing.TB, s string) string {
	if !strings.HasSuffix(s, "\r\n.\r\n") && s != ".\r\n" {
		t.Fatalf("multi-line reply %q does not end in CRLF.CRLF", s)
	}
	s = strings.TrimSuffix(s, ".\r\n")
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			if l == ".\r\n" {
				t.Fatalf("a lone dot line inside the data of %q", s)
			}
			lines[i] = l[1:]
		}
	}
	return strings.Join(lines, "")
}

func TestCopyTop(t *testing.T) {
	msg := "Subject: x\r\nFrom: a\r\n\r\nl1\r\nl2\r\n\r\nl4\r\n"
	for n, want := range map[int]string{
		0:  "Subject: x\r\nFrom: a\r\n\r\n",
		1:  "Subject: x\r\nFrom: a\r\n\r\nl1\r\n",
		3:  "Subject: x\r\nFrom: a\r\n\r\nl1\r\nl2\r\n\r\n",
		99: msg,
	} {
		var b bytes.Buffer
		if err := CopyTop(&b, strings.NewReader(msg), n); err != nil || b.String() != want {
			t.Errorf("CopyTop(%d) = %q, %v; want %q", n, b.String(), err, want)
		}
	}
	// No empty line: all of it is header.
	var b bytes.Buffer
	CopyTop(&b, strings.NewReader("A: b\r\nC: d"), 0)
	if b.String() != "A: b\r\nC: d" {
		t.Errorf("header-only message: %q", b.String())
	}
	// A line longer than the buffer is copied whole and counts once.
	long := strings.Repeat("z", 100000)
	b.Reset()
	CopyTop(&b, strings.NewReader("H: "+long+"\r\n\r\n"+long+"\r\nnext\r\n"), 1)
	if b.String() != "H: "+long+"\r\n\r\n"+long+"\r\n" {
		t.Errorf("long lines: got %d octets", b.Len())
	}
}

func TestCapa(t *testing.T) {
	got := strings.Join(Capa{User: true, SASL: []string{"PLAIN", "LOGIN"}, STLS: true}.Lines(), "|")
	if got != "TOP|UIDL|RESP-CODES|AUTH-RESP-CODE|PIPELINING|USER|SASL PLAIN LOGIN|STLS|IMPLEMENTATION Postern" {
		t.Fatalf("Lines = %s", got)
	}
	got = strings.Join(Capa{}.Lines(), "|")
	if strings.Contains(got, "USER") || strings.Contains(got, "SASL") || strings.Contains(got, "STLS") {
		t.Fatalf("Lines without login = %s", got)
	}
	var b bytes.Buffer
	w := NewWriter(&b)
	w.WriteCapa(Capa{})
	w.Flush()
	if !strings.HasPrefix(b.String(), "+OK ") || !strings.HasSuffix(b.String(), "\r\nIMPLEMENTATION Postern\r\n.\r\n") {
		t.Fatalf("WriteCapa = %q", b.String())
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSASLPlain(t *testing.T) {
	u, p, err := DecodePlain(b64("\x00demo@example.test\x00demo secret"))
	if err != nil || u != "demo@example.test" || p != "demo secret" {
		t.Fatalf("DecodePlain = %q %q %v", u, p, err)
	}
	u, _, err = DecodePlain(b64("demo\x00demo\x00pw"))
	if err != nil || u != "demo" {
		t.Fatalf("authzid = authcid: %q %v", u, err)
	}
	for in, want := range map[string]error{
		b64("other\x00demo\x00pw"):  ErrSASLAuthzid,
		b64("\x00demo\x00"):         ErrSASLMalformed,
		b64("\x00\x00pw"):           ErrSASLMalformed,
		b64("demo\x00pw"):           ErrSASLMalformed,
		b64("\x00demo\x00pw\x00x"):  ErrSASLMalformed,
		b64("\x00de\xffmo\x00pw"):   ErrSASLMalformed,
		b64("\x00demo\x00p\r\nw"):   ErrSASLMalformed,
		"not base64!":               ErrSASLMalformed,
		b64("\x00demo\x00pw") + "=": ErrSASLMalformed,
		"*":                         ErrSASLCancelled,
		"=":                         ErrSASLMalformed,
	} {
		if _, _, err := DecodePlain(in); !errors.Is(err, want) {
			t.Errorf("DecodePlain(%q) = %v, want %v", in, err, want)
		}
	}
	if b, err := DecodeResponse("="); err != nil || len(b) != 0 {
		t.Errorf("DecodeResponse(=) = %q, %v", b, err)
	}
}

// errReader returns data, then err.
type errReader struct {
	data string
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("gone") }

func TestWriteMessageErrors(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	boom := errors.New("disk")
	if _, rerr, werr := w.WriteMessage(&errReader{data: "a\nb", err: boom}, make([]byte, 2)); rerr != boom || werr != nil {
		t.Errorf("read failure: %v, %v", rerr, werr)
	}
	// A reader that never makes progress ends, it does not spin.
	if _, rerr, _ := w.WriteMessage(&errReader{}, make([]byte, 8)); rerr != io.ErrNoProgress {
		t.Errorf("no progress: %v", rerr)
	}
	// A client that is gone stops the copy early: the buffer fills once.
	w = NewWriter(failWriter{})
	big := &errReader{data: strings.Repeat("0123456789\n", 1<<20), err: io.EOF}
	if _, rerr, werr := w.WriteMessage(big, make([]byte, 64<<10)); rerr != nil || werr == nil {
		t.Errorf("write failure: %v, %v", rerr, werr)
	}
	if len(big.data) < 10<<20 {
		t.Errorf("read %d octets after the client was gone", 11<<20-len(big.data))
	}
}
