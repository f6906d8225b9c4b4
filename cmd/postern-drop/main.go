// Command postern-drop is the one set-id program of Postern (DESIGN.md §2):
// installed setgid setgid_group (postdrop), mode 2755, it lets a local user
// put a message into the spool's maildrop/ directory (mode 1730
// postern:postdrop), where pickup finds it. sendmail(1) runs it; users need
// not.
//
//	postern-drop [-c DIR] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID] [-t] [--] [RCPT...] < message
//	postern-drop [-c DIR] -showq [-j]
//	postern-drop [-c DIR] -flush
//
// Submission: the message on stdin is written to maildrop/ID (an
// internal/maildrop file: the envelope, the submitting uid and login, then
// the message), mode 0600 while it is written, fsync'd, then given the
// owner's execute bit (0744: "complete") and fsync'd again, and the
// directory entry is made durable (fsync of maildrop/ when it can be
// opened, else syncfs). Only then does it exit 0. Then it pokes pickup
// over public/pickup; if nothing listens the mail system is down and the
// file waits for pickup's scan at start. -showq asks the showq daemon
// (public/showq) for the queue listing (mailq); -flush asks qmgr
// (public/qmgr) to retry deferred mail (sendmail -q).
//
// Privilege: the caller's uid, with the effective gid postdrop, which
// opens maildrop/ and public/ and nothing else. Because it is set-id it
// trusts nothing of its caller: the environment is cleared first thing,
// PR_SET_NO_NEW_PRIVS is set, the umask is 077, and the configuration is
// read from the compiled-in directory (config.DefaultConfigDirectory)
// unless the caller is root, who may name another with -c. The kernel
// makes a set-id process non-dumpable, so the caller cannot ptrace it.
//
// Limits and failure modes (exit codes from sysexits.h):
//   - the message is at most message_size_limit bytes (counted as read);
//     more: the file is removed, exit 65 (EX_DATAERR);
//   - every sender and recipient must be an address (a bare local name is
//     allowed, pickup qualifies it with myorigin), at most 10000
//     recipients; bad arguments exit 64 (EX_USAGE);
//   - without -f a uid that has no login name exits 67 (EX_NOUSER);
//   - -c from a user who is not root exits 77 (EX_NOPERM); a configuration
//     that does not load, 78 (EX_CONFIG);
//   - with -t and no recipient arguments, a header section that names no
//     usable recipient address (To, Cc, Bcc or their Resent- forms) exits
//     65 (EX_DATAERR) and leaves nothing behind, as Sendmail and Postfix
//     do, instead of leaving pickup a message it cannot send;
//   - a write or fsync error, or a signal (HUP, INT, TERM, QUIT) while
//     writing, removes the file: exit 75 (EX_TEMPFAIL) or 74 (EX_IOERR
//     for stdin); nothing half-written is ever marked complete. From the
//     moment the file is about to be marked complete those signals are
//     ignored: a committed file is never removed, so an exit 75 always
//     means nothing was queued and a retry cannot make a duplicate;
//   - -showq and -flush with the mail system down exit 69 (EX_UNAVAILABLE).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/address"
	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/maildrop"
	"postern/internal/queue"
)

// Exit codes from sysexits.h.
const (
	exUsage       = 64
	exDataErr     = 65
	exNoUser      = 67
	exUnavailable = 69
	exSoftware    = 70
	exIOErr       = 74
	exTempFail    = 75
	exNoPerm      = 77
	exConfig      = 78
)

const prog = "postern-drop"

// dropSignals are the signals that, while the file is being written,
// remove it and exit 75 (EX_TEMPFAIL).
var dropSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT}

// exitError carries an exit code to main.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code, fmt.Sprintf(format, args...)}
}

func main() {
	// A set-id program inherits its caller's environment: drop all of it
	// before anything could read it.
	os.Clearenv()
	os.Setenv("PATH", "/usr/bin:/bin")
	unix.Umask(0o077)
	unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
	err := run(os.Args[1:], os.Stdin, os.Stdout)
	if err != nil {
		code := exSoftware
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(code)
	}
}

type options struct {
	dir             string
	sender          string
	senderSet       bool
	fullName        string
	notify, ret     string
	envid           string
	extract         bool
	showq, json     bool
	flush           bool
	recipients      []string
	uid             int
	login           string
	spool           string
	maxSize         int64
	pokeTimeout     time.Duration
	stdin           io.Reader
	stdout          io.Writer
	removeOnSignals bool
	onCommit        func() // tests: runs once the file is about to be committed
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	o := &options{uid: os.Getuid(), stdin: stdin, stdout: stdout, pokeTimeout: 2 * time.Second, removeOnSignals: true}
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.dir, "c", config.DefaultConfigDirectory, "configuration directory (root only)")
	fs.Func("f", "envelope sender", func(s string) error {
		o.sender, o.senderSet = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">"), true
		return nil
	})
	fs.StringVar(&o.fullName, "F", "", "full name")
	fs.StringVar(&o.notify, "N", "", "DSN NOTIFY")
	fs.StringVar(&o.ret, "R", "", "DSN RET")
	fs.StringVar(&o.envid, "V", "", "DSN ENVID")
	fs.BoolVar(&o.extract, "t", false, "recipients from the headers too")
	fs.BoolVar(&o.showq, "showq", false, "print the queue listing")
	fs.BoolVar(&o.json, "j", false, "with -showq: JSON")
	fs.BoolVar(&o.flush, "flush", false, "retry deferred mail now")
	if err := fs.Parse(args); err != nil {
		return fail(exUsage, "%v", err)
	}
	o.recipients = fs.Args()
	if o.dir != config.DefaultConfigDirectory && o.uid != 0 {
		return fail(exNoPerm, "only root may name a configuration directory (-c %s)", o.dir)
	}
	cfg, err := config.Load(o.dir)
	if err != nil {
		return fail(exConfig, "%v", err)
	}
	o.spool = cfg.Get("queue_directory")
	o.maxSize = cfg.Int("message_size_limit")
	switch {
	case o.showq && o.flush:
		return fail(exUsage, "-showq and -flush exclude each other")
	case o.showq:
		return showq(o)
	case o.flush:
		return flush(o)
	case o.json:
		return fail(exUsage, "-j goes with -showq")
	}
	return submit(o)
}

// checkAddress accepts what pickup can qualify and send: an address, a bare
// local name, or (sender only) the null sender.
func checkAddress(what, s string, nullOK bool) error {
	if s == "" {
		if nullOK {
			return nil
		}
		return fail(exUsage, "empty %s address", what)
	}
	if err := maildrop.CheckValue(s); err != nil {
		return fail(exUsage, "%s %.80q: %v", what, s, err)
	}
	q := s
	if !strings.Contains(s, "@") {
		q = s + "@localhost"
	}
	if _, err := address.Parse(q, true); err != nil {
		return fail(exUsage, "%s %.80q: %v", what, s, err)
	}
	return nil
}

func submit(o *options) error {
	if len(o.recipients) == 0 && !o.extract {
		return fail(exUsage, "no recipients: name them as arguments or give -t")
	}
	if len(o.recipients) > maildrop.MaxRecipients {
		return fail(exUsage, "%d recipients, more than %d", len(o.recipients), maildrop.MaxRecipients)
	}
	for _, r := range o.recipients {
		if err := checkAddress("recipient", r, false); err != nil {
			return err
		}
	}
	if o.ret != "" {
		o.ret = strings.ToUpper(o.ret)
		if o.ret != "FULL" && o.ret != "HDRS" {
			return fail(exUsage, "-R %.20q: must be full or hdrs", o.ret)
		}
	}
	if o.notify != "" {
		n, err := parseNotify(o.notify)
		if err != nil {
			return err
		}
		o.notify = n
	}
	if err := maildrop.CheckValue(o.envid); err != nil || len(o.envid) > 100 {
		return fail(exUsage, "-V: bad envelope id")
	}
	if err := maildrop.CheckValue(o.fullName); err != nil || len(o.fullName) > 256 {
		return fail(exUsage, "-F: bad full name")
	}
	if u, err := user.LookupId(strconv.Itoa(o.uid)); err == nil {
		o.login = u.Username
	}
	if !o.senderSet {
		if o.login == "" {
			return fail(exNoUser, "uid %d has no login name: give the sender with -f", o.uid)
		}
		o.sender = o.login
	}
	if err := checkAddress("sender", o.sender, o.senderSet); err != nil {
		return err
	}
	env := &maildrop.Envelope{
		Arrival: time.Now(), UID: o.uid, Login: o.login,
		Sender: o.sender, SenderSet: o.senderSet, FullName: o.fullName,
		Extract: o.extract, Ret: o.ret, EnvID: o.envid, Notify: o.notify,
		Recipients: o.recipients,
	}
	dir := filepath.Join(o.spool, queue.Maildrop)
	f, path, err := create(dir)
	if err != nil {
		return fail(exTempFail, "%v", err)
	}
	// Whatever goes wrong from here, the file goes: a file without the
	// ready bit would be removed by pickup later anyway, but not leaving
	// it is cleaner.
	var once sync.Once
	remove := func() { once.Do(func() { f.Close(); os.Remove(path) }) }
	// commit is called right before the chmod that makes the file ready.
	// From then on a signal must not remove the file: pickup may already
	// be reading it, and the exit 75 would make the caller submit the
	// message a second time. So the signals are ignored from then on, and
	// a signal that reached the handler before is dropped there
	// (committed, under mu, decides which of the two came first).
	var mu sync.Mutex
	committed := false
	commit := func() {
		mu.Lock()
		defer mu.Unlock()
		if o.removeOnSignals {
			signal.Ignore(dropSignals...)
		}
		committed = true
		if o.onCommit != nil {
			o.onCommit()
		}
	}
	if o.removeOnSignals {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, dropSignals...)
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case s := <-sigs:
				mu.Lock()
				if committed {
					// Too late to take the submission back; it stands.
					mu.Unlock()
					return
				}
				remove()
				fmt.Fprintf(os.Stderr, "%s: interrupted by signal %v; nothing was queued\n", prog, s)
				os.Exit(exTempFail)
			case <-done:
			}
		}()
	}
	if err := write(f, env, o, commit); err != nil {
		remove()
		return err
	}
	f.Close()
	poke(o)
	return nil
}

// parseNotify checks -N: "never" alone, or some of success, failure,
// delay (also "delay,failure" with spaces); it returns them upper-cased.
func parseNotify(s string) (string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		u := strings.ToUpper(p)
		switch u {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
		default:
			return "", fail(exUsage, "-N %.40q: expected never, or success, failure, delay", s)
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if len(out) == 0 || seen["NEVER"] && len(out) > 1 {
		return "", fail(exUsage, "-N %.40q: expected never, or success, failure, delay", s)
	}
	return strings.Join(out, ","), nil
}

// create makes a new file in maildrop/, named by a fresh queue ID.
func create(dir string) (*os.File, string, error) {
	for i := 0; ; i++ {
		path := filepath.Join(dir, string(queue.NewID()))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, maildrop.WriteMode)
		if err == nil {
			return f, path, nil
		}
		if !errors.Is(err, os.ErrExist) || i >= 10 {
			return nil, "", fmt.Errorf("cannot create a file in %s (is postern-drop setgid to setgid_group?): %w", dir, err)
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// headCapture keeps the first maildrop.MaxHeaderScan bytes written to it:
// the part of the message that holds the header section HeaderRecipients
// reads for -t.
type headCapture struct{ b []byte }

func (h *headCapture) Write(p []byte) (int, error) {
	if room := maildrop.MaxHeaderScan - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// headerRecipients reports whether the captured header names at least one
// recipient address that pickup can use, the check for -t.
func headerRecipients(head []byte) bool {
	addrs, _, err := maildrop.HeaderRecipients(bytes.NewReader(head))
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if checkAddress("recipient", a, false) == nil {
			return true
		}
	}
	return false
}

// write fills f with the envelope and the message and marks it complete;
// commit runs right before the mode change that does that.
func write(f *os.File, env *maildrop.Envelope, o *options, commit func()) error {
	bw := bufio.NewWriterSize(f, 64<<10)
	if err := maildrop.Write(bw, env); err != nil {
		return fail(exUsage, "%v", err)
	}
	src := &countingReader{r: o.stdin}
	var in io.Reader = src
	if o.maxSize > 0 {
		in = io.LimitReader(src, o.maxSize+1)
	}
	var head *headCapture
	if o.extract && len(o.recipients) == 0 {
		// -t alone: refuse a message that names nobody now, while the
		// user can still be told, rather than leave it to pickup.
		head = &headCapture{}
		in = io.TeeReader(in, head)
	}
	// Copy by hand so that a read error (stdin) and a write error (the
	// spool) get their own exit codes.
	buf := make([]byte, 64<<10)
	for {
		n, rerr := in.Read(buf)
		if n > 0 {
			if _, err := bw.Write(buf[:n]); err != nil {
				return fail(exTempFail, "write %s: %v", f.Name(), err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(exIOErr, "read the message: %v", rerr)
		}
	}
	if o.maxSize > 0 && src.n > o.maxSize {
		return fail(exDataErr, "message is larger than message_size_limit (%d bytes)", o.maxSize)
	}
	if head != nil && !headerRecipients(head.b) {
		return fail(exDataErr, "no recipient addresses found in message header")
	}
	if err := bw.Flush(); err != nil {
		return fail(exTempFail, "write %s: %v", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fail(exTempFail, "fsync %s: %v", f.Name(), err)
	}
	if commit != nil {
		commit()
	}
	if err := f.Chmod(maildrop.ReadyMode); err != nil {
		return fail(exTempFail, "chmod %s: %v", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fail(exTempFail, "fsync %s: %v", f.Name(), err)
	}
	if err := syncDir(f); err != nil {
		return fail(exTempFail, "%v", err)
	}
	return nil
}

// syncDir makes the new directory entry durable. maildrop/ is not
// readable by the postdrop group (1730), so it cannot be opened for an
// fsync unless the caller is its owner or root; syncfs of the file system
// that holds the file does the same, at a higher cost.
func syncDir(f *os.File) error {
	dir := filepath.Dir(f.Name())
	if d, err := os.Open(dir); err == nil {
		defer d.Close()
		if err := d.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", dir, err)
		}
		return nil
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// poke tells pickup that a file is waiting; best effort.
func poke(o *options) {
	c, err := ipc.Dial(filepath.Join(o.spool, queue.Public, "pickup"), o.pokeTimeout)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(o.pokeTimeout))
	c.Send(ipc.NewMsg("op", "wakeup"))
}

func showq(o *options) error {
	if len(o.recipients) > 0 {
		return fail(exUsage, "-showq takes no arguments")
	}
	// The listing may fill a 1 MiB output attribute: allow more than
	// ipc.Dial's default frame.
	nc, err := net.DialTimeout("unix", filepath.Join(o.spool, queue.Public, "showq"), 10*time.Second)
	if err != nil {
		return fail(exUnavailable, "queue listing unavailable: the mail system is down (%v)", err)
	}
	c := ipc.NewConn(nc.(*net.UnixConn), 4<<20)
	defer c.Close()
	format := "text"
	if o.json {
		format = "json"
	}
	if err := c.Send(ipc.NewMsg("op", "list", "format", format)); err != nil {
		return fail(exUnavailable, "showq: %v", err)
	}
	r, _, err := c.Recv(60 * time.Second)
	if err != nil {
		return fail(exUnavailable, "showq did not answer: %v", err)
	}
	if r.Get("status") != "ok" {
		return fail(exNoPerm, "showq: %s", orDefault(r.Get("reason"), "refused"))
	}
	_, err = io.WriteString(o.stdout, r.Get("output"))
	return err
}

func flush(o *options) error {
	if len(o.recipients) > 0 {
		return fail(exUsage, "-flush takes no arguments")
	}
	c, err := ipc.Dial(filepath.Join(o.spool, queue.Public, "qmgr"), 5*time.Second)
	if err != nil {
		return fail(exUnavailable, "cannot flush the queue: the mail system is down (%v)", err)
	}
	defer c.Close()
	if err := c.Send(ipc.NewMsg("op", "flush")); err != nil {
		return fail(exUnavailable, "flush: %v", err)
	}
	r, _, err := c.Recv(10 * time.Second)
	if err != nil {
		return fail(exUnavailable, "qmgr did not answer: %v", err)
	}
	if r.Get("status") != "ok" {
		return fail(exSoftware, "flush refused: %s", r.Get("reason"))
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
