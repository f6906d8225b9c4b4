package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// Response codes (RFC 2449 8, RFC 3206) put in brackets after -ERR.
const (
	CodeInUse   = "IN-USE"   // the mailbox is locked by another session
	CodeAuth    = "AUTH"     // the credentials are wrong (RFC 3206)
	CodeSysTemp = "SYS/TEMP" // a temporary system failure: try again later
	CodeSysPerm = "SYS/PERM" // a permanent system failure
)

// Writer writes replies. It buffers: call Flush when the client waits for
// an answer (when the Reader has nothing buffered).
type Writer struct {
	bw *bufio.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 32<<10)}
}

// clean keeps a reply text on one line: a CR or LF in it (from an error
// message that quotes something) would end the reply early and could
// forge another.
func clean(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// OK writes "+OK text".
func (w *Writer) OK(text string) error {
	return w.Line("+OK " + clean(text))
}

// Err writes "-ERR [code] text", or "-ERR text" when code is empty.
func (w *Writer) Err(code, text string) error {
	if code != "" {
		return w.Line("-ERR [" + code + "] " + clean(text))
	}
	return w.Line("-ERR " + clean(text))
}

// Line writes s and CRLF. s must not hold a line end.
func (w *Writer) Line(s string) error {
	w.bw.WriteString(s)
	_, err := w.bw.WriteString("\r\n")
	return err
}

// Flush sends what is buffered.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Multi starts the body of a multi-line reply (after its +OK line): what
// is written to the returned DotWriter is dot-stuffed, and Close ends it
// with the "." line.
func (w *Writer) Multi() *DotWriter { return &DotWriter{w: w.bw, bol: true} }

// DotWriter dot-stuffs a multi-line reply (RFC 1939 3): every line that
// begins with "." gets another "." in front, and Close adds the final
// ".\r\n", with a CRLF before it when the data did not end in one. The
// data must have CRLF line ends (maildir.NewCRLFReader makes them); it is
// otherwise passed through byte for byte. A line begins after every LF,
// so a bare CR cannot let a line escape the stuffing.
type DotWriter struct {
	w      *bufio.Writer
	bol    bool // at the beginning of a line
	closed bool
}

// Write writes p, stuffed.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.closed {
		return 0, errors.New("pop3: write after Close")
	}
	n := 0
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				return n, err
			}
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		m, err := d.w.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		d.bol = i >= 0
		p = p[len(chunk):]
	}
	return n, nil
}

// Close ends the multi-line reply. The Writer still needs a Flush.
func (d *DotWriter) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if !d.bol {
		d.w.WriteString("\r\n")
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

// WriteMessage writes the body of a multi-line reply (after its +OK line)
// straight from r, a message as stored: with LF line ends (Maildir) or
// CRLF ones. In one pass over each buffer it does what
// maildir.NewCRLFReader and a DotWriter do together: a bare LF becomes
// CRLF, a CRLF stays, a line that begins with "." gets another "." in
// front, and the "." line ends the reply (after a CRLF when the message
// does not end in a line end). buf is the read buffer, which the caller
// keeps from one message to the next (64 KiB is plenty).
//
// n is the octets of the message with CRLF line ends, not counting the
// stuffing (the size LIST shows). rerr is a failure to read r, werr one to
// write; after either the reply is incomplete and the stream unusable.
// The Writer still needs a Flush.
func (w *Writer) WriteMessage(r io.Reader, buf []byte) (n int64, rerr, werr error) {
	bw := w.bw
	bol, prevCR := true, false
	empty := 0
	for {
		m, err := r.Read(buf)
		p := buf[:m]
		for len(p) > 0 {
			if bol && p[0] == '.' {
				bw.WriteByte('.')
			}
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				bw.Write(p)
				n += int64(len(p))
				prevCR, bol = p[len(p)-1] == '\r', false
				break
			}
			if i > 0 && p[i-1] == '\r' || i == 0 && prevCR {
				bw.Write(p[:i+1])
				n += int64(i + 1)
			} else {
				bw.Write(p[:i])
				bw.WriteString("\r\n")
				n += int64(i + 2)
			}
			prevCR, bol = false, true
			p = p[i+1:]
		}
		if _, werr = bw.Write(nil); werr != nil {
			// bufio's error is sticky: the client is gone.
			return n, nil, werr
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err, nil
		}
		if m == 0 {
			// A Reader that returns nothing and no error, again and
			// again, must not make us spin.
			if empty++; empty >= 100 {
				return n, io.ErrNoProgress, nil
			}
		} else {
			empty = 0
		}
	}
	if !bol {
		bw.WriteString("\r\n")
	}
	_, werr = bw.WriteString(".\r\n")
	return n, nil, werr
}

// CopyTop copies what TOP shows (RFC 1939 7) from r, a message with CRLF
// line ends, to w: the header, the empty line that ends it, and at most
// lines lines of the body. A message without an empty line is all header.
// Lines of any length are fine: nothing is held longer than a buffer.
func CopyTop(w io.Writer, r io.Reader, lines int) error {
	br := bufio.NewReaderSize(r, 32<<10)
	inHeader, bol := true, true
	body := 0
	for {
		if !inHeader && bol && body >= lines {
			return nil
		}
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			// An empty line ends the header: "\r\n" (or "\n") at the
			// beginning of a line.
			wasBOL := bol
			bol = b[len(b)-1] == '\n'
			if _, werr := w.Write(b); werr != nil {
				return werr
			}
			if bol {
				if inHeader {
					if wasBOL && (len(b) == 1 || len(b) == 2 && b[0] == '\r') {
						inHeader = false
					}
				} else {
					body++
				}
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
