// Package smtp is Postern's SMTP protocol engine. This file and its
// neighbours are the server side: one Session per accepted connection,
// driven by a Handler that the daemon (smtpd) supplies for every policy
// decision. The engine owns the protocol and nothing else: no DNS, no
// access tables, no queue.
//
// Protocol: RFC 5321 with PIPELINING (RFC 2920), SIZE (RFC 1870),
// 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034, codes from RFC
// 3463/5248), SMTPUTF8 (RFC 6531, when ServerConfig.SMTPUTF8) and the DSN
// parameters RET, ENVID, NOTIFY, ORCPT (RFC 3461, parsed and handed to the
// Handler; advertised only when ServerConfig.DSN), STARTTLS (RFC 3207,
// when ServerConfig.TLS), implicit TLS (RFC 8314) and AUTH PLAIN and LOGIN
// (RFC 4954, RFC 4616, draft-murchison-sasl-login, when
// ServerConfig.Auth); see below. Not implemented now: CHUNKING/BDAT (502
// 5.5.1), EXPN (502 5.5.1); STARTTLS and AUTH are 502 5.5.1 too when not
// configured. VRFY always
// answers 252 2.5.2. HELO sessions get no extensions: any MAIL or RCPT
// parameter after HELO is refused with 555 5.5.4, and so are the DSN and
// SMTPUTF8 parameters when those extensions are not offered. MAIL needs a
// HELO/EHLO first. The HELO/EHLO argument is only checked to be present
// and printable; judging it is the Handler's policy.
//
// Liberties taken, as most servers do: a bare LF ends a command line,
// spaces may follow "FROM:"/"TO:", trailing spaces and HTs are ignored.
// The angle brackets around a path are required.
//
// Input limits and failure modes:
//
//   - A command line is at most 512 octets with its CRLF (MaxCommandLine),
//     MAIL, RCPT and AUTH at most 2048 (MaxPathLine). A longer line gets 500 5.5.2
//     "line too long" and is discarded up to the next LF.
//   - A command ends in CRLF; a bare LF is accepted as the end (like
//     Postfix); a CR anywhere else, a NUL, any other control but HT and
//     invalid UTF-8 make it 500 5.5.2. An unknown verb is 500 5.5.1.
//     Bad arguments are 501 (5.5.2, 5.5.4, or 5.1.7/5.1.3 for the sender's
//     or recipient's address), unknown MAIL/RCPT parameters 555 5.5.4,
//     commands out of order 503 5.5.1.
//   - A client that sends CONNECT, GET, POST, PUT, HEAD or an HTTP header
//     line ("Host:") is not speaking SMTP: 221 2.7.0 and hang up.
//   - Non-ASCII addresses without the SMTPUTF8 MAIL parameter: 553 5.6.7.
//   - Recipients over MaxRecipients: 452 4.5.3 (the client is expected to
//     send the rest in another transaction).
//   - Every 4xx/5xx reply to a command counts as an error, except 452
//     4.5.3 and 421. Past SoftErrorLimit each error reply is delayed by
//     ErrorSleep; at HardErrorLimit the server says 421 4.7.0 and hangs up.
//   - Timeout bounds the wait for each command line, each DATA line and
//     each write; SessionTimeout bounds the whole session, so that a client
//     trickling one octet at a time cannot hold a process for ever. Either
//     ends the session with 421 4.4.2. Cancelling the context given to
//     Serve ends it with 421 4.3.2.
//
// STARTTLS: accepted only without arguments (501 5.5.4), outside a
// transaction (503 5.5.1), once (503 5.5.1 when TLS is already active,
// STARTTLS or implicit), and only when ServerConfig.TLS has a certificate
// (454 4.7.0 otherwise, and not advertised). After "220 2.0.0 Ready to
// start TLS" whatever the client pipelined behind STARTTLS is discarded
// unread, with a warning (CVE-2011-0411: cleartext injected into the
// encrypted session); what is still in the kernel's buffer then spoils the
// handshake. The handshake has Timeout (and the session's time budget) for
// the whole exchange; when it fails the session logs "SSL_accept error
// from", closes without a reply and Serve returns ErrTLSHandshake (with
// ErrTimeout on a timeout). When it succeeds the session is as after the
// greeting (RFC 3207 4.2): no HELO/EHLO, no AUTH; EHLO then advertises no
// STARTTLS, and the log says "Anonymous TLS connection established from
// CLIENT: TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)". An
// implicit TLS connection (a *tls.Conn given to NewSession) is handshaken
// the same way before the greeting. With ServerConfig.RequireTLS, MAIL,
// RCPT, DATA, VRFY, EXPN and AUTH before TLS get 530 5.7.0.
//
// AUTH: mechanisms PLAIN and LOGIN, advertised and accepted when
// ServerConfig.Auth is set and TLS is active or neither AuthNeedsTLS nor
// RequireTLS is set (before TLS: 538 5.7.11, or 530 5.7.0 with
// RequireTLS). Only after EHLO, outside a transaction, once per session
// (503 5.5.1); another mechanism is 504 5.5.4. The client's responses are
// base64 lines of at most MaxAuthLine octets (longer: 500 5.5.6); "*"
// cancels (501 5.0.0), bad base64 is 501 5.5.2. PLAIN needs exactly three
// NUL-separated fields and an authorization identity that is empty or the
// user's own; an empty user name or password, NUL or invalid UTF-8 in
// them, are refused without asking the AuthFunc: 535 5.7.8. Only a nil
// from the AuthFunc authenticates; its refusal is sent as given. Every
// failure counts as an error for the error limits and is logged as
// "warning: CLIENT: SASL PLAIN authentication failed: REASON" (the shape
// fail2ban's postfix-sasl filter knows); the responses themselves, which
// hold the password, are never logged.
//
// DATA: the message is streamed to the Handler's MessageSink as canonical
// CRLF lines, unstuffed, never held whole in memory (see DataReader). Only
// CRLF "." CRLF ends the data; a bare CR or LF anywhere rejects the
// message with 554 5.6.0 (no SMTP smuggling), a line over LineLimit (the
// stuffing dot not counted, RFC 5321 4.5.3.1.6) with 554 5.6.0 "line too
// long", content (unstuffed, CRLFs counted) over MaxSize with 552 5.3.4; in each
// case the server reads on to the real end, then aborts the sink. Which
// reply wins when several apply: bare CR/LF, then size, then line length,
// then a sink write error (451 4.3.0). Eight-bit octets without
// BODY=8BITMIME are accepted, as Postfix does. A lost connection or a
// timeout in DATA aborts the sink.
//
// Replies: every reply carries an enhanced status code except those RFC
// 2034 exempts (the greeting, the HELO/EHLO reply, 354). Handler replies
// are checked: a bad or missing enhanced code becomes class.0.0, control
// characters (and UTF-8 outside SMTPUTF8 transactions) become '?', lines
// are cut at 512 octets. A Handler reply of 421 is sent and the session
// ends.
//
// Logging (ServerConfig.Logf), in Postfix's words: "connect from",
// "disconnect from ... ehlo=1 mail=1 ... commands=5", "lost connection
// after RCPT from", "timeout after DATA from", "too many errors after",
// "NOQUEUE: reject: RCPT from ...; from=<> to=<> proto=ESMTP helo=<>" for
// refused MAIL, RCPT, DATA and message content, warnings for non-SMTP
// commands, bare CR/LF and improper pipelining after DATA.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"time"

	"postern/internal/address"
)

// ServerConfig is what a server session needs to know. Zero fields take
// the defaults given; NewSession copies it.
type ServerConfig struct {
	Hostname       string        // for the greeting and the EHLO reply; default "localhost"
	Banner         string        // text after "220 "; default Hostname+" ESMTP Postern"
	MaxSize        int64         // message size limit in octets; 0 = no limit
	MaxRecipients  int           // per transaction; default 1000
	Timeout        time.Duration // per command line, DATA line and write; default 300 s
	SessionTimeout time.Duration // whole session; default 1 h
	LineLimit      int           // DATA line limit incl. CRLF; default 2048, at least 1000
	HardErrorLimit int           // errors before 421 and hang up; default 20
	SoftErrorLimit int           // errors before each error reply is delayed; default 10
	ErrorSleep     time.Duration // the delay; default 1 s, negative for none
	SMTPUTF8, DSN  bool          // advertise and accept these extensions

	// TLS, when not nil, makes the server advertise and accept STARTTLS
	// on a connection that is not already TLS. It must hold a
	// certificate (Certificates, GetCertificate or GetConfigForClient);
	// without one STARTTLS is refused with 454 4.7.0. It is used as
	// given, not copied: do not change it while sessions run.
	TLS *tls.Config
	// RequireTLS is Postfix's smtpd_tls_security_level=encrypt: before
	// TLS, MAIL, RCPT, DATA, VRFY, EXPN and AUTH get 530 5.7.0 and AUTH
	// is not advertised.
	RequireTLS bool
	// Auth, when not nil, makes the server advertise AUTH PLAIN LOGIN
	// and accept AUTH (RFC 4954).
	Auth AuthFunc
	// AuthNeedsTLS is smtpd_tls_auth_only: before TLS, AUTH is not
	// advertised and is refused with 538 5.7.11.
	AuthNeedsTLS bool

	// Logf receives one line per event; nil discards them.
	Logf func(format string, args ...any)
}

func (c *ServerConfig) withDefaults() ServerConfig {
	var cfg ServerConfig
	if c != nil {
		cfg = *c
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Banner == "" {
		cfg.Banner = cfg.Hostname + " ESMTP Postern"
	}
	if cfg.MaxSize < 0 {
		cfg.MaxSize = 0
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 1000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 300 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = time.Hour
	}
	if cfg.LineLimit <= 0 {
		cfg.LineLimit = DefaultLineLimit
	} else if cfg.LineLimit < MinLineLimit {
		cfg.LineLimit = MinLineLimit
	}
	if cfg.HardErrorLimit <= 0 {
		cfg.HardErrorLimit = 20
	}
	if cfg.SoftErrorLimit <= 0 {
		cfg.SoftErrorLimit = 10
	}
	if cfg.ErrorSleep == 0 {
		cfg.ErrorSleep = time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return cfg
}

// MailParams are the MAIL FROM parameters, checked.
type MailParams struct {
	Size     int64  // SIZE=, 0 when not given
	Body     string // "7BIT" or "8BITMIME"; "" when not given
	SMTPUTF8 bool
	Ret      string // "FULL" or "HDRS"; "" when not given
	EnvID    string // ENVID=, xtext-decoded
}

// RcptParams are the RCPT TO parameters, checked.
type RcptParams struct {
	Notify []string // NOTIFY=: "NEVER" alone, or some of "SUCCESS", "FAILURE", "DELAY"
	ORcpt  string   // ORCPT=: addr-type ";" address, the address xtext-decoded, e.g. "rfc822;bob@example.org"
}

// Handler makes the policy decisions of one session. The Session calls it
// from the goroutine that runs Serve, one call at a time.
type Handler interface {
	// Hello is called for HELO (extended false) and EHLO. nil or a 2xx
	// reply accepts (the server sends its own reply, with the
	// extensions); a 4xx/5xx reply refuses and the previous HELO/EHLO,
	// if any, stays in force. Any transaction is reset before.
	Hello(heloName string, extended bool) *Reply
	// Mail is called for a syntactically valid MAIL FROM. nil accepts
	// with 250 2.1.0, a 2xx reply accepts with that reply, a 4xx/5xx
	// refuses.
	Mail(from address.Address, p MailParams) *Reply
	// Rcpt is called for a syntactically valid RCPT TO within the
	// recipient limit; to may be a bare postmaster (Domain ""). As Mail;
	// the default accepting reply is 250 2.1.5.
	Rcpt(to address.Address, p RcptParams) *Reply
	// Data is called at DATA after at least one accepted recipient; it
	// returns a sink (the reply is then ignored) or a refusal.
	Data() (MessageSink, *Reply)
	// Reset ends the transaction: at RSET, HELO/EHLO, after each
	// DATA (whatever the outcome) and at the end of the session. It may
	// be called when no transaction is open.
	Reset()
}

// MessageSink receives one message's content.
type MessageSink interface {
	// Write receives canonical CRLF lines as they arrive, unstuffed,
	// without the final ".". Writes stop after the first error.
	io.Writer
	// Commit is called when the end of data was seen and all is well;
	// it returns the final reply (e.g. 250 2.0.0 Ok: queued as ID), nil
	// meaning 250 2.0.0 Ok. The server sends it.
	Commit() *Reply
	// Abort is called instead of Commit when the content is refused or
	// the session failed during DATA (bare CR/LF, too big, line too
	// long, write error, timeout, lost connection, shutdown).
	Abort(reason string)
}

// AuthFunc checks a login. It returns nil on success, or the reply to send
// (535 5.7.8 Error: authentication failed, 454 4.7.0 temporary failure, ...).
// identity is the authorization identity of PLAIN: empty, or equal to
// user (the engine refuses any other before calling). user and password
// are never empty. It is called from the goroutine that runs Serve; ctx
// is Serve's. A reply that is not 4xx or 5xx is taken as a temporary
// failure (454 4.7.0), never as a success; a 421 ends the session.
type AuthFunc func(ctx context.Context, identity, user, password string) *Reply

// TLSObserver may be implemented by a Handler: TLSStarted is called after
// each successful TLS handshake, STARTTLS or implicit. After STARTTLS the
// session has forgotten HELO/EHLO and any AUTH (RFC 3207 4.2); a Handler
// that keeps state from Hello or Authenticated must forget it too.
type TLSObserver interface {
	TLSStarted(state *tls.ConnectionState)
}

// AuthObserver may be implemented by a Handler: Authenticated is called
// after a successful AUTH, before the 235 reply is sent.
type AuthObserver interface {
	Authenticated(user string)
}

// Errors that Serve returns; test with errors.Is. A client's QUIT, a
// non-SMTP client that was hung up on and a handler's 421 return nil; a
// cancelled context returns the context's error. A failed TLS handshake
// returns ErrTLSHandshake, which also matches ErrTimeout when the
// handshake timed out.
var (
	ErrTimeout        = errors.New("timeout")
	ErrLostConnection = errors.New("lost connection")
	ErrTooManyErrors  = errors.New("too many errors")
	ErrTLSHandshake   = errors.New("TLS handshake failed")
)
