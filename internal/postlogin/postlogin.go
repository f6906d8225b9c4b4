// Package postlogin is the hand-over between a login front end
// (pop3-login, imap-login) and the session that serves a logged-in user
// (pop3d, imapd), DESIGN.md §2 and §4.
//
// Three processes take part:
//
//   - the login front end: unprivileged, chrooted into the spool's login/
//     directory, which holds only the sockets of the session services. It
//     speaks the protocol up to the password and calls Login with the user
//     name and password. It never learns anything about the mailbox.
//   - the acceptor (ServeAcceptor): the pop3d or imapd program run by
//     master as the service login/pop3d or login/imapd, as mail_owner
//     keeping only CAP_SETUID and CAP_SETGID (as local does). It asks auth
//     to check the password itself, so a subverted login process can do no
//     more than any client could: present a password. It finds the
//     mailbox as local does (virtual_mailbox_maps, the user database, or a
//     system user's home_mailbox), counts sessions, and execs the same
//     program as a session with the mailbox owner's uid and gid.
//   - the session (StartSession): runs as the mailbox owner with no
//     capability and no_new_privs, and speaks the protocol on the stream
//     the login front end relays (decrypted) from the client.
//
// Limits and failure modes: a request frame is at most 16 KiB and must
// carry exactly one descriptor; at most mail_session_limit sessions run at
// once and mail_max_userip_connections per user and client address (a
// temporary refusal beyond); auth being unreachable is a temporary
// failure; a mailbox owned by uid 0, or not a Maildir, is refused.
package postlogin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"postern/internal/ipc"
	"postern/internal/queue"
	"postern/internal/service"
)

// Request is what a login front end asks for after the client gave its
// credentials.
type Request struct {
	Service    string // "pop3" or "imap"
	User       string
	Password   string
	Mech       string // "USER", "PLAIN", "LOGIN": for the log
	ClientAddr string // ip:port of the client
	LocalAddr  string
	TLS        bool // the client's connection is encrypted
}

// Result is the acceptor's answer.
type Result struct {
	OK     bool
	Temp   bool   // temporary: auth unavailable, too many sessions
	User   string // canonical user name
	Reason string // short text for the client
	// Code is "AUTH" (wrong credentials), "SYS/TEMP" (try later) or
	// "LIMIT" (too many sessions).
	Code string
}

// Result codes.
const (
	CodeAuth  = "AUTH"
	CodeTemp  = "SYS/TEMP"
	CodeLimit = "LIMIT"
)

// maxFrame bounds a request: a user name, a password and addresses.
const maxFrame = 16 << 10

// SocketPath is where the acceptor named svc ("pop3d" or "imapd")
// listens, as this process sees it: inside the login/ chroot or not.
func SocketPath(d *service.Daemon, svc string) string {
	if d.Chrooted() {
		return "/" + svc
	}
	return filepath.Join(d.Config.Get("queue_directory"), queue.Login, svc)
}

// Login sends req to the acceptor at sock. On res.OK, session is the
// stream to the new session process; the caller relays the client to it.
// err is set only when the acceptor could not be asked (then res is a
// temporary failure too, ready to be shown to the client).
func Login(ctx context.Context, sock string, req Request) (net.Conn, Result, error) {
	temp := Result{Temp: true, Code: CodeTemp, Reason: "Service temporarily unavailable"}
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c, err := ipc.Dial(sock, time.Until(deadline))
	if err != nil {
		return nil, temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	defer c.Close()
	mine, theirs, err := socketpair()
	if err != nil {
		return nil, temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	defer theirs.Close()
	tls := "no"
	if req.TLS {
		tls = "yes"
	}
	m := ipc.NewMsg("op", "login", "service", req.Service, "user", req.User, "password", req.Password,
		"mech", req.Mech, "client_addr", req.ClientAddr, "local_addr", req.LocalAddr, "tls", tls)
	c.SetDeadline(deadline)
	if err := c.Send(m, theirs); err != nil {
		mine.Close()
		return nil, temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	theirs.Close()
	resp, files, err := c.Recv(time.Until(deadline))
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		mine.Close()
		return nil, temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	res := Result{User: resp.Get("user"), Reason: resp.Get("reason"), Code: resp.Get("code")}
	switch resp.Get("status") {
	case "ok":
		res.OK = true
	case "fail":
	default:
		res.Temp = true
	}
	if !res.OK {
		mine.Close()
		if res.Reason == "" {
			res.Reason = "Authentication failed"
		}
		return nil, res, nil
	}
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, temp, fmt.Errorf("session stream: %w", err)
	}
	return conn, res, nil
}

// Relay copies bytes both ways between client and session until one side
// closes, or no byte has passed either way for idle (0: no limit). It
// closes both and returns the error that ended it, nil for a clean close.
func Relay(client, session net.Conn, idle time.Duration) error {
	var mu sync.Mutex
	last := time.Now()
	touch := func() {
		mu.Lock()
		last = time.Now()
		mu.Unlock()
	}
	errc := make(chan error, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				touch()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					errc <- werr
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errc <- err
				return
			}
		}
	}
	go pipe(session, client)
	go pipe(client, session)
	var timer <-chan time.Time
	var t *time.Ticker
	if idle > 0 {
		t = time.NewTicker(min(idle/4+time.Millisecond, 10*time.Second))
		defer t.Stop()
		timer = t.C
	}
	for {
		select {
		case err := <-errc:
			client.Close()
			session.Close()
			<-errc
			return err
		case <-timer:
			mu.Lock()
			quiet := time.Since(last)
			mu.Unlock()
			if quiet > idle {
				client.Close()
				session.Close()
				<-errc
				<-errc
				return fmt.Errorf("idle for %s", idle)
			}
		}
	}
}
