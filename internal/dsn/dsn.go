// Package dsn writes delivery status notifications: the bounces, delay
// warnings and success notices that qmgr sends back to a message's
// envelope sender, as RFC 3464 message/delivery-status reports inside an
// RFC 6522 multipart/report message. The output is a complete message
// (header and body, CRLF line ends, as the queue stores them) meant to be
// handed to cleanup as a new message from the null sender "<>".
//
// Shape of the output, Postfix's layout:
//
//	From: Mail Delivery System <MAILER-DAEMON@myhostname>
//	To: <sender>
//	Subject: Undelivered Mail Returned to Sender
//	Content-Type: multipart/report; report-type=delivery-status; ...
//	Auto-Submitted: auto-replied
//	  part 1  text/plain: an explanation and one "<addr>: reason" per recipient
//	  part 2  message/delivery-status: per-message fields, then one group
//	          of per-recipient fields for each recipient
//	  part 3  message/rfc822 (the original) or text/rfc822-headers (its
//	          header), omitted when Write gets no original
//
// Peer data. Addresses, diagnostics and reasons come from peers and are
// sanitised before they reach a header field: CR, LF, TAB and runs of
// white space become one space, other control characters become '?', and
// so do bytes that are not valid UTF-8; each value is cut to a length
// limit (addresses 900 octets, diagnostics and reasons 2000, ENVID 200,
// queue ID 64). Fields are folded at white space near 78 columns; a word
// longer than 900 octets is split, which inserts a space when the field
// is unfolded. Every line made from peer data starts with a field name, a
// folding space or "<", so no peer text can form a MIME boundary line.
//
// Internationalised mail. When the original came with SMTPUTF8, or any
// address in the report is not ASCII, the report follows RFC 6532/6533:
// message/global-delivery-status, "utf-8" address types, message/global or
// message/global-headers for the original, UTF-8 kept in diagnostics and
// the text part, and the report must then travel as an SMTPUTF8 message
// (Report.International). Otherwise every non-ASCII character in peer text
// becomes '?', and the report is 7-bit unless Original8Bit says the
// original is 8-bit (Report.EightBit).
//
// Boundary. The boundary is "=_" and 32 hex digits from crypto/rand, drawn
// when the report is written. The original, the only part Write does not
// generate line by line, was fixed before that, so its author would have
// to guess 128 random bits: with a message of n lines the chance of a
// collision is below n/2^128. "=_" cannot occur in quoted-printable or
// base64 text either, so even a nested encoded body never contains it.
// Write therefore does not scan the original, which lets it stream.
//
// The original. Write copies it through a 64 KiB buffer and never holds
// it whole. Lone LF line ends become CRLF; a bare CR inside a line is
// copied as it is (smtpd refuses both, so this only matters for local
// submissions). RET=HDRS copies up to the first empty line. When
// MaxOriginal is set and the original is larger (or its size cannot be
// learned), only its header is returned, itself cut at a line boundary at
// MaxOriginal bytes. A read error part way through leaves a truncated
// report behind: Write returns the error and the caller must discard what
// was written.
//
// Write does not decide who gets a report, but it refuses one addressed
// to nobody (the null sender and no To), so that a bounce is never
// bounced by mistake, and one without a Reporting-MTA, without
// recipients, or with a recipient whose address is empty once cleaned.
// Parse reads reports back, for tests: at most MaxParse bytes, stopping
// at the original's part header; it checks structure, not RFC 3464
// field syntax.
package dsn

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Kind says which notice a report is.
type Kind int

// Kinds of report. The zero Kind is a bounce.
const (
	Failure Kind = iota // undeliverable: the bounce (Action failed)
	Delay               // still being retried: the delay warning (Action delayed)
	Success             // delivered, for NOTIFY=SUCCESS (Action delivered)
	Relayed             // handed to a next hop that does not speak DSN (Action relayed)
)

// String returns the kind's name, as used in logs.
func (k Kind) String() string {
	switch k {
	case Failure:
		return "failure"
	case Delay:
		return "delay"
	case Success:
		return "success"
	case Relayed:
		return "relayed"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Recipient is what one recipient's block of the report says.
type Recipient struct {
	// Addr is the final recipient in RFC 5321 printed form (quoted local
	// part when needed), as qmgr delivered to it.
	Addr string
	// ORcpt is the RCPT ORCPT parameter as smtpd stores it,
	// "type;decoded-address" ("rfc822;bob@example.org"); "" when none.
	// A value without a type is taken as an rfc822 (or utf-8) address.
	ORcpt string
	// Action is failed, delayed, delivered, relayed or expanded; ""
	// (or anything else) means the Kind's own action.
	Action string
	// Status is the RFC 3463 enhanced status code ("5.1.1"). When it is
	// "" (or malformed), the enhanced code of an smtp Diagnostic is used
	// with the action's class ("550 5.1.1" delayed gives 4.1.1), and
	// failing that 5.0.0, 4.0.0 or 2.0.0 by the action.
	Status string
	// RemoteMTA is the host name of the server that gave Diagnostic
	// ("mx.example.com"); written "dns; host" unless it has a type.
	RemoteMTA string
	// Diagnostic is "type; text" ("smtp; 550 5.1.1 user unknown"). Text
	// without a type gets "smtp" when it starts with a reply code and
	// "X-Postern" otherwise.
	Diagnostic string
	// Reason is the human-readable reason for the text part
	// ("connect to mx.example.com[192.0.2.1]:25: Connection refused");
	// "" means one made from RemoteMTA and Diagnostic.
	Reason string
	// LastAttempt is written as Last-Attempt-Date when not zero.
	LastAttempt time.Time
	// WillRetryUntil is written as Will-Retry-Until, for delayed
	// recipients only, when not zero.
	WillRetryUntil time.Time
}

// Report is one notice to one envelope sender about one message.
type Report struct {
	Kind Kind
	// ReportingMTA is our myhostname: "Reporting-MTA: dns; <it>". Required.
	ReportingMTA string
	// QueueID is the original message's queue ID (X-Postern-Queue-ID).
	QueueID string
	// EnvID is the MAIL ENVID parameter, xtext-decoded as smtpd stores it.
	EnvID string
	// Sender is the original envelope sender, to whom the report goes.
	Sender string
	// To overrides the report's recipient: the postmaster, for a double
	// bounce (a report about a message whose Sender was null). The
	// subject then says "Postmaster Copy".
	To string
	// ArrivalDate is when the original was queued (zero: not written).
	ArrivalDate time.Time
	// Date is the report's Date header; zero means time.Now(). qmgr
	// passes its own clock so that time-travel tests agree.
	Date       time.Time
	Recipients []Recipient
	// Postmaster is the From address; "" means MAILER-DAEMON@ReportingMTA.
	Postmaster string
	// Ret is "FULL" (the whole original) or "HDRS" (its header) and
	// applies to Failure reports only, as RFC 3461 4.3 says; "" means
	// FULL. Delay, Success and Relayed reports always return the header.
	Ret string
	// MaxOriginal caps the bytes of the original returned (0: no cap).
	// A larger original is returned as its header only, cut at the cap.
	MaxOriginal int64
	// OriginalSize is the original's size in bytes when the caller knows
	// it (0: unknown; Write then asks the reader for Seek or Len).
	OriginalSize int64
	// Original8Bit says the original was received with BODY=8BITMIME:
	// the original's part and the report are declared 8bit.
	Original8Bit bool
	// SMTPUTF8 says the original was received with SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool
}

// Errors Write returns for reports it will not write.
var (
	ErrNoRecipient = errors.New("dsn: report has no recipient (null sender)")
	ErrNoReporting = errors.New("dsn: report has no Reporting-MTA")
	ErrEmpty       = errors.New("dsn: report lists no recipients")
	ErrNoAddress   = errors.New("dsn: recipient has no address")
)

// International reports whether the report must be sent as an SMTPUTF8
// message: the original was SMTPUTF8, or an address in it is not ASCII.
func (r *Report) International() bool {
	if r.SMTPUTF8 {
		return true
	}
	s := []string{r.Sender, r.To, r.Postmaster, r.ReportingMTA}
	for i := range r.Recipients {
		s = append(s, r.Recipients[i].Addr, r.Recipients[i].ORcpt)
	}
	for _, v := range s {
		if !isASCII(v) {
			return true
		}
	}
	return false
}

// EightBit reports whether the report holds 8-bit data and must be
// submitted with BODY=8BITMIME.
func (r *Report) EightBit() bool {
	return r.Original8Bit || r.International()
}

// Limits on sanitised values, in octets.
const (
	maxAddr   = 900
	maxText   = 2000
	maxEnvID  = 200
	maxQID    = 64
	maxHost   = 255
	bufSize   = 64 << 10
	lineWidth = 78
)

// randRead is the boundary's and Message-ID's randomness; tests replace
// it to force a known boundary.
var randRead = rand.Read

// rcpt is a Recipient with every value sanitised and defaulted.
type rcpt struct {
	addrType, addr   string
	orcptType, orcpt string
	action, status   string
	remote           string // "dns; host" or ""
	diagType, diag   string
	reason           string
	last, until      time.Time
}

// report is a Report ready to render.
type report struct {
	*Report
	intl               bool
	from, to, sender   string
	host, qid, envid   string
	date               time.Time
	boundary, msgID    string
	rcpts              []rcpt
	headersOnly        bool
	hasOriginal        bool
	limit              int64 // cap on the copied original; 0: none
	origType, origDesc string
}

// Write renders r as a complete message on w, reading the original
// message (header and body, CRLF lines) from original, which may be nil
// for a report without it. See the package comment for what is returned
// of the original and how peer text is sanitised.
func Write(w io.Writer, r *Report, original io.Reader) error {
	p, err := prepare(r, original)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	p.writeHeader(bw)
	p.writeText(bw)
	p.writeStatus(bw)
	if original != nil {
		p.partHeader(bw, p.origDesc, p.origType, p.Original8Bit || p.intl)
		if err := copyOriginal(bw, original, p.headersOnly, p.limit); err != nil {
			return err
		}
	}
	bw.WriteString("\r\n--" + p.boundary + "--\r\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dsn: writing report: %w", err)
	}
	return nil
}

func prepare(r *Report, original io.Reader) (*report, error) {
	if r == nil {
		return nil, errors.New("dsn: nil report")
	}
	if len(r.Recipients) == 0 {
		return nil, ErrEmpty
	}
	p := &report{Report: r, intl: r.International(), hasOriginal: original != nil}
	p.host = clean(r.ReportingMTA, p.intl, maxHost)
	if p.host == "" {
		return nil, ErrNoReporting
	}
	p.sender = clean(r.Sender, p.intl, maxAddr)
	p.to = clean(r.To, p.intl, maxAddr)
	if p.to == "" {
		p.to = p.sender
	}
	if p.to == "" {
		return nil, ErrNoRecipient
	}
	p.from = clean(r.Postmaster, p.intl, maxAddr)
	if p.from == "" {
		p.from = "MAILER-DAEMON@" + p.host
	}
	p.qid = clean(r.QueueID, false, maxQID)
	p.envid = clean(r.EnvID, p.intl, maxEnvID)
	p.date = r.Date
	if p.date.IsZero() {
		p.date = time.Now()
	}
	var rnd [24]byte
	if _, err := randRead(rnd[:]); err != nil {
		return nil, fmt.Errorf("dsn: random boundary: %w", err)
	}
	p.boundary = "=_" + hex.EncodeToString(rnd[:16])
	p.msgID = "<" + p.date.UTC().Format("20060102150405") + "." + hex.EncodeToString(rnd[16:]) +
		"@" + msgIDHost(p.host) + ">"
	for i := range r.Recipients {
		c := p.recipient(&r.Recipients[i])
		if c.addr == "" {
			return nil, fmt.Errorf("recipient %d: %w", i+1, ErrNoAddress)
		}
		p.rcpts = append(p.rcpts, c)
	}

	p.headersOnly = r.Kind != Failure || strings.EqualFold(strings.TrimSpace(r.Ret), "HDRS")
	if r.MaxOriginal > 0 {
		p.limit = r.MaxOriginal
		if !p.headersOnly && original != nil {
			size, err := originalSize(r.OriginalSize, original)
			if err != nil {
				return nil, err
			}
			if size < 0 || size > r.MaxOriginal {
				p.headersOnly = true
			}
		}
	}
	what := map[Kind]string{Failure: "Undelivered", Delay: "Delayed"}[r.Kind]
	if what == "" {
		what = "Delivered"
	}
	switch {
	case p.headersOnly && p.intl:
		p.origType, p.origDesc = "message/global-headers", what+" Message Headers"
	case p.headersOnly:
		p.origType, p.origDesc = "text/rfc822-headers", what+" Message Headers"
	case p.intl:
		p.origType, p.origDesc = "message/global", what+" Message"
	default:
		p.origType, p.origDesc = "message/rfc822", what+" Message"
	}
	return p, nil
}

// originalSize returns the bytes left in original, or -1 if it cannot
// tell without reading.
func originalSize(known int64, original io.Reader) (int64, error) {
	if known > 0 {
		return known, nil
	}
	switch v := original.(type) {
	case io.Seeker:
		cur, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return -1, nil // a pipe or socket: unknown
		}
		end, err := v.Seek(0, io.SeekEnd)
		if err != nil {
			return -1, nil
		}
		if _, err := v.Seek(cur, io.SeekStart); err != nil {
			return 0, fmt.Errorf("dsn: rewinding original: %w", err)
		}
		return end - cur, nil
	case interface{ Len() int }:
		return int64(v.Len()), nil
	}
	return -1, nil
}

var kindAction = map[Kind]string{Failure: "failed", Delay: "delayed", Success: "delivered", Relayed: "relayed"}

func (p *report) recipient(in *Recipient) rcpt {
	var c rcpt
	c.addr = clean(in.Addr, p.intl, maxAddr)
	c.addrType = addrType(c.addr)
	if in.ORcpt != "" {
		typ, val, ok := splitTyped(in.ORcpt)
		val = clean(val, p.intl, maxAddr)
		if !ok {
			typ = addrType(val)
		}
		if val != "" {
			c.orcptType, c.orcpt = typ, val
		}
	}
	c.action = strings.ToLower(strings.TrimSpace(in.Action))
	switch c.action {
	case "failed", "delayed", "delivered", "relayed", "expanded":
	default:
		c.action = kindAction[p.Kind]
		if c.action == "" {
			c.action = "failed"
		}
	}
	class := map[string]byte{"failed": '5', "delayed": '4'}[c.action]
	if class == 0 {
		class = '2'
	}
	c.status = strings.TrimSpace(in.Status)
	if !validStatus(c.status) {
		c.status = string(class) + ".0.0"
	}
	if in.RemoteMTA != "" {
		typ, val, ok := splitTyped(in.RemoteMTA)
		if !ok {
			typ = "dns"
		}
		if val = clean(val, p.intl, maxHost); val != "" {
			c.remote = typ + "; " + val
		}
	}
	if in.Diagnostic != "" {
		typ, val, ok := splitTyped(in.Diagnostic)
		val = clean(val, p.intl, maxText)
		if !ok {
			typ = "X-Postern"
			if len(val) >= 3 && '2' <= val[0] && val[0] <= '5' && isDigit(val[1]) && isDigit(val[2]) {
				typ = "smtp"
			}
		}
		if val != "" {
			c.diagType, c.diag = typ, val
		}
	}
	if !validStatus(strings.TrimSpace(in.Status)) && strings.EqualFold(c.diagType, "smtp") {
		// "550 5.1.1 ...": the reply's enhanced code, in the action's
		// class (a 5xx reply kept for retry by soft_bounce is a 4.x.x).
		f := strings.Fields(strings.Replace(c.diag, "-", " ", 1))
		if len(f) > 1 && len(f[0]) == 3 && isDigit(f[0][0]) && validStatus(f[1]) {
			c.status = string(class) + f[1][1:]
		}
	}
	c.reason = clean(in.Reason, p.intl, maxText)
	c.last = in.LastAttempt
	if c.action == "delayed" {
		c.until = in.WillRetryUntil
	}
	return c
}

func addrType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}

// splitTyped splits "type; value" when type is an RFC 3464 atom-like
// token (letters, digits, '-', '_', '.'); ok is false when s has none.
func splitTyped(s string) (typ, val string, ok bool) {
	t, v, found := strings.Cut(s, ";")
	t = strings.TrimSpace(t)
	if !found || t == "" || len(t) > 32 {
		return "", s, false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'z' || c == '-' || c == '_' || c == '.') {
			return "", s, false
		}
	}
	return t, v, true
}

// validStatus checks an RFC 3463 status: class "." subject "." detail.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return false
	}
	for _, n := range parts[1:] {
		if n == "" || len(n) > 3 {
			return false
		}
		for i := 0; i < len(n); i++ {
			if !isDigit(n[i]) {
				return false
			}
		}
	}
	return true
}

// msgIDHost keeps what a Message-ID's dot-atom may hold.
func msgIDHost(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		if isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'z' || c == '-' || c == '.' {
			b.WriteByte(c)
		}
	}
	s := strings.Trim(b.String(), ".")
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", ".")
	}
	if s == "" {
		return "localhost"
	}
	return s
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func fmtDate(t time.Time) string { return t.Format(time.RFC1123Z) }
