// Command local delivers mail for local and virtual mailboxes (DESIGN.md
// §4): qmgr hands it a queue file descriptor and a list of recipients over
// private/local; for users of mydestination it expands aliases
// (alias_maps, with |command, /file, :include:/path and owner-X), reads
// ~/.forward (forward_path), and writes the message into the mailbox
// (~/Maildir/, an mbox in the home directory, or mail_spool_directory/USER
// with dot and fcntl locks), into files, or into commands run through
// /bin/sh; for virtual mailboxes it writes into virtual_mailbox_base plus
// the virtual_mailbox_maps entry. Addresses of other hosts reached by
// forwarding are submitted as a new message through private/cleanup. It
// answers with one status per recipient.
//
// Privilege: runs as mail_owner with no groups, keeping only CAP_SETUID
// and CAP_SETGID (not uid 0 as DESIGN.md first said: as root it would own,
// and so could read, every root file of mode 0600/0640 — TLS keys, the
// passwd-file, /etc/shadow — capabilities or not). Each
// write happens on a locked thread whose filesystem ids are the mailbox
// owner's (privsep.AsUser), so permission checks are the owner's, files
// belong to the owner, and no capability overrides a permission. A
// command is exec'd with SysProcAttr.Credential of its user (which the
// two capabilities allow) and never as root: a root-owned alias table,
// include file or .forward runs its commands and writes its files as
// default_privs. It reads the message only through the descriptor it is
// handed, and .forward and :include: files only as their owner (or the
// user of the expansion that named them), with O_NOFOLLOW.
//
// Limits and failure modes:
//   - alias expansion is at most maxAliasDepth deep; an alias, .forward
//     or :include: file met again on its own expansion path is a loop and
//     bounces (5.4.6 mail forwarding loop);
//   - a message that already carries "Delivered-To: <this recipient>" is a
//     forwarding loop and bounces (5.4.6);
//   - a mailbox that cannot be written (permissions, full disk, a symlink
//     where Maildir expects a directory, an mbox locked for longer than the
//     lock timeout) defers the recipient (4.2.0), so the message waits in
//     the queue until the administrator fixes it;
//   - a .forward (or its home directory) that is group or world writable
//     or owned by someone else, or that is a symlink, is ignored with a
//     warning and the mail goes to the mailbox; one that cannot be read
//     for another reason defers;
//   - commands run at most command_time_limit; their exit status maps to
//     success, deferral or bounce per sysexits.h (see internal/pipe);
//     commands and files are allowed only from the sources named in
//     allow_mail_to_commands and allow_mail_to_files (else 5.7.1);
//   - when one destination of a recipient defers, the whole recipient is
//     tried again later, and destinations that succeeded get the message
//     again (at-least-once, as Postfix);
//   - the same mailbox, file or command reached twice for one message gets
//     one copy.
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
	"postern/internal/config"
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
	users    *passwd.DB
	hostname string
	timeout  time.Duration
	d        *service.Daemon

	delim        string
	defaultPrivs string
	cmdLimit     time.Duration
	allowCmd     map[string]bool // expansion classes: alias, forward, include
	allowFile    map[string]bool
	forwardPath  []string
	ownerSpecial bool
	mailGID      int // group of mail_spool_directory's dot locks; -1 none

	// mail_owner's ids, to reach private/ sockets (auth, cleanup).
	ownerUID, ownerGID int
	queueDir           string
}

// setting reads a setting with a fallback for one the settings table does
// not know yet (Get gives "" for those).
func setting(cfg *config.Config, name, def string) string {
	v := cfg.Get(name)
	if v == "" && !cfg.IsSet(name) {
		return def
	}
	return v
}

func classes(v string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		m[strings.ToLower(f)] = true
	}
	return m
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
	cfg := d.Config
	l := &local{route: rt, users: users, hostname: cfg.Get("myhostname"), timeout: cfg.Duration("ipc_timeout"), d: d,
		delim:        cfg.Get("recipient_delimiter"),
		defaultPrivs: setting(cfg, "default_privs", "nobody"),
		cmdLimit:     cfg.Duration("command_time_limit"),
		allowCmd:     classes(setting(cfg, "allow_mail_to_commands", "alias, forward")),
		allowFile:    classes(setting(cfg, "allow_mail_to_files", "alias, forward")),
		ownerSpecial: strings.EqualFold(setting(cfg, "owner_request_special", "yes"), "yes"),
		queueDir:     cfg.Get("queue_directory"),
		mailGID:      -1,
	}
	if l.cmdLimit <= 0 {
		l.cmdLimit = 1000 * time.Second
	}
	// forward_path's $home, $user... are local's to expand, per
	// recipient, so it is read unexpanded.
	fp := cfg.Raw("forward_path")
	if fp == "" && !cfg.IsSet("forward_path") {
		fp = "$home/.forward"
	}
	l.forwardPath = strings.FieldsFunc(fp, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if gid, ok := users.Group("mail"); ok {
		l.mailGID = gid
	}
	if u, ok := users.User(l.defaultPrivs); !ok {
		log.Warnf("default_privs %s: no such user; commands and files of root-owned aliases will be deferred", l.defaultPrivs)
	} else if u.UID == 0 {
		log.Warnf("default_privs %s has uid 0; commands and files of root-owned aliases will be deferred", l.defaultPrivs)
	}
	// private/ belongs to mail_owner: connect to its sockets with that
	// account's filesystem ids, which is all local may borrow (it holds no
	// capability that bypasses permissions).
	l.ownerUID, l.ownerGID = os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, ok := users.User(cfg.Get("mail_owner"))
		if !ok {
			d.Fatalf("mail_owner %s: no such user", cfg.Get("mail_owner"))
		}
		l.ownerUID, l.ownerGID = u.UID, u.GID
	}
	if len(cfg.List("auth_passwd_file")) > 0 {
		// Users of the credential database are mailbox users too; only
		// auth reads that file, so ask it.
		sock := filepath.Join(l.queueDir, "private", "auth")
		rt.SetUserDB(&authclient.Client{Timeout: 30 * time.Second, Dial: func() (*ipc.Conn, error) {
			return l.dialPrivate(sock)
		}})
	}
	// No no_new_privs: a |command (vacation, procmail) must be able to
	// run sendmail, whose postern-drop is setgid (privsep.Spec).
	d.AllowNewPrivs = true
	d.Drop(privsep.CapSetuid, privsep.CapSetgid)
	d.ServeRequests(d.Service.MaxProc, 1<<20, func(_ context.Context, req *ipc.Msg, files []*os.File) *ipc.Msg {
		return l.request(req, files)
	})
}

// dialPrivate connects to a private/ socket as mail_owner.
func (l *local) dialPrivate(sock string) (*ipc.Conn, error) {
	var c *ipc.Conn
	err := privsep.AsUser(l.ownerUID, l.ownerGID, func() error {
		var err error
		c, err = ipc.Dial(sock, 10*time.Second)
		return err
	})
	return c, err
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
	seen    map[string]bool // mailboxes, files and commands already done for this message
	looped  map[string]bool // Delivered-To values already in the message

	fwd []forward // remote addresses reached by forwarding, for the current recipient
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
	dl.fwd = nil
	e := &expansion{orig: a, sender: dl.sender, chain: map[string]bool{}}
	st := dl.resolve(e, a, 0)
	if len(dl.fwd) > 0 {
		st = worse(st, dl.forwardAll())
	}
	return st
}

func (dl *delivery) log(orig, to address.Address, st status) {
	o := ""
	if orig != to {
		o = fmt.Sprintf(", orig_to=<%s>", orig)
	}
	word := map[string]string{"sent": "sent", "defer": "deferred", "bounce": "bounced"}[st.status]
	log.Infof("%s: to=<%s>%s, relay=local, delay=%.2f, dsn=%s, status=%s (%s)",
		dl.id, to, o, time.Since(dl.arrival).Seconds(), st.dsn, word, log.Clean(st.reason))
}

// fail logs and returns a status for a destination.
func (dl *delivery) fail(e *expansion, to address.Address, st status) status {
	dl.log(e.orig, to, st)
	return st
}

func (dl *delivery) resolve(e *expansion, a address.Address, depth int) status {
	if depth > maxAliasDepth {
		return dl.fail(e, a, bounced("5.4.6", "mail forwarding loop for "+a.String()+" (alias expansion too deep)"))
	}
	switch dl.l.route.Classify(a) {
	case route.Local:
		return dl.localUser(e, a, depth)
	case route.Virtual:
		mb, err := dl.l.route.VirtualMailbox(a)
		if err != nil {
			if strings.EqualFold(a.Local, "postmaster") {
				return dl.resolve(e, address.Address{Local: "postmaster", Domain: dl.l.route.MyHostname()}, depth+1)
			}
			st := bounced("5.1.1", err.Error())
			if !strings.Contains(err.Error(), "not in virtual_mailbox_maps") {
				st = deferred("4.3.0", err.Error())
			}
			return dl.fail(e, a, st)
		}
		return dl.mailbox(e, a, mb)
	}
	return dl.fail(e, a, bounced("5.1.2", "not a local or virtual domain"))
}

func (dl *delivery) mailbox(e *expansion, to address.Address, mb route.Mailbox) status {
	if dl.looped[strings.ToLower(to.String())] {
		return dl.fail(e, to, bounced("5.4.6", "mail forwarding loop for "+to.String()))
	}
	if dl.seen[mb.Path] {
		return sent("duplicate suppressed")
	}
	if !mb.Maildir {
		gid := -1
		if mb.Spool {
			gid = dl.l.mailGID
		}
		err := privsep.AsUser(mb.UID, mb.GID, func() error {
			return dl.writeMbox(e, to, mb.Path, mb.UID, gid)
		})
		if err != nil {
			return dl.fail(e, to, deferred("4.2.0", "cannot update mailbox "+mb.Path+" for user "+mb.User+": "+err.Error()))
		}
		dl.seen[mb.Path] = true
		st := sent("delivered to mailbox")
		dl.log(e.orig, to, st)
		return st
	}
	err := dl.deliverMaildir(e, to, mb.Path, true, mb.UID, mb.GID)
	if err != nil {
		return dl.fail(e, to, deferred("4.2.0", "cannot write to maildir "+mb.Path+" as uid "+strconv.Itoa(mb.UID)+": "+err.Error()))
	}
	dl.seen[mb.Path] = true
	st := sent("delivered to maildir")
	dl.log(e.orig, to, st)
	return st
}

// prefix is what local puts before the message in every copy it writes.
func (dl *delivery) prefix(e *expansion, to address.Address) string {
	return fmt.Sprintf("Return-Path: <%s>\nDelivered-To: %s\n", e.sender, to)
}

// deliverMaildir delivers into the Maildir at path as uid:gid: written and
// renamed into new/ with the owner's filesystem ids (writeMaildir), then
// made durable after switching back (syncMaildir).
func (dl *delivery) deliverMaildir(e *expansion, to address.Address, path string, parents bool, uid, gid int) error {
	var p *maildir.Pending
	err := privsep.AsUser(uid, gid, func() error {
		var err error
		p, err = dl.writeMaildir(e, to, path, parents)
		return err
	})
	if err != nil {
		if p != nil {
			p.Close() // written, but switching back failed
		}
		return err
	}
	return syncMaildir(p, uid, gid)
}

// writeMaildir delivers into a Maildir up to the rename into new/; the
// caller has switched to the owner's filesystem ids. parents makes missing
// parent directories (a new virtual mailbox).
func (dl *delivery) writeMaildir(e *expansion, to address.Address, path string, parents bool) (*maildir.Pending, error) {
	msg := dl.qf.Message()
	dir := strings.TrimSuffix(path, "/")
	d := &maildir.Delivery{Dir: dir, Hostname: dl.l.hostname, Create: true}
	pre := []byte(dl.prefix(e, to))
	p, err := d.DeliverUnsynced(pre, io.NewSectionReader(msg, 0, msg.Size()))
	if err != nil && parents && errors.Is(err, os.ErrNotExist) {
		// A new virtual mailbox: make its parents (as the owner, so
		// the owner must be able to write virtual_mailbox_base).
		if merr := os.MkdirAll(filepath.Dir(dir), 0o700); merr != nil {
			return nil, fmt.Errorf("create %s: %w", filepath.Dir(dir), merr)
		}
		p, err = d.DeliverUnsynced(pre, io.NewSectionReader(msg, 0, msg.Size()))
	}
	return p, err
}

// syncMaildir makes a delivery's rename into new/ durable, outside the
// owner's ids: the fsync of new/ needs no permission and is shared with
// concurrent deliveries, and waiting for it on a locked thread would cost
// thread hand-offs. Only if it fails does it switch to the owner again,
// to take the file back out of new/ (the recipient is then deferred, and
// the retry must not leave a second copy).
func syncMaildir(p *maildir.Pending, uid, gid int) error {
	defer p.Close()
	err := p.Sync()
	if err != nil {
		privsep.AsUser(uid, gid, func() error {
			p.Undo()
			return nil
		})
	}
	return err
}
