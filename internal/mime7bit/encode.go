package mime7bit

import (
	"bufio"
	"encoding/base64"
	"unicode/utf8"
)

const upperhex = "0123456789ABCDEF"

// bodyEncoder turns raw body bytes into a transfer encoding. finish ends
// the body; atEOF says whether the message ends there too (base64 then
// ends its last line, since no delimiter line follows to do it).
type bodyEncoder interface {
	write(p []byte)
	finish(atEOF bool)
}

// qpEncoder writes quoted-printable (RFC 2045 §6.7) with lines of at most
// 76 octets. CRLF, and a bare LF too, is a hard line break: the SMTP
// client would turn a bare LF into CRLF anyway. A bare CR is =0D, so it
// survives. White space before a line break is encoded, and so is a "-"
// that would begin a line after a soft break, so that no wrapped line can
// look like a boundary delimiter.
type qpEncoder struct {
	w    *bufio.Writer
	line [80]byte
	n    int
	cr   bool // a CR waits to see whether LF follows
	soft bool // the current line follows a soft break
}

func (q *qpEncoder) write(p []byte) {
	for _, b := range p {
		if q.cr {
			q.cr = false
			if b == '\n' {
				q.hardBreak()
				continue
			}
			q.emit('\r', true)
		}
		switch {
		case b == '\r':
			q.cr = true
		case b == '\n':
			q.hardBreak()
		case b == ' ' || b == '\t' || (b >= '!' && b <= '~' && b != '='):
			q.emit(b, false)
		default:
			q.emit(b, true)
		}
	}
}

func (q *qpEncoder) emit(b byte, enc bool) {
	size := 1
	if enc {
		size = 3
	}
	if q.n+size > 75 {
		q.line[q.n] = '='
		q.n++
		q.flush(true)
		q.soft = true
	}
	if !enc && b == '-' && q.n == 0 && q.soft {
		enc = true
	}
	if enc {
		q.line[q.n] = '='
		q.line[q.n+1] = upperhex[b>>4]
		q.line[q.n+2] = upperhex[b&0x0f]
		q.n += 3
		return
	}
	q.line[q.n] = b
	q.n++
}

// fixTrailingSpace encodes a space or tab that would end a line, since
// decoders strip white space there.
func (q *qpEncoder) fixTrailingSpace() {
	if q.n > 0 && isWSP(q.line[q.n-1]) {
		q.n--
		q.emit(q.line[q.n], true)
	}
}

func (q *qpEncoder) hardBreak() {
	q.fixTrailingSpace()
	q.flush(true)
	q.soft = false
}

func (q *qpEncoder) flush(crlf bool) {
	if crlf {
		q.line[q.n] = '\r'
		q.line[q.n+1] = '\n'
		q.n += 2
	}
	q.w.Write(q.line[:q.n])
	q.n = 0
}

func (q *qpEncoder) finish(bool) {
	if q.cr {
		q.cr = false
		q.emit('\r', true)
	}
	// Whatever follows (a delimiter's CRLF, or the end of the message)
	// ends this line.
	q.fixTrailingSpace()
	q.flush(false)
}

// lineBreaker cuts base64 output into lines of 76 octets.
type lineBreaker struct {
	w *bufio.Writer
	n int
}

func (l *lineBreaker) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if l.n == 76 {
			l.w.WriteString("\r\n")
			l.n = 0
		}
		k := min(76-l.n, len(p))
		l.w.Write(p[:k])
		l.n += k
		p = p[k:]
	}
	return total, nil
}

type b64Encoder struct {
	lb  lineBreaker
	enc interface {
		Write([]byte) (int, error)
		Close() error
	}
}

func newB64Encoder(w *bufio.Writer) *b64Encoder {
	e := &b64Encoder{lb: lineBreaker{w: w}}
	e.enc = base64.NewEncoder(base64.StdEncoding, &e.lb)
	return e
}

func (e *b64Encoder) write(p []byte) { e.enc.Write(p) }

func (e *b64Encoder) finish(atEOF bool) {
	e.enc.Close()
	if atEOF && e.lb.n > 0 {
		e.lb.w.WriteString("\r\n")
	}
}

// feeder passes body bytes to an encoder but holds back the line end at
// the end of what it has seen: before a delimiter that line end belongs to
// the delimiter (RFC 2046 §5.1.1), not to the body, and must stay raw.
type feeder struct {
	enc  bodyEncoder
	held []byte
}

func (f *feeder) feed(p []byte) {
	for len(p) > 0 {
		if len(f.held) > 0 {
			if len(f.held) == 1 && f.held[0] == '\r' && p[0] == '\n' {
				f.held = append(f.held, '\n')
				p = p[1:]
				continue
			}
			f.enc.write(f.held)
			f.held = f.held[:0]
		}
		k := len(p)
		if p[k-1] == '\n' {
			k--
			if k > 0 && p[k-1] == '\r' {
				k--
			}
		} else if p[k-1] == '\r' {
			k--
		}
		f.enc.write(p[:k])
		f.held = append(f.held, p[k:]...)
		p = nil
	}
}

// end finishes the body: before a delimiter the held line end is written
// raw after the encoding; at the end of the message it is body.
func (f *feeder) end(w *bufio.Writer, atEOF bool) {
	if atEOF {
		f.enc.write(f.held)
		f.enc.finish(true)
	} else {
		f.enc.finish(false)
		w.Write(f.held)
	}
	f.held = f.held[:0]
}

// stats describes a body seen so far, to decide whether it must be
// encoded and how.
type stats struct {
	n       int64
	eight   int64 // octets >= 0x80
	ctl     int64 // controls but HT and CR LF, DEL, bare CR
	lineLen int
	prevCR  bool
	long    bool // a line over maxLine
	badUTF8 bool
	tail    []byte // an incomplete UTF-8 sequence at the end so far
}

func (s *stats) add(p []byte) {
	s.n += int64(len(p))
	for _, b := range p {
		if s.prevCR && b != '\n' {
			s.ctl++
		}
		switch {
		case b == '\n':
			n := s.lineLen
			if s.prevCR {
				n--
			}
			if n > maxLine {
				s.long = true
			}
			s.lineLen = 0
			s.prevCR = false
			continue
		case b >= 0x80:
			s.eight++
		case b == 0x7f || (b < ' ' && b != '\t' && b != '\r'):
			s.ctl++
		}
		s.lineLen++
		if s.lineLen > maxLine+1 {
			s.long = true
		}
		s.prevCR = b == '\r'
	}
	s.addUTF8(p)
}

// addUTF8 checks UTF-8 across chunk borders, carrying an incomplete
// sequence from one call to the next.
func (s *stats) addUTF8(p []byte) {
	if s.badUTF8 {
		return
	}
	for len(s.tail) > 0 && len(p) > 0 {
		s.tail = append(s.tail, p[0])
		p = p[1:]
		if utf8.FullRune(s.tail) {
			if r, _ := utf8.DecodeRune(s.tail); r == utf8.RuneError {
				s.badUTF8 = true
				return
			}
			s.tail = s.tail[:0]
		}
	}
	if len(p) == 0 {
		return
	}
	j := len(p)
	for t := len(p) - 1; t >= 0 && t >= len(p)-3; t-- {
		if utf8.RuneStart(p[t]) {
			if !utf8.FullRune(p[t:]) {
				j = t
			}
			break
		}
	}
	if !utf8.Valid(p[:j]) {
		s.badUTF8 = true
		return
	}
	s.tail = append(s.tail[:0], p[j:]...)
}

// needs reports whether the body cannot go as it is.
func (s *stats) needs() bool {
	return s.eight > 0 || s.long || s.lineLen > maxLine
}

// validUTF8 reports whether all seen was UTF-8, allowing an incomplete
// sequence at the end when more may follow.
func (s *stats) validUTF8(final bool) bool {
	return !s.badUTF8 && (!final || len(s.tail) == 0)
}

// qpFix streams a body already labelled quoted-printable: an 8-bit octet
// (illegal there, but taken literally by lenient decoders) becomes its =XX
// escape, a bare CR becomes =0D, and a line over maxLine gets soft breaks
// placed outside escapes. A line within the rules is copied unchanged.
type qpFix struct {
	n    int
	pend []byte // "=" and the hex digits seen after it so far
	soft bool
	cr   bool // the last chunk ended in CR: LF may follow in the next
}

func (f *qpFix) write(w *bufio.Writer, p []byte) {
	if f.cr {
		f.cr = false
		if p[0] == '\n' {
			w.WriteByte('\r')
		} else {
			f.token(w, []byte("=0D"))
		}
	}
	if f.n == 0 && len(f.pend) == 0 && eolLen(p) > 0 && len(p)-eolLen(p) <= maxLine && !has8bit(p) && !hasBareCR(p) {
		w.Write(p)
		f.soft = false
		return
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		if b == '\r' && i == len(p)-1 {
			if len(f.pend) > 0 {
				f.token(w, f.pend)
				f.pend = f.pend[:0]
			}
			f.cr = true
			return
		}
		if len(f.pend) > 0 {
			if isHex(b) && len(f.pend) < 3 {
				f.pend = append(f.pend, b)
				if len(f.pend) == 3 {
					f.token(w, f.pend)
					f.pend = f.pend[:0]
				}
				continue
			}
			f.token(w, f.pend)
			f.pend = f.pend[:0]
		}
		switch {
		case b == '\n':
			w.WriteByte('\n')
			f.n = 0
			f.soft = false
		case b == '\r' && i+1 < len(p) && p[i+1] == '\n':
			w.WriteByte('\r')
		case b == '=':
			f.pend = append(f.pend, '=')
		case b >= 0x80 || b == '\r':
			f.token(w, []byte{'=', upperhex[b>>4], upperhex[b&0x0f]})
		case b == '-' && f.n == 0 && f.soft:
			f.token(w, []byte("=2D"))
		default:
			f.token(w, []byte{b})
		}
	}
}

func (f *qpFix) token(w *bufio.Writer, t []byte) {
	if f.n+len(t) > maxLine-1 {
		w.WriteString("=\r\n")
		f.n = 0
		f.soft = true
		if len(t) == 1 && t[0] == '-' {
			t = []byte("=2D")
		}
	}
	w.Write(t)
	f.n += len(t)
}

func (f *qpFix) end(w *bufio.Writer) {
	if f.cr {
		f.cr = false
		f.token(w, []byte("=0D"))
	}
	if len(f.pend) > 0 {
		f.token(w, f.pend)
		f.pend = f.pend[:0]
	}
}

func isHex(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'F') || (b >= 'a' && b <= 'f')
}

// hasBareCR reports a CR that is not the CR of a closing CRLF.
func hasBareCR(p []byte) bool {
	for i, b := range p {
		if b == '\r' && (i+1 >= len(p) || p[i+1] != '\n') {
			return true
		}
	}
	return false
}

// b64Fix streams a body already labelled base64: octets >= 0x80 and bare
// CRs are dropped (RFC 2045 §6.8 has decoders ignore what is not in the
// alphabet) and a line over maxLine is cut; a "-" that would begin a cut
// line is dropped too, so that no cut makes a delimiter.
type b64Fix struct{ n int }

func (f *b64Fix) write(w *bufio.Writer, p []byte) {
	if f.n == 0 && len(p)-eolLen(p) <= maxLine && eolLen(p) > 0 && !has8bit(p) && !hasBareCR(p) {
		w.Write(p)
		return
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case b == '\n':
			w.WriteByte('\n')
			f.n = 0
		case b == '\r':
			if i+1 < len(p) && p[i+1] == '\n' {
				w.WriteByte('\r')
			}
		case b >= 0x80:
		default:
			if f.n >= maxLine {
				w.WriteString("\r\n")
				f.n = 0
				if b == '-' {
					continue
				}
			}
			w.WriteByte(b)
			f.n++
		}
	}
}

// sanitizer copies a preamble or epilogue, which no MIME reader shows:
// 8-bit octets become "?" and a line is cut at maxLine octets.
type sanitizer struct{ n int }

func (s *sanitizer) write(w *bufio.Writer, p []byte) {
	if s.n == 0 && len(p)-eolLen(p) <= maxLine && eolLen(p) > 0 && !has8bit(p) {
		w.Write(p)
		return
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case b == '\n':
			w.WriteByte('\n')
			s.n = 0
		case b == '\r' && i+1 < len(p) && p[i+1] == '\n':
			w.WriteByte('\r')
		case s.n >= maxLine:
		default:
			if b >= 0x80 {
				b = '?'
			}
			w.WriteByte(b)
			s.n++
		}
	}
}
