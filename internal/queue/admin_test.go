package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// where lists the directories (of every queue directory) that hold id:
// invariant 2 says exactly one, or none once it is gone.
func where(t *testing.T, spool string, id ID) []string {
	t.Helper()
	var in []string
	for _, d := range []string{Maildrop, Tmp, Incoming, Active, Deferred, Hold, Corrupt} {
		if _, err := os.Lstat(filepath.Join(spool, d, string(id))); err == nil {
			in = append(in, d)
		}
	}
	return in
}

func mustBeIn(t *testing.T, spool string, id ID, dir string) {
	t.Helper()
	got := where(t, spool, id)
	if dir == "" && len(got) != 0 || dir != "" && (len(got) != 1 || got[0] != dir) {
		t.Fatalf("%s is in %v, want [%s]", id, got, dir)
	}
}

func simpleEnv(sender string, rcpts ...string) *Envelope {
	env := &Envelope{Sender: sender, Protocol: "ESMTP", Arrival: time.Now()}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Recipient{Addr: r})
	}
	return env
}

// deferredMsg commits a message and moves it to deferred/ with a next
// attempt an hour away, as qmgr leaves a deferral.
func deferredMsg(t *testing.T, spool string) ID {
	t.Helper()
	id := commit(t, spool, simpleEnv("a@example.org", "b@remote.example"), []byte("Subject: x\r\n\r\nhi\r\n"))
	q := openQ(t, Path(spool, Incoming, id), os.O_RDWR)
	if err := q.SetSchedule(2, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := Move(spool, id, Incoming, Deferred); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestAdminHoldRelease(t *testing.T) {
	spool := mkSpool(t)
	a := Admin{Spool: spool}
	id := deferredMsg(t, spool)

	from, err := a.Hold(id)
	if err != nil || from != Deferred {
		t.Fatalf("Hold: %q %v", from, err)
	}
	mustBeIn(t, spool, id, Hold)
	// On hold, it is never due, whatever its time.
	if due, _ := Due(spool, time.Now().Add(24*time.Hour)); len(due) != 0 {
		t.Errorf("a held message is due: %v", due)
	}
	if from, err := a.Hold(id); err != nil || from != Hold {
		t.Errorf("second Hold: %q %v", from, err)
	}
	mustBeIn(t, spool, id, Hold)

	before := time.Now().Add(-time.Second)
	if err := a.Release(id, time.Now()); err != nil {
		t.Fatal(err)
	}
	mustBeIn(t, spool, id, Deferred)
	due, err := Due(spool, time.Now())
	if err != nil || len(due) != 1 || due[0] != id {
		t.Errorf("released message is not due now: %v %v", due, err)
	}
	q := openQ(t, Path(spool, Deferred, id), os.O_RDONLY)
	env := q.Envelope()
	if env.Attempts != 2 || env.NextAttempt.Before(before.Truncate(time.Second)) || env.NextAttempt.After(time.Now()) {
		t.Errorf("after release: attempts %d, next %v", env.Attempts, env.NextAttempt)
	}
	if err := a.Release(id, time.Now()); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Release of a message not on hold: %v", err)
	}
	mustBeIn(t, spool, id, Deferred)

	// From incoming/ too.
	id2 := commit(t, spool, simpleEnv("", "x@y"), []byte("m"))
	if from, err := a.Hold(id2); err != nil || from != Incoming {
		t.Errorf("Hold from incoming: %q %v", from, err)
	}
	mustBeIn(t, spool, id2, Hold)
}

func TestAdminActive(t *testing.T) {
	spool := mkSpool(t)
	id := commit(t, spool, simpleEnv("a@b", "c@d"), []byte("m"))
	if err := Move(spool, id, Incoming, Active); err != nil {
		t.Fatal(err)
	}
	busy := Admin{Spool: spool}
	for name, op := range map[string]func() error{
		"hold":    func() error { _, err := busy.Hold(id); return err },
		"requeue": func() error { _, err := busy.Requeue(id, time.Now()); return err },
		"delete":  func() error { _, err := busy.Delete(id); return err },
	} {
		if err := op(); !errors.Is(err, ErrActive) {
			t.Errorf("%s of a message in active/: %v", name, err)
		}
		mustBeIn(t, spool, id, Active)
	}
	// No qmgr: active/ is a leftover and counts as incoming/.
	idle := Admin{Spool: spool, Idle: true}
	if from, err := idle.Hold(id); err != nil || from != Active {
		t.Fatalf("idle Hold: %q %v", from, err)
	}
	mustBeIn(t, spool, id, Hold)
}

func TestAdminRequeue(t *testing.T) {
	spool := mkSpool(t)
	a := Admin{Spool: spool}
	id := deferredMsg(t, spool)
	from, err := a.Requeue(id, time.Now())
	if err != nil || from != Deferred {
		t.Fatalf("Requeue: %q %v", from, err)
	}
	mustBeIn(t, spool, id, Incoming)
	env := openQ(t, Path(spool, Incoming, id), os.O_RDONLY).Envelope()
	if env.NextAttempt.After(time.Now()) || env.Attempts != 2 {
		t.Errorf("requeue did not reset the next attempt: %v (attempts %d)", env.NextAttempt, env.Attempts)
	}
	// Requeue of a held message releases it into incoming/.
	if _, err := a.Hold(id); err != nil {
		t.Fatal(err)
	}
	if from, err := a.Requeue(id, time.Now()); err != nil || from != Hold {
		t.Errorf("Requeue from hold: %q %v", from, err)
	}
	mustBeIn(t, spool, id, Incoming)
	// Already in incoming/: stays, schedule reset.
	if from, err := a.Requeue(id, time.Now()); err != nil || from != Incoming {
		t.Errorf("Requeue in incoming: %q %v", from, err)
	}
	mustBeIn(t, spool, id, Incoming)
}

func TestAdminDelete(t *testing.T) {
	spool := mkSpool(t)
	a := Admin{Spool: spool}
	var ids []ID
	for i := 0; i < 3; i++ {
		ids = append(ids, deferredMsg(t, spool))
	}
	if _, err := a.Hold(ids[1]); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, commit(t, spool, simpleEnv("a@b", "c@d"), []byte("m")))
	all, err := AllIDs(spool, nil)
	if err != nil || len(all) != 4 {
		t.Fatalf("AllIDs: %v %v", all, err)
	}
	// Delete ALL.
	for _, id := range all {
		if _, err := a.Delete(id); err != nil {
			t.Errorf("Delete %s: %v", id, err)
		}
	}
	for _, id := range ids {
		mustBeIn(t, spool, id, "")
	}
	if all, _ := AllIDs(spool, nil); len(all) != 0 {
		t.Errorf("left after delete ALL: %v", all)
	}
	if _, err := a.Delete(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a deleted message: %v", err)
	}
	for _, bad := range []ID{"../../etc/passwd", "", "0123456789abcdef01"} {
		if _, err := a.Delete(bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q): %v", bad, err)
		}
	}
}

// TestAdminRace runs hold and requeue against a mover that shuttles the
// message between deferred/ and incoming/ as qmgr's scans do: the
// message must always be in exactly one place. (qmgr moves a message a
// few times per delivery attempt; this one moves every 50µs.)
func TestAdminRace(t *testing.T) {
	spool := mkSpool(t)
	a := Admin{Spool: spool}
	id := deferredMsg(t, spool)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			Move(spool, id, Deferred, Incoming)
			time.Sleep(50 * time.Microsecond)
			Move(spool, id, Incoming, Deferred)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for i := 0; i < 200; i++ {
		if _, err := a.Hold(id); err != nil {
			t.Fatalf("Hold %d: %v", i, err)
		}
		if _, err := a.Requeue(id, time.Now()); err != nil {
			t.Fatalf("Requeue %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if got := where(t, spool, id); len(got) != 1 {
		t.Fatalf("%s is in %v", id, got)
	}
}

func TestUIDRecord(t *testing.T) {
	spool := mkSpool(t)
	env := simpleEnv("alice@here", "bob@there")
	env.UID = "1000"
	id := commit(t, spool, env, []byte("m"))
	got := openQ(t, Path(spool, Incoming, id), os.O_RDONLY).Envelope()
	if got.UID != "1000" {
		t.Errorf("uid %q, want 1000", got.UID)
	}
	b, _ := os.ReadFile(Path(spool, Incoming, id))
	if !bytes.Contains(b, []byte("\nuid 1000\n")) {
		t.Errorf("no uid record:\n%s", b)
	}
	// No uid: no record (files of network mail look as before).
	id2 := commit(t, spool, simpleEnv("a@b", "c@d"), []byte("m"))
	b, _ = os.ReadFile(Path(spool, Incoming, id2))
	if bytes.Contains(b, []byte("\nuid ")) {
		t.Errorf("uid record without a uid:\n%s", b)
	}
	for _, bad := range []string{"-1", "01", "4294967296", "1a", " 1", "99999999999"} {
		env.UID = bad
		if _, err := Create(spool, NewID(), env); err == nil {
			t.Errorf("Create accepted uid %q", bad)
		}
		f := strings.Replace(string(validFile(t, "m")), "\nsender ", "\nuid "+bad+"\nsender ", 1)
		if _, _, err := parse(strings.NewReader(f), int64(len(f)), "t"); err == nil {
			t.Errorf("parse accepted uid %q", bad)
		}
	}
	f := strings.Replace(string(validFile(t, "m")), "\nsender ", "\nuid 4294967295\nuid 1\nsender ", 1)
	if _, _, err := parse(strings.NewReader(f), int64(len(f)), "t"); err == nil {
		t.Error("parse accepted two uid records")
	}
}

func TestWriteListing(t *testing.T) {
	spool := mkSpool(t)
	a := Admin{Spool: spool}
	var buf bytes.Buffer
	if err := WriteListing(&buf, spool, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(buf.String(), "Mail queue is empty\n") {
		t.Errorf("empty queue:\n%s", buf.String())
	}
	id1 := deferredMsg(t, spool)
	id2 := deferredMsg(t, spool)
	a.Hold(id2)
	env := simpleEnv("", "x@y", "done@y")
	env.Recipients[1].Status = StatusDelivered
	env.UID = "1000"
	id3 := commit(t, spool, env, []byte("m"))
	Move(spool, id3, Incoming, Active)
	os.WriteFile(filepath.Join(spool, Deferred, "0123456789ABCDEF01"), []byte("garbage"), 0o600)

	buf.Reset()
	var warned []string
	if err := WriteListing(&buf, spool, ListOptions{Warn: func(d string, id ID, err error) { warned = append(warned, d+"/"+string(id)) }}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, re := range []string{
		`(?m)^-Queue ID-\s+--Size--`,
		`(?m)^` + string(id3) + `\*\s+1 .* MAILER-DAEMON$`,
		`(?m)^` + string(id1) + `\s+\d+ .* a@example\.org$`,
		`(?m)^` + string(id2) + `!\s+\d+ `,
		`(?m)^\s{51} x@y$`,
		`(?m)^-- 3 Request\(s\)\.$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("listing does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "done@y") {
		t.Errorf("a delivered recipient is listed:\n%s", out)
	}
	if len(warned) != 1 || warned[0] != "deferred/0123456789ABCDEF01" {
		t.Errorf("warnings: %v", warned)
	}
	// incoming, active, deferred, hold: active's id3 before deferred's id1.
	if strings.Index(out, string(id3)) > strings.Index(out, string(id1)) || strings.Index(out, string(id1)) > strings.Index(out, string(id2)) {
		t.Errorf("listing order:\n%s", out)
	}

	// JSON: one object per line.
	buf.Reset()
	if err := WriteListing(&buf, spool, ListOptions{JSON: true}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("JSON lines: %q", lines)
	}
	var e ListEntry
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil {
		t.Fatal(err)
	}
	if e.QueueName != Hold || e.QueueID != string(id2) || e.Attempts != 2 || e.NextAttempt == 0 || len(e.Recipients) != 1 || e.Recipients[0].Status != "pending" {
		t.Errorf("JSON entry: %+v", e)
	}

	// Filter: only uid 1000's message.
	buf.Reset()
	WriteListing(&buf, spool, ListOptions{Filter: func(env *Envelope) bool { return env.UID == "1000" }})
	if out := buf.String(); !strings.Contains(out, string(id3)) || strings.Contains(out, string(id1)) || !strings.Contains(out, "-- 1 Request(s).") {
		t.Errorf("filtered listing:\n%s", out)
	}
}

func TestWriteListingCap(t *testing.T) {
	spool := mkSpool(t)
	for i := 0; i < 50; i++ {
		commit(t, spool, simpleEnv(fmt.Sprintf("s%d@example.org", i), "r@example.net"), []byte("m"))
	}
	for _, js := range []bool{false, true} {
		var buf bytes.Buffer
		if err := WriteListing(&buf, spool, ListOptions{JSON: js, MaxBytes: 2000}); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		m := regexp.MustCompile(`(?m)^-- (\d+) more messages not shown\n\z`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("json=%v: no final 'more' line:\n%s", js, out)
		}
		body := strings.TrimSuffix(out, m[0])
		if !js {
			body = strings.TrimSuffix(body, "-- 50 Request(s).\n")
		}
		if len(body) > 2000 {
			t.Errorf("json=%v: %d bytes before the trailer, cap 2000", js, len(body))
		}
		shown := strings.Count(out, "@example.org")
		var more int
		fmt.Sscan(m[1], &more)
		if shown+more != 50 || shown == 0 {
			t.Errorf("json=%v: %d shown + %d more != 50", js, shown, more)
		}
	}
}
