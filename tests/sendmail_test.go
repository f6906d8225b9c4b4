package tests

// End-to-end tests of local submission (issue 7 §1, §2): sendmail run as
// a non-root user, postern-drop setgid postdrop, pickup feeding cleanup.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postern/internal/config"
	"postern/internal/maildrop"
	"postern/internal/queue"
)

const submitUser = "posternsub"

var submitOnce sync.Once

// submitSetup builds pickup (and showq) into binDir, the daemon directory,
// and creates the unprivileged user that submits mail.
func submitSetup(t *testing.T) {
	t.Helper()
	if !isRoot() {
		t.Fatal("the submission tests run as root: they need a setgid postern-drop and a second user")
	}
	submitOnce.Do(func() {
		pkgs := []string{"../cmd/pickup"}
		if _, err := os.Stat("../cmd/showq"); err == nil {
			pkgs = append(pkgs, "../cmd/showq")
		}
		cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", binDir + "/"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %v: %v\n%s", pkgs, err, out)
		}
		if _, err := user.Lookup(submitUser); err != nil {
			if out, err := exec.Command("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", submitUser).CombinedOutput(); err != nil {
				t.Fatalf("useradd: %v\n%s", err, out)
			}
		}
	})
}

// submitInstance is a Postern with pickup (and showq), plus sendmail,
// postern-drop and postern built for its configuration directory (a
// setgid program takes no -c from a user) in Dir/sbin, postern-drop
// setgid postdrop as make install leaves it.
type submitInstance struct {
	*Instance
	sbin     string
	uid, gid int
}

func startSubmit(t *testing.T, o Options) *submitInstance {
	t.Helper()
	submitSetup(t)
	if !strings.Contains(config.DefaultServices, "\npickup ") {
		o.Services = append(o.Services, "pickup unix n - y 60 1 pickup")
	}
	if _, err := os.Stat(filepath.Join(binDir, "showq")); err == nil && !strings.Contains(config.DefaultServices, "\nshowq ") {
		o.Services = append(o.Services, "showq unix n - y - - showq")
	}
	in := Start(t, o)
	s := &submitInstance{Instance: in, sbin: filepath.Join(in.Dir, "sbin")}
	s.uid, s.gid = lookupIDs(t, submitUser)
	if err := os.Mkdir(s.sbin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X postern/internal/config.DefaultConfigDirectory="+in.Etc,
		"-o", s.sbin+"/", "../cmd/sendmail", "../cmd/postern-drop", "../cmd/postern")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	drop := filepath.Join(s.sbin, "postern-drop")
	if err := os.Chown(drop, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(drop, 0o2755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"mailq", "newaliases"} {
		if err := os.Symlink("sendmail", filepath.Join(s.sbin, l)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// run runs a program of sbin as the submitting user (root when asRoot)
// with stdin; it returns stdout, stderr and the exit code.
func (s *submitInstance) run(asRoot bool, prog string, stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.sbin, prog), args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if !asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid), Groups: []uint32{}}}
	}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		s.t.Fatalf("%s %q did not finish in 60 s", prog, args)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// sendmail runs sendmail as the user and fails the test unless it exits 0.
func (s *submitInstance) sendmail(stdin string, args ...string) {
	s.t.Helper()
	out, errs, code := s.run(false, "sendmail", stdin, args...)
	if code != 0 {
		s.t.Fatalf("sendmail %q: exit %d\n%s%s", args, code, out, errs)
	}
}

// waitFor waits for the message with the given Subject in a virtual
// mailbox and returns it.
func (s *submitInstance) waitFor(box, subject string) string {
	s.t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, m := range Messages(s.Maildir(box)) {
			b, err := os.ReadFile(m)
			if err == nil && header(string(b), "Subject") == subject {
				return string(b)
			}
		}
	}
	s.t.Fatalf("no message %q in %s\n%s", subject, box, s.Log())
	return ""
}

func (s *submitInstance) maildropFiles() []string {
	ents, _ := os.ReadDir(filepath.Join(s.Spool, queue.Maildrop))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// sub runs a subtest with the instance's test set to it for the
// duration, so that helpers fail the right test.
func sub(t *testing.T, s *submitInstance, name string, fn func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		old := s.t
		s.t = t
		defer func() { s.t = old }()
		fn(t)
	})
}

func header(msg, name string) string {
	m := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(name) + `:[ \t]*(.*?)\r?$`).FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestSendmailSubmission(t *testing.T) {
	s := startSubmit(t, Options{})
	from := submitUser + "@mx.postern.test"

	sub(t, s, "Delivered", func(t *testing.T) {
		s.sendmail("Subject: plain\n\nbody line\n", "demo@example.test")
		msg := s.waitFor("demo", "plain")
		if !strings.Contains(msg, "body line") || header(msg, "Subject") != "plain" {
			t.Errorf("message:\n%s", msg)
		}
		want := fmt.Sprintf("by mx.postern.test (Postern, from userid %d)", s.uid)
		if !strings.Contains(header(msg, "Received"), want) {
			t.Errorf("Received %q, want %q", header(msg, "Received"), want)
		}
		// Message-ID, Date and From are added (cleanup, DESIGN.md §4).
		if !strings.Contains(header(msg, "From"), "<"+from+">") && header(msg, "From") != from {
			t.Errorf("From %q", header(msg, "From"))
		}
		if header(msg, "Date") == "" || !strings.HasSuffix(header(msg, "Message-Id"), "@mx.postern.test>") {
			t.Errorf("Date %q Message-Id %q", header(msg, "Date"), header(msg, "Message-Id"))
		}
		if header(msg, "Return-Path") != "<"+from+">" {
			t.Errorf("Return-Path %q", header(msg, "Return-Path"))
		}
		if !regexp.MustCompile(fmt.Sprintf(`pickup\[\d+\]: [0-9A-F]{18}: uid=%d from=<%s>\n`, s.uid, regexp.QuoteMeta(from))).MatchString(s.Log()) {
			t.Errorf("no pickup log line:\n%s", s.Log())
		}
		if f := s.maildropFiles(); len(f) != 0 {
			t.Errorf("maildrop/ still holds %v", f)
		}
	})

	sub(t, s, "HeadersKept", func(t *testing.T) {
		s.sendmail("From: Me <me@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <kept@example.org>\nSubject: kept\n\nx\n", "-F", "Not Used", "other@example.test")
		msg := s.waitFor("other", "kept")
		if header(msg, "From") != "Me <me@example.org>" || header(msg, "Message-ID") != "<kept@example.org>" || strings.Count(msg, "Date:") != 1 {
			t.Errorf("headers changed:\n%s", msg)
		}
	})

	sub(t, s, "FullNameAndDot", func(t *testing.T) {
		// Without -i a lone dot ends the message.
		s.sendmail("Subject: dot\n\nbefore\n.\nafter\n", "-F", "Sub Mitter", "demo@example.test")
		msg := s.waitFor("demo", "dot")
		if !strings.Contains(msg, "before") || strings.Contains(msg, "after") {
			t.Errorf("dot handling:\n%s", msg)
		}
		if header(msg, "From") != "Sub Mitter <"+from+">" {
			t.Errorf("From %q", header(msg, "From"))
		}
		s.sendmail("Subject: dot-i\n\nbefore\n.\nafter\n", "-oi", "demo@example.test")
		msg = s.waitFor("demo", "dot-i")
		if !strings.Contains(msg, "after") {
			t.Errorf("-oi: lost the text after the dot:\n%s", msg)
		}
	})

	sub(t, s, "ExtractBcc", func(t *testing.T) {
		s.sendmail("To: Demo <demo@example.test>\nBcc: other@example.test,\n  nobody-else@example.test\nSubject: bcc\n\nsecret copy\n", "-t", "-i")
		for _, box := range []string{"demo", "other"} {
			msg := s.waitFor(box, "bcc")
			if strings.Contains(strings.ToLower(msg), "bcc:") || strings.Contains(msg, "nobody-else") {
				t.Errorf("%s: Bcc header not removed:\n%s", box, msg)
			}
		}
	})

	sub(t, s, "SenderSetByUser", func(t *testing.T) {
		s.sendmail("Subject: forged\n\nx\n", "-f", "boss@example.org", "demo@example.test")
		msg := s.waitFor("demo", "forged")
		if header(msg, "Return-Path") != "<boss@example.org>" {
			t.Errorf("Return-Path %q", header(msg, "Return-Path"))
		}
		want := fmt.Sprintf("uid=%d from=<boss@example.org> (sender set by -f)", s.uid)
		if !s.WaitLog(want, 5*time.Second) {
			t.Errorf("no %q in the log", want)
		}
	})

	sub(t, s, "SMTPOnStdin", func(t *testing.T) {
		script := "EHLO client\r\nMAIL FROM:<" + from + ">\r\nRCPT TO:<other@example.test>\r\nDATA\r\nSubject: bs\r\n\r\nover smtp\r\n.\r\nQUIT\r\n"
		out, errs, code := s.run(false, "sendmail", script, "-bs")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errs)
		}
		for _, want := range []string{"220 mx.postern.test", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0 Ok: queued", "221"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in the dialogue:\n%s", want, out)
			}
		}
		msg := s.waitFor("other", "bs")
		if !strings.Contains(msg, "over smtp") {
			t.Errorf("message:\n%s", msg)
		}
		// LF-only lines from a script are taken too.
		out, _, code = s.run(false, "sendmail", "HELO x\nMAIL FROM:<>\nRCPT TO:<other@example.test>\nDATA\nSubject: lf\n\nlf only\n.\nQUIT\n", "-bs")
		if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued") {
			t.Errorf("LF dialogue: exit %d\n%s", code, out)
		}
		s.waitFor("other", "lf")
	})

	sub(t, s, "BadArguments", func(t *testing.T) {
		for _, c := range []struct {
			args  []string
			stdin string
			code  int
		}{
			{nil, "x", 64},
			{[]string{"-k", "demo@example.test"}, "x", 64},
			{[]string{"-bd"}, "", 64},
			{[]string{"-f"}, "", 64},
			{[]string{"bad address@@x"}, "x", 64},
			{[]string{"-N", "sometimes", "demo@example.test"}, "x", 64},
			{[]string{"-t"}, "Subject: nobody\n\nx\n", 65},
		} {
			_, errs, code := s.run(false, "sendmail", c.stdin, c.args...)
			if code != c.code {
				t.Errorf("sendmail %q: exit %d, want %d (%s)", c.args, code, c.code, errs)
			}
		}
		// postern-drop refuses -c from a user: a set-id program must not
		// read a configuration the caller chose.
		if _, _, code := s.run(false, "postern-drop", "x", "-c", "/tmp", "demo@example.test"); code != 77 {
			t.Errorf("postern-drop -c as user: exit %d, want 77", code)
		}
		// -o options are ignored with a warning.
		_, errs, code := s.run(false, "sendmail", "Subject: o\n\nx\n", "-odb", "-oem", "-oi", "demo@example.test")
		if code != 0 || !strings.Contains(errs, "-odb ignored") {
			t.Errorf("-o: exit %d, stderr %q", code, errs)
		}
		s.waitFor("demo", "o")
		if f := s.maildropFiles(); len(f) != 0 {
			t.Errorf("maildrop/ holds %v", f)
		}
	})

	sub(t, s, "LargeMessage", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Subject: big\n\n")
		line := strings.Repeat("0123456789", 7) + "abcd\n" // 75 bytes
		for b.Len()+len(line) <= 10_000_000 {
			b.WriteString(line)
		}
		s.sendmail(b.String(), "-i", "other@example.test")
		if msg := s.waitFor("other", "big"); len(msg) < 10_000_000 {
			t.Errorf("delivered %d bytes", len(msg))
		}
		// Over message_size_limit: refused at once, nothing queued.
		big := strings.Repeat(line, 10_240_000/len(line)+2)
		if _, errs, code := s.run(false, "sendmail", big, "-i", "other@example.test"); code != 65 {
			t.Errorf("oversized: exit %d (%s)", code, errs)
		}
	})

	sub(t, s, "Mailq", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(binDir, "showq")); err != nil {
			t.Fatal("cmd/showq is not there: mailq needs the showq daemon (issue 7 §3)")
		}
		s.sendmail("Subject: waits\n\nx\n", "someone@remote.example")
		if !s.WaitLog("someone@remote.example", 10*time.Second) {
			t.Fatalf("not queued\n%s", s.Log())
		}
		out, errs, code := s.run(false, "mailq", "")
		if code != 0 || !strings.Contains(out, "someone@remote.example") {
			t.Errorf("mailq: exit %d\n%s%s", code, out, errs)
		}
		out2, _, code := s.run(false, "sendmail", "", "-bp")
		if code != 0 || !strings.Contains(out2, "someone@remote.example") {
			t.Errorf("sendmail -bp: exit %d\n%s", code, out2)
		}
		if _, errs, code := s.run(false, "sendmail", "", "-q"); code != 0 {
			t.Errorf("sendmail -q: exit %d %s", code, errs)
		}
	})

	sub(t, s, "Newaliases", func(t *testing.T) {
		out, errs, code := s.run(true, "newaliases", "")
		if code != 0 || !strings.Contains(out, "aliases: 1 aliases") {
			t.Errorf("newaliases: exit %d\n%s%s", code, out, errs)
		}
		// As root it made the running master reload; wait for that
		// before the file is broken, or the reload would read it.
		if !s.WaitLog("reload --", 10*time.Second) {
			t.Errorf("newaliases did not reload the master\n%s", s.Log())
		}
		os.WriteFile(filepath.Join(s.Etc, "aliases"), []byte("postmaster demo@example.test\n"), 0o644)
		out, errs, code = s.run(true, "sendmail", "", "-bi")
		if code == 0 {
			t.Errorf("broken aliases accepted: %s%s", out, errs)
		}
		os.WriteFile(filepath.Join(s.Etc, "aliases"), []byte("postmaster: demo@example.test\n"), 0o644)
	})
}

func TestSendmailWhileStopped(t *testing.T) {
	s := startSubmit(t, Options{})
	s.Kill()
	time.Sleep(200 * time.Millisecond)
	s.sendmail("Subject: offline\n\nwritten while down\n", "demo@example.test")
	files := s.maildropFiles()
	if len(files) != 1 || !queue.ValidID(files[0]) {
		t.Fatalf("maildrop/ holds %v", files)
	}
	fi, err := os.Stat(filepath.Join(s.Spool, queue.Maildrop, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != s.uid || fi.Mode().Perm() != maildrop.ReadyMode {
		t.Errorf("maildrop file owner %d mode %v", st.Uid, fi.Mode())
	}
	s.Restart()
	msg := s.waitFor("demo", "offline")
	if !strings.Contains(msg, "written while down") {
		t.Errorf("message:\n%s", msg)
	}
	if f := s.maildropFiles(); len(f) != 0 {
		t.Errorf("maildrop/ still holds %v", f)
	}
}

func TestPickupMalformed(t *testing.T) {
	s := startSubmit(t, Options{})
	dir := filepath.Join(s.Spool, queue.Maildrop)
	// Garbage with the ready bit.
	bad := string(queue.NewID())
	if err := os.WriteFile(filepath.Join(dir, bad), []byte("this is not a maildrop file\n"), 0o744); err != nil {
		t.Fatal(err)
	}
	// A well-formed file whose owner is not the uid it records: someone
	// claims to be root.
	var b bytes.Buffer
	maildrop.Write(&b, &maildrop.Envelope{Arrival: time.Now(), UID: 0, Login: "root", Sender: "root", Recipients: []string{"demo@example.test"}})
	b.WriteString("Subject: forged uid\n\nx\n")
	liar := string(queue.NewID())
	p := filepath.Join(dir, liar)
	if err := os.WriteFile(p, b.Bytes(), 0o744); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o744)
	os.Chown(p, s.uid, s.gid)
	// Any submission pokes pickup, which scans the whole directory.
	s.sendmail("Subject: poke\n\nx\n", "other@example.test")
	s.waitFor("other", "poke")
	for _, name := range []string{bad, liar} {
		if !s.WaitLog("maildrop/"+name+": ", 10*time.Second) {
			t.Errorf("no log line about %s\n%s", name, s.Log())
		}
		if _, err := os.Stat(filepath.Join(dir, name+".corrupt")); err != nil {
			t.Errorf("%s not moved aside: %v", name, err)
		}
	}
	if !strings.Contains(s.Log(), "malformed maildrop file") || !strings.Contains(s.Log(), "differs from the recorded uid 0") {
		t.Errorf("log:\n%s", s.Log())
	}
	if len(Messages(s.Maildir("demo"))) != 0 {
		t.Error("the forged file was delivered")
	}
}

// TestPickupBounce: a local submission that cleanup refuses for good
// after postern-drop exited 0 is not lost: pickup bounces it to the
// submitting user and empties maildrop/ (review M2).
func TestPickupBounce(t *testing.T) {
	s := startSubmit(t, Options{
		Settings: []string{"smtpd_recipient_limit = 2"},
		Aliases:  "postmaster: demo@example.test\n" + submitUser + ": other@example.test\n",
	})
	from := submitUser + "@mx.postern.test"
	bounceIn := func(box string, n int) string {
		t.Helper()
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			// In order of arrival: Maildir names of one second do not
			// sort by time (the microseconds are not zero-padded).
			type bounce struct {
				at   time.Time
				text string
			}
			var found []bounce
			for _, m := range Messages(s.Maildir(box)) {
				b, err := os.ReadFile(m)
				st, serr := os.Stat(m)
				if err == nil && serr == nil && strings.HasPrefix(header(string(b), "Subject"), "Undelivered Mail Returned to Sender") {
					found = append(found, bounce{st.ModTime(), string(b)})
				}
			}
			if len(found) >= n {
				sort.SliceStable(found, func(i, j int) bool { return found[i].at.Before(found[j].at) })
				return found[n-1].text
			}
		}
		t.Fatalf("no bounce %d in %s\n%s", n, box, s.Log())
		return ""
	}
	logLine := func(reason string) {
		t.Helper()
		re := regexp.MustCompile(fmt.Sprintf(`pickup\[\d+\]: [0-9A-F]{18}: uid=%d from=<%s>: rejected: %s; bounce queued as [0-9A-F]{18}\n`,
			s.uid, regexp.QuoteMeta(from), regexp.QuoteMeta(reason)))
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if re.MatchString(s.Log()) {
				return
			}
		}
		t.Errorf("no log line %s\n%s", re, s.Log())
	}

	sub(t, s, "TooManyRecipients", func(t *testing.T) {
		s.sendmail("Subject: crowd\n\nfor three\n", "demo@example.test", "other@example.test", "third@example.test")
		msg := bounceIn("other", 1)
		for _, want := range []string{"Status: 5.5.4", "Diagnostic-Code: X-Postern; 3 recipients, more than 2", "Subject: crowd", "for three"} {
			if !strings.Contains(msg, want) {
				t.Errorf("no %q in the bounce:\n%s", want, msg)
			}
		}
		if header(msg, "Return-Path") != "<>" {
			t.Errorf("Return-Path %q", header(msg, "Return-Path"))
		}
		logLine("3 recipients, more than 2")
		if f := s.maildropFiles(); len(f) != 0 {
			t.Errorf("maildrop/ still holds %v", f)
		}
	})

	sub(t, s, "TooBig", func(t *testing.T) {
		// postern-drop checks the limit it reads when it runs: submit
		// while Postern is stopped and the limit large, then restart
		// with a small one, so that only cleanup sees the excess.
		s.Kill()
		time.Sleep(200 * time.Millisecond)
		s.sendmail("Subject: huge\n\n"+strings.Repeat("a line of the huge body\n", 400), "-i", "demo@example.test")
		if f := s.maildropFiles(); len(f) != 1 {
			t.Fatalf("maildrop/ holds %v", f)
		}
		s.postern("config", "-e", "message_size_limit = 6000")
		s.Restart()
		msg := bounceIn("other", 2)
		for _, want := range []string{"Status: 5.3.4", "message file too big", "text/rfc822-headers", "Subject: huge"} {
			if !strings.Contains(msg, want) {
				t.Errorf("no %q in the bounce:\n%s", want, msg)
			}
		}
		if strings.Contains(msg, "a line of the huge body") {
			t.Errorf("the bounce returned the too big body:\n%s", msg)
		}
		logLine("Error: message file too big")
		if f := s.maildropFiles(); len(f) != 0 {
			t.Errorf("maildrop/ still holds %v", f)
		}
		for _, m := range Messages(s.Maildir("demo")) {
			if b, _ := os.ReadFile(m); header(string(b), "Subject") == "huge" {
				t.Error("the too big message was delivered")
			}
		}
	})

	sub(t, s, "ExtractNobody", func(t *testing.T) {
		// postern-drop itself refuses -t without a usable address.
		_, errs, code := s.run(false, "postern-drop", "To: <<bad\nSubject: x\n\nx\n", "-t")
		if code != 65 || !strings.Contains(errs, "no recipient addresses found in message header") {
			t.Errorf("postern-drop -t: exit %d, %q", code, errs)
		}
		if f := s.maildropFiles(); len(f) != 0 {
			t.Errorf("maildrop/ holds %v", f)
		}
	})
}
