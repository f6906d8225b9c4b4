package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// checkValue validates an expanded value against its setting's kind and
// own check.
func checkValue(p *param, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("control character %q in value", c)
		}
	}
	switch p.Kind {
	case KindInt:
		if _, err := parseCount(v, p.min, p.max); err != nil {
			return err
		}
	case KindBool:
		if _, err := parseBool(v); err != nil {
			return err
		}
	case KindDuration:
		if _, err := parseDuration(v, p.min, p.max); err != nil {
			return err
		}
	case KindList:
		if _, err := splitList(v); err != nil {
			return err
		}
	case KindMaps:
		if _, err := parseMapList(v, "", p.aliases); err != nil {
			return err
		}
	}
	if p.check != nil {
		return p.check(v)
	}
	return nil
}

// parseCount parses a decimal count or size: digits only, no sign and no
// unit, as Postfix.
func parseCount(v string, lo, hi int64) (int64, error) {
	if v == "" {
		return 0, errors.New("empty value; expected a number")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("%q is not a number (digits only, no unit)", truncate(v))
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || hi > 0 && n > hi {
		if hi > 0 {
			return 0, fmt.Errorf("%s is out of range %d..%d", truncate(v), lo, hi)
		}
		return 0, fmt.Errorf("%s is out of range (at least %d)", truncate(v), lo)
	}
	return n, nil
}

// parseBool accepts yes and no, in any case, as Postfix.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes or no", truncate(v))
}

var timeUnits = map[byte]int64{'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}

// parseDuration parses a Postfix time: a number and an optional unit s, m,
// h, d or w (a bare number is seconds). lo and hi are in seconds.
func parseDuration(v string, lo, hi int64) (time.Duration, error) {
	if v == "" {
		return 0, errors.New("empty value; expected a time such as 300s, 5m, 2h, 5d or 1w")
	}
	num, unit := v, int64(1)
	if u, ok := timeUnits[v[len(v)-1]|0x20]; ok && v[len(v)-1] >= 'A' {
		num, unit = v[:len(v)-1], u
	}
	n, err := parseCount(num, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time: a number with an optional unit s, m, h, d or w", truncate(v))
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("%s is too long", truncate(v))
	}
	secs := n * unit
	if secs < lo || hi > 0 && secs > hi {
		return 0, fmt.Errorf("%s is out of range %s..%s", v, fmtSecs(lo), fmtSecs(hi))
	}
	return time.Duration(secs) * time.Second, nil
}

func fmtSecs(s int64) string {
	switch {
	case s >= 86400 && s%86400 == 0:
		return strconv.FormatInt(s/86400, 10) + "d"
	case s >= 3600 && s%3600 == 0:
		return strconv.FormatInt(s/3600, 10) + "h"
	}
	return strconv.FormatInt(s, 10) + "s"
}

func checkNonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func checkOneLine(v string) error { return checkNonEmpty(v) }

func checkAbsPath(v string) error {
	if !strings.HasPrefix(v, "/") {
		return fmt.Errorf("%q is not an absolute path", truncate(v))
	}
	return nil
}

func checkAbsPathOrEmpty(v string) error {
	if v == "" {
		return nil
	}
	return checkAbsPath(v)
}

// checkAccountName accepts a portable user or group name (POSIX portable
// file name characters, not beginning with a hyphen).
func checkAccountName(v string) error {
	if v == "" || len(v) > 32 || v[0] == '-' {
		return fmt.Errorf("%q is not a valid user or group name", truncate(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(isAlnum(c) || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%q is not a valid user or group name", truncate(v))
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validDomain reports whether d is a domain name in letters, digits and
// hyphens (internationalised names in their xn-- form), with a trailing dot
// allowed.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func checkDomain(v string) error {
	if !validDomain(v) {
		return fmt.Errorf("%q is not a domain name", truncate(v))
	}
	return nil
}

// checkDomainList accepts a list of domain names, type:name tables and
// /path files of domain names.
func checkDomainList(v string) error {
	entries, err := splitList(v)
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e, "/"):
		case strings.Contains(e, ":"):
			if _, err := parseMapList(e, "", false); err != nil {
				return err
			}
		case !validDomain(e):
			return fmt.Errorf("%q is not a domain name, a type:name table or a /path", truncate(e))
		}
	}
	return nil
}

func checkDelimiter(v string) error {
	if strings.ContainsAny(v, " \t@\"<>,") {
		return fmt.Errorf("%q: a delimiter may not be white space, @, quote, comma or angle bracket", truncate(v))
	}
	return nil
}

func checkHomeMailbox(v string) error {
	if v == "" {
		return nil // mbox in mail_spool_directory, as Postfix
	}
	if strings.HasPrefix(v, "/") {
		return fmt.Errorf("%q must be relative to the home directory", truncate(v))
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return fmt.Errorf("%q may not contain \"..\"", truncate(v))
		}
	}
	return nil
}

// parseNetwork parses a mynetworks entry: a.b.c.d, a.b.c.d/len, an IPv6
// address or network with or without brackets ([::1]/128, ::1/128).
func parseNetwork(e string) (netip.Prefix, error) {
	s := e
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Prefix{}, fmt.Errorf("%q: missing ]", truncate(e))
		}
		rest := s[end+1:]
		if rest != "" && rest[0] != '/' {
			return netip.Prefix{}, fmt.Errorf("%q: text after ]", truncate(e))
		}
		s = s[1:end] + rest
		if a, err := netip.ParseAddr(s[:end-1]); err != nil || !a.Is6() {
			return netip.Prefix{}, fmt.Errorf("%q: only an IPv6 address goes in brackets", truncate(e))
		}
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%q: an address zone is not allowed", truncate(e))
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", truncate(e))
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network in address/length form", truncate(e))
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", truncate(e), m)
	}
	return p, nil
}

func checkNetworks(v string) error {
	_, err := parseNetworks(v)
	return err
}

func parseNetworks(v string) (NetList, error) {
	entries, err := splitList(v)
	if err != nil {
		return nil, err
	}
	var out NetList
	for _, e := range entries {
		p, err := parseNetwork(e)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// NetList is a parsed list of networks, such as mynetworks.
type NetList []netip.Prefix

// Contains reports whether a is in one of the networks. An IPv4 address
// mapped into IPv6 (as a dual-stack socket reports it) counts as the IPv4
// address.
func (n NetList) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var loopbacks = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}

// parseInterfaces parses inet_interfaces; nil means all addresses.
func parseInterfaces(v string) ([]netip.Addr, error) {
	entries, err := splitList(v)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("empty; use all, loopback-only or a list of addresses")
	}
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	addOne := func(a netip.Addr) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, e := range entries {
		switch strings.ToLower(e) {
		case "all":
			if len(entries) > 1 {
				return nil, errors.New("all must stand alone")
			}
			return nil, nil
		case "loopback-only", "localhost":
			for _, a := range loopbacks {
				addOne(a)
			}
			continue
		}
		s := e
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			s = s[1 : len(s)-1]
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address (host names are not accepted here)", truncate(e))
		}
		addOne(a.Unmap())
	}
	return out, nil
}

func checkInterfaces(v string) error {
	_, err := parseInterfaces(v)
	return err
}

// checkAbsPathList accepts a list of absolute paths (or nothing).
func checkAbsPathList(v string) error {
	l, err := splitList(v)
	if err != nil {
		return err
	}
	for _, p := range l {
		if err := checkAbsPath(p); err != nil {
			return err
		}
	}
	return nil
}

// checkOneOf builds a check that accepts exactly the given words.
func checkOneOf(words ...string) func(string) error {
	return func(v string) error {
		for _, w := range words {
			if v == w {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", truncate(v), strings.Join(words, ", "))
	}
}

// Restrictions are the words that the smtpd_*_restrictions lists know.
var Restrictions = []string{
	"permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination",
	"reject_sender_login_mismatch", "permit", "reject",
}

func checkRestrictions(v string) error {
	l, err := splitList(v)
	if err != nil {
		return err
	}
	for _, w := range l {
		known := false
		for _, r := range Restrictions {
			if w == r {
				known = true
			}
		}
		if !known {
			return fmt.Errorf("unknown restriction %q (known: %s)", truncate(w), strings.Join(Restrictions, ", "))
		}
	}
	return nil
}

// checkDefaultTransport accepts the transports qmgr can route the rest of
// the world to.
func checkDefaultTransport(v string) error {
	t, _, _ := strings.Cut(strings.TrimSpace(v), ":")
	switch t {
	case "smtp", "error", "discard":
		return nil
	}
	return fmt.Errorf("%q: default_transport is one of smtp, error:TEXT, discard", truncate(v))
}
