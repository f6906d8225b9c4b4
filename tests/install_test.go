package tests

// Install and packaging (issue 7 §5): `make install` into a DESTDIR, the
// example configurations, the fail2ban filter against the lines a real
// run logs, and the Debian package: built with dpkg-buildpackage from a
// copy of the tree, installed with dpkg -i into a throwaway copy of this
// machine (an overlay of / in a private mount, network and pid namespace),
// where Postern must take the place of the system's MTA and deliver.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/internal/config"
)

// The programs `make install` lays out (Makefile DAEMONS and COMMANDS).
var (
	installDaemons  = []string{"master", "smtpd", "cleanup", "qmgr", "local", "smtp", "auth", "pickup", "showq", "pop3-login", "pop3d", "imap-login", "imapd"}
	installCommands = []string{"postern", "sendmail", "postern-drop"}
)

// repoRoot is the source tree the tests run in (tests/..).
func repoRoot(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "Makefile")); err != nil {
		t.Fatalf("no Makefile in %s: %v", d, err)
	}
	return d
}

// runTimeout runs a command in dir with a deadline and returns its
// combined output; it fails the test on error or timeout.
func runTimeout(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runTimeoutErr(timeout, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runTimeoutErr(timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// A make or dpkg-buildpackage killed at the deadline must take its
	// children (go build, dh) with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	return b.String(), err
}

// checkMode asserts a file's type and permission bits, and its group
// when group is not empty.
func checkMode(t *testing.T, path string, mode fs.FileMode, group string) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if got := st.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky); got != mode {
		t.Errorf("%s: mode %v, want %v", path, got, mode)
	}
	if group != "" {
		gid := st.Sys().(*syscall.Stat_t).Gid
		g, err := user.LookupGroupId(strconv.Itoa(int(gid)))
		if err != nil || g.Name != group {
			t.Errorf("%s: group %d, want %s", path, gid, group)
		}
	}
}

func checkLink(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.Readlink(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
	} else if got != want {
		t.Errorf("%s -> %s, want -> %s", path, got, want)
	}
}

// TestInstallDestdir installs with PREFIX=/usr into a DESTDIR, as a
// package build does, and checks the layout, the modes, the links other
// MTAs own, the default configuration, that the installed postern finds
// its daemons, that a second install keeps an edited configuration, and
// that uninstall removes the programs but not the configuration.
func TestInstallDestdir(t *testing.T) {
	ensureUsers(t)
	root := repoRoot(t)
	dest := t.TempDir()
	out := runTimeout(t, 5*time.Minute, root, nil, "make", "install", "DESTDIR="+dest, "PREFIX=/usr")
	t.Logf("make install:\n%s", out)

	for _, c := range installCommands {
		if c != "postern-drop" {
			checkMode(t, filepath.Join(dest, "usr/sbin", c), 0o755, "")
		}
	}
	drop := filepath.Join(dest, "usr/sbin/postern-drop")
	if isRoot() {
		checkMode(t, drop, 0o755|fs.ModeSetgid, "postdrop")
	} else {
		checkMode(t, drop, 0o755, "")
		if !strings.Contains(out, "chgrp postdrop /usr/sbin/postern-drop && chmod 2755 /usr/sbin/postern-drop") {
			t.Errorf("make install as an ordinary user does not say what to do with postern-drop:\n%s", out)
		}
	}
	for _, d := range installDaemons {
		checkMode(t, filepath.Join(dest, "usr/libexec/postern", d), 0o755, "")
	}
	// mailq and newaliases beside sendmail, and the paths other MTAs use;
	// /usr/sbin/sendmail is the program itself with PREFIX=/usr.
	checkLink(t, filepath.Join(dest, "usr/sbin/mailq"), "sendmail")
	checkLink(t, filepath.Join(dest, "usr/sbin/newaliases"), "sendmail")
	checkLink(t, filepath.Join(dest, "usr/lib/sendmail"), "../sbin/sendmail")
	checkLink(t, filepath.Join(dest, "usr/bin/mailq"), "../sbin/sendmail")
	checkLink(t, filepath.Join(dest, "usr/bin/newaliases"), "../sbin/sendmail")
	for _, m := range []string{"man8/master.8", "man1/postern.1", "man5/postern.conf.5"} {
		checkMode(t, filepath.Join(dest, "usr/share/man", m), 0o644, "")
	}
	for _, e := range []string{"local-only/postern.conf", "internet-mx/services.conf", "smarthost/sasl_passwd"} {
		checkMode(t, filepath.Join(dest, "usr/share/doc/postern/examples", e), 0o644, "")
	}
	etc := filepath.Join(dest, "etc/postern")
	checkMode(t, filepath.Join(etc, "postern.conf"), 0o644, "")
	checkMode(t, filepath.Join(etc, "services.conf"), 0o644, "")

	// The build recorded LIBEXECDIR and SYSCONFDIR: the installed postern
	// needs no option to find either.
	got := runTimeout(t, time.Minute, "", nil, filepath.Join(dest, "usr/sbin/postern"), "-c", etc, "config", "daemon_directory")
	if strings.TrimSpace(got) != "daemon_directory = /usr/libexec/postern" {
		t.Errorf("installed postern's compiled-in daemon_directory:\n%s", got)
	}
	// Without -c it reads /etc/postern (which may not exist here: then
	// the error names it).
	got, _ = runTimeoutErr(time.Minute, "", []string{"POSTERN_CONFIG_DIR="}, filepath.Join(dest, "usr/sbin/postern"), "config", "config_directory")
	if !strings.Contains(got, "/etc/postern") {
		t.Errorf("installed postern's compiled-in configuration directory:\n%s", got)
	}

	// A second install never touches the configuration.
	conf := filepath.Join(etc, "postern.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("# edited by the administrator\n")
	f.Close()
	runTimeout(t, 5*time.Minute, root, nil, "make", "install", "DESTDIR="+dest, "PREFIX=/usr")
	if b, _ := os.ReadFile(conf); !bytes.HasSuffix(b, []byte("# edited by the administrator\n")) {
		t.Errorf("a second make install rewrote %s", conf)
	}

	runTimeout(t, 5*time.Minute, root, nil, "make", "uninstall", "DESTDIR="+dest, "PREFIX=/usr")
	for _, p := range []string{"usr/sbin/postern", "usr/sbin/sendmail", "usr/sbin/postern-drop", "usr/sbin/mailq",
		"usr/lib/sendmail", "usr/bin/mailq", "usr/bin/newaliases", "usr/libexec/postern", "usr/share/man/man8/master.8",
		"usr/share/doc/postern"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); err == nil {
			t.Errorf("make uninstall left %s", p)
		}
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("make uninstall removed the configuration: %v", err)
	}
}

// TestInstallKeepsOtherSendmail installs with the default PREFIX over a
// DESTDIR where another MTA's /usr/sbin/sendmail is: it is kept aside,
// the system links point into /usr/local, and uninstall puts it back.
// The install runs as an ordinary user (posterntest) when the test runs
// as root: a packager's DESTDIR install needs no privilege.
func TestInstallKeepsOtherSendmail(t *testing.T) {
	ensureUsers(t)
	root := repoRoot(t)
	// Build first (as the test's user: bin/ is in the tree), so that the
	// unprivileged install below only copies, from a copy of what it
	// needs that the ordinary user can read wherever the tree is.
	runTimeout(t, 5*time.Minute, root, nil, "make", "build")
	dest, stage := t.TempDir(), t.TempDir()
	os.Chmod(filepath.Dir(dest), 0o755) // t.TempDir's parent is 0700
	for _, p := range []string{"Makefile", "bin", "man", "contrib"} {
		runTimeout(t, time.Minute, "", nil, "cp", "-a", filepath.Join(root, p), stage)
	}
	runTimeout(t, time.Minute, "", nil, "chmod", "-R", "a+rX", stage)
	other := filepath.Join(dest, "usr/sbin/sendmail")
	os.MkdirAll(filepath.Dir(other), 0o755)
	if err := os.WriteFile(other, []byte("#!/bin/sh\necho other MTA\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var wrap []string
	if isRoot() {
		uid, gid := lookupIDs(t, "posterntest")
		if err := filepath.WalkDir(dest, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		}); err != nil {
			t.Fatal(err)
		}
		wrap = []string{"setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups"}
	}
	// -o build: bin/ is up to date; make must not rebuild as this user.
	args := append(wrap, "make", "-o", "build", "install", "DESTDIR="+dest)
	out := runTimeout(t, 5*time.Minute, stage, []string{"HOME=" + dest}, args[0], args[1:]...)
	t.Logf("make install as an ordinary user:\n%s", out)
	checkMode(t, filepath.Join(dest, "usr/local/sbin/postern-drop"), 0o755, "")
	if !strings.Contains(out, "chmod 2755 /usr/local/sbin/postern-drop") {
		t.Errorf("make install does not say what to do with postern-drop:\n%s", out)
	}
	checkLink(t, other, "../local/sbin/sendmail")
	checkLink(t, filepath.Join(dest, "usr/lib/sendmail"), "../local/sbin/sendmail")
	checkLink(t, filepath.Join(dest, "usr/bin/newaliases"), "../local/sbin/sendmail")
	if b, err := os.ReadFile(other + ".pre-postern"); err != nil || !strings.Contains(string(b), "other MTA") {
		t.Errorf("the other MTA's sendmail was not kept as sendmail.pre-postern: %v", err)
	}
	checkMode(t, filepath.Join(dest, "usr/local/libexec/postern/master"), 0o755, "")
	checkMode(t, filepath.Join(dest, "etc/postern/postern.conf"), 0o644, "")

	args = append(wrap, "make", "-o", "build", "uninstall", "DESTDIR="+dest)
	runTimeout(t, 5*time.Minute, stage, []string{"HOME=" + dest}, args[0], args[1:]...)
	if b, err := os.ReadFile(other); err != nil || !strings.Contains(string(b), "other MTA") {
		t.Errorf("make uninstall did not put the other MTA's sendmail back: %v", err)
	}
	for _, p := range []string{"usr/lib/sendmail", "usr/bin/mailq", "usr/local/sbin/sendmail"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); err == nil {
			t.Errorf("make uninstall left %s", p)
		}
	}
}

// TestInstallExamples loads each example configuration of contrib/examples
// as master would (settings, services, every table), and checks what the
// local-only host's transport table decides.
func TestInstallExamples(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "contrib/examples")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, e := range ents {
		if e.IsDir() {
			roles = append(roles, e.Name())
		}
	}
	sort.Strings(roles)
	if strings.Join(roles, " ") != "internet-mx local-only smarthost" {
		t.Errorf("example roles: %v", roles)
	}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			etc := t.TempDir()
			files, _ := os.ReadDir(filepath.Join(dir, role))
			for _, f := range files {
				b, err := os.ReadFile(filepath.Join(dir, role, f.Name()))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(etc, f.Name()), b, 0o644)
			}
			if _, err := os.Stat(filepath.Join(etc, config.ServicesFile)); err != nil {
				os.WriteFile(filepath.Join(etc, config.ServicesFile), []byte(config.DefaultServices), 0o644)
			}
			// The tables outside the directory are the administrator's:
			// point them at empty ones here.
			f, _ := os.OpenFile(filepath.Join(etc, config.MainFile), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("\n# test\nalias_maps = texthash:aliases\n")
			f.Close()
			os.WriteFile(filepath.Join(etc, "aliases"), []byte("postmaster: root\n"), 0o644)
			cfg, err := config.Load(etc)
			if err != nil {
				t.Fatalf("%s does not load:\n%v", role, err)
			}
			if err := cfg.CheckMaps(); err != nil {
				t.Fatalf("%s: tables:\n%v", role, err)
			}
			switch role {
			case "local-only":
				if v := cfg.Get("default_transport"); !strings.HasPrefix(v, "error:5.7.1 ") {
					t.Errorf("default_transport = %q, want error:5.7.1 ...", v)
				}
				if cfg.Get("inet_interfaces") != "loopback-only" {
					t.Errorf("inet_interfaces = %q", cfg.Get("inet_interfaces"))
				}
			case "smarthost":
				m, err := cfg.Maps("smtp_sasl_password_maps")
				if err != nil {
					t.Fatal(err)
				}
				if v, ok := m.Lookup(cfg.Get("relayhost")); !ok || !strings.Contains(v, ":") {
					t.Errorf("no user:password for relayhost %s in sasl_passwd", cfg.Get("relayhost"))
				}
			case "internet-mx":
				m, err := cfg.Maps("virtual_mailbox_maps")
				if err != nil {
					t.Fatal(err)
				}
				if v, _ := m.Lookup("alice@example.org"); v != "example.org/alice/" {
					t.Errorf("vmailbox alice@example.org = %q", v)
				}
			}
		})
	}
}

// TestInstallExampleLocalOnly runs a Postern with the local-only
// example's default_transport: local mail is delivered, and mail for
// another domain bounces at once with the example's text instead of being
// sent out.
func TestInstallExampleLocalOnly(t *testing.T) {
	conf, err := os.ReadFile(filepath.Join(repoRoot(t), "contrib/examples/local-only/postern.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var setting string
	for _, l := range strings.Split(string(conf), "\n") {
		if strings.HasPrefix(l, "default_transport = ") {
			setting = l
		}
	}
	if setting == "" {
		t.Fatalf("no default_transport in the example:\n%s", conf)
	}
	in := Start(t, Options{Settings: []string{setting}})
	send := func(to string) {
		msg := "From: demo@example.test\r\nTo: " + to + "\r\nSubject: local-only\r\n\r\nhello\r\n"
		if err := smtp.SendMail(in.Addr, nil, "demo@example.test", []string{to}, []byte(msg)); err != nil {
			t.Fatalf("to %s: %v", to, err)
		}
	}
	send("demo@example.test")
	send("someone@elsewhere.example")
	// The message to demo, and the bounce of the other.
	files := WaitMessages(t, in.Maildir("demo"), 2, 20*time.Second)
	if len(files) != 2 {
		t.Fatalf("want 2 messages for demo, have %d\n%s", len(files), in.Log())
	}
	var bounce bool
	for _, f := range files {
		b, _ := os.ReadFile(f)
		bounce = bounce || strings.Contains(string(b), "this host sends no mail to other domains")
	}
	if !bounce {
		t.Errorf("no bounce with the example's text for someone@elsewhere.example:\n%s", in.Log())
	}
	if !strings.Contains(in.Log(), "to=<someone@elsewhere.example>") || !strings.Contains(in.Log(), "status=bounced") {
		t.Errorf("the log does not show the bounce:\n%s", in.Log())
	}
}

// TestInstallFail2banFilter runs fail2ban-regex with contrib's filter
// over the log of a real run in which a client fails SMTP AUTH on the
// submission port and a login on POP3 and IMAP: exactly those clients'
// addresses must match, and none of the other lines (successful logins,
// connects, deliveries).
func TestInstallFail2banFilter(t *testing.T) {
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		t.Fatalf("fail2ban-regex is not installed (Debian's fail2ban; make deps): %v", err)
	}
	ensureUsers(t)
	in := Start(t, Options{MailAccess: true})

	// SMTP AUTH with a wrong password, over implicit TLS.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.SubmissionsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := smtp.NewClient(c, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(smtp.PlainAuth("", "demo@example.test", "wrong", "127.0.0.1")); err == nil {
		t.Fatal("AUTH with a wrong password succeeded")
	}
	sc.Close()
	// And a right one, which must not count.
	c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.SubmissionsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if sc, err = smtp.NewClient(c, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(smtp.PlainAuth("", "demo@example.test", "demo-secret", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH with the right password: %v", err)
	}
	sc.Quit()

	// POP3 and IMAP logins with a wrong password (plaintext is allowed on
	// loopback).
	dialog := func(addr string, lines ...string) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		conn.Read(buf) // greeting
		for _, l := range lines {
			conn.Write([]byte(l + "\r\n"))
			n, _ := conn.Read(buf)
			t.Logf("%s: %s -> %s", addr, l, strings.TrimSpace(string(buf[:n])))
		}
	}
	dialog(in.POP3Addr, "USER demo@example.test", "PASS wrong")
	dialog(in.IMAPAddr, "a LOGIN demo@example.test wrong")

	// Each failure is logged before its reply is sent, and master copies
	// the daemons' lines into the log a moment later: wait for all three.
	logged := func() bool {
		var smtpFail, loginFail int
		for _, l := range strings.Split(in.Log(), "\n") {
			switch {
			case strings.Contains(l, "/smtpd[") && strings.Contains(l, "SASL PLAIN authentication failed"):
				smtpFail++
			case strings.Contains(l, "-login[") && strings.Contains(l, "auth failed"):
				loginFail++
			}
		}
		return smtpFail == 1 && loginFail == 2
	}
	for deadline := time.Now().Add(15 * time.Second); !logged() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if !logged() {
		t.Fatalf("the log does not have one SMTP AUTH and two login failures:\n%s", in.Log())
	}

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "filter.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "filter.d/common.conf"), mustRead(t, "/etc/fail2ban/filter.d/common.conf"), 0o644)
	os.WriteFile(filepath.Join(dir, "filter.d/postern.conf"), mustRead(t, filepath.Join(repoRoot(t), "contrib/fail2ban/filter.d/postern.conf")), 0o644)
	logFile := filepath.Join(dir, "mail.log")
	os.WriteFile(logFile, []byte(in.Log()), 0o644)
	out := runTimeout(t, time.Minute, "", nil, "fail2ban-regex", "-o", "ip", logFile, filepath.Join(dir, "filter.d/postern.conf"))
	ips := strings.Fields(out)
	if strings.Join(ips, " ") != "127.0.0.1 127.0.0.1 127.0.0.1" {
		t.Errorf("fail2ban-regex found %q, want 127.0.0.1 three times (SMTP AUTH, POP3, IMAP); the log:\n%s", ips, in.Log())
	}

	// The jail loads with the filter (fail2ban-client -t), reading the log
	// above instead of /var/log/mail.log; Debian's own sshd jail is left
	// out, since there may be no auth.log here.
	conf := filepath.Join(dir, "fail2ban")
	runTimeout(t, time.Minute, "", nil, "cp", "-a", "/etc/fail2ban", conf)
	os.Remove(filepath.Join(conf, "jail.d/defaults-debian.conf"))
	os.WriteFile(filepath.Join(conf, "filter.d/postern.conf"), mustRead(t, filepath.Join(repoRoot(t), "contrib/fail2ban/filter.d/postern.conf")), 0o644)
	jail := strings.Replace(string(mustRead(t, filepath.Join(repoRoot(t), "contrib/fail2ban/jail.d/postern.conf"))),
		"logpath  = /var/log/mail.log", "logpath  = "+logFile, 1)
	os.WriteFile(filepath.Join(conf, "jail.d/postern.conf"), []byte(jail), 0o644)
	out = runTimeout(t, time.Minute, "", nil, "fail2ban-client", "-c", conf, "-t")
	if !strings.Contains(out, "configuration test is successful") {
		t.Errorf("fail2ban-client -t with the postern jail:\n%s", out)
	}
	out = runTimeout(t, time.Minute, "", nil, "fail2ban-client", "-c", conf, "-d")
	if !strings.Contains(out, "['add', 'postern',") {
		t.Errorf("fail2ban-client -d has no postern jail:\n%s", out)
	}

	// The shapes the filter is documented for, IPv6 and service names too.
	sample := "Dec  3 07:04:01 vm postern/submission/smtpd[812]: warning: unknown[192.0.2.7]: SASL PLAIN authentication failed: authentication failed\n" +
		"Dec  3 07:04:02 vm postern/smtpd[812]: warning: mx.example.org[2001:db8::7]: SASL LOGIN authentication failed: x\n" +
		"Dec  3 07:04:03 vm postern/pop3s/pop3-login[90]: auth failed user=<alice> method=PLAIN rip=192.0.2.8 lip=192.0.2.1 tls=yes reason=\"x\"\n" +
		"Dec  3 07:04:04 vm postern/smtpd[812]: warning: unknown[192.0.2.10]: SASL PLAIN authentication temporarily unavailable: x\n" +
		"Dec  3 07:04:05 vm postern/login/pop3d/pop3d[93]: auth failed: user=<alice> method=PLAIN rip=192.0.2.8 reason=x\n" +
		"Dec  3 07:04:06 vm postern/smtpd[812]: connect from unknown[192.0.2.11]\n"
	os.WriteFile(logFile, []byte(sample), 0o644)
	out = runTimeout(t, time.Minute, "", nil, "fail2ban-regex", "-o", "ip", logFile, filepath.Join(dir, "filter.d/postern.conf"))
	if got := strings.Join(strings.Fields(out), " "); got != "192.0.2.7 2001:db8::7 192.0.2.8" {
		t.Errorf("fail2ban-regex on the samples found %q", got)
	}
}

// TestInstallDebianPackage builds the .deb with dpkg-buildpackage from a
// copy of the tree (contrib/debian linked as debian/), then installs it
// in a throwaway copy of this machine: a new mount, network and pid
// namespace, an overlay over / whose upper layer is a tmpfs, and a chroot
// into it. There the other MTA (Debian's postfix, a test peer here) is
// purged, the package installed with dpkg -i, and a smoke test run: the
// accounts, modes and links, systemd-analyze verify of the unit, `postern
// start`, mail from a user through /usr/sbin/sendmail, mail(1), cron's
// command line and sendmail -t, and by SMTP, delivered into the user's
// Maildir, log rotation, `postern stop`, and a purge. Nothing of it reaches the real system; the
// namespace's processes all end with it.
func TestInstallDebianPackage(t *testing.T) {
	if !isRoot() {
		t.Skip("dpkg -i into an overlay of / needs root (CI runs as root)")
	}
	for _, tool := range []string{"dpkg-buildpackage", "dh", "unshare", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (Debian's dpkg-dev, debhelper, util-linux, coreutils; make deps): %v", tool, err)
		}
	}
	root := repoRoot(t)
	work := t.TempDir()
	src := filepath.Join(work, "postern-0.1")
	os.Mkdir(src, 0o755)
	for _, p := range []string{"cmd", "internal", "man", "contrib", "Makefile", "go.mod", "go.sum", "LICENSE", "README.md"} {
		runTimeout(t, time.Minute, "", nil, "cp", "-a", filepath.Join(root, p), src)
	}
	if err := os.Symlink("contrib/debian", filepath.Join(src, "debian")); err != nil {
		t.Fatal(err)
	}
	// -d: Go is not a Debian package here (control says why). The host's
	// Go caches make the build quick; debian/rules uses its own otherwise.
	env := []string{"DEB_BUILD_OPTIONS=nocheck"}
	for _, v := range []string{"GOCACHE", "GOMODCACHE"} {
		if out, err := exec.Command("go", "env", v).Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			env = append(env, v+"="+string(bytes.TrimSpace(out)))
		}
	}
	out := runTimeout(t, 10*time.Minute, src, env, "dpkg-buildpackage", "-us", "-uc", "-b", "-d")
	t.Logf("dpkg-buildpackage (last lines):\n%s", lastLines(out, 15))
	debs, _ := filepath.Glob(filepath.Join(work, "postern_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("dpkg-buildpackage made %v", debs)
	}
	deb := debs[0]
	contents := runTimeout(t, time.Minute, "", nil, "dpkg-deb", "-c", deb)
	for _, want := range []string{"./usr/sbin/postern", "./usr/sbin/sendmail", "./usr/sbin/postern-drop", "./usr/lib/postern/master",
		"./usr/lib/postern/pickup", "./usr/bin/mailq -> ../sbin/sendmail", "./usr/lib/sendmail -> ../sbin/sendmail",
		"./lib/systemd/system/postern.service", "./etc/logrotate.d/postern", "./usr/share/man/man8/master.8"} {
		if !strings.Contains(contents, want) {
			t.Errorf("the package lacks %s", want)
		}
	}
	if strings.Contains(contents, "./etc/postern/postern.conf") {
		t.Error("the package ships postern.conf: postinst writes it (postern init), with this host's names")
	}
	info := runTimeout(t, time.Minute, "", nil, "dpkg-deb", "-f", deb, "Provides", "Conflicts", "Replaces")
	if strings.Count(info, "mail-transport-agent") != 3 {
		t.Errorf("Provides/Conflicts/Replaces:\n%s", info)
	}

	script := filepath.Join(work, "overlay.sh")
	inner := filepath.Join(work, "smoke.sh")
	os.WriteFile(script, []byte(overlayScript), 0o755)
	os.WriteFile(inner, []byte(smokeScript), 0o755)
	ovl := filepath.Join(work, "ovl")
	os.Mkdir(ovl, 0o755)
	out, err := runTimeoutErr(8*time.Minute, "", nil, "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
		"/bin/bash", script, ovl, deb, inner)
	t.Logf("smoke test in the overlay:\n%s", out)
	if err != nil || !strings.Contains(out, "PACKAGE SMOKE TEST PASSED") {
		t.Fatalf("the package's smoke test failed: %v", err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// overlayScript runs in fresh mount, network and pid namespaces: $1 is an
// empty directory for the overlay, $2 the .deb, $3 the smoke test. The
// upper layer is a tmpfs, so every change to the system is gone when the
// namespace ends; the overlay's lower layer is / itself (its own mounts,
// as /work or /tmp if they are separate, are not in it, hence the copies).
const overlayScript = `set -eu
T=$1 DEB=$2 SMOKE=$3
mount --make-rprivate /
mount -t tmpfs -o size=4g,mode=0755 postern-overlay "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay postern-overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
R=$T/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
ip link set lo up 2>/dev/null || true
cp "$DEB" "$SMOKE" "$R/tmp/"
exec chroot "$R" /bin/bash /tmp/$(basename "$SMOKE") /tmp/$(basename "$DEB")
`

// smokeScript runs inside the chroot as pid 1 of its namespace.
const smokeScript = `set -eu
DEB=$1
export DEBIAN_FRONTEND=noninteractive PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
fail() {
	echo "FAIL: $*"
	if [ -f /var/log/postern.log ]; then echo '--- /var/log/postern.log'; tail -n 60 /var/log/postern.log; fi
	exit 1
}
step() { echo "== $*"; }
# Maintainer scripts start no service here.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

step "remove the installed MTA (Postern conflicts with mail-transport-agent)"
for p in $(dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Provides}\n' | awk '$1 == "ii" && /mail-transport-agent/ { print $2 }'); do
	echo "dpkg --purge $p"
	dpkg --purge --force-depends "$p" >/dev/null || fail "dpkg --purge $p"
done

step "dpkg -i $(basename "$DEB")"
dpkg -i "$DEB" || fail "dpkg -i"
dpkg-query -W -f '${db:Status-Abbrev}\n' postern | grep -q '^ii' || fail "postern is not installed"

step "accounts, modes and links"
getent passwd postern >/dev/null || fail "no user postern"
getent group postdrop >/dev/null || fail "no group postdrop"
[ "$(id -gn postern)" != postdrop ] || fail "postdrop is postern's primary group"
[ "$(stat -c '%a %U:%G' /usr/sbin/postern-drop)" = "2755 root:postdrop" ] || fail "postern-drop is $(stat -c '%a %U:%G' /usr/sbin/postern-drop)"
for l in /usr/bin/mailq /usr/bin/newaliases /usr/lib/sendmail /usr/sbin/mailq /usr/sbin/newaliases; do
	[ "$(readlink -f $l)" = /usr/sbin/sendmail ] || fail "$l -> $(readlink -f $l)"
done
for d in master smtpd cleanup qmgr local smtp auth pickup showq pop3-login pop3d imap-login imapd; do
	[ -x /usr/lib/postern/$d ] || fail "no /usr/lib/postern/$d"
done
[ -f /etc/postern/postern.conf ] && [ -f /etc/postern/services.conf ] || fail "postinst wrote no configuration"
[ -f /etc/aliases ] || fail "no /etc/aliases"
[ -f /lib/systemd/system/postern.service ] || fail "no postern.service"
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify /lib/systemd/system/postern.service || fail "systemd-analyze verify postern.service"
fi
postern config daemon_directory | grep -q '= /usr/lib/postern$' || fail "daemon_directory: $(postern config daemon_directory)"

step "postern start"
postern config -e 'maillog_file = /var/log/postern.log'
useradd --create-home --shell /bin/sh posternsmoke
postern start || fail "postern start"
postern status || fail "postern status"

step "sendmail as a user, and SMTP on port 25"
uid=$(id -u posternsmoke) gid=$(id -g posternsmoke)
printf 'Subject: package smoke 1\n\nsent through /usr/sbin/sendmail\n' |
	setpriv --reuid=$uid --regid=$gid --init-groups /usr/sbin/sendmail -i posternsmoke || fail "sendmail exit $?"
python3 - <<'EOF' || fail "SMTP to port 25"
import smtplib
s = smtplib.SMTP("127.0.0.1", 25, timeout=30)
s.sendmail("root@localhost", ["posternsmoke@localhost"], "Subject: package smoke 2\r\n\r\nsent by SMTP\r\n")
s.quit()
EOF
wait_mail() {
	for i in $(seq 1 300); do
		[ "$(ls /home/posternsmoke/Maildir/new 2>/dev/null | wc -l)" -ge "$1" ] && return 0
		sleep 0.2
	done
	fail "fewer than $1 messages in /home/posternsmoke/Maildir/new"
}

step "mail(1), cron's sendmail command and sendmail -t, as the user"
asuser() { HOME=/home/posternsmoke setpriv --reuid=$uid --regid=$gid --init-groups "$@"; }
command -v mail >/dev/null || fail "mail(1) is not installed (Debian's bsd-mailx; make deps)"
echo 'sent by mail(1)' | asuser mail -s 'package smoke 3' posternsmoke || fail "mail(1) exit $?"
# What Debian's cron runs for a job's output.
printf 'From: root (Cron Daemon)\nTo: posternsmoke\nSubject: Cron <posternsmoke@host> true\n\nsent cron-style\n' |
	asuser /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem posternsmoke || fail "cron-style sendmail exit $?"
printf 'To: posternsmoke\nBcc: root\nSubject: package smoke 5\n\nsent with -t\n' |
	asuser /usr/sbin/sendmail -t -i || fail "sendmail -t exit $?"
wait_mail 5
for text in 'sent through /usr/sbin/sendmail' 'sent by SMTP' 'sent by mail(1)' 'sent cron-style' 'sent with -t'; do
	grep -l "$text" /home/posternsmoke/Maildir/new/* >/dev/null || fail "no message with '$text' in the Maildir"
done
! grep -l '^Bcc:' $(grep -l 'sent with -t' /home/posternsmoke/Maildir/new/*) || fail "sendmail -t left the Bcc header"
[ "$(stat -c %U /home/posternsmoke/Maildir/new/$(ls /home/posternsmoke/Maildir/new | head -1))" = posternsmoke ] || fail "the message is not owned by its user"

step "logrotate"
if command -v logrotate >/dev/null; then
	logrotate -f -s /tmp/logrotate.state /etc/logrotate.d/postern || fail "logrotate"
	[ -s /var/log/postern.log.1 ] || fail "no rotated /var/log/postern.log.1"
	printf 'Subject: package smoke 6\n\nafter the rotation\n' | /usr/sbin/sendmail -i posternsmoke || fail "sendmail after rotation"
	wait_mail 6
	for i in $(seq 1 100); do grep -q 'status=sent' /var/log/postern.log 2>/dev/null && break; sleep 0.1; done
	grep -q 'status=sent' /var/log/postern.log || fail "master did not reopen /var/log/postern.log after the rotation"
else
	fail "logrotate is not installed (make deps)"
fi

step "postern stop, dpkg --purge postern"
postern stop || fail "postern stop"
# --force-depends: mail(1) and the like depend on an MTA.
dpkg --purge --force-depends postern || fail "dpkg --purge postern"
[ ! -e /var/spool/postern ] || fail "purge left /var/spool/postern"
[ ! -e /etc/postern/postern.conf ] || fail "purge left /etc/postern/postern.conf"
! dpkg-statoverride --list /usr/sbin/postern-drop >/dev/null || fail "purge left the statoverride"
echo "PACKAGE SMOKE TEST PASSED"
`
