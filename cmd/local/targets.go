package main

// Deliveries to commands, files and mbox mailboxes.

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"postern/internal/address"
	"postern/internal/mbox"
	"postern/internal/pipe"
	"postern/internal/privsep"
)

// message returns a fresh reader of the copy local writes: the prefix,
// then the message with LF line ends.
func (dl *delivery) message(e *expansion, to address.Address) io.Reader {
	msg := dl.qf.Message()
	return io.MultiReader(strings.NewReader(dl.prefix(e, to)), newLFReader(io.NewSectionReader(msg, 0, msg.Size())))
}

// writeMbox appends to an mbox file; the caller has switched to the
// owner's filesystem ids. uid is the required owner (-1: any); spoolGID
// the group to borrow for locks in a shared spool directory (-1: none).
func (dl *delivery) writeMbox(e *expansion, to address.Address, path string, uid, spoolGID int) error {
	return mbox.Deliver(path, e.sender, time.Now(), dl.message(e, to), mbox.Options{UID: uid, SpoolGID: spoolGID})
}

// command runs a |command destination as the expansion's account.
func (dl *delivery) command(e *expansion, a address.Address, cmd string) status {
	acct := e.acct
	if acct == nil || acct.uid < 0 {
		return dl.fail(e, a, deferred("4.3.5", "cannot run command "+cmd+": "+acct.why()))
	}
	key := "cmd:" + strconv.Itoa(acct.uid) + ":" + cmd
	if dl.seen[key] {
		return sent("duplicate suppressed")
	}
	_, ext := address.SplitExtension(a.Local, dl.l.delim)
	c := &pipe.Command{
		Command: cmd, UID: acct.uid, GID: acct.gid, Groups: acct.groups,
		User: acct.name, Home: acct.home, Shell: acct.shell,
		Sender: e.sender, Recipient: a.String(), Local: a.Local, Extension: ext, Domain: a.Domain,
		Stdin: dl.message(e, a), TimeLimit: dl.l.cmdLimit,
	}
	if acct.home == "" || acct.defaultPriv {
		// default_privs (nobody) has no home of its own to work in.
		c.Home = "/"
	}
	r := pipe.Run(context.Background(), c)
	var st status
	switch r.Status {
	case pipe.Delivered:
		dl.seen[key] = true
		st = sent("delivered to command: " + cmd)
	case pipe.Deferred:
		st = deferred(r.DSN, r.Text)
	default:
		st = bounced(r.DSN, r.Text)
	}
	return dl.fail(e, a, st)
}

// file appends to a /file destination (mbox format), or delivers into a
// /dir/ Maildir, as the expansion's account.
func (dl *delivery) file(e *expansion, a address.Address, path string) status {
	acct := e.acct
	if acct == nil || acct.uid < 0 {
		return dl.fail(e, a, deferred("4.3.5", "cannot write file "+path+": "+acct.why()))
	}
	if dl.seen[path] {
		return sent("duplicate suppressed")
	}
	isMaildir := strings.HasSuffix(path, "/")
	var err error
	if isMaildir {
		err = dl.deliverMaildir(e, a, path, false, acct.uid, acct.gid)
	} else {
		err = privsep.AsUser(acct.uid, acct.gid, func() error {
			return dl.writeMbox(e, a, path, -1, -1)
		})
	}
	if err != nil {
		return dl.fail(e, a, deferred("4.2.0", "cannot append to file "+path+" as user "+acct.name+": "+err.Error()))
	}
	dl.seen[path] = true
	what := "file: "
	if isMaildir {
		what = "maildir: "
	}
	return dl.fail(e, a, sent("delivered to "+what+path))
}
