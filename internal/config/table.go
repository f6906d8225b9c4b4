package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Table is a lookup table read from a plain text file. There is no compiled
// form: texthash: and hash: tables are both this file, read whole at start
// and on reload.
//
// The plain format is "key value..." lines: the key is the first token, the
// value the rest of the line with its white space trimmed. The aliases(5)
// format is "name: value, value...", where values are separated by commas
// or white space and a value with either in it is quoted
// ("|command with spaces"). Both formats share the line rules of
// postern.conf (# comments, continuation lines that begin with white
// space). Keys are matched without case; a key given twice is an error.
type Table struct {
	path    string
	aliases bool
	entries map[string]tableEntry
}

type tableEntry struct {
	value string
	list  []string // aliases only; for plain tables split on demand
}

// LoadTable reads a table in the plain "key value" format.
func LoadTable(path string) (*Table, error) {
	return loadTable(path, false)
}

// LoadAliases reads a table in the aliases(5) format.
func LoadAliases(path string) (*Table, error) {
	return loadTable(path, true)
}

func loadTable(path string, aliases bool) (*Table, error) {
	data, err := readLimited(path, maxTableFile)
	if err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	t, errs := parseTable(data, path, aliases)
	if len(errs) > 0 {
		return nil, errs.asError()
	}
	return t, nil
}

// ParseTable parses the contents of a table file, as LoadTable (or
// LoadAliases when aliases is set) does; name is used in messages. The
// error is a *Errors.
func ParseTable(data []byte, name string, aliases bool) (*Table, error) {
	if len(data) > maxTableFile {
		return nil, fmt.Errorf("table %s: %w (limit %d bytes)", name, errTooBig, maxTableFile)
	}
	t, errs := parseTable(data, name, aliases)
	return t, errs.asError()
}

func parseTable(data []byte, file string, aliases bool) (*Table, Errors) {
	lines, errs := logicalLines(data, file)
	t := &Table{path: file, aliases: aliases, entries: make(map[string]tableEntry, len(lines))}
	first := make(map[string]int, len(lines))
	for _, l := range lines {
		if errs.full(file) {
			break
		}
		var key string
		var e tableEntry
		var err error
		if aliases {
			key, e, err = parseAliasLine(l.text)
		} else {
			key, e, err = parseTableLine(l.text)
		}
		if err != nil {
			errs.add(file, l.line, "", "%v", err)
			continue
		}
		key = strings.ToLower(key)
		if at, ok := first[key]; ok {
			errs.add(file, l.line, "", "key %q given again (first at line %d)", truncate(key), at)
			continue
		}
		first[key] = l.line
		t.entries[key] = e
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

func parseTableLine(text string) (string, tableEntry, error) {
	i := strings.IndexAny(text, " \t")
	if i < 0 {
		return "", tableEntry{}, fmt.Errorf("key %q without a value (expected key whitespace value)", truncate(text))
	}
	return text[:i], tableEntry{value: strings.TrimSpace(text[i+1:])}, nil
}

// parseAliasLine parses "name: value, value...". The name may be quoted.
func parseAliasLine(text string) (string, tableEntry, error) {
	var name, rest string
	if text[0] == '"' {
		n, end, err := unquote(text)
		if err != nil {
			return "", tableEntry{}, err
		}
		name, rest = n, strings.TrimLeft(text[end:], " \t")
		if !strings.HasPrefix(rest, ":") {
			return "", tableEntry{}, fmt.Errorf("missing ':' after the alias name %q", truncate(name))
		}
		rest = rest[1:]
	} else {
		i := strings.IndexByte(text, ':')
		if i < 0 {
			return "", tableEntry{}, fmt.Errorf("missing ':' (expected name: value, value...)")
		}
		name, rest = strings.TrimSpace(text[:i]), text[i+1:]
		if strings.ContainsAny(name, " \t\"") {
			return "", tableEntry{}, fmt.Errorf("alias name %q has white space or a quote; quote the whole name", truncate(name))
		}
	}
	if name == "" {
		return "", tableEntry{}, errors.New("empty alias name")
	}
	rest = strings.TrimSpace(rest)
	list, err := splitAliasValues(rest)
	if err != nil {
		return "", tableEntry{}, fmt.Errorf("alias %s: %w", truncate(name), err)
	}
	if len(list) == 0 {
		return "", tableEntry{}, fmt.Errorf("alias %s has no value", truncate(name))
	}
	return name, tableEntry{value: rest, list: list}, nil
}

// splitAliasValues splits at commas and white space outside double quotes.
// A value that is one whole quoted string loses its quotes and its
// backslash escapes ("|cmd arg" gives |cmd arg); a value only partly quoted
// ("john doe"@example.org) is kept as written, quotes and all, since the
// quotes are part of the address.
func splitAliasValues(s string) ([]string, error) {
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
			return nil, fmt.Errorf("unterminated quote in %q", truncate(s[start:]))
		}
		tok := s[start:i]
		if tok[0] == '"' {
			if v, end, err := unquote(tok); err == nil && end == len(tok) {
				tok = v
			}
		}
		if tok == "" {
			return nil, errors.New("empty quoted value")
		}
		out = append(out, tok)
	}
	return out, nil
}

// unquote reads the quoted string at the start of s, handling backslash
// escapes, and returns it and the index just after the closing quote.
func unquote(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("unterminated quote in %q", truncate(s))
}

// Path returns the file the table was read from.
func (t *Table) Path() string {
	if t == nil {
		return ""
	}
	return t.path
}

// Len returns the number of keys.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Keys returns the keys, lower-cased and sorted.
func (t *Table) Keys() []string {
	if t == nil {
		return nil
	}
	keys := make([]string, 0, len(t.entries))
	for k := range t.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Lookup returns the value of key, matched without case. For an aliases
// table the value is the text after the colon, as written.
func (t *Table) Lookup(key string) (string, bool) {
	if t == nil {
		return "", false
	}
	e, ok := t.entries[strings.ToLower(key)]
	return e.value, ok
}

// LookupList returns the value of key as a list: for an aliases table the
// parsed values (unquoted, see LoadAliases); for a plain table the value
// split at commas and white space.
func (t *Table) LookupList(key string) ([]string, bool) {
	if t == nil {
		return nil, false
	}
	e, ok := t.entries[strings.ToLower(key)]
	if !ok {
		return nil, false
	}
	if t.aliases {
		return append([]string(nil), e.list...), true
	}
	l, err := splitList(e.value)
	if err != nil {
		// An unbalanced brace: the value as one item is the
		// least surprising answer.
		return []string{e.value}, true
	}
	return l, true
}
