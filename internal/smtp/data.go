package smtp

import (
	"bufio"
	"bytes"
	"io"
)

// DefaultLineLimit is the longest DATA line accepted, CRLF included and
// a stuffing dot not counted. RFC 5322 allows 998 octets plus CRLF; real
// mail sometimes has a little more, so the default leaves room.
// ServerConfig.LineLimit cannot go below MinLineLimit, the 1000 that RFC
// 5321 4.5.3.1.6 obliges a server to take.
const (
	DefaultLineLimit = 2048
	MinLineLimit     = 1000
)

// DataReader reads the content of a DATA command: CRLF-terminated lines up
// to the line "." alone, removing the dot-stuffing (RFC 5321 4.5.2).
//
// It is strict about line ends, to make SMTP smuggling impossible: only
// CRLF ends a line, so the end of data is only CRLF "." CRLF. A bare LF or
// a bare CR anywhere is a violation that makes the message unacceptable;
// the reader goes on to the real end so that client and server stay in
// step, but writes nothing more. The same holds for a line longer than
// the line limit and for content over the size limit.
type DataReader struct {
	r         *bufio.Reader
	lineLimit int
	maxSize   int64

	// OnLine, when set, is called before each line is read; the server
	// uses it to arm the per-line read timeout.
	OnLine func()
}

// DataResult says how a message read by DataReader.Copy went.
type DataResult struct {
	Size        int64 // octets of unstuffed content with CRLFs, counted even when not written
	BareLF      bool  // a LF not preceded by CR was seen
	BareCR      bool  // a CR not followed by LF was seen
	LineTooLong bool  // a line was longer than the line limit
	TooBig      bool  // Size went over the size limit
	WriteErr    error // the writer failed; nothing more was written after
}

// OK reports whether the whole message was read without a violation and
// written without error.
func (r *DataResult) OK() bool {
	return !r.BareLF && !r.BareCR && !r.LineTooLong && !r.TooBig && r.WriteErr == nil
}

// NewDataReader returns a reader of message content from r. lineLimit is
// the longest line (CRLF included) that is passed on, below MinLineLimit
// meaning DefaultLineLimit; maxSize limits the content, 0 for no limit.
func NewDataReader(r *bufio.Reader, lineLimit int, maxSize int64) *DataReader {
	if lineLimit < MinLineLimit {
		lineLimit = DefaultLineLimit
	}
	return &DataReader{r: r, lineLimit: lineLimit, maxSize: maxSize}
}

// Copy reads the message up to and including the terminating "." line and
// writes every line, unstuffed and with its CRLF, to w, until the first
// violation or write error. The error is a read error only (io.EOF or a
// timeout before the end of data becomes io.ErrUnexpectedEOF or the
// timeout itself); violations are reported in the result.
func (d *DataReader) Copy(w io.Writer) (DataResult, error) {
	var res DataResult
	// line collects the current CRLF line, up to the line limit; a line
	// may arrive in several pieces when it is longer than the bufio
	// buffer.
	line := make([]byte, 0, 1024)
	lineLen := 0       // octets of the current line so far, all pieces
	pendingCR := false // the last octet read was a CR
	limit := d.lineLimit
	writing := true
	if d.OnLine != nil {
		d.OnLine()
	}
	for {
		chunk, err := d.r.ReadSlice('\n')
		prevCR := pendingCR
		if len(chunk) > 0 {
			// Is a CR at the end of the previous piece followed by
			// this piece's first octet?
			if pendingCR && chunk[0] != '\n' {
				res.BareCR = true
			}
			checkBare(chunk, pendingCR, &res)
			pendingCR = chunk[len(chunk)-1] == '\r'
			if lineLen == 0 {
				// RFC 5321 4.5.3.1.6: the stuffing dot does not
				// count against the line limit.
				limit = d.lineLimit
				if chunk[0] == '.' {
					limit++
				}
			}
			lineLen += len(chunk)
			if lineLen <= limit {
				line = append(line, chunk...)
			} else {
				res.LineTooLong = true
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return res, err
		}
		// chunk ends in LF. Only a CRLF ends a line; a bare LF was
		// flagged and the line goes on.
		n := len(chunk)
		crlf := n >= 2 && chunk[n-2] == '\r' || n == 1 && prevCR
		if !crlf {
			continue
		}
		if lineLen == 3 && line[0] == '.' {
			return res, nil
		}
		if lineLen <= limit {
			body := line
			if body[0] == '.' {
				body = body[1:]
			}
			res.Size += int64(len(body))
			if d.maxSize > 0 && res.Size > d.maxSize {
				res.TooBig = true
			}
			if writing && res.OK() {
				if _, werr := w.Write(body); werr != nil {
					res.WriteErr = werr
				}
			}
		} else {
			// Counted as received; the stuffing dot, if any, is
			// not known to matter here.
			res.Size += int64(lineLen)
			if d.maxSize > 0 && res.Size > d.maxSize {
				res.TooBig = true
			}
		}
		if !res.OK() {
			writing = false
		}
		line = line[:0]
		lineLen = 0
		pendingCR = false
		if d.OnLine != nil {
			d.OnLine()
		}
	}
}

// checkBare flags every bare CR and bare LF inside chunk. A LF at
// chunk[0] is not bare when the previous piece ended in CR; a CR as the
// last octet is left for the next piece to decide.
func checkBare(chunk []byte, pendingCR bool, res *DataResult) {
	for i := 0; i < len(chunk); {
		j := bytes.IndexAny(chunk[i:], "\r\n")
		if j < 0 {
			return
		}
		i += j
		switch chunk[i] {
		case '\r':
			if i+1 < len(chunk) && chunk[i+1] != '\n' {
				res.BareCR = true
			}
		case '\n':
			if i == 0 && !pendingCR || i > 0 && chunk[i-1] != '\r' {
				res.BareLF = true
			}
		}
		i++
	}
}
