package main

import (
	"bufio"
	"io"
)

// lfReader turns the stored message's CRLF line ends into LF, the Unix
// form that mailbox files and commands expect (a CR not followed by LF is
// kept), without holding the message in memory.
type lfReader struct {
	br      *bufio.Reader
	pending bool // a CR was read and not yet written
}

func newLFReader(r io.Reader) *lfReader { return &lfReader{br: bufio.NewReaderSize(r, 64<<10)} }

func (r *lfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := r.br.ReadByte()
		if err != nil {
			if r.pending {
				p[n] = '\r'
				n++
				r.pending = false
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if r.pending {
			r.pending = false
			if c != '\n' {
				p[n] = '\r'
				n++
				if n == len(p) {
					r.br.UnreadByte()
					return n, nil
				}
			}
		}
		if c == '\r' {
			r.pending = true
			continue
		}
		p[n] = c
		n++
	}
	return n, nil
}
