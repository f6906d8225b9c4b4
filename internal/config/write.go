package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// DefaultServices is the services.conf that WriteDefaults writes.
const DefaultServices = `# services.conf: the daemons that master runs. See services.conf(5).
#
# One service a line; a line that begins with white space continues the one
# before it, which is where -o name=value options go (they override
# postern.conf for that service only).
#
# Columns, and what - means in each:
#   service  inet: port, port name (smtp, submission, submissions, ...),
#            host:port or [ipv6]:port; unix and pass: the socket name
#            (login/NAME: a socket in login/, for the login front ends)
#   type     inet (TCP), unix (Unix socket), pass (Unix socket that is
#            handed connections accepted elsewhere)
#   private  y: socket in private/, reachable by the mail system only;
#            n: in public/, which the postdrop group may reach.  - = y
#            (an inet service is never private)
#   unpriv   y: runs as mail_owner; n: runs as root.  - = y
#   chroot   y: runs chrooted to queue_directory.  - = y
#   wakeup   master triggers the service every N seconds; 0 never.  - = 0
#   maxproc  most processes at once; 0 = no limit.  - = default_process_limit
#   command  program in daemon_directory, then its arguments
#
# service   type  private unpriv  chroot  wakeup  maxproc command + args
smtp        inet  n       -       y       -       -       smtpd
# Mail submission by users' mail clients (RFC 6409 and RFC 8314): needs
# smtpd_tls_cert_file and auth_passwd_file in postern.conf.
#submission inet  n       -       y       -       -       smtpd
#  -o smtpd_tls_security_level=encrypt
#  -o smtpd_sasl_auth_enable=yes
#  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
#  -o smtpd_sender_restrictions=reject_sender_login_mismatch
#submissions inet n       -       y       -       -       smtpd
#  -o smtpd_tls_wrappermode=yes
#  -o smtpd_sasl_auth_enable=yes
#  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
#  -o smtpd_sender_restrictions=reject_sender_login_mismatch
cleanup     unix  y       -       y       -       0       cleanup
qmgr        unix  n       -       y       300     1       qmgr
local       unix  y       n       n       -       -       local
smtp        unix  y       -       y       -       -       smtp
# LMTP to a mailbox store (transport_maps: lmtp:unix:/path or lmtp:[host]:port);
# not chrooted, so that it can reach a Unix socket outside the spool.
lmtp        unix  y       -       n       -       -       smtp
auth        unix  y       -       n       -       -       auth
# Local submission: sendmail(1) and postern-drop(1) write into maildrop/;
# pickup feeds it to cleanup (public/pickup is the wake-up socket).
pickup      unix  n       -       y       -       1       pickup
# mailq(1) for local users, through postern-drop (public/showq).
showq       unix  n       -       y       -       -       showq
# Reading mail (README "Reading mail"): uncomment a block. The login
# front ends run chrooted without mailbox rights; login/pop3d and
# login/imapd start each session as the mailbox owner. TLS comes from
# pop3d_tls_cert_file / imapd_tls_cert_file (default: the smtpd files).
#pop3       inet  n       -       y       -       -       pop3-login
#pop3s      inet  n       -       y       -       -       pop3-login
#  -o pop3d_tls_wrappermode=yes
#login/pop3d unix -       n       n       -       -       pop3d
#imap       inet  n       -       y       -       -       imap-login
#imaps      inet  n       -       y       -       -       imap-login
#  -o imapd_tls_wrappermode=yes
#login/imapd unix -       n       n       -       -       imapd
`

// defaultMain renders the default postern.conf: every setting commented out
// with its default and its description, grouped.
func defaultMain(dir string) []byte {
	var b bytes.Buffer
	b.WriteString(`# postern.conf: Postern's settings. See postern.conf(5).
#
# Every setting is shown here commented out, with its default value. To
# change one, remove the # and edit the value, or run
#   postern config -e name=value
# A line that begins with white space continues the previous one; $name
# expands another setting. "postern config -n" shows what you have changed.
`)
	// Computed defaults are shown as this host computes them.
	c, err := Parse(dir, nil, nil)
	for _, g := range groups {
		fmt.Fprintf(&b, "\n# ---- %s ----\n", g)
		for i := range table {
			p := &table[i]
			if p.Group != g {
				continue
			}
			b.WriteString("\n")
			for _, l := range wrap(p.Doc, 74) {
				b.WriteString("# " + l + "\n")
			}
			def := p.Default
			if p.def != nil && err == nil {
				def = c.Raw(p.Name)
			}
			if def == "" {
				fmt.Fprintf(&b, "#%s =\n", p.Name)
			} else {
				fmt.Fprintf(&b, "#%s = %s\n", p.Name, def)
			}
		}
	}
	return b.Bytes()
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var out []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			out = append(out, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		out = append(out, line)
	}
	return out
}

// WriteDefaults writes postern.conf and services.conf with their defaults
// into dir where they are missing, for `postern init`. An existing file is
// never overwritten. dir is created (mode 0755) if needed. It returns the
// paths it created.
func WriteDefaults(dir string) (created []string, err error) {
	dir = absDir(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{MainFile, defaultMain(dir)},
		{ServicesFile, []byte(DefaultServices)},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		ok, err := createNew(path, f.data, 0o644)
		if err != nil {
			return created, fmt.Errorf("config: %w", err)
		}
		if ok {
			created = append(created, path)
		}
	}
	return created, nil
}

// createNew writes data to path unless path exists. The data is written to
// a temporary file and synced first, then linked into place, so that a
// crash never leaves a half-written file that a later run would not
// replace, and a file created meanwhile by someone else is not clobbered.
func createNew(path string, data []byte, mode os.FileMode) (bool, error) {
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := writeSync(tmp, data, mode); err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, syncDir(filepath.Dir(path))
}

// writeSync writes, sets the mode, syncs and closes f.
func writeSync(f *os.File, data []byte, mode os.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Edit sets name=value assignments in dir's postern.conf in place, as
// `postconf -e`: the line that sets a name (with its continuation lines) is
// replaced, a later duplicate is removed, and a name not yet set is
// appended; comments and the order of the file are kept. The result is
// checked as Load would check it (with services.conf, unless that file was
// already failing before the edit) and written only if it is good: to a
// temporary file that is synced and renamed over postern.conf. Concurrent
// editors are serialised by a lock on the temporary file, as Postfix does.
func Edit(dir string, assignments []string) error {
	dir = absDir(dir)
	path := filepath.Join(dir, MainFile)
	type asg struct{ name, value string }
	var list []asg
	idx := map[string]int{}
	var errs Errors
	for _, a := range assignments {
		eq := strings.IndexByte(a, '=')
		if eq < 0 {
			errs = append(errs, fmt.Errorf("%q: expected name=value", truncate(a)))
			continue
		}
		name, v := strings.TrimSpace(a[:eq]), strings.TrimSpace(a[eq+1:])
		if _, ok := byName[name]; !ok {
			errs = append(errs, unknownSetting("", 0, "", name))
			continue
		}
		if strings.ContainsAny(v, "\r\n") || strings.IndexByte(v, 0) >= 0 {
			errs = append(errs, fmt.Errorf("%s: a value may not contain a line break or NUL", name))
			continue
		}
		if i, ok := idx[name]; ok {
			list[i].value = v
			continue
		}
		idx[name] = len(list)
		list = append(list, asg{name, v})
	}
	if len(errs) > 0 {
		return errs.asError()
	}

	unlock, err := lockEdit(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer unlock.release()

	old, err := readLimited(path, maxConfFile)
	mode := os.FileMode(0o644)
	uid, gid := -1, -1
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("config: %w", err)
	}
	if fi, serr := os.Stat(path); serr == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}

	// Rewrite line by line: an entry's first line names the setting;
	// its continuation lines go with it.
	var out bytes.Buffer
	done := map[string]bool{}
	skipping := false
	rest := old
	for len(rest) > 0 {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		t := strings.TrimSpace(string(line))
		cont := len(line) > 0 && (line[0] == ' ' || line[0] == '\t')
		if t == "" || t[0] == '#' {
			// Comments and blank lines between an entry and its
			// continuation belong to neither; keep them.
			out.Write(line)
			continue
		}
		if cont {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		skipping = false
		if eq := strings.IndexByte(t, '='); eq >= 0 {
			name := strings.TrimSpace(t[:eq])
			if i, ok := idx[name]; ok {
				skipping = true
				if !done[name] {
					done[name] = true
					fmt.Fprintf(&out, "%s = %s\n", name, list[i].value)
				}
				continue
			}
		}
		out.Write(line)
	}
	if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
		out.WriteByte('\n')
	}
	for _, a := range list {
		if !done[a.name] {
			fmt.Fprintf(&out, "%s = %s\n", a.name, a.value)
		}
	}
	data := out.Bytes()

	if err := checkEdit(dir, old, data); err != nil {
		return err
	}
	tmp := unlock.f
	if err := tmp.Truncate(0); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if _, err := tmp.WriteAt(data, 0); err != nil {
		return fmt.Errorf("config: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		// Keep the owner of the file it replaces; only root can,
		// and a non-root editor of someone else's file could not
		// have written the directory either.
		_ = tmp.Chown(uid, gid)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("config: sync %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	unlock.renamed = true
	return syncDir(dir)
}

// checkEdit checks the edited postern.conf. services.conf is checked with
// it unless it was already failing before the edit, so that a broken
// services.conf does not stop a fix to postern.conf.
func checkEdit(dir string, old, data []byte) error {
	svcPath := filepath.Join(dir, ServicesFile)
	svc, err := readLimited(svcPath, maxConfFile)
	if err != nil {
		svc = nil
	}
	mainPath := filepath.Join(dir, MainFile)
	if _, err := parse(dir, mainPath, data, svcPath, svc); err == nil {
		return nil
	} else if svc == nil {
		return err
	} else {
		newErr := err
		_, mainOnlyErr := parse(dir, mainPath, data, svcPath, nil)
		if mainOnlyErr != nil {
			return mainOnlyErr
		}
		if _, oldErr := parse(dir, mainPath, old, svcPath, svc); oldErr != nil {
			var pe *Errors
			if errors.As(oldErr, &pe) && onlyFile(*pe, svcPath) {
				return nil // services.conf was broken already
			}
		}
		return newErr
	}
}

func onlyFile(errs Errors, file string) bool {
	for _, e := range errs {
		var le *LineError
		if !errors.As(e, &le) || le.File != file {
			return false
		}
	}
	return true
}

// editLock is the locked temporary file of an edit.
type editLock struct {
	f       *os.File
	renamed bool
}

// lockEdit opens and locks path.tmp. Like Postfix's edit_file, it retries
// when another editor renamed the file it locked into place meanwhile.
func lockEdit(path string) (*editLock, error) {
	tmpPath := path + ".tmp"
	for range 100 {
		f, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", tmpPath, err)
		}
		a, err1 := f.Stat()
		b, err2 := os.Stat(tmpPath)
		if err1 == nil && err2 == nil && os.SameFile(a, b) {
			return &editLock{f: f}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock %s: the file keeps changing", tmpPath)
}

// release removes the temporary file if it was not renamed into place, and
// drops the lock.
func (l *editLock) release() {
	if !l.renamed {
		os.Remove(l.f.Name())
	}
	l.f.Close()
}

// Print writes `name = value` lines, sorted by name, as `postern config`:
// values as written, before $name expansion (myhostname and mydomain show
// their computed defaults). With onlyNonDefault, only settings given
// explicitly; with names, only those. An unknown name is an error, and
// nothing is written then.
func (c *Config) Print(w io.Writer, onlyNonDefault bool, names []string) error {
	if c == nil {
		return errors.New("config: nil configuration")
	}
	var errs Errors
	for _, n := range names {
		if _, ok := byName[n]; !ok {
			errs = append(errs, unknownSetting("", 0, "", n))
		}
	}
	if len(errs) > 0 {
		return errs.asError()
	}
	if len(names) == 0 {
		for i := range table {
			names = append(names, table[i].Name)
		}
	} else {
		names = append([]string(nil), names...)
	}
	sort.Strings(names)
	var b bytes.Buffer
	prev := ""
	for _, n := range names {
		if n == prev || onlyNonDefault && !c.IsSet(n) {
			continue
		}
		prev = n
		if v := c.raw[n]; v == "" {
			fmt.Fprintf(&b, "%s =\n", n)
		} else {
			fmt.Fprintf(&b, "%s = %s\n", n, v)
		}
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("config: print: %w", err)
	}
	return nil
}
