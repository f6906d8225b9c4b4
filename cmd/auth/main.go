// Command auth checks passwords for smtpd (SASL PLAIN and LOGIN) and for
// the POP3 and IMAP login processes, and tells smtpd and local which
// virtual users exist and where their mailboxes are (DESIGN.md §2, §4).
// It reads the passwd-files of auth_passwd_file (Dovecot's format, see
// package auth) once, as root, before it drops privilege, and keeps them
// in memory; master restarts it on reload.
//
// Protocol, on private/auth: one ipc frame per request, one per answer,
// any number of requests per connection, one at a time.
//
//	op=login service=smtp|pop3|imap user=U password=P client_addr=A
//	  -> status=ok user=CANONICAL uid=N gid=N home=DIR mail=MAILDIR/
//	  -> status=fail reason=TEXT       wrong password, unknown user, ...
//	  -> status=tempfail reason=TEXT   rate limited, shutting down, bad request
//	op=lookup user=U
//	  -> status=ok user=CANONICAL uid=N gid=N home=DIR mail=MAILDIR/
//	  -> status=nouser
//
// uid, gid, home and mail are empty when the passwd-file does not give
// them (mail: no home and no mail= field). client_addr may be empty (a
// client without an address). reason is for the caller's log; it says
// the same for every kind of failure, so that passing it on to a client
// reveals nothing; the details are in this daemon's log. A hash is never
// sent.
//
// Privilege: mail_owner, not chrooted (the configuration's services.conf
// line is "auth unix y - n - - auth"), no capabilities, and nothing read
// from disk after the start.
//
// Limits and failure modes:
//   - a request frame is at most 16 KiB; a malformed frame closes the
//     connection, an unknown op or a service other than smtp, pop3 and
//     imap gets a tempfail (a bug in the caller, not the user's fault);
//   - failed logins are answered after auth_failure_delay, and after
//     auth_failure_limit of them within auth_failure_window, per client
//     address and per user, further logins get a tempfail without any
//     password being checked (package auth);
//   - at most one password hash per CPU is computed at a time; other
//     logins wait, so a flood makes logins slow, not the host;
//   - a passwd-file that cannot be read or has any error stops the
//     daemon at start with every error, file:line: a half-read credential
//     database would lock out users silently;
//   - the password is never logged; the user name is, cleaned of control
//     characters and cut at 320 bytes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"postern/internal/auth"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/service"
)

// maxFrame bounds a request: a user name, a password and a few short
// attributes.
const maxFrame = 16 << 10

// Reasons sent back; the log has the details.
const (
	reasonFail     = "authentication failed"
	reasonTempFail = "temporary authentication failure, try again later"
)

type server struct {
	a       *auth.Authenticator
	timeout time.Duration // idle connection and write limit
	// next waits for a request: service.Daemon.Next in the daemon, so a
	// drain ends idle connections; Conn.Recv in tests.
	next func(c *ipc.Conn, idle time.Duration) (*ipc.Msg, []*os.File, error)
}

func main() {
	d := service.Init("auth")
	files := d.Config.List("auth_passwd_file")
	db, err := auth.Load(files...)
	if err != nil {
		lines := strings.Split(err.Error(), "\n")
		for _, l := range lines {
			log.Errorf("%s", l)
		}
		d.Fatalf("cannot read auth_passwd_file (%d problems above); no login can be checked", len(lines))
	}
	for _, w := range db.Warnings() {
		log.Warnf("%s", w)
	}
	if len(files) == 0 {
		log.Warnf("auth_passwd_file is empty: every login fails and no virtual user exists")
	}
	a, err := auth.NewAuthenticator(db, auth.Config{
		FailureDelay:  d.Config.Duration("auth_failure_delay"),
		FailureLimit:  int(d.Config.Int("auth_failure_limit")),
		FailureWindow: d.Config.Duration("auth_failure_window"),
	})
	if err != nil {
		d.Fatalf("%v", err)
	}
	d.Drop()
	log.Infof("%d users from %s", db.Len(), strings.Join(files, ", "))
	s := &server{a: a, timeout: d.Config.Duration("ipc_timeout"), next: d.Next}
	d.Serve(d.Service.MaxProc, s.handle)
}

func (s *server) handle(ctx context.Context, nc net.Conn) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return
	}
	c := ipc.NewConn(uc, maxFrame)
	c.SetMaxFiles(0)
	defer c.Close()
	for {
		req, files, err := s.next(c, s.timeout)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				log.Warnf("read request: %v", err)
			}
			return
		}
		resp := s.request(ctx, req)
		if s.timeout > 0 {
			c.SetWriteDeadline(time.Now().Add(s.timeout))
		}
		if err := c.Send(resp); err != nil {
			log.Warnf("send answer: %v", err)
			return
		}
	}
}

// request answers one request.
func (s *server) request(ctx context.Context, req *ipc.Msg) *ipc.Msg {
	switch op := req.Get("op"); op {
	case "login":
		return s.login(ctx, req)
	case "lookup":
		u, ok := s.a.Lookup(req.Get("user"))
		if !ok {
			return ipc.NewMsg("status", "nouser")
		}
		return userMsg(u)
	default:
		log.Warnf("bad request: unknown op %q (attributes %s)", clip(op, 32), strings.Join(req.Names(), ","))
		return ipc.NewMsg("status", "tempfail", "reason", "bad request")
	}
}

func (s *server) login(ctx context.Context, req *ipc.Msg) *ipc.Msg {
	svc, user, addr := req.Get("service"), req.Get("user"), req.Get("client_addr")
	who := fmt.Sprintf("user=<%s> client=%s service=%s", clip(user, auth.MaxUserLen), clientName(addr), clip(svc, 16))
	switch svc {
	case "smtp", "pop3", "imap":
	default:
		log.Warnf("bad login request: %s: unknown service", who)
		return ipc.NewMsg("status", "tempfail", "reason", "bad request")
	}
	r := s.a.Login(ctx, user, req.Get("password"), addr)
	switch r.Outcome {
	case auth.OK:
		log.Infof("login ok for %s", who)
		return userMsg(r.User)
	case auth.Fail:
		log.Infof("login failed for %s: %s", who, r.Why)
		return ipc.NewMsg("status", "fail", "reason", reasonFail)
	}
	log.Infof("login refused for %s: %s", who, r.Why)
	return ipc.NewMsg("status", "tempfail", "reason", reasonTempFail)
}

// userMsg is the answer about a user: never the hash.
func userMsg(u *auth.User) *ipc.Msg {
	return ipc.NewMsg("status", "ok", "user", u.Name, "uid", id(u.UID), "gid", id(u.GID), "home", u.Home, "mail", u.Mail)
}

func id(n int) string {
	if n < 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// clientName is the client address as logged: "unknown" when there is
// none.
func clientName(addr string) string {
	if addr == "" {
		return "unknown"
	}
	return clip(addr, 64)
}

// clip cuts s to n bytes and cleans it for a log line.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return log.Clean(s)
}
