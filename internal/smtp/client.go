// The client side of the engine: one Client per outgoing connection,
// used by the smtp delivery agent (remote SMTP) and by the LMTP
// transport. It speaks RFC 5321 with PIPELINING (RFC 2920), SIZE (RFC
// 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034), SMTPUTF8
// (RFC 6531), DSN (RFC 3461), STARTTLS (RFC 3207), AUTH PLAIN and LOGIN
// (RFC 4954), and LMTP (RFC 2033). It owns the protocol and nothing
// else: no DNS, no MX order, no retry schedule, no 8-bit to 7-bit
// conversion; those are the caller's.
//
// Connection set-up (Dial, NewClient): the greeting, EHLO (LHLO for
// LMTP), HELO when EHLO gets a 5xx (never for LMTP), STARTTLS per
// TLSPolicy followed by a second EHLO, then AUTH when configured. A 4xx
// or 5xx greeting, or a refused HELO/EHLO/LHLO, comes back as a
// *ReplyError; every failure closes the connection.
//
// TLS: TLSMay uses STARTTLS when offered and goes on in the clear when
// it is not offered or refused; TLSEncrypt and TLSVerify fail with
// ErrTLSRequired then. A failed handshake leaves the connection unusable
// under every policy: the error matches ErrTLSFailed, and falling back
// to a new cleartext connection (TLSMay) is the caller's decision. TLSMay
// and TLSEncrypt do not verify the certificate (InsecureSkipVerify is
// forced on; a VerifyConnection the caller sets, for DANE say, still
// runs); TLSVerify forces verification against ClientConfig.TLS's roots
// and ServerName, which must be set. Octets the server sends after its
// 220 to STARTTLS and before the handshake could have been injected by a
// man in the middle; they fail the handshake (ErrTLSFailed).
//
// AUTH: PLAIN when offered, else LOGIN; only over TLS unless
// ClientAuth.AllowPlainAuth. When the server offers neither, or TLS is
// missing, set-up fails with ErrAuthUnavailable rather than sending the
// mail unauthenticated; a refusal is a *ReplyError with Stage "AUTH"
// (Postfix defers rather than bounces on it, and so should the caller).
//
// Send runs one transaction. With PIPELINING, MAIL, every RCPT and DATA
// (and an RSET first, when an earlier transaction did not end cleanly)
// go out in one write, from a goroutine of their own so that a long
// pipeline cannot deadlock against a server that writes its replies
// before reading on; the replies are read in order. Without it every
// command waits for its reply, and DATA is not sent when no recipient
// was accepted. The message is streamed, never held whole: every bare CR
// and bare LF becomes CRLF, a dot at the start of any line is doubled,
// and CRLF "." CRLF is added (after a CRLF when the content does not end
// in one). Lines are not folded: a line over the server's limit is the
// server's to refuse. Send never converts the body; BODY=8BITMIME,
// SMTPUTF8, SIZE=, RET=, ENVID=, NOTIFY= and ORCPT= are sent only when
// the server offers the extension.
//
// Results: Send returns one Result per recipient, in envelope order,
// whatever happens once the envelope is valid. A recipient refused at
// RCPT gets that reply; a refused MAIL or DATA gives its reply to every
// recipient it concerns; otherwise the final reply to the data (LMTP:
// the recipient's own). Results the client makes up itself have Local
// set: SIZE over the server's limit (552 5.3.4, nothing sent), no
// SMTPUTF8 (553 5.6.7, nothing sent, error ErrNoSMTPUTF8), an address
// that cannot be put in a command (501 5.1.3/5.1.7), and every
// recipient left undecided when the connection fails (451 4.4.2, or
// 451 4.3.0 when reading the message failed). A non-nil error other
// than ErrNoSMTPUTF8 means the connection is unusable: Close it. After a
// failure during or after the data, the message may have been delivered
// although the client never saw the reply (the usual SMTP duplicate).
//
// Input limits and failure modes: a reply line is at most
// MaxClientReplyLine octets with its line end, a reply at most
// MaxClientReplyLines lines; a longer line, a longer reply, a line that
// does not start with a valid code followed by SP, "-" or the end of
// the line, or a continuation line with another code is a protocol error
// (ErrBadReply) and the connection is unusable. A bare LF ends a reply
// line as CRLF does. Reply text is made printable (control characters
// and invalid UTF-8 become "?") and the lines of a multi-line reply are
// joined with a space. Enhanced status codes are taken from the text
// when the server offered ENHANCEDSTATUSCODES (and from the greeting and
// the EHLO reply, which come before the server can offer it) and only
// when their class matches the reply code. Every read has a deadline:
// the Timeouts of the stage, cut short by the context's deadline, per
// reply (not per line, so a server trickling lines cannot stretch it);
// every write has one too, per block of the message while it streams. A
// timeout matches ErrTimeout, a lost connection ErrLostConnection, a
// cancelled context the context's error.
//
// A Client is not safe for concurrent use, except that Close may be
// called from another goroutine to abort whatever the client is doing.

package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TLSPolicy says when the client uses STARTTLS, as Postfix's
// smtp_tls_security_level.
type TLSPolicy int

// The TLS policies.
const (
	TLSNone    TLSPolicy = iota // never STARTTLS
	TLSMay                      // STARTTLS when offered, unverified; clear text otherwise
	TLSEncrypt                  // STARTTLS required, certificate not verified
	TLSVerify                   // STARTTLS required, certificate verified
)

// String returns the policy's name in postern.conf.
func (p TLSPolicy) String() string {
	switch p {
	case TLSNone:
		return "none"
	case TLSMay:
		return "may"
	case TLSEncrypt:
		return "encrypt"
	case TLSVerify:
		return "verify"
	}
	return "TLSPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ClientAuth holds the credentials for SMTP AUTH to a smarthost.
type ClientAuth struct {
	User, Password string
	// AllowPlainAuth lets the password go over a connection without
	// TLS. Only for a next hop on a trusted network.
	AllowPlainAuth bool
}

// Timeouts bound each stage of a conversation. Zero fields take
// Postfix's defaults (smtp_*_timeout), given after each field.
type Timeouts struct {
	Connect   time.Duration // TCP connect; 30 s
	Greeting  time.Duration // the 220 greeting; 300 s
	Helo      time.Duration // the EHLO/HELO/LHLO reply and each AUTH step; 300 s
	StartTLS  time.Duration // the STARTTLS reply and the handshake; 300 s
	Mail      time.Duration // the MAIL reply; 300 s
	Rcpt      time.Duration // each RCPT reply; 300 s
	Data      time.Duration // the reply to DATA (the 354); 120 s
	DataBlock time.Duration // each block of the message written; 180 s
	DataDone  time.Duration // the final reply to the data (each, for LMTP); 600 s
	Rset      time.Duration // the RSET reply; 20 s
	Quit      time.Duration // the QUIT reply; 300 s
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Greeting, 300*time.Second)
	def(&t.Helo, 300*time.Second)
	def(&t.StartTLS, 300*time.Second)
	def(&t.Mail, 300*time.Second)
	def(&t.Rcpt, 300*time.Second)
	def(&t.Data, 120*time.Second)
	def(&t.DataBlock, 180*time.Second)
	def(&t.DataDone, 600*time.Second)
	def(&t.Rset, 20*time.Second)
	def(&t.Quit, 300*time.Second)
	return t
}

// ClientConfig is what a client needs to know. NewClient and Dial copy
// it; nil means all defaults.
type ClientConfig struct {
	Hostname string // our EHLO/LHLO name; default "localhost"
	// PeerName is the server's name (the MX host, say) for error texts:
	// "host PEERNAME[IP] said: ...". Empty: the address alone.
	PeerName string
	LMTP     bool // LHLO, no HELO fallback, one final reply per accepted recipient

	// TLS is the configuration for STARTTLS; the caller sets
	// ServerName. It is cloned; see the file comment for what the
	// policy forces in the clone. nil is an empty configuration,
	// which TLSVerify refuses.
	TLS       *tls.Config
	TLSPolicy TLSPolicy
	Auth      *ClientAuth // AUTH after EHLO (and STARTTLS); nil for none

	Timeouts
}

// Reply limits on what the client reads: a hostile server must not make
// it allocate without bound.
const (
	MaxClientReplyLine  = 4096 // octets of one reply line, line end included
	MaxClientReplyLines = 100  // lines of one reply
)

// Errors of the client; test with errors.Is. See also ErrTimeout and
// ErrLostConnection, shared with the server.
var (
	// ErrTLSFailed: the TLS handshake failed (certificate verification
	// included); the connection is unusable.
	ErrTLSFailed = errors.New("TLS handshake failed")
	// ErrTLSRequired: the policy requires TLS but the server did not
	// offer STARTTLS or refused it.
	ErrTLSRequired = errors.New("TLS is required, but was not offered")
	// ErrAuthUnavailable: AUTH is configured but the server offers no
	// mechanism the client knows, or the connection is not encrypted.
	ErrAuthUnavailable = errors.New("SASL authentication not possible")
	// ErrNoSMTPUTF8: the message needs SMTPUTF8 and the server does
	// not offer it.
	ErrNoSMTPUTF8 = errors.New("SMTPUTF8 is required, but was not offered")
	// ErrBadReply: the server broke the reply syntax or a limit.
	ErrBadReply = errors.New("malformed reply")
	// ErrClientClosed: the client was closed.
	ErrClientClosed = errors.New("client closed")
)

// ReplyError is a server's refusal outside the per-recipient results: of
// the greeting, HELO/EHLO/LHLO, STARTTLS, AUTH, RSET, or a 421 that
// ended the session.
type ReplyError struct {
	Stage    string // "greeting", "EHLO", "HELO", "LHLO", "STARTTLS", "AUTH", "MAIL FROM", "RCPT TO", "DATA", "end of DATA", "RSET", "QUIT"
	Code     int
	Enhanced string // "" when the server gave none (or did not offer ENHANCEDSTATUSCODES)
	Text     string // the server's text, lines joined with a space
	Host     string // "name[ip]", as in Postfix's messages; may be empty
}

// Error says it as Postfix does: "host mx[192.0.2.1] said: 450 4.2.0
// text (in reply to RCPT TO command)".
func (e *ReplyError) Error() string {
	var b strings.Builder
	b.WriteString("host ")
	if e.Host != "" {
		b.WriteString(e.Host)
		b.WriteByte(' ')
	}
	if e.Stage == "greeting" {
		b.WriteString("refused to talk to me: ")
	} else {
		b.WriteString("said: ")
	}
	b.WriteString(strconv.Itoa(e.Code))
	if e.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(e.Enhanced)
	}
	if e.Text != "" {
		b.WriteByte(' ')
		b.WriteString(e.Text)
	}
	if e.Stage != "greeting" && e.Stage != "" {
		b.WriteString(" (in reply to ")
		b.WriteString(e.Stage)
		b.WriteString(" command)")
	}
	return b.String()
}

// Temporary reports a 4xx reply: try again later.
func (e *ReplyError) Temporary() bool { return e.Code/100 == 4 }

// Client is one SMTP or LMTP client connection.
type Client struct {
	cfg  ClientConfig
	host string // "name[ip]" for texts
	cc   *clientConn
	br   *bufio.Reader
	bw   *bufio.Writer

	greeting   string            // the greeting's first line
	serverName string            // first word of the EHLO reply or greeting
	ext        map[string]string // EHLO keywords, upper case
	esmtp      bool              // EHLO/LHLO accepted
	enhanced   bool              // ENHANCEDSTATUSCODES offered
	tlsState   *tls.ConnectionState

	dirty  bool  // a transaction may be open on the server: RSET first
	broken error // the connection is unusable, and why
}

// clientConn is the client's view of the connection: reads and writes
// carry the deadlines of the stage, and cancel interrupts whatever is
// blocked and fails every later read and write.
type clientConn struct {
	mu       sync.Mutex
	conn     net.Conn // the raw connection, then the *tls.Conn
	canceled bool
	closed   bool
	rdl      time.Time     // read deadline
	wto      time.Duration // each write gets this long ...
	wlimit   time.Time     // ... but not beyond this, when set
}

var errClientCanceled = errors.New("client operation canceled")

func (cc *clientConn) Read(p []byte) (int, error) {
	cc.mu.Lock()
	if cc.canceled || cc.closed {
		cc.mu.Unlock()
		return 0, errClientCanceled
	}
	c := cc.conn
	err := c.SetReadDeadline(cc.rdl)
	cc.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Read(p)
}

func (cc *clientConn) Write(p []byte) (int, error) {
	cc.mu.Lock()
	if cc.canceled || cc.closed {
		cc.mu.Unlock()
		return 0, errClientCanceled
	}
	c := cc.conn
	d := time.Now().Add(cc.wto)
	if !cc.wlimit.IsZero() && cc.wlimit.Before(d) {
		d = cc.wlimit
	}
	err := c.SetWriteDeadline(d)
	cc.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Write(p)
}

// armRead sets the deadline for the next reply, cut short by the
// context's deadline.
func (cc *clientConn) armRead(ctx context.Context, timeout time.Duration) {
	d := time.Now().Add(timeout)
	if limit, ok := ctx.Deadline(); ok && limit.Before(d) {
		d = limit
	}
	cc.mu.Lock()
	cc.rdl = d
	cc.mu.Unlock()
}

// armWrite sets how long each write may take from now on, cut short by
// the context's deadline.
func (cc *clientConn) armWrite(ctx context.Context, timeout time.Duration) {
	limit, _ := ctx.Deadline()
	cc.mu.Lock()
	cc.wto = timeout
	cc.wlimit = limit
	cc.mu.Unlock()
}

// arm is armRead and armWrite with one timeout.
func (cc *clientConn) arm(ctx context.Context, timeout time.Duration) {
	cc.armRead(ctx, timeout)
	cc.armWrite(ctx, timeout)
}

func (cc *clientConn) cancel() {
	cc.mu.Lock()
	cc.canceled = true
	_ = cc.conn.SetDeadline(time.Unix(1, 0))
	cc.mu.Unlock()
}

func (cc *clientConn) current() net.Conn {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.conn
}

func (cc *clientConn) swap(c net.Conn) {
	cc.mu.Lock()
	cc.conn = c
	cc.mu.Unlock()
}

func (cc *clientConn) isClosed() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.closed
}

func (cc *clientConn) close() error {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return nil
	}
	cc.closed = true
	c := cc.conn
	cc.mu.Unlock()
	return c.Close()
}

// Dial connects to addr ("tcp", "host:port"; "unix", "/path" for LMTP)
// from local (nil: any) within Timeouts.Connect and sets the session up
// as NewClient does. ctx bounds the whole set-up.
func Dial(ctx context.Context, network, addr string, local net.Addr, cfg *ClientConfig) (*Client, error) {
	c, err := configure(cfg)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: c.Connect, LocalAddr: local}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("connect to %s: %w: %w", addr, ErrTimeout, err)
		}
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return start(ctx, conn, c)
}

// NewClient sets up a session on conn, which the Client then owns: it
// reads the greeting, says EHLO (or LHLO, or HELO), starts TLS per the
// policy and authenticates when configured. On any failure conn is
// closed and the error returned.
func NewClient(conn net.Conn, cfg *ClientConfig) (*Client, error) {
	c, err := configure(cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return start(context.Background(), conn, c)
}

// configure checks cfg and fills in the defaults.
func configure(cfg *ClientConfig) (ClientConfig, error) {
	var c ClientConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if !validHeloName(c.Hostname) {
		return c, fmt.Errorf("smtp client: bad hostname %q", c.Hostname)
	}
	switch c.TLSPolicy {
	case TLSNone, TLSMay, TLSEncrypt, TLSVerify:
	default:
		return c, fmt.Errorf("smtp client: unknown TLS policy %d", int(c.TLSPolicy))
	}
	if c.TLSPolicy == TLSVerify && (c.TLS == nil || c.TLS.ServerName == "") {
		return c, errors.New("smtp client: TLS policy verify needs TLS.ServerName")
	}
	if c.Auth != nil {
		a := *c.Auth
		if a.User == "" || strings.ContainsRune(a.User, 0) || strings.ContainsRune(a.Password, 0) {
			return c, errors.New("smtp client: bad SASL user name or password")
		}
		c.Auth = &a
	}
	c.Timeouts = c.Timeouts.withDefaults()
	return c, nil
}

// validHeloName accepts what may follow EHLO: printable ASCII without
// spaces, up to 255 octets (a domain or an address literal).
func validHeloName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func start(ctx context.Context, conn net.Conn, cfg ClientConfig) (*Client, error) {
	c := &Client{cfg: cfg, cc: &clientConn{conn: conn}, ext: map[string]string{}}
	c.host = peerHost(cfg.PeerName, conn)
	c.br = bufio.NewReaderSize(c.cc, MaxClientReplyLine)
	c.bw = bufio.NewWriterSize(c.cc, 32<<10)
	err := c.op(ctx, c.setup)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// peerHost makes "name[ip]" (Postfix's form) from what is known.
func peerHost(name string, conn net.Conn) string {
	addr := ""
	if a := conn.RemoteAddr(); a != nil {
		addr = a.String()
		if h, _, err := net.SplitHostPort(addr); err == nil {
			addr = h
		}
	}
	name = printable(name, 255)
	switch {
	case name != "" && addr != "":
		return name + "[" + addr + "]"
	case name != "":
		return name
	}
	return printable(addr, 255)
}

// op runs f with ctx able to interrupt it. A context that fires while f
// runs leaves the connection in an unknown state: it is unusable after.
func (c *Client) op(ctx context.Context, f func(context.Context) error) error {
	if err := c.unusable(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, c.cc.cancel)
	err := f(ctx)
	if !stop() && ctx.Err() != nil && c.broken == nil {
		c.broken = fmt.Errorf("conversation with %s interrupted: %w", c.host, ctx.Err())
		if err == nil {
			err = c.broken
		}
	}
	return err
}

// unusable returns why the connection cannot be used, or nil.
func (c *Client) unusable() error {
	if c.broken != nil {
		return c.broken
	}
	if c.cc.isClosed() {
		return fmt.Errorf("connection with %s: %w", c.host, ErrClientClosed)
	}
	return nil
}

// Extensions returns the EHLO/LHLO keywords, upper case, with their
// parameters: "SIZE" -> "10240000", "AUTH" -> "PLAIN LOGIN",
// "PIPELINING" -> "". Empty after a HELO fallback. The map is a copy.
func (c *Client) Extensions() map[string]string {
	m := make(map[string]string, len(c.ext))
	for k, v := range c.ext {
		m[k] = v
	}
	return m
}

// TLSState returns the TLS connection's state, or nil when the session is
// not encrypted.
func (c *Client) TLSState() *tls.ConnectionState {
	if c.tlsState == nil {
		return nil
	}
	st := *c.tlsState
	return &st
}

// ServerName returns the name the server gave in its EHLO/LHLO/HELO
// reply (the greeting's when that was empty), made printable. The caller
// may compare it with its own name to catch mail that loops back to
// itself.
func (c *Client) ServerName() string { return c.serverName }

// Greeting returns the first line of the server's greeting, without the
// code.
func (c *Client) Greeting() string { return c.greeting }

// Close closes the connection without QUIT. It may be called from another
// goroutine to abort an operation, and more than once.
func (c *Client) Close() error {
	return c.cc.close()
}

// Quit says QUIT, waits (Timeouts.Quit) for the reply, whatever it is,
// and closes the connection. On an unusable connection it only closes.
func (c *Client) Quit() error {
	if c.unusable() != nil {
		_ = c.Close()
		return nil
	}
	ctx := context.Background()
	err := c.op(ctx, func(ctx context.Context) error {
		_, err := c.command(ctx, c.cfg.Quit, "QUIT", "QUIT", "sending QUIT")
		return err
	})
	cerr := c.Close()
	if err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("closing connection with %s: %w", c.host, cerr)
	}
	return nil
}

// Reset says RSET, so that the connection can carry the next message; a
// refusal is a *ReplyError. Send resets by itself when an earlier
// transaction did not end cleanly, so this is for checking that an idle
// connection still works before reusing it.
func (c *Client) Reset() error {
	return c.op(context.Background(), c.reset)
}

func (c *Client) reset(ctx context.Context) error {
	r, err := c.command(ctx, c.cfg.Rset, "RSET", "RSET", "sending RSET")
	if err != nil {
		return err
	}
	return c.afterReset(r)
}

func (c *Client) afterReset(r *clientReply) error {
	if r.code/100 != 2 {
		e := c.replyError("RSET", r)
		c.broken = e
		return e
	}
	c.dirty = false
	return nil
}

// command writes one command line and reads its reply. A 421 reply
// makes the connection unusable (the server is going away) and comes
// back as a *ReplyError; other replies are the caller's to judge.
func (c *Client) command(ctx context.Context, timeout time.Duration, line, stage, phase string) (*clientReply, error) {
	c.cc.arm(ctx, timeout)
	_, _ = c.bw.WriteString(line)
	_, _ = c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, c.ioFailure(ctx, err, phase)
	}
	// The HELO/EHLO/LHLO reply comes before the server could offer
	// ENHANCEDSTATUSCODES; a refusal may carry a code all the same.
	lenient := stage == "EHLO" || stage == "HELO" || stage == "LHLO"
	return c.readReply(ctx, stage, phase, lenient)
}

// readReply reads the reply to stage, with the deadline armed before.
// lenient parses enhanced codes even before ENHANCEDSTATUSCODES is
// known.
func (c *Client) readReply(ctx context.Context, stage, phase string, lenient bool) (*clientReply, error) {
	r, err := readClientReply(c.br, c.enhanced || lenient)
	if err != nil {
		return nil, c.ioFailure(ctx, err, phase)
	}
	if r.code == 421 {
		e := c.replyError(stage, r)
		c.broken = e
		return r, e
	}
	return r, nil
}

func (c *Client) replyError(stage string, r *clientReply) *ReplyError {
	return &ReplyError{Stage: stage, Code: r.code, Enhanced: r.enhanced, Text: r.text(), Host: c.host}
}

// ioFailure turns a read or write error into the error that makes the
// connection unusable, worded as Postfix words it.
func (c *Client) ioFailure(ctx context.Context, err error, phase string) error {
	var e error
	switch {
	case ctx.Err() != nil:
		e = fmt.Errorf("conversation with %s interrupted while %s: %w", c.host, phase, ctx.Err())
	case errors.Is(err, errClientCanceled) || errors.Is(err, net.ErrClosed):
		e = fmt.Errorf("connection with %s closed while %s: %w", c.host, phase, ErrClientClosed)
	case errors.Is(err, os.ErrDeadlineExceeded):
		e = fmt.Errorf("conversation with %s timed out while %s: %w", c.host, phase, ErrTimeout)
	case errors.Is(err, ErrBadReply):
		e = fmt.Errorf("%w from %s while %s", err, c.host, phase)
	default:
		e = fmt.Errorf("lost connection with %s while %s: %w: %w", c.host, phase, ErrLostConnection, err)
	}
	if c.broken == nil {
		c.broken = e
	}
	return e
}

// setup runs the session from the greeting to AUTH.
func (c *Client) setup(ctx context.Context) error {
	c.cc.arm(ctx, c.cfg.Greeting)
	r, err := c.readReply(ctx, "greeting", "receiving the initial server greeting", true)
	if err != nil {
		return err
	}
	c.greeting = r.lines[0]
	c.serverName = firstWord(r.lines[0])
	if r.code/100 != 2 {
		// RFC 5321 3.1: after a 554 greeting the server waits for
		// QUIT; say it, without waiting for the answer.
		c.cc.arm(ctx, time.Second)
		_, _ = c.bw.WriteString("QUIT\r\n")
		_ = c.bw.Flush()
		e := c.replyError("greeting", r)
		c.broken = e
		return e
	}
	if err := c.hello(ctx); err != nil {
		return err
	}
	if err := c.maybeTLS(ctx); err != nil {
		return err
	}
	if c.cfg.Auth != nil {
		return c.auth(ctx)
	}
	return nil
}

// hello says EHLO (LHLO), falling back to HELO on a 5xx, and learns the
// extensions.
func (c *Client) hello(ctx context.Context) error {
	verb := "EHLO"
	if c.cfg.LMTP {
		verb = "LHLO"
	}
	c.ext = map[string]string{}
	c.esmtp, c.enhanced = false, false
	r, err := c.command(ctx, c.cfg.Helo, verb+" "+c.cfg.Hostname, verb, "performing the "+verb+" handshake")
	if err != nil {
		return err
	}
	if r.code/100 == 2 {
		c.esmtp = true
		c.setServerName(r.lines[0])
		c.ext = parseExtensions(r.lines[1:])
		_, c.enhanced = c.ext["ENHANCEDSTATUSCODES"]
		return nil
	}
	if c.cfg.LMTP || r.code/100 != 5 {
		e := c.replyError(verb, r)
		c.broken = e
		return e
	}
	r, err = c.command(ctx, c.cfg.Helo, "HELO "+c.cfg.Hostname, "HELO", "performing the HELO handshake")
	if err != nil {
		return err
	}
	if r.code/100 != 2 {
		e := c.replyError("HELO", r)
		c.broken = e
		return e
	}
	c.setServerName(r.lines[0])
	return nil
}

func (c *Client) setServerName(line string) {
	if w := firstWord(line); w != "" {
		c.serverName = w
	}
}

func firstWord(s string) string {
	s = strings.TrimLeft(s, " ")
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	return s
}

// parseExtensions reads the EHLO lines after the first: "KEYWORD
// params". Old servers say "AUTH=LOGIN"; that counts as AUTH when there
// is no proper AUTH line.
func parseExtensions(lines []string) map[string]string {
	ext := make(map[string]string, len(lines))
	var oldAuth string
	haveOldAuth := false
	for _, l := range lines {
		kw, val, _ := strings.Cut(strings.TrimSpace(l), " ")
		kw = strings.ToUpper(kw)
		if strings.HasPrefix(kw, "AUTH=") {
			oldAuth = strings.TrimSpace(l[strings.Index(l, "=")+1:])
			haveOldAuth = true
			continue
		}
		if !isKeyword(kw) {
			continue
		}
		ext[kw] = strings.TrimSpace(val)
	}
	if _, ok := ext["AUTH"]; !ok && haveOldAuth {
		ext["AUTH"] = oldAuth
	}
	return ext
}

// isKeyword accepts an ehlo-keyword: a letter or digit, then letters,
// digits and hyphens (RFC 5321 4.1.1.1).
func isKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// maybeTLS runs STARTTLS as the policy says.
func (c *Client) maybeTLS(ctx context.Context) error {
	if c.cfg.TLSPolicy == TLSNone {
		return nil
	}
	required := c.cfg.TLSPolicy != TLSMay
	if _, ok := c.ext["STARTTLS"]; !ok {
		if required {
			e := fmt.Errorf("%w by host %s", ErrTLSRequired, c.host)
			c.broken = e
			return e
		}
		return nil
	}
	r, err := c.command(ctx, c.cfg.StartTLS, "STARTTLS", "STARTTLS", "sending STARTTLS")
	if err != nil {
		return err
	}
	if r.code/100 != 2 {
		if required {
			e := fmt.Errorf("%w: %w", ErrTLSRequired, c.replyError("STARTTLS", r))
			c.broken = e
			return e
		}
		return nil
	}
	if n := c.br.Buffered(); n > 0 {
		e := fmt.Errorf("%w: host %s sent %d octets after its STARTTLS reply, before the handshake", ErrTLSFailed, c.host, n)
		c.broken = e
		return e
	}
	var tc *tls.Config
	if c.cfg.TLS != nil {
		tc = c.cfg.TLS.Clone()
	} else {
		tc = &tls.Config{}
	}
	tc.InsecureSkipVerify = c.cfg.TLSPolicy != TLSVerify
	raw := c.cc.current()
	tconn := tls.Client(raw, tc)
	c.cc.arm(ctx, c.cfg.StartTLS)
	c.cc.mu.Lock()
	if c.cc.canceled || c.cc.closed {
		c.cc.mu.Unlock()
		return c.ioFailure(ctx, errClientCanceled, "performing the TLS handshake")
	}
	_ = raw.SetDeadline(c.cc.rdl)
	c.cc.mu.Unlock()
	if err := tconn.HandshakeContext(ctx); err != nil {
		var e error
		switch {
		case ctx.Err() != nil:
			e = fmt.Errorf("TLS handshake with %s interrupted: %w", c.host, ctx.Err())
		case errors.Is(err, os.ErrDeadlineExceeded):
			e = fmt.Errorf("%w with %s: %w", ErrTLSFailed, c.host, ErrTimeout)
		default:
			e = fmt.Errorf("%w with %s: %w", ErrTLSFailed, c.host, err)
		}
		c.broken = e
		return e
	}
	c.cc.swap(tconn)
	st := tconn.ConnectionState()
	c.tlsState = &st
	// RFC 3207 4.2: forget what the server said in the clear.
	return c.hello(ctx)
}

// auth runs AUTH PLAIN or LOGIN (RFC 4954, RFC 4616).
func (c *Client) auth(ctx context.Context) error {
	a := c.cfg.Auth
	if c.tlsState == nil && !a.AllowPlainAuth {
		e := fmt.Errorf("%w with %s: the connection is not encrypted", ErrAuthUnavailable, c.host)
		c.broken = e
		return e
	}
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	has := func(m string) bool {
		for _, x := range mechs {
			if x == m {
				return true
			}
		}
		return false
	}
	enc := base64.StdEncoding.EncodeToString
	var steps []string // responses to 334 challenges
	var first string
	switch {
	case has("PLAIN"):
		first = "AUTH PLAIN " + enc([]byte("\x00"+a.User+"\x00"+a.Password))
	case has("LOGIN"):
		first = "AUTH LOGIN"
		steps = []string{enc([]byte(a.User)), enc([]byte(a.Password))}
	default:
		e := fmt.Errorf("%w with %s: no PLAIN or LOGIN mechanism offered", ErrAuthUnavailable, c.host)
		c.broken = e
		return e
	}
	const phase = "performing SASL authentication"
	r, err := c.command(ctx, c.cfg.Helo, first, "AUTH", phase)
	for err == nil && r.code == 334 {
		if len(steps) == 0 {
			// A challenge the mechanism does not have: cancel
			// (RFC 4954 4) and fail with what the server says.
			r, err = c.command(ctx, c.cfg.Helo, "*", "AUTH", phase)
			if err == nil && r.code/100 == 2 {
				r.code, r.enhanced = 535, ""
			}
			break
		}
		r, err = c.command(ctx, c.cfg.Helo, steps[0], "AUTH", phase)
		steps = steps[1:]
	}
	if err != nil {
		return err
	}
	if r.code/100 != 2 {
		e := c.replyError("AUTH", r)
		c.broken = e
		return e
	}
	return nil
}
