// Package maildrop is the format of the files that postern-drop writes
// into the spool's maildrop/ directory and that pickup reads (DESIGN.md §1,
// §3): a versioned, self-describing text envelope, then the message exactly
// as the user gave it.
//
// Format. The first line is "POSTERN-MAILDROP 1". Each further line up to
// an empty line is one record, "name value" (one space; the value may be
// empty and may hold spaces), in any order:
//
//	arrival   Unix time in nanoseconds when postern-drop started writing
//	uid       the submitting user's real uid, decimal
//	login     that user's login name ("" when the uid has no name)
//	sender    the envelope sender as given; "" is the null sender
//	senderset y when the user chose the sender (sendmail -f or -r)
//	fullname  the user's full name for an added From: header (-F)
//	extract   y: take recipients from the To/Cc/Bcc headers too (-t)
//	ret       DSN RET (FULL or HDRS), or absent
//	envid     DSN ENVID, or absent
//	notify    DSN NOTIFY for every recipient (-N), or absent
//	rcpt      one recipient address as given; repeated
//
// After the empty line comes the message, byte for byte what postern-drop
// read (LF or CRLF line ends). Nothing follows it. A file is complete when
// its mode has the owner's execute bit (ReadyMode): postern-drop sets it
// only after the whole file is written and fsync'd, so a reader skips a
// file without it (a submission under way, or one that died half way).
//
// Limits and failure modes. Values are at most MaxValue bytes of valid
// UTF-8 without control characters (HT allowed); at most MaxRecipients
// recipients; the envelope is at most MaxEnvelope bytes. Any violation, an
// unknown record name, a repeated single record, a missing required record
// (arrival, uid, sender) or another version makes Read fail with an error
// that names the line; it never panics (FuzzRead).
package maildrop

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Magic is the first word of every maildrop file; Version follows it.
const (
	Magic   = "POSTERN-MAILDROP"
	Version = 1
)

// Limits of the envelope part.
const (
	MaxValue      = 2048
	MaxRecipients = 10000
	MaxEnvelope   = 4 << 20
)

// ReadyMode is the mode of a completely written maildrop file; pickup
// takes only files whose mode has os.ModePerm&0o100 (the owner's execute
// bit), as Postfix's maildrop does. WriteMode is the mode while writing.
const (
	ReadyMode os.FileMode = 0o744
	WriteMode os.FileMode = 0o600
)

// Envelope is what a maildrop file says besides the message.
type Envelope struct {
	Arrival    time.Time
	UID        int
	Login      string
	Sender     string // "" is the null sender
	SenderSet  bool   // chosen by the user (-f, -r)
	FullName   string
	Extract    bool // -t
	Ret        string
	EnvID      string
	Notify     string
	Recipients []string
}

// ErrFormat is wrapped by every error of Read about the file's contents.
var ErrFormat = errors.New("malformed maildrop file")

// CheckValue reports whether v may be stored as a value: at most MaxValue
// bytes of valid UTF-8 without control characters other than HT.
func CheckValue(v string) error {
	if len(v) > MaxValue {
		return fmt.Errorf("value of %d bytes, more than %d", len(v), MaxValue)
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("value holds control character %U", r)
		}
	}
	return nil
}

func yn(b bool) string {
	if b {
		return "y"
	}
	return "n"
}

// Write writes the envelope part, ending with the empty line; the caller
// writes the message after it. It checks every value as Read would, so
// that nothing is written that pickup would refuse.
func Write(w io.Writer, e *Envelope) error {
	if len(e.Recipients) > MaxRecipients {
		return fmt.Errorf("maildrop: %d recipients, more than %d", len(e.Recipients), MaxRecipients)
	}
	if e.UID < 0 || e.UID >= 1<<32-1 {
		return fmt.Errorf("maildrop: bad uid %d", e.UID)
	}
	if ns := e.Arrival.UnixNano(); ns < 0 || e.Arrival.Year() < 1970 || !time.Unix(0, ns).Equal(e.Arrival) {
		return fmt.Errorf("maildrop: arrival time %v out of range", e.Arrival)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d\n", Magic, Version)
	rec := func(name, v string) error {
		if err := CheckValue(v); err != nil {
			return fmt.Errorf("maildrop: %s: %w", name, err)
		}
		b.WriteString(name)
		b.WriteByte(' ')
		b.WriteString(v)
		b.WriteByte('\n')
		return nil
	}
	recs := []struct{ name, v string }{
		{"arrival", strconv.FormatInt(e.Arrival.UnixNano(), 10)},
		{"uid", strconv.Itoa(e.UID)},
		{"login", e.Login},
		{"sender", e.Sender},
		{"senderset", yn(e.SenderSet)},
		{"fullname", e.FullName},
		{"extract", yn(e.Extract)},
	}
	for _, r := range recs {
		if err := rec(r.name, r.v); err != nil {
			return err
		}
	}
	for _, r := range []struct{ name, v string }{{"ret", e.Ret}, {"envid", e.EnvID}, {"notify", e.Notify}} {
		if r.v != "" {
			if err := rec(r.name, r.v); err != nil {
				return err
			}
		}
	}
	for _, r := range e.Recipients {
		if err := rec("rcpt", r); err != nil {
			return err
		}
	}
	b.WriteByte('\n')
	if b.Len() > MaxEnvelope {
		return fmt.Errorf("maildrop: envelope of %d bytes, more than %d", b.Len(), MaxEnvelope)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Read parses the envelope part from r and leaves r at the first byte of
// the message. It returns the number of bytes of the envelope part.
func Read(r *bufio.Reader) (*Envelope, int64, error) {
	var n int64
	line := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrFormat, line, fmt.Sprintf(format, args...))
	}
	next := func() (string, error) {
		line++
		var b []byte
		for {
			frag, err := r.ReadSlice('\n')
			n += int64(len(frag))
			if n > MaxEnvelope {
				return "", bad("envelope longer than %d bytes", MaxEnvelope)
			}
			b = append(b, frag...)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				return "", bad("unexpected end of file in the envelope")
			}
			if err != nil {
				return "", err
			}
			return string(b[:len(b)-1]), nil
		}
	}
	first, err := next()
	if err != nil {
		return nil, n, err
	}
	magic, ver, _ := strings.Cut(first, " ")
	if magic != Magic {
		return nil, n, bad("not a maildrop file")
	}
	if ver != strconv.Itoa(Version) {
		return nil, n, bad("version %.20q, expected %d", ver, Version)
	}
	e := &Envelope{}
	seen := map[string]bool{}
	for {
		l, err := next()
		if err != nil {
			return nil, n, err
		}
		if l == "" {
			break
		}
		name, v, ok := strings.Cut(l, " ")
		if !ok {
			return nil, n, bad("record without a value")
		}
		if err := CheckValue(v); err != nil {
			return nil, n, bad("%s: %v", name, err)
		}
		if name != "rcpt" {
			if seen[name] {
				return nil, n, bad("%.20q repeated", name)
			}
			seen[name] = true
		}
		switch name {
		case "arrival":
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ns < 0 {
				return nil, n, bad("bad arrival time %.30q", v)
			}
			e.Arrival = time.Unix(0, ns)
		case "uid":
			u, err := strconv.ParseUint(v, 10, 32)
			if err != nil || u == 1<<32-1 {
				return nil, n, bad("bad uid %.30q", v)
			}
			e.UID = int(u)
		case "login":
			e.Login = v
		case "sender":
			e.Sender = v
		case "senderset", "extract":
			if v != "y" && v != "n" {
				return nil, n, bad("%s: %.10q is not y or n", name, v)
			}
			if name == "senderset" {
				e.SenderSet = v == "y"
			} else {
				e.Extract = v == "y"
			}
		case "fullname":
			e.FullName = v
		case "ret":
			e.Ret = v
		case "envid":
			e.EnvID = v
		case "notify":
			e.Notify = v
		case "rcpt":
			if len(e.Recipients) >= MaxRecipients {
				return nil, n, bad("more than %d recipients", MaxRecipients)
			}
			e.Recipients = append(e.Recipients, v)
		default:
			return nil, n, bad("unknown record %.30q", name)
		}
	}
	for _, req := range []string{"arrival", "uid", "sender"} {
		if !seen[req] {
			return nil, n, bad("no %s record", req)
		}
	}
	if !e.Extract && len(e.Recipients) == 0 {
		return nil, n, bad("no recipients and no -t")
	}
	return e, n, nil
}
