package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// resetFree forgets what earlier tests left in the process-wide free list.
func resetFree(t *testing.T) {
	t.Helper()
	freeList.Lock()
	freeList.names, freeList.lastScan = nil, time.Time{}
	freeList.count, freeList.recycled, freeList.countedAt = 0, 0, time.Time{}
	freeList.Unlock()
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func readMsg(t *testing.T, path string) (*Envelope, string) {
	t.Helper()
	q := openQ(t, path, os.O_RDONLY)
	b, err := io.ReadAll(q.Message())
	if err != nil {
		t.Fatal(err)
	}
	return q.Envelope(), string(b)
}

// recycle moves a committed file to active/ and recycles it as qmgr does.
func recycle(t *testing.T, spool string, id ID) uint64 {
	t.Helper()
	if err := Move(spool, id, Incoming, Active); err != nil {
		t.Fatal(err)
	}
	path := Path(spool, Active, id)
	ino := inode(t, path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Recycle(spool, Active, id, f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still in active/: %v", id, err)
	}
	// Let the next Create read free/ at once.
	freeList.Lock()
	freeList.lastScan = time.Time{}
	freeList.Unlock()
	return ino
}

func TestRecycleReuse(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}
	long := strings.Repeat("long line of an old message\r\n", 500)
	id1 := commit(t, spool, env, []byte(long))
	ino := recycle(t, spool, id1)
	if _, err := os.Stat(filepath.Join(spool, Free, string(id1))); err != nil {
		t.Fatalf("not in free/: %v", err)
	}

	// The next message reuses the inode, and nothing of the old one
	// survives past its end.
	short := "Subject: short\r\n\r\nhi\r\n"
	id2 := commit(t, spool, env, []byte(short))
	path := Path(spool, Incoming, id2)
	if got := inode(t, path); got != ino {
		t.Errorf("inode %d, want the recycled %d", got, ino)
	}
	if _, msg := readMsg(t, path); msg != short {
		t.Errorf("message %q, want %q", msg, short)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("old message")) {
		t.Error("old content left in the file")
	}
	if ents, _ := os.ReadDir(filepath.Join(spool, Free)); len(ents) != 0 {
		t.Errorf("free/ still holds %d files", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(spool, Tmp)); len(ents) != 0 {
		t.Errorf("tmp/ holds %d files", len(ents))
	}

	// A message longer than the recycled file grows it.
	recycle(t, spool, id2)
	id3 := commit(t, spool, env, []byte(long+long))
	if _, msg := readMsg(t, Path(spool, Incoming, id3)); msg != long+long {
		t.Error("long message after a short one: content differs")
	}
}

// A recycled file larger than keepSize is emptied: free/ stays small.
func TestRecycleEmpties(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	id := commit(t, spool, env, bytes.Repeat([]byte("x"), 100000))
	recycle(t, spool, id)
	st, err := os.Stat(filepath.Join(spool, Free, string(id)))
	if err != nil || st.Size() != 0 {
		t.Fatalf("recycled file: %v, size %d", err, st.Size())
	}
}

// A recycled file keeps its blocks (Recycle does not empty small files);
// Create zeroes the old message, the next one is written over it and
// Commit cuts off what is left, so the committed file holds the new
// message alone, byte for byte.
func TestTakeFreeOverwrites(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	oldMsg := strings.Repeat("accepted before, delivered since\r\n", 200) // < keepSize
	old := commit(t, spool, env, []byte(oldMsg))
	ino := recycle(t, spool, old)
	st, err := os.Stat(filepath.Join(spool, Free, string(old)))
	if err != nil || st.Size() < int64(len(oldMsg)) {
		t.Fatalf("recycled file: %v, size %d: emptied", err, st.Size())
	}
	// Zeroed before it shows in tmp/: tmp/ never holds an old, accepted
	// message (the crash test looks for exactly that).
	id := NewID()
	w, err := Create(spool, id, env)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(filepath.Join(spool, Tmp, string(id))); err != nil {
		t.Fatal(err)
	} else if bytes.Contains(raw, []byte("accepted before")) {
		t.Errorf("tmp/ file holds the old message")
	}
	short := "Subject: new\r\n\r\nnew\r\n"
	if _, err := w.Write([]byte(short)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	path := Path(spool, Incoming, id)
	if got := inode(t, path); got != ino {
		t.Fatalf("inode %d, want the recycled %d", got, ino)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("accepted before")) {
		t.Errorf("committed file holds the old message's tail (%d bytes)", len(raw))
	}
	if _, msg := readMsg(t, path); msg != short {
		t.Errorf("message %q, want %q", msg, short)
	}

	// A message as long as the old one, or longer, needs no cut.
	recycle(t, spool, id)
	long := oldMsg + oldMsg
	id = commit(t, spool, env, []byte(long))
	if _, msg := readMsg(t, Path(spool, Incoming, id)); msg != long {
		t.Error("longer message over a recycled file: content differs")
	}
}

// fillFree puts MaxFree files named x00000… into free/, as a full free/
// holds.
func fillFree(t *testing.T, spool string) {
	t.Helper()
	for i := range MaxFree {
		if err := os.WriteFile(filepath.Join(spool, Free, fmt.Sprintf("x%05d", i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecycleFull(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	id := commit(t, spool, env, []byte("m\r\n"))
	fillFree(t, spool)
	recycle(t, spool, id)
	if _, err := os.Lstat(filepath.Join(spool, Free, string(id))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("recycled into a full free/: %v", err)
	}
}

// Once free/ was full, its files taken by another process (cleanup) are
// seen within freeFullRecount: the estimate does not stay at full and
// unlink queue files meanwhile.
func TestRecycleFullThenTaken(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	id := commit(t, spool, env, []byte("m\r\n"))
	id2 := commit(t, spool, env, []byte("m\r\n"))
	fillFree(t, spool)
	recycle(t, spool, id)
	if _, err := os.Lstat(filepath.Join(spool, Free, string(id))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("recycled into a full free/: %v", err)
	}
	// Another process takes most of free/.
	for i := range MaxFree - 10 {
		if err := os.Remove(filepath.Join(spool, Free, fmt.Sprintf("x%05d", i))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // well above freeFullRecount, well below a second
	recycle(t, spool, id2)
	if _, err := os.Lstat(filepath.Join(spool, Free, string(id2))); err != nil {
		t.Errorf("removed although free/ had room again: %v", err)
	}
}

func TestTakeFreeClash(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	recycle(t, spool, commit(t, spool, env, []byte("m\r\n")))
	id := NewID()
	if err := os.WriteFile(filepath.Join(spool, Tmp, string(id)), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(spool, id, env); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing tmp file: %v, want ErrExist", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(spool, Free)); len(ents) != 1 {
		t.Fatalf("free/ holds %d files after the clash, want 1", len(ents))
	}
	// The file is still there for the next writer.
	id2 := commit(t, spool, env, []byte("n\r\n"))
	if _, msg := readMsg(t, Path(spool, Incoming, id2)); msg != "n\r\n" {
		t.Errorf("message %q", msg)
	}
	if ents, _ := os.ReadDir(filepath.Join(spool, Free)); len(ents) != 0 {
		t.Errorf("free/ holds %d files, want 0", len(ents))
	}
}

// A recycled file is locked before it appears in tmp/, so a sweep never
// takes it for a dead writer's leftover, however old its times are.
func TestRecycledFileLocked(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	id := commit(t, spool, env, []byte("m\r\n"))
	recycle(t, spool, id)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(spool, Free, string(id)), old, old)
	id2 := NewID()
	w, err := Create(spool, id2, env)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := SweepTmp(spool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(spool, Tmp, string(id2))); err != nil {
		t.Fatalf("sweep removed a live writer's recycled file: %v", err)
	}
	if _, err := w.Write([]byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// A file Recycle still holds (it renames, then truncates, under the lock)
// is not taken: its truncate must never hit a new message.
func TestTakeFreeSkipsLocked(t *testing.T) {
	resetFree(t)
	spool := mkSpool(t)
	env := &Envelope{Sender: "", Recipients: []Recipient{{Addr: "b@example.net"}}}
	path := filepath.Join(spool, Free, "held")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lockFile(f); err != nil {
		t.Fatal(err)
	}
	id := NewID()
	w, err := Create(spool, id, env)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("a locked file was taken from free/: %v", err)
	}
	if inode(t, filepath.Join(spool, Tmp, string(id))) == inode(t, path) {
		t.Error("the writer got the locked file")
	}
}
