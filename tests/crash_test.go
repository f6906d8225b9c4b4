package tests

// Crash tests: DESIGN.md §3 invariants 1, 3 and 4 under SIGKILL. Senders
// keep submitting while daemons (and master) are killed at random; every
// message that got its 250 must end up in its mailboxes.

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var opsQueuedAs = regexp.MustCompile(`queued as ([0-9A-F]{18})`)

// opsSend submits one message over a raw SMTP session with deadlines and
// returns the queue ID from the final 250 reply. A nil error means the
// server acknowledged the message (its 250 after the data); what happens
// at QUIT afterwards does not matter.
func opsSend(addr, from string, to []string, msg string) (string, error) {
	return opsSendTimeout(addr, from, to, msg, 20*time.Second)
}

// opsSendTimeout is opsSend with a limit for the whole session.
func opsSendTimeout(addr, from string, to []string, msg string, limit time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, min(5*time.Second, limit))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	tp := textproto.NewConn(c)
	step := func(code int, format string, args ...any) (string, error) {
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				return "", err
			}
		}
		_, m, err := tp.ReadResponse(code)
		return m, err
	}
	if _, err := step(220, ""); err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	if _, err := step(250, "EHLO client.test"); err != nil {
		return "", fmt.Errorf("EHLO: %w", err)
	}
	if _, err := step(250, "MAIL FROM:<%s>", from); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range to {
		if _, err := step(250, "RCPT TO:<%s>", r); err != nil {
			return "", fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	if _, err := step(354, "DATA"); err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	w := tp.DotWriter()
	if _, err := w.Write([]byte(msg)); err != nil {
		return "", fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("end of data: %w", err)
	}
	m, err := step(250, "")
	if err != nil {
		return "", fmt.Errorf("after data: %w", err)
	}
	id := ""
	if s := opsQueuedAs.FindStringSubmatch(m); s != nil {
		id = s[1]
	}
	tp.PrintfLine("QUIT")
	tp.ReadResponse(221)
	return id, nil
}

// crashAck is a message that got its 250.
type crashAck struct {
	token string
	id    string
	rcpts []string // local parts at example.test
}

// TestCrash kills daemons and master with SIGKILL while 20 clients send,
// then checks that every acknowledged message was delivered.
func TestCrash(t *testing.T) {
	if !isRoot() {
		t.Log("not root: the daemons run unprivileged, the crash test still applies")
	}
	start := time.Now()
	in := Start(t, Options{Settings: []string{
		// Deliveries cut short by a kill are deferred; let them come back
		// soon so the test can wait for an empty queue.
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 2s",
		"queue_run_delay = 1s",
	}})
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	const senders = 20
	const rounds = 6
	const roundTime = 2 * time.Second

	var (
		mu       sync.Mutex
		acked    []crashAck
		attempts atomic.Int64
		failures atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	run := fmt.Sprintf("%x", seed&0xffffff)
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				token := fmt.Sprintf("crash-%s-%02d-%04d", run, s, n)
				rcpts := []string{"demo"}
				if n%3 == 2 {
					rcpts = []string{"demo", "other"}
				}
				var to []string
				for _, r := range rcpts {
					to = append(to, r+"@example.test")
				}
				msg := fmt.Sprintf("From: <s%d@example.org>\r\nTo: <demo@example.test>\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\nbody of %s\r\n", s, token, token, token)
				attempts.Add(1)
				id, err := opsSend(in.Addr, fmt.Sprintf("s%d@example.org", s), to, msg)
				if err != nil {
					failures.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked = append(acked, crashAck{token, id, rcpts})
				mu.Unlock()
				// A little pacing: the point is kills during traffic, not
				// a queue so long that the drain dominates the test.
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}

	// Every target once, in a random order, then one more at random.
	targets := []string{"smtpd", "cleanup", "qmgr", "local", "master"}
	rng.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
	targets = append(targets, targets[rng.Intn(len(targets))])
	for r := 0; r < rounds; r++ {
		time.Sleep(time.Duration(rng.Int63n(int64(roundTime))))
		target := targets[r]
		if target == "master" {
			old := in.Daemons()
			t.Logf("round %d: kill -9 master (pid %d) with daemons %v", r, in.MasterPid(), old)
			in.Kill()
			// Every daemon dies with master (Pdeathsig, EOF on the
			// control socket): none may keep serving unsupervised.
			for prog, pids := range old {
				for _, pid := range pids {
					if !crashGone(pid, 3*time.Second) {
						t.Errorf("%s (pid %d) still runs 3 s after master was killed", prog, pid)
					}
				}
			}
			in.Restart()
		} else {
			var pids []int
			for end := time.Now().Add(5 * time.Second); len(pids) == 0 && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				pids = in.Daemons()[target]
			}
			if len(pids) == 0 {
				t.Fatalf("round %d: no %s process to kill", r, target)
			}
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Logf("round %d: kill -9 %s %v", r, target, pids)
		}
		time.Sleep(roundTime / 2)
	}
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	ack := append([]crashAck(nil), acked...)
	mu.Unlock()
	t.Logf("%d sessions, %d acknowledged, %d failed (expected while daemons were down)", attempts.Load(), len(ack), failures.Load())
	if len(ack) < 100 {
		t.Errorf("only %d messages acknowledged in %d rounds: Postern was mostly unavailable", len(ack), rounds)
	}

	// Drain: all daemons up, a flush, then wait for an empty queue.
	opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")
	if out, err := in.Postern("queue", "flush"); err != nil {
		t.Errorf("postern queue flush: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	if rest := 85*time.Second - time.Since(start); rest < 60*time.Second {
		deadline = time.Now().Add(max(rest, 20*time.Second))
	}
	lastFlush := time.Now()
	for {
		n := opsQueueCount(t, in.Spool)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := in.Postern("queue", "list")
			t.Errorf("queue not empty after the drain (%d files):\n%s", n, out)
			break
		}
		if time.Since(lastFlush) > 5*time.Second {
			in.Postern("queue", "flush")
			lastFlush = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Count each token in each mailbox.
	seen := map[string]map[string]int{} // mailbox -> token -> copies
	tokenRE := regexp.MustCompile(`Subject: (crash-` + run + `-\d+-\d+)`)
	for _, box := range []string{"demo", "other"} {
		seen[box] = map[string]int{}
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(in.Maildir(box), sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(in.Maildir(box), sub, e.Name()))
				if err != nil {
					t.Errorf("read %s: %v", e.Name(), err)
					continue
				}
				if m := tokenRE.FindSubmatch(b); m != nil {
					seen[box][string(m[1])]++
				} else {
					t.Errorf("%s/%s/%s: no test subject in it:\n%.300s", box, sub, e.Name(), b)
				}
			}
		}
	}
	lost, twice := 0, 0
	for _, a := range ack {
		for _, box := range a.rcpts {
			switch n := seen[box][a.token]; {
			case n == 0:
				lost++
				if lost <= 20 {
					t.Errorf("LOST: %s (queue id %s) for %s@example.test was acknowledged but is not in the Maildir", a.token, a.id, box)
				}
			case n > 1:
				twice++
			}
		}
	}
	if lost > 20 {
		t.Errorf("... %d deliveries lost in all", lost)
	}
	t.Logf("%d acknowledged deliveries checked, %d delivered more than once (at-least-once, not a failure), %d lost", crashDeliveries(ack), twice, lost)

	// Nothing acknowledged may still sit in tmp/ (it would be removed as
	// unfinished at the next start), and nothing may have been found
	// unreadable.
	tokens := map[string]bool{}
	for _, a := range ack {
		tokens[a.token] = true
	}
	ents, err := os.ReadDir(filepath.Join(in.Spool, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(in.Spool, "tmp", e.Name()))
		if m := tokenRE.FindSubmatch(b); m != nil && tokens[string(m[1])] {
			t.Errorf("tmp/%s holds acknowledged message %s", e.Name(), m[1])
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(in.Spool, "corrupt")); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("corrupt/ holds %d file(s) after kills: %v", len(ents), names)
	}
	if strings.Contains(in.Log(), "panic:") {
		t.Errorf("a daemon panicked (see the log)")
	}
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

// crashGone waits until pid has exited (a zombie counts as exited).
func crashGone(pid int, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i:]), ") Z") {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

func crashDeliveries(ack []crashAck) int {
	n := 0
	for _, a := range ack {
		n += len(a.rcpts)
	}
	return n
}

// opsQueueCount is the number of files in the queue directories a message
// waits in.
func opsQueueCount(t *testing.T, spool string) int {
	t.Helper()
	n := 0
	for _, d := range []string{"incoming", "active", "deferred", "hold"} {
		ents, err := os.ReadDir(filepath.Join(spool, d))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: %v", d, err)
		}
		n += len(ents)
	}
	return n
}
