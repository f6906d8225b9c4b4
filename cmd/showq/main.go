// Command showq lists the mail queue for local users (Postfix's showq):
// mailq(1) and `sendmail -bp` reach it through postern-drop on
// public/showq, since the queue directories themselves are open to
// mail_owner only. The listing is the one `postern queue list` writes
// (queue.WriteListing), so the two agree byte for byte.
//
// Protocol: one request per connection, ipc attributes op=list and
// format=text|json (default text); the answer is status=ok with
// output=<the listing>, or status=error with reason=<text>.
//
// Authorisation: the peer's uid, from SO_PEERCRED (the kernel's word, not
// the client's). Root, mail_owner and the users in authorised_mailq_users
// (user names or uids; "static:anyone", the default as Postfix's
// authorized_mailq_users, means everybody) see the whole queue; anyone
// else sees only the messages they submitted themselves (the queue file's
// uid record, written for local submissions). Names are resolved at start
// from /etc/passwd; an unknown name is logged and ignored.
//
// Privilege: mail_owner, chrooted into the queue directory, no
// capabilities (DESIGN.md §2); it only reads queue files.
//
// Limits and failure modes: at most maxConns clients at once; a request
// frame is at most 4 KiB and must arrive within 10 s, and the answer must
// be taken within 60 s; the output is capped at
// maxOutput bytes (so that the answer fits a default 1 MiB ipc frame),
// with a last line "-- N more messages not shown"; an unreadable queue
// file is skipped with a warning. A malformed request gets a status=error
// answer and a log line, never a crash.
package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/passwd"
	"postern/internal/queue"
	"postern/internal/service"
)

const (
	// maxRequest is the largest request frame read.
	maxRequest = 4 << 10
	// maxOutput caps the listing so that the whole answer stays within
	// ipc.DefaultMaxFrame, the limit of a client that dials with the
	// defaults.
	maxOutput = ipc.DefaultMaxFrame - 4<<10
	// maxConns bounds concurrent listings (each reads the whole queue).
	maxConns = 20
	// requestTimeout and answerTimeout bound how long a client may hold
	// one of the maxConns slots (not ipc_timeout, an hour by default,
	// which is for daemons that trust each other).
	requestTimeout = 10 * time.Second
	answerTimeout  = 60 * time.Second
)

// policy says who may see the whole queue.
type policy struct {
	anyone bool
	uids   map[uint32]bool // root always, mail_owner once main adds it
}

// parsePolicy reads authorised_mailq_users: a list of user names, uids
// and "static:anyone". lookup resolves a name to a uid; names it does not
// know come back as warnings. An empty list is Postfix's default,
// static:anyone.
func parsePolicy(list []string, lookup func(string) (uint32, bool)) (*policy, []string) {
	p := &policy{uids: map[uint32]bool{0: true}}
	if len(list) == 0 {
		p.anyone = true
		return p, nil
	}
	var warn []string
	for _, e := range list {
		switch {
		case e == "static:anyone":
			p.anyone = true
		case isDigits(e):
			n, err := strconv.ParseUint(e, 10, 32)
			if err != nil {
				warn = append(warn, fmt.Sprintf("authorised_mailq_users: bad uid %q", e))
				continue
			}
			p.uids[uint32(n)] = true
		default:
			uid, ok := lookup(e)
			if !ok {
				warn = append(warn, fmt.Sprintf("authorised_mailq_users: no such user %q, ignored", e))
				continue
			}
			p.uids[uid] = true
		}
	}
	return p, warn
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// allowed reports whether uid sees the whole queue.
func (p *policy) allowed(uid uint32) bool { return p.anyone || p.uids[uid] }

// answer handles one request from uid against the spool.
func answer(req *ipc.Msg, uid uint32, p *policy, spool string) *ipc.Msg {
	if op := req.Get("op"); op != "list" {
		log.Warnf("request from uid=%d: unknown op %.40q", uid, log.Clean(op))
		return ipc.NewMsg("status", "error", "reason", "unknown request")
	}
	var js bool
	switch f := req.Get("format"); f {
	case "", "text":
	case "json":
		js = true
	default:
		log.Warnf("request from uid=%d: unknown format %.40q", uid, log.Clean(f))
		return ipc.NewMsg("status", "error", "reason", "unknown format (text or json)")
	}
	o := queue.ListOptions{
		JSON:     js,
		MaxBytes: maxOutput,
		Warn: func(dir string, id queue.ID, err error) {
			log.Warnf("%s: %s/: %v", id, dir, err)
		},
	}
	if !p.allowed(uid) {
		own := strconv.FormatUint(uint64(uid), 10)
		o.Filter = func(env *queue.Envelope) bool { return env.UID == own }
	}
	var out bytes.Buffer
	if err := queue.WriteListing(&out, spool, o); err != nil {
		log.Errorf("listing for uid=%d: %v", uid, err)
		return ipc.NewMsg("status", "error", "reason", "cannot read the queue")
	}
	return ipc.NewMsg("status", "ok", "output", out.String())
}

// peerUID returns the uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

func main() {
	d := service.Init("showq")
	cfg := d.Config
	p := loadPolicy(cfg)
	d.Drop()
	// After Drop our uid is mail_owner's (or the one user of an
	// unprivileged run): that user sees everything.
	p.uids[uint32(unix.Getuid())] = true
	spool := "."
	if !d.Service.Chroot {
		spool = cfg.Get("queue_directory")
	}
	d.Serve(maxConns, func(ctx context.Context, nc net.Conn) {
		defer nc.Close()
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			return
		}
		uid, err := peerUID(uc)
		if err != nil {
			log.Warnf("peer credentials: %v", err)
			return
		}
		c := ipc.NewConn(uc, maxRequest)
		c.SetMaxFiles(0)
		req, _, err := c.Recv(requestTimeout)
		if err != nil {
			log.Warnf("request from uid=%d: %v", uid, err)
			return
		}
		// The answer may be up to a default frame long, the request only
		// maxRequest: a second Conn on the same socket sends it (the
		// first is done reading: one request per connection).
		w := ipc.NewConn(uc, ipc.DefaultMaxFrame)
		w.SetWriteDeadline(time.Now().Add(answerTimeout))
		if err := w.Send(answer(req, uid, p, spool)); err != nil {
			log.Warnf("answer to uid=%d: %v", uid, err)
		}
	})
}

// loadPolicy reads authorised_mailq_users while /etc/passwd is still in
// reach (before the chroot).
func loadPolicy(cfg *config.Config) *policy {
	list := cfg.List("authorised_mailq_users")
	var db *passwd.DB
	lookup := func(name string) (uint32, bool) {
		if db == nil {
			var err error
			if db, err = passwd.Load("/etc/passwd", "/etc/group"); err != nil {
				log.Warnf("authorised_mailq_users: %v", err)
				return 0, false
			}
		}
		u, ok := db.User(strings.TrimSpace(name))
		if !ok || u.UID < 0 {
			return 0, false
		}
		return uint32(u.UID), true
	}
	p, warn := parsePolicy(list, lookup)
	for _, w := range warn {
		log.Warnf("%s", w)
	}
	return p
}
