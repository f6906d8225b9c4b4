package tests

// Privilege tests: what DESIGN.md §2 promises about every running daemon,
// read from the kernel (/proc), not from what the daemons say about
// themselves. Credentials, capabilities and no_new_privs are per thread
// on Linux, so every thread of every daemon is checked.

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opsCapSetuidSetgid is CAP_SETGID (6) | CAP_SETUID (7): all that local keeps.
const opsCapSetuidSetgid = 1<<6 | 1<<7

// opsProcStatus is the privilege part of /proc/PID/status (or of one thread's
// /proc/PID/task/TID/status).
type opsProcStatus struct {
	Name                   string
	UID, GID               [4]int // real, effective, saved, filesystem
	Groups                 []int
	CapInh, CapPrm, CapEff uint64
	CapBnd, CapAmb         uint64
	NoNewPrivs             int // -1 when the kernel does not say
	seen                   map[string]bool
}

func opsReadStatus(path string) (opsProcStatus, error) {
	st := opsProcStatus{NoNewPrivs: -1, seen: map[string]bool{}}
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		st.seen[k] = true
		switch k {
		case "Name":
			st.Name = v
		case "Uid", "Gid":
			fl := strings.Fields(v)
			if len(fl) != 4 {
				return st, fmt.Errorf("%s: %s has %d fields: %q", path, k, len(fl), v)
			}
			for i, s := range fl {
				n, err := strconv.Atoi(s)
				if err != nil {
					return st, fmt.Errorf("%s: %s: %v", path, k, err)
				}
				if k == "Uid" {
					st.UID[i] = n
				} else {
					st.GID[i] = n
				}
			}
		case "Groups":
			for _, s := range strings.Fields(v) {
				n, err := strconv.Atoi(s)
				if err != nil {
					return st, fmt.Errorf("%s: Groups: %v", path, err)
				}
				st.Groups = append(st.Groups, n)
			}
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return st, fmt.Errorf("%s: %s: %v", path, k, err)
			}
			switch k {
			case "CapInh":
				st.CapInh = n
			case "CapPrm":
				st.CapPrm = n
			case "CapEff":
				st.CapEff = n
			case "CapBnd":
				st.CapBnd = n
			case "CapAmb":
				st.CapAmb = n
			}
		case "NoNewPrivs":
			st.NoNewPrivs, _ = strconv.Atoi(v)
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%s: %v", path, err)
	}
	for _, k := range []string{"Uid", "Gid", "Groups", "CapPrm", "CapEff", "CapBnd"} {
		if !st.seen[k] {
			return st, fmt.Errorf("%s: no %s line", path, k)
		}
	}
	return st, nil
}

// opsPrivWant is what one daemon's row in DESIGN.md §2 means in /proc terms.
type opsPrivWant struct {
	uid, gid       int
	groups         []int // allowed supplementary groups (all must be in it)
	capEff, capPrm uint64
	capBnd         *uint64 // nil: not checked
	nnp            int     // -1: not checked
	root           string  // readlink /proc/PID/root
}

func opsU64(v uint64) *uint64 { return &v }

// opsCheckProc checks the process and every one of its threads.
func opsCheckProc(t *testing.T, prog string, pid int, w opsPrivWant) {
	t.Helper()
	root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		t.Errorf("%s[%d]: readlink root: %v", prog, pid, err)
	} else if root != w.root {
		t.Errorf("%s[%d]: root directory is %q, want %q", prog, pid, root, w.root)
	}
	paths := []string{fmt.Sprintf("/proc/%d/status", pid)}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Errorf("%s[%d]: list threads: %v", prog, pid, err)
	}
	for _, e := range tasks {
		paths = append(paths, fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
	}
	if len(tasks) < 2 {
		// A Go program has several threads; one means we did not see them.
		t.Errorf("%s[%d]: only %d thread(s) listed", prog, pid, len(tasks))
	}
	checked := 0
	for _, p := range paths {
		st, err := opsReadStatus(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // a thread that ended meanwhile
		}
		if err != nil {
			t.Errorf("%s[%d]: %v", prog, pid, err)
			continue
		}
		checked++
		where := fmt.Sprintf("%s[%d] %s", prog, pid, strings.TrimPrefix(p, "/proc/"))
		for i, name := range []string{"real", "effective", "saved", "filesystem"} {
			if st.UID[i] != w.uid {
				t.Errorf("%s: %s uid %d, want %d (Uid: %v)", where, name, st.UID[i], w.uid, st.UID)
			}
			if st.GID[i] != w.gid {
				t.Errorf("%s: %s gid %d, want %d (Gid: %v)", where, name, st.GID[i], w.gid, st.GID)
			}
		}
		for _, g := range st.Groups {
			if !opsContainsInt(w.groups, g) {
				t.Errorf("%s: supplementary groups %v, allowed only %v", where, st.Groups, w.groups)
				break
			}
		}
		if st.CapEff != w.capEff {
			t.Errorf("%s: CapEff %016x, want %016x", where, st.CapEff, w.capEff)
		}
		if st.CapPrm != w.capPrm {
			t.Errorf("%s: CapPrm %016x, want %016x", where, st.CapPrm, w.capPrm)
		}
		if st.CapInh&^w.capPrm != 0 {
			t.Errorf("%s: CapInh %016x holds more than %016x", where, st.CapInh, w.capPrm)
		}
		if st.seen["CapAmb"] && st.CapAmb&^w.capPrm != 0 {
			t.Errorf("%s: CapAmb %016x holds more than %016x", where, st.CapAmb, w.capPrm)
		}
		if w.capBnd != nil && st.CapBnd != *w.capBnd {
			t.Errorf("%s: CapBnd %016x, want %016x", where, st.CapBnd, *w.capBnd)
		}
		if w.nnp >= 0 && st.NoNewPrivs != w.nnp {
			t.Errorf("%s: NoNewPrivs %d, want %d", where, st.NoNewPrivs, w.nnp)
		}
	}
	if checked == 0 {
		t.Errorf("%s[%d]: no status could be read (did it exit?)", prog, pid)
	}
	if st, err := opsReadStatus(paths[0]); err == nil {
		t.Logf("%s[%d]: %d threads checked; Uid %v Gid %v Groups %v CapEff %x CapPrm %x CapBnd %x NoNewPrivs %d root %s",
			prog, pid, checked-1, st.UID, st.GID, st.Groups, st.CapEff, st.CapPrm, st.CapBnd, st.NoNewPrivs, root)
	}
}

func opsContainsInt(l []int, x int) bool {
	for _, y := range l {
		if y == x {
			return true
		}
	}
	return false
}

// opsDaemonPids waits until master runs exactly one process of each program
// and returns them.
func opsDaemonPids(t *testing.T, in *Instance, progs ...string) map[string]int {
	t.Helper()
	var d map[string][]int
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		d = in.Daemons()
		ok := true
		for _, p := range progs {
			if len(d[p]) != 1 {
				ok = false
			}
		}
		if ok {
			out := map[string]int{}
			for _, p := range progs {
				out[p] = d[p][0]
			}
			return out
		}
	}
	t.Fatalf("want one process each of %v among master's children, have %v", progs, d)
	return nil
}

// opsDeliver sends a message to demo@example.test and waits for it, so
// that every daemon has handled a request and so has dropped privilege.
func opsDeliver(t *testing.T, in *Instance, user, tag string) string {
	t.Helper()
	before := len(Messages(in.Maildir(user)))
	msg := "Subject: " + tag + "\r\nMessage-ID: <" + tag + "@test>\r\n\r\n" + tag + "\r\n"
	if _, err := opsSend(in.Addr, "sender@example.org", []string{user + "@example.test"}, msg); err != nil {
		t.Fatalf("send %s: %v", tag, err)
	}
	files := WaitMessages(t, in.Maildir(user), before+1, 15*time.Second)
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), tag) {
			return f
		}
	}
	t.Fatalf("message %s not delivered to %s within 15 s", tag, user)
	return ""
}

func opsSelfStatus(t *testing.T) opsProcStatus {
	t.Helper()
	st, err := opsReadStatus("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// opsFDsConfined checks that every descriptor of pid is a socket, a pipe, an
// anonymous inode, /dev/null or a file below dir: a chrooted daemon that
// kept a descriptor of a directory outside its root could leave it.
func opsFDsConfined(t *testing.T, prog string, pid int, dir string) {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Errorf("%s[%d]: list descriptors: %v", prog, pid, err)
		return
	}
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		switch {
		case strings.HasPrefix(l, "socket:"), strings.HasPrefix(l, "pipe:"), strings.HasPrefix(l, "anon_inode:"):
		case l == "/dev/null":
		case l == dir || strings.HasPrefix(l, dir+"/"):
		case opsRuntimeCgroupFile(l) && opsReadOnlyFD(pid, e.Name()):
			// Go's runtime (1.25+) keeps its cgroup's CPU limit files
			// open to follow GOMAXPROCS; read-only regular files give no
			// way out of a chroot.
		default:
			t.Errorf("%s[%d]: descriptor %s is %q, outside the spool %s", prog, pid, e.Name(), l, dir)
		}
	}
}

func opsRuntimeCgroupFile(p string) bool {
	if !strings.HasPrefix(p, "/sys/fs/cgroup/") {
		return false
	}
	switch filepath.Base(p) {
	case "cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us":
		return true
	}
	return false
}

// opsReadOnlyFD says whether descriptor fd of pid was opened O_RDONLY.
func opsReadOnlyFD(pid int, fd string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && n&syscall.O_ACCMODE == syscall.O_RDONLY
		}
	}
	return false
}

// TestPrivilege checks DESIGN.md §2 for every running daemon of a
// privilege-separated Postern (as root, which CI is).
func TestPrivilege(t *testing.T) {
	if !isRoot() {
		t.Skip("privilege separation needs root (CI runs as root)")
	}
	in := Start(t, Options{})
	spool, err := filepath.EvalSymlinks(in.Spool)
	if err != nil {
		t.Fatal(err)
	}
	pUID, pGID := lookupIDs(t, "postern")
	vUID, vGID := lookupIDs(t, "vmail")

	file := opsDeliver(t, in, "demo", "privilege-1")
	pids := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local", "auth", "smtp", "lmtp", "pickup", "showq")
	// Settle: local's delivery thread switches its filesystem ids only
	// for the write and back; give any such thread time to be done.
	time.Sleep(300 * time.Millisecond)

	t.Run("timer slack", func(t *testing.T) {
		// Every thread of master and of every daemon has master's timer
		// slack of 1 ms (cmd/master/slack.go), not Linux's 50 µs.
		procs := map[string]int{"master": in.MasterPid()}
		for prog, pid := range pids {
			procs[prog] = pid
		}
		for prog, pid := range procs {
			tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
			if err != nil || len(tasks) == 0 {
				t.Fatalf("%s[%d]: threads: %v", prog, pid, err)
			}
			for _, task := range tasks {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%s/timerslack_ns", task.Name()))
				if err != nil {
					t.Fatalf("%s[%d] thread %s: %v", prog, pid, task.Name(), err)
				}
				if got := strings.TrimSpace(string(b)); got != "1000000" {
					t.Errorf("%s[%d] thread %s: timer slack %s ns, want 1000000", prog, pid, task.Name(), got)
				}
			}
		}
	})

	t.Run("daemons", func(t *testing.T) {
		// pickup (reads and removes maildrop/) and showq (reads the
		// queue for mailq) have the same row as cleanup and qmgr.
		for _, prog := range []string{"smtpd", "cleanup", "qmgr", "pickup", "showq"} {
			opsCheckProc(t, prog, pids[prog], opsPrivWant{
				uid: pUID, gid: pGID, groups: []int{pGID},
				capEff: 0, capPrm: 0, capBnd: opsU64(0), nnp: 1,
				root: spool,
			})
			// chroot without chdir into it leaves the cwd outside.
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pids[prog])); err != nil || cwd != spool {
				t.Errorf("%s[%d]: working directory %q (%v), want %s", prog, pids[prog], cwd, err, spool)
			}
			opsFDsConfined(t, prog, pids[prog], spool)
		}
		// auth: mail_owner, no capabilities, not chrooted (DESIGN.md §2:
		// it reads credential files; it holds them in memory).
		opsCheckProc(t, "auth", pids["auth"], opsPrivWant{
			uid: pUID, gid: pGID, groups: []int{pGID},
			capEff: 0, capPrm: 0, capBnd: opsU64(0), nnp: 1,
			root: "/",
		})
		opsFDsConfined(t, "auth", pids["auth"], spool)
		// smtp (remote delivery): mail_owner, no capabilities, chrooted
		// into the spool's empty directory: it reads the message only
		// through the descriptor qmgr hands it.
		opsCheckProc(t, "smtp", pids["smtp"], opsPrivWant{
			uid: pUID, gid: pGID, groups: []int{pGID},
			capEff: 0, capPrm: 0, capBnd: opsU64(0), nnp: 1,
			root: filepath.Join(spool, "empty"),
		})
		// lmtp (the same program): not chrooted, to reach a store's
		// Unix socket; otherwise the same.
		opsCheckProc(t, "lmtp", pids["lmtp"], opsPrivWant{
			uid: pUID, gid: pGID, groups: []int{pGID},
			capEff: 0, capPrm: 0, capBnd: opsU64(0), nnp: 1,
			root: "/",
		})
		opsFDsConfined(t, "local", pids["local"], spool)
		// local: mail_owner's uid, keeping only CAP_SETUID and
		// CAP_SETGID (to write as each mailbox owner), no groups. Not root:
		// it owns no root file, so root's 0600/0640 files (TLS keys, the
		// passwd-file, /etc/shadow) are closed to it. Without
		// no_new_privs: the commands it runs as users may run sendmail,
		// whose postern-drop is setgid (privsep.Spec.AllowNewPrivs).
		opsCheckProc(t, "local", pids["local"], opsPrivWant{
			uid: pUID, gid: pGID, groups: nil,
			capEff: opsCapSetuidSetgid, capPrm: opsCapSetuidSetgid, capBnd: opsU64(opsCapSetuidSetgid), nnp: 0,
			root: "/",
		})
	})

	t.Run("master", func(t *testing.T) {
		self := opsSelfStatus(t)
		mp := in.MasterPid()
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", mp)); filepath.Base(exe) != "master" {
			t.Errorf("pid %d is %q, not master", mp, exe)
		}
		opsCheckProc(t, "master", mp, opsPrivWant{
			uid: 0, gid: 0, groups: append(append([]int{}, self.Groups...), 0),
			capEff: self.CapEff, capPrm: self.CapPrm, capBnd: opsU64(self.CapBnd), nnp: -1,
			root: "/",
		})
		if self.CapEff == 0 {
			t.Errorf("the test itself has no capabilities; the master check means nothing")
		}
	})

	t.Run("mailbox", func(t *testing.T) {
		// The delivered file and the Maildir belong to the mailbox owner,
		// and nobody else may read the mail.
		md := in.Maildir("demo")
		for _, p := range []string{file, md, filepath.Join(md, "new"), filepath.Join(md, "cur"), filepath.Join(md, "tmp"), filepath.Dir(md)} {
			fi, err := os.Lstat(p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != vUID || int(st.Gid) != vGID {
				t.Errorf("%s is owned by %d:%d, want vmail %d:%d", p, st.Uid, st.Gid, vUID, vGID)
			}
			if p == file {
				if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want a regular file 0600", p, fi.Mode())
				}
			} else if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s has mode %v, want a directory closed to group and others", p, fi.Mode())
			}
		}
		// No file anywhere in the Maildir belongs to root or postern.
		filepath.WalkDir(in.VMail, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != vUID {
				t.Errorf("%s is owned by uid %d, want vmail (%d)", p, st.Uid, vUID)
			}
			return nil
		})
	})

	t.Run("smtpd-confined", func(t *testing.T) {
		// Path lookups through /proc/PID/root start at the daemon's own
		// root: what is not there cannot be opened by the daemon.
		marker := filepath.Join(in.Dir, "outside-the-spool")
		if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, prog := range []string{"smtpd", "cleanup", "qmgr"} {
			r := fmt.Sprintf("/proc/%d/root", pids[prog])
			for _, p := range []string{"/etc/passwd", marker, in.Etc + "/postern.conf", in.VMail} {
				if _, err := os.Lstat(r + p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s[%d] can reach %s (outside the spool): %v", prog, pids[prog], p, err)
				}
			}
			for _, p := range []string{"/incoming", "/private/cleanup", "/public/qmgr"} {
				if _, err := os.Lstat(r + p); err != nil {
					t.Errorf("%s[%d]: %s not found in its root: %v", prog, pids[prog], p, err)
				}
			}
		}
	})

	// Mail still flows after the inspection, and the daemons are the same
	// processes (the checks above did not look at a restarted one).
	opsDeliver(t, in, "other", "privilege-2")
	after := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local", "auth", "smtp", "lmtp", "pickup", "showq")
	for p, pid := range pids {
		if after[p] != pid {
			t.Errorf("%s restarted during the test: pid %d, then %d", p, pid, after[p])
		}
	}
}

// TestPrivilegeUnprivileged: without root (here: master started as
// posterntest) every daemon runs as that user, without chroot, and holds
// no capability.
func TestPrivilegeUnprivileged(t *testing.T) {
	in := Start(t, Options{Unprivileged: true})
	uid, gid := os.Getuid(), os.Getgid()
	if isRoot() {
		uid, gid = lookupIDs(t, "posterntest")
	}
	file := opsDeliver(t, in, "demo", "unprivileged-1")
	pids := opsDaemonPids(t, in, "smtpd", "cleanup", "qmgr", "local")
	time.Sleep(200 * time.Millisecond)
	want := opsPrivWant{uid: uid, gid: gid, groups: []int{gid}, capEff: 0, capPrm: 0, nnp: 1, root: "/"}
	names := make([]string, 0, len(pids))
	for p := range pids {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		w := want
		if p == "local" {
			w.nnp = 0 // see TestPrivilege
		}
		opsCheckProc(t, p, pids[p], w)
	}
	mw := want
	mw.nnp = -1 // master does not need no_new_privs
	opsCheckProc(t, "master", in.MasterPid(), mw)

	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: owner %d:%d mode %v, want %d:%d 0600", file, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}
	// The spool belongs to the user master runs as.
	for _, d := range []string{"incoming", "tmp", "private", "pid"} {
		fi, err := os.Stat(filepath.Join(in.Spool, d))
		if err != nil {
			t.Errorf("spool %s: %v", d, err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("spool %s owned by uid %d, want %d", d, st.Uid, uid)
		}
	}
}
