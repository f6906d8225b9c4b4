// Package service is the contract between master and the daemons it
// spawns: how a daemon finds its configuration, its listening sockets and
// its control channel, how it drops privilege, and how it stops.
//
// Master execs every daemon as root (or as the invoking user when master is
// not root) with these file descriptors:
//
//	0      /dev/null
//	1, 2   a pipe to master, which tags each line and logs it (DESIGN.md §8)
//	3      the control socket. Master writes 's' (drain: a reload; stop
//	       accepting, finish what is under way, exit) or 'q' (quit: a
//	       stop; also cancel the handlers' context so that sessions wind
//	       down now); end of file means master is gone and the daemon
//	       exits at once. The daemon writes 'r' once it has dropped
//	       privilege and is ready, so master knows a start worked.
//	4      the configuration snapshot (config.LoadSnapshot): the text of
//	       postern.conf and services.conf that master last loaded, so a
//	       daemon restarted while a broken edit sits on disk runs the
//	       configuration in force
//	5...   the listening sockets of the service, POSTERN_LISTEN_FDS of them
//
// and the arguments `-c CONFIG_DIR -n SERVICE_NAME -t TYPE`. The daemon
// loads the configuration itself, applies the service's -o overrides, opens
// what it needs while still privileged, and then calls Drop before it
// accepts a connection. A drain closes the listeners and waits for the
// handlers; handlers that wait on an idle internal connection use Next,
// which gives up when draining. A quit also cancels the context handed to
// connection handlers (each decides how to wind down: an SMTP session says
// 421 at its next command). Master kills whatever is still running after
// master_stop_timeout.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/privsep"
	"postern/internal/queue"
)

// Environment and descriptor layout shared with master.
const (
	EnvListenFDs       = "POSTERN_LISTEN_FDS"
	EnvConfigFD        = "POSTERN_CONFIG_FD"
	ControlFD          = 3
	ConfigFD           = 4
	FirstListenFD      = 5
	DrainByte     byte = 's'
	QuitByte      byte = 'q'
	ReadyByte     byte = 'r'
)

// Daemon is a running daemon's view of its service.
type Daemon struct {
	Program   string
	Config    *config.Config // with the service's -o overrides applied
	Service   config.Service
	Listeners []net.Listener
	// Snapshot is the configuration as master handed it over (or as read
	// from ConfigDir), for a process this daemon starts itself (a POP3 or
	// IMAP session) to run on the same configuration.
	Snapshot  []byte
	ConfigDir string
	// AllowNewPrivs: Drop leaves no_new_privs unset (local only; see
	// privsep.Spec).
	AllowNewPrivs bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	drain  chan struct{}
	// chrootEmpty: chroot into the spool's empty/ directory instead of
	// the spool (a daemon that needs no file after start).
	chrootEmpty bool
	// chrootLogin: chroot into the spool's login/ directory (login front ends).
	chrootLogin bool
	willChroot  bool
	drainOnce   sync.Once
	ctl         *os.File
}

// Init parses the arguments master gave, loads the configuration and
// collects the listening sockets. It exits with a fatal log line when any
// of that fails: a daemon without its configuration cannot do anything
// useful, and master will log and throttle the restart.
func Init(program string) *Daemon {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	dir := fs.String("c", config.DefaultConfigDirectory, "configuration directory")
	name := fs.String("n", program, "service name")
	typ := fs.String("t", "unix", "service type")
	if err := fs.Parse(os.Args[1:]); err != nil {
		log.Fatalf("%s: bad arguments: %v", program, err)
	}
	cfg, snap, err := loadConfig(*dir)
	if err != nil {
		log.Fatalf("%s: configuration: %v", program, err)
	}
	d := &Daemon{Program: program, Config: cfg, Snapshot: snap, ConfigDir: *dir}
	found := false
	for _, s := range cfg.Services() {
		if s.Name == *name && s.Type == *typ {
			d.Service, found = s, true
			break
		}
	}
	if !found {
		log.Fatalf("%s: service %s/%s is not in %s/services.conf", program, *name, *typ, *dir)
	}
	d.willChroot = d.Service.Chroot && os.Geteuid() == 0
	if len(d.Service.Options) > 0 {
		c, err := cfg.WithOverrides(d.Service.Options)
		if err != nil {
			log.Fatalf("%s: %s:%d: service %s: %v", program, d.Service.File, d.Service.Line, *name, err)
		}
		d.Config = c
	}
	n, _ := strconv.Atoi(os.Getenv(EnvListenFDs))
	for i := 0; i < n; i++ {
		f := os.NewFile(uintptr(FirstListenFD+i), "listener")
		l, err := net.FileListener(f)
		if err != nil {
			log.Fatalf("%s: listening socket %d: %v", program, i, err)
		}
		f.Close()
		d.Listeners = append(d.Listeners, l)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.drain = make(chan struct{})
	d.ctl = os.NewFile(ControlFD, "control")
	// Terminal signals belong to master; it stops us through the control
	// socket. SIGTERM from an administrator means the same as a stop.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() { <-term; d.Quit() }()
	go d.watchControl()
	return d
}

// loadConfig reads the snapshot master handed over, or the files when the
// daemon was started by hand.
func loadConfig(dir string) (*config.Config, []byte, error) {
	if os.Getenv(EnvConfigFD) == "" {
		return config.LoadSnapshot(dir)
	}
	f := os.NewFile(ConfigFD, "config")
	defer f.Close()
	snap, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, 64<<20), 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	cfg, err := config.FromSnapshot(dir, snap)
	return cfg, snap, err
}

func (d *Daemon) watchControl() {
	if d.ctl == nil {
		return
	}
	buf := make([]byte, 1)
	for {
		n, err := d.ctl.Read(buf)
		if n == 1 {
			switch buf[0] {
			case DrainByte:
				d.Stop()
			case QuitByte:
				d.Quit()
			}
			continue
		}
		if err == io.EOF || err != nil {
			// Master is gone; Pdeathsig normally got here first.
			os.Exit(0)
		}
	}
}

// Drop gives up privilege as the service's columns say (DESIGN.md §2):
// unprivileged services become mail_owner; chrooted ones are confined to
// the queue directory; everything else keeps only keepCaps and runs in the
// queue directory. Exits on failure.
func (d *Daemon) Drop(keepCaps ...int) {
	spool := d.Config.Get("queue_directory")
	spec := privsep.Spec{Dir: spool, KeepCaps: keepCaps, AllowNewPrivs: d.AllowNewPrivs}
	// A daemon that keeps capabilities (local) still leaves root: it runs
	// as mail_owner, so it owns no root file.
	if d.Service.Unpriv || len(keepCaps) > 0 {
		spec.User = d.Config.Get("mail_owner")
	}
	if d.Service.Chroot {
		spec.Chroot = spool
		switch {
		case d.chrootEmpty:
			spec.Chroot = filepath.Join(spool, queue.Empty)
		case d.chrootLogin:
			spec.Chroot = filepath.Join(spool, queue.Login)
		}
	}
	if _, err := privsep.Drop(spec); err != nil {
		log.Fatalf("%s: %v", d.Program, err)
	}
	if d.ctl != nil {
		d.ctl.Write([]byte{ReadyByte})
	}
}

// DropEmpty is Drop for a daemon that needs nothing on disk after start:
// when chrooted, it is confined to the spool's empty/ directory.
func (d *Daemon) DropEmpty(keepCaps ...int) {
	d.chrootEmpty = true
	d.Drop(keepCaps...)
}

// DropLogin is Drop for a login front end (pop3-login, imap-login): when
// chrooted, it is confined to the spool's login/ directory, which holds
// only the sockets of the session services.
func (d *Daemon) DropLogin() {
	d.chrootLogin = true
	d.Drop()
}

// Chrooted reports whether Drop confines (or has confined) the daemon to
// a chroot: the service asks for one and master started it as root.
func (d *Daemon) Chrooted() bool { return d.willChroot }

// Context is cancelled when master asks the daemon to quit.
func (d *Daemon) Context() context.Context { return d.ctx }

// Draining is closed when the daemon should take no new work.
func (d *Daemon) Draining() <-chan struct{} { return d.drain }

// Stop starts a drain: the listeners close, work under way goes on.
func (d *Daemon) Stop() {
	d.drainOnce.Do(func() {
		close(d.drain)
		for _, l := range d.Listeners {
			l.Close()
		}
	})
}

// Quit drains and cancels the handlers' context.
func (d *Daemon) Quit() {
	d.Stop()
	d.cancel()
}

// Next waits for the next request on an internal connection. It returns
// io.EOF when the daemon is draining and the connection is idle, and an
// error wrapping os.ErrDeadlineExceeded after idle (0: no limit) without
// a request.
func (d *Daemon) Next(c *ipc.Conn, idle time.Duration) (*ipc.Msg, []*os.File, error) {
	start := time.Now()
	for {
		m, files, err := c.Recv(time.Second)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return m, files, err
		}
		select {
		case <-d.drain:
			return nil, nil, io.EOF
		default:
		}
		if idle > 0 && time.Since(start) > idle {
			return nil, nil, err
		}
	}
}

// Serve accepts connections on every listener, at most limit at a time
// (0 = no limit), and runs handle for each in its own goroutine. It returns
// after a drain, once every handler has returned.
func (d *Daemon) Serve(limit int, handle func(ctx context.Context, c net.Conn)) {
	var sem chan struct{}
	if limit > 0 {
		sem = make(chan struct{}, limit)
	}
	var accepters sync.WaitGroup
	for _, l := range d.Listeners {
		accepters.Add(1)
		go func(l net.Listener) {
			defer accepters.Done()
			for {
				if sem != nil {
					select {
					case sem <- struct{}{}:
					case <-d.drain:
						return
					}
				}
				c, err := l.Accept()
				if err != nil {
					if sem != nil {
						<-sem
					}
					select {
					case <-d.drain:
						return
					default:
					}
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue
					}
					// EMFILE and friends: say so, and do not spin.
					log.Errorf("accept on %s: %v", l.Addr(), err)
					select {
					case <-d.drain:
						return
					case <-time.After(100 * time.Millisecond):
					}
					continue
				}
				d.wg.Add(1)
				go func() {
					defer d.wg.Done()
					defer func() {
						if sem != nil {
							<-sem
						}
					}()
					handle(d.ctx, c)
				}()
			}
		}(l)
	}
	accepters.Wait()
	d.wg.Wait()
}

// Fatalf is log.Fatalf with the program name, for start-up failures.
func (d *Daemon) Fatalf(format string, args ...any) {
	log.Fatalf("%s: %s", d.Program, fmt.Sprintf(format, args...))
}

// ServeRequests serves an internal request/response protocol (qmgr to a
// delivery agent): every frame on every connection goes to handle, whose
// answer is sent back; a nil answer closes the connection (a request that
// makes no sense). Descriptors that came with a request are closed after
// handle returns. Frames are at most maxFrame bytes.
func (d *Daemon) ServeRequests(limit, maxFrame int, handle func(ctx context.Context, req *ipc.Msg, files []*os.File) *ipc.Msg) {
	d.Serve(limit, func(ctx context.Context, nc net.Conn) {
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			return
		}
		c := ipc.NewConn(uc, maxFrame)
		defer c.Close()
		for {
			req, files, err := d.Next(c, 0)
			if err != nil {
				closeFiles(files)
				if !errors.Is(err, io.EOF) {
					log.Warnf("read request: %v", err)
				}
				return
			}
			resp := handle(ctx, req, files)
			closeFiles(files)
			if resp == nil {
				return
			}
			if err := c.Send(resp); err != nil {
				log.Warnf("answer: %v", err)
				return
			}
		}
	})
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// LimitProcs sets how many threads run Go code at once (GOMAXPROCS) from
// daemon_gomaxprocs; 0 (the default) means a quarter of the CPUs, at
// least one. A message passes through four or five daemons that are busy
// at the same time, so each needs only its share of the CPUs; with one P
// per CPU each process instead wakes idle threads for every goroutine
// hand-off (futex, sysmon polling), which on a small machine cost about a
// fifth of the CPU per message in the bench. local does not call it: it
// locks a thread for every delivery.
func (d *Daemon) LimitProcs() {
	n := int(d.Config.Int("daemon_gomaxprocs"))
	if n <= 0 {
		n = max(1, runtime.NumCPU()/4)
	}
	runtime.GOMAXPROCS(n)
}
