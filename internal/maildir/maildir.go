// Package maildir delivers messages into a Maildir, as described in
// https://cr.yp.to/proto/maildir.html, and lists what a Maildir holds.
//
// The local daemon calls Deliver on a goroutine locked to an OS thread whose
// filesystem uid and gid it has switched to the mailbox owner (setfsuid). This
// package therefore does every system call on the calling goroutine and never
// starts a goroutine of its own: a file operation on another thread would run
// with other credentials (Folder.Watch, which only reads inotify
// events, is the one exception). The reader/writer store that pop3d, imapd
// and local use (Store, Folder: folders, uid list, flags, keywords, locks)
// is in store.go and the files beside it.
//
// A delivery:
//
//   - Lstat(Dir). A symlink is refused. A missing Dir is created (mode 0700)
//     only when Delivery.Create is set, and only Dir itself: its parent must
//     exist (a missing home directory is an administrator's problem, not
//     something to paper over as root's or the user's guess).
//   - Dir, then tmp/ and new/ inside it, are opened with
//     O_DIRECTORY|O_NOFOLLOW, and every later operation is relative to those
//     descriptors (openat, renameat2), so a symlink swapped in between two
//     steps is refused as well, never followed.
//   - The file is created in tmp/ without a name (O_TMPFILE, mode 0600),
//     where the kernel and the file system allow it: a reader can no more
//     see it than a file in tmp/, and a failed or interrupted delivery
//     leaves nothing behind, not even after a crash. It also spares the
//     disk a write: without a journal, ext4 writes a new file's directory
//     at its fsync, and tmp/ is of no use after a crash. Elsewhere (no
//     O_TMPFILE, no /proc/self/fd to link it by) it is created in tmp/ with
//     O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, under a unique name
//     SECONDS.MusecPpidQseq.HOST, where seq is a process-wide counter. An
//     existing name (clock stepped back, pid reused) is skipped, never
//     overwritten.
//   - The caller's prefix is written as given, then the message, copied
//     through a 64 KiB buffer with CRLF turned into LF (a CR not followed by
//     LF is kept). The whole message is never held in memory.
//   - The file is fsync'd, linked (the unnamed file; linkat never replaces
//     a name) or renamed with RENAME_NOREPLACE (the named one) into new/ as
//     NAME,W=VSIZE,S=SIZE, where NAME is a unique name as above, SIZE is the
//     file's size in bytes and VSIZE its size with CRLF line ends, which
//     POP3 and IMAP report (both as Dovecot writes them), and new/ is
//     fsync'd. Only then does Deliver return success.
//     (The link is how qmail, whose Maildir this is, moves a message into
//     new/.) DeliverUnsynced stops before that fsync and leaves it (Pending.Sync)
//     to the caller, who may make it after leaving the owner's ids.
//
// Failure modes. Any error removes the tmp/ file (or closes the unnamed
// one) and returns an *Error that names the step and the path that failed
// (an unnamed file is "DIR/tmp/(unnamed)"). IsTemporary tells a condition that
// may clear by itself or by an administrator's hand without the message
// changing (ENOSPC, EDQUOT, EACCES, EPERM, EIO, EROFS, a missing directory,
// resource exhaustion, an error reading the message) from one where this
// mailbox as configured cannot take the message (a symlink, something that
// is not a directory, EFBIG, a relative Dir). The caller decides what to do
// with either. If fsync of new/ fails after the rename, the file is unlinked
// from new/ again (best effort) so that a retry does not knowingly leave a
// duplicate; a crash between rename and fsync can still repeat a delivery
// (at-least-once, like every Maildir writer).
//
// Limits. No size limit of its own: the caller bounds the message
// (message_size_limit) before it gets here. Hostname is sanitized ('/' as
// \057, ':' as \072, ',' as \054, other bytes outside printable ASCII as
// \ooo) and cut to 128 bytes so that a name stays well inside NAME_MAX even
// after a reader appends ":2,FLAGS". RENAME_NOREPLACE is used where the
// filesystem supports it; elsewhere (EINVAL) the rename falls back to
// checking that the target name is free and then renameat(2), which is racy
// only against another writer choosing the same unique name.
package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// bufSize is the copy buffer: large enough to keep syscalls per message low,
// small enough that many concurrent deliveries cost little memory.
const bufSize = 64 * 1024

// maxHostLen bounds the sanitized host part of a file name.
const maxHostLen = 128

// maxNameTries bounds how often a colliding unique name is replaced by a
// fresh one before giving up.
const maxNameTries = 16

// ErrSymlink is wrapped by the error returned when Dir, tmp/ or new/ is a
// symbolic link.
var ErrSymlink = errors.New("is a symlink, refusing")

// Delivery describes one Maildir to deliver into. The zero value is not
// usable: Dir must be set.
type Delivery struct {
	// Dir is the Maildir path, absolute (e.g. /home/alice/Maildir or
	// /var/vmail/example.test/demo).
	Dir string
	// Hostname goes into the unique file name; sanitized as the package
	// comment describes. Empty means os.Hostname().
	Hostname string
	// Create makes Deliver create a missing Dir (its parent must exist) and
	// missing cur/, new/, tmp/ inside it, mode 0700.
	Create bool
}

// Error is the error Deliver and List return: which step failed, on which
// path, and whether the failure is temporary.
type Error struct {
	Op   string // the step: "check", "lstat", "mkdir", "open", "create", "write", "read", "fsync", "close", "rename", "readdir"
	Path string // the path the step worked on
	Err  error  // the underlying error (a unix.Errno, ErrSymlink, or the reader's error)
	Temp bool   // true if retrying later may succeed
}

// Error formats the failure for a log line or a DSN diagnostic.
func (e *Error) Error() string {
	var s string
	if errors.Is(e.Err, ErrSymlink) {
		s = fmt.Sprintf("maildir: %s: Maildir %s is a symlink, refusing", e.Op, e.Path)
	} else {
		s = fmt.Sprintf("maildir: %s %s: %v", e.Op, e.Path, e.Err)
	}
	if e.Temp {
		s += " (temporary)"
	}
	return s
}

// Unwrap returns the underlying error, so errors.Is(err, unix.ENOSPC) works.
func (e *Error) Unwrap() error { return e.Err }

// IsTemporary reports whether err, as returned by Deliver or List, is a
// condition that may clear without the message changing (disk full, quota,
// permissions, I/O error, missing directory). An error that does not come
// from this package is reported as temporary: not knowing is not a reason
// to bounce.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Temp
	}
	return true
}

// temporaryErrno reports whether errno is a condition worth retrying.
// Everything not listed as permanent is temporary: for mail, a wrong
// "temporary" costs a delay, a wrong "permanent" loses a message.
func temporaryErrno(err error) bool {
	if errors.Is(err, ErrSymlink) {
		return false
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return true
	}
	switch errno {
	case unix.ELOOP, unix.ENOTDIR, unix.EISDIR, unix.ENAMETOOLONG, unix.EFBIG, unix.EINVAL:
		return false
	}
	return true
}

func newError(op, path string, err error) *Error {
	return &Error{Op: op, Path: path, Err: err, Temp: temporaryErrno(err)}
}

// seq makes names unique inside this process; the pid makes them unique
// among processes, the time across restarts.
var seq atomic.Uint64

// bufPool recycles copy buffers between deliveries (no goroutines: a Pool
// is only memory).
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 2*bufSize+1)
	return &b
}}

// Deliver writes prefix (headers such as Return-Path and Delivered-To,
// already in LF form) followed by the message read from r, with CRLF turned
// into LF, into tmp/ (unnamed where it can), fsyncs it, links or renames
// it into new/ and fsyncs new/. It
// returns the final file name, relative to new/. On error nothing is left in
// tmp/ or new/, and the error is an *Error.
func (d *Delivery) Deliver(prefix []byte, r io.Reader) (string, error) {
	p, err := d.DeliverUnsynced(prefix, r)
	if err != nil {
		return "", err
	}
	defer p.Close()
	if err := p.Sync(); err != nil {
		p.Undo()
		return "", err
	}
	return p.Name, nil
}

// Pending is a message renamed into new/ whose directory entry may not be
// on disk yet: it is delivered once Sync has returned nil. It holds new/
// open until Close.
type Pending struct {
	// Name is the file's name in new/.
	Name  string
	dir   string
	newfd int
}

// DeliverUnsynced does what Deliver does but the last step, the fsync of
// new/, which the caller makes with Sync. The split is for local: the
// fsync of new/ is shared by concurrent deliveries into the Maildir, and
// waiting for a shared fsync on a thread locked to the owner's ids costs
// two thread hand-offs per wait, while the fsync of a directory needs no
// permission at all. The caller calls Close in any case, and Undo, as
// the owner, if Sync fails.
func (d *Delivery) DeliverUnsynced(prefix []byte, r io.Reader) (*Pending, error) {
	if d == nil || r == nil {
		return nil, &Error{Op: "check", Err: errors.New("nil Delivery or reader")}
	}
	dir := d.Dir
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, &Error{Op: "check", Path: dir, Err: errors.New("the Maildir path is not absolute")}
	}
	dir = filepath.Clean(dir)

	dirfd, err := openMaildir(dir, d.Create)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)

	var created bool
	subs := [...]string{"tmp", "new", "cur"}
	var fds [len(subs)]int
	n := len(subs)
	if !d.Create {
		n = 2 // cur/ is the reader's business; delivery needs only tmp/ and new/
	}
	for i := range n {
		fd, made, err := openSub(dirfd, dir, subs[i], d.Create)
		if err != nil {
			for j := range i {
				unix.Close(fds[j])
			}
			return nil, err
		}
		fds[i] = fd
		created = created || made
	}
	tmpfd, newfd := fds[0], fds[1]
	keepNew := false
	defer func() {
		for i := range n {
			if i != 1 || !keepNew {
				unix.Close(fds[i])
			}
		}
	}()
	if created {
		// The new subdirectories must survive a crash with the message.
		if err := unix.Fsync(dirfd); err != nil {
			return nil, newError("fsync", dir, err)
		}
	}

	host := sanitizeHost(d.Hostname)
	if fd, ok := openUnnamed(tmpfd); ok {
		final, err := deliverUnnamed(fd, newfd, dir, host, prefix, r)
		if err != nil {
			return nil, err
		}
		keepNew = true
		return &Pending{Name: final, dir: dir, newfd: newfd}, nil
	}
	tmpName, fd, err := createTmp(tmpfd, dir, host)
	if err != nil {
		return nil, err
	}
	tmpPath := dir + "/tmp/" + tmpName
	size, vsize, err := writeMessage(fd, tmpPath, prefix, r)
	if err == nil {
		if e := unix.Fsync(fd); e != nil {
			err = newError("fsync", tmpPath, e)
		}
	}
	if e := unix.Close(fd); e != nil && err == nil {
		// close can report a deferred write error (NFS, some quotas).
		err = newError("close", tmpPath, e)
	}
	if err != nil {
		unix.Unlinkat(tmpfd, tmpName, 0)
		return nil, err
	}

	final, err := renameIntoNew(tmpfd, tmpName, newfd, dir, host, size, vsize)
	if err != nil {
		unix.Unlinkat(tmpfd, tmpName, 0)
		return nil, err
	}
	keepNew = true
	return &Pending{Name: final, dir: dir, newfd: newfd}, nil
}

// Sync makes the rename into new/ durable (an fsync of new/ that began
// after it, shared with concurrent deliveries into the same Maildir). It
// needs no permission, so it may run on any thread.
func (p *Pending) Sync() error {
	if err := syncDir(p.newfd); err != nil {
		return newError("fsync", p.dir+"/new", err)
	}
	return nil
}

// Undo takes the message back out of new/ after a failed Sync, so that the
// retry the caller will make does not knowingly add a second copy. If a
// reader already moved it to cur/, the unlink fails and the user has the
// message. It needs the owner's ids (it unlinks in the owner's directory).
func (p *Pending) Undo() {
	unix.Unlinkat(p.newfd, p.Name, 0)
}

// Close releases new/. Safe to call more than once.
func (p *Pending) Close() {
	if p.newfd >= 0 {
		unix.Close(p.newfd)
		p.newfd = -1
	}
}

// openMaildir opens Dir itself with O_DIRECTORY|O_NOFOLLOW, creating it
// first when asked to.
func openMaildir(dir string, create bool) (int, error) {
	var st unix.Stat_t
	err := unix.Lstat(dir, &st)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdir(dir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, newError("mkdir", dir, err)
		}
		// Make the new directory entry durable before mail goes into it.
		parent := filepath.Dir(dir)
		pfd, perr := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if perr != nil {
			return -1, newError("open", parent, perr)
		}
		perr = unix.Fsync(pfd)
		unix.Close(pfd)
		if perr != nil {
			return -1, newError("fsync", parent, perr)
		}
		err = unix.Lstat(dir, &st)
	}
	if err != nil {
		return -1, newError("lstat", dir, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return -1, newError("lstat", dir, ErrSymlink)
	case unix.S_IFDIR:
	default:
		return -1, newError("lstat", dir, unix.ENOTDIR)
	}
	fd, err := openDirNoFollow(unix.AT_FDCWD, dir)
	if err != nil {
		return -1, newError("open", dir, err)
	}
	return fd, nil
}

// openSub opens tmp/, new/ or cur/ below dirfd, creating it when asked to.
// made reports whether it was created.
func openSub(dirfd int, dir, name string, create bool) (fd int, made bool, err error) {
	path := dir + "/" + name
	fd, err = openDirNoFollow(dirfd, name)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(dirfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, false, newError("mkdir", path, err)
		}
		made = true
		fd, err = openDirNoFollow(dirfd, name)
	}
	if err != nil {
		return -1, false, newError("open", path, err)
	}
	return fd, made, nil
}

// openDirNoFollow opens a directory without following a symlink in the
// last component. Linux answers ENOTDIR, not ELOOP, for a symlink opened
// with O_DIRECTORY|O_NOFOLLOW, so the entry is looked at again to say why.
func openDirNoFollow(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOTDIR || err == unix.ELOOP {
			var st unix.Stat_t
			if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return -1, ErrSymlink
			}
		}
		return fd, err
	}
}

// uniqueName returns SECONDS.MusecPpidQseq.host.
func uniqueName(host string) string {
	now := time.Now()
	b := make([]byte, 0, 64+len(host))
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(now.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = strconv.AppendInt(b, int64(os.Getpid()), 10)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, seq.Add(1), 10)
	b = append(b, '.')
	b = append(b, host...)
	return string(b)
}

// createTmp creates a fresh file in tmp/ and returns its name and fd.
func createTmp(tmpfd int, dir, host string) (string, int, error) {
	var err error
	for range maxNameTries {
		name := uniqueName(host)
		var fd int
		fd, err = unix.Openat(tmpfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return name, fd, nil
		}
		if err != unix.EEXIST && err != unix.EINTR {
			return "", -1, newError("create", dir+"/tmp/"+name, err)
		}
	}
	return "", -1, newError("create", dir+"/tmp", fmt.Errorf("no unique name after %d tries: %w", maxNameTries, err))
}

// unnamedOff is set once the kernel or the file system has refused an
// unnamed file, so that later deliveries go straight to tmp/NAME.
var unnamedOff atomic.Bool

// procFD reports whether /proc/self/fd is there to link an unnamed file
// by: linkat(2) with AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH, which
// local does not have.
var procFD = sync.OnceValue(func() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/self/fd", &st) == nil
})

// unnamed reports whether a delivery may try an unnamed file; a test hook.
var unnamed = func() bool { return !unnamedOff.Load() && procFD() }

// openUnnamed opens an unnamed file in tmp/'s file system (O_TMPFILE), or
// reports that this kernel, file system or process cannot have one.
func openUnnamed(tmpfd int) (int, bool) {
	if !unnamed() {
		return -1, false
	}
	for {
		fd, err := unix.Openat(tmpfd, ".", unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// EOPNOTSUPP (a file system without it), EISDIR (a kernel
			// before 3.11 takes the flag for O_DIRECTORY), EINVAL: not in
			// this process's life. Anything else (EACCES, ENOSPC, EDQUOT)
			// is for the tmp/NAME path to meet and report with a name.
			if err == unix.EOPNOTSUPP || err == unix.EISDIR || err == unix.EINVAL {
				unnamedOff.Store(true)
			}
			return -1, false
		}
		return fd, true
	}
}

// deliverUnnamed writes the message into the unnamed file fd, fsyncs it
// and links it into new/ under a unique name, which it returns. On error
// the file is closed and, having no name, gone: nothing to clean up, not
// even after a crash.
func deliverUnnamed(fd, newfd int, dir, host string, prefix []byte, r io.Reader) (string, error) {
	defer unix.Close(fd)
	path := dir + "/tmp/(unnamed)"
	size, vsize, err := writeMessage(fd, path, prefix, r)
	if err != nil {
		return "", err
	}
	if err := unix.Fsync(fd); err != nil {
		return "", newError("fsync", path, err)
	}
	src := "/proc/self/fd/" + strconv.Itoa(fd)
	sizes := ",W=" + strconv.FormatInt(vsize, 10) + ",S=" + strconv.FormatInt(size, 10)
	for range maxNameTries {
		final := uniqueName(host) + sizes
		err := linkNew(src, newfd, final)
		if err == nil {
			return final, nil
		}
		if err != unix.EEXIST && err != unix.EINTR {
			return "", newError("link", path+" -> "+dir+"/new/"+final, err)
		}
	}
	return "", newError("link", dir+"/new", fmt.Errorf("no unique name after %d tries: %w", maxNameTries, unix.EEXIST))
}

// linkNew gives the unnamed file behind the /proc path src the name
// newname in new/; linkat never replaces an existing name. A test hook.
var linkNew = func(src string, newfd int, newname string) error {
	return unix.Linkat(unix.AT_FDCWD, src, newfd, newname, unix.AT_SYMLINK_FOLLOW)
}

// renameIntoNew moves tmp/tmpName to new/NAME,W=vsize,S=size without
// replacing an existing file, and returns the new name.
func renameIntoNew(tmpfd int, tmpName string, newfd int, dir, host string, size, vsize int64) (string, error) {
	// W= before S=: readers (Dovecot among them) look fields up by letter,
	// and tools that take everything after the last ",S=" as the size
	// keep working.
	final := tmpName + ",W=" + strconv.FormatInt(vsize, 10) + ",S=" + strconv.FormatInt(size, 10)
	for range maxNameTries {
		err := renameNoReplace(tmpfd, tmpName, newfd, final)
		if err == nil {
			return final, nil
		}
		if err != unix.EEXIST {
			return "", newError("rename", dir+"/tmp/"+tmpName+" -> "+dir+"/new/"+final, err)
		}
		final = uniqueName(host) + ",W=" + strconv.FormatInt(vsize, 10) + ",S=" + strconv.FormatInt(size, 10)
	}
	return "", newError("rename", dir+"/new", fmt.Errorf("no unique name after %d tries: %w", maxNameTries, unix.EEXIST))
}

// renameNoReplace is a test hook.
var renameNoReplace = func(olddirfd int, oldname string, newdirfd int, newname string) error {
	err := unix.Renameat2(olddirfd, oldname, newdirfd, newname, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	// The filesystem does not know RENAME_NOREPLACE: check, then rename.
	var st unix.Stat_t
	if err := unix.Fstatat(newdirfd, newname, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return unix.EEXIST
	} else if err != unix.ENOENT {
		return err
	}
	return unix.Renameat(olddirfd, oldname, newdirfd, newname)
}

// write is a test hook (to inject ENOSPC and friends).
var write = unix.Write

// writeAll writes p to fd, retrying short writes and EINTR.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return io.ErrShortWrite
		}
		p = p[n:]
	}
	return nil
}

// writeMessage writes prefix and the LF-converted message to fd and
// returns the number of bytes written and their size with CRLF line ends.
func writeMessage(fd int, path string, prefix []byte, r io.Reader) (size, vsize int64, err error) {
	size = int64(len(prefix))
	var cc crlfCounter
	cc.add(prefix)
	if err := writeAll(fd, prefix); err != nil {
		return 0, 0, newError("write", path, err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	in, out := (*bp)[:bufSize], (*bp)[bufSize:]
	var c lfConverter
	for {
		n, rerr := r.Read(in)
		if n > 0 {
			o := c.convert(out[:0], in[:n])
			if err := writeAll(fd, o); err != nil {
				return 0, 0, newError("write", path, err)
			}
			cc.add(o)
			size += int64(len(o))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The message source failed, not the mailbox.
			return 0, 0, &Error{Op: "read", Path: path, Err: rerr, Temp: true}
		}
	}
	if o := c.flush(out[:0]); len(o) > 0 {
		if err := writeAll(fd, o); err != nil {
			return 0, 0, newError("write", path, err)
		}
		cc.add(o)
		size += int64(len(o))
	}
	return size, size + cc.added, nil
}

// lfConverter turns CRLF into LF in a stream given in chunks. A CR at the
// end of a chunk is held back until the next chunk shows what follows it.
type lfConverter struct {
	pendingCR bool
}

// convert appends src, converted, to dst. dst needs room for len(src)+1
// bytes to avoid growing.
func (c *lfConverter) convert(dst, src []byte) []byte {
	if len(src) == 0 {
		return dst
	}
	if c.pendingCR {
		c.pendingCR = false
		if src[0] != '\n' {
			dst = append(dst, '\r')
		}
	}
	for len(src) > 0 {
		i := indexCR(src)
		if i < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:i]...)
		if i+1 == len(src) {
			c.pendingCR = true
			return dst
		}
		if src[i+1] != '\n' {
			dst = append(dst, '\r')
		}
		src = src[i+1:]
	}
	return dst
}

// flush appends a CR still held back at the end of the stream.
func (c *lfConverter) flush(dst []byte) []byte {
	if c.pendingCR {
		c.pendingCR = false
		dst = append(dst, '\r')
	}
	return dst
}

func indexCR(b []byte) int {
	for i, c := range b {
		if c == '\r' {
			return i
		}
	}
	return -1
}

// systemHostname is os.Hostname, asked once: the answer does not change
// under a running daemon, and after chroot it may no longer be readable.
var systemHostname = sync.OnceValue(func() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "localhost"
	}
	return h
})

// sanitizeHost makes h safe inside a Maildir file name: '/' and ':' are
// written as \057 and \072 (as the Maildir spec says), ',' as \054 (Dovecot
// reads ",S=" and ",W=" fields after it), and any other byte outside
// printable ASCII, or a backslash, in the same octal form.
func sanitizeHost(h string) string {
	if h == "" {
		h = systemHostname()
	}
	b := make([]byte, 0, len(h))
	for i := 0; i < len(h); i++ {
		c := h[i]
		var esc bool
		switch {
		case c == '/', c == ':', c == ',', c == '\\', c <= ' ', c >= 0x7f:
			esc = true
		}
		if esc {
			if len(b)+4 > maxHostLen {
				break
			}
			b = append(b, '\\', '0'+c>>6, '0'+(c>>3)&7, '0'+c&7)
			continue
		}
		if len(b)+1 > maxHostLen {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// List returns the names of the messages in dir/new and dir/cur, sorted,
// without dot files and subdirectories. Dir, new/ and cur/ must not be
// symlinks. Errors are *Error.
func List(dir string) (newNames, curNames []string, err error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, nil, &Error{Op: "check", Path: dir, Err: errors.New("the Maildir path is not absolute")}
	}
	dir = filepath.Clean(dir)
	dirfd, err := openDirNoFollow(unix.AT_FDCWD, dir)
	if err != nil {
		return nil, nil, newError("open", dir, err)
	}
	defer unix.Close(dirfd)
	if newNames, err = listSub(dirfd, dir, "new"); err != nil {
		return nil, nil, err
	}
	if curNames, err = listSub(dirfd, dir, "cur"); err != nil {
		return nil, nil, err
	}
	return newNames, curNames, nil
}

func listSub(dirfd int, dir, name string) ([]string, error) {
	path := dir + "/" + name
	fd, err := openDirNoFollow(dirfd, name)
	if err != nil {
		return nil, newError("open", path, err)
	}
	// os.File.ReadDir runs getdents on the calling goroutine.
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, newError("readdir", path, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Name()[0] == '.' || e.IsDir() {
			continue
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}
