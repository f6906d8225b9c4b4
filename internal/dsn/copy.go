package dsn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// copyOriginal streams src to w line by line through a bufio.Reader, so
// that at most bufSize bytes of it are in memory. Every line leaves with
// CRLF. headersOnly stops at the first empty line. limit (when > 0) stops
// before the first line that would take the copy past limit bytes; a
// line longer than the buffer is copied in pieces, and if the limit falls
// inside one the line is ended there.
func copyOriginal(w *bufio.Writer, src io.Reader, headersOnly bool, limit int64) error {
	br := bufio.NewReaderSize(src, bufSize)
	left := limit
	if left <= 0 {
		left = -1
	}
	lineStart := true
	for {
		piece, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("dsn: reading original: %w", err)
		}
		eof := errors.Is(err, io.EOF)
		complete := len(piece) > 0 && piece[len(piece)-1] == '\n'
		body := piece
		if complete {
			body = body[:len(body)-1]
		}
		if len(body) > 0 && body[len(body)-1] == '\r' {
			switch {
			case complete || eof:
				// CRLF, or a final CR: the line's end either way.
				body = body[:len(body)-1]
				complete = true
			case len(body) > 1:
				// The buffer is full and the CR may begin a CRLF split
				// across reads: leave it for the next piece (ReadSlice
				// made it the last byte read, so it can be unread).
				body = body[:len(body)-1]
				if uerr := br.UnreadByte(); uerr != nil {
					return fmt.Errorf("dsn: reading original: %w", uerr)
				}
			}
		}
		if eof && len(body) > 0 {
			complete = true // a last line without its line end
		}
		if len(body) == 0 && !complete {
			return nil // EOF at a line start
		}
		if headersOnly && lineStart && complete && len(body) == 0 {
			return nil // the empty line that ends the header
		}
		n := int64(len(body))
		if complete {
			n += 2
		}
		if left >= 0 && n > left {
			if !lineStart {
				w.WriteString("\r\n") // end the piece already written
			}
			return nil
		}
		w.Write(body)
		if complete {
			w.WriteString("\r\n")
		}
		if left >= 0 {
			left -= n
		}
		lineStart = complete
		if eof {
			return nil
		}
	}
}
