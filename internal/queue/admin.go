package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Errors of the administrative operations.
var (
	// ErrNotFound: no message with that ID in incoming/, active/,
	// deferred/ or hold/.
	ErrNotFound = errors.New("no such message in the queue")
	// ErrActive: the message is in active/, where qmgr is delivering it;
	// only qmgr may move it (it applies the operation when the delivery
	// finishes).
	ErrActive = errors.New("message is being delivered (in active/)")
	// ErrNotHeld: Release of a message that is not in hold/.
	ErrNotHeld = errors.New("message is not on hold")
)

// AdminDirs are the directories the administrative operations (and ALL)
// cover, in the order a message goes through them.
var AdminDirs = []string{Incoming, Active, Deferred, Hold}

// Admin performs the administrator's queue operations (postsuper's -d,
// -h, -H and -r) on a spool, keeping DESIGN.md §3's invariants: every
// move is a rename(2) that never replaces a file, so a message stays in
// exactly one directory, and each operation is made durable (file
// fdatasync, directory fsync) before it returns.
//
// The operations race safely with qmgr's own moves (deferred/ to
// incoming/ to active/): a rename or unlink that finds the file gone
// looks for it again. A message in active/ is qmgr's: it gives ErrActive
// unless Idle says no qmgr runs.
type Admin struct {
	Spool string
	// Idle means no qmgr is running: a file in active/ is then a
	// leftover that qmgr's recovery would move back to incoming/, and it
	// is treated as if it were in incoming/.
	Idle bool
}

// Locate returns the directory among AdminDirs that holds id now.
func Locate(spool string, id ID) (string, error) {
	if !ValidID(string(id)) {
		return "", fmt.Errorf("queue: invalid queue ID %.40q", id)
	}
	// Three rounds: a message that moves from a directory not yet
	// looked at into one already looked at is found in the next.
	for round := 0; round < 3; round++ {
		for _, dir := range AdminDirs {
			_, err := os.Lstat(filepath.Join(spool, dir, string(id)))
			if err == nil {
				return dir, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("queue %s: %w", id, err)
			}
		}
	}
	return "", fmt.Errorf("queue %s: %w", id, ErrNotFound)
}

// apply finds id and runs op on the directory it is in, when that is one
// of from; it looks again when op finds the file gone (moved meanwhile).
// It returns the directory the message was in.
func (a Admin) apply(id ID, from []string, op func(dir string) error) (string, error) {
	var last error
	for try := 0; try < 20; try++ {
		dir, err := Locate(a.Spool, id)
		if err != nil {
			return "", err
		}
		eff := dir
		if dir == Active {
			if !a.Idle {
				return dir, fmt.Errorf("queue %s: %w", id, ErrActive)
			}
			eff = Incoming
		}
		if !slices.Contains(from, eff) {
			return dir, errWrongDir
		}
		err = op(dir)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return dir, err
		}
		last = err
	}
	return "", fmt.Errorf("queue %s: keeps moving: %w", id, last)
}

// errWrongDir is apply's answer for a message in a directory the
// operation does not start from; callers turn it into their meaning.
var errWrongDir = errors.New("wrong directory")

// Hold moves id from incoming/ or deferred/ into hold/, where qmgr never
// looks. It returns the directory the message was in; a message already
// on hold is left alone (from is Hold, err nil).
func (a Admin) Hold(id ID) (from string, err error) {
	from, err = a.apply(id, []string{Incoming, Deferred}, func(dir string) error {
		return MoveSync(a.Spool, id, dir, Hold)
	})
	if err == errWrongDir && from == Hold {
		return from, nil
	}
	return from, err
}

// Release moves id from hold/ back to deferred/ with its next attempt
// time set to now, so that qmgr's next look at deferred/ (or a flush)
// takes it. A message not on hold gives ErrNotHeld.
func (a Admin) Release(id ID, now time.Time) error {
	from, err := a.apply(id, []string{Hold}, func(dir string) error {
		if err := a.reschedule(dir, id, now); err != nil {
			return err
		}
		return MoveSync(a.Spool, id, dir, Deferred)
	})
	if err == errWrongDir {
		return fmt.Errorf("queue %s: in %s/: %w", id, from, ErrNotHeld)
	}
	return err
}

// Requeue sends id through delivery again: its next attempt time is set
// to now and it moves from deferred/ or hold/ into incoming/ (a message
// on hold is released by it); a message already in incoming/ only gets
// its schedule reset. The caller then triggers qmgr. Recipients already
// delivered or bounced stay so; every pending one is tried again.
func (a Admin) Requeue(id ID, now time.Time) (from string, err error) {
	return a.apply(id, []string{Incoming, Deferred, Hold}, func(dir string) error {
		if err := a.reschedule(dir, id, now); err != nil {
			return err
		}
		if dir == Incoming {
			return nil
		}
		return MoveSync(a.Spool, id, dir, Incoming)
	})
}

// Delete removes id from incoming/, deferred/ or hold/, without a bounce
// (postsuper -d). It returns the directory the message was in.
func (a Admin) Delete(id ID) (from string, err error) {
	return a.apply(id, []string{Incoming, Deferred, Hold}, func(dir string) error {
		if err := os.Remove(filepath.Join(a.Spool, dir, string(id))); err != nil {
			return fmt.Errorf("queue %s: remove from %s/: %w", id, dir, err)
		}
		if err := syncDir(filepath.Join(a.Spool, dir)); err != nil {
			return fmt.Errorf("queue %s: fsync %s: %w", id, dir, err)
		}
		return nil
	})
}

// reschedule sets the next attempt of dir/id to now (attempt count kept)
// and syncs it, so that queue.Due takes it at once.
func (a Admin) reschedule(dir string, id ID, now time.Time) error {
	f, err := os.OpenFile(filepath.Join(a.Spool, dir, string(id)), os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("queue %s: %w", id, err)
	}
	defer f.Close()
	qf, err := Open(f)
	if err != nil {
		return err
	}
	if err := qf.SetSchedule(qf.Envelope().Attempts, now); err != nil {
		return err
	}
	return qf.Sync()
}

// AllIDs returns the IDs of every message in dirs (AdminDirs when nil),
// in the order of dirs and, within one, oldest first: what ALL means.
func AllIDs(spool string, dirs []string) ([]ID, error) {
	if dirs == nil {
		dirs = AdminDirs
	}
	var all []ID
	for _, d := range dirs {
		ids, err := List(spool, d)
		if err != nil {
			return nil, err
		}
		all = append(all, ids...)
	}
	return all, nil
}
