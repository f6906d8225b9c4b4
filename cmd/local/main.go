// Command local delivers mail for local and virtual mailboxes (DESIGN.md
// §4): qmgr hands it a queue file descriptor and a list of recipients over
// private/local; it expands aliases (alias_maps) for users of
// mydestination, finds each mailbox (~/Maildir/ of a system user, or
// virtual_mailbox_base plus the virtual_mailbox_maps entry) and writes the
// message into it as the mailbox's owner, then answers with one status per
// recipient.
//
// Privilege: runs as mail_owner with no groups, keeping only CAP_SETUID
// and CAP_SETGID (not uid 0 as DESIGN.md first said: as root it would own,
// and so could read, every root file of mode 0600/0640 — TLS keys, the
// passwd-file, /etc/shadow — capabilities or not). Each
// write happens on a locked thread whose filesystem ids are the mailbox
// owner's (privsep.AsUser), so permission checks are the owner's, files
// belong to the owner, and no capability overrides a permission. It reads
// the message only through the descriptor it is handed.
//
// Limits and failure modes:
//   - alias expansion is at most maxAliasDepth deep and stops at a loop;
//   - a message that already carries "Delivered-To: <this recipient>" is a
//     forwarding loop and bounces (5.4.6);
//   - a mailbox that cannot be written (permissions, full disk, a symlink
//     where Maildir expects a directory) defers the recipient (4.2.0), so
//     the message waits in the queue until the administrator fixes it;
//   - the same mailbox reached twice for one message gets one copy.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postern/internal/address"
	"postern/internal/authclient"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/maildir"
	"postern/internal/passwd"
	"postern/internal/privsep"
	"postern/internal/queue"
	"postern/internal/route"
	"postern/internal/service"
)

const maxAliasDepth = 20

type local struct {
	route    *route.Resolver
	hostname string
	timeout  time.Duration
	d        *service.Daemon
}

func main() {
	d := service.Init("local")
	users, err := passwd.Load("/etc/passwd", "/etc/group")
	if err != nil {
		d.Fatalf("%v", err)
	}
	rt, err := route.New(d.Config, users)
	if err != nil {
		d.Fatalf("%v", err)
	}
	l := &local{route: rt, hostname: d.Config.Get("myhostname"), timeout: d.Config.Duration("ipc_timeout"), d: d}
	if len(d.Config.List("auth_passwd_file")) > 0 {
		// Users of the credential database are mailbox users too; only
		// auth reads that file, so ask it. private/ belongs to mail_owner:
		// connect with that account's filesystem ids, which is all local
		// may borrow (it holds no capability that bypasses permissions).
		uid, gid := os.Getuid(), os.Getgid()
		if os.Geteuid() == 0 {
			u, ok := users.User(d.Config.Get("mail_owner"))
			if !ok {
				d.Fatalf("mail_owner %s: no such user", d.Config.Get("mail_owner"))
			}
			uid, gid = u.UID, u.GID
		}
		sock := filepath.Join(d.Config.Get("queue_directory"), "private", "auth")
		rt.SetUserDB(&authclient.Client{Timeout: 30 * time.Second, Dial: func() (*ipc.Conn, error) {
			var c *ipc.Conn
			err := privsep.AsUser(uid, gid, func() error {
				var err error
				c, err = ipc.Dial(sock, 10*time.Second)
				return err
			})
			return c, err
		}})
	}
	d.Drop(privsep.CapSetuid, privsep.CapSetgid)
	d.ServeRequests(d.Service.MaxProc, 1<<20, func(_ context.Context, req *ipc.Msg, files []*os.File) *ipc.Msg {
		return l.request(req, files)
	})
}

// request delivers one message to the recipients qmgr listed.
func (l *local) request(req *ipc.Msg, files []*os.File) *ipc.Msg {
	id := req.Get("queue_id")
	if req.Get("op") != "deliver" || !queue.ValidID(id) || len(files) != 1 {
		log.Warnf("bad request from qmgr: op=%q queue_id=%q files=%d", req.Get("op"), id, len(files))
		return nil
	}
	qf, err := queue.Open(files[0])
	if err != nil {
		log.Errorf("%s: queue file: %v", id, err)
		return nil
	}
	arrival := time.Unix(0, qf.Envelope().Arrival.UnixNano())
	dl := &delivery{l: l, id: id, qf: qf, sender: qf.Envelope().Sender, arrival: arrival, seen: map[string]bool{}}
	dl.loopCheck()
	resp := ipc.NewMsg()
	ix, rcpts := req.All("rcpt_index"), req.All("rcpt")
	for k := range rcpts {
		if k >= len(ix) {
			break
		}
		st := dl.recipient(rcpts[k])
		resp.Add("rcpt_index", ix[k])
		resp.Add("status", st.status)
		resp.Add("dsn", st.dsn)
		resp.Add("reason", st.reason)
	}
	return resp
}

type status struct{ status, dsn, reason string }

func sent(why string) status          { return status{"sent", "2.0.0", why} }
func deferred(dsn, why string) status { return status{"defer", dsn, why} }
func bounced(dsn, why string) status  { return status{"bounce", dsn, why} }

// worse picks the status that decides for a recipient that expanded to
// several mailboxes: any deferral means the whole recipient is retried.
func worse(a, b status) status {
	rank := map[string]int{"sent": 0, "bounce": 1, "defer": 2}
	if rank[b.status] > rank[a.status] {
		return b
	}
	return a
}

type delivery struct {
	l       *local
	id      string
	qf      *queue.File
	sender  string
	arrival time.Time
	seen    map[string]bool // mailboxes already written for this message
	looped  map[string]bool // Delivered-To values already in the message
}

// loopCheck reads the message's Delivered-To headers (bounded).
func (dl *delivery) loopCheck() {
	dl.looped = map[string]bool{}
	br := bufio.NewReader(io.LimitReader(dl.qf.Message(), 1<<20))
	for {
		line, err := br.ReadString('\n')
		t := strings.TrimRight(line, "\r\n")
		if t == "" {
			return
		}
		if name, val, ok := strings.Cut(t, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "delivered-to") {
			dl.looped[strings.ToLower(strings.TrimSpace(val))] = true
		}
		if err != nil {
			return
		}
	}
}

func (dl *delivery) recipient(rcpt string) status {
	a, err := address.Parse(rcpt, true)
	if err != nil {
		return bounced("5.1.3", "bad recipient address syntax")
	}
	return dl.resolve(a, a, 0)
}

func (dl *delivery) log(orig, to address.Address, st status) {
	o := ""
	if orig != to {
		o = fmt.Sprintf(", orig_to=<%s>", orig)
	}
	word := map[string]string{"sent": "sent", "defer": "deferred", "bounce": "bounced"}[st.status]
	log.Infof("%s: to=<%s>%s, relay=local, delay=%.2f, dsn=%s, status=%s (%s)",
		dl.id, to, o, time.Since(dl.arrival).Seconds(), st.dsn, word, st.reason)
}

func (dl *delivery) resolve(orig, a address.Address, depth int) status {
	if depth > maxAliasDepth {
		st := bounced("5.4.6", "alias expansion too deep (loop?)")
		dl.log(orig, a, st)
		return st
	}
	switch dl.l.route.Classify(a) {
	case route.Local:
		return dl.localUser(orig, a, depth)
	case route.Virtual:
		mb, err := dl.l.route.VirtualMailbox(a)
		if err != nil {
			if strings.EqualFold(a.Local, "postmaster") {
				return dl.resolve(orig, address.Address{Local: "postmaster", Domain: dl.l.route.MyHostname()}, depth+1)
			}
			st := bounced("5.1.1", err.Error())
			if !strings.Contains(err.Error(), "not in virtual_mailbox_maps") {
				st = deferred("4.3.0", err.Error())
			}
			dl.log(orig, a, st)
			return st
		}
		return dl.mailbox(orig, a, mb)
	}
	st := bounced("5.1.2", "not a local or virtual domain")
	dl.log(orig, a, st)
	return st
}

func (dl *delivery) localUser(orig, a address.Address, depth int) status {
	user := strings.ToLower(a.Local)
	if targets, ok := dl.l.route.Alias(user); ok {
		st := status{"sent", "2.0.0", "alias expanded"}
		for _, t := range targets {
			st = worse(st, dl.aliasTarget(orig, a, user, t, depth))
		}
		return st
	}
	if user == "postmaster" {
		user = "root"
	}
	mb, err := dl.l.route.LocalMailbox(user)
	if err != nil {
		st := bounced("5.1.1", "unknown user: \""+user+"\"")
		dl.log(orig, a, st)
		return st
	}
	return dl.mailbox(orig, a, mb)
}

func (dl *delivery) aliasTarget(orig, a address.Address, user, t string, depth int) status {
	t = strings.Trim(t, "\"")
	switch {
	case strings.HasPrefix(t, "|"), strings.HasPrefix(t, "/"), strings.HasPrefix(strings.ToLower(t), ":include:"):
		st := bounced("5.3.0", "alias "+user+": command, file and :include: targets are not supported yet")
		dl.log(orig, a, st)
		return st
	}
	var ta address.Address
	if strings.Contains(t, "@") {
		p, err := address.Parse(t, true)
		if err != nil {
			st := bounced("5.1.3", "alias "+user+": bad address "+t)
			dl.log(orig, a, st)
			return st
		}
		ta = p
	} else {
		ta = address.Address{Local: t, Domain: a.Domain}
	}
	if dl.l.route.Classify(ta) == route.Remote {
		st := bounced("5.3.0", "alias "+user+": forwarding to a remote address ("+ta.String()+") is not supported yet")
		dl.log(orig, a, st)
		return st
	}
	// An alias that names its own user means that user's mailbox.
	if strings.EqualFold(ta.Local, user) && dl.l.route.Classify(ta) == route.Local {
		mb, err := dl.l.route.LocalMailbox(user)
		if err != nil {
			st := bounced("5.1.1", "unknown user: \""+user+"\"")
			dl.log(orig, ta, st)
			return st
		}
		return dl.mailbox(orig, ta, mb)
	}
	return dl.resolve(orig, ta, depth+1)
}

func (dl *delivery) mailbox(orig, to address.Address, mb route.Mailbox) status {
	if dl.looped[strings.ToLower(to.String())] {
		st := bounced("5.4.6", "mail forwarding loop for "+to.String())
		dl.log(orig, to, st)
		return st
	}
	if dl.seen[mb.Path] {
		return sent("duplicate suppressed")
	}
	if !mb.Maildir {
		st := deferred("4.3.0", "mailbox "+mb.Path+" is not a Maildir (no trailing slash); mbox delivery is not supported yet")
		dl.log(orig, to, st)
		return st
	}
	prefix := fmt.Sprintf("Return-Path: <%s>\nDelivered-To: %s\n", dl.sender, to)
	msg := dl.qf.Message()
	var name string
	err := privsep.AsUser(mb.UID, mb.GID, func() error {
		dir := strings.TrimSuffix(mb.Path, "/")
		d := &maildir.Delivery{Dir: dir, Hostname: dl.l.hostname, Create: true}
		var err error
		name, err = d.Deliver([]byte(prefix), io.NewSectionReader(msg, 0, msg.Size()))
		if err != nil && errors.Is(err, os.ErrNotExist) {
			// A new virtual mailbox: make its parents (as the owner, so
			// the owner must be able to write virtual_mailbox_base).
			if merr := os.MkdirAll(filepath.Dir(dir), 0o700); merr != nil {
				return fmt.Errorf("create %s: %w", filepath.Dir(dir), merr)
			}
			name, err = d.Deliver([]byte(prefix), io.NewSectionReader(msg, 0, msg.Size()))
		}
		return err
	})
	if err != nil {
		st := deferred("4.2.0", "cannot write to maildir "+mb.Path+" as uid "+strconv.Itoa(mb.UID)+": "+err.Error())
		dl.log(orig, to, st)
		return st
	}
	dl.seen[mb.Path] = true
	_ = name
	st := sent("delivered to maildir")
	dl.log(orig, to, st)
	return st
}
