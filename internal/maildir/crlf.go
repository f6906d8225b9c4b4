package maildir

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Messages are stored with LF line ends (as every Maildir reader expects),
// but POP3 and IMAP speak CRLF and report sizes in CRLF form. This file
// converts on the way out and computes that "virtual" size, the W= of
// Dovecot's file names: the on-disk size plus one for every LF that is not
// already preceded by a CR.

// crlfReader is the reader NewCRLFReader returns.
type crlfReader struct {
	r      io.Reader
	buf    []byte // raw input not yet returned
	raw    []byte // backing array of buf
	prevCR bool   // the last byte handed out was a CR
	lfDue  bool   // a CR was inserted, its LF is still owed
	err    error
}

// NewCRLFReader returns r with every bare LF turned into CRLF (existing
// CRLF kept). It never reads more from r than the caller asks for, rounded
// up to 32 KiB.
func NewCRLFReader(r io.Reader) io.Reader {
	return &crlfReader{r: r, raw: make([]byte, 32*1024)}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.lfDue {
			p[n] = '\n'
			n++
			c.lfDue = false
			c.prevCR = false
			continue
		}
		if len(c.buf) == 0 {
			if c.err != nil {
				break
			}
			if n > 0 {
				// Hand out what we have rather than block on the source.
				break
			}
			m, err := c.r.Read(c.raw[:min(len(c.raw), max(len(p), 512))])
			c.buf = c.raw[:m]
			c.err = err
			if m == 0 && err == nil {
				return 0, nil
			}
			continue
		}
		// Copy up to the next LF that needs a CR.
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			k := copy(p[n:], c.buf)
			c.prevCR = c.buf[k-1] == '\r'
			c.buf = c.buf[k:]
			n += k
			continue
		}
		if i > 0 {
			k := copy(p[n:], c.buf[:i])
			c.prevCR = c.buf[k-1] == '\r'
			c.buf = c.buf[k:]
			n += k
			continue
		}
		// c.buf[0] == '\n'
		c.buf = c.buf[1:]
		if c.prevCR {
			p[n] = '\n'
			n++
			c.prevCR = false
			continue
		}
		p[n] = '\r'
		n++
		c.lfDue = true
	}
	if n == 0 && len(c.buf) == 0 && !c.lfDue && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// crlfCounter counts, over a stream given in pieces, the LFs that are not
// preceded by a CR: the bytes a CRLF conversion adds.
type crlfCounter struct {
	prevCR bool
	added  int64
}

func (c *crlfCounter) add(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.prevCR = p[len(p)-1] == '\r'
			return
		}
		if !(i == 0 && c.prevCR) && !(i > 0 && p[i-1] == '\r') {
			c.added++
		}
		c.prevCR = false
		p = p[i+1:]
	}
}

// CRLFSize computes the size that the content of r has with CRLF line ends
// (for files without W= in their name): every bare LF counts twice.
func CRLFSize(r io.Reader) (int64, error) {
	var c crlfCounter
	var n int64
	buf := make([]byte, 64*1024)
	for {
		m, err := r.Read(buf)
		c.add(buf[:m])
		n += int64(m)
		if err == io.EOF {
			return n + c.added, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// fileCRLFSize is CRLFSize of the file at path.
func fileCRLFSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := CRLFSize(f)
	if err != nil {
		return 0, fmt.Errorf("maildir %s: %w", path, err)
	}
	return n, nil
}

// AppendCRLF appends src, taken as a whole stream, to dst with every
// bare LF turned into CRLF, in one pass: a whole message read into memory
// converts faster so than through NewCRLFReader.
func AppendCRLF(dst, src []byte) []byte {
	prevCR := false
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:i]...)
		if !(i == 0 && prevCR) && !(i > 0 && src[i-1] == '\r') {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		prevCR = false
		src = src[i+1:]
	}
	return dst
}
