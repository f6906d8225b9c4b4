package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Size limits. A configuration file is small; a lookup table may be large,
// but is read whole into memory, so it is bounded too.
const (
	maxConfFile  = 4 << 20  // postern.conf, services.conf
	maxTableFile = 64 << 20 // lookup tables and aliases
	maxLine      = 64 << 10 // a physical line, and a logical line once joined
	maxValue     = 64 << 10 // a setting's value after $name expansion
)

// LineError is one problem in a file, found at a line. Line is 0 when the
// problem is not tied to a line (a default value, an -o option given on a
// command line).
type LineError struct {
	File    string
	Line    int
	Setting string // the setting or service concerned, or ""
	Err     error
}

// Error formats the problem as "file:line: setting: problem".
func (e *LineError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Setting != "" {
		b.WriteString(e.Setting)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *LineError) Unwrap() error { return e.Err }

// Errors is every problem found in a configuration; each is usually a
// *LineError.
type Errors []error

// Error joins the problems, one a line.
func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e Errors) Unwrap() []error { return e }

func (e *Errors) add(file string, line int, setting string, format string, args ...any) {
	*e = append(*e, &LineError{File: file, Line: line, Setting: setting, Err: fmt.Errorf(format, args...)})
}

// maxErrors bounds the problems reported for one file: a file that is not
// a configuration at all (a binary, the wrong file) would otherwise give
// one complaint a line, and the work of a suggestion for each.
const maxErrors = 50

// full reports whether enough problems were found in a file, and says so
// once.
func (e *Errors) full(file string) bool {
	if len(*e) < maxErrors {
		return false
	}
	if len(*e) == maxErrors {
		e.add(file, 0, "", "too many errors; stopped")
	}
	return true
}

// asError turns a list of problems into a *Errors, or nil when it is empty.
func (e Errors) asError() error {
	if len(e) == 0 {
		return nil
	}
	return &e
}

// errTooBig reports a file over its size limit.
var errTooBig = errors.New("file too large")

// readLimited reads a whole file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w (limit %d bytes)", path, errTooBig, limit)
	}
	return data, nil
}

// logicalLine is an entry of a file after comments are dropped and
// continuation lines are joined to the line they continue.
type logicalLine struct {
	text string // without leading or trailing white space
	line int    // number of the first physical line
}

// logicalLines splits a file into entries, the rules shared by postern.conf,
// services.conf, lookup tables and aliases: a line whose first non-blank
// character is # is a comment; an empty or blank line is ignored; a line
// that begins with white space continues the previous entry, joined with a
// single space. Comments and blank lines do not end an entry. A line with a
// NUL byte, or longer than maxLine (alone or joined), is an error.
func logicalLines(data []byte, file string) ([]logicalLine, Errors) {
	var out []logicalLine
	var errs Errors
	lineNo := 0
	// Once an entry is in error, its continuation lines are dropped
	// with it instead of becoming complaints of their own.
	skipping := false
	for len(data) > 0 {
		if errs.full(file) {
			break
		}
		lineNo++
		var raw []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			raw, data = data, nil
		}
		raw = bytes.TrimSuffix(raw, []byte{'\r'})
		var bad string
		if len(raw) > maxLine {
			bad = fmt.Sprintf("line longer than %d bytes", maxLine)
		} else if bytes.IndexByte(raw, 0) >= 0 {
			bad = "NUL byte in line"
		}
		if bad != "" {
			errs.add(file, lineNo, "", "%s", bad)
			// A bad continuation line spoils the entry it belongs to.
			if (raw[0] == ' ' || raw[0] == '\t') && !skipping && len(out) > 0 {
				out = out[:len(out)-1]
			}
			skipping = true
			continue
		}
		trimmed := strings.TrimSpace(string(raw))
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if skipping {
				continue
			}
			if len(out) == 0 {
				errs.add(file, lineNo, "", "continuation line (it begins with white space) without a line before it to continue")
				continue
			}
			last := &out[len(out)-1]
			if len(last.text)+1+len(trimmed) > maxLine {
				errs.add(file, last.line, "", "entry longer than %d bytes with its continuation lines", maxLine)
				out = out[:len(out)-1]
				skipping = true
				continue
			}
			last.text += " " + trimmed
			continue
		}
		skipping = false
		out = append(out, logicalLine{text: trimmed, line: lineNo})
	}
	return out, errs
}

// splitList splits a list value at commas and white space. A {...} group
// protects the separators inside it, as in Postfix: "static:{a b}" is one
// entry; a group that is a whole entry loses its braces. Empty entries are
// dropped.
func splitList(s string) ([]string, error) {
	return splitWords(s, func(r byte) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
}

// splitFields splits at white space only, with the same {...} groups.
func splitFields(s string) ([]string, error) {
	return splitWords(s, func(r byte) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
}

func splitWords(s string, sep func(byte) bool) ([]string, error) {
	var out []string
	depth := 0
	start := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			depth++
			if start < 0 {
				start = i
			}
		case c == '}':
			if depth == 0 {
				return nil, fmt.Errorf("unbalanced } in %q", truncate(s))
			}
			depth--
		case depth == 0 && sep(c):
			if start >= 0 {
				out = append(out, unbrace(s[start:i]))
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced { in %q", truncate(s))
	}
	if start >= 0 {
		out = append(out, unbrace(s[start:]))
	}
	return out, nil
}

// unbrace removes the braces of a token that is one whole {...} group, and
// the white space just inside them.
func unbrace(t string) string {
	if len(t) < 2 || t[0] != '{' || t[len(t)-1] != '}' {
		return t
	}
	depth := 0
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 && i != len(t)-1 {
				return t // "{a}{b}" is two groups, not one
			}
		}
	}
	return strings.TrimSpace(t[1 : len(t)-1])
}

// truncate shortens a value quoted in an error message.
func truncate(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
