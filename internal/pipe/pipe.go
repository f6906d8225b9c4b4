// Package pipe delivers a message to a command, as Postfix's local(8) does
// for "|command" in aliases(5) and forward(5): /bin/sh -c COMMAND runs as
// the given user (uid, gid and the user's supplementary groups, set by
// SysProcAttr.Credential between fork and exec, which needs CAP_SETUID and
// CAP_SETGID and nothing more), in a new process group, with a clean
// environment, its working directory the user's home (or / when the home
// cannot be entered), the message on standard input.
//
// Limits and failure modes:
//   - uid 0 is refused: nothing is ever run as root (the caller maps root
//     to default_privs before it gets here);
//   - the command may run at most Command.TimeLimit; then its whole process
//     group is killed (SIGKILL) and the delivery is deferred (4.3.0);
//   - standard output and standard error are captured together, at most
//     MaxOutput bytes (the rest is read and dropped so the command never
//     blocks on a full pipe), for the bounce or log text;
//   - once the command has exited, at most waitDelay is spent waiting for
//     descendants that still hold its output pipe;
//   - exit status 0 is success; the sysexits.h codes 64-78 map to the
//     enhanced status codes of Postfix's sys_exits table (EX_TEMPFAIL 75
//     and EX_OSERR 71 temporary, the others permanent); any other status
//     is a permanent failure (5.3.0); death by a signal is temporary;
//   - a command that cannot be started (exec or setuid failed) is a
//     temporary failure: the administrator can fix it.
package pipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxOutput bounds the command output kept for the delivery status text.
const MaxOutput = 4096

// waitDelay bounds the wait for the output pipe to close once the command
// itself has exited (a background child may keep it open).
const waitDelay = 5 * time.Second

// Shell runs every command, as sendmail and Postfix do.
const Shell = "/bin/sh"

// Path is the command search path in the command's environment.
const Path = "/usr/bin:/bin"

// Command is one delivery to a command.
type Command struct {
	Command string // the shell command line, without the leading "|"

	UID, GID int
	Groups   []int  // supplementary groups; nil means none but GID
	User     string // account name (USER, LOGNAME)
	Home     string // HOME and the working directory
	Shell    string // SHELL in the environment (the user's login shell)

	// The envelope, for the environment.
	Sender    string // SENDER (empty for the null sender)
	Recipient string // RECIPIENT, the full address
	Local     string // LOCAL, the local part of the recipient
	Extension string // EXTENSION, the address extension (without delimiter)
	Domain    string // DOMAIN, the recipient's domain

	Stdin     io.Reader     // the message
	TimeLimit time.Duration // 0 means no limit
}

// Status is the outcome class of a delivery.
type Status int

// The outcomes.
const (
	Delivered Status = iota
	Deferred         // temporary failure: try again later
	Bounced          // permanent failure
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Deferred:
		return "deferred"
	}
	return "bounced"
}

// Result says what happened.
type Result struct {
	Status Status
	DSN    string // enhanced status code, 2.0.0 on success
	Text   string // why, with the command output if any (for DSNs and logs)
	Output string // the captured output, at most MaxOutput bytes
	Exit   int    // exit status; -1 for a signal, a time-out or no start
}

// sysexits maps the sysexits.h codes to enhanced status codes and texts, as
// Postfix's sys_exits table does.
var sysexits = map[int][2]string{
	64: {"5.3.0", "command line usage error"},
	65: {"5.6.0", "data format error"},
	66: {"5.3.0", "cannot open input"},
	67: {"5.1.1", "user unknown"},
	68: {"5.1.2", "host name unknown"},
	69: {"5.3.0", "service unavailable"},
	70: {"5.3.0", "internal software error"},
	71: {"4.3.0", "system resource problem"},
	72: {"5.3.0", "critical OS file missing"},
	73: {"5.2.0", "can't create user output file"},
	74: {"5.3.0", "input/output error"},
	75: {"4.3.0", "temporary failure"},
	76: {"5.5.0", "remote error in protocol"},
	77: {"5.7.0", "permission denied"},
	78: {"5.3.5", "local configuration error"},
}

// ExitStatus maps a command's exit status to an outcome, an enhanced status
// code and a text, per Postfix's sys_exits table.
func ExitStatus(code int) (Status, string, string) {
	if code == 0 {
		return Delivered, "2.0.0", "delivered to command"
	}
	if e, ok := sysexits[code]; ok {
		st := Bounced
		if e[0][0] == '4' {
			st = Deferred
		}
		return st, e[0], fmt.Sprintf("command died with status %d (%s)", code, e[1])
	}
	return Bounced, "5.3.0", fmt.Sprintf("command died with status %d", code)
}

// Env builds the command's environment: only these names, nothing from
// the caller's own environment.
func (c *Command) Env() []string {
	shell := c.Shell
	if shell == "" {
		shell = Shell
	}
	home := c.Home
	if home == "" {
		home = "/"
	}
	kv := [][2]string{
		{"HOME", home}, {"LOGNAME", c.User}, {"USER", c.User}, {"SHELL", shell},
		{"PATH", Path}, {"SENDER", c.Sender}, {"RECIPIENT", c.Recipient},
		{"LOCAL", c.Local}, {"EXTENSION", c.Extension}, {"DOMAIN", c.Domain},
	}
	out := make([]string, 0, len(kv))
	for _, e := range kv {
		out = append(out, e[0]+"="+clean(e[1]))
	}
	return out
}

// clean drops control characters (and so NUL, which exec refuses) from an
// environment value that came from a peer.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// capture keeps the first MaxOutput bytes written to it and drops the rest.
type capture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *capture) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := MaxOutput - w.buf.Len(); n > 0 {
		if len(p) < n {
			n = len(p)
		}
		w.buf.Write(p[:n])
	}
	return len(p), nil
}

func (w *capture) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Run runs the command and waits for it, for at most TimeLimit (or until
// ctx is done, which also counts as a time-out).
func Run(ctx context.Context, c *Command) Result {
	if c.UID == 0 {
		return Result{Status: Deferred, DSN: "4.3.0", Text: "refusing to run a command as root", Exit: -1}
	}
	if c.UID < 0 || c.GID < 0 {
		return Result{Status: Deferred, DSN: "4.3.0", Text: fmt.Sprintf("bad ids %d:%d for a command", c.UID, c.GID), Exit: -1}
	}
	if c.TimeLimit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.TimeLimit)
		defer cancel()
	}
	out := &capture{}
	build := func(dir string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, Shell, "-c", c.Command)
		cmd.Env = c.Env()
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Stdin = c.Stdin
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if c.UID != os.Getuid() || c.GID != os.Getgid() || os.Getuid() == 0 {
			groups := make([]uint32, 0, len(c.Groups))
			for _, g := range c.Groups {
				if g >= 0 {
					groups = append(groups, uint32(g))
				}
			}
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.GID), Groups: groups}
		}
		// The time limit kills the whole process group, so a pipeline or
		// a background child dies with the shell.
		cmd.Cancel = func() error {
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		cmd.WaitDelay = waitDelay
		return cmd
	}
	dir := c.Home
	if dir == "" {
		dir = "/"
	}
	cmd := build(dir)
	err := cmd.Start()
	if err != nil && dir != "/" {
		// The home directory cannot be entered as the user (the chdir
		// happens after setuid): run in / instead, as Postfix does.
		cmd = build("/")
		err = cmd.Start()
	}
	if err == nil {
		err = cmd.Wait()
	}
	output := out.String()
	res := Result{Output: output, Exit: -1}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil && (err != nil || cmd.ProcessState == nil || !cmd.ProcessState.Success()):
		res.Status, res.DSN, res.Text = Deferred, "4.3.0", "command time limit exceeded"
	case err == nil:
		res.Status, res.DSN, res.Text = ExitStatus(0)
		res.Exit = 0
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.Status, res.DSN, res.Text = Deferred, "4.3.0", "command died with signal "+strconv.Itoa(int(ws.Signal()))
		} else {
			res.Exit = ee.ExitCode()
			res.Status, res.DSN, res.Text = ExitStatus(res.Exit)
		}
	case errors.Is(err, exec.ErrWaitDelay):
		// Exited 0, but a descendant kept the output open: delivered.
		res.Status, res.DSN, res.Text = ExitStatus(0)
		res.Exit = 0
	default:
		res.Status, res.DSN, res.Text = Deferred, "4.3.0", "cannot run command: "+err.Error()
	}
	if o := strings.TrimSpace(clean(strings.ReplaceAll(output, "\n", " "))); o != "" && res.Status != Delivered {
		res.Text += ". Command output: " + o
	}
	return res
}
