package main

import (
	"fmt"
	"mime"
	"strings"

	"postern/internal/queue"
)

// additions are the headers a local submission gets when it lacks them
// (DESIGN.md §4): Message-ID, Date and From, as Postfix's cleanup adds
// them to mail from sendmail.
type additions struct {
	hostname string
	id       queue.ID
	env      *queue.Envelope
	fullName string

	haveID, haveDate, haveFrom bool
	// messageID is the Message-ID added, for the log line.
	messageID string
}

// saw notes a header field name (lower case) of the message.
func (a *additions) saw(name string) {
	switch name {
	case "message-id":
		a.haveID = true
	case "date":
		a.haveDate = true
	case "from":
		a.haveFrom = true
	}
}

// headers returns the missing header lines, CRLF-terminated.
func (a *additions) headers() string {
	var b strings.Builder
	arrival := a.env.Arrival
	if !a.haveID {
		a.messageID = fmt.Sprintf("<%s.%s@%s>", arrival.UTC().Format("20060102150405"), a.id, a.hostname)
		fmt.Fprintf(&b, "Message-Id: %s\r\n", a.messageID)
	}
	if !a.haveDate {
		fmt.Fprintf(&b, "Date: %s\r\n", arrival.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	}
	if !a.haveFrom {
		from := a.env.Sender
		if from == "" {
			from = "MAILER-DAEMON@" + a.hostname
		}
		if name := phrase(a.fullName); name != "" {
			fmt.Fprintf(&b, "From: %s <%s>\r\n", name, from)
		} else {
			fmt.Fprintf(&b, "From: %s\r\n", from)
		}
	}
	// Mark them present, should headers be asked for twice.
	a.haveID, a.haveDate, a.haveFrom = true, true, true
	return b.String()
}

// phrase renders a full name as an RFC 5322 display name: RFC 2047
// encoded when it is not ASCII, quoted when it holds specials, "" when
// it is empty or unusable.
func phrase(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" || len(s) > 256 {
		return ""
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	if enc := mime.QEncoding.Encode("utf-8", s); enc != s {
		return enc
	}
	atom := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == ' ' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
			atom = false
			break
		}
	}
	if atom {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
