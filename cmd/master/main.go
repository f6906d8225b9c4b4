// Command master is Postern's supervisor (DESIGN.md §1, §2): the one
// process that stays root. It reads the configuration, creates the spool
// tree with its owners and modes, takes the queue directory's lock, binds
// every listening socket, and spawns and supervises every daemon.
//
// Limits and failure modes:
//   - One master per queue directory: pid/master.lock is held with flock
//     for the master's whole life; a second master exits at once.
//   - A configuration that does not load is refused at start (exit 1,
//     every problem as file:line) and on reload (the old one keeps running).
//   - A daemon that has not reported ready readyLimit (10 s) after its
//     start is hung: master logs its threads' states and its goroutine
//     stacks (SIGQUIT), kills it and restarts it. A start fails when a
//     daemon of the first generation exits before it is ready, or when
//     one is not ready within startLimit (30 s).
//   - A daemon that exits when it was not asked to is logged with its
//     status and restarted; one that keeps dying within
//     crashWindow is restarted after a growing delay (1 s doubling to
//     throttleMax), so a crash loop does not burn the machine.
//   - SIGHUP reloads: new daemons start on the same listening sockets and
//     the old ones finish what they are doing, so no accepted connection
//     and no accepted message is dropped.
//   - SIGTERM and SIGINT stop: every daemon is asked to stop, and after
//     master_stop_timeout the rest are killed.
//   - Every daemon gets Pdeathsig, so when master dies (even kill -9) they
//     die with it and a new master can bind the same ports.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/config"
	plog "postern/internal/log"
	"postern/internal/queue"
	"postern/internal/service"
)

const (
	crashWindow = 10 * time.Second
	throttleMax = 60 * time.Second
	// readyLimit: a daemon that has not reported ready this long after
	// its start is hung and is restarted (watchReady).
	readyLimit = 10 * time.Second
	// startLimit: how long a start waits for every daemon of the first
	// generation, time for one hung daemon to be restarted included.
	startLimit = 30 * time.Second
)

type master struct {
	dir      string
	cfg      *config.Config
	snap     []byte // the configuration in force, handed to every daemon
	sink     *plog.Sink
	uid, gid int // mail_owner
	dropGID  int // setgid_group
	root     bool
	spool    string

	mu       sync.Mutex
	services map[string]*svc // key: type/name
	procs    map[*proc]bool  // every running process, old generations too
	stopping bool
	wg       sync.WaitGroup // every running process

	spawnCh chan spawnReq
}

type svc struct {
	conf      config.Service
	key       string
	listeners []*os.File
	addrs     []string
	cur       *proc
	delay     time.Duration
	removed   bool
}

type proc struct {
	svc     *svc
	cmd     *exec.Cmd
	ctl     *os.File
	started time.Time
	stopped bool          // asked to stop: its exit is expected
	ready   chan struct{} // closed when the daemon says it is ready
	exited  chan struct{} // closed when it has exited
	logDone chan struct{} // closed when its log pipe has reached end of file
	next    *svc          // a singleton service waiting for this one to exit
	hung    bool          // killed by watchReady: not ready within readyLimit
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func main() {
	dir := flag.String("c", config.DefaultConfigDirectory, "configuration directory")
	detach := flag.Bool("d", false, "detached (started by 'postern start'): log to syslog or maillog_file, report readiness on stdout")
	flag.Parse()

	cfg, snap, err := config.LoadSnapshot(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "postern/master: fatal: configuration refused:\n%v\n", err)
		os.Exit(1)
	}
	m := &master{dir: *dir, cfg: cfg, snap: snap, root: os.Geteuid() == 0, services: map[string]*svc{}, procs: map[*proc]bool{}, spawnCh: make(chan spawnReq)}
	if err := m.openSink(*detach); err != nil {
		fmt.Fprintf(os.Stderr, "postern/master: fatal: %v\n", err)
		os.Exit(1)
	}
	if err := m.run(*detach); err != nil {
		m.logf("fatal: %v", err)
		os.Exit(1)
	}
}

func (m *master) logf(format string, args ...any) {
	m.sink.Write("postern/master", os.Getpid(), fmt.Sprintf(format, args...))
}

func (m *master) openSink(detach bool) error {
	if f := m.cfg.Get("maillog_file"); f != "" {
		s, err := plog.NewFileSink(f)
		if err != nil {
			return err
		}
		m.sink = s
		return nil
	}
	if detach {
		s, err := plog.NewSyslogSink()
		if err != nil {
			// Detached, stderr goes nowhere: refuse rather than lose logs.
			return fmt.Errorf("no log destination: %v; start a syslog daemon or set maillog_file in %s/postern.conf", err, m.dir)
		}
		m.sink = s
		return nil
	}
	m.sink = plog.NewStreamSink(os.Stderr)
	return nil
}

func (m *master) run(detach bool) error {
	m.spool = m.cfg.Get("queue_directory")
	if !filepath.IsAbs(m.spool) {
		return fmt.Errorf("queue_directory %q must be an absolute path", m.spool)
	}
	if err := m.resolveIDs(); err != nil {
		return err
	}
	if !m.root {
		m.logf("warning: running as uid %d, not root: every daemon runs as this user, without chroot or privilege separation", os.Getuid())
	}
	if err := m.makeSpool(); err != nil {
		return err
	}
	lock, err := m.lock()
	if err != nil {
		return err
	}
	defer lock.Close()

	if m.root {
		if n := setProcessSlack(); n != 0 {
			m.logf("warning: timer slack: %d of master's threads keep the default", n)
		}
	}
	go m.spawner()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	signal.Ignore(syscall.SIGPIPE)

	if err := m.apply(m.cfg, m.snap); err != nil {
		m.stopAll()
		return err
	}
	if err := m.awaitReady(startLimit); err != nil {
		m.stopAll()
		return err
	}
	m.logf("daemon started -- version %s, configuration %s", version, m.dir)
	if detach {
		os.Stdout.WriteString("ready\n")
		null, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		unix.Dup2(int(null.Fd()), 1)
		unix.Dup2(int(null.Fd()), 2)
	}

	for s := range sigs {
		switch s {
		case syscall.SIGHUP:
			m.reload()
		case syscall.SIGUSR1:
			if err := m.sink.Reopen(); err != nil {
				m.logf("error: %v", err)
			}
		default:
			m.logf("terminating on signal %s", s)
			m.stopAll()
			os.Remove(filepath.Join(m.spool, "pid", "master.pid"))
			return nil
		}
	}
	return nil
}

var version = "0.1"

func (m *master) resolveIDs() error {
	if !m.root {
		m.uid, m.gid, m.dropGID = os.Getuid(), os.Getgid(), os.Getgid()
		return nil
	}
	owner := m.cfg.Get("mail_owner")
	u, err := user.Lookup(owner)
	if err != nil {
		return fmt.Errorf("mail_owner %q: no such user (create it: useradd --system --no-create-home --shell /usr/sbin/nologin %s)", owner, owner)
	}
	m.uid, _ = strconv.Atoi(u.Uid)
	m.gid, _ = strconv.Atoi(u.Gid)
	if m.uid == 0 {
		return fmt.Errorf("mail_owner %q has uid 0: it must be an unprivileged account of its own", owner)
	}
	grp := m.cfg.Get("setgid_group")
	g, err := user.LookupGroup(grp)
	if err != nil {
		return fmt.Errorf("setgid_group %q: no such group (create it: groupadd --system %s)", grp, grp)
	}
	m.dropGID, _ = strconv.Atoi(g.Gid)
	if m.dropGID == m.gid {
		return fmt.Errorf("setgid_group %q must not be the primary group of mail_owner %q", grp, owner)
	}
	return nil
}

// makeSpool creates the queue directory tree (DESIGN.md §3) and repairs
// owners and modes that drifted, with a warning for each repair.
func (m *master) makeSpool() error {
	if err := os.MkdirAll(m.spool, 0o755); err != nil {
		return fmt.Errorf("queue_directory %s: %w", m.spool, err)
	}
	if err := m.ensure(m.spool, 0o755, m.rootUID(), m.rootGID()); err != nil {
		return err
	}
	for _, d := range queue.Dirs {
		uid, gid := m.uid, m.gid
		switch d.Owner {
		case "root":
			uid, gid = m.rootUID(), m.rootGID()
		case "owner:setgid":
			gid = m.dropGID
		}
		p := filepath.Join(m.spool, d.Name)
		err := os.Mkdir(p, d.Mode)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("queue_directory: %w", err)
		}
		if err == nil && m.root {
			// New: set the owner quietly; drift in an old tree gets a warning.
			if err := os.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("queue_directory: chown %s: %w", p, err)
			}
		}
		if err := m.ensure(p, d.Mode, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func (m *master) rootUID() int {
	if m.root {
		return 0
	}
	return os.Getuid()
}

func (m *master) rootGID() int {
	if m.root {
		return 0
	}
	return os.Getgid()
}

func (m *master) ensure(p string, mode os.FileMode, uid, gid int) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("queue_directory: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 || !fi.IsDir() {
		return fmt.Errorf("queue_directory: %s is not a directory (a symlink or a file); refusing", p)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if m.root {
			if err := os.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("queue_directory: chown %s: %w", p, err)
			}
			m.logf("warning: %s: owner was %d:%d, set to %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
	want := mode&os.ModePerm | mode&os.ModeSticky | mode&os.ModeSetgid
	if fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid) != want {
		if err := os.Chmod(p, want); err != nil {
			return fmt.Errorf("queue_directory: chmod %s: %w", p, err)
		}
	}
	return nil
}

func (m *master) lock() (*os.File, error) {
	lp := filepath.Join(m.spool, "pid", "master.lock")
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lp, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(filepath.Join(m.spool, "pid", "master.pid"))
		f.Close()
		return nil, fmt.Errorf("another master is running on %s (pid %s)", m.spool, strings.TrimSpace(string(pid)))
	}
	pp := filepath.Join(m.spool, "pid", "master.pid")
	tmp := pp + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := os.Rename(tmp, pp); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return f, nil
}

// spawner starts every process from one locked OS thread: Pdeathsig is
// tied to the thread that forked the child, and this one never exits.
func (m *master) spawner() {
	runtime.LockOSThread()
	if err := setThreadSlack(); err != nil {
		m.logf("warning: timer slack of the daemons: %v", err)
	}
	for r := range m.spawnCh {
		r.done <- r.cmd.Start()
	}
}

// apply makes the running services match cfg: new listeners for new or
// changed services, a new generation of daemons for every service, and a
// graceful stop for the previous generation and for removed services.
func (m *master) apply(cfg *config.Config, snap []byte) error {
	next := map[string]*svc{}
	var opened []*os.File
	fail := func(err error) error {
		for _, f := range opened {
			f.Close()
		}
		return err
	}
	for _, sc := range cfg.Services() {
		key := sc.Type + "/" + sc.Name
		addrs, err := sc.ListenAddr(cfg)
		if err != nil {
			return fail(fmt.Errorf("%s:%d: service %s: %w", sc.File, sc.Line, sc.Name, err))
		}
		s := &svc{conf: sc, key: key, addrs: addrs}
		if old := m.services[key]; old != nil && sameAddrs(old.addrs, addrs) {
			s.listeners = old.listeners
		} else {
			for _, a := range addrs {
				f, err := m.listen(sc, a)
				if err != nil {
					return fail(fmt.Errorf("%s:%d: service %s: %w", sc.File, sc.Line, sc.Name, err))
				}
				opened = append(opened, f)
				s.listeners = append(s.listeners, f)
			}
		}
		next[key] = s
	}
	m.mu.Lock()
	old := m.services
	m.services = next
	m.cfg = cfg
	m.snap = snap
	m.mu.Unlock()
	// Successors that the exit of their predecessor starts (wait), not
	// the loop below. Not a field read back later: the predecessor may
	// exit, and its wait start the successor, before that loop runs.
	handedOver := map[*svc]bool{}
	for key, o := range old {
		m.mu.Lock()
		o.removed = true
		if o.cur != nil {
			m.askStop(o.cur, false)
			// A singleton (maxproc 1, qmgr) must never run twice: its
			// successor starts when it has exited.
			if n := next[key]; n != nil && n.conf.MaxProc == 1 {
				o.cur.next = n
				handedOver[n] = true
			}
		}
		m.mu.Unlock()
		if n := next[key]; n == nil || !sameFiles(n.listeners, o.listeners) {
			for _, f := range o.listeners {
				f.Close()
			}
		}
	}
	for _, s := range next {
		if !handedOver[s] {
			m.start(s)
		}
	}
	return nil
}

// awaitReady waits until every daemon of the first generation has said
// it is ready, so that a start that cannot work fails at once and loudly
// instead of looping through throttled restarts. A daemon that hung at
// start (see watchReady) was restarted: its successor gets the rest of the
// time.
func (m *master) awaitReady(limit time.Duration) error {
	m.mu.Lock()
	var svcs []*svc
	for _, s := range m.services {
		if s.cur == nil {
			m.mu.Unlock()
			return fmt.Errorf("service %s (%s:%d) did not start; see the log above", s.conf.Name, s.conf.File, s.conf.Line)
		}
		svcs = append(svcs, s)
	}
	m.mu.Unlock()
	deadline := time.After(limit)
	for _, s := range svcs {
		var last *proc // the process of s last seen
		for ready := false; !ready; {
			m.mu.Lock()
			p := s.cur
			m.mu.Unlock()
			if p == nil || p == last {
				// Between a hung daemon's exit and its successor.
				select {
				case <-deadline:
					return fmt.Errorf("service %s: no process ready within %s; see the log above", s.conf.Name, limit)
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			select {
			case <-p.ready:
				ready = true
			case <-p.exited:
				m.mu.Lock()
				hung := p.hung
				m.mu.Unlock()
				if !hung {
					return fmt.Errorf("service %s: %s exited at start; see its log line above", s.conf.Name, p.cmd.Path)
				}
				last = p
			case <-deadline:
				return fmt.Errorf("service %s: %s pid %d did not report ready within %s; see the log above", s.conf.Name, p.cmd.Path, p.cmd.Process.Pid, limit)
			}
		}
	}
	return nil
}

// watchReady runs readyLimit after a daemon's start. A daemon that has
// not reported ready by then is hung (its start is a few reads of files
// and a privilege drop, milliseconds): master says what its threads are
// doing and has it write its stacks (explainLate), kills it, and the
// supervision restarts it like any daemon that died. One that a reload
// asked to stop meanwhile is killed too: hung, it would never exit, and a
// singleton's next generation (qmgr) waits for it. Only a stop of master
// leaves it to stopAll.
func (m *master) watchReady(p *proc) {
	m.mu.Lock()
	// Under m.mu, as readControl's close of ready: a ready byte comes
	// either before this check or is ignored.
	select {
	case <-p.ready:
		m.mu.Unlock()
		return
	case <-p.exited:
		m.mu.Unlock()
		return
	default:
	}
	if m.stopping {
		m.mu.Unlock()
		return
	}
	p.hung = true
	m.mu.Unlock()
	m.explainLate(p)
	p.cmd.Process.Kill()
}

// explainLate logs what a daemon that did not report ready in time is
// doing, since the cause of a hang at start cannot be seen once it is
// gone: the state of each of its threads (from /proc), then a Go
// goroutine dump, which SIGQUIT makes it write to its stderr, the log pipe.
func (m *master) explainLate(p *proc) {
	pid := p.cmd.Process.Pid
	m.logf("warning: service %s: process %s pid %d did not report ready within %s; killing it; its threads (id, state, kernel wait): %s",
		p.svc.conf.Name, p.cmd.Path, pid, readyLimit, threadStates(pid))
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.logDone:
	case <-time.After(3 * time.Second):
	}
}

// threadStates describes the threads of pid as "TID STATE WCHAN" items:
// the scheduler state (R running, S sleeping, D in the disk wait...) and
// the kernel function a sleeping thread waits in.
func threadStates(pid int) string {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range ents {
		st, _ := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		state := "?"
		// The command name in parentheses may hold spaces; the state
		// follows its last ')'.
		if i := strings.LastIndexByte(string(st), ')'); i >= 0 && i+2 < len(st) {
			state = string(st[i+2])
		}
		wchan, _ := os.ReadFile(filepath.Join(dir, e.Name(), "wchan"))
		w := strings.TrimSpace(string(wchan))
		if w == "" || w == "0" {
			w = "-"
		}
		out = append(out, e.Name()+" "+state+" "+w)
	}
	return strings.Join(out, ", ")
}

func sameAddrs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameFiles(a, b []*os.File) bool {
	return len(a) > 0 && len(a) == len(b) && a[0] == b[0]
}

// listen binds one address of a service. Unix sockets live in the spool
// (private/ or public/) and belong to mail_owner.
func (m *master) listen(sc config.Service, addr string) (*os.File, error) {
	switch sc.Type {
	case "inet":
		var l net.Listener
		var err error
		// A master that was just killed leaves children that die a moment
		// later (Pdeathsig); give their sockets that moment.
		for i := 0; i < 50; i++ {
			l, err = net.Listen("tcp", addr)
			if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		f, err := l.(*net.TCPListener).File()
		l.Close()
		return f, err
	case "unix":
		p := filepath.Join(m.spool, addr)
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", p)
		}
		os.Remove(p)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", p, err)
		}
		l.SetUnlinkOnClose(false)
		mode, gid := os.FileMode(0o600), m.gid
		if strings.HasPrefix(addr, "public/") {
			mode, gid = 0o660, m.dropGID
		}
		if err := os.Chmod(p, mode); err != nil {
			l.Close()
			return nil, fmt.Errorf("chmod %s: %w", p, err)
		}
		if m.root {
			if err := os.Lchown(p, m.uid, gid); err != nil {
				l.Close()
				return nil, fmt.Errorf("chown %s: %w", p, err)
			}
		}
		f, err := l.File()
		l.Close()
		return f, err
	}
	return nil, fmt.Errorf("service type %q has no listener", sc.Type)
}

// start spawns the daemon of s. Called with m.mu not held.
func (m *master) start(s *svc) {
	m.mu.Lock()
	if m.stopping || s.removed {
		m.mu.Unlock()
		return
	}
	cfg, snap := m.cfg, m.snap
	m.mu.Unlock()

	path := filepath.Join(cfg.Get("daemon_directory"), s.conf.Command)
	ctlMaster, ctlChild, err := socketpair()
	if err != nil {
		m.logf("error: service %s: control socket: %v", s.conf.Name, err)
		m.restartLater(s)
		return
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		ctlMaster.Close()
		ctlChild.Close()
		m.logf("error: service %s: log pipe: %v", s.conf.Name, err)
		m.restartLater(s)
		return
	}
	args := append([]string{"-c", m.dir, "-n", s.conf.Name, "-t", s.conf.Type}, s.conf.Args...)
	cmd := exec.Command(path, args...)
	snapFile, err := memFile("config", snap)
	if err != nil {
		ctlMaster.Close()
		ctlChild.Close()
		pr.Close()
		pw.Close()
		m.logf("error: service %s: configuration snapshot: %v", s.conf.Name, err)
		m.restartLater(s)
		return
	}
	defer snapFile.Close()
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		service.EnvListenFDs + "=" + strconv.Itoa(len(s.listeners)),
		service.EnvConfigFD + "=" + strconv.Itoa(service.ConfigFD),
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.ExtraFiles = append([]*os.File{ctlChild, snapFile}, s.listeners...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	done := make(chan error, 1)
	m.spawnCh <- spawnReq{cmd, done}
	err = <-done
	ctlChild.Close()
	pw.Close()
	if err != nil {
		ctlMaster.Close()
		pr.Close()
		m.logf("error: service %s: cannot run %s: %v", s.conf.Name, path, err)
		m.restartLater(s)
		return
	}
	p := &proc{svc: s, cmd: cmd, ctl: ctlMaster, started: time.Now(), ready: make(chan struct{}), exited: make(chan struct{}), logDone: make(chan struct{})}
	m.mu.Lock()
	s.cur = p
	m.procs[p] = true
	m.wg.Add(1)
	stopping := m.stopping || s.removed
	m.mu.Unlock()
	if stopping {
		// A stop or reload came while this one was being spawned.
		m.mu.Lock()
		m.askStop(p, m.stopping)
		m.mu.Unlock()
	}
	prog := programName(s.conf)
	go func() {
		m.relayLog(prog, cmd.Process.Pid, pr)
		close(p.logDone)
	}()
	go m.readControl(p)
	go m.wait(p)
	time.AfterFunc(readyLimit, func() { m.watchReady(p) })
}

// readControl notes the daemon's ready byte.
func (m *master) readControl(p *proc) {
	buf := make([]byte, 1)
	for {
		n, err := p.ctl.Read(buf)
		if n == 1 && buf[0] == service.ReadyByte {
			// A daemon already taken to be hung is being killed; its
			// late ready must not count.
			m.mu.Lock()
			if !p.hung {
				close(p.ready)
			}
			m.mu.Unlock()
			return
		}
		if err != nil {
			return
		}
	}
}

func programName(sc config.Service) string {
	name := strings.TrimPrefix(sc.Name, config.LoginPrefix)
	if name == sc.Command || sc.Type == "inet" && (strings.ContainsAny(name, ":.[") || isDigits(name) || name == "smtp") {
		return "postern/" + sc.Command
	}
	return "postern/" + name + "/" + sc.Command
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func (m *master) relayLog(prog string, pid int, r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, plog.MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			m.sink.Write(prog, pid, strings.TrimRight(string(line), "\n"))
		}
		if err == bufio.ErrBufferFull {
			// Over-long line: logged in pieces rather than dropped.
			continue
		}
		if err != nil {
			return
		}
	}
}

func (m *master) wait(p *proc) {
	defer m.wg.Done()
	err := p.cmd.Wait()
	close(p.exited)
	p.ctl.Close()
	path := p.cmd.Path
	pid := p.cmd.Process.Pid
	m.mu.Lock()
	delete(m.procs, p)
	expected := p.stopped || m.stopping
	s := p.svc
	if s.cur == p {
		s.cur = nil
	}
	if n := p.next; n != nil {
		go m.start(n)
	}
	if !expected || err != nil {
		// A daemon that was asked to stop exits 0; anything else is news.
		m.logf("warning: process %s pid %d %s", path, pid, exitText(err))
	}
	if expected {
		m.mu.Unlock()
		return
	}
	// A hung daemon counts as one that died at once, however long it
	// hung: one that hangs at every start is throttled too.
	if time.Since(p.started) > crashWindow && !p.hung {
		s.delay = 0
	} else if s.delay == 0 {
		s.delay = time.Second
	} else {
		s.delay = min(2*s.delay, throttleMax)
	}
	delay := s.delay
	m.mu.Unlock()
	if delay > 0 {
		if delay >= 4*time.Second {
			m.logf("warning: service %s: process %s dies repeatedly; throttling restart for %s", s.conf.Name, path, delay)
		}
		time.AfterFunc(delay, func() { m.start(s) })
		return
	}
	m.start(s)
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return "killed by signal " + strconv.Itoa(int(ws.Signal()))
			}
			return "exit status " + strconv.Itoa(ws.ExitStatus())
		}
	}
	return err.Error()
}

// restartLater retries a spawn that failed (fork, pipe, exec).
func (m *master) restartLater(s *svc) {
	m.mu.Lock()
	s.delay = min(max(2*s.delay, time.Second), throttleMax)
	d := s.delay
	m.mu.Unlock()
	time.AfterFunc(d, func() { m.start(s) })
}

// askStop asks a process to finish and exit: drain (a reload: finish what
// is under way) or quit (a stop: wind down now). Called with m.mu held.
func (m *master) askStop(p *proc, quit bool) {
	if p.stopped && !quit {
		return
	}
	p.stopped = true
	b := service.DrainByte
	if quit {
		b = service.QuitByte
	}
	p.ctl.Write([]byte{b})
}

func (m *master) reload() {
	cfg, snap, err := config.LoadSnapshot(m.dir)
	if err != nil {
		m.logf("error: reload refused, the running configuration stays: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	if cfg.Get("queue_directory") != m.spool {
		m.logf("error: reload refused: queue_directory changed from %s to %s; that needs a stop and a start", m.spool, cfg.Get("queue_directory"))
		return
	}
	if err := m.apply(cfg, snap); err != nil {
		m.logf("error: reload failed, the running configuration stays: %v", err)
		return
	}
	m.logf("reload -- version %s, configuration %s", version, m.dir)
}

func (m *master) stopAll() {
	m.mu.Lock()
	m.stopping = true
	for _, s := range m.services {
		s.removed = true
	}
	// Stop the producers first so that a message in flight can finish:
	// smtpd, then the rest.
	for p := range m.procs {
		if p.svc.conf.Type == "inet" {
			m.askStop(p, true)
		}
	}
	for p := range m.procs {
		m.askStop(p, true)
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(m.cfg.Duration("master_stop_timeout")):
		m.logf("warning: daemons still running after master_stop_timeout (%s); killing them", m.cfg.Duration("master_stop_timeout"))
		m.mu.Lock()
		for p := range m.procs {
			p.cmd.Process.Signal(syscall.SIGKILL)
		}
		m.mu.Unlock()
		<-done
	}
}

// memFile is a sealed in-memory file holding data, for a child to read.
func memFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL)
	return f, nil
}

func socketpair() (master, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control"), nil
}
