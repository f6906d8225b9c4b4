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
//     the login front end relays (decrypted) from the client (Login,
//     Relay), or, for a plaintext client, on the client's own connection,
//     which the front end handed over with the request (Handoff): then no
//     process copies the bytes in between, and each command costs no
//     extra hop.
//
// Limits and failure modes: a request frame is at most 16 KiB and must
// carry exactly one descriptor; a handoff carries at most 8 KiB of
// pipelined input and never a TLS client; at most mail_session_limit sessions run at
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
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	// Tag, on a Handoff, is the tag of the IMAP command that logged in:
	// the session answers it (Session.Tag) in place of the login front
	// end. Empty for POP3.
	Tag string
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
	mine, theirs, err := socketpair()
	if err != nil {
		return nil, temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	res, err := ask(ctx, sock, req, theirs, false, nil)
	if err != nil || !res.OK {
		mine.Close()
		return nil, res, err
	}
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, temp, fmt.Errorf("session stream: %w", err)
	}
	return conn, res, nil
}

// CanHandoff reports whether c can be handed to a session with Handoff:
// it must be a socket with a descriptor (a TCP or Unix stream). A TLS
// connection never qualifies (the session must not get the keys, and
// could not read the records anyway).
func CanHandoff(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// Handoff is Login for a plaintext client connection, as Dovecot does it:
// instead of a stream to relay, the acceptor gets a duplicate of the
// client's own descriptor and the session talks to the client directly,
// so no login process copies every byte and no extra hop adds latency to
// every command. pending are octets the client sent after its login that
// the caller read already (at most 8 KiB): the session reads them first.
//
// On res.OK the session owns the client and has written (or will write)
// its first line to it; the caller closes its own copy of client and
// forgets it. Otherwise client is untouched and the caller answers it.
// err is set only when the acceptor could not be asked, or did not answer
// (ErrMaybeHandedOff: then the caller gives the client up).
func Handoff(ctx context.Context, sock string, req Request, client net.Conn, pending []byte) (Result, error) {
	temp := Result{Temp: true, Code: CodeTemp, Reason: "Service temporarily unavailable"}
	if !CanHandoff(client) || req.TLS {
		return temp, fmt.Errorf("session service %s: a %T cannot be handed off", sock, client)
	}
	if len(pending) > maxPending {
		return temp, fmt.Errorf("session service %s: %d octets pipelined after login (at most %d)", sock, len(pending), maxPending)
	}
	f, err := client.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return temp, fmt.Errorf("session service %s: client descriptor: %w", sock, err)
	}
	return ask(ctx, sock, req, f, true, pending)
}

// ErrMaybeHandedOff is in the error of a Handoff whose request reached
// the acceptor but whose answer did not come: a session may have started
// on the client's connection. The caller must not read from or write to
// the client any more; it closes its copy and lets the session (if any)
// speak.
var ErrMaybeHandedOff = errors.New("the client may be with a session")

// maxPending bounds the octets a handed-off client pipelined behind its
// login: the login front ends' line buffers are smaller.
const maxPending = 8 << 10

// ask sends the login request with stream (closed here) and reads the
// acceptor's answer. On a handoff stream is the client's own connection
// and pending what it pipelined.
func ask(ctx context.Context, sock string, req Request, stream *os.File, handoff bool, pending []byte) (Result, error) {
	defer stream.Close()
	temp := Result{Temp: true, Code: CodeTemp, Reason: "Service temporarily unavailable"}
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c, err := ipc.Dial(sock, time.Until(deadline))
	if err != nil {
		return temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	defer c.Close()
	tls := "no"
	if req.TLS {
		tls = "yes"
	}
	m := ipc.NewMsg("op", "login", "service", req.Service, "user", req.User, "password", req.Password,
		"mech", req.Mech, "client_addr", req.ClientAddr, "local_addr", req.LocalAddr, "tls", tls)
	if handoff {
		m.Add("stream", "client").Add("pending", string(pending)).Add("tag", req.Tag)
	}
	c.SetDeadline(deadline)
	if err := c.Send(m, stream); err != nil {
		return temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	// Our copy must be gone before the session ends, or a handed-off
	// client would not see the connection close.
	stream.Close()
	resp, files, err := c.Recv(time.Until(deadline))
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		if handoff {
			return temp, fmt.Errorf("session service %s: %w: %w", sock, ErrMaybeHandedOff, err)
		}
		return temp, fmt.Errorf("session service %s: %w", sock, err)
	}
	res := Result{User: resp.Get("user"), Reason: resp.Get("reason"), Code: resp.Get("code")}
	switch resp.Get("status") {
	case "ok":
		res.OK = true
	case "fail":
	default:
		res.Temp = true
	}
	if !res.OK && res.Reason == "" {
		res.Reason = "Authentication failed"
	}
	return res, nil
}

// Relay copies bytes both ways between client and session until one side
// closes, or no byte has passed either way for idle (0: no limit). It
// closes both and returns the error that ended it, nil for a clean close.
func Relay(client, session net.Conn, idle time.Duration) error {
	// The time of the last transfer, for the idle check: an atomic
	// store per transfer, no lock shared by the two directions.
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	errc := make(chan error, 2)
	pipe := func(dst, src net.Conn, size int) {
		buf := make([]byte, size)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if idle > 0 {
					last.Store(time.Now().UnixNano())
				}
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
	// Commands are small; replies (message bodies) are not: a larger
	// buffer that way takes a big FETCH or RETR in fewer writes.
	go pipe(session, client, 16<<10)
	go pipe(client, session, 64<<10)
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
			if quiet := time.Since(time.Unix(0, last.Load())); quiet > idle {
				client.Close()
				session.Close()
				<-errc
				<-errc
				return fmt.Errorf("idle for %s", idle)
			}
		}
	}
}

// FirstLine reads the session's first line (its greeting, or a refusal)
// byte by byte, so that nothing after it is taken from the stream the
// login process relays; max bounds it. The line ends are removed.
func FirstLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return strings.TrimSuffix(string(b), "\r"), nil
			}
			b = append(b, one[0])
			continue
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("session's first line longer than %d octets", max)
}
