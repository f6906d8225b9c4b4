package mime7bit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// chunk is one read from a lineReader: a whole line, or a piece of a line
// longer than the read buffer.
type chunk struct {
	b        []byte // valid until the next read
	cont     bool   // continues a line that an earlier chunk began
	eol      bool   // ends with LF
	complete bool   // holds the rest of its line: it ends with LF, or at EOF
}

// lineReader cuts the input into chunks at LF without ever holding more
// than readBufSize bytes of one line, and can push one chunk back: the
// parsers read a line before they know whose it is (a header field, the
// first body line, a boundary).
type lineReader struct {
	br      *bufio.Reader
	mid     bool // the last chunk handed out did not end its line
	back    chunk
	hasBack bool
	backBuf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, readBufSize)}
}

// next returns the next chunk, or io.EOF (only ever alone) at the end.
func (lr *lineReader) next() (chunk, error) {
	if lr.hasBack {
		lr.hasBack = false
		return lr.back, nil
	}
	b, err := lr.br.ReadSlice('\n')
	if len(b) == 0 {
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			err = io.ErrNoProgress
		}
		if !errors.Is(err, io.EOF) {
			err = fmt.Errorf("mime7bit: reading message: %w", err)
		}
		return chunk{}, err
	}
	ch := chunk{b: b, cont: lr.mid, eol: b[len(b)-1] == '\n'}
	switch {
	case err == nil, errors.Is(err, io.EOF):
		ch.complete = true
	case errors.Is(err, bufio.ErrBufferFull):
	default:
		return chunk{}, fmt.Errorf("mime7bit: reading message: %w", err)
	}
	lr.mid = !ch.eol
	return ch, nil
}

// unread makes ch, the chunk that next last returned, come again.
func (lr *lineReader) unread(ch chunk) {
	lr.backBuf = append(lr.backBuf[:0], ch.b...)
	ch.b = lr.backBuf
	lr.back = ch
	lr.hasBack = true
}

// eolLen is the length of the line end (CRLF or bare LF) that b ends with.
func eolLen(b []byte) int {
	n := len(b)
	if n == 0 || b[n-1] != '\n' {
		return 0
	}
	if n >= 2 && b[n-2] == '\r' {
		return 2
	}
	return 1
}

func isBlankLine(b []byte) bool {
	return len(b) > 0 && eolLen(b) == len(b)
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func has8bit[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// hasLongLine reports whether a line of b (split at LF, one CR before the
// LF not counted) is over maxLine octets.
func hasLongLine(b []byte) bool {
	n := 0
	for i, c := range b {
		if c == '\n' {
			if i > 0 && b[i-1] == '\r' {
				n--
			}
			if n > maxLine {
				return true
			}
			n = 0
			continue
		}
		n++
	}
	return n > maxLine
}

// outWriter remembers the first write error so that the converter can
// stop reading once its output is gone.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = fmt.Errorf("mime7bit: writing: %w", err)
	}
	return n, err
}
