package smtp

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// clientReply is one server reply as the client read it.
type clientReply struct {
	code     int
	enhanced string   // "" when none was parsed
	lines    []string // each line's text, printable, without code and enhanced code
}

// text joins the lines with a space, as Postfix shows a multi-line reply
// in logs and bounces.
func (r *clientReply) text() string {
	var b strings.Builder
	for _, l := range r.lines {
		if l == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(l)
	}
	return b.String()
}

// readClientReply reads one reply, single or multi-line, from br, whose
// buffer must be MaxClientReplyLine octets: a line that does not fit is
// a protocol error. withEnhanced takes an enhanced status code from the
// front of each line's text when it matches the reply code's class.
// Errors are the reader's (io.EOF, a timeout; io.ErrUnexpectedEOF for a
// reply cut short) or wrap ErrBadReply.
func readClientReply(br *bufio.Reader, withEnhanced bool) (*clientReply, error) {
	r := &clientReply{}
	for n := 0; ; n++ {
		if n >= MaxClientReplyLines {
			return nil, fmt.Errorf("%w: more than %d lines", ErrBadReply, MaxClientReplyLines)
		}
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: line longer than %d octets", ErrBadReply, MaxClientReplyLine)
		}
		if err != nil {
			if err == io.EOF && (len(line) > 0 || n > 0) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = line[:len(line)-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		code, more, text, ok := parseReplyLine(line)
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrBadReply, printable(string(line), 100))
		}
		if n == 0 {
			r.code = code
		} else if code != r.code {
			return nil, fmt.Errorf("%w: code %d inside a %d reply", ErrBadReply, code, r.code)
		}
		if withEnhanced {
			var enh string
			enh, text = cutEnhanced(text, code)
			if r.enhanced == "" {
				r.enhanced = enh
			}
		}
		r.lines = append(r.lines, text)
		if !more {
			return r, nil
		}
	}
}

// parseReplyLine splits a reply line without its line end: three digits
// (2-5, 0-5, 0-9), then SP (last line), "-" (more follow) or nothing
// (a last line without text), then the text, made printable.
func parseReplyLine(line []byte) (code int, more bool, text string, ok bool) {
	if len(line) < 3 {
		return 0, false, "", false
	}
	d0, d1, d2 := line[0], line[1], line[2]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '5' || d2 < '0' || d2 > '9' {
		return 0, false, "", false
	}
	code = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	if len(line) == 3 {
		return code, false, "", true
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		return 0, false, "", false
	}
	return code, more, cleanReplyText(line[4:]), true
}

// cleanReplyText makes a server's text safe to log and to put in a
// bounce: controls (HT becomes a space) and invalid UTF-8 become '?'.
func cleanReplyText(b []byte) string {
	var s strings.Builder
	s.Grow(len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c >= 0x20 && c < 0x7f {
			s.WriteByte(c)
			i++
			continue
		}
		if c == '\t' {
			s.WriteByte(' ')
			i++
			continue
		}
		if c < utf8.RuneSelf {
			s.WriteByte('?')
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError || r >= 0x80 && r <= 0x9f {
			s.WriteByte('?')
		} else {
			s.Write(b[i : i+size])
		}
		i += size
	}
	return strings.TrimRight(s.String(), " ")
}

// cutEnhanced takes a leading enhanced status code of code's class off
// text (RFC 2034: "x.y.z" then SP or the end).
func cutEnhanced(text string, code int) (enh, rest string) {
	tok, after, _ := strings.Cut(text, " ")
	if !validEnhanced(tok, code) {
		return "", text
	}
	return tok, strings.TrimLeft(after, " ")
}
