package queue

// Recycled queue files. qmgr does not unlink a queue file whose every
// recipient is done: Recycle renames it into free/, and cleanup's Create
// takes a file from free/ for the next message instead of creating one,
// zeroes the old content (a write into the page cache), writes the new
// message over it and cuts the file to its new length at Commit. A file is
// not emptied in between: freeing its blocks, only to allocate them again
// for the next message, cost a synchronous discard request to the disk on a
// file system mounted with "discard" (qmgr waited for one per message) and
// the block allocator's work twice. Files larger than keepSize are emptied
// all the same, so that free/ never holds more than MaxFree*keepSize bytes.
//
// Inodes are recycled for ext4 without a journal (and ext2): there every
// inode allocation skips the inodes freed in the last seconds (up to five
// minutes while their inode table block is dirty), one by one, so a queue
// that creates and deletes hundreds of files a second spends most of its
// CPU in the kernel's inode allocator (find_inode_bit and
// recently_deleted), and makes every other file creation on that file
// system (the Maildir files local writes) slow as well. A recycled inode is
// never freed, so there is nothing to skip.
//
// Safety. A file in free/ holds no message anyone needs: Recycle is called
// only once every recipient is done, where the file used to be removed;
// nothing reads free/ but Create (not Recover, not the listings). Recycle
// holds the writers' flock from before its rename until it is done with the
// file, so no writer takes a file Recycle still works on; a crash leaves
// the delivered message in active/ (delivered again, as after a lost
// unlink) or in free/. Create zeroes a file before it renames it into tmp/,
// so tmp/ never shows an old, accepted message, as before (after a power
// failure the disk may still hold the old bytes there, if the zeroes had
// not been written back; Recover removes whatever tmp/ holds, and nothing
// reads tmp/ as mail). Create takes a file by opening it, locking it (the
// flock that also tells SweepTmp a live writer owns it) and only then
// renaming it into tmp/ with RENAME_NOREPLACE; a lock or rename that fails
// means another writer (or Recycle) has the file, and the next one is
// tried. The new message is then written from the start and committed as
// into a new file, cut to its length before the fdatasync (which covers the
// file's size), and the rename into incoming/ is followed by an fsync of
// incoming/, so the 250 means what it did. Without a journal a crash may
// also leave one inode under two names (a recycled file's old name in
// active/ and its new one); fsck repairs the count and the message is
// delivered twice at worst, never lost.
//
// Limits. free/ holds at most MaxFree files of at most keepSize bytes each;
// beyond that Recycle unlinks as before. The count is an estimate kept by
// this process and corrected by reading free/ every freeRecount recycles,
// so it can only err for a while towards unlinking; once it says full,
// free/ is read again before a Recycle unlinks, at most every
// freeFullRecount. That bound is short because cleanup empties free/ as
// fast as qmgr fills it: an estimate left at full for a second unlinks a
// second's worth of queue files, and cleanup then runs out and creates new
// ones, which is the very cost free/ exists to avoid. Create reads at most
// freeBatch names at a time and, when free/ was empty, reads it again at
// most every freeRescan.

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Free is the spool directory of recycled queue files.
const Free = "free"

// MaxFree bounds the number of files kept in free/. Large enough to hold
// the queue files of a burst (the backlog of thousands of messages a
// busy minute can leave): a file unlinked because free/ was full is an
// inode that the next burst allocates again, past the freed ones. A file
// here costs an inode, a directory entry and at most keepSize bytes.
const MaxFree = 8192

const (
	freeBatch   = 256
	freeRescan  = 200 * time.Millisecond
	freeRecount = 512
	// freeFullRecount: how often free/ is read again while the
	// estimate says it is full (a read of at most MaxFree names).
	freeFullRecount = 50 * time.Millisecond
)

// keepSize: a recycled file up to this size keeps its blocks for the next
// message (most mail is smaller); a larger one is emptied.
const keepSize = 16 << 10

// zeroes overwrite a recycled file's old content.
var zeroes [keepSize]byte

// freeList is the names in free/ this process has seen and not yet tried.
var freeList struct {
	sync.Mutex
	names    []string
	lastScan time.Time
	// count estimates how many files free/ holds; recycled counts
	// Recycle calls since the last recount.
	count     int
	recycled  int
	countedAt time.Time
}

// nextFree returns a name from free/, reading the directory when the list
// is empty (no more often than freeRescan when it found nothing).
func nextFree(spool string) (string, bool) {
	freeList.Lock()
	defer freeList.Unlock()
	if len(freeList.names) == 0 {
		if time.Since(freeList.lastScan) < freeRescan {
			return "", false
		}
		freeList.lastScan = time.Now()
		d, err := os.Open(filepath.Join(spool, Free))
		if err != nil {
			return "", false
		}
		names, _ := d.Readdirnames(freeBatch)
		d.Close()
		if len(names) == 0 {
			return "", false
		}
		// Scanned again at once when this batch runs out: free/ had
		// files, it may have more.
		freeList.lastScan = time.Time{}
		freeList.names = names
	}
	n := len(freeList.names) - 1
	name := freeList.names[n]
	freeList.names = freeList.names[:n]
	return name, true
}

// pushFree gives a name back to the list (an ID clash in tmp/: the file
// is still in free/).
func pushFree(name string) {
	freeList.Lock()
	freeList.names = append(freeList.names, name)
	freeList.Unlock()
}

// takeFree moves a recycled file to path (in tmp/), locked, and returns it
// with its size (its old content, which the caller overwrites and cuts
// off). It returns nil and no error when free/ has nothing usable, and an
// error wrapping os.ErrExist when path is taken (an ID clash: the caller
// tries another ID).
func takeFree(spool, path string) (*os.File, int64, error) {
	for range 8 {
		name, ok := nextFree(spool)
		if !ok {
			return nil, 0, nil
		}
		src := filepath.Join(spool, Free, name)
		f, err := os.OpenFile(src, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			continue // taken by another writer, or not a file for us
		}
		var st unix.Stat_t
		err = control(f, func(fd int) error {
			if err := unix.Fstat(fd, &st); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
				return errors.New("not a plain file")
			}
			// Locked before it shows in tmp/, so that no sweep takes
			// it for a dead writer's leftover.
			return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		})
		if err != nil {
			f.Close()
			continue
		}
		// The old message is gone before the file shows in tmp/:
		// zeroed in place (its blocks stay), or, for a large file
		// (a crash between Recycle's rename and its truncate), emptied.
		if st.Size > keepSize {
			err = f.Truncate(0)
			st.Size = 0
		} else if st.Size > 0 {
			_, err = f.WriteAt(zeroes[:st.Size], 0)
		}
		if err != nil {
			f.Close()
			continue
		}
		if err := renameNoReplace(src, path); err != nil {
			f.Close()
			if errors.Is(err, fs.ErrExist) {
				pushFree(name)
				return nil, 0, err
			}
			continue // another writer renamed it first
		}
		return f, st.Size, nil
	}
	return nil, 0, nil
}

// Recycle disposes of the queue file dir/id, whose every recipient is done
// and which f (open for writing) holds: it is renamed into free/ for
// cleanup to reuse (emptied only when larger than keepSize) or, when free/
// is full or the rename fails, removed. Either way the file is gone from
// dir when it returns nil. Like the removal it replaces, it does not
// fsync: a crash may bring the message back into the queue, to be
// delivered again.
func Recycle(spool, dir string, id ID, f *os.File) error {
	path := Path(spool, dir, id)
	if path == "" {
		return &os.PathError{Op: "recycle", Path: string(id), Err: os.ErrInvalid}
	}
	// Under the writers' lock from before the rename until after the
	// truncate: a writer that finds the file in free/ meanwhile cannot
	// lock it, so the truncate never hits a new message.
	if f != nil && lockFile(f) == nil {
		defer unlockFile(f)
		if reserveFree(spool) {
			if err := renameNoReplace(path, filepath.Join(spool, Free, string(id))); err == nil {
				// Emptied after the rename, if at all: a crash
				// before it leaves the whole message in dir, never
				// an empty file there. An error only leaves the
				// space in use until the next message cuts the file.
				if fi, err := f.Stat(); err != nil || fi.Size() > keepSize {
					f.Truncate(0)
				}
				return nil
			}
			unreserveFree()
		}
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return nil
}

func lockFile(f *os.File) error {
	return control(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) })
}

func unlockFile(f *os.File) {
	control(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_UN) })
}

// reserveFree counts one more file in free/ if there is room.
func reserveFree(spool string) bool {
	freeList.Lock()
	defer freeList.Unlock()
	if freeList.countedAt.IsZero() || freeList.recycled >= freeRecount ||
		freeList.count >= MaxFree && time.Since(freeList.countedAt) > freeFullRecount {
		freeList.count = countFree(spool)
		freeList.recycled = 0
		freeList.countedAt = time.Now()
	}
	if freeList.count >= MaxFree {
		return false
	}
	freeList.count++
	freeList.recycled++
	return true
}

func unreserveFree() {
	freeList.Lock()
	freeList.count--
	freeList.Unlock()
}

// countFree returns how many names free/ holds, or MaxFree when it cannot
// be read (so nothing is put there).
func countFree(spool string) int {
	d, err := os.Open(filepath.Join(spool, Free))
	if err != nil {
		return MaxFree
	}
	defer d.Close()
	n := 0
	for n < MaxFree {
		names, err := d.Readdirnames(freeBatch)
		n += len(names)
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return MaxFree
		}
	}
	return n
}
