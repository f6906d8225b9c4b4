// Command sendmail is Postern's Sendmail-compatible submission command,
// also run as mailq (= sendmail -bp) and newaliases (= sendmail -bi),
// chosen by the base name of argv[0], as the other MTAs do. Programs that
// send mail the Unix way (cron, mail(1), mutt, scripts) run it.
//
//	sendmail [-t] [-i|-oi] [-f SENDER|-r SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID] [-v] [--] [RCPT...]
//	sendmail -bs | -bp | -bi | -q
//
// It does nothing privileged itself: it checks the arguments, reads the
// message from stdin and runs postern-drop (setgid postdrop), found beside
// this program's executable (else DropPath), which writes the message into
// maildrop/ for pickup. -bs speaks SMTP on stdin/stdout (internal/smtp's
// engine) and hands each message to postern-drop; -bp and -q ask
// postern-drop for the queue listing and a queue flush; -bi checks the
// alias tables and, as root, makes a running master reload them.
//
// Privilege: the caller's, unchanged. The configuration directory is -C
// DIR, or POSTERN_CONFIG, or the compiled-in default; postern-drop honours
// a non-default one only for root.
//
// Limits and failure modes (exit codes from sysexits.h): bad arguments,
// unsupported modes (-bd, -bv, ...) and no recipients without -t exit 64
// (EX_USAGE); -t with no recipient in the headers and none given exits
// 65 (EX_DATAERR); otherwise the exit code is postern-drop's (0 only when
// the message is durably in maildrop/; 75 EX_TEMPFAIL, 77 EX_NOPERM, 69
// EX_UNAVAILABLE, ...), and 69 when postern-drop cannot be run. Without -i
// a line of a single "." ends the message, as in Sendmail. -o options
// other than -oi and the other Sendmail options that mean nothing here
// are ignored with a warning on stderr.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// DropPath is where postern-drop is when it is not beside this program;
// a packager sets it with -ldflags "-X main.DropPath=...".
var DropPath = "/usr/sbin/postern-drop"

// Exit codes from sysexits.h.
const (
	exUsage       = 64
	exDataErr     = 65
	exUnavailable = 69
	exSoftware    = 70
	exConfig      = 78
)

type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code, fmt.Sprintf(format, args...)}
}

var prog = "sendmail"

func main() {
	prog = filepath.Base(os.Args[0])
	o, err := parseArgs(prog, os.Args[1:], os.Getenv)
	if err == nil {
		err = o.run(os.Stdin, os.Stdout, os.Stderr)
	}
	if err != nil {
		code := exSoftware
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if err.Error() != "" {
			fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		}
		os.Exit(code)
	}
}

// Modes.
const (
	modeDeliver = "m" // -bm
	modeSMTP    = "s" // -bs
	modePrint   = "p" // -bp, mailq
	modeAliases = "i" // -bi, newaliases
	modeFlush   = "q" // -q
)

type options struct {
	mode       string
	extract    bool // -t
	ignoreDots bool // -i, -oi
	sender     string
	senderSet  bool
	fullName   string
	nameSet    bool
	notify     string
	ret        string
	envid      string
	verbose    bool
	configDir  string
	recipients []string
	warnings   []string
	dropPath   string
	getenv     func(string) string
}

// withArg lists the options that take a value (getopt's "x:").
const withArg = "BCFLNORVXbfhopr"

// parseArgs reads the command line as Sendmail's getopt does: clustered
// flags (-ti), values attached (-fme) or in the next argument (-f me).
func parseArgs(name string, args []string, getenv func(string) string) (*options, error) {
	o := &options{mode: modeDeliver, getenv: getenv}
	switch name {
	case "mailq":
		o.mode = modePrint
	case "newaliases":
		o.mode = modeAliases
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			val := ""
			if c == 'q' {
				// -q takes an optional attached value (-q30m, -qRsite).
				o.mode = modeFlush
				if rest := a[j+1:]; rest != "" {
					o.warnings = append(o.warnings, fmt.Sprintf("-q%s: only a flush of the whole queue is supported", rest))
				}
				break
			}
			if strings.IndexByte(withArg, c) >= 0 {
				if j+1 < len(a) {
					val = a[j+1:]
				} else if i+1 < len(args) {
					i++
					val = args[i]
				} else {
					return nil, fail(exUsage, "option -%c needs a value", c)
				}
				j = len(a)
			}
			if err := o.option(c, val); err != nil {
				return nil, err
			}
		}
	}
	o.recipients = append(o.recipients, args[i:]...)
	return o, o.check()
}

// option applies one option letter.
func (o *options) option(c byte, val string) error {
	switch c {
	case 't':
		o.extract = true
	case 'i':
		o.ignoreDots = true
	case 'f', 'r':
		o.sender, o.senderSet = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(val), "<"), ">"), true
	case 'F':
		o.fullName, o.nameSet = val, true
	case 'N':
		o.notify = val
	case 'R':
		o.ret = val
	case 'V':
		o.envid = val
	case 'v':
		o.verbose = true
	case 'C':
		o.configDir = val
		if fi, err := os.Stat(val); err == nil && !fi.IsDir() {
			o.configDir = filepath.Dir(val)
		}
	case 'I':
		o.mode = modeAliases
	case 'b':
		switch val {
		case "m":
			o.mode = modeDeliver
		case "s":
			o.mode = modeSMTP
		case "p":
			o.mode = modePrint
		case "i":
			o.mode = modeAliases
		case "d", "D":
			return fail(exUsage, "-b%s: Postern's daemons are started with postern start", val)
		default:
			return fail(exUsage, "-b%s: mode not supported", val)
		}
	case 'o':
		if val == "i" {
			o.ignoreDots = true
		} else {
			o.warnings = append(o.warnings, fmt.Sprintf("-o%s ignored", val))
		}
	case 'B', 'L', 'O', 'X', 'h', 'p':
		// Body type, log label, options, log file, hop count, protocol:
		// nothing to do here; cleanup counts hops itself.
	case 'G', 'U', 'm', 'n', 'c', 'x', 'e':
		// Gateway, initial user submission, metoo, no aliasing and the
		// like: accepted for compatibility, meaning nothing here.
	default:
		return fail(exUsage, "unknown option -%c", c)
	}
	return nil
}

// check validates what parseArgs collected.
func (o *options) check() error {
	switch o.mode {
	case modePrint, modeAliases, modeFlush:
		if len(o.recipients) > 0 {
			return fail(exUsage, "this mode takes no recipients")
		}
	case modeDeliver:
		if len(o.recipients) == 0 && !o.extract {
			return fail(exUsage, "no recipient addresses: name them, or give -t")
		}
	}
	var rcpts []string
	for _, r := range o.recipients {
		rcpts = append(rcpts, splitRecipients(r)...)
	}
	o.recipients = rcpts
	return nil
}

// splitRecipients reads one argument as Postfix does: an RFC 5322
// address list ("Bob <bob@example.org>, carol"), or failing that a
// comma-separated list of bare addresses.
func splitRecipients(arg string) []string {
	if l, err := mail.ParseAddressList(arg); err == nil {
		out := make([]string, 0, len(l))
		for _, a := range l {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for _, p := range strings.Split(arg, ",") {
		p = strings.TrimSpace(p)
		if a, err := mail.ParseAddress(p); err == nil {
			p = a.Address
		}
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (o *options) run(stdin io.Reader, stdout, stderr io.Writer) error {
	for _, w := range o.warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", prog, w)
	}
	if o.configDir == "" {
		o.configDir = o.getenv("POSTERN_CONFIG")
	}
	o.dropPath = findDrop()
	switch o.mode {
	case modePrint:
		return o.drop(nil, stdin, stdout, stderr, "-showq")
	case modeFlush:
		return o.drop(nil, stdin, stdout, stderr, "-flush")
	case modeAliases:
		return o.newaliases(stdout, stderr)
	case modeSMTP:
		return o.serveSMTP(stdin, stdout)
	}
	return o.deliver(stdin, stdout, stderr)
}

// findDrop looks for postern-drop beside this program (resolving
// symbolic links: /usr/sbin/sendmail may be a link), else DropPath.
func findDrop() string {
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		p := filepath.Join(filepath.Dir(exe), "postern-drop")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return DropPath
}

// dropArgs are the envelope arguments for a submission.
func (o *options) dropArgs(sender string, senderSet bool, rcpts []string) []string {
	var a []string
	if senderSet {
		a = append(a, "-f", sender)
	}
	if name := o.name(); name != "" {
		a = append(a, "-F", name)
	}
	if o.notify != "" {
		a = append(a, "-N", o.notify)
	}
	if o.ret != "" {
		a = append(a, "-R", o.ret)
	}
	if o.envid != "" {
		a = append(a, "-V", o.envid)
	}
	if o.extract {
		a = append(a, "-t")
	}
	a = append(a, "--")
	return append(a, rcpts...)
}

// name is the sender's full name for a From: header that cleanup adds:
// -F, else $NAME, else the passwd entry's GECOS name, as Postfix does.
func (o *options) name() string {
	n := o.fullName
	if !o.nameSet {
		n = o.getenv("NAME")
		if n == "" {
			if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
				n = u.Name
			}
		}
	}
	n = strings.Join(strings.Fields(n), " ")
	if len(n) > 256 {
		n = n[:256]
	}
	return strings.ToValidUTF8(n, "?")
}

// drop runs postern-drop with args (preceded by -c when a configuration
// directory was named) and its stdin from stdin; it returns an exitError
// with postern-drop's exit code.
func (o *options) drop(env []string, stdin io.Reader, stdout, stderr io.Writer, args ...string) error {
	if o.configDir != "" {
		args = append([]string{"-c", o.configDir}, args...)
	}
	if o.verbose {
		fmt.Fprintf(stderr, "%s: running %s %s\n", prog, o.dropPath, strings.Join(args, " "))
	}
	cmd := exec.Command(o.dropPath, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = env
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code > 0 {
			// postern-drop said why on stderr.
			return &exitError{code, ""}
		}
		return fail(exSoftware, "%s: %v", o.dropPath, err)
	}
	if err != nil {
		return fail(exUnavailable, "cannot run %s: %v", o.dropPath, err)
	}
	return nil
}

// deliver is -bm: the message from stdin to postern-drop.
func (o *options) deliver(stdin io.Reader, stdout, stderr io.Writer) error {
	in := stdin
	if !o.ignoreDots {
		in = newDotReader(stdin)
	}
	if o.extract && len(o.recipients) == 0 {
		// Say at once when -t finds nobody (pickup would have to put the
		// file aside); the header section is read ahead for that.
		br := bufio.NewReaderSize(in, 64<<10)
		head, err := readHeader(br)
		if err != nil {
			return fail(74, "read the message: %v", err)
		}
		if !hasRecipients(head) {
			return fail(exDataErr, "no recipient addresses found in the message header")
		}
		in = io.MultiReader(bytes.NewReader(head), br)
	}
	return o.drop(nil, in, stdout, stderr, o.dropArgs(o.sender, o.senderSet, o.recipients)...)
}
