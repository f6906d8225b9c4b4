// Package imapwire reads IMAP commands (RFC 9051 §9 grammar) the way a
// server must before the client has logged in: strictly, and within fixed
// limits, since anyone on the network may be the peer.
//
// A command is a tag, a command name and arguments: atoms (astring
// characters), quoted strings, literals and parenthesised lists. Literals
// are synchronising ({n}: the reader sends "+ Ready" before it reads the
// octets) or non-synchronising ({n+}, RFC 7888 LITERAL+). What is not in
// the grammar is refused with an *Error that says what to answer; the
// reader then skips the rest of the command so that the next one is read
// from its start. Where that cannot be done safely (a line over the
// limit, a non-synchronising literal that is too large) the error is
// Fatal and the caller must close the connection.
//
// This package does not know what the commands mean: imap-login checks
// the arguments of the few it accepts.
package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Defaults for Limits fields left zero.
const (
	// DefaultMaxLine is imapd_max_line_length's default.
	DefaultMaxLine = 65536
	// DefaultMaxLiteral is the literal limit before login: a literal
	// then holds a user name or a password, never a message.
	DefaultMaxLiteral = 8192
	// DefaultMaxArgs bounds the arguments of one command, list members
	// included (ID's list has at most 30 pairs, RFC 2971 §3.3).
	DefaultMaxArgs = 128
	// maxDepth bounds the nesting of parenthesised lists.
	maxDepth = 8
)

// Limits bound what one command may cost the server.
type Limits struct {
	// MaxLine is the most octets of command text, line ends included,
	// of one command (every line of it: a command with literals is
	// several lines); literal data does not count.
	MaxLine int
	// MaxLiteral is the most octets of literal data in one command, all
	// its literals together.
	MaxLiteral int
	// MaxArgs is the most arguments of one command, list members
	// included.
	MaxArgs int
}

// Kind says what an argument was on the wire.
type Kind uint8

// Argument kinds.
const (
	Atom Kind = iota + 1
	Quoted
	Literal
	List
)

// Arg is one argument of a command.
type Arg struct {
	Kind Kind
	// Value is the content of an atom, quoted string (unescaped) or
	// literal.
	Value string
	// List holds the members of a parenthesised list.
	List []Arg
}

// AString returns the value of an astring (RFC 9051: an atom, quoted
// string or literal); ok is false for a list.
func (a Arg) AString() (s string, ok bool) {
	switch a.Kind {
	case Atom, Quoted, Literal:
		return a.Value, true
	}
	return "", false
}

// IsNIL reports whether a is the atom NIL.
func (a Arg) IsNIL() bool { return a.Kind == Atom && strings.EqualFold(a.Value, "NIL") }

// IsString reports whether a is a string (quoted or literal), which is
// what nstring and string in the grammar require.
func (a Arg) IsString() bool { return a.Kind == Quoted || a.Kind == Literal }

// Command is one command as read.
type Command struct {
	Tag  string
	Name string // upper case
	Args []Arg
}

// Error is a command the reader refused. Answer it with Reply; when Fatal,
// say "* BYE" with Text and close the connection, since the reader cannot
// find the start of the next command.
type Error struct {
	Tag   string // the command's tag; "" when none could be read
	Code  string // a response code (RFC 5530), such as "TOOBIG", or ""
	Text  string
	Fatal bool
}

// Error is the text with its response code, for logs.
func (e *Error) Error() string {
	if e.Code != "" {
		return "[" + e.Code + "] " + e.Text
	}
	return e.Text
}

// Reply is the BAD response for the error, without its CRLF: tagged when
// the tag is known, untagged otherwise (RFC 9051 §7.1.3).
func (e *Error) Reply() string {
	tag := e.Tag
	if tag == "" {
		tag = "*"
	}
	if e.Code != "" {
		return tag + " BAD [" + e.Code + "] " + e.Text
	}
	return tag + " BAD " + e.Text
}

// Reader reads commands from a client.
type Reader struct {
	br  *bufio.Reader
	w   io.Writer
	lim Limits

	// State of the command being read.
	line     []byte // the current line, without its line end
	pos      int
	lineLeft int // MaxLine left for this command
	litLeft  int // MaxLiteral left for this command
	args     int
	tag      string
}

// NewReader reads commands from r; w receives the "+ Ready" continuation
// requests of synchronising literals (unbuffered, or flushed by its own
// Write). Zero limits take the defaults above.
func NewReader(r io.Reader, w io.Writer, lim Limits) *Reader {
	if lim.MaxLine <= 0 {
		lim.MaxLine = DefaultMaxLine
	}
	if lim.MaxLiteral <= 0 {
		lim.MaxLiteral = DefaultMaxLiteral
	}
	if lim.MaxArgs <= 0 {
		lim.MaxArgs = DefaultMaxArgs
	}
	// The buffer is small: a line longer than it is assembled piece by
	// piece within MaxLine.
	return &Reader{br: bufio.NewReaderSize(r, 4096), w: w, lim: lim}
}

// Buffered is the number of octets received but not yet consumed. After
// STARTTLS it must be 0: anything else was sent in plaintext before the
// TLS handshake and must not be taken as sent over TLS (CVE-2011-0411).
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Read reads the stream as it comes after the last command consumed,
// buffered octets first: for handing the connection on to a session.
func (r *Reader) Read(p []byte) (int, error) { return r.br.Read(p) }

// errTooLong is found by readLine; the caller turns it into an *Error.
var errTooLong = errors.New("line too long")

// readLine reads one line of at most max octets with its line end (CRLF,
// or a bare LF as many servers accept) and returns it without the line
// end and the octets it took. A longer line returns errTooLong and what
// was read of it so far (at most max octets).
func (r *Reader) readLine(max int) (line []byte, n int, err error) {
	var buf []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			room := max - len(buf)
			if room > 0 {
				buf = append(buf, frag[:room]...)
			}
			return buf, len(buf), errTooLong
		}
		buf = append(buf, frag...)
		if err == nil {
			n = len(buf)
			buf = buf[:len(buf)-1]
			if len(buf) > 0 && buf[len(buf)-1] == '\r' {
				buf = buf[:len(buf)-1]
			}
			return buf, n, nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(buf) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, 0, err
	}
}

// ReadLine reads one line that is not a command: a SASL response during
// AUTHENTICATE. It is limited to MaxLine octets; a longer one is a Fatal
// *Error without a tag.
func (r *Reader) ReadLine() (string, error) {
	line, _, err := r.readLine(r.lim.MaxLine)
	if err == errTooLong {
		return "", &Error{Code: "TOOBIG", Text: "Line too long", Fatal: true}
	}
	if err != nil {
		return "", err
	}
	return string(line), nil
}

// ReadCommand reads the next command. An error is an *Error for a
// command refused (answer it; unless Fatal, read on), or the stream's
// error (io.EOF at the start of a command, io.ErrUnexpectedEOF within
// one, a timeout).
func (r *Reader) ReadCommand() (*Command, error) {
	r.lineLeft, r.litLeft, r.args, r.tag = r.lim.MaxLine, r.lim.MaxLiteral, 0, ""
	if err := r.nextLine(); err != nil {
		return nil, err
	}
	cmd, err := r.parse()
	if err == nil {
		return cmd, nil
	}
	var e *Error
	if !errors.As(err, &e) {
		return nil, err
	}
	if e.Tag == "" {
		e.Tag = r.tag
	}
	if !e.Fatal {
		if serr := r.skip(); serr != nil {
			if errors.As(serr, &e) {
				if e.Tag == "" {
					e.Tag = r.tag
				}
				return nil, e
			}
			return nil, serr
		}
	}
	return nil, e
}

// nextLine reads the next line of the command within its budget.
func (r *Reader) nextLine() error {
	line, n, err := r.readLine(r.lineLeft)
	if err == errTooLong {
		if r.tag == "" {
			// The first line: say the tag if it can be made out.
			if t := leadingTag(line); t != "" {
				r.tag = t
			}
		}
		return &Error{Tag: r.tag, Code: "TOOBIG", Text: "Command line too long", Fatal: true}
	}
	if err != nil {
		return err
	}
	r.lineLeft -= n
	r.line, r.pos = line, 0
	return nil
}

// leadingTag is the tag at the start of an incomplete line, if it is one.
func leadingTag(b []byte) string {
	i := 0
	for i < len(b) && isTagChar(b[i]) {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' || i > 64 {
		return ""
	}
	return string(b[:i])
}

// skip consumes the rest of a refused command: the rest of the line and,
// while the line ends in a non-synchronising literal, that literal and
// the line after it. A synchronising literal is never sent, since no
// "+ Ready" was. The whole line is looked at, not only what is left of
// it: when the error swallowed the announcement (an unterminated quoted
// string), the client will still send the octets.
func (r *Reader) skip() error {
	for {
		n, sync, ok := trailingLiteral(r.line)
		if !ok || sync {
			r.line, r.pos = nil, 0
			return nil
		}
		if n > int64(r.litLeft) {
			return &Error{Code: "TOOBIG", Text: "Literal too large", Fatal: true}
		}
		r.litLeft -= int(n)
		if _, err := io.CopyN(io.Discard, r.br, n); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if err := r.nextLine(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// trailingLiteral reports whether b ends in a literal announcement
// {n} or {n+}, its size and whether it is synchronising.
func trailingLiteral(b []byte) (n int64, sync, ok bool) {
	if len(b) < 3 || b[len(b)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(b, '{')
	if i < 0 {
		return 0, false, false
	}
	digits := b[i+1 : len(b)-1]
	sync = true
	if len(digits) > 0 && digits[len(digits)-1] == '+' {
		digits, sync = digits[:len(digits)-1], false
	}
	n, err := parseNumber(digits)
	if err != nil {
		// An unreadable size: take it as too large, so that a
		// non-synchronising one closes the connection.
		return 1<<62 - 1, sync, true
	}
	return n, sync, true
}

// parseNumber reads a literal size: number (RFC 9051) is at most
// 4294967295, decimal digits only.
func parseNumber(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 10 {
		return 0, fmt.Errorf("bad number %q", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", b)
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n > 1<<32-1 {
		return 0, fmt.Errorf("bad number %q", b)
	}
	return n, nil
}

func (r *Reader) bad(text string) error { return &Error{Tag: r.tag, Text: text} }

// parse reads tag, name and arguments from the line read.
func (r *Reader) parse() (*Command, error) {
	if len(r.line) == 0 {
		return nil, r.bad("Empty command line")
	}
	i := 0
	for i < len(r.line) && isTagChar(r.line[i]) {
		i++
	}
	if i == 0 {
		return nil, r.bad("Missing or invalid tag")
	}
	if i > 64 {
		// Tags are short; an absurd one is not echoed back.
		return nil, r.bad("Tag too long")
	}
	if i < len(r.line) && r.line[i] != ' ' {
		return nil, r.bad("Invalid tag")
	}
	r.tag = string(r.line[:i])
	if i == len(r.line) {
		return nil, r.bad("Missing command")
	}
	r.pos = i + 1
	start := r.pos
	for r.pos < len(r.line) && isAtomChar(r.line[r.pos]) {
		r.pos++
	}
	if r.pos == start {
		return nil, r.bad("Missing or invalid command name")
	}
	cmd := &Command{Tag: r.tag, Name: strings.ToUpper(string(r.line[start:r.pos]))}
	for r.pos < len(r.line) {
		if r.line[r.pos] != ' ' {
			return nil, r.bad("Invalid characters in command " + cmd.Name)
		}
		r.pos++
		a, err := r.arg(0)
		if err != nil {
			return nil, err
		}
		cmd.Args = append(cmd.Args, a)
	}
	return cmd, nil
}

// arg reads one argument at r.pos.
func (r *Reader) arg(depth int) (Arg, error) {
	r.args++
	if r.args > r.lim.MaxArgs {
		return Arg{}, r.bad("Too many arguments")
	}
	if r.pos >= len(r.line) {
		return Arg{}, r.bad("Missing argument")
	}
	switch r.line[r.pos] {
	case '"':
		return r.quoted()
	case '{':
		return r.literal()
	case '(':
		return r.list(depth)
	}
	start := r.pos
	for r.pos < len(r.line) && isAStringChar(r.line[r.pos]) {
		r.pos++
	}
	if r.pos == start {
		return Arg{}, r.bad("Invalid argument")
	}
	return Arg{Kind: Atom, Value: string(r.line[start:r.pos])}, nil
}

// quoted reads a quoted string: only \" and \\ are escapes, and the
// string must end on its line (RFC 9051 quoted, with UTF-8 allowed).
func (r *Reader) quoted() (Arg, error) {
	r.pos++ // the opening quote
	var b []byte
	for r.pos < len(r.line) {
		c := r.line[r.pos]
		r.pos++
		switch {
		case c == '"':
			if !utf8.Valid(b) {
				return Arg{}, r.bad("Quoted string is not valid UTF-8")
			}
			return Arg{Kind: Quoted, Value: string(b)}, nil
		case c == '\\':
			if r.pos >= len(r.line) || (r.line[r.pos] != '"' && r.line[r.pos] != '\\') {
				return Arg{}, r.bad("Invalid escape in quoted string")
			}
			b = append(b, r.line[r.pos])
			r.pos++
		case c == 0 || c == '\r' || c == '\n':
			return Arg{}, r.bad("Control character in quoted string")
		default:
			b = append(b, c)
		}
	}
	return Arg{}, r.bad("Unterminated quoted string")
}

// literal reads {n} or {n+} at the end of the line, the n octets, and
// the next line of the command.
func (r *Reader) literal() (Arg, error) {
	end := bytes.IndexByte(r.line[r.pos:], '}')
	if end < 0 || r.pos+end != len(r.line)-1 {
		return Arg{}, r.bad("Invalid literal")
	}
	spec := r.line[r.pos+1 : len(r.line)-1]
	sync := true
	if len(spec) > 0 && spec[len(spec)-1] == '+' {
		spec, sync = spec[:len(spec)-1], false
	}
	n, err := parseNumber(spec)
	if err != nil {
		// r.pos stays at '{': skip sees the announcement and, for a
		// non-synchronising one, fails as it must.
		return Arg{}, r.bad("Invalid literal size")
	}
	if n > int64(r.litLeft) {
		if sync {
			// The client waits for "+": it will not send the octets.
			return Arg{}, &Error{Tag: r.tag, Code: "TOOBIG", Text: "Literal too large"}
		}
		return Arg{}, &Error{Tag: r.tag, Code: "TOOBIG", Text: "Literal too large", Fatal: true}
	}
	r.litLeft -= int(n)
	if sync {
		if r.w == nil {
			return Arg{}, errors.New("imapwire: no writer for a continuation request")
		}
		if _, err := io.WriteString(r.w, "+ Ready\r\n"); err != nil {
			return Arg{}, fmt.Errorf("continuation request: %w", err)
		}
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r.br, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Arg{}, err
	}
	if err := r.nextLine(); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Arg{}, err
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return Arg{}, r.bad("NUL in literal")
	}
	return Arg{Kind: Literal, Value: string(data)}, nil
}

// list reads a parenthesised list of arguments.
func (r *Reader) list(depth int) (Arg, error) {
	if depth >= maxDepth {
		return Arg{}, r.bad("Lists nested too deep")
	}
	r.pos++ // '('
	a := Arg{Kind: List}
	if r.pos < len(r.line) && r.line[r.pos] == ')' {
		r.pos++
		return a, nil
	}
	for {
		m, err := r.arg(depth + 1)
		if err != nil {
			return Arg{}, err
		}
		a.List = append(a.List, m)
		if r.pos >= len(r.line) {
			return Arg{}, r.bad("Unterminated list")
		}
		switch r.line[r.pos] {
		case ')':
			r.pos++
			return a, nil
		case ' ':
			r.pos++
		default:
			return Arg{}, r.bad("Invalid characters in list")
		}
	}
}

// isAtomChar: ATOM-CHAR, any 7-bit CHAR except atom-specials:
// ( ) { SP CTL % * " \ ].
func isAtomChar(c byte) bool {
	if c <= 0x20 || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAStringChar: ASTRING-CHAR, ATOM-CHAR or "]".
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isTagChar: an ASTRING-CHAR other than "+".
func isTagChar(c byte) bool { return isAStringChar(c) && c != '+' }
