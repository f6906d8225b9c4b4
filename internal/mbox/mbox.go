// Package mbox appends a message to a Unix mailbox file (mbox, in the
// mboxrd dialect) the way Postfix's local(8) and procmail do, so that
// mail(1), mutt and other readers that lock the same way never see a
// half-written message.
//
// The local daemon calls Deliver on a goroutine locked to an OS thread
// whose filesystem uid and gid are the mailbox owner's (privsep.AsUser);
// the package does every system call on the calling goroutine and starts
// none of its own.
//
// A delivery:
//
//   - takes the dot lock PATH.lock (O_CREAT|O_EXCL|O_NOFOLLOW), retrying
//     every lockRetry until Options.LockTimeout; a lock file older than
//     Options.StaleLock is a dead writer's and is removed. When the
//     directory is not writable by the owner (Debian's /var/mail is 2775
//     root:mail), the lock (and a new mailbox file) is made with the
//     filesystem gid switched to Options.SpoolGID for that one call; when
//     even that is refused, the delivery goes on with the kernel lock alone;
//   - opens the mailbox with O_APPEND|O_NOFOLLOW (creating it, mode 0600,
//     when missing) and refuses anything but a regular file with one link,
//     owned by Options.UID;
//   - takes an fcntl(2) write lock on the whole file (F_SETLK, polled until
//     the same deadline, so a stuck reader delays but never hangs a
//     delivery);
//   - writes the "From SENDER DATE" line, the message with every line that
//     matches ^>*From  quoted by one more ">" (mboxrd, reversible), a final
//     newline if the message lacks one, and an empty line;
//   - fsyncs, then unlocks and removes the dot lock.
//
// Failure modes: any error after the file was opened truncates it back to
// the size it had before (and fsyncs), so a failed delivery never leaves
// a partial message that would corrupt the mailbox; the error names the
// step and the path. ErrLockTimeout says the mailbox stayed locked.
//
// Limits: no size limit of its own (the caller bounds the message);
// lines of any length are copied in pieces through a 64 KiB buffer.
package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is wrapped by the error of a delivery that could not get
// the dot lock or the kernel lock in time.
var ErrLockTimeout = errors.New("mailbox is locked")

const (
	bufSize   = 64 * 1024
	lockRetry = 100 * time.Millisecond

	// DefaultLockTimeout is how long a delivery waits for a lock when
	// Options.LockTimeout is zero (Postfix: 20 attempts a second apart).
	DefaultLockTimeout = 20 * time.Second
	// DefaultStaleLock is the age after which a dot lock is removed
	// (Postfix's stale_lock_time).
	DefaultStaleLock = 500 * time.Second
)

// Options shape one delivery.
type Options struct {
	// UID is the required owner of an existing mailbox file; -1 skips the
	// check.
	UID int
	// SpoolGID is the group whose filesystem id may be borrowed to create
	// the dot lock and a new mailbox in a group-writable spool directory
	// (mail); -1 never borrows.
	SpoolGID int
	// LockTimeout bounds the wait for the locks (DefaultLockTimeout if 0).
	LockTimeout time.Duration
	// StaleLock is the age of an abandoned dot lock (DefaultStaleLock if 0).
	StaleLock time.Duration
}

// FromLine returns the "From " separator line of a message, with its
// newline: the envelope sender (MAILER-DAEMON for the null sender) and
// the delivery time in asctime(3) form.
func FromLine(sender string, t time.Time) string {
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	// A separator line must be one line of two fields before the date.
	sender = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, sender)
	return "From " + sender + " " + t.Format("Mon Jan _2 15:04:05 2006") + "\n"
}

// Deliver appends the message read from r (LF line ends; a CRLF is kept
// as it is) to the mailbox at path, with the From line of sender and now.
func Deliver(path, sender string, now time.Time, r io.Reader, o Options) error {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.StaleLock <= 0 {
		o.StaleLock = DefaultStaleLock
	}
	deadline := time.Now().Add(o.LockTimeout)
	unlock, err := dotLock(path, o, deadline)
	if err != nil {
		return err
	}
	defer unlock()
	f, err := open(path, o)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := fcntlLock(fd, deadline); err != nil {
		return fmt.Errorf("mbox %s: %w", path, err)
	}
	defer unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &unix.Flock_t{Type: unix.F_UNLCK})
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("mbox %s: fstat: %w", path, err)
	}
	old := st.Size
	if err := write(f, FromLine(sender, now), r); err != nil {
		// Put the mailbox back as it was: a partial message would make
		// the next From line part of this one.
		if terr := unix.Ftruncate(fd, old); terr != nil {
			return fmt.Errorf("mbox %s: %w; and truncating back to %d bytes failed: %v", path, err, old, terr)
		}
		f.Sync()
		return fmt.Errorf("mbox %s: %w", path, err)
	}
	return nil
}

// write copies the From line and the quoted message, then fsyncs.
func write(f *os.File, from string, r io.Reader) error {
	w := bufio.NewWriterSize(f, bufSize)
	if _, err := w.WriteString(from); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := Quote(w, r); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// Quote copies the message from r to w in mboxrd form: a line that starts
// with zero or more ">" and then "From " gets one more ">"; the message
// ends with a newline and then an empty line. Errors reading r are
// returned as "read message: ...".
func Quote(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, bufSize)
	bol := true // at the beginning of a line
	last := byte('\n')
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if bol && needsQuote(chunk) {
				if _, werr := w.Write([]byte{'>'}); werr != nil {
					return fmt.Errorf("write: %w", werr)
				}
			}
			if _, werr := w.Write(chunk); werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
			last = chunk[len(chunk)-1]
			bol = last == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	}
	end := "\n"
	if last != '\n' {
		end = "\n\n"
	}
	if _, err := io.WriteString(w, end); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// needsQuote reports whether a line starting with chunk matches ^>*From .
// A chunk cut short by the buffer is bufSize long, far beyond the prefix
// that matters (a line of 64 Ki ">" before "From " is not quoted).
func needsQuote(chunk []byte) bool {
	s := bytes.TrimLeft(chunk, ">")
	return bytes.HasPrefix(s, []byte("From "))
}

// withGroup runs fn with the thread's filesystem gid switched to gid, and
// back. Without CAP_SETGID the switch does not take and fn runs as is.
func withGroup(gid int, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, _ := unix.SetfsgidRetGid(-1)
	if _, err := unix.SetfsgidRetGid(gid); err != nil {
		return fn()
	}
	defer unix.SetfsgidRetGid(old)
	return fn()
}

// borrow runs fn; when fn fails with EACCES and a spool group is set, it
// runs fn again with that group as the filesystem gid. It reports whether
// the second run was used.
func borrow(o Options, fn func() error) (bool, error) {
	err := fn()
	if err == nil || o.SpoolGID < 0 || !errors.Is(err, unix.EACCES) {
		return false, err
	}
	return true, withGroup(o.SpoolGID, fn)
}

// dotLock creates PATH.lock and returns the function that removes it.
// A directory the owner cannot write even with the spool group gives no
// dot lock and no error: the kernel lock still protects the file.
func dotLock(path string, o Options, deadline time.Time) (func(), error) {
	lock := path + ".lock"
	for {
		borrowed, err := borrow(o, func() error {
			fd, err := unix.Open(lock, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err == nil {
				unix.Write(fd, fmt.Appendf(nil, "%d\n", os.Getpid()))
				unix.Close(fd)
			}
			return err
		})
		switch {
		case err == nil:
			return func() {
				rm := func() error { return unix.Unlink(lock) }
				if borrowed {
					withGroup(o.SpoolGID, rm)
				} else {
					rm()
				}
			}, nil
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.EROFS):
			return func() {}, nil
		case !errors.Is(err, unix.EEXIST):
			return nil, fmt.Errorf("mbox %s: dot lock %s: %w", path, lock, err)
		}
		var st unix.Stat_t
		if unix.Lstat(lock, &st) == nil && time.Since(time.Unix(st.Mtim.Unix())) > o.StaleLock {
			// A writer that died holding the lock; remove it (as the
			// owner or with the spool group).
			borrow(o, func() error { return unix.Unlink(lock) })
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("mbox %s: dot lock %s: %w", path, lock, ErrLockTimeout)
		}
		time.Sleep(lockRetry)
	}
}

// open opens (or creates) the mailbox for appending and checks what it is.
func open(path string, o Options) (*os.File, error) {
	flags := unix.O_WRONLY | unix.O_APPEND | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := unix.Open(path, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		_, err = borrow(o, func() error {
			var e error
			fd, e = unix.Open(path, flags|unix.O_CREAT|unix.O_EXCL, 0o600)
			return e
		})
		if errors.Is(err, unix.EEXIST) {
			// Created by another writer just now.
			fd, err = unix.Open(path, flags, 0)
		}
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("mbox %s: open: is a symbolic link", path)
		}
		return nil, fmt.Errorf("mbox %s: open: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mbox %s: fstat: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = errors.New("not a regular file")
	case st.Nlink != 1:
		err = fmt.Errorf("has %d hard links", st.Nlink)
	case o.UID >= 0 && int(st.Uid) != o.UID:
		err = fmt.Errorf("owned by uid %d, not %d", st.Uid, o.UID)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mbox %s: %w", path, err)
	}
	// Blocking writes from here on (O_NONBLOCK only kept open(2) from
	// hanging on a FIFO).
	if fl, ferr := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); ferr == nil {
		unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fcntlLock takes a write lock on the whole file, polling until deadline.
func fcntlLock(fd int, deadline time.Time) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("fcntl lock: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fcntl lock: %w", ErrLockTimeout)
		}
		time.Sleep(lockRetry)
	}
}
