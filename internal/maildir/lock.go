package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Two kinds of lock, both as Dovecot (and mutt, for the dotlock) expect:
//
//   - the dotlock <file>.lock, made with O_CREAT|O_EXCL, guards every
//     rewrite of dovecot-uidlist and dovecot-keywords. It works across
//     processes and goroutines alike. A lock whose mtime is more than
//     dotlockStale old belongs to a process that died and is removed; we
//     give up after dotlockTimeout.
//   - the session lock, flock(2) on postern-pop3.lock, keeps a second POP3
//     session out of a maildrop while one is open. The kernel releases it
//     when its holder dies, so it never goes stale.

// A rewrite holds the dotlock for milliseconds, so a lock older than
// dotlockStale is a dead holder's; the wait outlasts it, so a crash costs
// a pause, not a failed command (Dovecot uses the same stale time for its
// uidlist lock when the holder does not refresh it).
const (
	dotlockStale   = 30 * time.Second
	dotlockTimeout = 40 * time.Second
	sessionLock    = "postern-pop3.lock"
)

// dotlock is a held dotlock.
type dotlock struct {
	path  string
	ino   uint64
	mtime unix.Timespec // with ino: the lock is still ours, not a new one on a reused inode
}

// lockDot takes the dotlock of file (file + ".lock"), waiting up to
// dotlockTimeout.
func lockDot(file string) (*dotlock, error) {
	path := file + ".lock"
	deadline := time.Now().Add(dotlockTimeout)
	wait := 2 * time.Millisecond
	for {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			// The content is for an administrator: who holds it.
			unix.Write(fd, []byte(strconv.Itoa(os.Getpid())+"\n"))
			var st unix.Stat_t
			unix.Fstat(fd, &st)
			unix.Close(fd)
			return &dotlock{path: path, ino: st.Ino, mtime: st.Mtim}, nil
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EEXIST {
			return nil, fmt.Errorf("maildir lock %s: %w", path, err)
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && time.Since(time.Unix(st.Mtim.Unix())) > dotlockStale {
			// Stale: its holder died. Remove it only if it is still the
			// same file, so a fresh lock taken meanwhile survives (the
			// window between Lstat and Unlink remains, as in Dovecot).
			var st2 unix.Stat_t
			if unix.Lstat(path, &st2) == nil && st2.Ino == st.Ino && st2.Mtim == st.Mtim {
				unix.Unlink(path)
			}
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("maildir lock %s: held by another process for more than %v: %w", path, dotlockTimeout, ErrLockTimeout)
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// unlock removes the dotlock if it is still ours.
func (l *dotlock) unlock() {
	var st unix.Stat_t
	if unix.Lstat(l.path, &st) == nil && st.Ino == l.ino && st.Mtim == l.mtime {
		unix.Unlink(l.path)
	}
}

// LockSession takes the exclusive session lock of the folder for POP3:
// flock(LOCK_EX|LOCK_NB) on postern-pop3.lock in the folder directory,
// held until unlock is called or the process dies. ErrInUse when another
// session (in this or another process) holds it.
func (f *Folder) LockSession() (unlock func(), err error) {
	path := f.dir + "/" + sessionLock
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("maildir lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("maildir %s: %w", f.dir, ErrInUse)
		}
		return nil, fmt.Errorf("maildir lock %s: %w", path, err)
	}
	done := false
	return func() {
		if !done {
			done = true
			unix.Close(fd) // releases the flock
		}
	}, nil
}

// writeAtomic replaces path with data: a temporary file beside it, fsync,
// rename, fsync of the directory. The caller holds the dotlock.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("maildir write %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir write %s: %w", path, err)
	}
	syncDirPath(dirOf(path))
	return nil
}

// syncDirPath fsyncs a directory (best effort: the callers' data is
// already safely renamed; this makes the rename durable).
func syncDirPath(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return syncDir(fd)
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			if i == 0 {
				return "/"
			}
			return path[:i]
		}
	}
	return "."
}

// readLimited reads a whole small file, refusing one larger than limit.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("maildir read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("maildir read %s: larger than %d bytes: %w", path, limit, errors.ErrUnsupported)
	}
	return data, nil
}
