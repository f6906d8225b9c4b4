package smtp

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Command line limits. RFC 5321 4.5.3.1.4 sets 512 octets including CRLF;
// MAIL and RCPT get room for extension parameters, AUTH for an initial
// response (RFC 5321 4.5.3.1 lets extensions raise the limit; Postfix has
// no limit at all).
const (
	MaxCommandLine = 512
	MaxPathLine    = 2048
	maxParams      = 16
)

// Command is one parsed SMTP command line.
type Command struct {
	Verb   string  // upper case, e.g. "MAIL"; for an unknown command the first word as sent
	Arg    string  // EHLO/HELO name, VRFY/EXPN/HELP/NOOP argument, spaces at the ends removed; AUTH: the mechanism, upper case
	Path   string  // MAIL/RCPT: the text between "<" and ">", not yet parsed
	Params []Param // MAIL/RCPT: ESMTP parameters in the order given
	// Response is AUTH's initial response as sent, not decoded: base64,
	// or "=" for an empty one; "" when there is none. It is a secret:
	// never log it.
	Response string
}

// Param is one ESMTP parameter of MAIL or RCPT (RFC 5321 esmtp-param).
type Param struct {
	Keyword string // upper case
	Value   string // as sent; "" when there was no "=value"
}

// Verbs the parser knows but the server does not implement now: they get
// 502 rather than 500.
var notImplemented = map[string]bool{
	"BDAT": true, "ETRN": true, "TURN": true,
	"ATRN": true, "SEND": true, "SOML": true, "SAML": true, "XCLIENT": true,
	"XFORWARD": true,
}

// isForbidden reports whether verb shows that the peer does not speak
// SMTP at all (an HTTP client, or a proxy abuse attempt); the server then
// hangs up, as Postfix does with smtpd_forbidden_commands.
func isForbidden(verb string) bool {
	switch verb {
	case "CONNECT", "GET", "POST", "PUT", "HEAD":
		return true
	}
	return strings.HasSuffix(verb, ":")
}

var (
	errBadSyntax   = reply(500, "5.5.2", "Error: bad syntax")
	errUnknown     = reply(500, "5.5.1", "Error: command not recognized")
	errNotImpl     = reply(502, "5.5.1", "Error: command not implemented")
	errLineTooLong = reply(500, "5.5.2", "Error: line too long")
)

// ParseCommand parses one command line. The line may end in CRLF or a bare
// LF (accepted, like Postfix) or have no terminator; a CR anywhere else, a
// NUL or any other control character but HT, and invalid UTF-8 are syntax
// errors. Length limits are the reader's job (see MaxCommandLine) but a
// line over MaxPathLine is refused here too. The error, when not nil, is a
// *Reply to send; Verb is set whenever the line had a first word, so that
// the caller can count and log the command.
func ParseCommand(line []byte) (Command, error) {
	var cmd Command
	if len(line) > MaxPathLine {
		return cmd, errLineTooLong
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	verbEnd := bytes.IndexByte(line, ' ')
	if verbEnd < 0 {
		verbEnd = len(line)
	}
	cmd.Verb = strings.ToUpper(string(line[:verbEnd]))
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return cmd, errBadSyntax
		}
	}
	if !utf8.Valid(line) {
		return cmd, errBadSyntax
	}
	if cmd.Verb == "" || !isAlpha(cmd.Verb) {
		return cmd, errBadSyntax
	}
	rest := strings.TrimRight(string(line[verbEnd:]), " \t")
	if rest != "" {
		rest = rest[1:] // the SP after the verb
	}
	switch cmd.Verb {
	case "EHLO", "HELO":
		cmd.Arg = strings.TrimSpace(rest)
		if cmd.Arg == "" {
			return cmd, reply(501, "5.5.2", "Syntax: "+cmd.Verb+" hostname")
		}
	case "MAIL":
		return parsePathCommand(cmd, rest, "FROM:")
	case "RCPT":
		return parsePathCommand(cmd, rest, "TO:")
	case "DATA", "RSET", "QUIT":
		if strings.TrimSpace(rest) != "" {
			return cmd, reply(501, "5.5.4", "Syntax: "+cmd.Verb)
		}
	case "VRFY", "EXPN":
		cmd.Arg = strings.TrimSpace(rest)
		if cmd.Arg == "" {
			return cmd, reply(501, "5.5.4", "Syntax: "+cmd.Verb+" address")
		}
	case "NOOP", "HELP":
		cmd.Arg = strings.TrimSpace(rest)
	case "STARTTLS":
		if strings.TrimSpace(rest) != "" {
			return cmd, reply(501, "5.5.4", "Syntax: STARTTLS")
		}
	case "AUTH":
		return parseAuth(cmd, rest)
	default:
		if notImplemented[cmd.Verb] {
			return cmd, errNotImpl
		}
		return cmd, errUnknown
	}
	return cmd, nil
}

// maxMechanism is the longest SASL mechanism name (RFC 4422 3.1).
const maxMechanism = 20

// parseAuth parses "mechanism [initial-response]" (RFC 4954 4).
func parseAuth(cmd Command, rest string) (Command, error) {
	syntax := reply(501, "5.5.4", "Syntax: AUTH mechanism")
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 || len(f[0]) > maxMechanism {
		return cmd, syntax
	}
	for i := 0; i < len(f[0]); i++ {
		c := f[0][i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return cmd, syntax
		}
	}
	cmd.Arg = strings.ToUpper(f[0])
	if len(f) == 2 {
		cmd.Response = f[1]
	}
	return cmd, nil
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// parsePathCommand parses "FROM:<path> params" or "TO:<path> params".
// One liberty is taken, as most servers do: spaces after the colon.
// The angle brackets are required.
func parsePathCommand(cmd Command, rest, keyword string) (Command, error) {
	syntax := reply(501, "5.5.2", "Syntax: "+cmd.Verb+" "+keyword+"<address>")
	if len(rest) < len(keyword) || !strings.EqualFold(rest[:len(keyword)], keyword) {
		return cmd, syntax
	}
	rest = strings.TrimLeft(rest[len(keyword):], " ")
	if rest == "" || rest[0] != '<' {
		return cmd, syntax
	}
	end := pathEnd(rest)
	if end < 0 {
		return cmd, syntax
	}
	cmd.Path = rest[1:end]
	rest = rest[end+1:]
	if rest == "" {
		return cmd, nil
	}
	if rest[0] != ' ' {
		return cmd, syntax
	}
	for _, f := range strings.Fields(rest) {
		if len(cmd.Params) == maxParams {
			return cmd, reply(501, "5.5.4", "Error: too many parameters")
		}
		p, ok := parseParam(f)
		if !ok {
			return cmd, reply(501, "5.5.4", "Error: bad parameter syntax")
		}
		for _, q := range cmd.Params {
			if q.Keyword == p.Keyword {
				return cmd, reply(501, "5.5.4", "Error: duplicate "+p.Keyword+" parameter")
			}
		}
		cmd.Params = append(cmd.Params, p)
	}
	return cmd, nil
}

// pathEnd returns the index of the ">" that closes the path starting at
// s[0] == '<', skipping quoted strings (a local part may hold ">"), or -1.
func pathEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		case !quoted && c == '<':
			return -1
		}
	}
	return -1
}

// parseParam parses esmtp-keyword ["=" esmtp-value]. The value may hold
// UTF-8 (RFC 6531); whether that is allowed is decided with the meaning.
func parseParam(s string) (Param, bool) {
	kw, val, hasVal := strings.Cut(s, "=")
	if kw == "" || kw[0] == '-' {
		return Param{}, false
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return Param{}, false
		}
	}
	if hasVal {
		if val == "" {
			return Param{}, false
		}
		for i := 0; i < len(val); i++ {
			c := val[i]
			if c <= ' ' || c == '=' || c == 0x7f {
				return Param{}, false
			}
		}
	}
	return Param{Keyword: strings.ToUpper(kw), Value: val}, true
}
