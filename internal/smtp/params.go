package smtp

import (
	"strings"
	"unicode/utf8"
)

// Limits on DSN parameters: RFC 3461 4.4 caps ENVID at 100 characters;
// ORCPT is an address plus its type, so the path limit with room for
// xtext encoding.
const (
	maxEnvID = 100
	maxORcpt = 500
)

func unsupported(kw string) *Reply {
	return reply(555, "5.5.4", "Error: unsupported parameter "+kw)
}

// mailParams checks the MAIL FROM parameters against what this session
// offers.
func (s *Session) mailParams(params []Param) (MailParams, *Reply) {
	var mp MailParams
	if len(params) > 0 && !s.extended {
		return mp, reply(555, "5.5.4", "Error: parameters need EHLO")
	}
	// SMTPUTF8 decides whether ENVID may hold UTF-8, wherever it is.
	for _, p := range params {
		if p.Keyword == "SMTPUTF8" {
			if !s.cfg.SMTPUTF8 {
				return mp, unsupported(p.Keyword)
			}
			if p.Value != "" {
				return mp, reply(501, "5.5.4", "Error: SMTPUTF8 takes no value")
			}
			mp.SMTPUTF8 = true
		}
	}
	for _, p := range params {
		switch p.Keyword {
		case "SMTPUTF8":
		case "SIZE":
			n, ok := parseSize(p.Value)
			if !ok {
				return mp, reply(501, "5.5.4", "Error: bad SIZE parameter")
			}
			if s.cfg.MaxSize > 0 && n > s.cfg.MaxSize {
				return mp, reply(552, "5.3.4", "Error: message size exceeds fixed limit")
			}
			mp.Size = n
		case "BODY":
			v := strings.ToUpper(p.Value)
			if v != "7BIT" && v != "8BITMIME" {
				return mp, reply(501, "5.5.4", "Error: unsupported BODY type")
			}
			mp.Body = v
		case "RET":
			if !s.cfg.DSN {
				return mp, unsupported(p.Keyword)
			}
			v := strings.ToUpper(p.Value)
			if v != "FULL" && v != "HDRS" {
				return mp, reply(501, "5.5.4", "Error: bad RET parameter")
			}
			mp.Ret = v
		case "ENVID":
			if !s.cfg.DSN {
				return mp, unsupported(p.Keyword)
			}
			v, ok := decodeXtext(p.Value, mp.SMTPUTF8)
			if !ok || v == "" || utf8.RuneCountInString(v) > maxEnvID {
				return mp, reply(501, "5.5.4", "Error: bad ENVID parameter")
			}
			mp.EnvID = v
		default:
			return mp, unsupported(p.Keyword)
		}
	}
	return mp, nil
}

// parseSize parses SIZE's value: 1 to 20 digits (RFC 1870); a number too
// big for int64 is taken as the largest one, which every limit refuses.
func parseSize(v string) (int64, bool) {
	if v == "" || len(v) > 20 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-9)/10 {
			n = 1<<63 - 1
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// rcptParams checks the RCPT TO parameters.
func (s *Session) rcptParams(params []Param) (RcptParams, *Reply) {
	var rp RcptParams
	if len(params) > 0 && !s.extended {
		return rp, reply(555, "5.5.4", "Error: parameters need EHLO")
	}
	for _, p := range params {
		switch p.Keyword {
		case "NOTIFY":
			if !s.cfg.DSN {
				return rp, unsupported(p.Keyword)
			}
			n, ok := parseNotify(p.Value)
			if !ok {
				return rp, reply(501, "5.5.4", "Error: bad NOTIFY parameter")
			}
			rp.Notify = n
		case "ORCPT":
			if !s.cfg.DSN {
				return rp, unsupported(p.Keyword)
			}
			v, ok := parseORcpt(p.Value, s.mp.SMTPUTF8)
			if !ok {
				return rp, reply(501, "5.5.4", "Error: bad ORCPT parameter")
			}
			rp.ORcpt = v
		default:
			return rp, unsupported(p.Keyword)
		}
	}
	return rp, nil
}

// parseNotify parses "NEVER" or a comma list of SUCCESS, FAILURE, DELAY
// (RFC 3461 4.1), upper-cased, without repeats.
func parseNotify(v string) ([]string, bool) {
	parts := strings.Split(strings.ToUpper(v), ",")
	if len(parts) > 3 {
		return nil, false
	}
	for i, p := range parts {
		switch p {
		case "NEVER":
			if len(parts) != 1 {
				return nil, false
			}
		case "SUCCESS", "FAILURE", "DELAY":
		default:
			return nil, false
		}
		for _, q := range parts[:i] {
			if q == p {
				return nil, false
			}
		}
	}
	return parts, true
}

// parseORcpt parses addr-type ";" xtext (RFC 3461 4.2) and returns the
// type as sent, ";", and the decoded address. utf-8-addr-xtext escapes
// (RFC 6533 "\x{...}") are left as they are.
func parseORcpt(v string, utf8OK bool) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || typ == "" || addr == "" || len(v) > maxORcpt {
		return "", false
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return "", false
		}
	}
	dec, ok := decodeXtext(addr, utf8OK)
	if !ok {
		return "", false
	}
	return typ + ";" + dec, true
}

// decodeXtext decodes RFC 3461 xtext ("+" and two hex digits stand for an
// octet). The result must be printable: an encoded CR or LF must not reach
// a DSN header. Raw UTF-8 is allowed only when utf8OK (RFC 6533).
func decodeXtext(v string, utf8OK bool) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '+':
			if i+2 >= len(v) {
				return "", false
			}
			h, ok1 := unhex(v[i+1])
			l, ok2 := unhex(v[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = h<<4 | l
			i += 2
			if c < 0x20 || c >= 0x7f {
				return "", false
			}
			b.WriteByte(c)
		case c >= utf8.RuneSelf:
			if !utf8OK {
				return "", false
			}
			b.WriteByte(c)
		case c < 0x21 || c == '=' || c == 0x7f:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", false
	}
	return out, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
