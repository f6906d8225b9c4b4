package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readData(input string, bufSize, lineLimit int, maxSize int64) (string, DataResult, string, error) {
	br := bufio.NewReaderSize(strings.NewReader(input), bufSize)
	var out bytes.Buffer
	res, err := NewDataReader(br, lineLimit, maxSize).Copy(&out)
	rest, _ := io.ReadAll(br)
	return out.String(), res, string(rest), err
}

func TestDataReader(t *testing.T) {
	tests := []struct {
		in, out, rest string
		bad           string // "", "LF", "CR", "long", "big"
		err           bool
	}{
		{"a\r\nb\r\n.\r\nNOOP\r\n", "a\r\nb\r\n", "NOOP\r\n", "", false},
		{".\r\n", "", "", "", false},
		{"..\r\n.\r\n", ".\r\n", "", "", false},
		{"..x\r\n...\r\n.\r\n", ".x\r\n..\r\n", "", "", false},
		{"a\nb\r\n.\r\n", "", "", "LF", false},
		{"a\rb\r\n.\r\n", "", "", "CR", false},
		{"ok\r\na\n.\nb\r\n.\r\nX", "ok\r\n", "X", "LF", false},
		{"a\r\n.\nb\r\n.\r\n", "a\r\n", "", "LF", false},
		{"a\r\n.\rb\r\n.\r\n", "a\r\n", "", "CR", false},
		{"a\r\r\n.\r\n", "", "", "CR", false},
		{"a\r\n\r.\r\n.\r\n", "a\r\n", "", "CR", false},
		{"\n.\r\n.\r\n", "", "", "LF", false},
		{"a\r\n", "a\r\n", "", "", true},
		{"a\r\n.", "a\r\n", "", "", true},
		{"a\r\n.\r", "a\r\n", "", "", true},
		{"", "", "", "", true},
		{strings.Repeat("x", 1000) + "\r\n.\r\n", "", "", "long", false},
		{strings.Repeat("x", 998) + "\r\n.\r\n", strings.Repeat("x", 998) + "\r\n", "", "", false},
		{"." + strings.Repeat("x", 998) + "\r\n.\r\n", strings.Repeat("x", 998) + "\r\n", "", "", false},
		{strings.Repeat("x", 2000) + "\r\nok\r\n.\r\n", "", "", "long", false},
		{strings.Repeat("y\r\n", 700) + ".\r\n", strings.Repeat("y\r\n", 666), "", "big", false},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{16, 4096} {
			out, res, rest, err := readData(tt.in, bufSize, 1000, 2000)
			name := tt.in
			if len(name) > 40 {
				name = name[:40]
			}
			if (err != nil) != tt.err {
				t.Errorf("%q/%d: err %v", name, bufSize, err)
				continue
			}
			if tt.err {
				if err != io.ErrUnexpectedEOF {
					t.Errorf("%q/%d: err %v, want unexpected EOF", name, bufSize, err)
				}
				continue
			}
			if tt.bad == "" && !res.OK() || tt.bad == "LF" && !res.BareLF || tt.bad == "CR" && !res.BareCR ||
				tt.bad == "long" && !res.LineTooLong || tt.bad == "big" && !res.TooBig {
				t.Errorf("%q/%d: result %+v, want %s", name, bufSize, res, tt.bad)
			}
			if tt.bad != "LF" && res.BareLF || tt.bad != "CR" && res.BareCR {
				t.Errorf("%q/%d: spurious result %+v", name, bufSize, res)
			}
			if tt.bad != "big" && out != tt.out || tt.bad == "big" && len(out) > 2000 {
				t.Errorf("%q/%d: out %q, want %q", name, bufSize, out, tt.out)
			}
			if rest != tt.rest {
				t.Errorf("%q/%d: rest %q, want %q", name, bufSize, rest, tt.rest)
			}
		}
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errors.New("broken")
	}
	w.n--
	return len(p), nil
}

func TestDataReaderWriteError(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("a\r\nb\r\nc\r\n.\r\nNEXT"))
	w := &failWriter{n: 1}
	res, err := NewDataReader(br, 0, 0).Copy(w)
	if err != nil || res.WriteErr == nil || res.Size != 9 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
		t.Fatalf("not in step: %q", rest)
	}
}

// FuzzDataReader feeds arbitrary content to the reader: it must not
// panic, must stop at the first CRLF.CRLF and nowhere else, and what it
// writes must be CRLF lines free of bare CR and LF. Clean CRLF text,
// dot-stuffed, must come back unchanged.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "..\r\n.\r\n", "a\n.\n", "a\r.\r\n.\r\n", "\r\n.\r\nX", ".\r", "x\r\r\n.\r\n"} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSel uint8) {
		bufSize := 16 + int(bufSel)
		br := bufio.NewReaderSize(bytes.NewReader(in), bufSize)
		var out bytes.Buffer
		res, err := NewDataReader(br, MinLineLimit, 4000).Copy(&out)
		end := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
		if err != nil {
			if end >= 0 {
				t.Fatalf("no end found in %q: %v", in, err)
			}
			return
		}
		if end < 0 {
			t.Fatalf("end found where there is none: %q", in)
		}
		rest, _ := io.ReadAll(br)
		if len(rest) != len(in)-(end+3) {
			t.Fatalf("stopped at %d, end at %d", len(in)-len(rest), end+3)
		}
		o := out.Bytes()
		if len(o) > 0 && !bytes.HasSuffix(o, []byte("\r\n")) {
			t.Fatalf("output not CRLF lines: %q", o)
		}
		if bytes.Count(o, []byte("\r")) != bytes.Count(o, []byte("\n")) || bytes.Count(o, []byte("\r\n")) != bytes.Count(o, []byte("\n")) {
			t.Fatalf("bare CR or LF written: %q", o)
		}
		if int64(len(o)) > res.Size || res.Size > int64(len(in)) {
			t.Fatalf("size %d, wrote %d, input %d", res.Size, len(o), len(in))
		}

		// Round trip: make the input clean CRLF text, stuff, read back.
		clean := bytes.ReplaceAll(in, []byte("\r"), nil)
		clean = bytes.ReplaceAll(clean, []byte("\n"), []byte("\r\n"))
		if len(clean) > 0 && !bytes.HasSuffix(clean, []byte("\r\n")) {
			clean = append(clean, '\r', '\n')
		}
		stuffed := []byte(stuff(string(clean)) + ".\r\nTAIL")
		br = bufio.NewReaderSize(bytes.NewReader(stuffed), bufSize)
		out.Reset()
		res, err = NewDataReader(br, 100000, 0).Copy(&out)
		if err != nil || !res.OK() || !bytes.Equal(out.Bytes(), clean) {
			t.Fatalf("round trip of %q: %+v %v, got %q", clean, res, err, out.Bytes())
		}
		if rest, _ := io.ReadAll(br); string(rest) != "TAIL" {
			t.Fatalf("round trip left %q", rest)
		}
	})
}
