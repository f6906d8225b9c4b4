package maildir

import (
	"sync"

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
	started uint64 // fsyncs begun
	done    uint64 // fsyncs finished
	running bool
	err     error // of the last finished fsync
	users   int
}

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
	want := s.started + 1
	var err error
	for s.done < want {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		mine := s.started
		syncMu.Unlock()
		e := unix.Fsync(fd)
		syncMu.Lock()
		s.running = false
		s.done = mine
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
