package smtp

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Reply is an SMTP reply. Text may hold several lines separated by "\n";
// each is sent with the code and, where the protocol wants one, the
// enhanced status code (RFC 2034, RFC 3463).
type Reply struct {
	Code     int
	Enhanced string // e.g. "5.1.1"; empty means "class.0.0"
	Text     string
}

// Error makes a *Reply usable as an error: ParseCommand returns the reply
// that the server should send.
func (r *Reply) Error() string {
	e := r.Enhanced
	if e == "" {
		e = defaultEnhanced(r.Code)
	}
	return strconv.Itoa(r.Code) + " " + e + " " + r.Text
}

func reply(code int, enhanced, text string) *Reply {
	return &Reply{Code: code, Enhanced: enhanced, Text: text}
}

// Limits on what a reply puts on the wire: RFC 5321 4.5.3.1.5 allows 512
// octets per reply line including the code and CRLF.
const (
	maxReplyLine  = 512
	maxReplyLines = 32
)

func defaultEnhanced(code int) string {
	switch code / 100 {
	case 2:
		return "2.0.0"
	case 4:
		return "4.0.0"
	case 5:
		return "5.0.0"
	}
	return ""
}

// validEnhanced reports whether e is class.subject.detail (RFC 3463:
// class 2, 4 or 5, subject 1-3 digits, detail 1-3 digits) and its class
// matches the reply code's first digit.
func validEnhanced(e string, code int) bool {
	parts := strings.Split(e, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] != byte('0'+code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// appendReply formats r in wire form. withEnhanced is false only for the
// replies RFC 2034 exempts (greeting, HELO/EHLO, 354). utf8OK allows
// UTF-8 in the text (an SMTPUTF8 transaction); otherwise non-ASCII and
// control characters become '?', so a handler that echoes a peer's bytes
// cannot break the framing.
func appendReply(b []byte, r *Reply, withEnhanced, utf8OK bool) []byte {
	code := strconv.Itoa(r.Code)
	enh := ""
	if withEnhanced {
		enh = r.Enhanced
		if !validEnhanced(enh, r.Code) {
			enh = defaultEnhanced(r.Code)
		}
	}
	lines := strings.Split(r.Text, "\n")
	if len(lines) > maxReplyLines {
		lines = lines[:maxReplyLines]
	}
	for i, line := range lines {
		start := len(b)
		b = append(b, code...)
		if i == len(lines)-1 {
			b = append(b, ' ')
		} else {
			b = append(b, '-')
		}
		if enh != "" {
			b = append(b, enh...)
			if line != "" {
				b = append(b, ' ')
			}
		}
		room := maxReplyLine - 2 - (len(b) - start)
		b = appendSanitized(b, strings.TrimRight(line, "\r"), room, utf8OK)
		b = append(b, '\r', '\n')
	}
	return b
}

// appendSanitized appends at most room octets of s, replacing what may
// not appear in a reply line, and never cutting a UTF-8 sequence.
func appendSanitized(b []byte, s string, room int, utf8OK bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			if room < 1 {
				break
			}
			b = append(b, c)
			room--
			i++
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if utf8OK && c >= utf8.RuneSelf && r != utf8.RuneError && !(r >= 0x80 && r <= 0x9f) {
			if room < size {
				break
			}
			b = append(b, s[i:i+size]...)
			room -= size
		} else {
			if room < 1 {
				break
			}
			b = append(b, '?')
			room--
		}
		i += size
	}
	return b
}
