package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Path returns the path of id in dir under spool, or "" if dir is not a
// directory of queue files or id is not a valid ID, so that a hostile ID
// can never name a path outside the spool.
func Path(spool, dir string, id ID) string {
	if !listDirs[dir] || !ValidID(string(id)) {
		return ""
	}
	return filepath.Join(spool, dir, string(id))
}

// Move renames id from one queue directory to another (incoming, active,
// deferred, hold, corrupt). It never replaces an existing file: if the
// destination exists the error wraps os.ErrExist. It does not fsync; a
// move lost in a crash leaves the file where Recover expects it.
func Move(spool string, id ID, from, to string) error {
	if !ValidID(string(id)) {
		return fmt.Errorf("queue: move: invalid queue ID %.40q", id)
	}
	if !moveDirs[from] || !moveDirs[to] {
		return fmt.Errorf("queue %s: move %s -> %s: not a queue directory", id, from, to)
	}
	if err := renameNoReplace(filepath.Join(spool, from, string(id)), filepath.Join(spool, to, string(id))); err != nil {
		return fmt.Errorf("queue %s: move %s -> %s: %w", id, from, to, err)
	}
	return nil
}

// MoveSync is Move followed by an fsync of the destination directory
// (shared with concurrent callers, as in Commit).
func MoveSync(spool string, id ID, from, to string) error {
	if err := Move(spool, id, from, to); err != nil {
		return err
	}
	if err := syncDir(filepath.Join(spool, to)); err != nil {
		return fmt.Errorf("queue %s: fsync %s: %w", id, to, err)
	}
	return nil
}

// List returns the queue IDs in dir, oldest first. Names that are not
// queue IDs are skipped; ListAll returns them.
func List(spool, dir string) ([]ID, error) {
	ids, _, err := ListAll(spool, dir)
	return ids, err
}

// ListAll returns the queue IDs in dir, oldest first, and separately the
// other names found there (which no Postern program creates).
func ListAll(spool, dir string) (ids []ID, other []string, err error) {
	if !listDirs[dir] {
		return nil, nil, fmt.Errorf("queue: list %s: not a queue directory", dir)
	}
	ents, err := os.ReadDir(filepath.Join(spool, dir))
	if err != nil {
		return nil, nil, fmt.Errorf("queue: list %s: %w", dir, err)
	}
	// ReadDir sorts by name, and IDs sort by arrival.
	for _, e := range ents {
		if ValidID(e.Name()) && e.Type().IsRegular() {
			ids = append(ids, ID(e.Name()))
		} else {
			other = append(other, e.Name())
		}
	}
	return ids, other, nil
}

// Due returns the IDs in deferred/ whose next attempt time (the file's
// modification time, see SetSchedule) is not after now, oldest first.
func Due(spool string, now time.Time) ([]ID, error) {
	ids, err := List(spool, Deferred)
	if err != nil {
		return nil, err
	}
	due := ids[:0]
	for _, id := range ids {
		st, err := os.Lstat(filepath.Join(spool, Deferred, string(id)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // moved meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", id, err)
		}
		if !st.ModTime().After(now) {
			due = append(due, id)
		}
	}
	return due, nil
}

// Recover puts the spool in order at qmgr start (invariant 4): files in
// tmp/ whose writer is gone are removed; active/ is moved back to
// incoming/; every file in incoming/, active/ and deferred/ that cannot be
// opened or parsed, and every name there that is not a queue ID, is
// moved to corrupt/. Each action is logged through logf (may be nil).
// It fails only when a directory cannot be read; a file it cannot deal
// with is logged and left where it is.
func Recover(spool string, logf func(format string, args ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := SweepTmp(spool, logf); err != nil {
		return err
	}

	ents, err := os.ReadDir(filepath.Join(spool, Active))
	if err != nil {
		return fmt.Errorf("queue: recover: %w", err)
	}
	for _, e := range ents {
		id := ID(e.Name())
		if !ValidID(string(id)) || !e.Type().IsRegular() {
			continue // the check below sends it to corrupt/
		}
		err := Move(spool, id, Active, Incoming)
		switch {
		case err == nil:
			logf("%s: requeued from %s/ to %s/", id, Active, Incoming)
		case errors.Is(err, fs.ErrExist):
			logf("%s: warning: in both %s/ and %s/", id, Active, Incoming)
			quarantine(spool, Active, string(id), "duplicate of "+Incoming+"/"+string(id), logf)
		case !errors.Is(err, fs.ErrNotExist):
			logf("%s: warning: %v", id, err)
		}
	}

	for _, dir := range []string{Incoming, Active, Deferred} {
		ents, err := os.ReadDir(filepath.Join(spool, dir))
		if err != nil {
			return fmt.Errorf("queue: recover: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if e.IsDir() {
				logf("warning: %s/%s: unexpected directory, left alone", dir, name)
				continue
			}
			if !ValidID(name) {
				quarantine(spool, dir, name, "not a queue ID", logf)
				continue
			}
			switch bad, err := checkFile(filepath.Join(spool, dir, name)); {
			case bad:
				quarantine(spool, dir, name, err.Error(), logf)
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				logf("%s: warning: %s/: %v", name, dir, err)
			}
		}
	}
	return nil
}

// TmpGrace is how old an unlocked tmp/ file must be before a sweep
// removes it: cleanup creates a file and locks it a moment later, and a
// sweep must not take that moment for a dead writer (nor lock the file
// itself under cleanup's nose).
const TmpGrace = time.Minute

// SweepTmp removes the tmp/ files of writers that are gone: unlocked and
// older than TmpGrace. qmgr runs it at start (within Recover) and then
// periodically, so the leftovers of a crash go away while mail flows.
func SweepTmp(spool string, logf func(format string, args ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ents, err := os.ReadDir(filepath.Join(spool, Tmp))
	if err != nil {
		return fmt.Errorf("queue: sweep tmp: %w", err)
	}
	for _, e := range ents {
		recoverTmp(filepath.Join(spool, Tmp, e.Name()), e, logf)
	}
	return nil
}

// recoverTmp removes a tmp/ file unless a live writer holds its lock or it
// is younger than TmpGrace.
func recoverTmp(path string, e fs.DirEntry, logf func(string, ...any)) {
	name := e.Name()
	if e.IsDir() {
		logf("warning: %s/%s: unexpected directory, left alone", Tmp, name)
		return
	}
	if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) < TmpGrace {
		return
	}
	if e.Type().IsRegular() {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err == nil {
			defer f.Close()
			err = control(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) })
			if err == unix.EWOULDBLOCK {
				return // being written now
			}
		}
		if err != nil {
			logf("warning: %s/%s: %v", Tmp, name, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		logf("warning: %s/%s: %v", Tmp, name, err)
		return
	}
	if ValidID(name) {
		logf("%s: removed unfinished queue file from %s/", name, Tmp)
	} else {
		logf("warning: %s/%s: removed (not a queue file)", Tmp, name)
	}
}

// checkFile opens and parses a queue file. bad means it belongs in
// corrupt/; otherwise err is a problem that may go away (ENOENT after a
// concurrent move, EMFILE, EIO).
func checkFile(path string) (bad bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) && (errno == unix.EACCES || errno == unix.EPERM || errno == unix.ELOOP) {
			return true, err
		}
		return false, err
	}
	defer f.Close()
	_, err = Open(f)
	var fe *FormatError
	if errors.As(err, &fe) {
		return true, err
	}
	return false, err
}

// quarantine moves dir/name to corrupt/, under another name if corrupt/
// has one like it already.
func quarantine(spool, dir, name, why string, logf func(string, ...any)) {
	src := filepath.Join(spool, dir, name)
	dstName := name
	for i := 0; ; i++ {
		err := renameNoReplace(src, filepath.Join(spool, Corrupt, dstName))
		if err == nil {
			logf("%s: warning: moved %s/%s to %s/%s: %s", name, dir, name, Corrupt, dstName, why)
			return
		}
		if !errors.Is(err, fs.ErrExist) || i == 10 {
			logf("%s: warning: cannot move %s/%s to %s/: %v (%s)", name, dir, name, Corrupt, err, why)
			return
		}
		dstName = name + "." + strconv.FormatInt(time.Now().UnixNano(), 16)
	}
}

// renameNoReplace is rename(2) that fails with EEXIST instead of
// replacing the destination.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL || err == unix.ENOSYS {
		// A file system without RENAME_NOREPLACE: check, then rename.
		// Only qmgr moves queue files, so the window is not a race
		// with another mover.
		if _, serr := os.Lstat(to); serr == nil {
			err = unix.EEXIST
		} else if errors.Is(serr, fs.ErrNotExist) {
			err = unix.Rename(from, to)
		} else {
			return serr
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// ---- group commit ----

// fsyncDir is the directory fsync; tests replace it to count calls.
var fsyncDir = func(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// dirSyncer runs one fsync of a directory at a time and lets everyone
// who arrived while it ran share the next one. Under load (the last fsync
// ended less than groupWindow ago) the next one waits groupDelay before it
// begins, so that the commits arriving meanwhile share it too: fewer
// directory fsyncs per message for a fraction of a millisecond of latency.
type dirSyncer struct {
	mu        sync.Mutex
	cond      *sync.Cond
	started   uint64 // fsyncs assigned
	finished  uint64 // the last fsync that completed
	running   bool   // an fsync is assigned and not finished
	begun     bool   // the assigned fsync has begun (it is past its delay)
	lastEnd   time.Time
	failedGen uint64 // the last fsync that failed
	failedErr error
}

// The group commit window (see dirSyncer).
var (
	groupWindow = 2 * time.Millisecond
	groupDelay  = 300 * time.Microsecond
)

var syncers sync.Map // directory path -> *dirSyncer

// syncDir returns after an fsync of path that began after the call.
func syncDir(path string) error {
	v, ok := syncers.Load(path)
	if !ok {
		s := &dirSyncer{}
		s.cond = sync.NewCond(&s.mu)
		v, _ = syncers.LoadOrStore(path, s)
	}
	return v.(*dirSyncer).sync(path)
}

func (s *dirSyncer) sync(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// An fsync running now may have begun before our caller's rename;
	// only the next one is sure to cover it. One assigned but still in
	// its delay has not begun, so it covers us.
	target := s.started + 1
	if s.running && !s.begun {
		target = s.started
	}
	for s.finished < target {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running, s.begun = true, false
		s.started++
		gen := s.started
		busy := groupDelay > 0 && time.Since(s.lastEnd) < groupWindow
		s.mu.Unlock()
		if busy {
			time.Sleep(groupDelay)
		}
		s.mu.Lock()
		s.begun = true
		s.mu.Unlock()
		err := fsyncDir(path)
		s.mu.Lock()
		s.running = false
		s.finished = gen
		s.lastEnd = time.Now()
		if err != nil {
			s.failedGen, s.failedErr = gen, err
		}
		s.cond.Broadcast()
	}
	// After a failed fsync Linux may report success for the next one
	// without the data being safe; so any failure at or after our target
	// is ours.
	if s.failedGen >= target {
		return s.failedErr
	}
	return nil
}
