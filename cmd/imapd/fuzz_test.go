package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzAddressList: header text from any sender must never panic and must
// give balanced group markers.
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		"undisclosed-recipients:;",
		`"Doe, Jane" <jane@example.test>, Team: a@x, B <b@y>;, c@z`,
		"=?UTF-8?Q?J=C3=BCrgen?= <j@example.test> (comment (nested))",
		"<@route,@x:user@example.test>",
		"broken <unterminated",
		`"quote \" inside" <q@x>`,
		"a:b:c;;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		depth := 0
		for _, a := range addressList(s) {
			switch {
			case a.IsGroupStart():
				depth++
			case a.IsGroupEnd():
				depth--
			}
			if depth < 0 || depth > 1 {
				t.Fatalf("unbalanced groups in %q", s)
			}
		}
		if depth != 0 {
			t.Fatalf("open group in %q", s)
		}
	})
}

// FuzzLiteralMarker: the literal announcement parser.
func FuzzLiteralMarker(f *testing.F) {
	for _, s := range []string{"a APPEND x {10}\r\n", "{5+}\r\n", "~{3}\n", "{}\r\n", "{99999999999999999999}\r\n", "}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, ok := literalMarker(b)
		if ok && n < 0 {
			t.Fatalf("negative size from %q", b)
		}
		commandWords(b)
		wellFormed(b)
	})
}

// fakeConn feeds fixed input and collects output.
type fakeConn struct {
	net.Conn // nil: only the methods below are used
	in       io.Reader
	out      bytes.Buffer
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReadFilter: whatever a client sends, the command filter hands on
// at most what it received (plus the CRLFs it injects), never panics and
// always ends.
func FuzzReadFilter(f *testing.F) {
	for _, s := range []string{
		"a NOOP\r\n",
		"a APPEND INBOX {5}\r\nhello\r\nb NOOP\r\n",
		"a APPEND INBOX {5+}\r\nhello\r\n",
		"a CREATE {9999+}\r\nx",
		"\r\n\r\nUID\r\na UID\r\n",
		"a IDLE\r\nDONE\r\n",
		"a " + strings.Repeat("x", 300) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := &fakeConn{in: bytes.NewReader(data)}
		sc := newSessionConn(fc, time.Minute, 128, 1000)
		buf := make([]byte, 64)
		total := 0
		for i := 0; i < 10*len(data)+10; i++ {
			n, err := sc.Read(buf)
			total += n
			if n > 0 && buf[0] == '+' {
				sc.Write([]byte("+ go on\r\n"))
			}
			if err != nil {
				return
			}
		}
		t.Fatalf("filter did not end on %q (handed out %d bytes)", data, total)
	})
}

// FuzzOutputFilter: the response rewriter keeps literals intact.
func FuzzOutputFilter(f *testing.F) {
	f.Add([]byte("* 1 FETCH (BODY[] {38}\r\na NO [SERVERBUG] Internal server error\r\n)\r\n"), 7)
	f.Add([]byte("t1 NO [SERVERBUG] Internal server error\r\n"), 3)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		fc := &fakeConn{in: bytes.NewReader(nil)}
		sc := newSessionConn(fc, time.Minute, 128, 1000)
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		sc.Write(data[:split])
		sc.Write(data[split:])
		if !bytes.Contains(data, []byte("SERVERBUG")) && fc.out.Len() > len(data) {
			t.Fatalf("output grew without a rewrite: %q -> %q", data, fc.out.Bytes())
		}
	})
}

func TestOutputFilterKeepsLiterals(t *testing.T) {
	lit := "a NO [SERVERBUG] Internal server error\r\n"
	in := fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)\r\nt1 NO [SERVERBUG] Internal server error\r\nt2 OK done\r\n", len(lit), lit)
	fc := &fakeConn{in: bytes.NewReader(nil)}
	sc := newSessionConn(fc, time.Minute, 128, 1000)
	for i := 0; i < len(in); i += 7 { // in small pieces
		sc.Write([]byte(in[i:min(i+7, len(in))]))
	}
	got := fc.out.String()
	if !strings.Contains(got, lit+")") {
		t.Errorf("literal changed: %q", got)
	}
	if !strings.Contains(got, "t1 BAD [CLIENTBUG]") || !strings.HasSuffix(got, "t2 OK done\r\n") {
		t.Errorf("tagged line: %q", got)
	}
}
