package pop3

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"postern/internal/maildir"
)

// FuzzCommand feeds arbitrary client input through the line reader and
// the parser: no panic, no line over MaxLine, and a parsed keyword is
// upper-case letters.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{"USER demo\r\nPASS x y\r\n", "RETR 1\nTOP 1 0\r\n", "AUTH PLAIN =\r\n*\r\n",
		"\x00\r\n", strings.Repeat("A", MaxLine+3), "LIST 99999999999\r\n", "capa\r\nquit"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for i := 0; i < 1000; i++ {
			line, err := r.ReadLine()
			if err != nil {
				return
			}
			if len(line) > MaxLine || strings.ContainsAny(line, "\n") {
				t.Fatalf("line %q", line)
			}
			c, err := ParseCommand(line)
			if err != nil {
				continue
			}
			if c.Name == "" || strings.ToUpper(c.Name) != c.Name {
				t.Fatalf("command %+v", c)
			}
			for _, a := range c.Args {
				ParseNumber(a, 1<<31)
			}
		}
	})
}

// FuzzSASLPlain checks that PLAIN decoding never panics and that what it
// accepts is a sane user name and password whose authzid was empty or
// the user itself.
func FuzzSASLPlain(f *testing.F) {
	for _, s := range []string{"AGRlbW8Ac2VjcmV0", "ZGVtbwBkZW1vAHB3", "b3RoZXIAZGVtbwBwdw==", "=", "*", "!!", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, p, err := DecodePlain(in)
		if err != nil {
			return
		}
		if CheckCredentials(u, p) != nil {
			t.Fatalf("accepted bad credentials %q %q", u, p)
		}
		raw, _ := DecodeResponse(in)
		if i := bytes.IndexByte(raw, 0); i > 0 && string(raw[:i]) != u {
			t.Fatalf("authzid %q accepted for %q", raw[:i], u)
		}
	})
}

// FuzzDotWriter: whatever the message, a client's un-stuffing gives back
// exactly the data (plus a CRLF when it did not end in one).
func FuzzDotWriter(f *testing.F) {
	f.Add([]byte(".\r\n..\r\nx\r\n.\r"), 3)
	f.Fuzz(func(t *testing.T, data []byte, step int) {
		// Make CRLF input as pop3d does (bare LF -> CRLF).
		crlf := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		if step <= 0 {
			step = 1
		}
		var b bytes.Buffer
		w := NewWriter(&b)
		d := w.Multi()
		for in := crlf; len(in) > 0; {
			n := min(step, len(in))
			d.Write(in[:n])
			in = in[n:]
		}
		d.Close()
		w.Flush()
		want := string(crlf)
		if len(want) > 0 && !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		if got := unstuff(t, b.String()); got != want {
			t.Fatalf("round trip %q -> %q", want, got)
		}
		CopyTop(io.Discard, bytes.NewReader(crlf), step%5)
	})
}

// FuzzWriteMessage: WriteMessage, reading the stored message in pieces of
// any size, sends exactly what maildir's CRLF conversion followed by a
// DotWriter sends, and counts the converted size.
func FuzzWriteMessage(f *testing.F) {
	for _, s := range []string{"", "a", "a\n", ".\n..\nx\n.\r", "a\r\nb\nc\r\r\n.\r\n", "\r", "\n", ".", "x\r\n."} {
		f.Add([]byte(s), 1)
		f.Add([]byte(s), 2)
	}
	f.Fuzz(func(t *testing.T, data []byte, step int) {
		step = 1 + abs(step)%64
		var ref bytes.Buffer
		rw := NewWriter(&ref)
		d := rw.Multi()
		crlf, err := io.ReadAll(maildir.NewCRLFReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		d.Write(crlf)
		d.Close()
		rw.Flush()

		var got bytes.Buffer
		w := NewWriter(&got)
		n, rerr, werr := w.WriteMessage(iotest.HalfReader(bytes.NewReader(data)), make([]byte, step))
		w.Flush()
		if rerr != nil || werr != nil {
			t.Fatalf("WriteMessage: %v %v", rerr, werr)
		}
		if got.String() != ref.String() {
			t.Fatalf("WriteMessage(%q) in pieces of %d = %q, want %q", data, step, got.String(), ref.String())
		}
		if n != int64(len(crlf)) {
			t.Fatalf("WriteMessage(%q) counted %d, want %d", data, n, len(crlf))
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
