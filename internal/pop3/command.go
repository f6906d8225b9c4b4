// Package pop3 holds the POP3 protocol pieces (RFC 1939, RFC 2449 CAPA,
// RFC 2595 STLS, RFC 5034 AUTH) that the login front end (pop3-login) and
// the session (pop3d) share: a command line reader with a length limit,
// command parsing, the reply writer, the dot-stuffing multi-line writer,
// TOP's header/body cut, SASL PLAIN and LOGIN decoding and the capability
// list.
//
// Everything here reads a peer's bytes, so nothing trusts them: a line is
// at most MaxLine octets, a command name is a few ASCII letters, numbers
// are plain decimal without sign and within range, base64 is strict, and
// no input makes anything panic (FuzzCommand, FuzzSASLPlain).
package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxLine is the longest command line accepted, without its CRLF. RFC 2449
// says 255 octets, which an AUTH PLAIN initial response with a long
// password can exceed; 4096 is what Dovecot and most servers allow.
const MaxLine = 4096

// maxName bounds a command keyword: RFC 1939 keywords have 3 or 4
// letters, RFC 2449 allows extensions, none is longer than this.
const maxName = 16

// Errors of the command reader and parser.
var (
	// ErrLineTooLong: the client sent more than MaxLine octets without a
	// line end. The rest of the line is not consumed: close the
	// connection after "-ERR line too long".
	ErrLineTooLong = errors.New("pop3: line too long")
	// ErrBadCommand: the line is not "KEYWORD[ args]" with a keyword of
	// ASCII letters, or holds a NUL or other control character.
	ErrBadCommand = errors.New("pop3: malformed command")
)

// Reader reads a client's command lines.
type Reader struct {
	br *bufio.Reader
}

// NewReader returns a Reader on r. Its buffer is larger than MaxLine so
// that a whole line always fits.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, MaxLine+512)}
}

// ReadLine returns the next line without its line end (CRLF, or a bare LF
// as many clients send). A line longer than MaxLine gives ErrLineTooLong;
// a connection that ends in the middle of a line gives io.ErrUnexpectedEOF,
// one that ends between lines io.EOF.
func (r *Reader) ReadLine() (string, error) {
	b, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || (len(b) > MaxLine+2) {
		return "", ErrLineTooLong
	}
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	if len(b) > MaxLine {
		return "", ErrLineTooLong
	}
	return string(b), nil
}

// Buffered is the number of octets read from the connection but not yet
// returned. A server flushes its replies only when it is 0 (PIPELINING,
// RFC 2449 6.6), and after STLS it must be 0: octets sent in plaintext
// after the command would otherwise be taken as if they came over TLS
// (the STARTTLS command injection of CVE-2011-0411).
func (r *Reader) Buffered() int { return r.br.Buffered() }

// TakeBuffered returns the octets read but not yet returned and forgets
// them: when pop3-login hands a client over to its session, commands the
// client pipelined after PASS go on to the session.
func (r *Reader) TakeBuffered() []byte {
	b, _ := r.br.Peek(r.br.Buffered())
	out := append([]byte(nil), b...)
	r.br.Discard(len(b))
	return out
}

// Pending returns a copy of the octets read but not yet returned, leaving
// them buffered: pop3-login hands them to a session along with the
// client's connection, and keeps reading them itself if that fails.
func (r *Reader) Pending() []byte {
	b, _ := r.br.Peek(r.br.Buffered())
	return append([]byte{}, b...)
}

// Command is one parsed command line.
type Command struct {
	// Name is the keyword in upper case ("USER", "RETR").
	Name string
	// Arg is everything after the keyword and the one space that follows
	// it, as sent: PASS takes its whole rest as the password (which may
	// contain spaces), AUTH's initial response follows the mechanism.
	Arg string
	// Args is Arg split at runs of spaces.
	Args []string
}

// ParseCommand splits a command line. The keyword must be 1 to 16 ASCII
// letters; no control character other than a tab may appear anywhere
// (a NUL or a bare CR in a command is an attack or a broken client).
func ParseCommand(line string) (Command, error) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return Command{}, ErrBadCommand
		}
	}
	name, arg, _ := strings.Cut(line, " ")
	if name == "" || len(name) > maxName {
		return Command{}, ErrBadCommand
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, ErrBadCommand
		}
	}
	return Command{Name: strings.ToUpper(name), Arg: arg, Args: strings.Fields(arg)}, nil
}

// ParseNumber reads a message number or line count: 1 to 10 decimal
// digits, no sign, at most max. ok is false for anything else.
func ParseNumber(s string, max int) (n int, ok bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 63)
	if err != nil || v > uint64(max) {
		return 0, false
	}
	return int(v), true
}

// UIDL is the unique-id listing of a message (RFC 1939 7): Dovecot's
// default pop3_uidl_format "%08Xu%08Xv", the IMAP UID and the folder's
// UIDVALIDITY as 8 lower-case hex digits each (Dovecot's %X prints
// lower-case). So POP3 and IMAP name a message alike, and a mailbox taken
// over from Dovecot keeps every UIDL: clients do not download it all again.
func UIDL(uid, uidValidity uint32) string {
	return fmt.Sprintf("%08x%08x", uid, uidValidity)
}
