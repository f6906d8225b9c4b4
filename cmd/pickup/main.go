// Command pickup feeds locally submitted mail to cleanup (DESIGN.md §1,
// §4): it takes each complete file that postern-drop left in maildrop/,
// reads its envelope (internal/maildrop), and submits the message to
// cleanup over private/cleanup as smtpd does, with origin=local, the
// submitting uid and login, rewrite_headers=y (cleanup adds Message-ID,
// Date and From where missing) and, for sendmail -t, the recipients of the
// To/Cc/Bcc headers, the Bcc headers removed. It removes the file only
// after cleanup said the message is queued, so a crash at any point
// repeats a submission, never loses one.
//
// When: at start (mail submitted while Postern was stopped), when
// postern-drop pokes public/pickup, and every wakeup seconds of its
// services.conf line (60 when 0) in case a poke was lost.
//
// Privilege: mail_owner, chrooted into the spool, no capabilities; it reads
// and removes files in maildrop/, submits their messages (and the bounces
// of those that cannot be queued) to cleanup, and writes nothing else.
//
// Limits and failure modes:
//   - a file without the owner's execute bit is still being written and is
//     left alone; one that stays so for a day (a postern-drop that died) is
//     removed with a warning: its sender never got a success exit;
//   - a file that cannot be parsed, that is not a regular file, or whose
//     owner is not the uid it records is renamed to maildrop/NAME.corrupt
//     (never picked up again, never deleted) with a warning naming it;
//   - a message that can never be queued (no valid recipient, a sender
//     that is not an address, or a permanent refusal by cleanup: too big,
//     too many recipients, a mail loop) is bounced: an RFC 3464 report
//     from the null sender to the envelope sender (for a local submission
//     the user, login@myorigin, unless -f named another; the postmaster
//     when the sender is null), with the reason as Diagnostic-Code and
//     the message (only its header when it was too big, or larger than
//     half of message_size_limit) attached, queued through cleanup as
//     qmgr queues its bounces. The file is removed once cleanup accepted
//     the bounce, and pickup logs
//     "NAME: uid=N from=<x>: rejected: REASON; bounce queued as QID".
//     postern-drop exited 0 long before, so this is the only way the user
//     hears of it. Only a bounce that cannot be queued for good either
//     leaves the file as maildrop/NAME.rejected with a warning;
//   - a temporary refusal or a cleanup that is not there (for the message
//     or for its bounce) leaves the file for the next scan;
//   - recipient addresses that do not parse are dropped with a warning;
//     unqualified ones get @myorigin;
//   - a poke is one frame of at most 4 KiB read within 5 seconds.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"postern/internal/address"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/maildrop"
	"postern/internal/queue"
	"postern/internal/service"
)

// staleAfter is how long an incomplete maildrop file may sit unchanged.
const staleAfter = 24 * time.Hour

type pickup struct {
	myorigin   string
	myhostname string // the Reporting-MTA of bounces
	maxSize    int64  // message_size_limit: a bounce returns at most half of it
	timeout    time.Duration
	wake       chan struct{}
	d          *service.Daemon
}

func main() {
	d := service.Init("pickup")
	p := &pickup{
		myorigin:   d.Config.Get("myorigin"),
		myhostname: d.Config.Get("myhostname"),
		maxSize:    d.Config.Int("message_size_limit"),
		timeout:    d.Config.Duration("ipc_timeout"),
		wake:       make(chan struct{}, 1),
		d:          d,
	}
	interval := time.Duration(d.Service.Wakeup) * time.Second
	if interval <= 0 {
		interval = 60 * time.Second
	}
	d.Drop()
	done := make(chan struct{})
	go func() { p.loop(interval); close(done) }()
	d.Serve(d.Service.MaxProc, p.handle)
	<-done
}

// handle reads one poke from postern-drop.
func (p *pickup) handle(ctx context.Context, nc net.Conn) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return
	}
	c := ipc.NewConn(uc, 4096)
	defer c.Close()
	m, files, err := c.Recv(5 * time.Second)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			log.Warnf("wakeup request: %v", err)
		}
		return
	}
	if m.Get("op") != "wakeup" {
		log.Warnf("unknown request %q", log.Clean(m.Get("op")))
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// loop scans maildrop/ at start, on each poke and every interval, until
// the daemon drains.
func (p *pickup) loop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.scan()
		select {
		case <-p.wake:
		case <-t.C:
		case <-p.d.Draining():
			return
		}
	}
}

func (p *pickup) scan() {
	ids, _, err := queue.ListAll(".", queue.Maildrop)
	if err != nil {
		log.Errorf("%v", err)
		return
	}
	for _, id := range ids {
		select {
		case <-p.d.Draining():
			return
		default:
		}
		if !p.process(string(id)) {
			// cleanup is not there: try again at the next scan.
			return
		}
	}
}

// aside renames a file that must not be picked up again.
func aside(name, suffix, why string) {
	from := filepath.Join(queue.Maildrop, name)
	to := from + suffix
	if err := os.Rename(from, to); err != nil {
		log.Errorf("maildrop/%s: %s; cannot rename it to %s: %v", name, why, to, err)
		return
	}
	log.Warnf("maildrop/%s: %s; moved to %s", name, why, to)
}

// process submits one file; it reports false when cleanup could not be
// reached, so that the scan stops.
func (p *pickup) process(name string) bool {
	path := filepath.Join(queue.Maildrop, name)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			aside(name, ".corrupt", "a symbolic link, not a maildrop file")
		} else if !errors.Is(err, os.ErrNotExist) {
			log.Warnf("maildrop/%s: %v", name, err)
		}
		return true
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		log.Warnf("maildrop/%s: %v", name, err)
		return true
	}
	if !fi.Mode().IsRegular() {
		aside(name, ".corrupt", "not a regular file")
		return true
	}
	if fi.Mode().Perm()&0o100 == 0 {
		if time.Since(fi.ModTime()) > staleAfter {
			if err := os.Remove(path); err == nil {
				log.Warnf("maildrop/%s: removed an incomplete file unchanged since %s (its postern-drop died)", name, fi.ModTime().Format(time.RFC3339))
			}
		}
		return true
	}
	br := bufio.NewReader(f)
	env, n, err := maildrop.Read(br)
	if err != nil {
		aside(name, ".corrupt", err.Error())
		return true
	}
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	if owner != env.UID {
		aside(name, ".corrupt", fmt.Sprintf("file owner uid %d differs from the recorded uid %d", owner, env.UID))
		return true
	}
	sub, rj, err := p.envelope(name, env, f, n)
	if err != nil {
		log.Warnf("maildrop/%s: %v; will retry", name, err)
		return true
	}
	if rj != nil {
		return p.reject(name, env, f, n, rj)
	}
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		log.Warnf("maildrop/%s: %v", name, err)
		return true
	}
	rep := p.submit(sub, f, env.Extract)
	switch rep.status {
	case "ok":
		if err := os.Remove(path); err != nil {
			// It will be submitted again: a duplicate, not a loss.
			log.Errorf("%s: maildrop/%s: remove: %v", rep.id, name, err)
		}
		note := ""
		if env.SenderSet {
			note = " (sender set by -f)"
		}
		log.Infof("%s: uid=%d from=<%s>%s", rep.id, env.UID, log.Clean(sub.Get("sender")), note)
		return true
	case "perm":
		status := rep.dsn
		if !strings.HasPrefix(status, "5.") {
			status = "5.0.0"
		}
		return p.reject(name, env, f, n, &rejection{
			from:   sub.Get("sender"),
			status: status,
			reason: orDefault(rep.reason, "refused by cleanup"),
			rcpts:  sub.All("rcpt"),
			tooBig: rep.dsn == "5.3.4",
		})
	case "unreachable":
		log.Warnf("maildrop/%s: %s; will retry", name, rep.reason)
		return false
	}
	log.Warnf("maildrop/%s: cleanup: %s; will retry", name, rep.reason)
	return true
}

// reject bounces a message that can never be submitted and removes its
// file once the bounce is queued. If the bounce cannot be queued for good
// either, the file is kept as NAME.rejected; if it cannot be queued now,
// the file stays for the next scan. It reports false when cleanup could
// not be reached.
func (p *pickup) reject(name string, env *maildrop.Envelope, f *os.File, msgStart int64, rj *rejection) bool {
	qid, to, status, err := p.bounce(name, env, f, msgStart, rj)
	switch status {
	case "ok":
		path := filepath.Join(queue.Maildrop, name)
		if err := os.Remove(path); err != nil {
			// The next scan bounces it again: a duplicate, not a loss.
			log.Errorf("%s: maildrop/%s: remove: %v", qid, name, err)
		}
		note := ""
		if to != rj.from {
			note = " to <" + log.Clean(to) + ">"
		}
		log.Infof("%s: uid=%d from=<%s>: rejected: %s; bounce queued as %s%s", name, env.UID, log.Clean(rj.from), log.Clean(rj.reason), qid, note)
		return true
	case "perm":
		aside(name, ".rejected", fmt.Sprintf("uid=%d from=<%s>: rejected: %s; the bounce cannot be queued either: %v",
			env.UID, log.Clean(rj.from), log.Clean(rj.reason), err))
		return true
	case "unreachable":
		log.Warnf("maildrop/%s: rejected: %s; bounce: %v; will retry", name, log.Clean(rj.reason), err)
		return false
	}
	log.Warnf("maildrop/%s: rejected: %s; bounce: %v; will retry", name, log.Clean(rj.reason), err)
	return true
}

// qualify appends @myorigin to a bare local name and checks the result.
func (p *pickup) qualify(s string) (string, error) {
	if !strings.Contains(s, "@") {
		s += "@" + p.myorigin
	}
	a, err := address.Parse(s, true)
	if err != nil {
		return "", err
	}
	if a.Domain == "" {
		return "", errors.New("no domain")
	}
	return a.String(), nil
}

// rejection is why a maildrop file can never be submitted: what its
// bounce says.
type rejection struct {
	from   string   // the envelope sender, qualified (as given when it is bad)
	bad    bool     // from is not a usable address
	status string   // RFC 3463 code, 5.X.X
	reason string   // for the log and the report's Diagnostic-Code
	rcpts  []string // whom the message was for, as the report lists them
	tooBig bool     // return only the header of the message
}

// envelope builds cleanup's request. It returns a rejection when the file
// can never be submitted, and an error when it cannot be read now.
func (p *pickup) envelope(name string, env *maildrop.Envelope, f *os.File, msgStart int64) (*ipc.Msg, *rejection, error) {
	rcpts := append([]string(nil), env.Recipients...)
	var ignored []string
	if env.Extract {
		if _, err := f.Seek(msgStart, io.SeekStart); err != nil {
			return nil, nil, fmt.Errorf("read headers: %w", err)
		}
		addrs, bad, err := maildrop.HeaderRecipients(f)
		if err != nil {
			return nil, nil, fmt.Errorf("read headers: %w", err)
		}
		for _, b := range bad {
			log.Warnf("maildrop/%s: uid=%d: ignoring unparsable header recipient %.100q", name, env.UID, log.Clean(b))
		}
		ignored = append(ignored, bad...)
		rcpts = append(rcpts, addrs...)
	}
	seen := map[string]bool{}
	var list []string
	for _, r := range rcpts {
		q, err := p.qualify(r)
		if err != nil {
			log.Warnf("maildrop/%s: uid=%d: ignoring bad recipient %.100q: %v", name, env.UID, log.Clean(r), err)
			ignored = append(ignored, r)
			continue
		}
		if k := strings.ToLower(q); !seen[k] {
			seen[k] = true
			list = append(list, q)
		}
	}
	sender := ""
	if env.Sender != "" {
		s, err := p.qualify(env.Sender)
		if err != nil {
			return nil, &rejection{from: env.Sender, bad: true, status: "5.1.7", rcpts: orList(list, ignored),
				reason: fmt.Sprintf("bad sender address %.100q: %v", env.Sender, err)}, nil
		}
		sender = s
	}
	if len(list) == 0 {
		why := "no recipient addresses found"
		if env.Extract {
			why += " in message header"
		}
		return nil, &rejection{from: sender, status: "5.1.3", reason: why, rcpts: ignored}, nil
	}
	utf8 := !isASCII(sender)
	for _, a := range list {
		utf8 = utf8 || !isASCII(a)
	}
	m := ipc.NewMsg("op", "submit",
		"sender", sender,
		"origin", "local",
		"protocol", "local",
		"uid", strconv.Itoa(env.UID),
		"login", env.Login,
		"full_name", env.FullName,
		"rewrite_headers", "y",
		"ret", env.Ret,
		"envid", env.EnvID)
	if env.Extract {
		m.Add("extract_recipients", "y")
	}
	if utf8 {
		m.Add("smtputf8", "yes")
	}
	for _, r := range list {
		m.Add("rcpt", r)
		m.Add("orcpt", "")
		m.Add("notify", env.Notify)
	}
	return m, nil, nil
}

func orList(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// reply is cleanup's last word on a submission.
type reply struct {
	id     string // the queue ID, once cleanup gave one
	status string // ok, perm, temp, or unreachable (cleanup is not there)
	dsn    string // cleanup's RFC 3463 code, when it refused
	reason string
}

// submit hands the message to cleanup.
func (p *pickup) submit(req *ipc.Msg, msg io.Reader, stripBcc bool) reply {
	return p.send(req, func(w io.Writer) error {
		_, err := maildrop.Canonicalize(w, msg, stripBcc)
		return err
	})
}

// send makes one submission to cleanup: the request, then the message
// that write streams. An error of write aborts the stream and is a
// temporary failure unless it is a dsn refusal (a report that can never
// be written).
func (p *pickup) send(req *ipc.Msg, write func(io.Writer) error) reply {
	c, err := ipc.Dial("private/cleanup", 10*time.Second)
	if err != nil {
		return reply{status: "unreachable", reason: err.Error()}
	}
	defer c.Close()
	if err := c.Send(req); err != nil {
		return reply{status: "unreachable", reason: err.Error()}
	}
	r, _, err := c.Recv(p.timeout)
	if err != nil {
		return reply{status: "temp", reason: err.Error()}
	}
	if r.Get("status") != "ok" {
		return reply{status: r.Get("status"), dsn: r.Get("dsn"), reason: r.Get("reason")}
	}
	id := r.Get("queue_id")
	w := c.StreamWriter()
	if err := write(w); err != nil {
		c.AbortStream()
		status := "temp"
		if isReportRefusal(err) {
			status = "perm"
		}
		return reply{id: id, status: status, reason: err.Error()}
	}
	if err := w.Close(); err != nil {
		return reply{id: id, status: "temp", reason: err.Error()}
	}
	r, _, err = c.Recv(p.timeout)
	if err != nil {
		return reply{id: id, status: "temp", reason: err.Error()}
	}
	return reply{id: orDefault(r.Get("queue_id"), id), status: r.Get("status"), dsn: r.Get("dsn"), reason: r.Get("reason")}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
