// postern queue hold | release | requeue | delete: the administrator's
// queue operations, as Postfix's postsuper -h, -H, -r and -d.
//
// Job: turn the command line (queue IDs, "-" for IDs on standard input,
// ALL, or a queue name such as "deferred" for all of its messages) into
// one operation per message, print what happened, and exit 1 when an
// explicitly named message could not be dealt with.
//
// Privilege: root or mail_owner (or, for a spool run by an ordinary user
// without privilege separation, the spool's owner); anyone else is
// refused before anything is read. The command does not drop privilege:
// it only renames and removes queue files.
//
// How: when qmgr runs, every operation is a request to it over
// public/qmgr (qmgr checks the requester's uid again): qmgr is the one
// mover of queue files, and it defers an operation on a message it is
// delivering until the attempt ends. When qmgr cannot be reached and the
// master is not running, the command moves the files itself (queue.Admin,
// with active/ treated as incoming/, which is where qmgr's recovery would
// put it) and logs each action as postern/queue through maillog_file or
// syslog, when it can. When the master runs but qmgr does not answer,
// messages outside active/ are still handled directly and those in
// active/ are refused (try again).
//
// Limits: at most maxAdminIDs IDs per run; standard input is read only
// for "-", in words of at most 4 KiB.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"postern/internal/config"
	"postern/internal/ipc"
	plog "postern/internal/log"
	"postern/internal/queue"
)

// maxAdminIDs bounds one run's work (and memory for "-").
const maxAdminIDs = 1000000

// adminVerbs are the past tense of each operation, for output and logs.
var adminVerbs = map[string]string{"hold": "held", "release": "released", "requeue": "requeued", "delete": "deleted"}

// adminAllDirs are the directories ALL covers for each operation.
var adminAllDirs = map[string][]string{
	"hold":    {queue.Incoming, queue.Active, queue.Deferred},
	"release": {queue.Hold},
	"requeue": {queue.Incoming, queue.Active, queue.Deferred, queue.Hold},
	"delete":  {queue.Incoming, queue.Active, queue.Deferred, queue.Hold},
}

// queueAdmin runs one of hold, release, requeue, delete.
func queueAdmin(cfg *config.Config, op string, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError(fmt.Sprintf("queue %s ID...|-|ALL|QUEUE (QUEUE: incoming, active, deferred, hold)", op))
	}
	spool := cfg.Get("queue_directory")
	if err := adminAllowed(cfg, spool); err != nil {
		return err
	}
	ids, bad, err := adminIDs(spool, op, args, stdin)
	if err != nil {
		return err
	}
	failed := len(bad)
	for _, b := range bad {
		fmt.Fprintf(os.Stderr, "postern queue %s: %.40q is not a queue ID\n", op, b)
	}
	r := &adminRun{op: op, spool: spool, cfg: cfg, out: stdout, uid: os.Getuid()}
	defer r.close()
	c, derr := ipc.Dial(filepath.Join(spool, queue.Public, "qmgr"), 2*time.Second)
	if derr == nil {
		defer c.Close()
		r.qmgr = c
	} else {
		_, up := running(cfg)
		r.admin = queue.Admin{Spool: spool, Idle: !up}
		if up {
			fmt.Fprintf(os.Stderr, "postern queue %s: warning: qmgr does not answer (%v); messages in delivery are left alone\n", op, derr)
		}
	}
	for _, x := range ids {
		if !r.one(x.id, x.named) {
			failed++
		}
	}
	r.summary()
	if failed > 0 {
		return fmt.Errorf("%d of %d message(s) not %s", failed, len(ids)+len(bad), adminVerbs[op])
	}
	return nil
}

// adminAllowed refuses anyone but root, mail_owner and the spool's owner.
func adminAllowed(cfg *config.Config, spool string) error {
	euid := os.Geteuid()
	if euid == 0 {
		return nil
	}
	st, err := os.Stat(filepath.Join(spool, queue.Incoming))
	if err != nil {
		return fmt.Errorf("spool %s: %w", spool, err)
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok && int(s.Uid) == euid {
		return nil
	}
	return fmt.Errorf("permission denied: changing the queue needs root or %s (the owner of %s)", cfg.Get("mail_owner"), spool)
}

type adminID struct {
	id    queue.ID
	named bool // named on the command line or stdin, not found by ALL
}

// adminIDs expands the arguments into queue IDs, without repeats: IDs,
// "-" (IDs on stdin, separated by white space), ALL, or a queue name.
// Words that are not queue IDs come back in bad.
func adminIDs(spool, op string, args []string, stdin io.Reader) (ids []adminID, bad []string, err error) {
	seen := map[queue.ID]bool{}
	add := func(id queue.ID, named bool) error {
		if seen[id] {
			return nil
		}
		if len(ids) >= maxAdminIDs {
			return fmt.Errorf("more than %d queue IDs", maxAdminIDs)
		}
		seen[id] = true
		ids = append(ids, adminID{id, named})
		return nil
	}
	word := func(w string) error {
		switch {
		case queue.ValidID(w):
			return add(queue.ID(w), true)
		case w == "ALL" || slices.Contains(queue.AdminDirs, w):
			dirs := adminAllDirs[op]
			if w != "ALL" {
				dirs = []string{w}
			}
			all, err := queue.AllIDs(spool, dirs)
			if err != nil {
				return err
			}
			for _, id := range all {
				if err := add(id, false); err != nil {
					return err
				}
			}
		default:
			if len(bad) < 100 {
				bad = append(bad, w)
			}
		}
		return nil
	}
	for _, a := range args {
		if a != "-" {
			if err := word(a); err != nil {
				return nil, nil, err
			}
			continue
		}
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 4096), 4096)
		sc.Split(bufio.ScanWords)
		for sc.Scan() {
			if err := word(sc.Text()); err != nil {
				return nil, nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, nil, fmt.Errorf("standard input: %w", err)
		}
	}
	return ids, bad, nil
}

// adminRun is one run of an operation over many messages.
type adminRun struct {
	op, spool string
	cfg       *config.Config
	out       io.Writer
	uid       int
	qmgr      *ipc.Conn   // nil: do it here, with admin
	admin     queue.Admin // used when qmgr is nil
	sink      *plog.Sink
	sinkTried bool
	done      int
	pending   int
}

// one applies the operation to id and reports it; false means it failed.
// A message found by ALL that is gone by now (delivered meanwhile) is no
// failure and not reported.
func (r *adminRun) one(id queue.ID, named bool) bool {
	if r.qmgr != nil {
		return r.viaQmgr(id, named)
	}
	now := time.Now()
	var from string
	var err error
	switch r.op {
	case "hold":
		from, err = r.admin.Hold(id)
		if err == nil && from == queue.Hold {
			fmt.Fprintf(r.out, "%s: already on hold\n", id)
			return true
		}
	case "release":
		from, err = queue.Hold, r.admin.Release(id, now)
	case "requeue":
		from, err = r.admin.Requeue(id, now)
	case "delete":
		from, err = r.admin.Delete(id)
	}
	if err != nil {
		if !named && errors.Is(err, queue.ErrNotFound) {
			return true
		}
		fmt.Fprintf(os.Stderr, "postern queue %s: %s: %v\n", r.op, id, trimQueuePrefix(err, id))
		return false
	}
	r.done++
	fmt.Fprintf(r.out, "%s: %s (was in %s/)\n", id, adminVerbs[r.op], from)
	r.log("%s: %s by uid=%d", id, adminVerbs[r.op], r.uid)
	return true
}

// viaQmgr asks qmgr to do it.
func (r *adminRun) viaQmgr(id queue.ID, named bool) bool {
	if err := r.qmgr.Send(ipc.NewMsg("op", r.op, "queue_id", string(id))); err != nil {
		fmt.Fprintf(os.Stderr, "postern queue %s: %s: qmgr: %v\n", r.op, id, err)
		return false
	}
	resp, _, err := r.qmgr.Recv(30 * time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "postern queue %s: %s: qmgr did not answer: %v\n", r.op, id, err)
		return false
	}
	switch {
	case resp.Get("status") != "ok" && !named && resp.Get("notfound") == "yes":
		return true
	case resp.Get("status") != "ok":
		fmt.Fprintf(os.Stderr, "postern queue %s: %s: %s\n", r.op, id, strings.TrimPrefix(resp.Get("reason"), "queue "+string(id)+": "))
		return false
	case resp.Get("pending") == "yes":
		r.pending++
		fmt.Fprintf(r.out, "%s: being delivered; %s when the delivery under way finishes\n", id, adminVerbs[r.op])
	case r.op == "hold" && resp.Get("from") == queue.Hold:
		fmt.Fprintf(r.out, "%s: already on hold\n", id)
	default:
		r.done++
		fmt.Fprintf(r.out, "%s: %s (was in %s/)\n", id, adminVerbs[r.op], plog.Clean(resp.Get("from")))
	}
	return true
}

func (r *adminRun) summary() {
	fmt.Fprintf(r.out, "postern: %s: %d message(s)", adminVerbs[r.op], r.done)
	if r.pending > 0 {
		fmt.Fprintf(r.out, ", %d more when their delivery finishes", r.pending)
	}
	fmt.Fprintln(r.out)
}

// log writes one line to the mail log, as postern/queue, when a log
// destination can be had: maillog_file, else syslog. qmgr logs the
// operations it performs itself.
func (r *adminRun) log(format string, args ...any) {
	if !r.sinkTried {
		r.sinkTried = true
		var err error
		if f := r.cfg.Get("maillog_file"); f != "" {
			r.sink, err = plog.NewFileSink(f)
		} else {
			r.sink, err = plog.NewSyslogSink()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "postern queue %s: warning: not logged: %v\n", r.op, err)
		}
	}
	if r.sink != nil {
		r.sink.Write("postern/queue", os.Getpid(), fmt.Sprintf(format, args...))
	}
}

func (r *adminRun) close() {
	if r.sink != nil {
		r.sink.Close()
	}
}

// trimQueuePrefix drops the "queue ID: " the queue package puts before
// its errors, since the output names the ID already.
func trimQueuePrefix(err error, id queue.ID) string {
	s := err.Error()
	if errors.Is(err, queue.ErrNotFound) {
		return queue.ErrNotFound.Error()
	}
	return strings.TrimPrefix(s, "queue "+string(id)+": ")
}
