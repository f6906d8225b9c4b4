package tests

// Operations tests: what an administrator does and sees. Deferred mail
// and the queue commands, backoff, reload, start/stop/status, check and
// config, master's supervision, and crash recovery at start.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opsExitCode is the exit status of a finished command (0 for nil, -1 when
// it did not run or was killed).
func opsExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// opsLogLines returns the log lines that contain every one of parts.
func opsLogLines(in *Instance, parts ...string) []string {
	var out []string
	for _, l := range strings.Split(in.Log(), "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				ok = false
				break
			}
		}
		if ok && l != "" {
			out = append(out, l)
		}
	}
	return out
}

// opsWaitLogLines waits until at least n log lines contain every one of
// parts.
func opsWaitLogLines(in *Instance, n int, timeout time.Duration, parts ...string) []string {
	end := time.Now().Add(timeout)
	for {
		l := opsLogLines(in, parts...)
		if len(l) >= n || time.Now().After(end) {
			return l
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// opsWaitFile waits until path exists (want true) or is gone (want false).
func opsWaitFile(path string, want bool, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); ; time.Sleep(25 * time.Millisecond) {
		_, err := os.Lstat(path)
		if (err == nil) == want {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// opsBlockMailboxes makes vmail/example.test a directory that vmail may
// not write into, so that every delivery to a virtual mailbox that does
// not exist yet fails temporarily. It returns the function that repairs it.
func opsBlockMailboxes(t *testing.T, in *Instance) func() {
	t.Helper()
	d := filepath.Join(in.VMail, "example.test")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, in.uid, in.gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o500); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Chmod(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// opsWaitQueueEmpty waits until no message waits in the queue.
func opsWaitQueueEmpty(t *testing.T, in *Instance, timeout time.Duration) bool {
	t.Helper()
	for end := time.Now().Add(timeout); ; time.Sleep(25 * time.Millisecond) {
		if opsQueueCount(t, in.Spool) == 0 {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// opsMessage is a test message with a unique token in subject, Message-ID
// and body.
func opsMessage(token string) string {
	return "From: <sender@example.org>\r\nTo: <demo@example.test>\r\nSubject: " + token +
		"\r\nMessage-ID: <" + token + "@client.test>\r\n\r\nbody of " + token + "\r\n"
}

// opsFindMessage returns the files of maildir/new that contain token.
func opsFindMessage(maildir, token string) []string {
	var out []string
	for _, f := range Messages(maildir) {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), token) {
			out = append(out, f)
		}
	}
	return out
}

// opsWaitDelivered waits until maildir/new holds a message with token.
func opsWaitDelivered(t *testing.T, in *Instance, user, token string, timeout time.Duration) bool {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		if len(opsFindMessage(in.Maildir(user), token)) > 0 {
			return true
		}
	}
	return false
}

// opsQueueEntry is one line of `postern queue list -j`.
type opsQueueEntry struct {
	QueueName   string `json:"queue_name"`
	QueueID     string `json:"queue_id"`
	ArrivalTime int64  `json:"arrival_time"`
	MessageSize int64  `json:"message_size"`
	Sender      string `json:"sender"`
	Recipients  []struct {
		Address string `json:"address"`
		Status  string `json:"status"`
	} `json:"recipients"`
	Attempts    int   `json:"attempts"`
	NextAttempt int64 `json:"next_attempt"`
}

func opsQueueJSON(t *testing.T, in *Instance) []opsQueueEntry {
	t.Helper()
	out, err := in.Postern("queue", "list", "-j")
	if err != nil {
		t.Fatalf("postern queue list -j: %v\n%s", err, out)
	}
	var l []opsQueueEntry
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e opsQueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("postern queue list -j: line %q: %v", line, err)
		}
		l = append(l, e)
	}
	return l
}

// opsSendDeferred sends a message to demo@example.test while its mailbox
// cannot be written and waits until it waits in deferred/.
func opsSendDeferred(t *testing.T, in *Instance, token string) string {
	t.Helper()
	id, err := opsSend(in.Addr, "sender@example.org", []string{"demo@example.test"}, opsMessage(token))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if id == "" {
		t.Fatalf("no queue ID in the 250 reply")
	}
	if !opsWaitFile(filepath.Join(in.Spool, "deferred", id), true, 10*time.Second) {
		t.Fatalf("%s is not in deferred/ after 10 s", id)
	}
	return id
}

// TestOpsDeferFlush: a delivery that fails temporarily waits in
// deferred/, the queue commands show it, and a flush delivers it once
// the problem is fixed.
func TestOpsDeferFlush(t *testing.T) {
	in := Start(t, Options{})
	fix := opsBlockMailboxes(t, in)
	token := fmt.Sprintf("deferred-%d", time.Now().UnixNano())
	id := opsSendDeferred(t, in, token)

	if l := opsWaitLogLines(in, 1, 5*time.Second, id+": to=<demo@example.test>", "status=deferred"); len(l) == 0 {
		t.Errorf("no status=deferred log line for %s", id)
	} else if !strings.Contains(l[0], "dsn=4.") {
		t.Errorf("deferral without a 4.x.x status: %s", l[0])
	}
	if n := len(opsLogLines(in, id, "status=sent")); n != 0 {
		t.Errorf("%s logged as sent while its mailbox cannot be written", id)
	}

	// postern queue list (mailq format).
	out, err := in.Postern("queue", "list")
	if err != nil {
		t.Fatalf("queue list: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^` + id + `\s+\d+ .*sender@example\.org`).MatchString(out) {
		t.Errorf("queue list has no line for %s with its sender:\n%s", id, out)
	}
	if !regexp.MustCompile(`(?m)^\s+demo@example\.test\s*$`).MatchString(out) {
		t.Errorf("queue list does not show the recipient:\n%s", out)
	}
	if !strings.Contains(out, "1 Request") || strings.Contains(out, "queue is empty") {
		t.Errorf("queue list does not count one message:\n%s", out)
	}

	// postern queue list -j.
	js := opsQueueJSON(t, in)
	if len(js) != 1 {
		t.Fatalf("queue list -j: %d entries, want 1: %+v", len(js), js)
	}
	e := js[0]
	if e.QueueID != id || e.QueueName != "deferred" || e.Sender != "sender@example.org" {
		t.Errorf("queue list -j: %+v, want %s in deferred from sender@example.org", e, id)
	}
	if len(e.Recipients) != 1 || e.Recipients[0].Address != "demo@example.test" || e.Recipients[0].Status == "delivered" {
		t.Errorf("queue list -j: recipients %+v, want demo@example.test pending", e.Recipients)
	}
	if e.Attempts < 1 || e.NextAttempt <= e.ArrivalTime || e.MessageSize < int64(len(opsMessage(token))) {
		t.Errorf("queue list -j: attempts %d, next %d, arrival %d, size %d", e.Attempts, e.NextAttempt, e.ArrivalTime, e.MessageSize)
	}

	// postern queue cat: envelope and message.
	out, err = in.Postern("queue", "cat", id)
	if err != nil {
		t.Fatalf("queue cat: %v\n%s", err, out)
	}
	for _, want := range []string{"deferred/" + id, "sender: sender@example.org", "recipient: demo@example.test", "Subject: " + token, "body of " + token, "Received: "} {
		if !strings.Contains(out, want) {
			t.Errorf("queue cat %s lacks %q:\n%s", id, want, out)
		}
	}
	if i, j := strings.Index(out, "recipient: demo"), strings.Index(out, "Subject: "+token); i < 0 || j < 0 || i > j {
		t.Errorf("queue cat: envelope does not come before the message:\n%s", out)
	}

	// Fixed, but no retry is due yet (minimal_backoff_time 300s): only
	// the flush delivers it.
	fix()
	time.Sleep(1500 * time.Millisecond)
	if len(opsFindMessage(in.Maildir("demo"), token)) != 0 {
		t.Fatalf("delivered before the flush (backoff not respected)")
	}
	if out, err := in.Postern("queue", "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	if !opsWaitDelivered(t, in, "demo", token, 10*time.Second) {
		t.Fatalf("not delivered within 10 s of the flush")
	}
	if opsWaitLogLines(in, 1, 5*time.Second, id+": removed") == nil {
		t.Errorf("no %s: removed line", id)
	}
	if len(opsLogLines(in, id+": to=<demo@example.test>", "status=sent")) != 1 {
		t.Errorf("want one status=sent line for %s", id)
	}
	if n := len(opsFindMessage(in.Maildir("demo"), token)); n != 1 {
		t.Errorf("%d copies delivered, want 1", n)
	}
	out, err = in.Postern("queue", "list")
	if err != nil || !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("queue list after delivery (%v):\n%s", err, out)
	}
	if js := opsQueueJSON(t, in); len(js) != 0 {
		t.Errorf("queue list -j after delivery: %+v", js)
	}
	if !opsWaitQueueEmpty(t, in, 5*time.Second) {
		t.Errorf("%d files left in the queue", opsQueueCount(t, in.Spool))
	}
	opsNoQmgrErrors(t, in)
}

// opsNoQmgrErrors fails the test for every error qmgr logged: deferring
// and retrying a message is routine and must not need one.
func opsNoQmgrErrors(t *testing.T, in *Instance) {
	t.Helper()
	for _, l := range opsLogLines(in, "postern/qmgr", "error: ") {
		t.Errorf("qmgr logged an error: %s", l)
	}
}

// TestOpsDeferBackoff: a deferred message is retried on its own, with
// the wait doubling from minimal_backoff_time up to maximal_backoff_time,
// and delivered once the mailbox can be written, without a flush.
func TestOpsDeferBackoff(t *testing.T) {
	in := Start(t, Options{Settings: []string{
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 4s",
		"queue_run_delay = 1s",
	}})
	fix := opsBlockMailboxes(t, in)
	token := fmt.Sprintf("backoff-%d", time.Now().UnixNano())
	id := opsSendDeferred(t, in, token)

	// Watch five attempts; each deferral is logged once.
	const attempts = 5
	var at []time.Time
	end := time.Now().Add(25 * time.Second)
	for len(at) < attempts && time.Now().Before(end) {
		n := len(opsLogLines(in, id+": to=<demo@example.test>", "status=deferred"))
		for len(at) < n {
			at = append(at, time.Now())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(at) < attempts {
		t.Fatalf("%d attempts in 25 s, want %d (no retry without a flush?)", len(at), attempts)
	}
	// Attempt k waits backoff(k) = 1s, 2s, 4s, 4s (capped), plus up to one
	// queue_run_delay for the timer to notice, and some slack for a busy
	// machine; without the cap the fourth wait would be 8s.
	backoff := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for k := 0; k < attempts-1; k++ {
		gap := at[k+1].Sub(at[k])
		t.Logf("attempt %d -> %d: %s (backoff %s)", k+1, k+2, gap.Round(10*time.Millisecond), backoff[k])
		if gap < backoff[k]-250*time.Millisecond || gap > backoff[k]+2500*time.Millisecond {
			t.Errorf("attempt %d came %s after attempt %d; want %s to %s", k+2, gap, k+1, backoff[k], backoff[k]+2500*time.Millisecond)
		}
	}
	js := opsQueueJSON(t, in)
	if len(js) != 1 || js[0].QueueID != id || js[0].Attempts < attempts {
		t.Errorf("queue list -j: %+v, want %s with at least %d attempts", js, id, attempts)
	}

	fix()
	if !opsWaitDelivered(t, in, "demo", token, 10*time.Second) {
		t.Fatalf("not delivered within 10 s after the fix, without a flush")
	}
	if !opsWaitQueueEmpty(t, in, 5*time.Second) {
		t.Errorf("queue not empty 5 s after delivery")
	}
	if n := len(opsFindMessage(in.Maildir("demo"), token)); n != 1 {
		t.Errorf("%d copies delivered, want 1", n)
	}
	opsNoQmgrErrors(t, in)
}

// opsSession is an SMTP session driven line by line.
type opsSession struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func opsDial(t *testing.T, addr string) (*opsSession, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	s := &opsSession{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	return s, s.read()
}

func (s *opsSession) read() string {
	var b strings.Builder
	for {
		l, err := s.br.ReadString('\n')
		b.WriteString(l)
		if err != nil || len(l) < 4 || l[3] != '-' {
			return b.String()
		}
	}
}

// cmd sends a line and returns the reply.
func (s *opsSession) cmd(line string) string {
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return "write: " + err.Error()
	}
	return s.read()
}

// expect sends a line and fails the test unless the reply has code.
func (s *opsSession) expect(line, code string) string {
	s.t.Helper()
	r := s.cmd(line)
	if !strings.HasPrefix(r, code) {
		s.t.Errorf("%q: reply %q, want %s", line, r, code)
	}
	return r
}

// opsWaitStarted waits until master has logged that its daemons are all
// ready for the n-th time (the harness returns as soon as the SMTP port
// is bound, which master does before it spawns them). Until then a daemon
// may still be reading postern.conf.
func opsWaitStarted(t *testing.T, in *Instance, n int) {
	t.Helper()
	if len(opsWaitLogLines(in, n, 35*time.Second, "postern/master", "daemon started")) < n {
		t.Fatalf("master did not report its daemons ready")
	}
}

// TestOpsReload: a configuration that does not load is refused and the
// old one keeps working; a good one takes effect for new connections,
// and a session opened before the reload finishes its message.
func TestOpsReload(t *testing.T) {
	in := Start(t, Options{})
	opsWaitStarted(t, in, 1)
	confPath := filepath.Join(in.Etc, "postern.conf")
	good, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(good), "\n")
	badLine := lines + 2
	bad := string(good) + "smtpd_banner = mx.postern.test ESMTP broken\nno_such_setting_at_all = 1\n"
	if err := os.WriteFile(confPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	master := in.MasterPid()
	before := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")

	out, err := in.Postern("reload")
	if err == nil {
		t.Errorf("postern reload accepted a broken postern.conf:\n%s", out)
	}
	if want := fmt.Sprintf("postern.conf:%d", badLine); !strings.Contains(out, want) || !strings.Contains(out, "no_such_setting_at_all") {
		t.Errorf("postern reload output does not name %s and the setting:\n%s", want, out)
	}
	// Master itself refuses it too (SIGHUP from elsewhere, e.g. systemd).
	syscall.Kill(master, syscall.SIGHUP)
	if !in.WaitLog("reload refused", 5*time.Second) {
		t.Errorf("no 'reload refused' log line after SIGHUP with a broken config")
	}
	if l := opsLogLines(in, "reload refused"); len(l) > 0 && !strings.Contains(l[0], fmt.Sprintf("postern.conf:%d", badLine)) {
		t.Errorf("reload refusal does not name postern.conf:%d: %s", badLine, l[0])
	}
	// (postern status needs a configuration that loads; ask the kernel.)
	select {
	case <-in.done:
		t.Fatalf("master exited after a refused reload")
	case <-time.After(200 * time.Millisecond):
	}
	if err := syscall.Kill(master, 0); err != nil {
		t.Errorf("master %d gone after a refused reload: %v", master, err)
	}
	bs, banner := opsDial(t, in.Addr)
	if strings.Contains(banner, "broken") || !strings.HasPrefix(banner, "220 mx.postern.test") {
		t.Errorf("banner after a refused reload: %q", banner)
	}
	bs.cmd("QUIT")
	bs.c.Close()
	opsDeliver(t, in, "demo", fmt.Sprintf("after-refused-%d", time.Now().UnixNano()))
	after := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")
	for p, pid := range before {
		if after[p] != pid {
			t.Errorf("%s was restarted by a refused reload (pid %d -> %d)", p, pid, after[p])
		}
	}

	// A broken services.conf is refused the same way.
	svcPath := filepath.Join(in.Etc, "services.conf")
	svc, err := os.ReadFile(svcPath)
	if err != nil {
		t.Fatal(err)
	}
	svcBad := strings.Count(string(svc), "\n") + 1
	if err := os.WriteFile(svcPath, append(append([]byte{}, svc...), "brokensvc  tcp  n  -  y  -  -  smtpd\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = in.Postern("reload")
	if err == nil || !strings.Contains(out, fmt.Sprintf("services.conf:%d", svcBad)) {
		t.Errorf("postern reload with a broken services.conf (%v): want a refusal naming services.conf:%d\n%s", err, svcBad, out)
	}
	if err := os.WriteFile(svcPath, svc, 0o644); err != nil {
		t.Fatal(err)
	}

	// A good change. A session is open and inside a transaction across
	// the reload.
	if err := os.WriteFile(confPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	old, oldBanner := opsDial(t, in.Addr)
	if !strings.HasPrefix(oldBanner, "220 ") {
		t.Fatalf("banner %q", oldBanner)
	}
	old.expect("EHLO old.client.test", "250")
	old.expect("MAIL FROM:<old@example.org>", "250")
	old.expect("RCPT TO:<demo@example.test>", "250")

	newBanner := fmt.Sprintf("mx.postern.test ESMTP reloaded-%d", time.Now().UnixNano())
	if out, err := in.Postern("config", "-e", "smtpd_banner="+newBanner); err != nil {
		t.Fatalf("config -e: %v\n%s", err, out)
	}
	reloads := len(opsLogLines(in, "postern/master", "reload -- "))
	if out, err := in.Postern("reload"); err != nil {
		t.Fatalf("postern reload: %v\n%s", err, out)
	}
	if len(opsWaitLogLines(in, reloads+1, 10*time.Second, "postern/master", "reload -- ")) <= reloads {
		t.Fatalf("master did not log the reload")
	}
	// New connections get the new banner (allow the old smtpd a moment
	// to let go of the listening socket), every one of them after that.
	got := false
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		s, b := opsDial(t, in.Addr)
		s.cmd("QUIT")
		s.c.Close()
		if strings.Contains(b, newBanner) {
			got = true
			break
		}
	}
	if !got {
		t.Errorf("new connections do not show the new smtpd_banner %q after reload", newBanner)
	}
	for i := 0; i < 3; i++ {
		s, b := opsDial(t, in.Addr)
		s.cmd("QUIT")
		s.c.Close()
		if !strings.Contains(b, newBanner) {
			t.Errorf("connection %d after the reload got the banner %q", i, b)
		}
	}
	if out, err := in.Postern("status"); err != nil || !strings.Contains(out, strconv.Itoa(master)) {
		t.Errorf("master pid changed or not running after reload (%v):\n%s", err, out)
	}

	// The old session finishes its message.
	token := fmt.Sprintf("across-reload-%d", time.Now().UnixNano())
	r := old.cmd("DATA")
	if !strings.HasPrefix(r, "354") {
		t.Errorf("DATA in a session opened before the reload: %q, want 354", r)
	} else {
		old.c.Write([]byte(opsMessage(token)))
		r = old.cmd(".")
		if !strings.HasPrefix(r, "250") {
			t.Errorf("end of data in a session opened before the reload: %q, want 250", r)
		} else if !opsWaitDelivered(t, in, "demo", token, 10*time.Second) {
			t.Errorf("message of the session opened before the reload not delivered")
		}
		old.expect("QUIT", "221")
	}
	old.c.Close()
	// Its smtpd, of the old generation, exits once the session is over;
	// the new generation stays.
	oldSmtpd := after["smtpd"]
	if !crashGone(oldSmtpd, 10*time.Second) {
		t.Errorf("the old smtpd (pid %d) still runs 10 s after its last session ended", oldSmtpd)
	}
	if now := opsDaemonPids(t, in, "smtpd"); now["smtpd"] == oldSmtpd {
		t.Errorf("no new smtpd after the reload")
	}
	// And the new configuration delivers, too.
	opsDeliver(t, in, "other", fmt.Sprintf("after-reload-%d", time.Now().UnixNano()))
}

// TestOpsBrokenConfigRespawn: while a postern.conf that does not load is
// on disk (edited, not yet reloaded, or refused by reload), the running
// configuration stays in force (DESIGN.md §7) also for a daemon that
// master has to restart: mail is still accepted and delivered.
func TestOpsBrokenConfigRespawn(t *testing.T) {
	in := Start(t, Options{})
	opsWaitStarted(t, in, 1)
	opsDeliver(t, in, "demo", fmt.Sprintf("before-broken-%d", time.Now().UnixNano()))
	confPath := filepath.Join(in.Etc, "postern.conf")
	good, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(confPath, append(append([]byte{}, good...), "no_such_setting_at_all = 1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := in.Postern("reload"); err == nil {
		t.Errorf("reload accepted a broken postern.conf:\n%s", out)
	}
	pids := opsDaemonPids(t, in, "smtpd", "cleanup")
	for _, p := range []string{"smtpd", "cleanup"} {
		syscall.Kill(pids[p], syscall.SIGKILL)
	}
	// Master restarts both after a second; they must come up and work.
	token := fmt.Sprintf("while-broken-%d", time.Now().UnixNano())
	var sendErr error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if _, sendErr = opsSendTimeout(in.Addr, "sender@example.org", []string{"demo@example.test"}, opsMessage(token), 3*time.Second); sendErr == nil {
			break
		}
	}
	if sendErr != nil {
		t.Errorf("no message accepted within 10 s of restarting smtpd and cleanup with a broken postern.conf on disk: %v", sendErr)
	} else if !opsWaitDelivered(t, in, "demo", token, 10*time.Second) {
		t.Errorf("message accepted with a broken postern.conf on disk was not delivered")
	}
	select {
	case <-in.done:
		t.Errorf("master exited")
	default:
	}
	// Restore, so that the stop at the end is an ordinary one.
	os.WriteFile(confPath, good, 0o644)
}

// TestOpsSecondMaster: one master per spool; status says which.
func TestOpsSecondMaster(t *testing.T) {
	in := Start(t, Options{})
	master := in.MasterPid()
	out, err := in.Postern("status")
	if err != nil || !strings.Contains(out, "running") || !strings.Contains(out, strconv.Itoa(master)) {
		t.Errorf("postern status (%v): %q, want running with pid %d", err, out, master)
	}
	before := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")

	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		var b strings.Builder
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			return "", err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return b.String(), err
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			return b.String(), errors.New("still running after 20 s")
		}
	}
	another := regexp.MustCompile(`(?i)(already running|another master)`)
	out, err = run(filepath.Join(binDir, "postern"), "-c", in.Etc, "start-fg")
	t.Logf("%v: %s", err, strings.TrimSpace(out))
	if opsExitCode(err) <= 0 || !another.MatchString(out) {
		t.Errorf("second postern start-fg: %v\n%s\nwant a non-zero exit saying another master runs", err, out)
	}
	out, err = run(filepath.Join(binDir, "postern"), "-c", in.Etc, "start")
	t.Logf("%v: %s", err, strings.TrimSpace(out))
	if opsExitCode(err) <= 0 || !another.MatchString(out) {
		t.Errorf("postern start while running: %v\n%s\nwant a non-zero exit saying another master runs", err, out)
	}
	// The master program itself, past the CLI's check: the lock decides.
	out, err = run(filepath.Join(binDir, "master"), "-c", in.Etc)
	t.Logf("%v: %s", err, strings.TrimSpace(out))
	if opsExitCode(err) <= 0 || !another.MatchString(out) || !strings.Contains(out, strconv.Itoa(master)) {
		t.Errorf("second master: %v\n%s\nwant a non-zero exit naming the running master %d", err, out, master)
	}
	// Nothing of the first was disturbed.
	if out, err := in.Postern("status"); err != nil || !strings.Contains(out, strconv.Itoa(master)) {
		t.Errorf("status after the attempts (%v): %s", err, out)
	}
	after := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")
	for p, pid := range before {
		if after[p] != pid {
			t.Errorf("%s restarted (pid %d -> %d)", p, pid, after[p])
		}
	}
	if b, err := os.ReadFile(filepath.Join(in.Spool, "pid", "master.pid")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(master) {
		t.Errorf("pid/master.pid = %q (%v), want %d", b, err, master)
	}
	opsDeliver(t, in, "demo", fmt.Sprintf("second-master-%d", time.Now().UnixNano()))
}

// opsProcsOf lists the processes whose command line mentions dir (every
// daemon gets "-c CONFIG_DIR").
func opsProcsOf(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i:]), ") Z") {
			continue // a zombie holds nothing
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

// TestOpsStop: postern stop ends master and every daemon within the
// bound, even with a client connected; status then says not running
// (exit 3), and a start works again.
func TestOpsStop(t *testing.T) {
	in := Start(t, Options{})
	opsDeliver(t, in, "demo", fmt.Sprintf("before-stop-%d", time.Now().UnixNano()))
	pids := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")
	pids["master"] = in.MasterPid()
	idle, _ := opsDial(t, in.Addr)
	idle.expect("EHLO idle.client.test", "250")

	t0 := time.Now()
	out, err := in.Postern("stop")
	took := time.Since(t0)
	if err != nil || !strings.Contains(out, "stopped") {
		t.Errorf("postern stop (%v):\n%s", err, out)
	}
	const bound = 10 * time.Second // master_stop_timeout in the harness
	if took > bound+2*time.Second {
		t.Errorf("postern stop took %s; master_stop_timeout is %s", took, bound)
	}
	t.Logf("postern stop took %s", took.Round(time.Millisecond))
	select {
	case <-in.done:
	case <-time.After(2 * time.Second):
		t.Errorf("master still running after postern stop returned")
	}
	for p, pid := range pids {
		if !opsWaitFile(fmt.Sprintf("/proc/%d", pid), false, 2*time.Second) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Errorf("%s (pid %d) still exists after stop: %s", p, pid, st)
		}
	}
	if left := opsProcsOf(in.Etc); len(left) > 0 {
		t.Errorf("processes of this instance left after stop:\n%s", strings.Join(left, "\n"))
	}
	idle.c.SetDeadline(time.Now().Add(5 * time.Second))
	if r := idle.read(); r != "" && !strings.HasPrefix(r, "421") {
		t.Errorf("the connected client got %q at stop; want 421 or a closed connection", r)
	}

	out, err = in.Postern("status")
	if code := opsExitCode(err); code != 3 || !strings.Contains(out, "not running") {
		t.Errorf("postern status after stop: exit %d, %q; want exit 3, not running", code, out)
	}
	out, err = in.Postern("stop")
	if opsExitCode(err) == 0 || !strings.Contains(out, "not running") {
		t.Errorf("postern stop when stopped (%v): %q, want a failure saying not running", err, out)
	}

	// It starts again on the same spool and ports.
	in.Restart()
	opsDeliver(t, in, "demo", fmt.Sprintf("after-stop-%d", time.Now().UnixNano()))
	if out, err := in.Postern("status"); err != nil || !strings.Contains(out, strconv.Itoa(in.MasterPid())) {
		t.Errorf("status after restart (%v): %s", err, out)
	}
}

// TestOpsStopStuck: a daemon that does not answer the stop request (here
// one that is stopped with SIGSTOP) is killed after master_stop_timeout,
// and postern stop still returns within its bound.
func TestOpsStopStuck(t *testing.T) {
	in := Start(t, Options{Settings: []string{"master_stop_timeout = 2s"}})
	opsDeliver(t, in, "demo", fmt.Sprintf("before-stuck-%d", time.Now().UnixNano()))
	pids := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")
	for _, p := range []string{"qmgr", "local"} {
		if err := syscall.Kill(pids[p], syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// Whatever happens, nothing stays stopped after the test.
		pid := pids[p]
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	}
	t0 := time.Now()
	out, err := in.Postern("stop")
	took := time.Since(t0)
	t.Logf("postern stop took %s", took.Round(time.Millisecond))
	if err != nil || !strings.Contains(out, "stopped") {
		t.Errorf("postern stop (%v):\n%s", err, out)
	}
	if took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("postern stop took %s with two stuck daemons; master_stop_timeout is 2s", took)
	}
	if len(opsLogLines(in, "postern/master", "master_stop_timeout")) == 0 {
		t.Errorf("master did not say that it killed daemons after master_stop_timeout")
	}
	for p, pid := range pids {
		if !opsWaitFile(fmt.Sprintf("/proc/%d", pid), false, 2*time.Second) {
			t.Errorf("%s (pid %d) still exists after stop", p, pid)
		}
	}
	if left := opsProcsOf(in.Etc); len(left) > 0 {
		t.Errorf("processes of this instance left after stop:\n%s", strings.Join(left, "\n"))
	}
}

// TestOpsCheckConfig: postern check, config -n and config -e.
func TestOpsCheckConfig(t *testing.T) {
	in := Start(t, Options{})
	opsWaitStarted(t, in, 1)
	out, err := in.Postern("check")
	if err != nil {
		t.Errorf("postern check on the running configuration: %v\n%s", err, out)
	}

	// A broken copy: an unknown setting and a bad services.conf line.
	dir := t.TempDir()
	conf, err := os.ReadFile(filepath.Join(in.Etc, "postern.conf"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := os.ReadFile(filepath.Join(in.Etc, "services.conf"))
	if err != nil {
		t.Fatal(err)
	}
	confLine := strings.Count(string(conf), "\n") + 1
	svcLine := strings.Count(string(svc), "\n") + 1
	os.WriteFile(filepath.Join(dir, "postern.conf"), append(conf, "bogus_setting_name = 1\n"...), 0o644)
	os.WriteFile(filepath.Join(dir, "services.conf"), append(svc, "brokensvc  tcp  n  -  y  -  -  smtpd\n"...), 0o644)
	cmd := exec.Command(filepath.Join(binDir, "postern"), "-c", dir, "check")
	b, err := cmd.CombinedOutput()
	out = string(b)
	t.Logf("postern check on the broken copy:\n%s", out)
	if code := opsExitCode(err); code != 1 {
		t.Errorf("postern check on a broken configuration: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{fmt.Sprintf("postern.conf:%d", confLine), "bogus_setting_name", fmt.Sprintf("services.conf:%d", svcLine)} {
		if !strings.Contains(out, want) {
			t.Errorf("postern check output lacks %q:\n%s", want, out)
		}
	}

	// config -n: exactly what the harness set, with its values.
	set := map[string]string{
		"queue_directory":         in.Spool,
		"daemon_directory":        binDir,
		"myhostname":              "mx.postern.test",
		"mydestination":           "mx.postern.test, localhost",
		"alias_maps":              "texthash:" + filepath.Join(in.Etc, "aliases"),
		"virtual_mailbox_domains": "example.test",
		"virtual_mailbox_base":    in.VMail,
		"virtual_mailbox_maps":    "texthash:" + filepath.Join(in.Etc, "vmailbox"),
		"virtual_uid_maps":        fmt.Sprintf("static:%d", in.uid),
		"virtual_gid_maps":        fmt.Sprintf("static:%d", in.gid),
		"master_stop_timeout":     "10s",
		"dns_servers":             in.DNS.Addr,
	}
	checkN := func(want map[string]string) {
		t.Helper()
		out, err := in.Postern("config", "-n")
		if err != nil {
			t.Fatalf("config -n: %v\n%s", err, out)
		}
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, ok := strings.Cut(l, " = ")
			if !ok {
				t.Errorf("config -n: line %q is not 'name = value'", l)
				continue
			}
			got[k] = v
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("config -n: %s = %q, want %q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("config -n shows %s, which was not changed", k)
			}
		}
	}
	checkN(set)
	all, err := in.Postern("config")
	if err != nil || !strings.Contains(all, "message_size_limit = 10240000") || strings.Count(all, "\n") <= len(set) {
		t.Errorf("config without -n does not show the defaults (%v):\n%.500s", err, all)
	}

	// config -e edits in place: comments stay, a second edit replaces.
	path := filepath.Join(in.Etc, "postern.conf")
	comments := func() int {
		b, _ := os.ReadFile(path)
		return len(regexp.MustCompile(`(?m)^#`).FindAll(b, -1))
	}
	c0 := comments()
	if out, err := in.Postern("config", "-e", "message_size_limit=2048000", "smtpd_banner=$myhostname ESMTP edited"); err != nil {
		t.Fatalf("config -e: %v\n%s", err, out)
	}
	set["message_size_limit"] = "2048000"
	set["smtpd_banner"] = "$myhostname ESMTP edited"
	checkN(set)
	if out, err := in.Postern("config", "-e", "message_size_limit=3000000"); err != nil {
		t.Fatalf("config -e: %v\n%s", err, out)
	}
	set["message_size_limit"] = "3000000"
	checkN(set)
	b, _ = os.ReadFile(path)
	if n := len(regexp.MustCompile(`(?m)^message_size_limit\s*=`).FindAll(b, -1)); n != 1 {
		t.Errorf("postern.conf has %d message_size_limit lines after two edits, want 1", n)
	}
	if c := comments(); c < c0-1 {
		// An edit may uncomment the commented default of the setting
		// it sets; nothing else.
		t.Errorf("config -e removed comments: %d comment lines before, %d after", c0, c)
	}
	if out, err := in.Postern("config", "smtpd_banner", "message_size_limit"); err != nil ||
		!strings.Contains(out, "smtpd_banner = $myhostname ESMTP edited") || !strings.Contains(out, "message_size_limit = 3000000") {
		t.Errorf("config NAME after edits (%v):\n%s", err, out)
	}
	// An unknown name is refused and the file stays as it was.
	before, _ := os.ReadFile(path)
	out, err = in.Postern("config", "-e", "no_such_setting=1")
	if err == nil || !strings.Contains(out, "no_such_setting") {
		t.Errorf("config -e of an unknown setting (%v): %q", err, out)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("a refused config -e changed postern.conf")
	}
	if out, err := in.Postern("check"); err != nil {
		t.Errorf("postern check after the edits: %v\n%s", err, out)
	}
}

// TestOpsRestartKilled: master restarts each daemon killed with SIGKILL
// and says so.
func TestOpsRestartKilled(t *testing.T) {
	in := Start(t, Options{})
	opsDeliver(t, in, "demo", fmt.Sprintf("before-kills-%d", time.Now().UnixNano()))
	for _, prog := range []string{"smtpd", "cleanup", "qmgr", "local"} {
		old := opsDaemonPids(t, in, prog)[prog]
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s %d: %v", prog, old, err)
		}
		l := opsWaitLogLines(in, 1, 5*time.Second, "postern/master", fmt.Sprintf("pid %d killed by signal 9", old))
		if len(l) == 0 {
			t.Errorf("master did not log 'pid %d killed by signal 9' for %s", old, prog)
		} else if !strings.Contains(l[0], prog) {
			t.Errorf("the log line does not name %s: %s", prog, l[0])
		}
		var now []int
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			now = in.Daemons()[prog]
			if len(now) == 1 && now[0] != old {
				break
			}
		}
		if len(now) != 1 || now[0] == old {
			t.Errorf("%s not restarted within 10 s: %v (old pid %d)", prog, now, old)
		}
	}
	// The restarted set delivers.
	opsDeliver(t, in, "other", fmt.Sprintf("after-kills-%d", time.Now().UnixNano()))
	if in.MasterPid() <= 0 || strings.Contains(in.Log(), "panic:") {
		t.Errorf("master or a daemon panicked")
	}
}

// opsFakeID returns a name that looks like a queue ID (18 upper-case hex
// digits) and sorts before anything real of this second.
func opsFakeID(seq int) string {
	return fmt.Sprintf("%013X%05X", time.Now().Add(-time.Hour).UnixMicro(), 0xF0000+seq)
}

// TestOpsRecovery: at start, garbage in incoming/ goes to corrupt/ with a
// log line, tmp/ leftovers are removed, and what was in active/ is
// delivered.
func TestOpsRecovery(t *testing.T) {
	in := Start(t, Options{})
	fix := opsBlockMailboxes(t, in)
	token := fmt.Sprintf("recovered-%d", time.Now().UnixNano())
	id := opsSendDeferred(t, in, token)
	if out, err := in.Postern("stop"); err != nil {
		t.Fatalf("postern stop: %v\n%s", err, out)
	}
	<-in.done
	owner, group := lookupIDs(t, "postern")
	if !isRoot() {
		owner, group = os.Getuid(), os.Getgid()
	}
	put := func(dir, name, content string) string {
		p := filepath.Join(in.Spool, dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner, group); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := opsFakeID(1)
	garbageText := "this is not a queue file\r\n"
	put("incoming", garbage, garbageText)
	truncated := opsFakeID(2)
	put("incoming", truncated, "POSTERN-QUEUE 1\narrival 1700000000123456789\n")
	leftover := opsFakeID(3)
	// Leftovers of a writer that died a while ago: a sweep leaves tmp/
	// files younger than queue.TmpGrace alone (a live cleanup creates a
	// file and locks it a moment later).
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(put("tmp", leftover, "POSTERN-QUEUE 1\narrival 1700000000123456789\nsize 0000"), old, old)
	os.Chtimes(put("tmp", "stray-file", "x"), old, old)
	// The deferred message as a crash during its delivery would leave it.
	if err := os.Rename(filepath.Join(in.Spool, "deferred", id), filepath.Join(in.Spool, "active", id)); err != nil {
		t.Fatal(err)
	}
	fix()

	in.Restart()
	for _, g := range []string{garbage, truncated} {
		if len(opsWaitLogLines(in, 1, 10*time.Second, g, "corrupt")) == 0 {
			t.Errorf("no log line about %s going to corrupt/", g)
		}
		if !opsWaitFile(filepath.Join(in.Spool, "corrupt", g), true, 5*time.Second) {
			t.Errorf("%s is not in corrupt/", g)
		}
		if _, err := os.Lstat(filepath.Join(in.Spool, "incoming", g)); err == nil {
			t.Errorf("%s is still in incoming/", g)
		}
	}
	if b, err := os.ReadFile(filepath.Join(in.Spool, "corrupt", garbage)); err != nil || string(b) != garbageText {
		t.Errorf("corrupt/%s: %q, %v; want the file unchanged", garbage, b, err)
	}
	for _, name := range []string{leftover, "stray-file"} {
		if !opsWaitFile(filepath.Join(in.Spool, "tmp", name), false, 10*time.Second) {
			t.Errorf("tmp/%s not removed at start", name)
		}
	}
	if len(opsLogLines(in, leftover, "tmp/")) == 0 {
		t.Errorf("no log line about removing tmp/%s", leftover)
	}
	if !opsWaitDelivered(t, in, "demo", token, 10*time.Second) {
		t.Errorf("the message left in active/ (%s) was not delivered after the start", id)
	}
	if len(opsLogLines(in, id, "active/", "incoming/")) == 0 {
		t.Errorf("no log line about %s going from active/ back to incoming/", id)
	}
	if n := len(opsFindMessage(in.Maildir("demo"), token)); n > 1 {
		t.Errorf("%s delivered %d times", id, n)
	}
	// The queue is empty and corrupt/ is left alone: never deleted
	// automatically, and the queue commands do not count it as mail.
	time.Sleep(2 * time.Second)
	if n := opsQueueCount(t, in.Spool); n != 0 {
		t.Errorf("%d files left in the queue", n)
	}
	for _, g := range []string{garbage, truncated} {
		if _, err := os.Lstat(filepath.Join(in.Spool, "corrupt", g)); err != nil {
			t.Errorf("corrupt/%s went away: %v", g, err)
		}
	}
	if js := opsQueueJSON(t, in); len(js) != 0 {
		t.Errorf("queue list -j shows %+v", js)
	}
}

// hangDaemonDir makes a daemon_directory with every Postern program
// (symbolic links) and hangd, a Go program that sleeps in
// main.hangAtStart on its runs listed in hangOn (counting from 1) and on
// every other run becomes showq, a real daemon.
func hangDaemonDir(t *testing.T, hangOn ...int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "postern-hung-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bins, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bins {
		if err := os.Symlink(filepath.Join(binDir, b.Name()), filepath.Join(dir, b.Name())); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	var runs []string
	for _, n := range hangOn {
		runs = append(runs, strconv.Itoa(n))
	}
	prog := `package main

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// hangAtStart is what the goroutine dump must show.
func hangAtStart() { time.Sleep(time.Hour) }

func main() {
	run := 1
	for ; ; run++ {
		if _, err := os.Stat(os.Args[0] + ".run" + strconv.Itoa(run)); err != nil {
			break
		}
	}
	os.WriteFile(os.Args[0]+".run"+strconv.Itoa(run), nil, 0o600)
	println("hangd: run", run)
	for _, n := range []int{` + strings.Join(runs, ", ") + `} {
		if run == n {
			hangAtStart()
		}
	}
	showq := ` + strconv.Quote(filepath.Join(binDir, "showq")) + `
	syscall.Exec(showq, append([]string{showq}, os.Args[1:]...), os.Environ())
	os.Exit(1)
}
`
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "hangd"), "main.go")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// TestOpsHungDaemon: a daemon that hangs before it reports ready is
// restarted, and the log says what it was doing. Its program hangs the
// first time it runs and then becomes a real daemon (showq); the start
// of the whole instance must succeed on the second try.
func TestOpsHungDaemon(t *testing.T) {
	dir := hangDaemonDir(t, 1)

	start := time.Now()
	in := Start(t, Options{
		Settings:     []string{"daemon_directory = " + dir},
		Services:     []string{"hang unix n - n - - hangd"},
		HangExpected: true,
	})
	opsWaitStarted(t, in, 1)
	took := time.Since(start)
	t.Logf("started in %s", took.Round(time.Millisecond))
	// 10 s to be taken as hung, then the restart delay of a daemon that
	// died at once (1 s), not an immediate restart.
	if took < 11*time.Second {
		t.Errorf("the instance started in %s: the hung daemon was restarted without the crash delay", took)
	}
	warn := opsLogLines(in, "postern/master", "service hang: process "+filepath.Join(dir, "hangd"), "did not report ready within 10s; killing it")
	if len(warn) != 1 {
		t.Fatalf("want one warning about the hung daemon, have %q:\n%s", warn, in.Log())
	}
	// Its threads: "TID STATE WCHAN", a sleeping one among them.
	if !regexp.MustCompile(`kernel wait\): \d+ [RSD] \S+(, \d+ [RSD] \S+)*$`).MatchString(warn[0]) {
		t.Errorf("thread states missing from %q", warn[0])
	}
	if len(opsLogLines(in, "postern/hang/hangd", "main.hangAtStart(")) == 0 {
		t.Errorf("no goroutine dump with main.hangAtStart in the log:\n%s", in.Log())
	}
	// Exit status 2 is the Go runtime's after SIGQUIT; signal 9 if the
	// dump took longer than master waits for it.
	if len(opsLogLines(in, "postern/master", filepath.Join(dir, "hangd"), "exit status 2"))+
		len(opsLogLines(in, "postern/master", filepath.Join(dir, "hangd"), "killed by signal 9")) != 1 {
		t.Errorf("the hung daemon's exit is not logged once:\n%s", in.Log())
	}
	if d := in.Daemons(); len(d["showq"]) != 2 {
		t.Errorf("want the hung service restarted as showq beside the real showq, have %v", d)
	}
}

// TestOpsHungDaemonReload: a daemon of a single-process service that
// hangs after a reload, and that a second reload asks to stop while it
// hangs, is killed all the same: the drain byte cannot stop a hung
// daemon, and the newest generation starts only once it is gone.
func TestOpsHungDaemonReload(t *testing.T) {
	dir := hangDaemonDir(t, 2)
	in := Start(t, Options{
		Settings:     []string{"daemon_directory = " + dir},
		Services:     []string{"hang unix n - n - 1 hangd"},
		HangExpected: true,
	})
	opsWaitStarted(t, in, 1)
	if out, err := in.Postern("reload"); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	// The second generation hangs: wait for its second run to begin.
	if !opsWaitFile(filepath.Join(dir, "hangd.run2"), true, 10*time.Second) {
		t.Fatalf("hangd did not run a second time after the reload:\n%s", in.Log())
	}
	if out, err := in.Postern("reload"); err != nil {
		t.Fatalf("second reload: %v: %s", err, out)
	}
	// A single-process service never runs twice: the newest generation
	// waits for the hung one. (Before it was fixed, a predecessor that
	// exited at once, as showq does on a drain, had its successor
	// started twice: run 3 came with run 2.)
	time.Sleep(time.Second)
	if _, err := os.Stat(filepath.Join(dir, "hangd.run3")); err == nil {
		t.Fatalf("the third generation of a maxproc 1 service started while the second still ran:\n%s", in.Log())
	}
	if !opsWaitFile(filepath.Join(dir, "hangd.run3"), true, 20*time.Second) {
		t.Fatalf("the third generation of hang did not start: the hung one was not killed:\n%s", in.Log())
	}
	if len(opsWaitLogLines(in, 1, 5*time.Second, "postern/master", "service hang: process", "did not report ready within 10s; killing it")) != 1 {
		t.Errorf("want one warning about the hung daemon, have %q:\n%s", opsLogLines(in, "postern/master", "service hang: process", "did not report ready"), in.Log())
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if d := in.Daemons(); len(d["showq"]) == 2 && len(d["hangd"]) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("want showq twice and no hangd among master's children, have %v:\n%s", in.Daemons(), in.Log())
		}
	}
}
