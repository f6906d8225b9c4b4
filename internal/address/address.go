// Package address parses and prints RFC 5321 mailboxes: the text an SMTP
// client puts between "<" and ">" in MAIL FROM and RCPT TO.
//
// Accepted: Local-part "@" ( Domain / address-literal ), where the local
// part is a dot-string or a quoted-string, the domain is a sequence of
// LDH labels, and the literal is [IPv4] or [IPv6:...]. With allowUTF8
// (RFC 6531, the client gave MAIL ... SMTPUTF8) the local part and the
// domain labels may also hold non-ASCII UTF-8. A source route
// ("@a,@b:user@c") is checked for syntax and dropped, as RFC 5321 4.1.1.3
// tells servers to do. The empty string is the null reverse-path "<>", and
// a bare "postmaster" (any case) is the domain-less recipient RFC 5321
// 4.1.1.3 requires every server to accept; deciding where each of these
// is allowed (null only in MAIL, bare postmaster only in RCPT) is the
// caller's job.
//
// Canonical form: the domain is lower-cased (ASCII letters only; U-labels
// are kept as given, no IDNA mapping is done) and one trailing dot is
// removed; an IPv6 literal is rewritten in RFC 5952 form; the local part
// keeps its case (case matters for local parts) and is stored decoded
// (without the quotes and backslashes of a quoted-string); a bare
// postmaster becomes "postmaster".
//
// Limits: the whole path, route included, at most 254 octets (256 with the
// angle brackets, RFC 5321 4.5.3.1.3); the local part at most 64 octets as
// sent; the domain at most 255 octets and each label at most 63.
//
// Deliberately refused, although a looser reading could accept them:
// general address literals ("[tag:...]"), IPv6 zones, IPv4 literals with
// leading zeros, domains made only of digits and dots (they read as a
// bare IP address), underscores in domains, control characters and
// C1 controls anywhere, and invalid UTF-8. Errors wrap ErrSyntax,
// ErrTooLong or ErrNonASCII so that an SMTP server can pick its reply
// (501 5.1.x, or 553 5.6.7 for non-ASCII without SMTPUTF8).
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Limits from RFC 5321 4.5.3.1.
const (
	MaxLocal  = 64  // octets in a local part, as sent
	MaxDomain = 255 // octets in a domain
	MaxPath   = 254 // octets between "<" and ">" (256 with the brackets)
	maxLabel  = 63
)

// Errors that Parse wraps; test with errors.Is.
var (
	ErrSyntax   = errors.New("bad address syntax")
	ErrTooLong  = errors.New("address too long")
	ErrNonASCII = errors.New("non-ASCII address without SMTPUTF8")
)

// Address is a parsed mailbox. Domain is "" only for the null sender
// (Local also "") and for the bare postmaster recipient. Domain holds an
// address literal with its brackets, e.g. "[192.0.2.1]".
type Address struct {
	Local, Domain string
}

// Parse parses s, the text between "<" and ">" of an SMTP path, e.g.
// "user@Example.ORG". Non-ASCII text is accepted only when allowUTF8.
func Parse(s string, allowUTF8 bool) (Address, error) {
	if s == "" {
		return Address{}, nil
	}
	if len(s) > MaxPath {
		return Address{}, fmt.Errorf("address %d octets, limit %d: %w", len(s), MaxPath, ErrTooLong)
	}
	if err := checkChars(s, allowUTF8); err != nil {
		return Address{}, err
	}
	rest := s
	if rest[0] == '@' {
		var err error
		if rest, err = dropRoute(rest); err != nil {
			return Address{}, err
		}
	}
	if strings.EqualFold(rest, "postmaster") {
		return Address{Local: "postmaster"}, nil
	}
	local, n, err := parseLocal(rest)
	if err != nil {
		return Address{}, err
	}
	if n > MaxLocal {
		return Address{}, fmt.Errorf("local part %d octets, limit %d: %w", n, MaxLocal, ErrTooLong)
	}
	rest = rest[n:]
	if rest == "" || rest[0] != '@' {
		return Address{}, fmt.Errorf("missing @domain: %w", ErrSyntax)
	}
	domain, err := parseDomainOrLiteral(rest[1:])
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: domain}, nil
}

// checkChars refuses what no part of a path may hold: control characters,
// invalid UTF-8, and non-ASCII unless allowed.
func checkChars(s string, allowUTF8 bool) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("control character 0x%02x: %w", c, ErrSyntax)
			}
			i++
			continue
		}
		if !allowUTF8 {
			return ErrNonASCII
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("invalid UTF-8: %w", ErrSyntax)
		}
		if r >= 0x80 && r <= 0x9f {
			return fmt.Errorf("C1 control character: %w", ErrSyntax)
		}
		i += size
	}
	return nil
}

// dropRoute checks and removes an A-d-l source route: "@a,@b:".
func dropRoute(s string) (string, error) {
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", fmt.Errorf("source route without ':': %w", ErrSyntax)
	}
	for _, hop := range strings.Split(s[:colon], ",") {
		if len(hop) < 2 || hop[0] != '@' {
			return "", fmt.Errorf("bad source route: %w", ErrSyntax)
		}
		if _, err := parseDomainOrLiteral(hop[1:]); err != nil {
			return "", fmt.Errorf("source route: %w", err)
		}
	}
	return s[colon+1:], nil
}

// isAtext reports whether c is an RFC 5322 atext character (ASCII only).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// parseLocal parses the local part at the start of s and returns it
// decoded, with the number of octets it took in s.
func parseLocal(s string) (string, int, error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty local part: %w", ErrSyntax)
	}
	if s[0] == '"' {
		return parseQuoted(s)
	}
	i := 0
	atomStart := true
	for i < len(s) {
		c := s[i]
		switch {
		case c == '.':
			if atomStart {
				return "", 0, fmt.Errorf("empty atom in local part: %w", ErrSyntax)
			}
			atomStart = true
		case c >= utf8.RuneSelf || isAtext(c):
			// checkChars has already refused non-ASCII when not allowed.
			atomStart = false
		case c == '@':
			if atomStart {
				return "", 0, fmt.Errorf("local part ends in '.': %w", ErrSyntax)
			}
			return s[:i], i, nil
		default:
			return "", 0, fmt.Errorf("character %q not allowed in local part: %w", c, ErrSyntax)
		}
		i++
	}
	return "", 0, fmt.Errorf("missing @domain: %w", ErrSyntax)
}

// parseQuoted parses a quoted-string local part (RFC 5321 qtextSMTP and
// quoted-pairSMTP, plus UTF-8 per RFC 6531).
func parseQuoted(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\\':
			i++
			if i >= len(s) || s[i] < 0x20 || s[i] > 0x7e {
				return "", 0, fmt.Errorf("bad quoted pair: %w", ErrSyntax)
			}
			b.WriteByte(s[i])
		default:
			// checkChars has refused controls; everything else from
			// 0x20 up (UTF-8 when allowed) is qtextSMTP.
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated quoted string: %w", ErrSyntax)
}

// parseDomainOrLiteral parses what follows "@".
func parseDomainOrLiteral(s string) (string, error) {
	if s != "" && s[0] == '[' {
		return parseLiteral(s)
	}
	return parseDomain(s)
}

func parseLiteral(s string) (string, error) {
	if len(s) < 3 || s[len(s)-1] != ']' {
		return "", fmt.Errorf("bad address literal: %w", ErrSyntax)
	}
	inner := s[1 : len(s)-1]
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		ip, err := netip.ParseAddr(inner[5:])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("bad IPv6 address literal: %w", ErrSyntax)
		}
		return "[IPv6:" + ip.String() + "]", nil
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", fmt.Errorf("bad address literal: %w", ErrSyntax)
	}
	return "[" + ip.String() + "]", nil
}

// parseDomain checks an RFC 5321 Domain (with RFC 6531 U-labels when the
// caller allowed UTF-8) and returns it lower-cased without a trailing dot.
func parseDomain(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", fmt.Errorf("empty domain: %w", ErrSyntax)
	}
	if len(s) > MaxDomain {
		return "", fmt.Errorf("domain %d octets, limit %d: %w", len(s), MaxDomain, ErrTooLong)
	}
	numeric := true
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return "", fmt.Errorf("empty label in domain: %w", ErrSyntax)
		}
		if len(label) > maxLabel {
			return "", fmt.Errorf("domain label %d octets, limit %d: %w", len(label), maxLabel, ErrTooLong)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("domain label begins or ends with '-': %w", ErrSyntax)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case '0' <= c && c <= '9':
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c >= utf8.RuneSelf:
				numeric = false
			default:
				return "", fmt.Errorf("character %q not allowed in domain: %w", c, ErrSyntax)
			}
		}
	}
	if numeric {
		return "", fmt.Errorf("numeric domain (use an address literal): %w", ErrSyntax)
	}
	return lowerASCII(s), nil
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// IsNull reports whether a is the null reverse-path "<>".
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// IsASCII reports whether a needs no SMTPUTF8 to be sent.
func (a Address) IsASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// String returns a in canonical form, ready to go between "<" and ">":
// the local part is quoted when it is not a dot-string. It is "" for the
// null address and the bare local part when there is no domain.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	local := a.Local
	if !isDotString(local) {
		local = quote(local)
	}
	if a.Domain == "" {
		return local
	}
	return local + "@" + a.Domain
}

// isDotString reports whether s can be sent without quotes.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '.' && c < utf8.RuneSelf && !isAtext(c) {
			return false
		}
	}
	return true
}

func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// SplitExtension splits an address extension off a local part, as
// Postfix's recipient_delimiter does: at the first octet of local that is
// any of the octets in delim, so "user+tag" with delim "+" gives "user"
// and "tag". Nothing is split when delim is empty, when no delimiter
// occurs, when the local part begins with one, for postmaster and
// MAILER-DAEMON, and (when delim holds "-") for the owner-xxx and
// xxx-request list conventions; user is then local and ext "". A local
// part that ends in the delimiter ("user+") gives "user" and "".
func SplitExtension(local, delim string) (user, ext string) {
	if delim == "" || strings.EqualFold(local, "postmaster") || strings.EqualFold(local, "mailer-daemon") {
		return local, ""
	}
	if strings.IndexByte(delim, '-') >= 0 {
		if len(local) >= 6 && strings.EqualFold(local[:6], "owner-") {
			return local, ""
		}
		if len(local) > 8 && strings.EqualFold(local[len(local)-8:], "-request") {
			return local, ""
		}
	}
	i := strings.IndexAny(local, delim)
	if i <= 0 {
		return local, ""
	}
	// IndexAny works on runes; delimiters are meant to be ASCII, but a
	// multi-byte delimiter is still cut on its full width.
	_, w := utf8.DecodeRuneInString(local[i:])
	return local[:i], local[i+w:]
}
