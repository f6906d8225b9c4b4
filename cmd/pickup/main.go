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
// and removes files in maildrop/ and writes nothing else.
//
// Limits and failure modes:
//   - a file without the owner's execute bit is still being written and is
//     left alone; one that stays so for a day (a postern-drop that died) is
//     removed with a warning: its sender never got a success exit;
//   - a file that cannot be parsed, that is not a regular file, or whose
//     owner is not the uid it records is renamed to maildrop/NAME.corrupt
//     (never picked up again, never deleted) with a warning naming it;
//   - a message cleanup refuses for good (too big, no valid recipient, too
//     many recipients) is renamed to maildrop/NAME.rejected with a
//     warning; a temporary refusal or a cleanup that is not there leaves
//     the file for the next scan;
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
	myorigin string
	timeout  time.Duration
	wake     chan struct{}
	d        *service.Daemon
}

func main() {
	d := service.Init("pickup")
	p := &pickup{
		myorigin: d.Config.Get("myorigin"),
		timeout:  d.Config.Duration("ipc_timeout"),
		wake:     make(chan struct{}, 1),
		d:        d,
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
	sub, why := p.envelope(name, env, f, n)
	if sub == nil {
		aside(name, ".rejected", why)
		return true
	}
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		log.Warnf("maildrop/%s: %v", name, err)
		return true
	}
	id, status, reason := p.submit(sub, f, env.Extract)
	switch status {
	case "ok":
		if err := os.Remove(path); err != nil {
			// It will be submitted again: a duplicate, not a loss.
			log.Errorf("%s: maildrop/%s: remove: %v", id, name, err)
		}
		note := ""
		if env.SenderSet {
			note = " (sender set by -f)"
		}
		log.Infof("%s: uid=%d from=<%s>%s", id, env.UID, log.Clean(sub.Get("sender")), note)
		return true
	case "perm":
		aside(name, ".rejected", "refused by cleanup: "+reason)
		return true
	case "unreachable":
		log.Warnf("maildrop/%s: %s; will retry", name, reason)
		return false
	}
	log.Warnf("maildrop/%s: cleanup: %s; will retry", name, reason)
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

// envelope builds cleanup's request; nil and a reason when the file can
// never be submitted.
func (p *pickup) envelope(name string, env *maildrop.Envelope, f *os.File, msgStart int64) (*ipc.Msg, string) {
	sender := ""
	if env.Sender != "" {
		s, err := p.qualify(env.Sender)
		if err != nil {
			return nil, fmt.Sprintf("bad sender %.100q: %v", env.Sender, err)
		}
		sender = s
	}
	rcpts := append([]string(nil), env.Recipients...)
	if env.Extract {
		if _, err := f.Seek(msgStart, io.SeekStart); err != nil {
			return nil, err.Error()
		}
		addrs, bad, err := maildrop.HeaderRecipients(f)
		if err != nil {
			return nil, "read headers: " + err.Error()
		}
		for _, b := range bad {
			log.Warnf("maildrop/%s: uid=%d: ignoring unparsable header recipient %.100q", name, env.UID, log.Clean(b))
		}
		rcpts = append(rcpts, addrs...)
	}
	utf8 := false
	seen := map[string]bool{}
	var list []string
	for _, r := range rcpts {
		q, err := p.qualify(r)
		if err != nil {
			log.Warnf("maildrop/%s: uid=%d: ignoring bad recipient %.100q: %v", name, env.UID, log.Clean(r), err)
			continue
		}
		if k := strings.ToLower(q); !seen[k] {
			seen[k] = true
			list = append(list, q)
		}
	}
	if len(list) == 0 {
		return nil, "no recipient addresses found"
	}
	for _, a := range list {
		utf8 = utf8 || !isASCII(a)
	}
	utf8 = utf8 || !isASCII(sender)
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
	return m, ""
}

// submit hands the message to cleanup; status is ok (with the queue ID),
// perm, temp or unreachable.
func (p *pickup) submit(req *ipc.Msg, msg io.Reader, stripBcc bool) (id, status, reason string) {
	c, err := ipc.Dial("private/cleanup", 10*time.Second)
	if err != nil {
		return "", "unreachable", err.Error()
	}
	defer c.Close()
	if err := c.Send(req); err != nil {
		return "", "unreachable", err.Error()
	}
	r, _, err := c.Recv(p.timeout)
	if err != nil {
		return "", "temp", err.Error()
	}
	if r.Get("status") != "ok" {
		return "", r.Get("status"), r.Get("reason")
	}
	id = r.Get("queue_id")
	w := c.StreamWriter()
	if _, err := maildrop.Canonicalize(w, msg, stripBcc); err != nil {
		c.AbortStream()
		return id, "temp", err.Error()
	}
	if err := w.Close(); err != nil {
		return id, "temp", err.Error()
	}
	r, _, err = c.Recv(p.timeout)
	if err != nil {
		return id, "temp", err.Error()
	}
	return id, r.Get("status"), r.Get("reason")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
