package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mkSpool makes a spool with every directory.
func mkSpool(t testing.TB) string {
	t.Helper()
	spool := t.TempDir()
	for _, d := range Dirs {
		if err := os.Mkdir(filepath.Join(spool, d.Name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return spool
}

func hostileEnvelope() *Envelope {
	nasty := "a b\r\nc\x00d%25-\t\x7f\xff\xfeé€😀\u2028\u202e%"
	return &Envelope{
		Arrival:     time.Unix(1700000000, 123456789),
		Sender:      "sénder " + nasty + "@example.org",
		ClientName:  "mx.example.org\r\nX-Injected: yes",
		ClientAddr:  "2001:db8::1",
		Helo:        "-",
		Protocol:    "ESMTP",
		SASLUser:    "%2D",
		Body:        "8BITMIME",
		SMTPUTF8:    true,
		Ret:         "",
		EnvID:       "end-envelope\nrcpt D - - evil@x",
		Attempts:    7,
		NextAttempt: time.Unix(1700003600, 0),
		Recipients: []Recipient{
			{Addr: "bob@example.net", ORcpt: "rfc822;bob@example.net", Notify: "SUCCESS,FAILURE"},
			{Addr: nasty, ORcpt: "-", Notify: "", Status: StatusDelivered},
			{Addr: "", Status: StatusFailed},
			{Addr: "δοκιμή@παράδειγμα.δοκιμή", Status: StatusWarned},
		},
	}
}

// commit writes a queue file with the given envelope and message.
func commit(t testing.TB, spool string, env *Envelope, msg []byte) ID {
	t.Helper()
	id := NewID()
	w, err := Create(spool, id, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return id
}

func openQ(t testing.TB, path string, flag int) *File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(f)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func sameEnvelope(t *testing.T, got, want *Envelope) {
	t.Helper()
	g, w := *got, *want
	if !g.Arrival.Equal(w.Arrival) || !g.NextAttempt.Equal(w.NextAttempt) {
		t.Errorf("times: got %v %v, want %v %v", g.Arrival, g.NextAttempt, w.Arrival, w.NextAttempt)
	}
	g.Arrival, w.Arrival = time.Time{}, time.Time{}
	g.NextAttempt, w.NextAttempt = time.Time{}, time.Time{}
	g.Size, w.Size = 0, 0
	w.Recipients = slices.Clone(w.Recipients)
	for i := range w.Recipients {
		if w.Recipients[i].Status == 0 {
			w.Recipients[i].Status = StatusPending
		}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("envelope:\n got %+v\nwant %+v", g, w)
	}
}

func TestRoundTrip(t *testing.T) {
	spool := mkSpool(t)
	env := hostileEnvelope()
	msg := []byte("Subject: test\r\n\r\nbody\r\n.\r\n\x00\xff end-envelope\r\n")
	id := commit(t, spool, env, msg)

	q := openQ(t, Path(spool, Incoming, id), os.O_RDONLY)
	sameEnvelope(t, q.Envelope(), env)
	if q.Envelope().Size != int64(len(msg)) {
		t.Errorf("Size %d, want %d", q.Envelope().Size, len(msg))
	}
	got, err := io.ReadAll(q.Message())
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("message %q, %v", got, err)
	}
	raw, _ := os.ReadFile(Path(spool, Incoming, id))
	if !bytes.Contains(raw, []byte("δοκιμή@παράδειγμα.δοκιμή")) {
		t.Error("printable UTF-8 was escaped")
	}
	head := raw[:bytes.Index(raw, []byte("end-envelope\n"))]
	if bytes.ContainsAny(head, "\r\x00\x7f\t") {
		t.Errorf("raw control bytes in the envelope:\n%s", head)
	}
	if n := bytes.Count(raw, []byte("\nend-envelope\n")); n != 1 {
		t.Errorf("%d end-envelope lines", n)
	}

	// Empty message, null sender, zero times.
	env2 := &Envelope{Arrival: time.Unix(0, 1), Recipients: []Recipient{{Addr: "x"}}}
	id2 := commit(t, spool, env2, nil)
	q2 := openQ(t, Path(spool, Incoming, id2), os.O_RDONLY)
	sameEnvelope(t, q2.Envelope(), env2)
	if q2.Envelope().Size != 0 || !q2.Envelope().NextAttempt.IsZero() {
		t.Errorf("empty message: %+v", q2.Envelope())
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, v := range []string{"", "-", "--", "%", "%2D", " ", "a b", "\x00", "\xff", "é", "\u2028", "end-envelope", "\r\n"} {
		enc := appendValue(nil, v)
		if bytes.ContainsAny(enc, " \r\n\x00") || len(enc) == 0 {
			t.Errorf("%q escaped as %q", v, enc)
		}
		dec, err := parseValue(string(enc))
		if err != nil || dec != v {
			t.Errorf("%q -> %q -> %q, %v", v, enc, dec, err)
		}
	}
	for _, bad := range []string{"", "%", "%4", "%GG", "a\tb", "a\x00"} {
		if _, err := parseValue(bad); err == nil {
			t.Errorf("parseValue accepted %q", bad)
		}
	}
}

func FuzzValue(f *testing.F) {
	f.Add("a b%-\xff\u2028")
	f.Fuzz(func(t *testing.T, v string) {
		enc := appendValue(nil, v)
		if bytes.ContainsAny(enc, " \n") {
			t.Fatalf("%q escaped as %q", v, enc)
		}
		dec, err := parseValue(string(enc))
		if err != nil || dec != v {
			t.Fatalf("%q -> %q -> %q, %v", v, enc, dec, err)
		}
	})
}

func TestCommit(t *testing.T) {
	spool := mkSpool(t)
	id := NewID()
	w, err := Create(spool, id, hostileEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Path(spool, Tmp, id)); err != nil {
		t.Fatalf("tmp file: %v", err)
	}
	if _, err := Create(spool, id, hostileEnvelope()); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create with the same ID: %v", err)
	}
	w.Write([]byte("hello\r\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := List(spool, Tmp); len(ids) != 0 {
		t.Errorf("tmp/ not empty: %v", ids)
	}
	st, err := os.Stat(Path(spool, Incoming, id))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	w.Abort() // no-op after Commit
	if _, err := os.Stat(Path(spool, Incoming, id)); err != nil {
		t.Errorf("Abort after Commit removed the file: %v", err)
	}

	// Abort removes the tmp file.
	w, err = Create(spool, NewID(), hostileEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	w.Abort()
	if ids, other, _ := ListAll(spool, Tmp); len(ids)+len(other) != 0 {
		t.Errorf("tmp/ after Abort: %v %v", ids, other)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}

	// Commit refuses to replace a file already in incoming/.
	w, err = Create(spool, id, hostileEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Commit over an existing incoming file: %v", err)
	}
	if ids, _ := List(spool, Tmp); len(ids) != 0 {
		t.Errorf("failed Commit left %v in tmp/", ids)
	}

	// Bad arguments.
	if _, err := Create(spool, "../../etc/passwd", hostileEnvelope()); err == nil {
		t.Error("Create accepted a bad ID")
	}
	if _, err := Create(spool, NewID(), &Envelope{}); err == nil {
		t.Error("Create accepted no recipients")
	}
	if _, err := Create(spool, NewID(), &Envelope{Recipients: []Recipient{{Addr: "x", Status: 'X'}}}); err == nil {
		t.Error("Create accepted a bad status")
	}
	if _, err := Create(spool, NewID(), &Envelope{Recipients: []Recipient{{Addr: strings.Repeat("\x00", MaxRecord)}}}); err == nil {
		t.Error("Create accepted an over-long record")
	}
	if _, err := Create(spool, NewID(), &Envelope{Recipients: make([]Recipient, MaxRecipients+1)}); err == nil {
		t.Error("Create accepted too many recipients")
	}
	if ids, other, _ := ListAll(spool, Tmp); len(ids)+len(other) != 0 {
		t.Errorf("refused Create left files: %v %v", ids, other)
	}
}

func TestStatusInPlace(t *testing.T) {
	spool := mkSpool(t)
	env := hostileEnvelope()
	msg := bytes.Repeat([]byte("line\r\n"), 1000)
	id := commit(t, spool, env, msg)
	path := Path(spool, Incoming, id)
	before, _ := os.Stat(path)

	q := openQ(t, path, os.O_RDWR)
	if err := q.SetStatus(0, StatusDelivered); err != nil {
		t.Fatal(err)
	}
	if err := q.SetStatus(3, StatusFailed); err != nil {
		t.Fatal(err)
	}
	next := time.Unix(1900000000, 0)
	if err := q.SetSchedule(1234567890, next); err != nil {
		t.Fatal(err)
	}
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	if q.SetStatus(4, StatusDelivered) == nil || q.SetStatus(-1, StatusDelivered) == nil || q.SetStatus(0, 'x') == nil {
		t.Error("SetStatus accepted a bad argument")
	}
	if q.SetSchedule(-1, next) == nil || q.SetSchedule(maxAttempts+1, next) == nil {
		t.Error("SetSchedule accepted a bad count")
	}
	q.Close()

	after, _ := os.Stat(path)
	if after.Size() != before.Size() {
		t.Errorf("size changed from %d to %d", before.Size(), after.Size())
	}
	if !after.ModTime().Equal(next) {
		t.Errorf("mtime %v, want %v", after.ModTime(), next)
	}
	q = openQ(t, path, os.O_RDONLY)
	e := q.Envelope()
	want := []byte{StatusDelivered, StatusDelivered, StatusFailed, StatusFailed}
	for i, r := range e.Recipients {
		if r.Status != want[i] {
			t.Errorf("recipient %d status %q, want %q", i, r.Status, want[i])
		}
		if r.Addr != env.Recipients[i].Addr {
			t.Errorf("recipient %d address changed: %q", i, r.Addr)
		}
	}
	if e.Attempts != 1234567890 || !e.NextAttempt.Equal(next) {
		t.Errorf("schedule %d %v", e.Attempts, e.NextAttempt)
	}
	if got, _ := io.ReadAll(q.Message()); !bytes.Equal(got, msg) {
		t.Error("message changed")
	}
	// Read-only descriptor: updates fail, nothing panics.
	if err := q.SetStatus(0, StatusPending); err == nil {
		t.Error("SetStatus through a read-only descriptor succeeded")
	}
}

func TestConcurrentCommits(t *testing.T) {
	spool := mkSpool(t)
	incoming := filepath.Join(spool, Incoming)
	var (
		mu      sync.Mutex
		covered = map[string]bool{} // names an fsync has completed over
		calls   atomic.Int64
	)
	old := fsyncDir
	t.Cleanup(func() { fsyncDir = old })
	fsyncDir = func(path string) error {
		calls.Add(1)
		// What this fsync covers is what is in the directory when it
		// begins.
		ents, _ := os.ReadDir(path)
		time.Sleep(5 * time.Millisecond)
		err := old(path)
		mu.Lock()
		for _, e := range ents {
			covered[e.Name()] = true
		}
		mu.Unlock()
		return err
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			id := NewID()
			w, err := Create(spool, id, hostileEnvelope())
			if err != nil {
				errs <- err
				return
			}
			w.Write(bytes.Repeat([]byte("x"), 4096))
			if err := w.Commit(); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ok := covered[string(id)]
			mu.Unlock()
			if !ok {
				errs <- fmt.Errorf("%s: Commit returned before an fsync covering it", id)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ids, err := List(spool, Incoming)
	if err != nil || len(ids) != n {
		t.Fatalf("%d files in incoming/, %v", len(ids), err)
	}
	for _, id := range ids {
		q := openQ(t, filepath.Join(incoming, string(id)), os.O_RDONLY)
		if q.Envelope().Size != 4096 {
			t.Errorf("%s: size %d", id, q.Envelope().Size)
		}
	}
	if c := calls.Load(); c >= n/2 {
		t.Errorf("%d directory fsyncs for %d commits: not grouped", c, n)
	} else {
		t.Logf("%d commits, %d directory fsyncs", n, c)
	}
}

func TestGroupCommitError(t *testing.T) {
	spool := mkSpool(t)
	old := fsyncDir
	t.Cleanup(func() { fsyncDir = old })
	fsyncDir = func(string) error { return errors.New("injected EIO") }
	w, err := Create(spool, NewID(), hostileEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "injected EIO") {
		t.Errorf("Commit with a failing fsync: %v", err)
	}
	fsyncDir = old
	// A later fsync does not clear the failure for commits that
	// targeted the failed one, but new commits succeed.
	commit(t, spool, hostileEnvelope(), nil)
}

func TestID(t *testing.T) {
	prev := NewID()
	seen := map[ID]bool{prev: true}
	for range 100000 {
		id := NewID()
		if !ValidID(string(id)) {
			t.Fatalf("invalid ID %q", id)
		}
		if id <= prev {
			t.Fatalf("%s after %s: not increasing", id, prev)
		}
		if seen[id] {
			t.Fatalf("duplicate %s", id)
		}
		seen[id] = true
		prev = id
	}
	ts, ok := prev.Time()
	if !ok || time.Since(ts).Abs() > time.Minute {
		t.Errorf("ID time %v %v", ts, ok)
	}
	for _, bad := range []string{"", "../x", "0123456789ABCDEF0", "0123456789ABCDEF012", "0123456789abcdef01",
		"0123456789ABCDEF0G", "../../../../../etc", "0123456789ABCDEF/1", "0123456789ABCDEF\x000", " 123456789ABCDEF01"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
		if Path("/spool", Incoming, ID(bad)) != "" {
			t.Errorf("Path with %q", bad)
		}
	}
	if Path("/spool", "../etc", prev) != "" || Path(".", Incoming, prev) != "incoming/"+string(prev) {
		t.Error("Path")
	}
	// Clock stepped back, sequence wrapped: still increasing.
	idGen.Lock()
	idGen.ts += 10_000_000
	idGen.seq = seqMask
	idGen.Unlock()
	a, b := NewID(), NewID()
	if a <= prev || b <= a {
		t.Errorf("after clock step: %s %s %s", prev, a, b)
	}
}

func TestDirs(t *testing.T) {
	want := map[string]uint32{"maildrop": 0o1730, "tmp": 0o700, "incoming": 0o700, "active": 0o700,
		"deferred": 0o700, "hold": 0o700, "corrupt": 0o700, "free": 0o700, "private": 0o700, "public": 0o710, "pid": 0o700, "empty": 0o555, "login": 0o755}
	if len(Dirs) != len(want) {
		t.Errorf("%d dirs", len(Dirs))
	}
	for _, d := range Dirs {
		if d.UnixMode() != want[d.Name] {
			t.Errorf("%s: mode %o, want %o", d.Name, d.UnixMode(), want[d.Name])
		}
		wantOwner := OwnerMail
		switch d.Name {
		case Maildrop, Public:
			wantOwner = OwnerMailSetgid
		case PID, Empty, Login:
			wantOwner = OwnerRoot
		}
		if d.Owner != wantOwner {
			t.Errorf("%s: owner %q", d.Name, d.Owner)
		}
	}
}

func TestMoveListDue(t *testing.T) {
	spool := mkSpool(t)
	var ids []ID
	for range 3 {
		ids = append(ids, commit(t, spool, hostileEnvelope(), []byte("m")))
	}
	os.WriteFile(filepath.Join(spool, Incoming, "junk.txt"), nil, 0o600)
	got, other, err := ListAll(spool, Incoming)
	if err != nil || !slices.Equal(got, ids) || !slices.Equal(other, []string{"junk.txt"}) {
		t.Fatalf("ListAll: %v %v %v", got, other, err)
	}
	if err := Move(spool, ids[0], Incoming, Active); err != nil {
		t.Fatal(err)
	}
	if err := MoveSync(spool, ids[0], Active, Deferred); err != nil {
		t.Fatal(err)
	}
	if err := Move(spool, ids[1], Incoming, Deferred); err != nil {
		t.Fatal(err)
	}
	if err := Move(spool, ids[1], Incoming, Deferred); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("moving a missing file: %v", err)
	}
	// Never replaces.
	os.WriteFile(filepath.Join(spool, Hold, string(ids[2])), []byte("other"), 0o600)
	if err := Move(spool, ids[2], Incoming, Hold); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Move over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(spool, Hold, string(ids[2]))); string(b) != "other" {
		t.Error("Move replaced a file")
	}
	for _, c := range [][2]string{{Incoming, Tmp}, {Tmp, Incoming}, {Incoming, "../x"}, {Incoming, Private}} {
		if err := Move(spool, ids[2], c[0], c[1]); err == nil {
			t.Errorf("Move %s -> %s accepted", c[0], c[1])
		}
	}
	if err := Move(spool, "../../x", Incoming, Active); err == nil {
		t.Error("Move accepted a bad ID")
	}
	if _, err := List(spool, "../"); err == nil {
		t.Error("List accepted a bad directory")
	}

	now := time.Now()
	for i, id := range ids[:2] {
		q := openQ(t, Path(spool, Deferred, id), os.O_RDWR)
		if err := q.SetSchedule(1, now.Add(time.Duration(i*2-1)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	due, err := Due(spool, now)
	if err != nil || !slices.Equal(due, ids[:1]) {
		t.Errorf("Due now: %v %v", due, err)
	}
	due, _ = Due(spool, now.Add(2*time.Hour))
	if !slices.Equal(due, ids[:2]) {
		t.Errorf("Due later: %v", due)
	}
}

func TestRecover(t *testing.T) {
	spool := mkSpool(t)
	env := hostileEnvelope()
	// A live writer, and a dead one's leftover.
	live, err := Create(spool, NewID(), env)
	if err != nil {
		t.Fatal(err)
	}
	dead := NewID()
	os.WriteFile(Path(spool, Tmp, dead), []byte("POSTERN-QUEUE 1\narrival 1\n"), 0o600)
	os.WriteFile(filepath.Join(spool, Tmp, "stray"), nil, 0o600)
	// Leftovers of a crash are older than TmpGrace; a fresh unlocked file
	// (a writer between create and lock) is left alone.
	old := time.Now().Add(-2 * TmpGrace)
	os.Chtimes(Path(spool, Tmp, dead), old, old)
	os.Chtimes(filepath.Join(spool, Tmp, "stray"), old, old)
	young := NewID()
	os.WriteFile(Path(spool, Tmp, young), nil, 0o600)
	// Two messages interrupted in active/.
	a1 := commit(t, spool, env, []byte("one"))
	a2 := commit(t, spool, env, []byte("two"))
	Move(spool, a1, Incoming, Active)
	Move(spool, a2, Incoming, Active)
	// A good deferred message, a truncated one, garbage, junk names, a
	// symlink.
	good := commit(t, spool, env, []byte("good"))
	Move(spool, good, Incoming, Deferred)
	trunc := commit(t, spool, env, []byte("truncated message"))
	st, _ := os.Stat(Path(spool, Incoming, trunc))
	os.Truncate(Path(spool, Incoming, trunc), st.Size()-5)
	Move(spool, trunc, Incoming, Deferred)
	garbage := NewID()
	os.WriteFile(Path(spool, Incoming, garbage), []byte("\x00\x01garbage"), 0o600)
	os.WriteFile(filepath.Join(spool, Incoming, "junk"), nil, 0o600)
	link := NewID()
	os.Symlink("/etc/passwd", Path(spool, Deferred, link))
	os.Mkdir(filepath.Join(spool, Deferred, "subdir"), 0o700)

	var log []string
	err = Recover(spool, func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	logText := strings.Join(log, "\n")
	t.Log(logText)

	if ids, other, _ := ListAll(spool, Tmp); !slices.Equal(ids, []ID{live.ID(), young}) || len(other) != 0 {
		t.Errorf("tmp/ after Recover: %v %v", ids, other)
	}
	if ids, other, _ := ListAll(spool, Active); len(ids)+len(other) != 0 {
		t.Errorf("active/ after Recover: %v %v", ids, other)
	}
	if ids, other, _ := ListAll(spool, Incoming); !slices.Equal(ids, []ID{a1, a2}) || len(other) != 0 {
		t.Errorf("incoming/ after Recover: %v %v", ids, other)
	}
	if ids, other, _ := ListAll(spool, Deferred); !slices.Equal(ids, []ID{good}) || !slices.Equal(other, []string{"subdir"}) {
		t.Errorf("deferred/ after Recover: %v %v", ids, other)
	}
	_, corrupt, _ := ListAll(spool, Corrupt)
	ids, _ := List(spool, Corrupt)
	for _, want := range []string{string(trunc), string(garbage), string(link), "junk"} {
		if !slices.Contains(corrupt, want) && !slices.Contains(ids, ID(want)) {
			t.Errorf("%s not in corrupt/ (%v %v)", want, ids, corrupt)
		}
		if !strings.Contains(logText, want) {
			t.Errorf("no log line for %s", want)
		}
	}
	if !strings.Contains(logText, "size record says") {
		t.Error("log does not say why the truncated file is corrupt")
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("symlink target harmed: %v", err)
	}
	// The live writer is unharmed.
	live.Write([]byte("still here"))
	if err := live.Commit(); err != nil {
		t.Errorf("live writer after Recover: %v", err)
	}
	// Idempotent.
	log = nil
	if err := Recover(spool, nil); err != nil {
		t.Fatal(err)
	}
	if ids, _ := List(spool, Incoming); len(ids) != 3 {
		t.Errorf("second Recover: incoming %v", ids)
	}
	if err := Recover(filepath.Join(spool, "missing"), nil); err == nil {
		t.Error("Recover of a missing spool succeeded")
	}
}

// validFile returns the bytes of a queue file with n recipients.
func validFile(t testing.TB, msg string) []byte {
	env := hostileEnvelope()
	head, sizeOff, err := encodeEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	copy(head[sizeOff:], fmt.Sprintf("%020d", len(msg)))
	return append(head, msg...)
}

func TestParseErrors(t *testing.T) {
	good := string(validFile(t, "msg"))
	if _, _, err := parse(strings.NewReader(good), int64(len(good)), "x"); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	repl := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("no %q in the file", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	cases := []struct{ name, file, want string }{
		{"empty", "", "line 1: truncated"},
		{"magic", repl("POSTERN-QUEUE 1", "POSTFIX-QUEUE 1"), "line 1: not a Postern"},
		{"version", repl("POSTERN-QUEUE 1", "POSTERN-QUEUE 2"), "unsupported version"},
		{"unknown", repl("helo ", "hello "), "unknown record"},
		{"repeated", repl("helo ", "sender x\nhelo "), "repeated sender"},
		{"no value", repl("protocol ESMTP", "protocol"), "without value"},
		{"status", repl("rcpt - ", "rcpt X "), "bad rcpt"},
		{"rcpt fields", repl("rcpt - ", "rcpt - a "), "bad rcpt"},
		{"escape", repl("helo ", "helo %G"), "bad % escape"},
		{"control", repl("helo ", "helo \t"), "raw control"},
		{"size", repl("size 0", "size x"), "bad size"},
		{"schedule", repl("schedule 0", "schedule  "), "bad schedule"},
		{"smtputf8", repl("smtputf8 yes", "smtputf8 maybe"), "bad smtputf8"},
		{"no end", repl("end-envelope\n", "end-envelope"), "truncated"},
		{"size mismatch", good + "x", "size record says 3 bytes, message has 4"},
		{"repeated envid", repl("\nsender ", "\nenvid x\nsender "), "repeated envid"},
		{"arrival", repl("arrival 1", "arrival -1"), "bad arrival"},
		{"long record", repl("helo ", "helo "+strings.Repeat("a", MaxRecord)), "longer than"},
	}
	for _, c := range cases {
		_, _, err := parse(strings.NewReader(c.file), int64(len(c.file)), "q")
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a FormatError with %q", c.name, err, c.want)
		}
	}
	// Missing required record and no recipients.
	noSender := regexpCut(good, "\nsender ")
	if _, _, err := parse(strings.NewReader(noSender), int64(len(noSender)), "q"); err == nil || !strings.Contains(err.Error(), "no sender record") {
		t.Errorf("no sender: %v", err)
	}
	noRcpt := good
	for strings.Contains(noRcpt, "\nrcpt ") {
		noRcpt = regexpCut(noRcpt, "\nrcpt ")
	}
	if _, _, err := parse(strings.NewReader(noRcpt), int64(len(noRcpt)), "q"); err == nil || !strings.Contains(err.Error(), "no recipients") {
		t.Errorf("no recipients: %v", err)
	}
}

// regexpCut removes the line that starts after marker's newline.
func regexpCut(s, marker string) string {
	i := strings.Index(s, marker)
	if i < 0 {
		return s
	}
	j := strings.IndexByte(s[i+1:], '\n')
	return s[:i+1] + s[i+1+j+1:]
}

func TestParseLimits(t *testing.T) {
	head := "POSTERN-QUEUE 1\narrival 1\nsize 00000000000000000000\nschedule 0000000000 00000000000000000000\nsender -\n"
	var b strings.Builder
	b.WriteString(head)
	for range MaxRecipients + 1 {
		b.WriteString("rcpt - - - a\n")
	}
	b.WriteString("end-envelope\n")
	s := b.String()
	if _, _, err := parse(strings.NewReader(s), int64(len(s)), "q"); err == nil || !strings.Contains(err.Error(), "more than 100000 recipients") {
		t.Errorf("too many recipients: %v", err)
	}
	b.Reset()
	b.WriteString(head)
	line := "rcpt - - - " + strings.Repeat("a", 200) + "\n"
	for b.Len() < MaxEnvelope+1000 {
		b.WriteString(line)
	}
	s = b.String()
	if _, _, err := parse(strings.NewReader(s), int64(len(s)), "q"); err == nil || !strings.Contains(err.Error(), "no end-envelope in the first") {
		t.Errorf("envelope too big: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(validFile(f, "Subject: x\r\n\r\nhi\r\n"))
	f.Add([]byte("POSTERN-QUEUE 1\narrival 1\nsize 00000000000000000000\nschedule 0000000000 00000000000000000000\nsender -\nrcpt - - - a\nend-envelope\n"))
	f.Add([]byte("POSTERN-QUEUE 1\narrival 1\nsize 00000000000000000000\nschedule 0000000000 00000000000000000000\nsender -\nuid 1000\nrcpt - - - a\nend-envelope\n"))
	f.Add([]byte("POSTERN-QUEUE 1\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, lay, err := parse(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("not a FormatError: %v", err)
			}
			return
		}
		if len(lay.statusOff) != len(env.Recipients) || lay.bodyOff+env.Size != int64(len(data)) {
			t.Fatalf("layout %+v does not fit", lay)
		}
		for i, off := range lay.statusOff {
			if data[off] != env.Recipients[i].Status || data[off-1] != ' ' || data[off+1] != ' ' {
				t.Fatalf("status offset %d of recipient %d is wrong", off, i)
			}
		}
		if s := string(data[lay.schedOff : lay.schedOff+attemptsWidth+1+nextWidth]); s != string(appendSchedule(nil, env.Attempts, env.NextAttempt)) {
			t.Fatalf("schedule at offset %d is %q", lay.schedOff, s)
		}
		// What parses must survive a rewrite.
		head, sizeOff, err := encodeEnvelope(env)
		if err != nil {
			return // e.g. raw non-printable UTF-8 that the writer escapes to over MaxRecord
		}
		copy(head[sizeOff:], fmt.Appendf(nil, "%020d", env.Size))
		again := append(head, data[lay.bodyOff:]...)
		env2, _, err := parse(bytes.NewReader(again), int64(len(again)), "again")
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v\n%q", err, again)
		}
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("rewrite changed the envelope:\n%+v\n%+v", env, env2)
		}
	})
}

func BenchmarkCommit4K(b *testing.B) {
	spool := mkSpool(b)
	env := &Envelope{Sender: "alice@example.org", Protocol: "ESMTP", ClientName: "mx.example.org",
		ClientAddr: "192.0.2.7", Recipients: []Recipient{{Addr: "bob@example.net"}}}
	msg := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		w, err := Create(spool, NewID(), env)
		if err != nil {
			b.Fatal(err)
		}
		w.Write(msg)
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit4KParallel shows what group commit buys when many
// sessions commit at once.
func BenchmarkCommit4KParallel(b *testing.B) {
	spool := mkSpool(b)
	env := &Envelope{Sender: "alice@example.org", Recipients: []Recipient{{Addr: "bob@example.net"}}}
	msg := bytes.Repeat([]byte("x"), 4096)
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w, err := Create(spool, NewID(), env)
			if err != nil {
				b.Error(err)
				return
			}
			w.Write(msg)
			if err := w.Commit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
