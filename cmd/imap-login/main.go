// Command imap-login is Postern's IMAP front end (DESIGN.md §2, §4): it
// speaks IMAP with clients in the not-authenticated state (RFC 9051 and
// RFC 3501: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE with
// SASL PLAIN and LOGIN and RFC 4959 SASL-IR, RFC 2971 ID; implicit TLS
// with imapd_tls_wrappermode), sends the credentials to the imapd
// acceptor (login/imapd), which checks them with auth and starts an imapd
// session as the mailbox owner, answers the client's login with the
// session's capabilities and then relays the (decrypted) stream both
// ways.
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
//   - commands are read by internal/imapwire: a command's lines are at
//     most imapd_max_line_length octets together and its literals 8 KiB
//     together (before login they hold only credentials); over-long lines
//     and too large non-synchronising literals get BAD and BYE and the
//     connection is closed, other malformed commands get BAD; 20 bad
//     commands close the connection;
//   - login_timeout (default 60s) without a command before login closes
//     the connection with BYE; after login the relay ends when no byte
//     has passed for imapd_idle_timeout plus a minute (the session's own
//     autologout speaks first);
//   - LOGIN and AUTHENTICATE are refused with NO [PRIVACYREQUIRED] before
//     TLS when disable_plaintext_auth = yes (the default), except from a
//     loopback address, as in Dovecot; LOGINDISABLED is advertised then;
//   - a wrong password is answered NO [AUTHENTICATIONFAILED] after auth's
//     delay; after login_auth_failure_limit failures (default 3) the
//     connection is closed; auth or the acceptor being unreachable, or the
//     mailbox not opening, gives NO [UNAVAILABLE], too many sessions NO
//     [LIMIT], and the client may try again;
//   - STARTTLS with further commands already pipelined behind it closes
//     the connection (no plaintext command may be taken as if it came
//     over TLS, CVE-2011-0411).
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"postern/internal/imapwire"
	"postern/internal/log"
	"postern/internal/postlogin"
	"postern/internal/service"
)

// Defaults for settings a configuration may not know, and fixed limits.
const (
	defaultLoginTimeout = 60 * time.Second
	defaultFailureLimit = 3
	defaultClientLimit  = 1000
	defaultSessionIdle  = 30 * time.Minute
	maxBadCommands      = 20
	// maxLiteral bounds the literals of one command before login: they
	// hold a user name and a password, nothing larger.
	maxLiteral = 8 << 10
	// loginWait bounds the whole login request: auth's failure delay,
	// the password hash, the session's start and its first line.
	loginWait = 60 * time.Second
	// maxFirstLine bounds the session's first line (its PREAUTH with the
	// capability list).
	maxFirstLine = 8 << 10
	// maxCredential bounds a user name or password (auth never accepts
	// a password over 512 octets).
	maxCredential = 1024
)

type server struct {
	tls          *tls.Config
	wrapper      bool
	plainOff     bool // disable_plaintext_auth
	timeout      time.Duration
	failureLimit int
	relayIdle    time.Duration
	maxLine      int
	sock         string
}

func main() {
	d := service.Init("imap-login")
	cfg := d.Config
	tc, err := postlogin.ServerTLS(cfg, "imapd")
	if err != nil {
		d.Fatalf("%v", err)
	}
	s := &server{
		tls:          tc,
		wrapper:      cfg.Bool("imapd_tls_wrappermode"),
		plainOff:     cfg.Get("disable_plaintext_auth") == "" || cfg.Bool("disable_plaintext_auth"),
		timeout:      defaultLoginTimeout,
		failureLimit: defaultFailureLimit,
		relayIdle:    defaultSessionIdle + time.Minute,
		maxLine:      imapwire.DefaultMaxLine,
	}
	if cfg.Get("login_timeout") != "" {
		s.timeout = cfg.Duration("login_timeout")
	}
	if cfg.Get("login_auth_failure_limit") != "" {
		s.failureLimit = int(cfg.Int("login_auth_failure_limit"))
	}
	if cfg.Get("imapd_idle_timeout") != "" {
		s.relayIdle = cfg.Duration("imapd_idle_timeout") + time.Minute
	}
	if cfg.Get("imapd_max_line_length") != "" {
		s.maxLine = int(cfg.Int("imapd_max_line_length"))
	}
	limit := defaultClientLimit
	if cfg.Get("login_client_limit") != "" {
		limit = int(cfg.Int("login_client_limit"))
	}
	if s.wrapper && s.tls == nil {
		d.Fatalf("imapd_tls_wrappermode = yes needs a certificate (imapd_tls_cert_file or smtpd_tls_cert_file)")
	}
	if s.tls == nil && s.plainOff {
		log.Warnf("no certificate (imapd_tls_cert_file) and disable_plaintext_auth = yes: only clients on loopback can log in")
	}
	// Before the drop: d.Chrooted (which SocketPath asks) looks at the
	// effective uid, which is no longer root afterwards.
	s.sock = postlogin.SocketPath(d, "imapd")
	d.DropLogin()
	d.Serve(limit, s.handle)
}

// conn is one client connection before login.
type conn struct {
	s        *server
	raw      net.Conn // the TCP connection
	c        net.Conn // raw, or a *tls.Conn over it
	r        *imapwire.Reader
	tls      bool
	loopback bool
	rip, lip string
	failures int
	bad      int
	start    time.Time // when the client connected
}

func (s *server) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	cn := &conn{s: s, raw: c, c: c, rip: hostOf(c.RemoteAddr()), lip: hostOf(c.LocalAddr()), start: time.Now()}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cn.loopback = ap.Addr().Unmap().IsLoopback()
	}
	// A stop (not a drain) wakes whatever waits on the client: a command
	// read (which then says BYE) or a relay (which then ends).
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if s.wrapper {
		tc := tls.Server(c, s.tls)
		tc.SetDeadline(time.Now().Add(s.timeout))
		if err := tc.Handshake(); err != nil {
			log.Infof("disconnected rip=%s lip=%s reason=%q", cn.rip, cn.lip, "TLS handshake: "+err.Error())
			return
		}
		cn.c, cn.tls = tc, true
	}
	cn.r = imapwire.NewReader(cn.c, cn.c, cn.limits())
	if err := cn.send("* OK [CAPABILITY " + cn.capability() + "] Postern ready."); err != nil {
		return
	}
	reason := cn.run(ctx)
	if reason != "" {
		log.Infof("disconnected rip=%s lip=%s tls=%s auth_failures=%d reason=%q",
			cn.rip, cn.lip, yesNo(cn.tls), cn.failures, reason)
	}
}

func (cn *conn) limits() imapwire.Limits {
	return imapwire.Limits{MaxLine: cn.s.maxLine, MaxLiteral: maxLiteral}
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

// capability is the list for CAPABILITY and the greeting. STARTTLS is
// not offered once TLS is on (RFC 9051 §6.2.1); while passwords may not
// be sent, LOGINDISABLED is, and no mechanism (both send the password).
func (cn *conn) capability() string {
	caps := []string{"IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"}
	if cn.s.tls != nil && !cn.tls {
		caps = append(caps, "STARTTLS")
	}
	if cn.plainOK() {
		caps = append(caps, "AUTH=PLAIN", "AUTH=LOGIN")
	} else {
		caps = append(caps, "LOGINDISABLED")
	}
	return strings.Join(caps, " ")
}

// send writes response lines, each with its CRLF, in one write.
func (cn *conn) send(lines ...string) error {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	cn.c.SetWriteDeadline(time.Now().Add(cn.s.timeout))
	_, err := io.WriteString(cn.c, b.String())
	return err
}

// run is the not-authenticated state. It returns why the connection
// ended without a login ("" after a login: the session logs the rest).
func (cn *conn) run(ctx context.Context) string {
	for {
		cmd, err := cn.readCommand(ctx)
		if err != nil {
			var e *imapwire.Error
			if errors.As(err, &e) {
				if e.Fatal {
					cn.send(e.Reply(), "* BYE "+e.Text)
					return strings.ToLower(e.Text)
				}
				if r := cn.badCommand(e.Reply()); r != "" {
					return r
				}
				continue
			}
			return cn.readFailed(ctx, err)
		}
		var done string
		switch cmd.Name {
		case "CAPABILITY":
			if len(cmd.Args) != 0 {
				done = cn.badArgs(cmd)
				break
			}
			cn.send("* CAPABILITY "+cn.capability(), cmd.Tag+" OK Capability completed.")
		case "NOOP":
			if len(cmd.Args) != 0 {
				done = cn.badArgs(cmd)
				break
			}
			cn.send(cmd.Tag + " OK NOOP completed.")
		case "LOGOUT":
			if len(cmd.Args) != 0 {
				done = cn.badArgs(cmd)
				break
			}
			cn.send("* BYE Logging out.", cmd.Tag+" OK Logout completed.")
			return "logout"
		case "ID":
			done = cn.id(cmd)
		case "STARTTLS":
			done = cn.starttls(cmd)
		case "LOGIN":
			done = cn.loginCmd(ctx, cmd)
		case "AUTHENTICATE":
			done = cn.authenticate(ctx, cmd)
		case "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
			"LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "ENABLE", "CHECK",
			"CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID",
			"GETQUOTA", "GETQUOTAROOT", "GETACL", "MYRIGHTS", "GETMETADATA", "COMPRESS":
			done = cn.badCommand(cmd.Tag + " BAD Log in first.")
		default:
			done = cn.badCommand(cmd.Tag + " BAD Unknown command.")
		}
		if done != "" {
			if done == "logged in" {
				return ""
			}
			return done
		}
	}
}

// readCommand reads the next command within the login timeout. The
// write deadline is renewed too: the reader may send "+ Ready".
func (cn *conn) readCommand(ctx context.Context) (*imapwire.Command, error) {
	cn.setDeadline()
	// Checked after the deadline is set: a stop that came in between
	// has already cut the deadline short, one before is seen here.
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return cn.r.ReadCommand()
}

// setDeadline allows login_timeout for the next command, and at most three
// times login_timeout since the client connected: a client that sends
// NOOP now and then does not keep a login slot for ever (as pop3-login).
func (cn *conn) setDeadline() {
	if cn.s.timeout <= 0 {
		return
	}
	d := time.Now().Add(cn.s.timeout)
	if hard := cn.start.Add(3 * cn.s.timeout); hard.Before(d) {
		d = hard
	}
	cn.c.SetDeadline(d)
}

// readLine reads a SASL response within the login timeout.
func (cn *conn) readLine(ctx context.Context) (string, error) {
	cn.setDeadline()
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return cn.r.ReadLine()
}

// readFailed answers what can be answered and returns the log reason.
func (cn *conn) readFailed(ctx context.Context, err error) string {
	switch {
	case ctx.Err() != nil:
		cn.send("* BYE Server shutting down.")
		return "server shutting down"
	case errors.Is(err, os.ErrDeadlineExceeded):
		cn.send("* BYE Disconnected for inactivity.")
		return "login timeout"
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	return "read: " + err.Error()
}

// badCommand answers a refused command with line and counts it; too many
// close the connection.
func (cn *conn) badCommand(line string) string {
	cn.bad++
	if cn.bad >= maxBadCommands {
		cn.send(line, "* BYE Too many invalid commands.")
		return "too many invalid commands"
	}
	cn.send(line)
	return ""
}

func (cn *conn) badArgs(cmd *imapwire.Command) string {
	return cn.badCommand(cmd.Tag + " BAD Invalid arguments.")
}

// id answers ID (RFC 2971): the client's list is checked, not kept.
func (cn *conn) id(cmd *imapwire.Command) string {
	if len(cmd.Args) != 1 {
		return cn.badArgs(cmd)
	}
	a := cmd.Args[0]
	if !a.IsNIL() {
		// RFC 2971 §3.3: at most 30 pairs; a field is a string of at
		// most 30 octets, a value a string of at most 1024 or NIL.
		if a.Kind != imapwire.List || len(a.List)%2 != 0 || len(a.List) > 60 {
			return cn.badArgs(cmd)
		}
		for i, m := range a.List {
			if i%2 == 0 && (!m.IsString() || len(m.Value) > 30) ||
				i%2 == 1 && !m.IsNIL() && (!m.IsString() || len(m.Value) > 1024) {
				return cn.badArgs(cmd)
			}
		}
	}
	cn.send(`* ID ("name" "Postern")`, cmd.Tag+" OK ID completed.")
	return ""
}

// starttls starts TLS (RFC 9051 §6.2.1).
func (cn *conn) starttls(cmd *imapwire.Command) string {
	switch {
	case len(cmd.Args) != 0:
		return cn.badArgs(cmd)
	case cn.tls:
		return cn.badCommand(cmd.Tag + " BAD TLS is already active.")
	case cn.s.tls == nil:
		return cn.badCommand(cmd.Tag + " BAD STARTTLS is not available.")
	case cn.r.Buffered() > 0:
		cn.send(cmd.Tag+" BAD Commands sent after STARTTLS before TLS.", "* BYE Closing.")
		return "pipelined data after STARTTLS"
	}
	if err := cn.send(cmd.Tag + " OK Begin TLS negotiation now."); err != nil {
		return "write: " + err.Error()
	}
	tc := tls.Server(cn.raw, cn.s.tls)
	tc.SetDeadline(time.Now().Add(cn.s.timeout))
	if err := tc.Handshake(); err != nil {
		return "TLS handshake: " + err.Error()
	}
	// A new start: the client must ask for the capabilities again
	// (RFC 9051 §6.2.1).
	cn.c, cn.tls = tc, true
	cn.r = imapwire.NewReader(tc, tc, cn.limits())
	return ""
}

// plaintextRefused answers a login attempt while passwords must not
// travel in the clear.
func (cn *conn) plaintextRefused(tag string) string {
	return cn.badCommand(tag + " NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
}

func (cn *conn) loginCmd(ctx context.Context, cmd *imapwire.Command) string {
	if len(cmd.Args) != 2 {
		return cn.badArgs(cmd)
	}
	user, ok1 := cmd.Args[0].AString()
	pass, ok2 := cmd.Args[1].AString()
	if !ok1 || !ok2 {
		return cn.badArgs(cmd)
	}
	if !cn.plainOK() {
		return cn.plaintextRefused(cmd.Tag)
	}
	if why := checkCredentials(user, pass); why != "" {
		return cn.failed(cmd.Tag, user, "LOGIN", why)
	}
	return cn.login(ctx, cmd.Tag, user, pass, "LOGIN")
}

// SASL LOGIN's challenges (draft-murchison-sasl-login): "Username:" and
// "Password:".
var (
	loginUserChallenge = base64.StdEncoding.EncodeToString([]byte("Username:"))
	loginPassChallenge = base64.StdEncoding.EncodeToString([]byte("Password:"))
)

// errCancelled is a client's "*" in a SASL exchange.
var errCancelled = errors.New("authentication cancelled")

// errReadFailed wraps a read failure inside a SASL exchange.
type errReadFailed struct{ err error }

func (e errReadFailed) Error() string { return e.err.Error() }
func (e errReadFailed) Unwrap() error { return e.err }

// authenticate runs AUTHENTICATE (RFC 9051 §6.2.2) with an optional
// initial response (RFC 4959).
func (cn *conn) authenticate(ctx context.Context, cmd *imapwire.Command) string {
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != imapwire.Atom ||
		len(cmd.Args) == 2 && cmd.Args[1].Kind != imapwire.Atom {
		return cn.badArgs(cmd)
	}
	if !cn.plainOK() {
		return cn.plaintextRefused(cmd.Tag)
	}
	mech := strings.ToUpper(cmd.Args[0].Value)
	var initial []byte
	hasInitial := len(cmd.Args) == 2
	var err error
	if hasInitial {
		initial, err = decodeResponse(cmd.Args[1].Value)
	}
	var user, pass string
	switch mech {
	case "PLAIN":
		if err == nil && !hasInitial {
			initial, err = cn.challenge(ctx, "")
		}
		if err == nil {
			user, pass, err = decodePlain(initial)
		}
	case "LOGIN":
		u := initial
		if err == nil && !hasInitial {
			u, err = cn.challenge(ctx, loginUserChallenge)
		}
		var p []byte
		if err == nil {
			p, err = cn.challenge(ctx, loginPassChallenge)
		}
		user, pass = string(u), string(p)
	default:
		return cn.badCommand(cmd.Tag + " NO Unsupported authentication mechanism.")
	}
	var rf errReadFailed
	switch {
	case errors.As(err, &rf):
		var e *imapwire.Error
		if errors.As(rf.err, &e) {
			cn.send(cmd.Tag+" BAD "+e.Text, "* BYE "+e.Text)
			return strings.ToLower(e.Text)
		}
		return cn.readFailed(ctx, rf.err)
	case errors.Is(err, errCancelled):
		return cn.badCommand(cmd.Tag + " BAD Authentication cancelled.")
	case errors.Is(err, errBadBase64):
		return cn.badCommand(cmd.Tag + " BAD Invalid base64 data.")
	case errors.Is(err, errAuthzid):
		return cn.failedCode(cmd.Tag, user, mech, err.Error(), "AUTHORIZATIONFAILED", "Authorization failed.")
	case err != nil:
		return cn.failed(cmd.Tag, user, mech, err.Error())
	}
	if why := checkCredentials(user, pass); why != "" {
		return cn.failed(cmd.Tag, user, mech, why)
	}
	return cn.login(ctx, cmd.Tag, user, pass, mech)
}

// challenge sends "+ text" and reads and decodes the client's response.
func (cn *conn) challenge(ctx context.Context, text string) ([]byte, error) {
	if err := cn.send("+ " + text); err != nil {
		return nil, errReadFailed{err}
	}
	line, err := cn.readLine(ctx)
	if err != nil {
		return nil, errReadFailed{err}
	}
	if line == "*" {
		return nil, errCancelled
	}
	return decodeResponse(line)
}

var (
	errBadBase64 = errors.New("invalid base64 data")
	errAuthzid   = errors.New("authorization identity differs from the user")
)

// decodeResponse decodes a SASL response: base64, "=" for an empty one
// (RFC 4959, in an initial response).
func decodeResponse(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errBadBase64
	}
	return b, nil
}

// decodePlain splits a PLAIN response, authzid NUL authcid NUL passwd
// (RFC 4616 §2). An authorization identity other than the user's own is
// refused: nobody may act as another user here.
func decodePlain(b []byte) (user, pass string, err error) {
	parts := strings.Split(string(b), "\x00")
	if len(parts) != 3 {
		return "", "", errors.New("malformed PLAIN response")
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return parts[1], "", errAuthzid
	}
	return parts[1], parts[2], nil
}

// checkCredentials refuses what no account can have, before auth sees
// it: empty, too long, not UTF-8, or holding NUL, CR or LF. It returns
// why, or "".
func checkCredentials(user, pass string) string {
	switch {
	case user == "":
		return "empty user name"
	case pass == "":
		return "empty password"
	case len(user) > maxCredential || len(pass) > maxCredential:
		return "user name or password too long"
	case !utf8.ValidString(user) || !utf8.ValidString(pass):
		return "user name or password not UTF-8"
	case strings.ContainsAny(user, "\x00\r\n") || strings.ContainsAny(pass, "\x00\r\n"):
		return "control characters in user name or password"
	}
	return ""
}

// failed counts a failed login and answers it; at the limit the
// connection is closed.
func (cn *conn) failed(tag, user, mech, why string) string {
	return cn.failedCode(tag, user, mech, why, "AUTHENTICATIONFAILED", "Authentication failed.")
}

func (cn *conn) failedCode(tag, user, mech, why, code, text string) string {
	cn.failures++
	log.Infof("auth failed user=<%s> method=%s rip=%s lip=%s tls=%s reason=%q",
		log.Clean(user), mech, cn.rip, cn.lip, yesNo(cn.tls), why)
	if cn.s.failureLimit > 0 && cn.failures >= cn.s.failureLimit {
		cn.send(tag+" NO ["+code+"] "+text, "* BYE Too many authentication failures.")
		return "too many authentication failures"
	}
	cn.send(tag + " NO [" + code + "] " + text)
	return ""
}

// login asks the acceptor; on success it answers the client with the
// session's capabilities and relays until either side closes ("logged
// in"), otherwise it answers the client and the not-authenticated state
// goes on.
func (cn *conn) login(ctx context.Context, tag, user, pass, mech string) string {
	lctx, cancel := context.WithTimeout(ctx, loginWait)
	defer cancel()
	req := postlogin.Request{
		Service: "imap", User: user, Password: pass, Mech: mech,
		ClientAddr: cn.raw.RemoteAddr().String(), LocalAddr: cn.raw.LocalAddr().String(), TLS: cn.tls,
	}
	// A plaintext client with nothing pipelined behind its login is
	// handed to the session (as pop3-login and Dovecot do): no relay hop.
	if !cn.tls && cn.r.Buffered() == 0 && postlogin.CanHandoff(cn.raw) {
		req.Tag = tag
		return cn.handoff(lctx, req)
	}
	sess, res, err := postlogin.Login(lctx, cn.s.sock, req)
	if err != nil {
		log.Warnf("login user=<%s> rip=%s: %v", log.Clean(user), cn.rip, err)
		cn.send(tag + " NO [UNAVAILABLE] Temporary authentication failure, try again later.")
		return ""
	}
	if !res.OK {
		return cn.refused(tag, user, mech, res)
	}
	defer sess.Close()
	sess.SetReadDeadline(time.Now().Add(loginWait))
	first, err := postlogin.FirstLine(sess, maxFirstLine)
	if err != nil {
		log.Errorf("login user=<%s> rip=%s: session start: %v", log.Clean(res.User), cn.rip, err)
		cn.send(tag + " NO [UNAVAILABLE] Mailbox could not be opened, try again later.")
		return ""
	}
	caps, ok := preauthCapability(first)
	if !ok {
		text := "Mailbox could not be opened, try again later."
		if t, isBye := strings.CutPrefix(first, "* BYE "); isBye {
			text = responseText(stripCode(t), text)
		}
		log.Warnf("login refused user=<%s> method=%s rip=%s lip=%s session said %q", log.Clean(res.User), mech, cn.rip, cn.lip, first)
		cn.send(tag + " NO [UNAVAILABLE] " + text)
		return ""
	}
	sess.SetReadDeadline(time.Time{})
	reply := tag + " OK Logged in"
	if caps != "" {
		reply = tag + " OK [CAPABILITY " + caps + "] Logged in"
	}
	if err := cn.send(reply); err != nil {
		return "write: " + err.Error()
	}
	log.Infof("login user=<%s> method=%s rip=%s lip=%s tls=%s", log.Clean(res.User), mech, cn.rip, cn.lip, yesNo(cn.tls))
	cn.c.SetDeadline(time.Time{})
	if ctx.Err() != nil {
		// A stop between the answer and here: its deadline was just
		// cleared.
		return "logged in"
	}
	// Commands the client pipelined behind its login are still in the
	// reader's buffer: the relay reads the client through it.
	client := &readerConn{Conn: cn.c, r: cn.r}
	if err := postlogin.Relay(client, sess, cn.s.relayIdle); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Infof("relay user=<%s> rip=%s: %v", log.Clean(res.User), cn.rip, err)
	}
	return "logged in"
}

// handoff logs a plaintext client in by giving its connection to the
// session (postlogin.Handoff): the session answers the LOGIN itself
// ("tag OK [CAPABILITY ...] Logged in") and talks to the client directly;
// this process only closes its copy.
func (cn *conn) handoff(ctx context.Context, req postlogin.Request) string {
	res, err := postlogin.Handoff(ctx, cn.s.sock, req, cn.raw, nil)
	if errors.Is(err, postlogin.ErrMaybeHandedOff) {
		// A session may be serving the client already: not a word more
		// from here.
		log.Errorf("login user=<%s> rip=%s: %v", log.Clean(req.User), cn.rip, err)
		return "session failed"
	}
	if err != nil {
		log.Warnf("login user=<%s> rip=%s: %v", log.Clean(req.User), cn.rip, err)
		cn.send(req.Tag + " NO [UNAVAILABLE] Temporary authentication failure, try again later.")
		return ""
	}
	if !res.OK {
		return cn.refused(req.Tag, req.User, req.Mech, res)
	}
	log.Infof("login user=<%s> method=%s rip=%s lip=%s tls=%s", log.Clean(res.User), req.Mech, cn.rip, cn.lip, yesNo(cn.tls))
	return "logged in"
}

// refused answers a login the acceptor did not accept.
func (cn *conn) refused(tag, user, mech string, res postlogin.Result) string {
	switch {
	case res.Code == postlogin.CodeLimit:
		log.Infof("login refused user=<%s> method=%s rip=%s lip=%s reason=%q", log.Clean(user), mech, cn.rip, cn.lip, res.Reason)
		cn.send(tag + " NO [LIMIT] " + responseText(res.Reason, "Too many sessions."))
		return ""
	case res.Temp:
		log.Infof("login failed temporarily user=<%s> method=%s rip=%s lip=%s reason=%q", log.Clean(user), mech, cn.rip, cn.lip, res.Reason)
		cn.send(tag + " NO [UNAVAILABLE] " + responseText(res.Reason, "Temporary authentication failure, try again later."))
		return ""
	}
	return cn.failed(tag, user, mech, responseText(res.Reason, "authentication failed"))
}

// readerConn is a connection whose reads come through a reader that may
// hold buffered octets.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// preauthCapability checks that the session's first line is its PREAUTH
// greeting and returns the capability list of its CAPABILITY response
// code, "" when it has none. The list goes to the client as it is, so
// only printable ASCII is taken.
func preauthCapability(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "* PREAUTH")
	if !ok || rest != "" && rest[0] != ' ' {
		return "", false
	}
	rest = strings.TrimPrefix(rest, " ")
	code, ok := strings.CutPrefix(rest, "[CAPABILITY ")
	if !ok {
		return "", true
	}
	caps, _, ok := strings.Cut(code, "]")
	if !ok {
		return "", true
	}
	for i := 0; i < len(caps); i++ {
		if caps[i] < 0x20 || caps[i] >= 0x7f {
			return "", true
		}
	}
	return strings.TrimSpace(caps), true
}

// stripCode removes a leading response code ("[UNAVAILABLE] ") from a
// response text.
func stripCode(s string) string {
	if strings.HasPrefix(s, "[") {
		if _, after, ok := strings.Cut(s, "] "); ok {
			return after
		}
	}
	return s
}

// responseText makes s fit for a response line: printable, one line, not
// too long; def when nothing is left.
func responseText(s, def string) string {
	s = strings.TrimSpace(log.Clean(s))
	if len(s) > 200 {
		s = s[:200]
	}
	if s == "" || !utf8.ValidString(s) {
		return def
	}
	return s
}
