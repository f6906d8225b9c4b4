package postlogin

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/address"
	"postern/internal/authclient"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/passwd"
	"postern/internal/privsep"
	"postern/internal/route"
	"postern/internal/service"
)

// Environment of a session process.
const (
	envSession = "POSTERN_SESSION"
	envUser    = "POSTERN_USER"
	envMail    = "POSTERN_MAIL"
	envHome    = "POSTERN_HOME"
	envClient  = "POSTERN_CLIENT"
	envLocal   = "POSTERN_LOCAL"
	envTLS     = "POSTERN_TLS"
	envService = "POSTERN_SERVICE"
	envConfDir = "POSTERN_CONFIG_DIR"
	// envPending, set only for a handed-off client (its descriptor is
	// the stream), holds in base64 what the client pipelined behind its
	// login; the session reads it before the connection.
	envPending = "POSTERN_PENDING"
	envTag     = "POSTERN_TAG" // the IMAP login command's tag, on a handoff
)

// Descriptors of a session process.
const (
	sessionConnFD   = 3
	sessionConfigFD = 4
	// sessionLifeFD is the read end of a pipe whose write end only the
	// acceptor holds: EOF on it means the acceptor is gone (see lifeline).
	sessionLifeFD = 5
)

type acceptor struct {
	d       *service.Daemon
	auth    *authclient.Client
	route   *route.Resolver
	users   *passwd.DB
	program string
	// ownerUID is mail_owner's uid under the privilege separation (-1
	// when run by an ordinary user, where everything is that user).
	ownerUID int

	mu      sync.Mutex
	total   int
	perUser map[string]int // user + "\x00" + client IP
	limit   int
	userIP  int
	wg      sync.WaitGroup
	// spawn runs exec requests on one locked thread: Pdeathsig follows the
	// thread that forked the child, and this one never exits.
	spawnCh chan spawnReq

	// snap is the sealed memfd with the configuration snapshot that
	// every session gets: made once, as the snapshot never changes in
	// this process (a reload starts a new one). Sessions read it with
	// pread, so they share it without sharing a file offset.
	snapOnce sync.Once
	snap     *os.File
	snapErr  error
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// ServeAcceptor is the main loop of pop3d and imapd when master runs them
// as a session service. It never returns; sessions still running when
// master stops the service end when it exits (their lifeline pipe).
func ServeAcceptor(d *service.Daemon) {
	users, err := passwd.Load("/etc/passwd", "/etc/group")
	if err != nil {
		d.Fatalf("%v", err)
	}
	rt, err := route.New(d.Config, users)
	if err != nil {
		d.Fatalf("%v", err)
	}
	a := &acceptor{d: d, route: rt, users: users, program: d.Program, perUser: map[string]int{},
		limit: int(d.Config.Int("mail_session_limit")), userIP: int(d.Config.Int("mail_max_userip_connections")),
		spawnCh: make(chan spawnReq), ownerUID: -1}
	// private/ belongs to mail_owner: dial auth with that account's
	// filesystem ids, as local does.
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, ok := users.User(d.Config.Get("mail_owner"))
		if !ok {
			d.Fatalf("mail_owner %s: no such user", d.Config.Get("mail_owner"))
		}
		uid, gid = u.UID, u.GID
		a.ownerUID = u.UID
	}
	sock := filepath.Join(d.Config.Get("queue_directory"), "private", "auth")
	a.auth = &authclient.Client{Timeout: 30 * time.Second, Dial: func() (*ipc.Conn, error) {
		var c *ipc.Conn
		err := privsep.AsUser(uid, gid, func() error {
			var err error
			c, err = ipc.Dial(sock, 10*time.Second)
			return err
		})
		return c, err
	}}
	rt.SetUserDB(a.auth)
	go a.spawner()
	d.Drop(privsep.CapSetuid, privsep.CapSetgid)
	d.Serve(0, a.handle)
	// Drained (reload or stop): sessions under way go on until they end,
	// unless master asked us to quit.
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	// On a quit, exiting is what stops the sessions: each watches a pipe
	// whose write end dies with this process. The acceptor could not
	// signal them: they run as other users, and it holds no CAP_KILL.
	select {
	case <-done:
	case <-d.Context().Done():
	}
	os.Exit(0)
}

func (a *acceptor) spawner() {
	runtime.LockOSThread()
	for r := range a.spawnCh {
		r.done <- r.cmd.Start()
	}
}

// handle serves one login request from a login front end.
func (a *acceptor) handle(ctx context.Context, nc net.Conn) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return
	}
	// Close the ipc.Conn, not only the socket: it also closes descriptors
	// that arrived beyond the one request, which a subverted login
	// process could otherwise pile up here.
	c := ipc.NewConn(uc, maxFrame)
	defer c.Close()
	c.SetMaxFiles(1)
	req, files, err := c.Recv(30 * time.Second)
	if err != nil {
		log.Warnf("login request: %v", err)
		return
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	reply := func(status, code, user, reason string) {
		c.Send(ipc.NewMsg("status", status, "code", code, "user", user, "reason", reason))
	}
	handoff := req.Get("stream") == "client"
	if req.Get("op") != "login" || len(files) != 1 || handoff && (req.Get("tls") != "no" || len(req.Get("pending")) > maxPending || !validTag(req.Get("tag"))) {
		log.Warnf("bad login request: op=%q descriptors=%d", req.Get("op"), len(files))
		reply("error", CodeTemp, "", "Internal error")
		return
	}
	svc, user, client := req.Get("service"), req.Get("user"), req.Get("client_addr")
	if handoff {
		// The client's own socket: its peer is the address to count and
		// rate-limit, whatever the login process says.
		if fc, err := net.FileConn(files[0]); err == nil {
			if ra := fc.RemoteAddr(); ra != nil && ra.String() != "" {
				client = ra.String()
			}
			fc.Close()
		}
	}
	rip := client
	if h, _, err := net.SplitHostPort(client); err == nil {
		rip = h
	}
	tag := fmt.Sprintf("user=<%s> method=%s rip=%s", user, req.Get("mech"), rip)
	u, ok, reason, err := a.auth.Login(svc, user, req.Get("password"), client)
	if err != nil {
		log.Warnf("auth unavailable: %s: %v", tag, err)
		reply("error", CodeTemp, "", "Authentication temporarily unavailable")
		return
	}
	if !ok {
		log.Infof("auth failed: %s reason=%s", tag, reason)
		reply("fail", CodeAuth, "", "Authentication failed")
		return
	}
	mb, err := a.mailbox(u)
	if err != nil {
		log.Errorf("login %s: no usable mailbox: %v", tag, err)
		reply("error", CodeTemp, u.Name, "Mailbox unavailable")
		return
	}
	key := u.Name + "\x00" + rip
	a.mu.Lock()
	if a.total >= a.limit {
		a.mu.Unlock()
		log.Warnf("login %s refused: %d sessions running (mail_session_limit)", tag, a.limit)
		reply("error", CodeLimit, u.Name, "Too many sessions, try again later")
		return
	}
	if a.perUser[key] >= a.userIP {
		a.mu.Unlock()
		log.Warnf("login %s refused: %d sessions from this address (mail_max_userip_connections)", tag, a.userIP)
		reply("error", CodeLimit, u.Name, "Too many sessions from your address")
		return
	}
	a.total++
	a.perUser[key]++
	a.mu.Unlock()
	release := func() {
		a.mu.Lock()
		a.total--
		if a.perUser[key]--; a.perUser[key] <= 0 {
			delete(a.perUser, key)
		}
		a.mu.Unlock()
	}
	p, life, err := a.start(req, u, mb, files[0])
	if err != nil {
		release()
		log.Errorf("login %s: cannot start session: %v", tag, err)
		reply("error", CodeTemp, u.Name, "Cannot start session")
		return
	}
	log.Infof("login: %s lip=%s tls=%s mailbox=%s uid=%d session=%d", tag, req.Get("local_addr"), req.Get("tls"), mb.Path, mb.UID, p.Pid)
	reply("ok", "", u.Name, "")
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		st, err := p.Wait()
		life.Close()
		release()
		if err != nil {
			log.Errorf("session %d of <%s>: %v", p.Pid, u.Name, err)
		} else if !st.Success() {
			log.Warnf("session %d of <%s> ended: %s", p.Pid, u.Name, st)
		}
	}()
}

// mailbox finds where the user's mail is, as local delivers it.
func (a *acceptor) mailbox(u authclient.User) (route.Mailbox, error) {
	var mb route.Mailbox
	var err error
	if strings.Contains(u.Name, "@") {
		addr, perr := address.Parse(u.Name, true)
		if perr != nil {
			return mb, perr
		}
		switch a.route.Classify(addr) {
		case route.Virtual:
			mb, err = a.route.VirtualMailbox(addr)
		case route.Local:
			mb, err = a.route.LocalMailbox(addr.Local)
		default:
			mb, err = a.fromAuth(u)
		}
	} else if _, ok := a.users.User(u.Name); ok {
		mb, err = a.route.LocalMailbox(u.Name)
	} else {
		mb, err = a.fromAuth(u)
	}
	if err != nil {
		return mb, err
	}
	if !mb.Maildir {
		return mb, fmt.Errorf("%s is not a Maildir (POP3 and IMAP serve Maildir only)", mb.Path)
	}
	if mb.UID == 0 || mb.GID == 0 {
		return mb, fmt.Errorf("%s belongs to uid %d gid %d: sessions never run as root or group root", mb.Path, mb.UID, mb.GID)
	}
	if mb.UID == a.ownerUID {
		return mb, fmt.Errorf("%s belongs to mail_owner (uid %d): a session as it could read and forge the queue", mb.Path, mb.UID)
	}
	if first := int(a.d.Config.Int("mail_first_valid_uid")); mb.UID < first {
		return mb, fmt.Errorf("%s belongs to uid %d, below mail_first_valid_uid %d", mb.Path, mb.UID, first)
	}
	if first := int(a.d.Config.Int("mail_first_valid_gid")); mb.GID < first {
		return mb, fmt.Errorf("%s has gid %d, below mail_first_valid_gid %d", mb.Path, mb.GID, first)
	}
	return mb, nil
}

func (a *acceptor) fromAuth(u authclient.User) (route.Mailbox, error) {
	p := u.Mail
	if p == "" && u.Home != "" {
		p = filepath.Join(u.Home, "Maildir") + "/"
	}
	if p == "" || u.UID < 0 || u.GID < 0 {
		return route.Mailbox{}, fmt.Errorf("the user database gives no mailbox, uid and gid for %s", u.Name)
	}
	return route.Mailbox{Path: p, Maildir: strings.HasSuffix(p, "/"), UID: u.UID, GID: u.GID, User: u.Name}, nil
}

// start execs the session: the same program, as the mailbox owner.
func (a *acceptor) start(req *ipc.Msg, u authclient.User, mb route.Mailbox, stream *os.File) (*os.Process, *os.File, error) {
	cfg := a.d.Config
	path := filepath.Join(cfg.Get("daemon_directory"), a.program)
	snap, err := a.snapshot()
	if err != nil {
		return nil, nil, err
	}
	home := u.Home
	if home == "" {
		home = strings.TrimSuffix(mb.Path, "/")
	}
	cmd := exec.Command(path, "-session", "-n", a.d.Service.Name, "-t", a.d.Service.Type)
	cmd.Env = []string{
		"PATH=/usr/bin:/bin",
		envSession + "=1",
		envUser + "=" + u.Name,
		envMail + "=" + mb.Path,
		envHome + "=" + home,
		envClient + "=" + req.Get("client_addr"),
		envLocal + "=" + req.Get("local_addr"),
		envTLS + "=" + req.Get("tls"),
		envService + "=" + req.Get("service"),
		envConfDir + "=" + a.d.ConfigDir,
	}
	if req.Get("stream") == "client" {
		cmd.Env = append(cmd.Env, envPending+"="+base64.StdEncoding.EncodeToString([]byte(req.Get("pending"))),
			envTag+"="+req.Get("tag"))
	}
	cmd.Stderr = os.Stderr // master's log pipe
	// The lifeline: the session exits when the acceptor is gone. Pdeathsig
	// alone does not do it: the kernel checks the dying parent's right to
	// signal the child, and the acceptor (mail_owner, no CAP_KILL) has none
	// over a session running as another user.
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	defer lifeR.Close()
	cmd.ExtraFiles = []*os.File{stream, snap, lifeR}
	cmd.Dir = "/"
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if os.Geteuid() == 0 || privsep.CanSwitch() {
		attr.Credential = &syscall.Credential{Uid: uint32(mb.UID), Gid: uint32(mb.GID), Groups: []uint32{}}
	} else if mb.UID != os.Getuid() {
		lifeW.Close()
		return nil, nil, fmt.Errorf("mailbox %s belongs to uid %d; unprivileged, this service runs only sessions of uid %d", mb.Path, mb.UID, os.Getuid())
	}
	cmd.SysProcAttr = attr
	done := make(chan error, 1)
	a.spawnCh <- spawnReq{cmd, done}
	if err := <-done; err != nil {
		lifeW.Close()
		return nil, nil, fmt.Errorf("exec %s: %w", path, err)
	}
	return cmd.Process, lifeW, nil
}

// snapshot returns the configuration memfd for a session.
func (a *acceptor) snapshot() (*os.File, error) {
	a.snapOnce.Do(func() { a.snap, a.snapErr = memFile(a.d.Snapshot) })
	return a.snap, a.snapErr
}

// memFile is a sealed in-memory file holding data, for the session to read
// its configuration from.
func memFile(data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("config", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "config")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	// The seals are what makes sharing one memfd among sessions of
	// different users safe: none can change what the next one reads.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd seals: %w", err)
	}
	return f, nil
}

func socketpair() (mine, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "session"), os.NewFile(uintptr(fds[1]), "session"), nil
}

// validTag accepts an IMAP tag as a login front end passes it on: at most
// 64 printable ASCII characters, none that could end or split a line.
func validTag(tag string) bool {
	if len(tag) > 64 {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
