// Package privsep drops a daemon's privileges the way DESIGN.md §2 asks:
// once, early, before a single byte from a peer is read, and for every
// thread of the process.
//
// Linux keeps credentials, capabilities and the no_new_privs bit per
// thread, and a Go program has several threads before main runs. Every
// change here therefore goes through syscall.AllThreadsSyscall (or the
// standard library's set*id wrappers, which use it), which works only when
// the program is built with CGO_ENABLED=0; a cgo build fails loudly here
// instead of leaving some threads privileged.
//
// Order matters: chroot needs CAP_SYS_CHROOT, dropping the bounding set
// needs CAP_SETPCAP, so both happen while the process is still root; the
// uid change last clears the permitted and effective sets of every thread.
// After the drop, Drop checks the result the hard way: setuid(0) must fail
// and /proc/self/status must show the expected CapEff and NoNewPrivs.
//
// When the process is not root to begin with (make run as an ordinary
// user), there is nothing to drop: Drop only sets no_new_privs, changes
// into the spool directory and reports that it ran unprivileged.
package privsep

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capabilities a daemon may keep (DESIGN.md §2: only local keeps any).
const (
	CapSetgid = 6 // CAP_SETGID
	CapSetuid = 7 // CAP_SETUID
)

// Spec says what a daemon keeps.
type Spec struct {
	// User is the account to become (mail_owner). Empty: stay root, keeping
	// only KeepCaps (the local daemon's row in DESIGN.md §2).
	User string
	// KeepCaps with a User: the process becomes User but keeps these
	// capabilities (the local daemon: CAP_SETUID and CAP_SETGID to write
	// as each mailbox owner). Unlike staying root, it then owns no root
	// file, so a root-owned 0640 file (the passwd-file, /etc/shadow, a
	// TLS key) is closed to it.
	//
	// Chroot, when not empty, is the directory to chroot into (the spool,
	// or an empty directory). Otherwise the process chdirs into Dir.
	Chroot string
	// Dir is the working directory when there is no chroot.
	Dir string
	// KeepCaps lists the capabilities kept when User is empty.
	KeepCaps []int
	// AllowNewPrivs leaves PR_SET_NO_NEW_PRIVS unset. Only local asks for
	// it: the commands it runs as a user (a |command in .forward, such as
	// vacation or procmail) must be able to run sendmail, whose
	// postern-drop is setgid postdrop, and no_new_privs is inherited by
	// every descendant. local keeps CAP_SETUID, which already lets it
	// become any user: no_new_privs would add little to it.
	AllowNewPrivs bool
}

// Result tells the caller what Drop did, for its log line.
type Result struct {
	Unprivileged bool // the process was not root: nothing could be dropped
	UID, GID     int
}

// Drop applies spec to every thread of the process. It is meant to be
// called once, before any peer input is read; on error the caller must
// exit.
func Drop(spec Spec) (Result, error) {
	prepare()
	// /proc is not inside the chroot: open our status file now and read it
	// again after the drop (its content is made at read time).
	status, err := os.Open("/proc/self/status")
	if err != nil {
		return Result{}, fmt.Errorf("privsep: %w", err)
	}
	defer status.Close()
	if os.Geteuid() != 0 {
		if spec.Chroot != "" {
			if err := os.Chdir(spec.Chroot); err != nil {
				return Result{}, fmt.Errorf("privsep: chdir %s: %w", spec.Chroot, err)
			}
		} else if spec.Dir != "" {
			if err := os.Chdir(spec.Dir); err != nil {
				return Result{}, fmt.Errorf("privsep: chdir %s: %w", spec.Dir, err)
			}
		}
		if !spec.AllowNewPrivs {
			if err := noNewPrivs(); err != nil {
				return Result{}, err
			}
		}
		return Result{Unprivileged: true, UID: os.Getuid(), GID: os.Getgid()}, nil
	}

	uid, gid := 0, 0
	if spec.User != "" {
		u, err := user.Lookup(spec.User)
		if err != nil {
			return Result{}, fmt.Errorf("privsep: user %q: %w", spec.User, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if uid == 0 {
			return Result{}, fmt.Errorf("privsep: user %q has uid 0; mail_owner must be an unprivileged account", spec.User)
		}
	}

	if spec.Chroot != "" {
		if err := syscall.Chroot(spec.Chroot); err != nil {
			return Result{}, fmt.Errorf("privsep: chroot %s: %w", spec.Chroot, err)
		}
		if err := os.Chdir("/"); err != nil {
			return Result{}, fmt.Errorf("privsep: chdir / in chroot %s: %w", spec.Chroot, err)
		}
	} else if spec.Dir != "" {
		if err := os.Chdir(spec.Dir); err != nil {
			return Result{}, fmt.Errorf("privsep: chdir %s: %w", spec.Dir, err)
		}
	}

	keep := spec.KeepCaps
	if err := dropBounding(keep); err != nil {
		return Result{}, err
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return Result{}, fmt.Errorf("privsep: clear ambient capabilities: %w", err)
	}

	if spec.User != "" {
		if len(keep) > 0 {
			// Keep the permitted set across the uid change; capset
			// below makes exactly keep effective.
			if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
				return Result{}, fmt.Errorf("privsep: PR_SET_KEEPCAPS: %w", err)
			}
		}
		groups := []int{gid}
		if len(keep) > 0 {
			// It acts with other users' filesystem ids: no group of its
			// own should add to what they may touch.
			groups = []int{}
		}
		if err := syscall.Setgroups(groups); err != nil {
			return Result{}, fmt.Errorf("privsep: setgroups(%v): %w", groups, err)
		}
		if err := syscall.Setresgid(gid, gid, gid); err != nil {
			return Result{}, fmt.Errorf("privsep: setresgid(%d): %w", gid, err)
		}
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			return Result{}, fmt.Errorf("privsep: setresuid(%d): %w", uid, err)
		}
		if len(keep) > 0 {
			if err := capset(keep); err != nil {
				return Result{}, err
			}
			if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
				return Result{}, fmt.Errorf("privsep: PR_SET_KEEPCAPS: %w", err)
			}
			switchIDs = true
		}
	} else {
		if err := syscall.Setgroups([]int{}); err != nil {
			return Result{}, fmt.Errorf("privsep: setgroups(): %w", err)
		}
		if err := capset(keep); err != nil {
			return Result{}, err
		}
	}
	if !spec.AllowNewPrivs {
		if err := noNewPrivs(); err != nil {
			return Result{}, err
		}
	}
	if err := verify(status, spec.User != "" && !contains(keep, CapSetuid), keep, !spec.AllowNewPrivs); err != nil {
		return Result{}, err
	}
	return Result{UID: uid, GID: gid}, nil
}

// prepare loads what the standard library would otherwise read lazily
// from files that do not exist inside a chroot.
func prepare() {
	_ = time.Now().Local().Format(time.RFC1123Z)
}

func noNewPrivs() error {
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("privsep: PR_SET_NO_NEW_PRIVS: %w", err)
	}
	return nil
}

func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if e != 0 {
		return e
	}
	return nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return n
}

func dropBounding(keep []int) error {
	for c := 0; c <= lastCap(); c++ {
		if contains(keep, c) {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			if errors.Is(err, syscall.EINVAL) {
				break
			}
			return fmt.Errorf("privsep: drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

func capset(keep []int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for _, c := range keep {
		data[c/32].Effective |= 1 << (uint(c) % 32)
		data[c/32].Permitted |= 1 << (uint(c) % 32)
	}
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("privsep: capset: %w", err)
	}
	return nil
}

func contains(l []int, c int) bool {
	for _, x := range l {
		if x == c {
			return true
		}
	}
	return false
}

func verify(status *os.File, changedUID bool, keep []int, nnp bool) error {
	if changedUID {
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0); e == 0 {
			return errors.New("privsep: setuid(0) succeeded after the drop")
		}
	}
	st, err := parseStatus(io.NewSectionReader(status, 0, 1<<20), "/proc/self/status")
	if err != nil {
		return fmt.Errorf("privsep: verify: %w", err)
	}
	var want uint64
	for _, c := range keep {
		want |= 1 << uint(c)
	}
	if st.CapEff != want || st.CapPrm != want {
		return fmt.Errorf("privsep: verify: CapEff %016x CapPrm %016x, want %016x", st.CapEff, st.CapPrm, want)
	}
	if nnp && !st.NoNewPrivs {
		return errors.New("privsep: verify: NoNewPrivs is not set")
	}
	return nil
}

// Status is what /proc/PID/status says about a process's privilege.
type Status struct {
	UID, GID               [4]int // real, effective, saved, filesystem
	CapEff, CapPrm, CapBnd uint64
	CapInh, CapAmb         uint64
	NoNewPrivs             bool
	Groups                 []int
}

// ReadStatus parses the privilege lines of a /proc/PID/status file.
func ReadStatus(path string) (Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	return parseStatus(f, path)
}

func parseStatus(r io.Reader, path string) (Status, error) {
	var st Status
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Uid", "Gid":
			dst := &st.UID
			if k == "Gid" {
				dst = &st.GID
			}
			for i, f := range strings.Fields(v) {
				if i < 4 {
					dst[i], _ = strconv.Atoi(f)
				}
			}
		case "Groups":
			for _, f := range strings.Fields(v) {
				g, _ := strconv.Atoi(f)
				st.Groups = append(st.Groups, g)
			}
		case "CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return st, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			switch k {
			case "CapEff":
				st.CapEff = n
			case "CapPrm":
				st.CapPrm = n
			case "CapBnd":
				st.CapBnd = n
			case "CapInh":
				st.CapInh = n
			case "CapAmb":
				st.CapAmb = n
			}
		case "NoNewPrivs":
			st.NoNewPrivs = v == "1"
		}
	}
	return st, sc.Err()
}

// NoNewPrivs sets PR_SET_NO_NEW_PRIVS on every thread: for a process
// started already unprivileged (a POP3 or IMAP session) that must never
// gain privilege through an exec.
func NoNewPrivs() error { return noNewPrivs() }
