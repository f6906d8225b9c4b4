package maildir

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Concurrent deliveries into one Maildir share the fsync of its new/
// directory: a delivery waits for one fsync that began after its rename,
// so under load many renames are made durable by one flush (group commit)
// while each delivery still returns only once its own entry is on disk.
// An fsync of a directory needs no permission, so which delivery's
// descriptor (and thread) performs it does not matter.

type dirKey struct{ dev, ino uint64 }

type dirSync struct {
	cond    *sync.Cond
	started uint64 // fsyncs assigned
	done    uint64 // fsyncs finished
	running bool   // an fsync is assigned and not finished
	begun   bool   // the assigned fsync has begun (it is past its delay)
	lastEnd time.Time
	err     error // of the last finished fsync
	users   int
}

// Under load (the last fsync of the directory ended less than groupWindow
// ago) an fsync waits groupDelay before it begins, so that the deliveries
// renaming into new/ meanwhile share it: fewer fsyncs per message for a
// fraction of a millisecond of latency.
var (
	groupWindow = 2 * time.Millisecond
	groupDelay  = 300 * time.Microsecond
)

var (
	syncMu   sync.Mutex
	dirSyncs = map[dirKey]*dirSync{}
)

// syncDir makes every rename into the directory open as fd that happened
// before the call durable.
func syncDir(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return unix.Fsync(fd)
	}
	k := dirKey{uint64(st.Dev), st.Ino}
	syncMu.Lock()
	s := dirSyncs[k]
	if s == nil {
		s = &dirSync{cond: sync.NewCond(&syncMu)}
		dirSyncs[k] = s
	}
	s.users++
	// An fsync under way may have begun before our rename: only the next
	// one is sure to cover it. One assigned but still in its delay has
	// not begun, so it covers us.
	want := s.started + 1
	if s.running && !s.begun {
		want = s.started
	}
	var err error
	for s.done < want {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running, s.begun = true, false
		s.started++
		mine := s.started
		busy := groupDelay > 0 && time.Since(s.lastEnd) < groupWindow
		syncMu.Unlock()
		if busy {
			// On the calling goroutine (and so its thread): this
			// package starts no goroutines.
			time.Sleep(groupDelay)
		}
		syncMu.Lock()
		s.begun = true
		syncMu.Unlock()
		e := unix.Fsync(fd)
		syncMu.Lock()
		s.running = false
		s.done = mine
		s.lastEnd = time.Now()
		s.err = e
		s.cond.Broadcast()
	}
	err = s.err
	if s.users--; s.users == 0 && !s.running {
		delete(dirSyncs, k)
	}
	syncMu.Unlock()
	return err
}
