package privsep

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// switchIDs is set by Drop when the process keeps CAP_SETUID and
// CAP_SETGID under a non-root uid: it may switch filesystem ids.
var switchIDs bool

// AsUser runs fn on a thread of its own whose filesystem uid and gid are
// uid and gid, so every file fn creates belongs to that user and every
// permission check is made as that user (DESIGN.md §2: never change the
// whole process's ids back and forth). It needs CAP_SETUID and CAP_SETGID;
// a process that is not root runs fn as itself, and refuses a uid that is
// not its own. uid 0 is allowed: it is root's own mailbox, and the caller
// holds no capability that would let fsuid 0 override permissions.
//
// fn must do its file operations on the calling goroutine: a goroutine it
// starts may run on another thread, with other credentials. Go starts new
// threads from a template thread while a goroutine is locked, so no thread
// inherits the switched ids.

func AsUser(uid, gid int, fn func() error) error {
	if os.Geteuid() != 0 && !switchIDs {
		if uid != os.Geteuid() {
			return fmt.Errorf("privsep: cannot act as uid %d: this process is unprivileged (uid %d)", uid, os.Geteuid())
		}
		return fn()
	}
	if uid < 0 || gid < 0 {
		return fmt.Errorf("privsep: bad ids %d:%d", uid, gid)
	}
	runtime.LockOSThread()
	// Back to the process's own ids afterwards (root, or mail_owner for a
	// daemon that kept CAP_SETUID), never to more.
	ouid, ogid := os.Geteuid(), os.Getegid()
	if err := switchFS(uid, gid); err != nil {
		// Put the thread back; if even that fails, it stays locked to
		// this goroutine and dies with it, never serving anything else.
		if switchFS(ouid, ogid) == nil {
			runtime.UnlockOSThread()
		}
		return err
	}
	ferr := fn()
	if err := switchFS(ouid, ogid); err != nil {
		return fmt.Errorf("privsep: restore filesystem ids: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func switchFS(uid, gid int) error {
	// setfsuid reports only the previous value; read back to know it took.
	if _, err := unix.SetfsgidRetGid(gid); err != nil {
		return fmt.Errorf("privsep: setfsgid(%d): %w", gid, err)
	}
	if cur, _ := unix.SetfsgidRetGid(-1); cur != gid {
		return fmt.Errorf("privsep: setfsgid(%d) did not take (fsgid %d)", gid, cur)
	}
	if _, err := unix.SetfsuidRetUid(uid); err != nil {
		return fmt.Errorf("privsep: setfsuid(%d): %w", uid, err)
	}
	if cur, _ := unix.SetfsuidRetUid(-1); cur != uid {
		return fmt.Errorf("privsep: setfsuid(%d) did not take (fsuid %d)", uid, cur)
	}
	return nil
}

// CanSwitch reports whether this process, having dropped privilege with
// CAP_SETUID and CAP_SETGID kept, may act as (or start processes as)
// other users.
func CanSwitch() bool { return switchIDs }
