package main

import (
	"fmt"
	"math/rand"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// benchMaildir writes n messages shaped like contrib/bench_mail.py's
// (~4 KB, seven header fields, old mtimes) into a fresh Maildir.
func benchMaildir(t testing.TB, dir string, n int) {
	rnd := rand.New(rand.NewSource(1))
	words := strings.Fields("mail server queue delivery maildir postern dovecot imap pop3 message header body test bench sender recipient")
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "Return-Path: <sender%d@example.org>\nDelivered-To: demo@example.test\nFrom: Sender %d <sender%d@example.org>\nTo: Demo <demo@example.test>\nSubject: bench message %d\nDate: Thu, 01 Jan 2026 00:00:00 +0000\nMessage-ID: <bench%d@example.org>\n\n", i%97, i, i%97, i, i)
		for size := 0; size < 3500; {
			var l []string
			for range 10 {
				l = append(l, words[rnd.Intn(len(words))])
			}
			line := strings.Join(l, " ")
			b.WriteString(line + "\n")
			size += len(line) + 1
		}
		msg := b.String()
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d,W=%d:2,", 1700000000+i, i, len(msg), len(msg)+strings.Count(msg, "\n"))
		p := dir + "cur/" + name
		if err := os.WriteFile(p, []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
		tm := time.Unix(int64(1700000000+i), 0)
		os.Chtimes(p, tm, tm)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(dir+"cur", old, old)
	os.Chtimes(dir+"new", old, old)
}

// TestBenchPhases runs the phases of contrib/bench-mailaccess.sh's IMAP
// run on 1,000 messages (IMAP_PERF_N to change; IMAP_PERF_PROFILE=file
// writes a CPU profile of the measured session) and logs their times.
func TestBenchPhases(t *testing.T) {
	n := 1000
	if v := os.Getenv("IMAP_PERF_N"); v != "" {
		fmt.Sscan(v, &n)
	}
	dir := newMaildir(t)
	benchMaildir(t, dir, n)
	run := func(measure bool) {
		c, _ := startSession(t, dir, testSettings)
		r := newRaw(t, c)
		phase := func(name, cmd string) []string {
			start := time.Now()
			lines := r.cmd("%s", cmd)
			mustOK(t, lines)
			if measure {
				t.Logf("%-22s %8.4fs", name, time.Since(start).Seconds())
			}
			return lines
		}
		phase("select", "SELECT INBOX")
		if lines := phase("fetch_envelope", "FETCH 1:* (FLAGS ENVELOPE)"); len(lines) != n+1 {
			t.Errorf("FETCH gave %d lines", len(lines))
		}
		phase("fetch_1000_bodies", fmt.Sprintf("FETCH 1:%d (BODY.PEEK[])", min(1000, n)))
		lines := phase("search", `SEARCH BODY postern SUBJECT "message 77"`)
		if n >= 1000 && len(strings.Fields(lines[0])) < 12 {
			t.Errorf("SEARCH found too little: %q", lines[0])
		}
		phase("store_all", `STORE 1:* +FLAGS.SILENT (\Flagged)`)
		phase("close", "CLOSE")
		phase("reselect", "SELECT INBOX")
		phase("unstore", `STORE 1:* -FLAGS.SILENT (\Flagged)`)
		r.cmd("LOGOUT")
	}
	run(false) // builds the uid list (and any cache), as the bench's first pass
	if _, err := os.Stat(dir + cacheFileName); err != nil {
		t.Errorf("no header cache after the first run: %v", err)
	}
	if p := os.Getenv("IMAP_PERF_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	run(true)
}
