package tests

// IMAP end-to-end tests (issue 6): a whole Postern with MailAccess, mail
// delivered over SMTP, read and changed over IMAP by real clients
// (Python's imaplib, curl, mbsync, getmail6, openssl s_client, mutt) and
// by a raw client for what libraries do not do on purpose (IDLE, two
// sessions at once, malformed commands, a 20 MB APPEND); the same
// mailbox read over POP3; and the privilege of imap-login and of an imapd
// session, read from /proc.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imapStart starts a Postern with the reading-mail services.
func imapStart(t *testing.T, settings ...string) *Instance {
	t.Helper()
	return Start(t, Options{MailAccess: true, Settings: settings})
}

// imapStartWithMail starts a Postern and delivers one message to demo,
// so that demo's Maildir exists (see TestIMAPNewUser for a login before
// any mail).
func imapStartWithMail(t *testing.T, settings ...string) *Instance {
	t.Helper()
	in := imapStart(t, settings...)
	imapDeliver(t, in, "demo@example.test", "welcome", "first mail")
	imapWaitMail(t, in.Maildir("demo"), 1)
	return in
}

// imapDeliver sends one message to rcpt over SMTP; it returns the
// message as sent (CRLF line ends).
func imapDeliver(t *testing.T, in *Instance, rcpt, subject, body string) string {
	t.Helper()
	msg := "From: Sender <sender@remote.test>\r\n" +
		"To: <" + rcpt + ">\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@remote.test>\r\n" +
		"Date: Thu, 03 Dec 2026 07:00:00 +0000\r\n" +
		"\r\n" + body + "\r\n"
	r := Send(t, in.Addr, "EHLO client.remote.test", "MAIL FROM:<sender@remote.test>",
		"RCPT TO:<"+rcpt+">", "DATA", msg+".", "QUIT")
	if !strings.HasPrefix(r[5], "250 ") {
		t.Fatalf("delivery to %s: %q", rcpt, r)
	}
	return msg
}

// imapMailCount counts the messages of a Maildir's INBOX (new and cur).
func imapMailCount(maildir string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(maildir, sub))
		n += len(ents)
	}
	return n
}

// imapWaitMail waits until the INBOX holds at least n messages.
func imapWaitMail(t *testing.T, maildir string, n int) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if imapMailCount(maildir) >= n {
			return
		}
	}
	t.Fatalf("%s: %d messages after 20 s, want %d", maildir, imapMailCount(maildir), n)
}

// imapTLSConfig trusts the instance's certificate.
func imapTLSConfig(t *testing.T, in *Instance) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(in.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", in.CertFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "mx.postern.test"}
}

// imapConn is a raw IMAP client.
type imapConn struct {
	t     *testing.T
	c     net.Conn
	br    *bufio.Reader
	tag   int
	greet string
}

// imapDial connects: implicit TLS when tlsConf is not nil. It reads the
// greeting.
func imapDial(t *testing.T, addr string, tlsConf *tls.Config) *imapConn {
	t.Helper()
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	ic := &imapConn{t: t, c: c, br: bufio.NewReaderSize(c, 64<<10)}
	ic.deadline(30 * time.Second)
	ic.greet = ic.line()
	if !strings.HasPrefix(ic.greet, "* OK ") {
		t.Fatalf("greeting %q", ic.greet)
	}
	return ic
}

// imapLogin dials imaps and logs in as user.
func imapLogin(t *testing.T, in *Instance, user, pass string) *imapConn {
	t.Helper()
	c := imapDial(t, in.IMAPSAddr, imapTLSConfig(t, in))
	if r := c.ok("LOGIN %s %s", user, pass); !strings.Contains(r[len(r)-1], "OK [CAPABILITY ") {
		t.Fatalf("LOGIN answer %q has no capabilities", r[len(r)-1])
	}
	return c
}

func (c *imapConn) deadline(d time.Duration) { c.c.SetDeadline(time.Now().Add(d)) }

// line reads one response line, with any literals in it (a literal's
// octets are kept in the line, after its {n}).
func (c *imapConn) line() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, b.String()+l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		b.WriteString(l)
		m := imapLiteralAtEnd.FindStringSubmatch(l)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := ioReadFull(c.br, buf); err != nil {
			c.t.Fatalf("read literal: %v", err)
		}
		b.Write(buf)
	}
}

var imapLiteralAtEnd = regexp.MustCompile(`\{(\d+)\}$`)

func (c *imapConn) write(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send sends a command with a fresh tag and returns the tag.
func (c *imapConn) send(format string, args ...any) string {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("t%d", c.tag)
	c.write(tag + " " + fmt.Sprintf(format, args...) + "\r\n")
	return tag
}

// until reads responses up to the one tagged tag and returns them all.
func (c *imapConn) until(tag string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// cmd runs a command and returns every response, the tagged one last.
func (c *imapConn) cmd(format string, args ...any) []string {
	c.t.Helper()
	return c.until(c.send(format, args...))
}

// ok runs a command that must succeed.
func (c *imapConn) ok(format string, args ...any) []string {
	c.t.Helper()
	r := c.cmd(format, args...)
	if f := strings.Fields(r[len(r)-1]); len(f) < 2 || f[1] != "OK" {
		c.t.Fatalf("%s: %q", fmt.Sprintf(format, args...), r)
	}
	return r
}

// closed checks that the server has closed the connection.
func (c *imapConn) closed() {
	c.t.Helper()
	c.deadline(10 * time.Second)
	if l, err := c.br.ReadString('\n'); err == nil {
		c.t.Fatalf("got %q, want the connection closed", l)
	}
}

func ioReadFull(br *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := br.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// imapRun runs a client program for at most two minutes (stdin empty)
// and returns its combined output.
func imapRun(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (make deps): %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// imapPort is the port of a host:port address.
func imapPort(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// imaplibScript drives Python's imaplib: log in, read, search, flag,
// copy, expunge, append. Each step prints one line that the test checks.
const imaplibScript = `
import email, imaplib, ssl, sys
mode, host, port, cafile, user, pw = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "starttls":
    M = imaplib.IMAP4(host, int(port), timeout=30)
    M.starttls(ssl_context=ctx)
else:
    M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=30)
print("TLS", M.sock.version())
typ, data = M.login(user, pw)
print("LOGIN", typ, data[0].decode())
typ, data = M.capability()
print("CAPS", data[0].decode())
typ, data = M.select("INBOX")
print("SELECT", data[0].decode())
typ, data = M.search(None, "ALL")
print("ALL", data[0].decode())
typ, data = M.fetch("1", "(RFC822)")
print("SUBJECT1", email.message_from_bytes(data[0][1])["Subject"])
typ, data = M.search(None, "SUBJECT", "second")
print("SEARCHSUBJECT", data[0].decode())
typ, data = M.search(None, "BODY", "body-of-third")
print("SEARCHBODY", data[0].decode())
M.store("2", "+FLAGS", "\\Flagged")
typ, data = M.search(None, "FLAGGED")
print("FLAGGED", data[0].decode())
typ, data = M.uid("SEARCH", None, "UNFLAGGED")
print("UIDUNFLAGGED", data[0].decode())
M.create("Saved")
M.copy("1:2", "Saved")
typ, data = M.status("Saved", "(MESSAGES)")
print("STATUS", data[0].decode())
M.store("1", "+FLAGS", "\\Deleted")
typ, data = M.expunge()
print("EXPUNGED", " ".join(d.decode() for d in data if d))
typ, data = M.search(None, "ALL")
print("AFTER", data[0].decode())
typ, data = M.append("Saved", "(\\Seen)", None, b"From: a@remote.test\r\nSubject: appended by imaplib\r\n\r\nhello\r\n")
print("APPEND", typ)
typ, data = M.select("Saved")
print("SAVED", data[0].decode())
typ, data = M.search(None, "SUBJECT", "appended")
print("FOUND", data[0].decode())
typ, data = M.fetch(data[0].decode(), "(FLAGS)")
print("APPENDFLAGS", data[0].decode())
M.close()
M.logout()
print("DONE")
`

// TestIMAPImaplib: Python's imaplib over STARTTLS and imaps.
func TestIMAPImaplib(t *testing.T) {
	in := imapStart(t)
	for _, c := range []struct{ mode, addr, user, pass string }{
		{"starttls", in.IMAPAddr, "demo", "demo-secret"},
		{"imaps", in.IMAPSAddr, "other", "other-secret"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			rcpt := c.user + "@example.test"
			// One at a time, so that they arrive in this order.
			for i, s := range []string{"first", "second", "third"} {
				imapDeliver(t, in, rcpt, s+" message for "+c.mode, "body-of-"+s)
				imapWaitMail(t, in.Maildir(c.user), i+1)
			}
			out, err := imapRun(t, nil, "python3", "-c", imaplibScript, c.mode, "127.0.0.1", imapPort(c.addr), in.CertFile, rcpt, c.pass)
			if err != nil {
				t.Fatalf("imaplib: %v\n%s", err, out)
			}
			got := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				k, v, _ := strings.Cut(l, " ")
				got[k] = v
			}
			want := map[string]*regexp.Regexp{
				"TLS":           regexp.MustCompile(`^TLSv1\.[23]$`),
				"LOGIN":         regexp.MustCompile(`^OK \[CAPABILITY .*\bIMAP4rev1\b.*\] Logged in$`),
				"CAPS":          regexp.MustCompile(`\bIMAP4rev1\b.*\bUIDPLUS\b`),
				"SELECT":        regexp.MustCompile(`^3$`),
				"ALL":           regexp.MustCompile(`^1 2 3$`),
				"SUBJECT1":      regexp.MustCompile(`^first message for ` + c.mode + `$`),
				"SEARCHSUBJECT": regexp.MustCompile(`^2$`),
				"SEARCHBODY":    regexp.MustCompile(`^3$`),
				"FLAGGED":       regexp.MustCompile(`^2$`),
				"UIDUNFLAGGED":  regexp.MustCompile(`^1 3$`),
				"STATUS":        regexp.MustCompile(`^"?Saved"? \(MESSAGES 2\)$`),
				"EXPUNGED":      regexp.MustCompile(`^1$`),
				"AFTER":         regexp.MustCompile(`^1 2$`),
				"APPEND":        regexp.MustCompile(`^OK$`),
				"SAVED":         regexp.MustCompile(`^3$`),
				"FOUND":         regexp.MustCompile(`^3$`),
				"APPENDFLAGS":   regexp.MustCompile(`\\Seen`),
				"DONE":          regexp.MustCompile(`^$`),
			}
			for k, re := range want {
				v, ok := got[k]
				if !ok || !re.MatchString(v) {
					t.Errorf("%s = %q, want %s\n%s", k, v, re, out)
				}
			}
			// The flag is in the Maildir file name, where other
			// Maildir readers see it.
			if files, _ := filepath.Glob(filepath.Join(in.Maildir(c.user), "cur", "*:2,*F*")); len(files) != 1 {
				t.Errorf("cur/ has %d files with the F flag, want 1: %v", len(files), files)
			}
		})
	}
	if !strings.Contains(in.Log(), "imap-login") || !regexp.MustCompile(`login user=<demo@example\.test> method=\S+ rip=127\.0\.0\.1 lip=127\.0\.0\.1 tls=yes`).MatchString(in.Log()) {
		t.Errorf("no imap-login login line in the log")
	}
}

// TestIMAPIdle: a raw TLS client in IDLE sees EXISTS within 5 s of an
// SMTP delivery.
func TestIMAPIdle(t *testing.T) {
	in := imapStart(t)
	imapDeliver(t, in, "demo@example.test", "before idle", "x")
	imapWaitMail(t, in.Maildir("demo"), 1)
	c := imapLogin(t, in, "demo@example.test", "demo-secret")
	r := c.ok("SELECT INBOX")
	if !imapHas(r, `^\* 1 EXISTS$`) {
		t.Fatalf("SELECT: %q", r)
	}
	tag := c.send("IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	imapDeliver(t, in, "demo@example.test", "during idle", "y")
	c.deadline(5 * time.Second)
	for {
		l := c.line()
		if l == "* 2 EXISTS" {
			break
		}
		if strings.HasPrefix(l, tag+" ") {
			t.Fatalf("IDLE ended: %q", l)
		}
	}
	t.Logf("EXISTS %v after the delivery started", time.Since(start).Round(time.Millisecond))
	c.deadline(10 * time.Second)
	c.write("DONE\r\n")
	if r := c.until(tag); !strings.HasPrefix(r[len(r)-1], tag+" OK") {
		t.Fatalf("DONE: %q", r)
	}
	c.ok("LOGOUT")
}

// imapHas reports whether a response line matches the pattern.
func imapHas(lines []string, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range lines {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// TestIMAPCurl: curl lists the mailboxes and fetches a message over
// imap:// with STARTTLS required and over imaps://.
func TestIMAPCurl(t *testing.T) {
	in := imapStart(t)
	imapDeliver(t, in, "demo@example.test", "for curl", "curl-body-line")
	imapWaitMail(t, in.Maildir("demo"), 1)
	for _, base := range []string{"imap://127.0.0.1:" + imapPort(in.IMAPAddr), "imaps://127.0.0.1:" + imapPort(in.IMAPSAddr)} {
		args := []string{"-sS", "--max-time", "30", "--ssl-reqd", "--cacert", in.CertFile, "-u", "demo@example.test:demo-secret"}
		out, err := imapRun(t, nil, "curl", append(args, base+"/")...)
		if err != nil || !regexp.MustCompile(`(?m)^\* LIST \([^)]*\) "[/.]" "?INBOX"?\r?$`).MatchString(out) {
			t.Errorf("curl %s/: %v\n%s", base, err, out)
		}
		out, err = imapRun(t, nil, "curl", append(args, base+"/INBOX;MAILINDEX=1")...)
		if err != nil || !strings.Contains(out, "Subject: for curl\r\n") || !strings.Contains(out, "\r\n\r\ncurl-body-line\r\n") {
			t.Errorf("curl %s/INBOX;MAILINDEX=1: %v\n%s", base, err, out)
		}
	}
}

// TestIMAPOpenSSL: openssl s_client -starttls imap verifies the
// certificate and speaks TLS 1.2 or 1.3.
func TestIMAPOpenSSL(t *testing.T) {
	in := imapStartWithMail(t)
	for _, args := range [][]string{
		{"-starttls", "imap", "-connect", in.IMAPAddr},
		{"-connect", in.IMAPSAddr},
	} {
		out, _ := imapRun(t, nil, "openssl", append([]string{"s_client", "-CAfile", in.CertFile, "-verify_hostname", "mx.postern.test"}, args...)...)
		if !regexp.MustCompile(`(?m)^\s*Verify return code: 0 \(ok\)`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^\s*Protocol\s*:\s*TLSv1\.[23]\s*$|New, TLSv1\.[23], Cipher`).MatchString(out) {
			t.Errorf("openssl s_client %v:\n%s", args, out)
		}
	}
}

// TestIMAPMbsync: mbsync syncs the whole account both ways with a local
// Maildir: server mail and folders come down, a local message and a
// flag set locally go up.
func TestIMAPMbsync(t *testing.T) {
	in := imapStart(t)
	imapDeliver(t, in, "demo@example.test", "server one", "s1")
	imapWaitMail(t, in.Maildir("demo"), 1)
	imapDeliver(t, in, "demo@example.test", "server two", "s2")
	imapWaitMail(t, in.Maildir("demo"), 2)
	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(local, "INBOX", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	localMsg := "From: me@example.test\nSubject: written locally\nMessage-ID: <local@example.test>\n\nlocal body\n"
	if err := os.WriteFile(filepath.Join(local, "INBOX", "cur", "1700000000.1.local:2,S"), []byte(localMsg), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount postern
Host 127.0.0.1
Port %s
User demo@example.test
Pass demo-secret
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account postern

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, imapPort(in.IMAPSAddr), in.CertFile, local, local)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func() {
		t.Helper()
		out, err := imapRun(t, []string{"HOME=" + dir}, "mbsync", "-c", rc, "-V", "-a")
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	sync()
	// Down: both server messages, and the special-use folders.
	var subjects []string
	for _, sub := range []string{"cur", "new"} {
		files, _ := filepath.Glob(filepath.Join(local, "INBOX", sub, "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if m := regexp.MustCompile(`(?m)^Subject: (.*?)\r?$`).FindSubmatch(b); m != nil {
				subjects = append(subjects, string(m[1]))
			}
		}
	}
	sort.Strings(subjects)
	if strings.Join(subjects, ",") != "server one,server two,written locally" {
		t.Errorf("local INBOX has %q", subjects)
	}
	if _, err := os.Stat(filepath.Join(local, "Sent", "cur")); err != nil {
		t.Errorf("the Sent folder did not come down: %v", err)
	}
	// Up: the local message is on the server, with its \Seen.
	c := imapLogin(t, in, "demo@example.test", "demo-secret")
	r := c.ok("SELECT INBOX")
	if !imapHas(r, `^\* 3 EXISTS$`) {
		t.Fatalf("server INBOX after the sync: %q", r)
	}
	r = c.ok("UID SEARCH SUBJECT %q", "written locally")
	m := regexp.MustCompile(`^\* SEARCH (\d+)$`).FindStringSubmatch(imapFind(r, `^\* SEARCH`))
	if m == nil {
		t.Fatalf("the local message is not on the server: %q", r)
	}
	if r := c.ok("UID FETCH %s (FLAGS)", m[1]); !imapHas(r, `\\Seen`) {
		t.Errorf("the local message's flags: %q", r)
	}
	c.ok("LOGOUT")
	// A flag set locally goes up on the next sync.
	files, _ := filepath.Glob(filepath.Join(local, "INBOX", "*", "*"))
	flagged := ""
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "Subject: server one") {
			base := f
			if i := strings.Index(f, ":2,"); i >= 0 {
				base = f[:i]
			}
			flagged = filepath.Join(filepath.Dir(filepath.Dir(base)), "cur", filepath.Base(base)+":2,FS")
			if err := os.Rename(f, flagged); err != nil {
				t.Fatal(err)
			}
		}
	}
	if flagged == "" {
		t.Fatalf("no local copy of \"server one\"")
	}
	sync()
	c = imapLogin(t, in, "demo@example.test", "demo-secret")
	c.ok("SELECT INBOX")
	r = c.ok("SEARCH FLAGGED")
	r2 := c.ok("SEARCH SUBJECT %q", "server one")
	if s1, s2 := imapFind(r, `^\* SEARCH`), imapFind(r2, `^\* SEARCH`); s1 == "" || s1 != s2 || s1 == "* SEARCH" {
		t.Errorf("flag set locally not on the server: FLAGGED %q, \"server one\" %q", s1, s2)
	}
	c.ok("LOGOUT")
}

// imapFind returns the first line matching pattern, or "".
func imapFind(lines []string, pattern string) string {
	re := regexp.MustCompile(pattern)
	for _, l := range lines {
		if re.MatchString(l) {
			return l
		}
	}
	return ""
}

// TestIMAPGetmail: getmail6 over IMAPS into a Maildir.
func TestIMAPGetmail(t *testing.T) {
	in := imapStart(t)
	sent := imapDeliver(t, in, "demo@example.test", "for getmail", "getmail-body")
	imapWaitMail(t, in.Maildir("demo"), 1)
	// Not t.TempDir: its parent is mode 0700, and the delivery may run
	// as another user.
	dir, err := os.MkdirTemp("", "postern-getmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dest := filepath.Join(dir, "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dest, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// getmail refuses to deliver as root: as root it delivers as the
	// test user, who then needs the way to and the Maildir.
	asUser := ""
	if isRoot() {
		uid, gid := lookupIDs(t, "posterntest")
		os.Chmod(dir, 0o755)
		for _, d := range []string{dest, filepath.Join(dest, "cur"), filepath.Join(dest, "new"), filepath.Join(dest, "tmp")} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		asUser = "user = posterntest\n"
	}
	rc := filepath.Join(dir, "getmailrc")
	conf := fmt.Sprintf(`[retriever]
type = SimpleIMAPSSLRetriever
server = 127.0.0.1
port = %s
username = demo@example.test
password = demo-secret
ca_certs = %s
mailboxes = ("INBOX",)

[destination]
type = Maildir
path = %s/
%s
[options]
read_all = true
delete = false
`, imapPort(in.IMAPSAddr), in.CertFile, dest, asUser)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := imapRun(t, []string{"HOME=" + dir}, "getmail", "--rcfile="+rc, "--getmaildir="+dir)
	if err != nil {
		t.Fatalf("getmail: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dest, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("getmail delivered %d messages, want 1\n%s", len(files), out)
	}
	b, _ := os.ReadFile(files[0])
	body := strings.ReplaceAll(string(b), "\r\n", "\n")
	if !strings.Contains(body, "Subject: for getmail\n") || !strings.HasSuffix(body, strings.ReplaceAll(sent[strings.Index(sent, "\r\n\r\n"):], "\r\n", "\n")) {
		t.Errorf("getmail's copy:\n%s", b)
	}
}

// TestIMAPMutt: mutt reads a message over imaps (in a pseudo-terminal,
// which mutt needs; the pager is cat, so the message is in the output).
func TestIMAPMutt(t *testing.T) {
	in := imapStart(t)
	imapDeliver(t, in, "demo@example.test", "for mutt", "mutt-reads-this-line")
	imapWaitMail(t, in.Maildir("demo"), 1)
	dir := t.TempDir()
	rc := filepath.Join(dir, "muttrc")
	conf := fmt.Sprintf(`set ssl_ca_certificates_file="%s"
set ssl_verify_host=no
set ssl_force_tls=yes
set imap_user="demo@example.test"
set imap_pass="demo-secret"
set folder="imaps://127.0.0.1:%s/"
set spoolfile="+INBOX"
set header_cache=""
set message_cachedir=""
set certificate_file="%s/certs"
set pager="cat"
set wait_key=no
set prompt_after=no
set quit=yes
set move=no
set mark_old=no
set delete=no
set record=""
set mbox="+INBOX"
set timeout=10
`, in.CertFile, imapPort(in.IMAPSAddr), dir)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("mutt"); err != nil {
		t.Fatalf("mutt is not installed (make deps): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qfec", fmt.Sprintf("mutt -n -F %s -e 'push <display-message><exit>'", rc), "/dev/null")
	cmd.Env = append(os.Environ(), "HOME="+dir, "TERM=xterm", "COLUMNS=120", "LINES=40")
	// script's input stays open (and empty) while mutt runs: at its
	// end script would pass an end-of-file on to mutt as a key.
	stdin, keep, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	defer stdin.Close()
	cmd.Stdin = stdin
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mutt-reads-this-line") {
		t.Fatalf("mutt: %v\n%s", err, out)
	}
}

// TestIMAPSharedMailbox: one Maildir read by IMAP and POP3 and written
// by local: IMAP UIDs equal POP3 UIDLs (%08X%08X of UID and UIDVALIDITY),
// flags set over IMAP are in the Maildir file names and reach a second
// IMAP session as untagged FETCH, and an EXPUNGE reaches a session that
// has the mailbox selected.
func TestIMAPSharedMailbox(t *testing.T) {
	in := imapStart(t)
	maildir := in.Maildir("demo")
	for i := 1; i <= 3; i++ {
		imapDeliver(t, in, "demo@example.test", fmt.Sprintf("shared %d", i), "x")
		imapWaitMail(t, maildir, i)
	}

	a := imapLogin(t, in, "demo@example.test", "demo-secret")
	r := a.ok("SELECT INBOX")
	m := regexp.MustCompile(`^\* OK \[UIDVALIDITY (\d+)\]`).FindStringSubmatch(imapFind(r, `UIDVALIDITY`))
	if m == nil {
		t.Fatalf("SELECT: no UIDVALIDITY: %q", r)
	}
	uidvalidity, _ := strconv.ParseUint(m[1], 10, 32)
	r = a.ok("UID FETCH 1:* (UID)")
	var want []string
	for _, l := range r {
		if m := regexp.MustCompile(`^\* (\d+) FETCH \(UID (\d+)\)$`).FindStringSubmatch(l); m != nil {
			uid, _ := strconv.ParseUint(m[2], 10, 32)
			want = append(want, fmt.Sprintf("%s %08X%08X", m[1], uid, uidvalidity))
		}
	}
	if len(want) != 3 {
		t.Fatalf("UID FETCH: %q", r)
	}
	a.ok("LOGOUT")

	// POP3 on loopback: plaintext is allowed there.
	uidl := imapPOP3UIDL(t, in)
	// Dovecot writes the hex digits in lower case; compare without case.
	if !strings.EqualFold(strings.Join(uidl, ","), strings.Join(want, ",")) {
		t.Errorf("POP3 UIDL %q, IMAP UIDs %q", uidl, want)
	}

	a = imapLogin(t, in, "demo@example.test", "demo-secret")
	b := imapLogin(t, in, "demo@example.test", "demo-secret")
	a.ok("SELECT INBOX")
	b.ok("SELECT INBOX")
	a.ok(`STORE 1 +FLAGS (\Flagged \Answered)`)
	var names []string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		names, _ = filepath.Glob(filepath.Join(maildir, "cur", "*:2,*F*"))
		if len(names) == 1 {
			break
		}
	}
	if len(names) != 1 || !regexp.MustCompile(`:2,[A-Z]*R[A-Z]*$`).MatchString(filepath.Base(names[0])) {
		t.Errorf("Maildir files with F and R: %v", names)
	}
	if !imapSees(b, `^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged`) {
		t.Errorf("the second session saw no FETCH FLAGS with \\Flagged")
	}
	a.ok(`STORE 2 +FLAGS.SILENT (\Deleted)`)
	if r := a.ok("EXPUNGE"); !imapHas(r, `^\* 2 EXPUNGE$`) {
		t.Errorf("EXPUNGE: %q", r)
	}
	if !imapSees(b, `^\* 2 EXPUNGE$`) {
		t.Errorf("the second session saw no EXPUNGE")
	}
	if r := b.ok("FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); !imapHas(r, `Subject: shared 3`) {
		t.Errorf("after the expunge, message 2 of the second session: %q", r)
	}
	if n := imapMailCount(maildir); n != 2 {
		t.Errorf("%d messages left in the Maildir, want 2", n)
	}
	a.ok("LOGOUT")
	b.ok("LOGOUT")
}

// imapSees sends NOOP until a response matches (at most 5 s).
func imapSees(c *imapConn, pattern string) bool {
	c.t.Helper()
	re := regexp.MustCompile(pattern)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, l := range c.ok("NOOP") {
			if re.MatchString(l) {
				return true
			}
		}
	}
	return false
}

// imapPOP3UIDL reads the UIDL listing over POP3 ("n uid" lines).
func imapPOP3UIDL(t *testing.T, in *Instance) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", in.POP3Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	line := func() string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("POP3 read: %v", err)
		}
		return strings.TrimSuffix(l, "\r\n")
	}
	line()
	for _, cmd := range []string{"USER demo@example.test", "PASS demo-secret"} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if l := line(); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %s: %q", strings.Fields(cmd)[0], l)
		}
	}
	fmt.Fprintf(c, "UIDL\r\n")
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("UIDL: %q", l)
	}
	var out []string
	for {
		l := line()
		if l == "." {
			break
		}
		out = append(out, l)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	line()
	return out
}

// TestIMAPAppendLarge: a 20 MB APPEND with a synchronising literal, read
// back whole.
func TestIMAPAppendLarge(t *testing.T) {
	in := imapStartWithMail(t, "message_size_limit = 52428800")
	c := imapLogin(t, in, "demo@example.test", "demo-secret")
	var b strings.Builder
	b.WriteString("From: big@remote.test\r\nSubject: twenty megabytes\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n" // 66 octets
	for b.Len() < 20<<20 {
		b.WriteString(line)
	}
	msg := b.String()
	c.deadline(2 * time.Minute)
	tag := c.send("APPEND INBOX (\\Seen) {%d}", len(msg))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %q", l)
	}
	c.write(msg + "\r\n")
	r := c.until(tag)
	m := regexp.MustCompile(`^` + tag + ` OK \[APPENDUID \d+ (\d+)\]`).FindStringSubmatch(r[len(r)-1])
	if m == nil {
		t.Fatalf("APPEND: %q", r)
	}
	uid := m[1]
	c.ok("SELECT INBOX")
	r = c.ok("UID FETCH %s (RFC822.SIZE)", uid)
	if !imapHas(r, fmt.Sprintf(`^\* \d+ FETCH \((UID %s )?RFC822\.SIZE %d( UID %s)?\)$`, uid, len(msg), uid)) {
		t.Errorf("RFC822.SIZE: %q, want %d", r, len(msg))
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(in.Maildir("demo"), sub))
			for _, e := range ents {
				if fi, err := e.Info(); err == nil {
					t.Logf("%s/%s: %d octets", sub, e.Name(), fi.Size())
				}
			}
		}
	}
	r = c.ok("UID FETCH %s (BODY.PEEK[])", uid)
	if len(r) != 2 || !strings.Contains(r[0], msg+")") && !strings.Contains(r[0], msg+" UID") {
		t.Errorf("the message read back differs (%d lines, first %d octets)", len(r), len(r[0]))
	}
	c.ok("LOGOUT")
}

// TestIMAPBadInput: over-long and malformed commands, before and after
// login, and the failed-login limit.
func TestIMAPBadInput(t *testing.T) {
	in := imapStartWithMail(t)
	conf := imapTLSConfig(t, in)

	// Before login (imap-login).
	c := imapDial(t, in.IMAPSAddr, conf)
	for _, bad := range []string{"a LOGIN \"x", "+ NOOP", "a LOGIN (x) y", "a SELECT INBOX", "a FOO", "a LOGIN {9000}"} {
		c.write(bad + "\r\n")
		if l := c.line(); !strings.Contains(l, " BAD ") {
			t.Errorf("%q: %q", bad, l)
		}
	}
	if r := c.ok("NOOP"); len(r) != 1 {
		t.Errorf("NOOP after bad commands: %q", r)
	}
	c.write("a LOGIN " + strings.Repeat("x", 70000) + " y\r\n")
	if l := c.line(); l != "a BAD [TOOBIG] Command line too long" {
		t.Errorf("over-long line: %q", l)
	}
	if l := c.line(); !strings.HasPrefix(l, "* BYE ") {
		t.Errorf("after an over-long line: %q", l)
	}
	c.closed()

	// Literals in LOGIN: synchronising and not.
	c = imapDial(t, in.IMAPSAddr, conf)
	c.write("l1 LOGIN {17}\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("continuation: %q", l)
	}
	c.write("demo@example.test {11+}\r\ndemo-secret\r\n")
	if r := c.until("l1"); !strings.HasPrefix(r[len(r)-1], "l1 OK ") {
		t.Fatalf("LOGIN with literals: %q", r)
	}
	// After login (imapd).
	c.write("a SELECT " + strings.Repeat("x", 70000) + "\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a BAD") && !strings.HasPrefix(l, "* BAD") && !strings.HasPrefix(l, "* BYE") {
		t.Errorf("over-long line after login: %q", l)
	}
	c.c.Close()
	c = imapLogin(t, in, "demo@example.test", "demo-secret")
	for _, bad := range []string{"b FETCH", "b SELECT", "b STORE 1 FLAGS", "b FETCH x:y FLAGS", "b UID", "b (x)"} {
		c.write(bad + "\r\n")
		if l := c.line(); !strings.HasPrefix(l, "b BAD") && !strings.HasPrefix(l, "b NO") {
			t.Errorf("%q after login: %q", bad, l)
		}
	}
	c.ok("NOOP")
	c.ok("LOGOUT")

	// Wrong passwords: three, then the connection is closed.
	c = imapDial(t, in.IMAPSAddr, conf)
	for i := 1; i <= 3; i++ {
		r := c.cmd("LOGIN demo@example.test wrong%d", i)
		if r[len(r)-1] != fmt.Sprintf("t%d NO [AUTHENTICATIONFAILED] Authentication failed.", i) {
			t.Errorf("wrong password %d: %q", i, r)
		}
	}
	if l := c.line(); l != "* BYE Too many authentication failures." {
		t.Errorf("after three failures: %q", l)
	}
	c.closed()
	if !in.WaitLog("too many authentication failures", 5*time.Second) {
		t.Errorf("no log line for the closed connection")
	}
	if strings.Contains(in.Log(), "demo-secret") || strings.Contains(in.Log(), "wrong1") {
		t.Errorf("a password is in the log")
	}

	// Plaintext over the network is refused by default; loopback is a
	// secure channel (as in Dovecot), so this instance allows it: check
	// what CAPABILITY says on each.
	c = imapDial(t, in.IMAPAddr, nil)
	if !strings.Contains(c.greet, "STARTTLS") || !strings.Contains(c.greet, "AUTH=PLAIN") {
		t.Errorf("greeting on loopback: %q", c.greet)
	}
	c.ok("LOGOUT")
}

// TestIMAPLoginTimeout: a client that says nothing is disconnected
// after login_timeout.
func TestIMAPLoginTimeout(t *testing.T) {
	in := imapStart(t, "login_timeout = 2s")
	c := imapDial(t, in.IMAPAddr, nil)
	start := time.Now()
	c.deadline(10 * time.Second)
	if l := c.line(); l != "* BYE Disconnected for inactivity." {
		t.Errorf("silent client: %q", l)
	}
	c.closed()
	if d := time.Since(start); d < time.Second || d > 6*time.Second {
		t.Errorf("disconnected after %v, want about 2s", d)
	}
	if !in.WaitLog(`reason="login timeout"`, 5*time.Second) {
		t.Errorf("no log line for the timeout")
	}
}

// TestIMAPStartTLS: STARTTLS on the imap port, the capabilities before
// and after, a second STARTTLS refused, and a command pipelined behind
// STARTTLS refused. (Plaintext refused before TLS needs a client that is
// not on loopback: cmd/imap-login's unit tests have it.)
func TestIMAPStartTLS(t *testing.T) {
	in := imapStartWithMail(t)
	c := imapDial(t, in.IMAPAddr, nil)
	c.ok("CAPABILITY")
	tag := c.send("STARTTLS")
	if l := c.line(); l != tag+" OK Begin TLS negotiation now." {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(c.c, imapTLSConfig(t, in))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	c.deadline(30 * time.Second)
	r := c.ok("CAPABILITY")
	if imapHas(r, `STARTTLS`) || !imapHas(r, `AUTH=PLAIN`) {
		t.Errorf("CAPABILITY over TLS: %q", r)
	}
	if r := c.cmd("STARTTLS"); !strings.Contains(r[len(r)-1], " BAD ") {
		t.Errorf("second STARTTLS: %q", r)
	}
	c.ok("LOGIN demo@example.test demo-secret")
	c.ok("SELECT INBOX")
	c.ok("LOGOUT")

	// Commands pipelined behind STARTTLS are not taken as sent over TLS.
	c = imapDial(t, in.IMAPAddr, nil)
	c.write("s STARTTLS\r\nx LOGIN demo@example.test demo-secret\r\n")
	if l := c.line(); !strings.HasPrefix(l, "s BAD ") {
		t.Errorf("STARTTLS with a pipelined command: %q", l)
	}
	if l := c.line(); !strings.HasPrefix(l, "* BYE ") {
		t.Errorf("after STARTTLS with a pipelined command: %q", l)
	}
	c.closed()
}

// TestIMAPPrivilege: imap-login runs as postern with no capability,
// chrooted into spool/login; an imapd session runs as the mailbox owner
// (vmail) with no capability and no_new_privs.
func TestIMAPPrivilege(t *testing.T) {
	if !isRoot() {
		t.Fatalf("the privilege test needs root (CI runs as root)")
	}
	in := imapStartWithMail(t)
	c := imapLogin(t, in, "demo@example.test", "demo-secret")
	c.ok("SELECT INBOX")
	pUID, _ := lookupIDs(t, "postern")
	vUID, vGID := lookupIDs(t, "vmail")
	spool, err := filepath.EvalSymlinks(in.Spool)
	if err != nil {
		t.Fatal(err)
	}
	daemons := in.Daemons()
	if len(daemons["imap-login"]) == 0 || len(daemons["imapd"]) == 0 {
		t.Fatalf("no imap-login or imapd among master's children: %v", daemons)
	}
	for _, pid := range daemons["imap-login"] {
		st, err := opsReadStatus(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if st.UID != [4]int{pUID, pUID, pUID, pUID} {
			t.Errorf("imap-login[%d] uids %v, want postern (%d)", pid, st.UID, pUID)
		}
		if st.CapEff != 0 || st.CapPrm != 0 {
			t.Errorf("imap-login[%d] CapEff %x CapPrm %x, want 0", pid, st.CapEff, st.CapPrm)
		}
		if st.NoNewPrivs != 1 {
			t.Errorf("imap-login[%d] NoNewPrivs %d, want 1", pid, st.NoNewPrivs)
		}
		if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); root != filepath.Join(spool, "login") {
			t.Errorf("imap-login[%d] root %q, want %s", pid, root, filepath.Join(spool, "login"))
		}
	}
	// The session is a child of the acceptor.
	var sessions []int
	for end := time.Now().Add(5 * time.Second); len(sessions) == 0 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, acc := range daemons["imapd"] {
			sessions = append(sessions, imapChildren(acc)...)
		}
	}
	if len(sessions) == 0 {
		t.Fatalf("no imapd session process under the acceptors %v", daemons["imapd"])
	}
	for _, pid := range sessions {
		st, err := opsReadStatus(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if st.UID != [4]int{vUID, vUID, vUID, vUID} || st.GID != [4]int{vGID, vGID, vGID, vGID} {
			t.Errorf("imapd session[%d] uids %v gids %v, want vmail (%d:%d)", pid, st.UID, st.GID, vUID, vGID)
		}
		if st.CapEff != 0 || st.CapPrm != 0 {
			t.Errorf("imapd session[%d] CapEff %x CapPrm %x, want 0", pid, st.CapEff, st.CapPrm)
		}
		if st.NoNewPrivs != 1 {
			t.Errorf("imapd session[%d] NoNewPrivs %d, want 1", pid, st.NoNewPrivs)
		}
	}
	c.ok("LOGOUT")
}

// imapChildren lists the pids whose parent is ppid.
func imapChildren(ppid int) []int {
	var out []int
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
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestIMAPNewUser: a user's first login, before any mail came, finds an
// empty INBOX and the special-use folders (imapd creates the Maildir).
func TestIMAPNewUser(t *testing.T) {
	in := imapStart(t)
	c := imapLogin(t, in, "other@example.test", "other-secret")
	if r := c.ok("SELECT INBOX"); !imapHas(r, `^\* 0 EXISTS$`) {
		t.Errorf("SELECT INBOX: %q", r)
	}
	r := c.ok(`LIST "" "*"`)
	for _, f := range []string{"Sent", "Drafts", "Trash", "Junk", "Archive"} {
		if !imapHas(r, `^\* LIST \([^)]*\\`+f+`[^)]*\) "/" "?`+f+`"?$`) {
			t.Errorf("LIST has no %s with its special-use attribute: %q", f, r)
		}
	}
	c.ok("LOGOUT")
}
