package main

import (
	"bufio"
	"bytes"
	"io"

	"postern/internal/maildrop"
)

// dotReader passes its input through up to a line that holds only "."
// (Sendmail's end of message without -i), which it swallows.
type dotReader struct {
	br      *bufio.Reader
	atStart bool
	buf     []byte
	done    bool
}

func newDotReader(r io.Reader) *dotReader {
	return &dotReader{br: bufio.NewReaderSize(r, 64<<10), atStart: true}
}

func (d *dotReader) Read(p []byte) (int, error) {
	for len(d.buf) == 0 {
		if d.done {
			return 0, io.EOF
		}
		l, err := d.br.ReadSlice('\n')
		if d.atStart && (bytes.Equal(l, []byte(".\n")) || bytes.Equal(l, []byte(".\r\n")) || err == io.EOF && bytes.Equal(l, []byte("."))) {
			d.done = true
			return 0, io.EOF
		}
		if len(l) > 0 {
			d.atStart = l[len(l)-1] == '\n'
			d.buf = append(d.buf[:0], l...)
		}
		if err == io.EOF {
			d.done = true
		} else if err != nil && err != bufio.ErrBufferFull {
			return 0, err
		}
	}
	n := copy(p, d.buf)
	d.buf = d.buf[n:]
	return n, nil
}

// readHeader reads the header section (through the empty line, at most
// maildrop.MaxHeaderScan bytes) for sendmail -t's early check.
func readHeader(r io.Reader) ([]byte, error) {
	var out []byte
	one := make([]byte, 1)
	lineStart := 0
	for len(out) < maildrop.MaxHeaderScan {
		// One byte at a time (from a buffered reader): nothing past the
		// header may be consumed.
		n, err := r.Read(one)
		if n == 1 {
			out = append(out, one[0])
			if one[0] == '\n' {
				line := out[lineStart:]
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return out, nil
				}
				lineStart = len(out)
			}
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func hasRecipients(head []byte) bool {
	addrs, _, err := maildrop.HeaderRecipients(bytes.NewReader(head))
	return err == nil && len(addrs) > 0
}

// crlfReader turns bare LF into CRLF, for -bs clients that end lines with
// LF alone (a here-document, a script): locally there is no smuggling to
// fear, and refusing them would help nobody.
type crlfReader struct {
	r      io.Reader
	prevCR bool
	buf    []byte
	out    []byte
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(c.out) == 0 {
		if cap(c.buf) == 0 {
			c.buf = make([]byte, 4096)
		}
		n, err := c.r.Read(c.buf)
		c.out = c.out[:0]
		for _, b := range c.buf[:n] {
			if b == '\n' && !c.prevCR {
				c.out = append(c.out, '\r')
			}
			c.out = append(c.out, b)
			c.prevCR = b == '\r'
		}
		if len(c.out) == 0 {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}
