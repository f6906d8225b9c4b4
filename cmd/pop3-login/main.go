// Command pop3-login is Postern's POP3 front end (DESIGN.md §2, §4): it
// speaks POP3 with clients up to a successful login (RFC 1939 USER/PASS,
// RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH with SASL PLAIN and LOGIN,
// implicit TLS with pop3d_tls_wrappermode), sends the credentials to the
// pop3d acceptor (login/pop3d), which checks them with auth and starts a
// pop3d session as the mailbox owner. A plaintext client is handed over:
// its connection's descriptor goes to the session with the login request
// (postlogin.Handoff, as Dovecot does), together with whatever the client
// pipelined behind its login, and this process forgets it, so no byte of a
// RETR passes through here. A TLS client stays: the session's first line
// is forwarded to it and the decrypted stream relayed both ways.
//
// Privilege: runs as mail_owner with no capability, chrooted into the
// spool's login/ directory, which holds only the sockets login/pop3d and
// login/imapd: it can reach no mailbox, no credential and no other
// daemon. The TLS keys are read as root before the drop and kept in
// memory only.
//
// Limits and failure modes:
//   - at most login_client_limit connections per process (master's
//     process limit on the service multiplies it);
//   - a command line is at most pop3.MaxLine octets: "-ERR line too long"
//     and the connection is closed; 20 bad commands close it too;
//   - login_timeout (default 60s) without a command before login, or
//     three times that since the connection began, closes it; after a
//     TLS login the relay ends when no byte has passed for
//     pop3d_idle_timeout plus a minute (the session's own idle limit
//     speaks first);
//   - USER/PASS and AUTH are refused before TLS when
//     disable_plaintext_auth = yes (the default), except from a loopback
//     address, as in Dovecot;
//   - a wrong password is answered "-ERR [AUTH] Authentication failed."
//     after auth's delay; after login_auth_failure_limit failures (default
//     3) the connection is closed; auth or the acceptor being unreachable
//     gives "-ERR [SYS/TEMP]" and the client may try again;
//   - commands pipelined behind STLS in clear text are discarded (none
//     may be taken as if it came over TLS);
//   - a handed-off client whose session cannot open or lock the mailbox
//     gets the session's "-ERR" and the connection closes, as after a
//     relayed one; a session that dies before its first line leaves the
//     client a closed connection (the acceptor logs the exit).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"postern/internal/log"
	"postern/internal/pop3"
	"postern/internal/postlogin"
	"postern/internal/service"
)

// Defaults for settings a configuration may not know yet.
const (
	defaultLoginTimeout = 60 * time.Second
	defaultFailureLimit = 3
	defaultClientLimit  = 1000
	defaultSessionIdle  = 10 * time.Minute
	maxBadCommands      = 20
	// loginWait bounds the whole login request: auth's failure delay,
	// the password hash, the session's start and its first line.
	loginWait = 60 * time.Second
	// maxFirstLine bounds the session's first line.
	maxFirstLine = 1024
)

type server struct {
	tls          *tls.Config
	wrapper      bool
	plainOff     bool // disable_plaintext_auth
	timeout      time.Duration
	failureLimit int
	relayIdle    time.Duration
	sock         string
}

func main() {
	d := service.Init("pop3-login")
	cfg := d.Config
	tc, err := postlogin.ServerTLS(cfg, "pop3d")
	if err != nil {
		d.Fatalf("%v", err)
	}
	s := &server{
		tls:          tc,
		wrapper:      cfg.Bool("pop3d_tls_wrappermode"),
		plainOff:     cfg.Get("disable_plaintext_auth") == "" || cfg.Bool("disable_plaintext_auth"),
		timeout:      defaultLoginTimeout,
		failureLimit: defaultFailureLimit,
		relayIdle:    defaultSessionIdle + time.Minute,
	}
	if cfg.Get("login_timeout") != "" {
		s.timeout = cfg.Duration("login_timeout")
	}
	if cfg.Get("login_auth_failure_limit") != "" {
		s.failureLimit = int(cfg.Int("login_auth_failure_limit"))
	}
	if cfg.Get("pop3d_idle_timeout") != "" {
		s.relayIdle = cfg.Duration("pop3d_idle_timeout") + time.Minute
	}
	limit := defaultClientLimit
	if cfg.Get("login_client_limit") != "" {
		limit = int(cfg.Int("login_client_limit"))
	}
	if s.wrapper && s.tls == nil {
		d.Fatalf("pop3d_tls_wrappermode = yes needs a certificate (pop3d_tls_cert_file or smtpd_tls_cert_file)")
	}
	// Before the drop: Chrooted asks whether we are root.
	s.sock = postlogin.SocketPath(d, "pop3d")
	d.DropLogin()
	d.Serve(limit, s.handle)
}

// conn is one client connection before login.
type conn struct {
	s        *server
	c        net.Conn // the client; a *tls.Conn after STLS or with wrapper mode
	r        *pop3.Reader
	w        *pop3.Writer
	tls      bool
	loopback bool
	rip, lip string
	start    time.Time
	user     string // from USER, waiting for PASS
	failures int
	bad      int
}

func (s *server) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	// A stop (not a drain) ends connections that have not logged in yet
	// and relays under way alike.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	cn := &conn{s: s, c: c, rip: hostOf(c.RemoteAddr()), lip: hostOf(c.LocalAddr()), start: time.Now()}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cn.loopback = ap.Addr().Unmap().IsLoopback()
	}
	if s.wrapper {
		tc := tls.Server(c, s.tls)
		tc.SetDeadline(time.Now().Add(s.timeout))
		if err := tc.Handshake(); err != nil {
			log.Infof("disconnected rip=%s lip=%s reason=%q", cn.rip, cn.lip, "TLS handshake: "+err.Error())
			return
		}
		tc.SetDeadline(time.Time{})
		cn.c, cn.tls = tc, true
	}
	cn.r, cn.w = pop3.NewReader(cn.c), pop3.NewWriter(cn.c)
	cn.w.OK("Postern ready.")
	if err := cn.w.Flush(); err != nil {
		return
	}
	reason := cn.run(ctx)
	if reason != "" {
		log.Infof("disconnected rip=%s lip=%s tls=%s auth_failures=%d reason=%q",
			cn.rip, cn.lip, yesNo(cn.tls), cn.failures, reason)
	}
}

// hostOf is the IP address of a TCP address, or the whole address.
func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	return a.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// plainOK says whether passwords may be sent now.
func (cn *conn) plainOK() bool {
	return cn.tls || cn.loopback || !cn.s.plainOff
}

// run is the AUTHORIZATION state. It returns why the connection ended
// without a login ("" after a login: the session logs the rest).
func (cn *conn) run(ctx context.Context) string {
	for {
		line, err := cn.readLine()
		if err != nil {
			return cn.readFailed(err)
		}
		c, perr := pop3.ParseCommand(line)
		var done string
		switch {
		case perr != nil:
			done = cn.badCommand("Invalid command.")
		case c.Name == "QUIT":
			cn.w.OK("Logging out.")
			cn.w.Flush()
			return "quit"
		case c.Name == "CAPA":
			capa := pop3.Capa{STLS: cn.s.tls != nil && !cn.tls}
			if cn.plainOK() {
				capa.User, capa.SASL = true, []string{"PLAIN", "LOGIN"}
			}
			cn.w.WriteCapa(capa)
		case c.Name == "STLS":
			done = cn.stls()
		case c.Name == "USER":
			done = cn.userCmd(c)
		case c.Name == "PASS":
			done = cn.pass(ctx, c)
		case c.Name == "AUTH":
			done = cn.auth(ctx, c)
		case afterLogin[c.Name]:
			done = cn.badCommand("Log in first.")
		default:
			done = cn.badCommand("Unknown command.")
		}
		if done == "logged in" {
			return ""
		}
		if done != "" {
			cn.w.Flush()
			return done
		}
		if cn.r.Buffered() == 0 {
			if err := cn.w.Flush(); err != nil {
				return "write: " + err.Error()
			}
		}
	}
}

// afterLogin are the commands of the TRANSACTION state (and APOP, which
// is not offered): before login they get "Log in first.".
var afterLogin = map[string]bool{"STAT": true, "LIST": true, "RETR": true, "DELE": true, "NOOP": true,
	"RSET": true, "TOP": true, "UIDL": true, "LAST": true, "APOP": true}

// readLine reads a command with the login timeout.
func (cn *conn) readLine() (string, error) {
	if cn.s.timeout > 0 && cn.r.Buffered() == 0 {
		// Idle at most login_timeout, and never more than three times
		// that before login in all: a client that keeps sending CAPA
		// must not hold a connection slot for ever.
		d := time.Now().Add(cn.s.timeout)
		if hard := cn.start.Add(3 * cn.s.timeout); hard.Before(d) {
			d = hard
		}
		cn.c.SetReadDeadline(d)
	}
	return cn.r.ReadLine()
}

// readFailed answers what can be answered and returns the log reason.
func (cn *conn) readFailed(err error) string {
	switch {
	case errors.Is(err, pop3.ErrLineTooLong):
		cn.w.Err("", "line too long")
		cn.w.Flush()
		return "line too long"
	case errors.Is(err, os.ErrDeadlineExceeded):
		cn.w.Err("", "Disconnected for inactivity.")
		cn.w.Flush()
		return "login timeout"
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "read: " + err.Error()
}

// badCommand answers -ERR and counts; too many close the connection.
func (cn *conn) badCommand(text string) string {
	cn.bad++
	if cn.bad >= maxBadCommands {
		cn.w.Err("", "Too many bad commands.")
		return "too many bad commands"
	}
	cn.w.Err("", text)
	return ""
}

// stls starts TLS (RFC 2595 4).
func (cn *conn) stls() string {
	switch {
	case cn.tls:
		return cn.badCommand("TLS is already active.")
	case cn.s.tls == nil:
		return cn.badCommand("TLS is not available.")
	}
	// What the client sent behind STLS, before it saw the +OK, came in
	// clear text and may have been put there by someone in the middle:
	// it is thrown away, never run as if it came over TLS (as smtpd does).
	if b := cn.r.TakeBuffered(); len(b) > 0 {
		log.Warnf("pipelined commands after STLS discarded rip=%s", cn.rip)
	}
	cn.w.OK("Begin TLS negotiation now.")
	if err := cn.w.Flush(); err != nil {
		return "write: " + err.Error()
	}
	tc := tls.Server(cn.c, cn.s.tls)
	tc.SetDeadline(time.Now().Add(cn.s.timeout))
	if err := tc.Handshake(); err != nil {
		return "TLS handshake: " + err.Error()
	}
	tc.SetDeadline(time.Time{})
	// A new start: nothing said in plaintext counts (RFC 2595 4).
	cn.c, cn.tls, cn.user = tc, true, ""
	cn.r, cn.w = pop3.NewReader(tc), pop3.NewWriter(tc)
	return ""
}

// plaintextRefused answers a login attempt while passwords must not
// travel in the clear.
func (cn *conn) plaintextRefused() string {
	return cn.badCommand("[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
}

func (cn *conn) userCmd(c pop3.Command) string {
	if !cn.plainOK() {
		return cn.plaintextRefused()
	}
	if c.Arg == "" || pop3.CheckCredentials(c.Arg, "x") != nil {
		return cn.badCommand("Invalid user name.")
	}
	cn.user = c.Arg
	cn.w.OK("")
	return ""
}

func (cn *conn) pass(ctx context.Context, c pop3.Command) string {
	if !cn.plainOK() {
		return cn.plaintextRefused()
	}
	if cn.user == "" {
		return cn.badCommand("No user name given.")
	}
	user := cn.user
	cn.user = ""
	if pop3.CheckCredentials(user, c.Arg) != nil {
		return cn.failed(user, "USER", "malformed password")
	}
	return cn.login(ctx, user, c.Arg, "USER")
}

// auth runs AUTH (RFC 5034); without a mechanism it lists them (RFC 1734).
func (cn *conn) auth(ctx context.Context, c pop3.Command) string {
	if len(c.Args) == 0 {
		cn.w.OK("")
		if cn.plainOK() {
			cn.w.Line("PLAIN")
			cn.w.Line("LOGIN")
		}
		cn.w.Line(".")
		return ""
	}
	if !cn.plainOK() {
		return cn.plaintextRefused()
	}
	if len(c.Args) > 2 {
		return cn.badCommand("Invalid AUTH arguments.")
	}
	mech := strings.ToUpper(c.Args[0])
	initial, hasInitial := "", len(c.Args) == 2
	if hasInitial {
		initial = c.Args[1]
	}
	var user, pass string
	var err error
	switch mech {
	case "PLAIN":
		if !hasInitial {
			if initial, err = cn.challenge(""); err != nil {
				return cn.saslFailed(err, mech)
			}
		}
		user, pass, err = pop3.DecodePlain(initial)
	case "LOGIN":
		var u, p []byte
		if hasInitial {
			u, err = pop3.DecodeResponse(initial)
		} else {
			var line string
			if line, err = cn.challenge(pop3.LoginUserChallenge); err == nil {
				u, err = pop3.DecodeResponse(line)
			}
		}
		if err == nil {
			var line string
			if line, err = cn.challenge(pop3.LoginPassChallenge); err == nil {
				p, err = pop3.DecodeResponse(line)
			}
		}
		if err == nil {
			user, pass = string(u), string(p)
			err = pop3.CheckCredentials(user, pass)
		}
	default:
		return cn.badCommand("Unsupported authentication mechanism.")
	}
	if err != nil {
		return cn.saslFailed(err, mech)
	}
	return cn.login(ctx, user, pass, mech)
}

// errRead marks a read failure inside a SASL exchange.
type errRead struct{ err error }

func (e errRead) Error() string { return e.err.Error() }

// challenge sends "+ text" and reads the client's response line.
func (cn *conn) challenge(text string) (string, error) {
	cn.w.Line("+ " + text)
	if err := cn.w.Flush(); err != nil {
		return "", errRead{err}
	}
	line, err := cn.readLine()
	if err != nil {
		return "", errRead{err}
	}
	return line, nil
}

// saslFailed answers a SASL exchange that went wrong before auth was
// asked: cancelled, malformed, or the connection failed.
func (cn *conn) saslFailed(err error, mech string) string {
	var re errRead
	switch {
	case errors.As(err, &re):
		return cn.readFailed(re.err)
	case errors.Is(err, pop3.ErrSASLCancelled):
		cn.w.Err("", "Authentication cancelled.")
		return ""
	}
	return cn.failed("", mech, err.Error())
}

// failed counts a failed login and answers it; at the limit the
// connection is closed.
func (cn *conn) failed(user, mech, why string) string {
	cn.failures++
	log.Infof("auth failed user=<%s> method=%s rip=%s lip=%s tls=%s reason=%q",
		log.Clean(user), mech, cn.rip, cn.lip, yesNo(cn.tls), why)
	cn.w.Err(pop3.CodeAuth, "Authentication failed.")
	if cn.s.failureLimit > 0 && cn.failures >= cn.s.failureLimit {
		return "too many authentication failures"
	}
	return ""
}

// login asks the acceptor; on success it forwards the session's first
// line and relays until either side closes ("logged in"), otherwise it
// answers the client and the AUTHORIZATION state goes on.
func (cn *conn) login(ctx context.Context, user, pass, mech string) string {
	lctx, cancel := context.WithTimeout(ctx, loginWait)
	defer cancel()
	req := postlogin.Request{
		Service: "pop3", User: user, Password: pass, Mech: mech,
		ClientAddr: cn.c.RemoteAddr().String(), LocalAddr: cn.c.LocalAddr().String(), TLS: cn.tls,
	}
	if !cn.tls && postlogin.CanHandoff(cn.c) {
		return cn.handoff(lctx, req)
	}
	sess, res, err := postlogin.Login(lctx, cn.s.sock, req)
	if err != nil {
		log.Warnf("login user=<%s> rip=%s: %v", log.Clean(user), cn.rip, err)
		cn.w.Err(pop3.CodeSysTemp, "Temporary authentication failure, try again later.")
		return ""
	}
	if !res.OK {
		return cn.refused(res, user, mech)
	}
	defer sess.Close()
	sess.SetReadDeadline(time.Now().Add(loginWait))
	first, err := postlogin.FirstLine(sess, maxFirstLine)
	if err != nil {
		log.Errorf("login user=<%s> rip=%s: session start: %v", log.Clean(res.User), cn.rip, err)
		cn.w.Err(pop3.CodeSysTemp, "Mailbox could not be opened, try again later.")
		return "session failed"
	}
	sess.SetReadDeadline(time.Time{})
	cn.w.Line(first)
	if err := cn.w.Flush(); err != nil {
		return "write: " + err.Error()
	}
	if !strings.HasPrefix(first, "+OK") {
		log.Infof("login refused user=<%s> method=%s rip=%s lip=%s reason=%q", log.Clean(res.User), mech, cn.rip, cn.lip, first)
		return "session refused"
	}
	log.Infof("login user=<%s> method=%s rip=%s lip=%s tls=%s", log.Clean(res.User), mech, cn.rip, cn.lip, yesNo(cn.tls))
	cn.c.SetReadDeadline(time.Time{})
	// Commands the client pipelined behind its login go to the session.
	if b := cn.r.TakeBuffered(); len(b) > 0 {
		sess.SetWriteDeadline(time.Now().Add(loginWait))
		if _, err := sess.Write(b); err != nil {
			return "session write: " + err.Error()
		}
		sess.SetWriteDeadline(time.Time{})
	}
	if err := postlogin.Relay(cn.c, sess, cn.s.relayIdle); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Infof("relay user=<%s> rip=%s: %v", log.Clean(res.User), cn.rip, err)
	}
	return "logged in"
}

// handoff logs a plaintext client in by giving its connection to the
// session (postlogin.Handoff): from then on the session and the client
// talk directly, with the commands pipelined behind the login, and this
// process only closes its copy.
func (cn *conn) handoff(ctx context.Context, req postlogin.Request) string {
	// Replies to commands pipelined before this one are still buffered:
	// they go out before the session can write its first line.
	if err := cn.w.Flush(); err != nil {
		return "write: " + err.Error()
	}
	res, err := postlogin.Handoff(ctx, cn.s.sock, req, cn.c, cn.r.Pending())
	if errors.Is(err, postlogin.ErrMaybeHandedOff) {
		// A session may be serving the client already: not a word more
		// from here.
		log.Errorf("login user=<%s> rip=%s: %v", log.Clean(req.User), cn.rip, err)
		return "session failed"
	}
	if err != nil {
		log.Warnf("login user=<%s> rip=%s: %v", log.Clean(req.User), cn.rip, err)
		cn.w.Err(pop3.CodeSysTemp, "Temporary authentication failure, try again later.")
		return ""
	}
	if !res.OK {
		return cn.refused(res, req.User, req.Mech)
	}
	log.Infof("login user=<%s> method=%s rip=%s lip=%s tls=%s", log.Clean(res.User), req.Mech, cn.rip, cn.lip, yesNo(cn.tls))
	return "logged in"
}

// refused answers a login the acceptor did not accept.
func (cn *conn) refused(res postlogin.Result, user, mech string) string {
	switch {
	case res.Code == postlogin.CodeLimit:
		log.Infof("login refused user=<%s> method=%s rip=%s lip=%s reason=%q", log.Clean(user), mech, cn.rip, cn.lip, res.Reason)
		cn.w.Err(pop3.CodeInUse, orText(res.Reason, "Too many sessions."))
		return ""
	case res.Temp:
		log.Infof("login failed temporarily user=<%s> method=%s rip=%s lip=%s reason=%q", log.Clean(user), mech, cn.rip, cn.lip, res.Reason)
		cn.w.Err(pop3.CodeSysTemp, orText(res.Reason, "Temporary authentication failure, try again later."))
		return ""
	}
	return cn.failed(user, mech, orText(res.Reason, "authentication failed"))
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
