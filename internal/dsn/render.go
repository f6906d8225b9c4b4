package dsn

import (
	"bufio"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

func (p *report) writeHeader(w *bufio.Writer) {
	subject := map[Kind]string{
		Failure: "Undelivered Mail Returned to Sender",
		Delay:   "Delayed Mail (still being retried)",
	}[p.Kind]
	if subject == "" {
		subject = "Successful Mail Delivery Report"
	}
	if p.To != "" {
		subject = map[Kind]string{
			Failure: "Postmaster Copy: Undelivered Mail",
			Delay:   "Postmaster Warning: Delayed Mail",
		}[p.Kind]
		if subject == "" {
			subject = "Postmaster Copy: Successful Mail Delivery Report"
		}
	}
	field(w, "From", "Mail Delivery System <"+p.from+">")
	field(w, "To", "<"+p.to+">")
	field(w, "Subject", subject)
	field(w, "Date", fmtDate(p.date))
	field(w, "Message-ID", p.msgID)
	field(w, "Auto-Submitted", "auto-replied")
	field(w, "MIME-Version", "1.0")
	rt := "delivery-status"
	if p.intl {
		rt = "global-delivery-status"
	}
	field(w, "Content-Type", "multipart/report; report-type="+rt+"; boundary=\""+p.boundary+"\"")
	if p.EightBit() {
		field(w, "Content-Transfer-Encoding", "8bit")
	}
	w.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")
}

// partHeader starts a body part.
func (p *report) partHeader(w *bufio.Writer, desc, ctype string, eight bool) {
	w.WriteString("\r\n--" + p.boundary + "\r\n")
	field(w, "Content-Description", desc)
	field(w, "Content-Type", ctype)
	if eight {
		field(w, "Content-Transfer-Encoding", "8bit")
	}
	w.WriteString("\r\n")
}

const (
	textHelp = "For further assistance, please send mail to postmaster.\n\n" +
		"If you do so, please include this problem report. You can\n" +
		"delete your own text from the attached returned message.\n\n"
	textSig = "                   The mail system\n"
)

// writeText writes part 1, the explanation for people, in Postfix's words.
func (p *report) writeText(w *bufio.Writer) {
	ctype, eight := "text/plain; charset=us-ascii", false
	if p.intl {
		ctype, eight = "text/plain; charset=utf-8", true
	}
	p.partHeader(w, "Notification", ctype, eight)
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s.\n\n", p.host)
	switch p.Kind {
	case Failure:
		b.WriteString("I'm sorry to have to inform you that your message could not\n" +
			"be delivered to one or more recipients.")
		switch {
		case p.hasOriginal && p.headersOnly:
			b.WriteString(" Its header is attached below.")
		case p.hasOriginal:
			b.WriteString(" It's attached below.")
		}
		b.WriteString("\n\n" + textHelp)
	case Delay:
		b.WriteString("####################################################################\n" +
			"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n" +
			"####################################################################\n\n")
		if !p.ArrivalDate.IsZero() && p.date.After(p.ArrivalDate) {
			fmt.Fprintf(&b, "Your message could not be delivered for %s.\n", span(p.date.Sub(p.ArrivalDate)))
		} else {
			b.WriteString("Your message could not be delivered yet.\n")
		}
		var until time.Time
		for _, r := range p.rcpts {
			if r.until.After(until) {
				until = r.until
			}
		}
		if !until.IsZero() {
			fmt.Fprintf(&b, "It will be retried until %s.\n", fmtDate(until))
		}
		b.WriteString("\n" + textHelp)
	default:
		b.WriteString("Your message was successfully delivered to the destination(s)\n" +
			"listed below. If the message was delivered to mailbox you will\n" +
			"receive no further notifications. Otherwise you may still receive\n" +
			"notifications of mail delivery errors from other systems.\n\n")
	}
	b.WriteString(textSig)
	for _, line := range strings.Split(b.String(), "\n") {
		if line != "" {
			w.WriteString(line)
		}
		w.WriteString("\r\n")
	}
	for i := range p.rcpts {
		wrap(w, p.rcpts[i].humanLine())
	}
}

// humanLine is "<addr> (expanded from <orcpt>): reason".
func (r *rcpt) humanLine() string {
	s := "<" + r.addr + ">"
	if r.orcpt != "" && !strings.EqualFold(r.orcpt, r.addr) {
		s += " (expanded from <" + r.orcpt + ">)"
	}
	reason := r.reason
	switch {
	case reason != "":
	case r.diag != "" && r.remote != "" && strings.EqualFold(r.diagType, "smtp"):
		_, host, _ := strings.Cut(r.remote, "; ")
		reason = "host " + host + " said: " + r.diag
	case r.diag != "":
		reason = r.diag
	default:
		reason = map[string]string{
			"failed":    "delivery failed",
			"delayed":   "delivery temporarily deferred",
			"delivered": "delivered",
			"relayed":   "relayed to a mail system that does not send delivery notifications",
			"expanded":  "delivered to an alias or mailing list",
		}[r.action] + " (status " + r.status + ")"
	}
	return s + ": " + reason
}

// span says how long, the way Postfix's delay warning does.
func span(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= time.Hour:
		return "1 hour"
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return "a minute"
}

// writeStatus writes part 2, the RFC 3464 fields.
func (p *report) writeStatus(w *bufio.Writer) {
	ctype := "message/delivery-status"
	if p.intl {
		ctype = "message/global-delivery-status"
	}
	p.partHeader(w, "Delivery report", ctype, p.intl)
	field(w, "Reporting-MTA", "dns; "+p.host)
	if p.qid != "" {
		field(w, "X-Postern-Queue-ID", p.qid)
	}
	if p.sender != "" {
		field(w, "X-Postern-Sender", addrType(p.sender)+"; "+p.sender)
	}
	if p.envid != "" {
		field(w, "Original-Envelope-Id", p.envid)
	}
	if !p.ArrivalDate.IsZero() {
		field(w, "Arrival-Date", fmtDate(p.ArrivalDate))
	}
	for i := range p.rcpts {
		r := &p.rcpts[i]
		w.WriteString("\r\n")
		field(w, "Final-Recipient", r.addrType+"; "+r.addr)
		if r.orcpt != "" {
			field(w, "Original-Recipient", r.orcptType+"; "+r.orcpt)
		}
		field(w, "Action", r.action)
		field(w, "Status", r.status)
		if r.remote != "" {
			field(w, "Remote-MTA", r.remote)
		}
		if r.diag != "" {
			field(w, "Diagnostic-Code", r.diagType+"; "+r.diag)
		}
		if !r.last.IsZero() {
			field(w, "Last-Attempt-Date", fmtDate(r.last))
		}
		if !r.until.IsZero() {
			field(w, "Will-Retry-Until", fmtDate(r.until))
		}
	}
}

// field writes "Name: value" folded at spaces. value must already be
// clean (no CR, LF or control characters, single spaces).
func field(w *bufio.Writer, name, value string) {
	w.WriteString(name + ":")
	n := len(name) + 1
	for i, word := range words(value) {
		if i > 0 && n+1+len(word) > lineWidth {
			w.WriteString("\r\n")
			n = 0
		}
		w.WriteByte(' ')
		w.WriteString(word)
		n += 1 + len(word)
	}
	w.WriteString("\r\n")
}

// wrap writes a text line wrapped near 76 columns, continuation lines
// indented by four spaces, as Postfix does.
func wrap(w *bufio.Writer, line string) {
	n := 0
	for i, word := range words(line) {
		switch {
		case i == 0:
		case n+1+len(word) > lineWidth-2:
			w.WriteString("\r\n    ")
			n = 4
		default:
			w.WriteByte(' ')
			n++
		}
		w.WriteString(word)
		n += len(word)
	}
	w.WriteString("\r\n")
}

// maxWord keeps every line under RFC 5322's 998 octets whatever a peer
// sends: longer words are split.
const maxWord = 900

// words splits a cleaned value at its spaces, and splits words longer
// than maxWord on rune boundaries.
func words(s string) []string {
	var out []string
	for _, wd := range strings.Split(s, " ") {
		for len(wd) > maxWord {
			i := maxWord
			for i > 0 && !utf8.RuneStart(wd[i]) {
				i--
			}
			out = append(out, wd[:i])
			wd = wd[i:]
		}
		if wd != "" {
			out = append(out, wd)
		}
	}
	return out
}

// clean makes peer text fit for a header field: white space and line
// breaks become single spaces, other controls become '?', so do bytes
// that are not UTF-8 and, unless utf8OK, every non-ASCII character; the
// result is trimmed and cut to max octets on a rune boundary.
func clean(s string, utf8OK bool, max int) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < max+4; {
		c, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' ||
			c == 0x85 || c == 0x2028 || c == 0x2029 || c == 0xa0 && utf8OK:
			space = true
			continue
		case c == utf8.RuneError && size == 1, c < 0x20, c == 0x7f, c >= 0x80 && c < 0xa0:
			c = '?'
		case c >= 0x80 && (!utf8OK || !unicode.IsPrint(c)):
			c = '?'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(c)
	}
	out := b.String()
	if len(out) > max {
		i := max
		for i > 0 && !utf8.RuneStart(out[i]) {
			i--
		}
		out = strings.TrimRight(out[:i], " ")
	}
	return out
}
