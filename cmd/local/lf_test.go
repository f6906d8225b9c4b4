package main

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLFReader(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb\r\n":   "a\nb\n",
		"a\rb\r\n\r\n": "a\rb\n\n",
		"end\r":        "end\r",
		"\r\r\n":       "\r\n",
		"":             "",
	} {
		for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in))} {
			b, err := io.ReadAll(newLFReader(r))
			if err != nil || string(b) != want {
				t.Errorf("%q -> %q, %v; want %q", in, b, err, want)
			}
		}
		// Tiny reads from the converter itself.
		var got []byte
		lr := newLFReader(strings.NewReader(in))
		buf := make([]byte, 1)
		for {
			n, err := lr.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if string(got) != want {
			t.Errorf("1-byte reads: %q -> %q; want %q", in, got, want)
		}
	}
}

func FuzzLFReader(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := io.ReadAll(newLFReader(iotest.HalfReader(strings.NewReader(string(in)))))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(string(in), "\r\n", "\n"); string(b) != want {
			t.Fatalf("%q -> %q, want %q", in, b, want)
		}
	})
}
