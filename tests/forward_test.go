package tests

// Local delivery for Unix users (issue 7 §4): ~/.forward with commands,
// files and addresses, aliases with |command, :include: and owner-X,
// forwarding loops, sysexits codes of commands, and mbox delivery. As
// root (CI) with real system users made here with useradd.

import (
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fwdUser is a system user made for a test, with a home of its own.
type fwdUser struct {
	name     string
	uid, gid int
	home     string
}

// fwdUsers creates system users with homes (mode 0755, owned by them)
// below one fresh directory, which it returns; they are removed at the
// end of the test. Start the instance after this: local reads the user
// database at start.
func fwdUsers(t *testing.T, names ...string) (string, map[string]*fwdUser) {
	t.Helper()
	if !isRoot() {
		t.Fatal("this test creates system users: it must run as root (CI does)")
	}
	base, err := os.MkdirTemp("", "postern-fwd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	out := map[string]*fwdUser{}
	for _, n := range names {
		if _, err := user.Lookup(n); err == nil {
			exec.Command("userdel", "-f", n).Run()
		}
		home := filepath.Join(base, n)
		if b, err := exec.Command("useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", n).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", n, err, b)
		}
		uid, gid := lookupIDs(t, n)
		if err := os.Mkdir(home, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(home, uid, gid)
		out[n] = &fwdUser{name: n, uid: uid, gid: gid, home: home}
	}
	t.Cleanup(func() {
		for _, n := range names {
			if b, err := exec.Command("userdel", "-f", n).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v\n%s", n, err, b)
			}
		}
		if !t.Failed() {
			os.RemoveAll(base)
		}
	})
	return base, out
}

// writeAs writes a file owned by the user with the given mode.
func (u *fwdUser) writeAs(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(u.home, name)
	os.Remove(p)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	os.Chown(p, u.uid, u.gid)
	return p
}

func (u *fwdUser) maildir() string { return filepath.Join(u.home, "Maildir") }

// fwdWaitFile waits for a file to exist and have content.
func fwdWaitFile(t *testing.T, in *Instance, path string) []byte {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			time.Sleep(100 * time.Millisecond) // let a writer finish
			b, _ = os.ReadFile(path)
			return b
		}
	}
	t.Fatalf("%s did not appear:\n%s", path, in.Log())
	return nil
}

func fwdOwner(t *testing.T, path string) int {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Sys().(*syscall.Stat_t).Uid)
}

// fwdLogLines counts the log lines that contain every one of parts.
func fwdLogLines(in *Instance, parts ...string) []string {
	var out []string
	for _, l := range strings.Split(in.Log(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func fwdSend(t *testing.T, in *Instance, from, to, subject, body string) {
	t.Helper()
	msg := "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: " + subject + "\r\n\r\n" + strings.ReplaceAll(body, "\n", "\r\n")
	if err := smtp.SendMail(in.Addr, nil, from, []string{to}, []byte(msg)); err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
}

// fwdReport waits for a new delivery report in the maildir and returns
// the parsed report's only recipient's fields.
func fwdReport(t *testing.T, in *Instance, maildir string, before []string) (map[string]string, string) {
	t.Helper()
	f := newMaildirFile(t, maildir, before)
	p := parseReport(t, f)
	if len(p.Recipients) != 1 {
		t.Fatalf("report with %d recipients:\n%s", len(p.Recipients), in.Log())
	}
	r := p.Recipients[0]
	b, _ := os.ReadFile(f)
	return map[string]string{
		"Final-Recipient": r.Get("Final-Recipient"), "Action": r.Get("Action"),
		"Status": r.Get("Status"), "Diagnostic-Code": r.Get("Diagnostic-Code"),
	}, string(b)
}

func TestForward(t *testing.T) {
	base, users := fwdUsers(t, "posternfwd1", "posternfwd2")
	u1, u2 := users["posternfwd1"], users["posternfwd2"]
	inc := filepath.Join(base, "list.inc")
	if err := os.WriteFile(inc, []byte("# members\nposternfwd2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	drop := filepath.Join(base, "drop")
	os.Mkdir(drop, 0o777)
	os.Chmod(drop, 0o1777)
	inc2 := filepath.Join(base, "commands.inc")
	if err := os.WriteFile(inc2, []byte("\"|id -u > "+drop+"/include-pipe\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(inc2, u2.uid, u2.gid)
	in := Start(t, Options{Settings: []string{"allow_mail_to_commands = alias, forward, include"}, Aliases: "postmaster: demo@example.test\n" +
		"inc2: :include:" + inc2 + "\n" +
		"loopa: loopb\nloopb: loopa\n" +
		"list: posternfwd1, posternfwd2\nowner-list: demo@example.test\n" +
		"inc: :include:" + inc + "\n" +
		"tonobody: \"|id -u > " + drop + "/alias-pipe; cat >> " + drop + "/alias-pipe\"\n"})
	demo := in.Maildir("demo")

	t.Run("pipe runs as the user", func(t *testing.T) {
		u1.writeAs(t, ".forward", "# deliver to a script\n|env > $HOME/env; cat > $HOME/piped\n", 0o644)
		fwdSend(t, in, "a@example.org", "posternfwd1@localhost", "to a pipe", "piped body\n")
		b := fwdWaitFile(t, in, filepath.Join(u1.home, "piped"))
		if got := fwdOwner(t, filepath.Join(u1.home, "piped")); got != u1.uid {
			t.Errorf("the command's file is owned by uid %d, want %d", got, u1.uid)
		}
		for _, want := range []string{"Return-Path: <a@example.org>\n", "Delivered-To: posternfwd1@localhost\n", "piped body\n"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("piped message lacks %q:\n%s", want, b)
			}
		}
		if strings.Contains(string(b), "\r") {
			t.Errorf("the command got CR characters")
		}
		env := string(fwdWaitFile(t, in, filepath.Join(u1.home, "env")))
		for _, want := range []string{"SENDER=a@example.org\n", "RECIPIENT=posternfwd1@localhost\n", "USER=posternfwd1\n",
			"HOME=" + u1.home + "\n", "PATH=/usr/bin:/bin\n", "LOCAL=posternfwd1\n", "DOMAIN=localhost\n"} {
			if !strings.Contains(env, want) {
				t.Errorf("environment lacks %q:\n%s", want, env)
			}
		}
		if !in.WaitLog("to=<posternfwd1@localhost>, relay=local", 5*time.Second) || !in.WaitLog("status=sent (delivered to command:", 5*time.Second) {
			t.Errorf("no delivery log line:\n%s", in.Log())
		}
	})

	t.Run("file and own mailbox", func(t *testing.T) {
		saved := filepath.Join(u1.home, "saved")
		u1.writeAs(t, ".forward", saved+", \\posternfwd1\n", 0o600)
		before := Messages(u1.maildir())
		fwdSend(t, in, "a@example.org", "posternfwd1@localhost", "to a file", "From the start\nfiled body\n")
		b := fwdWaitFile(t, in, saved)
		if !strings.HasPrefix(string(b), "From a@example.org ") || !strings.Contains(string(b), "\n>From the start\nfiled body\n\n") {
			t.Errorf("file content:\n%s", b)
		}
		if got := fwdOwner(t, saved); got != u1.uid {
			t.Errorf("file owned by %d, want %d", got, u1.uid)
		}
		f := newMaildirFile(t, u1.maildir(), before)
		if got := fwdOwner(t, f); got != u1.uid {
			t.Errorf("maildir file owned by %d, want %d", got, u1.uid)
		}
	})

	t.Run("insecure forward refused", func(t *testing.T) {
		u1.writeAs(t, ".forward", "|touch $HOME/should-not-run\n", 0o666)
		before := Messages(u1.maildir())
		fwdSend(t, in, "a@example.org", "posternfwd1@localhost", "insecure", "body\n")
		newMaildirFile(t, u1.maildir(), before)
		if _, err := os.Stat(filepath.Join(u1.home, "should-not-run")); err == nil {
			t.Errorf("the command of a world-writable .forward ran")
		}
		if !in.WaitLog("ignoring insecure .forward file "+filepath.Join(u1.home, ".forward")+" of user posternfwd1 (group or world writable", 5*time.Second) {
			t.Errorf("no warning about the insecure .forward:\n%s", in.Log())
		}
	})

	t.Run("pipe exit 75 deferred and retried", func(t *testing.T) {
		u1.writeAs(t, ".forward", "|exit 75\n", 0o644)
		fwdSend(t, in, "a@example.org", "posternfwd1@localhost", "tempfail", "try again\n")
		if !in.WaitLog("dsn=4.3.0, status=deferred (command died with status 75", 15*time.Second) {
			t.Fatalf("no deferral:\n%s", in.Log())
		}
		out, _ := in.Postern("queue", "list")
		if !strings.Contains(out, "posternfwd1@localhost") {
			t.Fatalf("the message is not waiting in the queue:\n%s", out)
		}
		u1.writeAs(t, ".forward", "|cat > $HOME/retried\n", 0o644)
		in.postern("queue", "flush")
		b := fwdWaitFile(t, in, filepath.Join(u1.home, "retried"))
		if !strings.Contains(string(b), "try again") {
			t.Errorf("retried content:\n%s", b)
		}
		waitQueueEmpty(t, in, 10*time.Second)
	})

	t.Run("pipe exit 67 bounced", func(t *testing.T) {
		u1.writeAs(t, ".forward", "\"|echo no such mailbox here >&2; exit 67\"\n", 0o644)
		before := Messages(demo)
		fwdSend(t, in, "demo@example.test", "posternfwd1@localhost", "permfail", "bounce me\n")
		r, text := fwdReport(t, in, demo, before)
		if r["Action"] != "failed" || r["Status"] != "5.1.1" || !strings.Contains(r["Final-Recipient"], "posternfwd1@localhost") {
			t.Errorf("report: %v", r)
		}
		if !strings.Contains(text, "no such mailbox here") {
			t.Errorf("the command's output is not in the report:\n%s", text)
		}
		if !in.WaitLog("status=bounced (command died with status 67", 5*time.Second) {
			t.Errorf("no bounce log line")
		}
	})

	t.Run("forward to another host", func(t *testing.T) {
		u1.writeAs(t, ".forward", "someone@remote.example\n", 0o644)
		fwdSend(t, in, "a@example.org", "posternfwd1@localhost", "onwards", "to elsewhere\n")
		if !in.WaitLog("to=<someone@remote.example>, orig_to=<posternfwd1@localhost>, relay=local", 15*time.Second) ||
			!in.WaitLog("status=sent (forwarded as ", 5*time.Second) {
			t.Fatalf("no forwarding log line:\n%s", in.Log())
		}
		// The copy waits for remote.example (SERVFAIL here) with the
		// original sender.
		out, _ := in.Postern("queue", "list")
		if !strings.Contains(out, "someone@remote.example") || !strings.Contains(out, "a@example.org") {
			t.Errorf("the forwarded copy is not queued:\n%s", out)
		}
		os.Remove(filepath.Join(u1.home, ".forward"))
	})

	t.Run("include", func(t *testing.T) {
		before := Messages(u2.maildir())
		fwdSend(t, in, "a@example.org", "inc@localhost", "included", "to the include list\n")
		f := newMaildirFile(t, u2.maildir(), before)
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), "to the include list") {
			t.Errorf("message:\n%s", b)
		}
	})

	t.Run("include command as the include file's owner", func(t *testing.T) {
		fwdSend(t, in, "a@example.org", "inc2@localhost", "include pipe", "to the include owner\n")
		b := fwdWaitFile(t, in, filepath.Join(drop, "include-pipe"))
		if got := strings.TrimSpace(string(b)); got != strconv.Itoa(u2.uid) {
			t.Errorf("the include file's command ran as uid %s, want its owner %d", got, u2.uid)
		}
	})

	t.Run("alias pipe as default_privs", func(t *testing.T) {
		fwdSend(t, in, "a@example.org", "tonobody@localhost", "alias pipe", "to nobody\n")
		b := fwdWaitFile(t, in, filepath.Join(drop, "alias-pipe"))
		nobody, _ := lookupIDs(t, "nobody")
		if first, _, _ := strings.Cut(string(b), "\n"); first != strconv.Itoa(nobody) {
			t.Errorf("the command of a root-owned alias ran as uid %s, want nobody (%d)", first, nobody)
		}
	})

	t.Run("alias loop bounced", func(t *testing.T) {
		before := Messages(demo)
		fwdSend(t, in, "demo@example.test", "loopa@localhost", "loop", "round and round\n")
		r, _ := fwdReport(t, in, demo, before)
		if r["Action"] != "failed" || r["Status"] != "5.4.6" {
			t.Errorf("report: %v", r)
		}
		if !in.WaitLog("mail forwarding loop", 5*time.Second) {
			t.Errorf("no loop log line")
		}
	})

	t.Run("owner alias is the sender of list mail", func(t *testing.T) {
		b1, b2 := Messages(u1.maildir()), Messages(u2.maildir())
		fwdSend(t, in, "a@example.org", "list@localhost", "list mail", "to the list\n")
		for _, f := range []string{newMaildirFile(t, u1.maildir(), b1), newMaildirFile(t, u2.maildir(), b2)} {
			b, _ := os.ReadFile(f)
			if !strings.HasPrefix(string(b), "Return-Path: <owner-list@localhost>\n") {
				t.Errorf("list copy not from owner-list:\n%.300s", b)
			}
		}
	})
}

// TestMboxDelivery: with home_mailbox a file name, local appends to an
// mbox in the home directory, as the user, with From_ lines quoted.
func TestMboxDelivery(t *testing.T) {
	_, users := fwdUsers(t, "posternfwd1")
	u := users["posternfwd1"]
	in := Start(t, Options{Settings: []string{"home_mailbox = Mailbox"}})
	fwdSend(t, in, "a@example.org", "posternfwd1@localhost", "first", "From the top\n>From quoted\nend\n")
	fwdSend(t, in, "", "posternfwd1@localhost", "second", "two\n")
	mb := filepath.Join(u.home, "Mailbox")
	var b []byte
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		b, _ = os.ReadFile(mb)
		if strings.Count(string(b), "\nFrom ") >= 1 && strings.HasSuffix(string(b), "two\n\n") {
			break
		}
	}
	s := string(b)
	if !strings.HasPrefix(s, "From a@example.org ") {
		t.Fatalf("mailbox does not start with a From line:\n%s\n%s", s, in.Log())
	}
	for _, want := range []string{"\n>From the top\n>>From quoted\nend\n\n", "\nFrom MAILER-DAEMON ", "Return-Path: <>\n", "Delivered-To: posternfwd1@localhost\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("mailbox lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "\nFrom ") != 1 {
		t.Errorf("want exactly two messages:\n%s", s)
	}
	if got := fwdOwner(t, mb); got != u.uid {
		t.Errorf("mailbox owned by %d, want %d", got, u.uid)
	}
	if len(fwdLogLines(in, "to=<posternfwd1@localhost>", "status=sent (delivered to mailbox)")) < 2 {
		time.Sleep(time.Second)
	}
	if n := len(fwdLogLines(in, "to=<posternfwd1@localhost>", "status=sent (delivered to mailbox)")); n != 2 {
		t.Errorf("%d delivery log lines, want 2", n)
	}
	if _, err := os.Stat(mb + ".lock"); err == nil {
		t.Errorf("dot lock left behind")
	}
}
