package route

import (
	"errors"
	"fmt"
	"strings"
)

// MaxForwardTargets bounds the destinations one .forward or :include:
// file may list.
const MaxForwardTargets = 1000

// ParseForward parses a forward(5) file (~/.forward) or an :include: file:
// one or more destinations per line, separated by commas or white space;
// lines that start with "#" and empty lines are skipped. A destination
// with white space or commas in it is quoted ("|/usr/bin/vacation -a
// joe"); a line whose first character (after white space) is "|" is one
// command, quotes or not, as qmail and most .forward files expect.
// Destinations are addresses, "|command", "/file" (or "/dir/" for a
// Maildir), ":include:/path" and "\user".
//
// The result never holds an empty string; an error names the line.
func ParseForward(data []byte) ([]string, error) {
	var out []string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("line %d: NUL byte", n+1)
		}
		var l []string
		if line[0] == '|' {
			l = []string{line}
		} else {
			var err error
			if l, err = splitTargets(line); err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
		}
		for _, t := range l {
			if t == "|" || strings.TrimSpace(t) == "" {
				return nil, fmt.Errorf("line %d: empty destination", n+1)
			}
		}
		out = append(out, l...)
		if len(out) > MaxForwardTargets {
			return nil, fmt.Errorf("more than %d destinations", MaxForwardTargets)
		}
	}
	return out, nil
}

// splitTargets splits at commas and white space outside double quotes; a
// destination that is one whole quoted string loses its quotes and
// backslash escapes, one only partly quoted ("john doe"@example.org)
// keeps them, as in aliases(5).
func splitTargets(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		if c == ',' || c == ' ' || c == '\t' {
			i++
			continue
		}
		start := i
		inQuote := false
		for i < len(s) {
			c := s[i]
			if inQuote {
				if c == '\\' && i+1 < len(s) {
					i += 2
					continue
				}
				if c == '"' {
					inQuote = false
				}
				i++
				continue
			}
			if c == ',' || c == ' ' || c == '\t' {
				break
			}
			if c == '"' {
				inQuote = true
			}
			i++
		}
		if inQuote {
			return nil, errors.New("unterminated quote")
		}
		tok := s[start:i]
		if tok[0] == '"' {
			if v, ok := unquoteWhole(tok); ok {
				tok = v
			}
		}
		if tok == "" {
			return nil, errors.New("empty quoted destination")
		}
		out = append(out, tok)
	}
	return out, nil
}

// unquoteWhole removes the quotes and escapes of a token that is one
// quoted string.
func unquoteWhole(tok string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(tok); i++ {
		switch tok[i] {
		case '\\':
			if i+1 < len(tok) {
				i++
				b.WriteByte(tok[i])
			}
		case '"':
			return b.String(), i == len(tok)-1
		default:
			b.WriteByte(tok[i])
		}
	}
	return "", false
}

// Kind is what an alias or .forward destination is.
type Kind int

// The kinds of destination.
const (
	KindAddress Kind = iota // another address, local or remote
	KindCommand             // |command
	KindFile                // /file (mbox), or /dir/ (Maildir)
	KindInclude             // :include:/path
	KindSelf                // \user: that user's own mailbox, no further forwarding
)

// Target classifies a destination and returns its operand: the command
// without "|", the path, the include file's path, the user without "\",
// or the address as is. A relative :include: path is an error.
func Target(t string) (Kind, string, error) {
	switch {
	case strings.HasPrefix(t, "|"):
		cmd := strings.TrimSpace(t[1:])
		if cmd == "" {
			return 0, "", errors.New("empty command")
		}
		return KindCommand, cmd, nil
	case strings.HasPrefix(t, "/"):
		return KindFile, t, nil
	case len(t) >= 9 && strings.EqualFold(t[:9], ":include:"):
		p := strings.TrimSpace(t[9:])
		if !strings.HasPrefix(p, "/") {
			return 0, "", fmt.Errorf("%s: the :include: file must be an absolute path", t)
		}
		return KindInclude, p, nil
	case strings.HasPrefix(t, "\\"):
		u := t[1:]
		if u == "" {
			return 0, "", errors.New(`empty user after "\"`)
		}
		return KindSelf, u, nil
	}
	return KindAddress, t, nil
}
