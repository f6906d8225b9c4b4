package smtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Envelope is one message's envelope for Send.
type Envelope struct {
	From     string // the sender without angle brackets; "" is the null sender
	Size     int64  // the message's size in octets for SIZE=, 0 when unknown
	Body8Bit bool   // the body is 8BITMIME (sent as BODY=8BITMIME when offered)
	SMTPUTF8 bool   // the message needs SMTPUTF8 (implied by a non-ASCII address)
	Ret      string // DSN RET: "FULL", "HDRS" or ""
	EnvID    string // DSN ENVID, not xtext-encoded; "" for none
	Rcpts    []Rcpt
}

// Rcpt is one recipient of an Envelope.
type Rcpt struct {
	Addr   string   // without angle brackets
	ORcpt  string   // DSN ORCPT as addr-type ";" address, not xtext-encoded (as RcptParams.ORcpt); "" for none
	Notify []string // DSN NOTIFY: "NEVER" alone, or some of "SUCCESS", "FAILURE", "DELAY"; nil for none
}

// Result is what became of one recipient in Send.
type Result struct {
	Rcpt     int    // index in Envelope.Rcpts
	Code     int    // reply code: 2xx delivered, 4xx try again, 5xx failed
	Enhanced string // the enhanced status code; "" when the server gave none
	Text     string // the reply's text, lines joined with a space
	// Stage is the command the reply answered: "MAIL FROM", "RCPT TO",
	// "DATA" or "end of DATA" (and for a 421, whichever command got it);
	// "" for most Local results.
	Stage string
	// Local is set when the client made the result up: the server
	// never said this (SIZE over its limit, no SMTPUTF8, a bad address,
	// a failed connection, an unreadable message).
	Local bool
}

// maxClientPath bounds an address in MAIL and RCPT.
const maxClientPath = 1000

// Send runs one mail transaction and returns one Result per recipient;
// see the file comment of client.go for the rules. The error is nil when
// the conversation went as the protocol says, whatever the replies were;
// ErrNoSMTPUTF8 (nothing sent, the connection still usable); or the
// reason the connection became unusable. An envelope without recipients
// or with a sender address that cannot be sent gives no results and an
// error. msg is the message with CRLF (or LF) line ends.
func (c *Client) Send(ctx context.Context, env *Envelope, msg io.Reader) ([]Result, error) {
	if env == nil || len(env.Rcpts) == 0 {
		return nil, errors.New("smtp client: envelope without recipients")
	}
	if msg == nil {
		return nil, errors.New("smtp client: no message")
	}
	if !validClientPath(env.From, true) {
		return nil, fmt.Errorf("smtp client: bad sender address %q", printable(env.From, 100))
	}
	t := &txn{c: c, env: env, res: make([]Result, len(env.Rcpts)), decided: make([]bool, len(env.Rcpts))}
	for i := range t.res {
		t.res[i].Rcpt = i
	}
	if err := c.unusable(); err != nil {
		t.finish(err)
		return t.res, err
	}
	t.utf8 = env.SMTPUTF8 || !isASCII(env.From)
	for _, r := range env.Rcpts {
		if !isASCII(r.Addr) {
			t.utf8 = true
		}
	}
	if t.utf8 && !c.has("SMTPUTF8") {
		for i := range t.res {
			t.setLocal(i, 553, "5.6.7", "SMTPUTF8 is required, but was not offered by host "+c.host)
		}
		return t.res, fmt.Errorf("host %s: %w", c.host, ErrNoSMTPUTF8)
	}
	if limit := c.sizeLimit(); limit > 0 && env.Size > limit {
		for i := range t.res {
			t.setLocal(i, 552, "5.3.4", fmt.Sprintf("message size %d exceeds size limit %d of server %s", env.Size, limit, c.host))
		}
		return t.res, nil
	}
	for i, r := range env.Rcpts {
		if validClientPath(r.Addr, false) {
			t.todo = append(t.todo, i)
		} else {
			t.setLocal(i, 501, "5.1.3", "bad recipient address syntax")
		}
	}
	if len(t.todo) == 0 {
		return t.res, nil
	}
	err := c.op(ctx, func(ctx context.Context) error { return t.run(ctx, msg) })
	t.finish(err)
	return t.res, err
}

func (c *Client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// sizeLimit is the server's SIZE, 0 when it has none.
func (c *Client) sizeLimit() int64 {
	v, ok := c.ext["SIZE"]
	if !ok {
		return 0
	}
	n, ok := parseSize(v)
	if !ok {
		return 0
	}
	return n
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// validClientPath accepts an address that can go between the angle
// brackets of MAIL or RCPT: not too long, valid UTF-8, no controls, no
// angle brackets (they would end the path early), and not empty except
// for the null sender.
func validClientPath(s string, sender bool) bool {
	if s == "" {
		return sender
	}
	if len(s) > maxClientPath || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// txn is one Send in progress.
type txn struct {
	c        *Client
	env      *Envelope
	utf8     bool
	res      []Result
	decided  []bool
	todo     []int // recipients to send, in order
	accepted []int // recipients the server accepted, in order
}

func (t *txn) set(i int, r *clientReply, stage string) {
	t.res[i] = Result{Rcpt: i, Code: r.code, Enhanced: r.enhanced, Text: r.text(), Stage: stage}
	t.decided[i] = true
}

func (t *txn) setLocal(i, code int, enh, text string) {
	t.res[i] = Result{Rcpt: i, Code: code, Enhanced: enh, Text: text, Local: true}
	t.decided[i] = true
}

// finish gives every undecided recipient a result from err: the
// server's 421 when that ended the session, a local 4.4.2 otherwise.
func (t *txn) finish(err error) {
	var re *ReplyError
	is421 := errors.As(err, &re) && re.Code == 421
	for i := range t.res {
		if t.decided[i] {
			continue
		}
		switch {
		case is421:
			t.res[i] = Result{Rcpt: i, Code: re.Code, Enhanced: re.Enhanced, Text: re.Text, Stage: re.Stage}
			t.decided[i] = true
		case err != nil:
			t.setLocal(i, 451, "4.4.2", err.Error())
		default:
			// Cannot happen: a clean run decides every recipient.
			t.setLocal(i, 451, "4.4.2", "no reply from host "+t.c.host)
		}
	}
}

func (t *txn) mailLine() string {
	c, env := t.c, t.env
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(env.From)
	b.WriteByte('>')
	if env.Size > 0 && c.has("SIZE") {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(env.Size, 10))
	}
	if env.Body8Bit && c.has("8BITMIME") {
		b.WriteString(" BODY=8BITMIME")
	}
	if t.utf8 {
		b.WriteString(" SMTPUTF8")
	}
	if c.has("DSN") {
		if ret := strings.ToUpper(env.Ret); ret == "FULL" || ret == "HDRS" {
			b.WriteString(" RET=")
			b.WriteString(ret)
		}
		if v, ok := encodeXtext(env.EnvID, t.utf8); ok && env.EnvID != "" && utf8.RuneCountInString(env.EnvID) <= maxEnvID {
			b.WriteString(" ENVID=")
			b.WriteString(v)
		}
	}
	return b.String()
}

func (t *txn) rcptLine(i int) string {
	r := t.env.Rcpts[i]
	var b strings.Builder
	b.WriteString("RCPT TO:<")
	b.WriteString(r.Addr)
	b.WriteByte('>')
	if t.c.has("DSN") {
		if n, ok := notifyParam(r.Notify); ok {
			b.WriteString(" NOTIFY=")
			b.WriteString(n)
		}
		if o, ok := orcptParam(r.ORcpt, t.utf8); ok {
			b.WriteString(" ORCPT=")
			b.WriteString(o)
		}
	}
	return b.String()
}

// notifyParam checks NOTIFY's values; a bad list is left out rather than
// sent for the server to refuse the recipient over it.
func notifyParam(n []string) (string, bool) {
	if len(n) == 0 {
		return "", false
	}
	v := strings.ToUpper(strings.Join(n, ","))
	if _, ok := parseNotify(v); !ok {
		return "", false
	}
	return v, true
}

// orcptParam encodes ORCPT's address as xtext. One that cannot be sent
// (no type, controls, non-ASCII outside SMTPUTF8, too long) is left out.
func orcptParam(v string, utf8OK bool) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || addr == "" || !isAtomType(typ) {
		return "", false
	}
	enc, ok := encodeXtext(addr, utf8OK)
	if !ok || len(typ)+1+len(enc) > maxORcpt {
		return "", false
	}
	return typ + ";" + enc, true
}

// isAtomType accepts an addr-type: letters, digits and hyphens.
func isAtomType(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

// encodeXtext encodes v as RFC 3461 xtext: "+", "=" and what is not
// printable ASCII as "+XX". Controls cannot be sent (the receiving side
// must refuse them in a DSN field) and UTF-8 only raw in an SMTPUTF8
// transaction (RFC 6533), so either makes ok false.
func encodeXtext(v string, utf8OK bool) (string, bool) {
	if !utf8.ValidString(v) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", false
		case c >= utf8.RuneSelf:
			if !utf8OK {
				return "", false
			}
			b.WriteByte(c)
		case c == '+' || c == '=' || c == ' ':
			fmt.Fprintf(&b, "+%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func (t *txn) run(ctx context.Context, msg io.Reader) error {
	if t.c.has("PIPELINING") {
		return t.pipelined(ctx, msg)
	}
	return t.stepwise(ctx, msg)
}

// stepwise sends each command and waits for its reply.
func (t *txn) stepwise(ctx context.Context, msg io.Reader) error {
	c := t.c
	if c.dirty {
		if err := c.reset(ctx); err != nil {
			return err
		}
	}
	c.dirty = true
	r, err := c.command(ctx, c.cfg.Mail, t.mailLine(), "MAIL FROM", "sending MAIL FROM")
	if err == nil {
		err = t.check(ctx, r, false, "sending MAIL FROM")
	}
	if err != nil {
		return err
	}
	if r.code/100 != 2 {
		for _, i := range t.todo {
			t.set(i, r, "MAIL FROM")
		}
		return nil
	}
	for _, i := range t.todo {
		r, err := c.command(ctx, c.cfg.Rcpt, t.rcptLine(i), "RCPT TO", "sending RCPT TO")
		if err == nil {
			err = t.check(ctx, r, false, "sending RCPT TO")
		}
		if err != nil {
			return err
		}
		if r.code/100 == 2 {
			t.accepted = append(t.accepted, i)
		} else {
			t.set(i, r, "RCPT TO")
		}
	}
	if len(t.accepted) == 0 {
		return nil
	}
	r, err = c.command(ctx, c.cfg.Data, "DATA", "DATA", "sending DATA")
	if err == nil {
		err = t.check(ctx, r, true, "sending DATA")
	}
	if err != nil {
		return err
	}
	if r.code/100 != 3 {
		for _, i := range t.accepted {
			t.set(i, r, "DATA")
		}
		return nil
	}
	return t.data(ctx, msg)
}

// pipelined sends [RSET] MAIL, every RCPT and DATA in one write (RFC
// 2920) and reads the replies in order. The write runs in its own
// goroutine: a server may answer before it has read everything, and
// with a long pipeline both sides' buffers could fill and each wait for
// the other.
func (t *txn) pipelined(ctx context.Context, msg io.Reader) error {
	c := t.c
	var buf bytes.Buffer
	rset := c.dirty
	if rset {
		buf.WriteString("RSET\r\n")
	}
	buf.WriteString(t.mailLine())
	buf.WriteString("\r\n")
	for _, i := range t.todo {
		buf.WriteString(t.rcptLine(i))
		buf.WriteString("\r\n")
	}
	buf.WriteString("DATA\r\n")
	c.dirty = true

	c.cc.armWrite(ctx, max(c.cfg.Mail, c.cfg.Rcpt))
	done := make(chan error, 1)
	go func() {
		_, err := c.cc.Write(buf.Bytes())
		done <- err
	}()
	waitWrite := sync.OnceValue(func() error { return <-done })
	fail := func(err error) error {
		// The connection is unusable: stop the writer rather than
		// wait out its deadline.
		c.cc.cancel()
		_ = waitWrite()
		return err
	}
	read := func(timeout time.Duration, stage, phase string) (*clientReply, error) {
		c.cc.armRead(ctx, timeout)
		r, err := c.readReply(ctx, stage, phase, false)
		if err == nil {
			err = t.check(ctx, r, stage == "DATA", phase)
		}
		return r, err
	}

	if rset {
		r, err := read(c.cfg.Rset, "RSET", "sending RSET")
		if err != nil {
			return fail(err)
		}
		if err := c.afterReset(r); err != nil {
			return fail(err)
		}
		c.dirty = true
	}
	mail, err := read(c.cfg.Mail, "MAIL FROM", "sending MAIL FROM")
	if err != nil {
		return fail(err)
	}
	mailOK := mail.code/100 == 2
	for _, i := range t.todo {
		r, err := read(c.cfg.Rcpt, "RCPT TO", "sending RCPT TO")
		if err != nil {
			return fail(err)
		}
		switch {
		case !mailOK:
			t.set(i, mail, "MAIL FROM")
		case r.code/100 == 2:
			t.accepted = append(t.accepted, i)
		default:
			t.set(i, r, "RCPT TO")
		}
	}
	r, err := read(c.cfg.Data, "DATA", "sending DATA")
	if err != nil {
		return fail(err)
	}
	// Every command had its reply, so the server read them all.
	if err := waitWrite(); err != nil {
		return fail(c.ioFailure(ctx, err, "sending RCPT TO"))
	}
	if r.code/100 != 3 {
		for _, i := range t.accepted {
			t.set(i, r, "DATA")
		}
		return nil
	}
	if len(t.accepted) == 0 {
		// RFC 2920 3.1: a server that takes DATA although no
		// recipient was accepted gets an empty message, which it
		// then refuses; its reply does not matter.
		c.cc.arm(ctx, c.cfg.DataDone)
		_, _ = c.bw.WriteString(".\r\n")
		if err := c.bw.Flush(); err != nil {
			return c.ioFailure(ctx, err, "sending end of data")
		}
		_, err := c.readReply(ctx, "end of DATA", "sending end of data", false)
		return err
	}
	return t.data(ctx, msg)
}

// check refuses a reply code that makes no sense where it came: only
// DATA may get a 3xx, and DATA must not get a 2xx (it would pass for a
// delivery). Such a server is not followed further.
func (t *txn) check(ctx context.Context, r *clientReply, data bool, phase string) error {
	class := r.code / 100
	if data && class != 2 || !data && class != 3 {
		return nil
	}
	return t.c.ioFailure(ctx, fmt.Errorf("%w: unexpected reply code %d", ErrBadReply, r.code), phase)
}

// data streams the message after the 354 and reads the final reply, or
// one per accepted recipient for LMTP.
func (t *txn) data(ctx context.Context, msg io.Reader) error {
	c := t.c
	c.cc.armWrite(ctx, c.cfg.DataBlock)
	dw := newDotWriter(c.bw)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := msg.Read(buf)
		if n > 0 {
			if _, err := dw.Write(buf[:n]); err != nil {
				return t.writeFailed(ctx, err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The server must not take a truncated message: hang
			// up before the final dot.
			_ = c.cc.close()
			e := fmt.Errorf("error reading message for %s: %w", c.host, rerr)
			c.broken = e
			for _, i := range t.accepted {
				t.setLocal(i, 451, "4.3.0", e.Error())
			}
			return e
		}
		if ctx.Err() != nil {
			return c.ioFailure(ctx, ctx.Err(), "sending message body")
		}
	}
	if err := dw.finish(); err != nil {
		return t.writeFailed(ctx, err)
	}
	if err := c.bw.Flush(); err != nil {
		return t.writeFailed(ctx, err)
	}
	const phase = "sending end of data -- message may be sent more than once"
	for _, i := range t.accepted {
		c.cc.armRead(ctx, c.cfg.DataDone)
		r, err := c.readReply(ctx, "end of DATA", phase, false)
		if err == nil {
			err = t.check(ctx, r, false, phase)
		}
		if err != nil {
			return err
		}
		if !c.cfg.LMTP {
			for _, i := range t.accepted {
				t.set(i, r, "end of DATA")
			}
			break
		}
		t.set(i, r, "end of DATA")
	}
	c.dirty = false
	return nil
}

// writeFailed ends a transaction whose message could not be written. The
// server may have said why before it hung up (a message too big, say):
// a 4xx/5xx reply still in reach is every accepted recipient's result.
func (t *txn) writeFailed(ctx context.Context, err error) error {
	c := t.c
	e := c.ioFailure(ctx, err, "sending message body")
	if ctx.Err() != nil || errors.Is(e, ErrTimeout) || errors.Is(e, ErrClientClosed) {
		return e
	}
	c.cc.armRead(ctx, min(c.cfg.DataDone, 10*time.Second))
	r, rerr := readClientReply(c.br, c.enhanced)
	if rerr == nil && r.code/100 >= 4 {
		for _, i := range t.accepted {
			t.set(i, r, "DATA")
		}
	}
	return e
}

// dotWriter writes message content in DATA's wire form (RFC 5321
// 4.5.2): every bare CR and bare LF becomes CRLF, and every line that
// starts with a dot gets another, so no line can pass for the end of
// data whatever the content holds.
type dotWriter struct {
	w   *bufio.Writer
	bol bool // at the beginning of a line
	cr  bool // the last octet was a CR, not written yet
}

func newDotWriter(w *bufio.Writer) *dotWriter { return &dotWriter{w: w, bol: true} }

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if d.cr {
			// A CR ends the line whatever follows: with its LF
			// it is a CRLF, alone it becomes one.
			d.cr = false
			_, _ = d.w.WriteString("\r\n")
			d.bol = true
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			i = len(p)
		}
		if i > 0 {
			if d.bol && p[0] == '.' {
				_ = d.w.WriteByte('.')
			}
			_, _ = d.w.Write(p[:i])
			d.bol = false
		}
		if i == len(p) {
			break
		}
		if p[i] == '\n' {
			_, _ = d.w.WriteString("\r\n")
			d.bol = true
		} else {
			d.cr = true
		}
		p = p[i+1:]
	}
	// bufio.Writer's errors stick; the first one is reported.
	if _, err := d.w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// finish ends the last line if the content did not, and writes the
// end of data.
func (d *dotWriter) finish() error {
	if d.cr {
		d.cr = false
		_, _ = d.w.WriteString("\r\n")
		d.bol = true
	}
	if !d.bol {
		_, _ = d.w.WriteString("\r\n")
	}
	_, err := d.w.WriteString(".\r\n")
	d.bol = true
	return err
}
