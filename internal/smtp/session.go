package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/internal/address"
)

// Commands counted for Stats, in Postfix's order.
var statNames = [...]string{"helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "rset", "noop", "vrfy", "expn", "help", "quit", "unknown"}

func statIndex(verb string) int {
	v := strings.ToLower(verb)
	for i, n := range statNames[:len(statNames)-1] {
		if n == v {
			return i
		}
	}
	return len(statNames) - 1
}

// Session is one SMTP server conversation.
type Session struct {
	conn   net.Conn
	cfg    ServerConfig
	h      Handler
	io     *connIO
	br     *bufio.Reader
	bw     *bufio.Writer
	client string // "name[addr]", for logs
	out    []byte // reply formatting buffer

	greeted  bool // a HELO/EHLO was accepted
	extended bool // ... and it was EHLO
	helo     string

	implicit *tls.Conn // implicit TLS: the handshake is Serve's first act

	inMail    bool // MAIL accepted, transaction open
	from      address.Address
	mp        MailParams
	rcpts     int // accepted recipients
	rcptTried int // RCPT commands in this transaction

	lastCmd    string // for "lost connection after X"
	errors     int
	warnedPipe bool
	ended      bool // a reply ended the session (QUIT, 421)

	mu       sync.Mutex
	stats    [len(statNames)]struct{ ok, total int }
	tlsState *tls.ConnectionState // nil until a handshake completed
	authUser string               // "" until AUTH succeeded
}

// NewSession prepares a session on conn; Serve runs it. cfg may be nil
// for all defaults. When conn is a *tls.Conn (implicit TLS, RFC 8314, as
// on port 465) whose handshake has not run yet, Serve runs it before the
// greeting, bounded by Timeout, and the session never offers STARTTLS.
func NewSession(conn net.Conn, cfg *ServerConfig, h Handler) *Session {
	s := &Session{conn: conn, cfg: cfg.withDefaults(), h: h, lastCmd: "CONNECT"}
	if tc, ok := conn.(*tls.Conn); ok {
		s.implicit = tc
	}
	s.io = &connIO{conn: conn, timeout: s.cfg.Timeout}
	// The read buffer must hold a whole MAIL/RCPT line.
	s.br = bufio.NewReaderSize(s.io, 4096)
	s.bw = bufio.NewWriterSize(s.io, 4096)
	s.io.flush = s.bw.Flush
	s.client = "unknown[" + remoteHost(conn) + "]"
	return s
}

func remoteHost(conn net.Conn) string {
	a := conn.RemoteAddr()
	if a == nil {
		return "unknown"
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// SetClientName sets the client's host name for log lines (default
// "unknown", as Postfix writes a client without a verified name). Call it
// before Serve.
func (s *Session) SetClientName(name string) {
	if name == "" {
		name = "unknown"
	}
	s.client = printable(name, 255) + "[" + remoteHost(s.conn) + "]"
}

// Stats returns the command counters in the form of Postfix's disconnect
// line: "ehlo=1 mail=1 rcpt=0/1 data=0/1 quit=1 commands=3/5", where x/y
// is successful/total when some failed. It is safe to call at any time.
func (s *Session) Stats() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	ok, total := 0, 0
	for i, c := range s.stats {
		if c.total == 0 {
			continue
		}
		ok += c.ok
		total += c.total
		b.WriteString(statNames[i])
		b.WriteByte('=')
		writeCount(&b, c.ok, c.total)
		b.WriteByte(' ')
	}
	b.WriteString("commands=")
	writeCount(&b, ok, total)
	return b.String()
}

// TLS returns the state of the session's TLS connection, or nil when it
// is plain (before STARTTLS, or before Serve's handshake of an implicit
// TLS connection). It is safe to call at any time.
func (s *Session) TLS() *tls.ConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsState == nil {
		return nil
	}
	st := *s.tlsState
	return &st
}

// AuthUser returns the user name that AUTH succeeded with, or "" when the
// client has not authenticated (STARTTLS forgets an earlier AUTH). It is
// safe to call at any time.
func (s *Session) AuthUser() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authUser
}

func writeCount(b *strings.Builder, ok, total int) {
	b.WriteString(strconv.Itoa(ok))
	if ok != total {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(total))
	}
}

func (s *Session) count(verb string, ok bool) {
	i := statIndex(verb)
	s.mu.Lock()
	s.stats[i].total++
	if ok {
		s.stats[i].ok++
	}
	s.mu.Unlock()
}

// Serve runs the session from the greeting to QUIT (or a failure), then
// closes the connection. It returns nil when the client quit, when the
// Handler ended the session with a 421 and when a non-SMTP client was hung
// up on; ErrTimeout, ErrLostConnection or ErrTooManyErrors (wrapped)
// otherwise, or the context's error when ctx was cancelled (the client
// was told 421 4.3.2).
func (s *Session) Serve(ctx context.Context) error {
	// s.conn is read at the end: after STARTTLS it is the *tls.Conn,
	// whose Close sends the close_notify that TLS clients expect.
	defer func() { _ = s.conn.Close() }()
	s.io.end = time.Now().Add(s.cfg.SessionTimeout)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			s.io.cancel()
		case <-stop:
		}
	}()
	s.cfg.Logf("connect from %s", s.client)
	var err error
	if s.implicit != nil {
		err = s.startTLS(ctx, s.implicit)
	}
	if err == nil {
		err = s.run(ctx)
	}
	s.h.Reset()
	s.cfg.Logf("disconnect from %s %s", s.client, s.Stats())
	return err
}

func (s *Session) run(ctx context.Context) error {
	s.send(&Reply{Code: 220, Text: s.cfg.Banner}, false)
	for !s.ended {
		if s.errors >= s.cfg.HardErrorLimit {
			s.cfg.Logf("too many errors after %s from %s", s.lastCmd, s.client)
			s.bye(421, "4.7.0", s.cfg.Hostname+" Error: too many errors")
			return fmt.Errorf("smtp session with %s: %w", s.client, ErrTooManyErrors)
		}
		s.io.armRead()
		line, err := s.readLine()
		if err == errLineTooLong {
			s.count("unknown", false)
			s.fail(ctx, errLineTooLong)
			continue
		}
		if err != nil {
			return s.readFailed(ctx, err)
		}
		if err := s.dispatch(ctx, line); err != nil {
			return err
		}
	}
	// QUIT, a 421 or a hang-up on a non-SMTP client: the last reply
	// should reach the client, but the session is over either way.
	_ = s.bw.Flush()
	return nil
}

// readLine reads one command line and enforces the line limits; a line
// too long is discarded up to its LF and reported as errLineTooLong.
func (s *Session) readLine() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = s.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > MaxPathLine {
		return nil, errLineTooLong
	}
	if len(line) > MaxCommandLine {
		v := strings.ToUpper(string(line[:4]))
		if !(v == "MAIL" || v == "RCPT" || v == "AUTH") || line[4] != ' ' {
			return nil, errLineTooLong
		}
	}
	return line, nil
}

// readFailed ends the session after a failed read or write.
func (s *Session) readFailed(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil || errors.Is(err, errCanceled):
		s.cfg.Logf("shutdown after %s from %s", s.lastCmd, s.client)
		s.bye(421, "4.3.2", s.cfg.Hostname+" Service shutting down, closing transmission channel")
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return context.Canceled
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !time.Now().Before(s.io.end) {
			s.cfg.Logf("session time limit exceeded after %s from %s", s.lastCmd, s.client)
		} else {
			s.cfg.Logf("timeout after %s from %s", s.lastCmd, s.client)
		}
		s.bye(421, "4.4.2", s.cfg.Hostname+" Error: timeout exceeded")
		return fmt.Errorf("smtp session with %s: %w after %s", s.client, ErrTimeout, s.lastCmd)
	default:
		s.cfg.Logf("lost connection after %s from %s", s.lastCmd, s.client)
		return fmt.Errorf("smtp session with %s: %w after %s: %w", s.client, ErrLostConnection, s.lastCmd, err)
	}
}

// send queues a reply; it goes out when the server next waits for input
// or flushes. Write errors stick in the buffered writer and surface at
// the next read.
func (s *Session) send(r *Reply, withEnhanced bool) {
	s.out = appendReply(s.out[:0], r, withEnhanced, s.inMail && s.mp.SMTPUTF8)
	_, _ = s.bw.Write(s.out)
}

// fail sends an error reply, counting the error and slowing down a client
// that makes too many.
func (s *Session) fail(ctx context.Context, r *Reply) {
	if r.Code == 421 {
		s.send(r, true)
		s.ended = true
		return
	}
	if !(r.Code == 452 && r.Enhanced == "4.5.3") {
		s.errors++
	}
	if s.errors > s.cfg.SoftErrorLimit && s.cfg.ErrorSleep > 0 {
		_ = s.bw.Flush() // an error surfaces at the next read
		t := time.NewTimer(s.cfg.ErrorSleep)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.send(r, true)
}

// bye sends a last reply to a client that is being cut off.
func (s *Session) bye(code int, enhanced, text string) {
	// Errors do not matter: the connection is going anyway.
	_ = s.bw.Flush()
	_ = s.io.farewell(appendReply(nil, reply(code, enhanced, text), true, false))
	s.ended = true
}

// handlerReply checks a reply from the Handler: accepted reports a 2xx
// (or nil, which takes def); a code that is neither 2xx, 4xx nor 5xx is
// the Handler's bug and becomes 451 4.3.0.
func (s *Session) handlerReply(r, def *Reply) (out *Reply, accepted bool) {
	if r == nil {
		return def, true
	}
	switch r.Code / 100 {
	case 2:
		return r, true
	case 4, 5:
		if r.Code < 1000 {
			return r, false
		}
	}
	s.cfg.Logf("warning: %s: handler returned reply code %d", s.client, r.Code)
	return reply(451, "4.3.0", "Error: internal error"), false
}

// logReject logs a refusal in Postfix's form; from is the sender as the
// client gave it (MAIL) or "" for the transaction's sender.
func (s *Session) logReject(cmd string, r *Reply, from, to string) {
	line := r.Text
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	enh := r.Enhanced
	if !validEnhanced(enh, r.Code) {
		enh = defaultEnhanced(r.Code)
	}
	proto := "SMTP"
	if s.extended {
		proto = "ESMTP"
	}
	toPart := ""
	if to != "" {
		toPart = " to=<" + to + ">"
	}
	if from == "" && s.inMail {
		from = s.from.String()
	}
	if from != "" || s.inMail || cmd == "MAIL" {
		from = " from=<" + printable(from, 300) + ">"
	}
	s.cfg.Logf("NOQUEUE: reject: %s from %s: %d %s %s;%s%s proto=%s helo=<%s>",
		cmd, s.client, r.Code, enh, printable(line, 200), from, toPart, proto, printable(s.helo, 255))
}

// printable makes peer-supplied text safe for a log line.
func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return strings.ToValidUTF8(string(b), "?")
}

// dispatch runs one command line. A non-nil error ends the session.
func (s *Session) dispatch(ctx context.Context, line []byte) error {
	cmd, perr := ParseCommand(line)
	if isForbidden(cmd.Verb) {
		s.count("unknown", false)
		s.cfg.Logf("warning: non-SMTP command from %s: %s", s.client, printable(strings.TrimRight(string(line), "\r\n"), 100))
		s.send(reply(221, "2.7.0", "Error: I can break rules, too. Goodbye."), true)
		s.ended = true
		return nil
	}
	if statIndex(cmd.Verb) < len(statNames)-1 {
		s.lastCmd = cmd.Verb
	} else {
		s.lastCmd = "UNKNOWN"
	}
	// An extension that is not configured does not exist, whatever
	// its arguments.
	if cmd.Verb == "STARTTLS" && s.cfg.TLS == nil || cmd.Verb == "AUTH" && s.cfg.Auth == nil {
		s.count(cmd.Verb, false)
		s.fail(ctx, errNotImpl)
		return nil
	}
	if perr != nil {
		var r *Reply
		if !errors.As(perr, &r) {
			r = errBadSyntax
		}
		s.count(cmd.Verb, false)
		s.fail(ctx, r)
		return nil
	}
	if s.cfg.RequireTLS && s.tlsState == nil && needsTLS(cmd.Verb) {
		s.count(cmd.Verb, false)
		s.fail(ctx, reply(530, "5.7.0", "Must issue a STARTTLS command first"))
		return nil
	}
	ok := true
	switch cmd.Verb {
	case "STARTTLS":
		var err error
		if ok, err = s.starttls(ctx); err != nil {
			s.count(cmd.Verb, false)
			return err
		}
	case "AUTH":
		var err error
		if ok, err = s.auth(ctx, cmd); err != nil {
			s.count(cmd.Verb, false)
			return err
		}
	case "EHLO", "HELO":
		ok = s.hello(ctx, cmd)
	case "MAIL":
		ok = s.mail(ctx, cmd)
	case "RCPT":
		ok = s.rcpt(ctx, cmd)
	case "DATA":
		return s.data(ctx)
	case "RSET":
		s.endTransaction()
		s.send(reply(250, "2.0.0", "Ok"), true)
	case "NOOP":
		s.send(reply(250, "2.0.0", "Ok"), true)
	case "VRFY":
		s.send(reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"), true)
		s.flush()
	case "EXPN":
		ok = false
		s.fail(ctx, reply(502, "5.5.1", "Error: command not implemented"))
	case "HELP":
		s.send(reply(214, "2.0.0", s.help()), true)
	case "QUIT":
		s.send(reply(221, "2.0.0", "Bye"), true)
		s.ended = true
	}
	s.count(cmd.Verb, ok)
	return nil
}

// needsTLS reports whether verb is refused before TLS when TLS is
// required: everything but what it takes to start TLS and to leave, as
// Postfix's smtpd_tls_security_level=encrypt.
func needsTLS(verb string) bool {
	switch verb {
	case "MAIL", "RCPT", "DATA", "VRFY", "EXPN", "AUTH":
		return true
	}
	return false
}

// help lists the commands, with STARTTLS and AUTH when they would be
// accepted.
func (s *Session) help() string {
	cmds := "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"
	if s.offerSTARTTLS() {
		cmds += " STARTTLS"
	}
	if s.offerAuth() {
		cmds += " AUTH"
	}
	return cmds
}

// offerSTARTTLS reports whether EHLO advertises STARTTLS now.
func (s *Session) offerSTARTTLS() bool {
	return s.tlsState == nil && tlsUsable(s.cfg.TLS)
}

// offerAuth reports whether EHLO advertises AUTH now. Requiring TLS
// implies requiring it for AUTH (Postfix: encrypt implies
// smtpd_tls_auth_only).
func (s *Session) offerAuth() bool {
	return s.cfg.Auth != nil && (s.tlsState != nil || !s.cfg.AuthNeedsTLS && !s.cfg.RequireTLS)
}

// flush sends queued replies after a command the client waits for; an
// error surfaces at the next read.
func (s *Session) flush() { _ = s.bw.Flush() }

// endTransaction forgets the transaction and tells the Handler.
func (s *Session) endTransaction() {
	s.inMail = false
	s.from = address.Address{}
	s.mp = MailParams{}
	s.rcpts, s.rcptTried = 0, 0
	s.h.Reset()
}

func (s *Session) hello(ctx context.Context, cmd Command) bool {
	ext := cmd.Verb == "EHLO"
	if s.inMail {
		s.endTransaction()
	}
	r, ok := s.handlerReply(s.h.Hello(cmd.Arg, ext), nil)
	if !ok {
		s.fail(ctx, r)
		return false
	}
	s.greeted, s.extended, s.helo = true, ext, cmd.Arg
	if !ext {
		s.send(&Reply{Code: 250, Text: s.cfg.Hostname}, false)
		return true
	}
	lines := []string{s.cfg.Hostname, "PIPELINING"}
	if s.cfg.MaxSize > 0 {
		lines = append(lines, "SIZE "+strconv.FormatInt(s.cfg.MaxSize, 10))
	} else {
		lines = append(lines, "SIZE")
	}
	if s.offerSTARTTLS() {
		lines = append(lines, "STARTTLS")
	}
	if s.offerAuth() {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	lines = append(lines, "8BITMIME", "ENHANCEDSTATUSCODES")
	if s.cfg.SMTPUTF8 {
		lines = append(lines, "SMTPUTF8")
	}
	if s.cfg.DSN {
		lines = append(lines, "DSN")
	}
	s.send(&Reply{Code: 250, Text: strings.Join(lines, "\n")}, false)
	s.flush()
	return true
}

func (s *Session) mail(ctx context.Context, cmd Command) bool {
	if !s.greeted {
		s.fail(ctx, reply(503, "5.5.1", "Error: send HELO/EHLO first"))
		return false
	}
	if s.inMail {
		s.fail(ctx, reply(503, "5.5.1", "Error: nested MAIL command"))
		return false
	}
	mp, r := s.mailParams(cmd.Params)
	if r != nil {
		if r.Code == 552 {
			s.logReject("MAIL", r, cmd.Path, "")
		}
		s.fail(ctx, r)
		return false
	}
	from, err := address.Parse(cmd.Path, mp.SMTPUTF8)
	if err == nil && from.Domain == "" && !from.IsNull() {
		err = address.ErrSyntax // bare postmaster is for RCPT only
	}
	if err != nil {
		r = reply(501, "5.1.7", "Error: bad sender address syntax")
		if errors.Is(err, address.ErrNonASCII) {
			r = reply(553, "5.6.7", "Error: non-ASCII sender address needs SMTPUTF8")
			s.logReject("MAIL", r, cmd.Path, "")
		}
		s.fail(ctx, r)
		return false
	}
	r, ok := s.handlerReply(s.h.Mail(from, mp), reply(250, "2.1.0", "Ok"))
	if !ok {
		s.logReject("MAIL", r, cmd.Path, "")
		s.fail(ctx, r)
		return false
	}
	s.inMail, s.from, s.mp = true, from, mp
	s.rcpts, s.rcptTried = 0, 0
	s.send(r, true)
	return true
}

func (s *Session) rcpt(ctx context.Context, cmd Command) bool {
	if !s.inMail {
		s.fail(ctx, reply(503, "5.5.1", "Error: need MAIL command"))
		return false
	}
	s.rcptTried++
	rp, r := s.rcptParams(cmd.Params)
	if r != nil {
		s.fail(ctx, r)
		return false
	}
	if s.rcpts >= s.cfg.MaxRecipients {
		r = reply(452, "4.5.3", "Error: too many recipients")
		s.logReject("RCPT", r, "", printable(cmd.Path, 300))
		s.fail(ctx, r)
		return false
	}
	to, err := address.Parse(cmd.Path, s.mp.SMTPUTF8)
	if err == nil && to.IsNull() {
		err = address.ErrSyntax
	}
	if err != nil {
		r = reply(501, "5.1.3", "Error: bad recipient address syntax")
		if errors.Is(err, address.ErrNonASCII) {
			r = reply(553, "5.6.7", "Error: non-ASCII recipient address needs SMTPUTF8")
			s.logReject("RCPT", r, "", printable(cmd.Path, 300))
		}
		s.fail(ctx, r)
		return false
	}
	r, ok := s.handlerReply(s.h.Rcpt(to, rp), reply(250, "2.1.5", "Ok"))
	if !ok {
		s.logReject("RCPT", r, "", printable(to.String(), 300))
		s.fail(ctx, r)
		return false
	}
	s.rcpts++
	s.send(r, true)
	return true
}

// dataWriters hold the 32 KiB buffers between DATA and cleanup, reused from
// one message to the next rather than allocated for each (garbage the
// collector would otherwise chase at hundreds of messages a second).
var dataWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// data runs DATA: the checks, the 354, the content, the final reply.
// A non-nil error ends the session.
func (s *Session) data(ctx context.Context) error {
	var r *Reply
	switch {
	case !s.inMail:
		r = reply(503, "5.5.1", "Error: need MAIL command")
	case s.rcpts == 0 && s.rcptTried > 0:
		r = reply(554, "5.5.1", "Error: no valid recipients")
	case s.rcpts == 0:
		r = reply(503, "5.5.1", "Error: need RCPT command")
	}
	if r != nil {
		s.count("DATA", false)
		s.fail(ctx, r)
		return nil
	}
	sink, hr := s.h.Data()
	if sink == nil {
		if hr == nil {
			s.cfg.Logf("warning: %s: handler returned neither sink nor reply at DATA", s.client)
		}
		r, _ = s.handlerReply(hr, reply(451, "4.3.0", "Error: internal error"))
		if r.Code/100 == 2 {
			r = reply(451, "4.3.0", "Error: internal error")
		}
		s.logReject("DATA", r, "", "")
		s.count("DATA", false)
		s.fail(ctx, r)
		return nil
	}
	s.send(&Reply{Code: 354, Text: "End data with <CR><LF>.<CR><LF>"}, false)
	s.flush()
	if s.br.Buffered() > 0 && !s.warnedPipe {
		s.warnedPipe = true
		s.cfg.Logf("improper command pipelining after DATA from %s", s.client)
	}
	dr := NewDataReader(s.br, s.cfg.LineLimit, s.cfg.MaxSize)
	dr.OnLine = s.io.armRead
	w := dataWriters.Get().(*bufio.Writer)
	w.Reset(sink)
	defer func() {
		w.Reset(nil)
		dataWriters.Put(w)
	}()
	res, err := dr.Copy(w)
	if err != nil {
		switch {
		case ctx.Err() != nil || errors.Is(err, errCanceled):
			sink.Abort("shutdown")
		case errors.Is(err, os.ErrDeadlineExceeded):
			sink.Abort("timeout")
		default:
			sink.Abort("lost connection")
		}
		s.count("DATA", false)
		s.endTransaction()
		return s.readFailed(ctx, err)
	}
	if res.OK() {
		if werr := w.Flush(); werr != nil {
			res.WriteErr = werr
		}
	}
	s.lastCmd = "END-OF-MESSAGE"
	var reason string
	switch {
	case res.BareCR || res.BareLF:
		reason = "bare CR or LF"
		r = reply(554, "5.6.0", "Error: bare <CR> or <LF> not allowed")
		s.cfg.Logf("warning: %s: bare <CR> or <LF> in message content", s.client)
	case res.TooBig:
		reason = "message too large"
		r = reply(552, "5.3.4", "Error: message file too big")
	case res.LineTooLong:
		reason = "line too long"
		r = reply(554, "5.6.0", "Error: line too long")
	case res.WriteErr != nil:
		reason = "write error: " + res.WriteErr.Error()
		r = reply(451, "4.3.0", "Error: queue file write error")
		s.cfg.Logf("warning: %s: message write error: %v", s.client, res.WriteErr)
	}
	if r != nil {
		sink.Abort(reason)
		s.logReject("END-OF-MESSAGE", r, "", "")
		s.count("DATA", false)
		s.fail(ctx, r)
		s.endTransaction()
		return nil
	}
	r, ok := s.handlerReply(sink.Commit(), reply(250, "2.0.0", "Ok"))
	s.count("DATA", ok)
	if ok {
		s.send(r, true)
	} else {
		s.fail(ctx, r)
	}
	s.endTransaction()
	return nil
}
