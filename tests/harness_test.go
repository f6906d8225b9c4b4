// Package tests holds the end-to-end tests: each starts a whole Postern
// (master and every daemon, real sockets, a real spool in a temporary
// directory) and speaks to it with real clients. As root (CI) the daemons
// run with the full privilege separation and real uids; the harness
// creates the users it needs (postern, vmail, group postdrop, and
// posterntest for the unprivileged run).
package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postern/internal/dnstest"
)

// binDir holds the binaries built once for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postern-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../cmd/...")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// isRoot says whether the privilege-separated configuration can run.
func isRoot() bool { return os.Geteuid() == 0 }

var usersOnce sync.Once

// ensureUsers creates the accounts a root run needs, as an administrator
// would (useradd/groupadd from Debian's passwd package).
func ensureUsers(t testing.TB) {
	t.Helper()
	if !isRoot() {
		return
	}
	usersOnce.Do(func() {
		run := func(args ...string) {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
		if _, err := user.LookupGroup("postdrop"); err != nil {
			run("groupadd", "--system", "postdrop")
		}
		for _, u := range []string{"postern", "vmail", "posterntest"} {
			if _, err := user.Lookup(u); err != nil {
				run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", u)
			}
		}
	})
}

func lookupIDs(t testing.TB, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// Options shape one Postern instance.
type Options struct {
	// Unprivileged runs master as the user posterntest (root only: the
	// harness switches to that user). Otherwise master runs as the test
	// process's user (root in CI: full privilege separation).
	Unprivileged bool
	// Settings are extra postern.conf assignments, "name = value".
	Settings []string
	// Aliases is the content of the aliases file (aliases(5) format).
	Aliases string
	// Mailboxes are extra virtual_mailbox_maps lines.
	Mailboxes []string
	// Submission adds TLS (a self-signed certificate for 127.0.0.1 and
	// mx.postern.test), the auth daemon with a passwd-file (Users), and
	// two submission services: STARTTLS+AUTH on SubmissionAddr and
	// implicit TLS on SubmissionsAddr, with Postfix's usual -o options.
	Submission bool
	// Users are passwd-file users: address -> password. Default (with
	// Submission): demo@example.test/demo-secret, other@example.test/other-secret.
	Users map[string]string
	// MailAccess implies Submission and adds the reading-mail services:
	// pop3 (STLS) on POP3Addr, pop3s on POP3SAddr, imap (STARTTLS) on
	// IMAPAddr, imaps on IMAPSAddr, and the session services login/pop3d
	// and login/imapd.
	MailAccess bool
	// Services are extra services.conf lines.
	Services []string
	// HangExpected: a daemon of this instance is meant to hang at start
	// (TestOpsHungDaemon). Otherwise a hang that master mended by a
	// restart has its whole log shown, so that its cause can be found.
	HangExpected bool
	// DNS is the instance's resolver (dns_servers): no query ever leaves
	// loopback. nil: a fresh dnstest server where remote.example answers
	// SERVFAIL, so mail for it waits in the queue.
	DNS *dnstest.Server
}

// Instance is one running Postern.
type Instance struct {
	t     testing.TB
	Dir   string // everything lives below it
	Etc   string
	Spool string
	VMail string
	Port  int
	Addr  string // 127.0.0.1:Port
	// With Options.Submission:
	SubmissionAddr  string // STARTTLS, AUTH required
	SubmissionsAddr string // implicit TLS (RFC 8314)
	// With Options.MailAccess:
	POP3Addr, POP3SAddr, IMAPAddr, IMAPSAddr string
	DNS                                      *dnstest.Server
	CertFile                                 string
	uid, gid                                 int // the owner of mailboxes (vmail, or the unprivileged user)
	opts                                     Options

	mu   sync.Mutex
	logs bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

// FreePort finds a TCP port on 127.0.0.1 that is free now.
// A port is never handed out twice in one test run, so that two services
// of one instance (or two instances) cannot be given the same one.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsGiven[p] {
			portsGiven[p] = true
			return p
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// Start configures and starts a Postern with the demo layout of make run:
// virtual domain example.test with demo@ and other@, local domain
// localhost, SMTP on a free port of 127.0.0.1. It is stopped at the end of
// the test.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	ensureUsers(t)
	dir, err := os.MkdirTemp("", "postern-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	in := &Instance{t: t, Dir: dir, Etc: filepath.Join(dir, "etc"), Spool: filepath.Join(dir, "spool"), VMail: filepath.Join(dir, "vmail"), opts: o}
	in.Port = FreePort(t)
	in.Addr = fmt.Sprintf("127.0.0.1:%d", in.Port)
	in.DNS = o.DNS
	if in.DNS == nil {
		in.DNS = dnstest.Start(t)
		in.DNS.Fail("remote.example", 2) // SERVFAIL: a temporary failure
	}
	for _, d := range []string{in.Etc, in.VMail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in.uid, in.gid = os.Getuid(), os.Getgid()
	if isRoot() {
		in.uid, in.gid = lookupIDs(t, "vmail")
		if o.Unprivileged {
			in.uid, in.gid = lookupIDs(t, "posterntest")
		}
	}
	in.postern("init")
	mb := append([]string{"demo@example.test example.test/demo/", "other@example.test example.test/other/"}, o.Mailboxes...)
	in.write("vmailbox", strings.Join(mb, "\n")+"\n")
	aliases := o.Aliases
	if aliases == "" {
		aliases = "postmaster: demo@example.test\n"
	}
	in.write("aliases", aliases)
	settings := []string{
		"queue_directory = " + in.Spool,
		"daemon_directory = " + binDir,
		"myhostname = mx.postern.test",
		"mydestination = mx.postern.test, localhost",
		"alias_maps = texthash:" + filepath.Join(in.Etc, "aliases"),
		"virtual_mailbox_domains = example.test",
		"virtual_mailbox_base = " + in.VMail,
		"virtual_mailbox_maps = texthash:" + filepath.Join(in.Etc, "vmailbox"),
		fmt.Sprintf("virtual_uid_maps = static:%d", in.uid),
		fmt.Sprintf("virtual_gid_maps = static:%d", in.gid),
		"master_stop_timeout = 10s",
		"dns_servers = " + in.DNS.Addr,
	}
	in.postern(append([]string{"config", "-e"}, append(settings, o.Settings...)...)...)
	svc, err := os.ReadFile(filepath.Join(in.Etc, "services.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(svc), "\nsmtp ", fmt.Sprintf("\n%s ", in.Addr), 1)
	if s == string(svc) {
		t.Fatalf("services.conf has no smtp line:\n%s", svc)
	}
	if o.Submission || o.MailAccess {
		s += in.setupSubmission()
	}
	if o.MailAccess {
		s += in.setupMailAccess()
	}
	for _, l := range o.Services {
		s += l + "\n"
	}
	in.write("services.conf", s)
	if isRoot() {
		owner := in.uid
		if err := os.Chown(in.VMail, owner, in.gid); err != nil {
			t.Fatal(err)
		}
		if o.Unprivileged {
			os.Chown(dir, in.uid, in.gid)
			os.Chown(in.Etc, in.uid, in.gid)
		}
	}
	in.start()
	t.Cleanup(in.Stop)
	return in
}

// setupSubmission makes the certificate and the passwd-file, sets the TLS
// and auth settings, and returns the submission services' lines.
func (in *Instance) setupSubmission() string {
	in.t.Helper()
	in.postern("tls", "new-server-cert", "-o", in.Etc, "mx.postern.test", "127.0.0.1")
	in.CertFile = filepath.Join(in.Etc, "cert.pem")
	users := in.opts.Users
	if users == nil {
		users = map[string]string{"demo@example.test": "demo-secret", "other@example.test": "other-secret"}
	}
	var pw strings.Builder
	for u, p := range users {
		cmd := exec.Command(filepath.Join(binDir, "postern"), "-c", in.Etc, "passwd", "-s", "SHA512-CRYPT", u)
		cmd.Stdin = strings.NewReader(p + "\n")
		out, err := cmd.Output()
		if err != nil {
			in.t.Fatalf("postern passwd: %v", err)
		}
		line := strings.TrimSpace(string(out))
		// user:{SCHEME}hash -> add uid:gid::home
		fmt.Fprintf(&pw, "%s:%d:%d::%s::\n", line, in.uid, in.gid, filepath.Join(in.VMail, "example.test", strings.SplitN(u, "@", 2)[0]))
	}
	in.write("passwd", pw.String())
	os.Chmod(filepath.Join(in.Etc, "passwd"), 0o640)
	in.postern("config", "-e",
		"smtpd_tls_cert_file = "+in.CertFile,
		"smtpd_tls_key_file = "+filepath.Join(in.Etc, "key.pem"),
		"auth_passwd_file = "+filepath.Join(in.Etc, "passwd"))
	// No delay after a failed login (tests try wrong passwords), unless
	// the test sets one itself.
	delay := true
	for _, o := range in.opts.Settings {
		if strings.HasPrefix(strings.TrimSpace(o), "auth_failure_delay") {
			delay = false
		}
	}
	if delay {
		in.postern("config", "-e", "auth_failure_delay = 0s")
	}
	p1, p2 := FreePort(in.t), FreePort(in.t)
	in.SubmissionAddr = fmt.Sprintf("127.0.0.1:%d", p1)
	in.SubmissionsAddr = fmt.Sprintf("127.0.0.1:%d", p2)
	opts := "  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n  -o smtpd_sender_restrictions=reject_sender_login_mismatch\n"
	return in.SubmissionAddr + " inet n - y - - smtpd\n  -o smtpd_tls_security_level=encrypt\n" + opts +
		in.SubmissionsAddr + " inet n - y - - smtpd\n  -o smtpd_tls_wrappermode=yes\n" + opts
}

// setupMailAccess returns the services.conf lines of POP3 and IMAP, each
// on a free port, with the session services they hand logins to.
func (in *Instance) setupMailAccess() string {
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", FreePort(in.t)) }
	in.POP3Addr, in.POP3SAddr, in.IMAPAddr, in.IMAPSAddr = addr(), addr(), addr(), addr()
	return in.POP3Addr + " inet n - y - - pop3-login\n" +
		in.POP3SAddr + " inet n - y - - pop3-login\n  -o pop3d_tls_wrappermode=yes\n" +
		"login/pop3d unix - n n - - pop3d\n" +
		in.IMAPAddr + " inet n - y - - imap-login\n" +
		in.IMAPSAddr + " inet n - y - - imap-login\n  -o imapd_tls_wrappermode=yes\n" +
		"login/imapd unix - n n - - imapd\n"
}

func (in *Instance) write(name, content string) {
	in.t.Helper()
	if err := os.WriteFile(filepath.Join(in.Etc, name), []byte(content), 0o644); err != nil {
		in.t.Fatal(err)
	}
}

// postern runs the admin command against this instance's configuration.
func (in *Instance) postern(args ...string) string {
	in.t.Helper()
	out, err := in.Postern(args...)
	if err != nil {
		in.t.Fatalf("postern %v: %v\n%s", args, err, out)
	}
	return out
}

// Postern runs the admin command and returns its combined output.
func (in *Instance) Postern(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "postern"), append([]string{"-c", in.Etc}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start runs master in the foreground and waits for the SMTP port.
func (in *Instance) start() {
	in.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "postern"), "-c", in.Etc, "start-fg")
	w := &lockedWriter{in: in}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if in.opts.Unprivileged && isRoot() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(in.uid), Gid: uint32(in.gid)}
	}
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.cmd = cmd
	in.done = make(chan struct{})
	go func() { cmd.Wait(); close(in.done) }()
	// Longer than master's own 30 s limit for its daemons to report
	// ready, so that a slow start ends with master's message naming the
	// daemon rather than with this timeout.
	deadline := time.Now().Add(35 * time.Second)
	for time.Now().Before(deadline) {
		// master logs "daemon started" once every daemon said it is ready.
		if !strings.Contains(in.Log(), "daemon started") {
			select {
			case <-in.done:
				in.t.Fatalf("master exited at start:\n%s", in.Log())
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		c, err := net.DialTimeout("tcp", in.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-in.done:
			in.t.Fatalf("master exited at start:\n%s", in.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	in.t.Fatalf("SMTP port %s not open after 35 s:\n%s", in.Addr, in.Log())
}

type lockedWriter struct{ in *Instance }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.in.mu.Lock()
	defer w.in.mu.Unlock()
	return w.in.logs.Write(p)
}

// Log is everything master logged so far.
func (in *Instance) Log() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.logs.String()
}

// WaitLog waits until the log contains s.
func (in *Instance) WaitLog(s string, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(in.Log(), s) {
			return true
		}
	}
	return false
}

// MasterPid is the running master's pid.
func (in *Instance) MasterPid() int { return in.cmd.Process.Pid }

// Stop asks master to stop (SIGTERM) and waits; on the test's failure the
// log is printed.
func (in *Instance) Stop() {
	if in.cmd == nil {
		return
	}
	select {
	case <-in.done:
	default:
		in.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
			<-in.done
			in.t.Errorf("master did not stop within 20 s")
		}
	}
	in.cmd = nil
	if in.t.Failed() {
		in.t.Logf("postern log:\n%s", in.Log())
	} else {
		if log := in.Log(); !in.opts.HangExpected && strings.Contains(log, "did not report ready within") {
			in.t.Logf("a daemon hung at start and master restarted it; postern log:\n%s", log)
		}
		os.RemoveAll(in.Dir)
	}
}

// Kill kills master with SIGKILL (its daemons die with it through
// Pdeathsig) and waits for it.
func (in *Instance) Kill() {
	in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.done
	in.cmd = nil
}

// Restart starts master again after Kill or Stop.
func (in *Instance) Restart() {
	in.start()
}

// Maildir is the path of a virtual mailbox's Maildir.
func (in *Instance) Maildir(user string) string {
	return filepath.Join(in.VMail, "example.test", user)
}

// Messages lists the files in a Maildir's new/ directory, sorted.
func Messages(maildir string) []string {
	ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(maildir, "new", e.Name()))
	}
	sort.Strings(out)
	return out
}

// WaitMessages waits until maildir/new holds at least n files.
func WaitMessages(t testing.TB, maildir string, n int, timeout time.Duration) []string {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		m := Messages(maildir)
		if len(m) >= n || time.Now().After(end) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Daemons maps each daemon program name to its pids among master's
// children, from /proc.
func (in *Instance) Daemons() map[string][]int {
	out := map[string][]int{}
	if in.cmd == nil {
		return out
	}
	master := in.cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if ppid != master {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		name := filepath.Base(exe)
		// The smtp program also runs as the lmtp service.
		if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); name == "smtp" && strings.Contains(string(cl), "\x00-n\x00lmtp\x00") {
			name = "lmtp"
		}
		out[name] = append(out[name], pid)
	}
	return out
}

// Send speaks SMTP line by line over a raw connection: each element of
// script is sent as given (CRLF added unless it already ends in LF) after
// the previous reply; it returns every reply. Use it for protocol cases
// that client libraries would not produce.
func Send(t testing.TB, addr string, script ...string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	read := func() string {
		var b strings.Builder
		for {
			l, err := br.ReadString('\n')
			b.WriteString(l)
			if err != nil || len(l) < 4 || l[3] != '-' {
				return b.String()
			}
		}
	}
	replies := []string{read()}
	for _, s := range script {
		if !strings.HasSuffix(s, "\n") {
			s += "\r\n"
		}
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		replies = append(replies, read())
	}
	return replies
}
