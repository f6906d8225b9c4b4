package maildir

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// crlfOf is the obvious whole-buffer CRLF conversion: bare LF -> CRLF.
func crlfOf(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func TestCRLFReader(t *testing.T) {
	for _, in := range []string{"", "a", "a\nb\n", "\n\n", "a\r\nb\nc\r", "\r\n\n\r\r\n", strings.Repeat("x\n", 40000)} {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader, iotest.HalfReader, iotest.DataErrReader,
		} {
			got, err := io.ReadAll(wrap(NewCRLFReader(wrap(strings.NewReader(in)))))
			if err != nil {
				t.Fatal(err)
			}
			if want := crlfOf([]byte(in)); !bytes.Equal(got, want) {
				t.Fatalf("NewCRLFReader(%.40q) = %.40q, want %.40q", in, got, want)
			}
			n, err := CRLFSize(strings.NewReader(in))
			if err != nil || n != int64(len(crlfOf([]byte(in)))) {
				t.Fatalf("CRLFSize(%.40q) = %d %v", in, n, err)
			}
		}
	}
}

// FuzzCRLF checks the streaming reader and the counter against crlfOf.
func FuzzCRLF(f *testing.F) {
	f.Add([]byte("a\nb\r\nc\r"), []byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		want := crlfOf(data)
		got, err := io.ReadAll(NewCRLFReader(&chunkReader{data: bytes.Clone(data), sizes: sizes}))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("NewCRLFReader(%q) = %q, want %q", data, got, want)
		}
		var c crlfCounter
		rest := data
		for _, s := range sizes {
			k := min(int(s), len(rest))
			c.add(rest[:k])
			rest = rest[k:]
		}
		c.add(rest)
		if int64(len(data))+c.added != int64(len(want)) {
			t.Fatalf("counter says %d, want %d", int64(len(data))+c.added, len(want))
		}
	})
}

func TestAppendCRLF(t *testing.T) {
	for _, in := range []string{"", "a", "\n", "\r\n", "a\nb\r\nc\n\n", "\r", "x\r\r\n\n", "no end"} {
		want, _ := io.ReadAll(NewCRLFReader(strings.NewReader(in)))
		if got := AppendCRLF([]byte("pre"), []byte(in)); string(got) != "pre"+string(want) {
			t.Errorf("%q: got %q, want %q", in, got, "pre"+string(want))
		}
	}
}

func FuzzAppendCRLF(f *testing.F) {
	f.Add([]byte("a\nb\r\nc\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		want, _ := io.ReadAll(NewCRLFReader(bytes.NewReader(in)))
		if got := AppendCRLF(nil, in); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q, want %q", in, got, want)
		}
	})
}
