package tests

// End-to-end tests of POP3 (issue 5): pop3-login on POP3Addr (STLS) and
// POP3SAddr (implicit TLS), the login/pop3d acceptor and the pop3d
// sessions it starts, driven by real clients (Python's poplib, curl,
// fetchmail, getmail6, openssl s_client) and by raw connections for what
// no client library would send.
//
// Mail is delivered over SMTP to in.Addr; what a client fetches is
// compared byte for byte with the Maildir file as local wrote it (which
// holds the Return-Path, Delivered-To and Received headers local and
// cleanup add), with its LF line ends turned into CRLF — the file is read
// right after delivery, before a POP3 session moves it to cur/.
//
// Helpers are named pop*; smtp_test.go, privilege_test.go and the harness
// provide the rest.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// popStart starts a Postern with the mail access services.
func popStart(t *testing.T, settings ...string) *Instance {
	t.Helper()
	in := Start(t, Options{MailAccess: true, Settings: settings})
	if in.POP3Addr == "" || in.POP3SAddr == "" || in.CertFile == "" {
		t.Fatalf("harness gave no POP3 services: %+v", in)
	}
	return in
}

// popDeliver sends msg (CRLF) to user@example.test over SMTP, waits for
// the Maildir file and returns its content with CRLF line ends: what
// POP3 must give back.
func popDeliver(t *testing.T, in *Instance, user string, msg []byte) []byte {
	t.Helper()
	md := in.Maildir(user)
	before := Messages(md)
	c := dialSMTP(t, in.Addr)
	c.ehlo("client.pop3.test")
	c.expect("MAIL FROM:<sender@client.pop3.test>", "250 2.1.0")
	c.expect("RCPT TO:<"+user+"@example.test>", "250 2.1.5")
	if r := c.data(msg); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("end of data: %q", r)
	}
	c.quit()
	file := newMaildirFile(t, md, before)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return popCRLF(b)
}

// popCRLF turns LF line ends into CRLF.
func popCRLF(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// popMessage is a test message with the cases POP3 must carry exactly:
// lines that begin with dots, a lone dot, 8-bit text, a long line.
func popMessage(tag string, bodyLines int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@client.pop3.test>\r\nTo: demo@example.test\r\nSubject: %s\r\nMessage-ID: <%s@client.pop3.test>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", tag, tag)
	b.WriteString("Grüße aus Köln.\r\n.\r\n..two dots\r\n.one dot\r\n\r\n")
	b.WriteString(strings.Repeat("x", 990) + "\r\n")
	b.Write(smtpLines(int64(len(tag)), bodyLines, 70))
	return b.Bytes()
}

// popClient is a raw POP3 connection.
type popClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// popDial connects to addr (with TLS first when implicit) and checks the
// greeting.
func popDial(t *testing.T, in *Instance, addr string, implicit bool) *popClient {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if implicit {
		c, err = tls.DialWithDialer(d, "tcp", addr, subTLSConfig(t, in))
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	pc := &popClient{t: t, c: c, br: bufio.NewReader(c)}
	if g := pc.line(); g != "+OK Postern ready." {
		t.Fatalf("greeting %q", g)
	}
	return pc
}

// line reads one line, which must end in CRLF, and returns it without.
func (c *popClient) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *popClient) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// cmd sends a line and returns the first reply line.
func (c *popClient) cmd(s string) string {
	c.t.Helper()
	c.write(s + "\r\n")
	return c.line()
}

// expect sends a command and checks the start of the reply.
func (c *popClient) expect(s, prefix string) string {
	c.t.Helper()
	r := c.cmd(s)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%.60q: reply %q, want %q...", s, r, prefix)
	}
	return r
}

// multi reads a multi-line body up to ".", un-stuffed, CRLF kept.
func (c *popClient) multi() []byte {
	c.t.Helper()
	var b bytes.Buffer
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("multi-line read: %v", err)
		}
		if l == ".\r\n" {
			return b.Bytes()
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("multi-line reply line %q without CRLF", l)
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
}

// eof checks that the server closes the connection with nothing more.
func (c *popClient) eof() {
	c.t.Helper()
	rest, err := io.ReadAll(c.br)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		c.t.Fatalf("waiting for the close: %v (got %q)", err, rest)
	}
	if len(rest) != 0 {
		c.t.Fatalf("the server said %q, want the connection closed", rest)
	}
}

// stls runs STLS and the handshake.
func (c *popClient) stls(in *Instance) {
	c.t.Helper()
	c.expect("STLS", "+OK")
	tc := tls.Client(c.c, subTLSConfig(c.t, in))
	tc.SetDeadline(time.Now().Add(60 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
}

// login logs in with USER/PASS and returns the session's first line.
func (c *popClient) login(user, pass string) string {
	c.t.Helper()
	c.expect("USER "+user, "+OK")
	return c.cmd("PASS " + pass)
}

// popSession is a logged-in client on the STLS port.
func popSession(t *testing.T, in *Instance, user, pass string) *popClient {
	t.Helper()
	c := popDial(t, in, in.POP3Addr, false)
	c.stls(in)
	if r := c.login(user, pass); r != "+OK Logged in." {
		t.Fatalf("login as %s: %q", user, r)
	}
	return c
}

// popUIDLs returns UIDL's listing as number -> id.
func (c *popClient) uidls() map[int]string {
	c.t.Helper()
	c.expect("UIDL", "+OK")
	out := map[int]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(c.multi())), "\r\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		n, err := strconv.Atoi(f[0])
		if len(f) != 2 || err != nil || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(f[1]) {
			c.t.Fatalf("UIDL line %q", l)
		}
		out[n] = f[1]
	}
	return out
}

// popRun runs a client program with a deadline and returns its output.
func popRun(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\nstdout: %s\nstderr: %s", name, args, err, smtpClip(out), stderr.String())
	}
	return out
}

func popPort(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// popSame fails with a short description of where got and want differ.
func popSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d octets, want %d; first difference at %d: got %q, want %q",
		what, len(got), len(want), i, smtpClip(got[i:min(len(got), i+80)]), smtpClip(want[i:min(len(want), i+80)]))
}

const popPoplibScript = `
import poplib, ssl, sys
host, port, mode, user, password, ca, out = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
if mode == "pop3s":
    p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
else:
    p = poplib.POP3(host, int(port), timeout=30)
    caps = p.capa()
    assert "STLS" in caps, caps
    p.stls(context=ctx)
p.user(user)
p.pass_(password)
count, size = p.stat()
print("STAT", count, size)
for line in p.uidl()[1]:
    print("UIDL", line.decode())
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    with open("%s/%d" % (out, i), "wb") as f:
        f.write(b"".join(l + b"\r\n" for l in lines))
    print("RETR", i, octets)
p.quit()
`

// TestPOP3Poplib fetches with Python's poplib over STLS and over implicit
// TLS and compares every message byte for byte; UIDL agrees between the
// two sessions, and nothing is deleted.
func TestPOP3Poplib(t *testing.T) {
	in := popStart(t)
	want := [][]byte{
		popDeliver(t, in, "demo", popMessage("poplib-1", 20)),
		popDeliver(t, in, "demo", popMessage("poplib-2", 3000)),
	}
	script := smtpTempFile(t, "fetch.py", []byte(popPoplibScript))
	var uidls []string
	for _, mode := range []struct{ name, addr string }{{"pop3", in.POP3Addr}, {"pop3s", in.POP3SAddr}} {
		out := t.TempDir()
		stdout := popRun(t, nil, "python3", script, "127.0.0.1", popPort(mode.addr), mode.name, "demo@example.test", "demo-secret", in.CertFile, out)
		var total int
		for _, w := range want {
			total += len(w)
		}
		if !strings.Contains(string(stdout), fmt.Sprintf("STAT 2 %d\n", total)) {
			t.Fatalf("%s: poplib said %s, want STAT 2 %d", mode.name, stdout, total)
		}
		var u []string
		for _, l := range strings.Split(string(stdout), "\n") {
			if strings.HasPrefix(l, "UIDL ") {
				u = append(u, l)
			}
		}
		uidls = append(uidls, strings.Join(u, "\n"))
		for i, w := range want {
			got, err := os.ReadFile(filepath.Join(out, strconv.Itoa(i+1)))
			if err != nil {
				t.Fatal(err)
			}
			popSame(t, fmt.Sprintf("%s message %d", mode.name, i+1), got, w)
		}
	}
	if uidls[0] != uidls[1] || strings.Count(uidls[0], "UIDL") != 2 {
		t.Fatalf("UIDL differs between sessions:\n%s\n--\n%s", uidls[0], uidls[1])
	}
	if !in.WaitLog("login user=<demo@example.test> method=USER rip=127.0.0.1", 5*time.Second) {
		t.Errorf("no login log line:\n%s", in.Log())
	}
	if !in.WaitLog(`disconnected user=<demo@example.test> rip=127.0.0.1 reason="logged out" top=0/0 retr=2/`, 5*time.Second) {
		t.Errorf("no session log line:\n%s", in.Log())
	}
}

// TestPOP3Curl fetches with curl over pop3:// with --ssl-reqd (STLS) and
// pop3s://, and lists with it.
func TestPOP3Curl(t *testing.T) {
	in := popStart(t)
	want := popDeliver(t, in, "demo", popMessage("curl-1", 500))
	for _, u := range []string{"pop3://127.0.0.1:" + popPort(in.POP3Addr), "pop3s://127.0.0.1:" + popPort(in.POP3SAddr)} {
		args := []string{"-sS", "--max-time", "60", "--cacert", in.CertFile, "-u", "demo@example.test:demo-secret"}
		if strings.HasPrefix(u, "pop3:") {
			args = append(args, "--ssl-reqd")
		}
		got := popRun(t, nil, "curl", append(args, u+"/1")...)
		popSame(t, u+"/1", got, want)
		list := popRun(t, nil, "curl", append(args, u+"/")...)
		if string(list) != fmt.Sprintf("1 %d\r\n", len(want)) {
			t.Fatalf("curl LIST: %q", list)
		}
	}
}

// popAfterHeaders checks that got is want, in LF form, with header
// lines added (fetchmail puts its Received after Return-Path and
// Delivered-To, getmail may add some in front): the body is the same
// byte for byte, and want's header lines appear in got in order, with
// nothing but header fields in between.
func popAfterHeaders(t *testing.T, what string, got, wantCRLF []byte) {
	t.Helper()
	want := bytes.ReplaceAll(wantCRLF, []byte("\r\n"), []byte("\n"))
	got = bytes.ReplaceAll(got, []byte("\r\n"), []byte("\n"))
	gh, gb, ok1 := bytes.Cut(got, []byte("\n\n"))
	wh, wb, ok2 := bytes.Cut(want, []byte("\n\n"))
	if !ok1 || !ok2 {
		t.Fatalf("%s: no end of header in %q", what, smtpClip(got))
	}
	popSame(t, what+" body", gb, wb)
	wl := strings.Split(string(wh), "\n")
	k := 0
	field := regexp.MustCompile(`^[!-9;-~]+:`)
	for _, l := range strings.Split(string(gh), "\n") {
		if k < len(wl) && l == wl[k] {
			k++
			continue
		}
		if !field.MatchString(l) && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			t.Fatalf("%s: the client changed the header: line %q\n%s", what, l, gh)
		}
	}
	if k != len(wl) {
		t.Fatalf("%s: header line %q is missing or out of order:\n%s", what, wl[k], gh)
	}
}

// TestPOP3Fetchmail fetches with fetchmail over STLS and over pop3s into
// an MDA that writes one file per message, keeping the mail on the server.
func TestPOP3Fetchmail(t *testing.T) {
	in := popStart(t)
	want := popDeliver(t, in, "demo", popMessage("fetchmail-1", 200))
	for _, mode := range []string{"stls", "pop3s"} {
		home := t.TempDir()
		out := filepath.Join(home, "out")
		os.Mkdir(out, 0o700)
		mda := filepath.Join(home, "mda.sh")
		os.WriteFile(mda, []byte("#!/bin/sh\ncat > \""+out+"/msg.$$\"\n"), 0o755)
		port, ssl := popPort(in.POP3Addr), "sslproto tls1.2+"
		if mode == "pop3s" {
			port, ssl = popPort(in.POP3SAddr), "ssl sslproto tls1.2+"
		}
		rc := filepath.Join(home, "fetchmailrc")
		os.WriteFile(rc, []byte(fmt.Sprintf("set no syslog\npoll mx.postern.test via 127.0.0.1 service %s protocol pop3 auth password\n"+
			"  user \"demo@example.test\" there with password \"demo-secret\" is \"root\" here\n"+
			"  %s sslcertck sslcommonname mx.postern.test sslcertfile %s keep mda \"%s\"\n", port, ssl, in.CertFile, mda)), 0o600)
		popRun(t, []string{"HOME=" + home, "FETCHMAILHOME=" + home}, "fetchmail", "-f", rc, "-N", "-v", "--idfile", filepath.Join(home, "ids"), "--pidfile", filepath.Join(home, "pid"))
		files, _ := filepath.Glob(filepath.Join(out, "msg.*"))
		if len(files) != 1 {
			t.Fatalf("fetchmail (%s) delivered %d messages, want 1", mode, len(files))
		}
		got, _ := os.ReadFile(files[0])
		popAfterHeaders(t, "fetchmail "+mode, got, want)
	}
	// keep: the message is still there.
	c := popSession(t, in, "demo@example.test", "demo-secret")
	c.expect("STAT", fmt.Sprintf("+OK 1 %d", len(want)))
	c.expect("QUIT", "+OK")
}

// TestPOP3Getmail fetches with getmail6 over pop3s into a Maildir.
func TestPOP3Getmail(t *testing.T) {
	in := popStart(t)
	want := popDeliver(t, in, "demo", popMessage("getmail-1", 200))
	// Not t.TempDir: its parent is 0700, and nobody must reach the Maildir.
	dir, err := os.MkdirTemp("", "postern-getmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	md := filepath.Join(dir, "Maildir") + "/"
	for _, d := range []string{"tmp", "new", "cur"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	// getmail refuses to deliver as root: as root (CI), it delivers as
	// nobody into a Maildir that nobody owns.
	user := ""
	if isRoot() {
		user = "user = nobody"
		uid, gid := lookupIDs(t, "nobody")
		os.Chmod(dir, 0o755)
		filepath.Walk(md, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
	}
	rc := filepath.Join(dir, "getmailrc")
	os.WriteFile(rc, []byte(fmt.Sprintf("[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = %s\n"+
		"username = demo@example.test\npassword = demo-secret\nca_certs = %s\nssl_cert_hostname = mx.postern.test\n\n"+
		"[destination]\ntype = Maildir\npath = %s\n%s\n[options]\nread_all = true\ndelete = false\nverbose = 0\n"+
		"delivered_to = false\nreceived = false\nmessage_log_syslog = false\n", popPort(in.POP3SAddr), in.CertFile, md, user)), 0o600)
	popRun(t, nil, "getmail", "--rcfile="+rc, "--getmaildir="+dir)
	files, _ := filepath.Glob(filepath.Join(md, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("getmail delivered %d messages, want 1", len(files))
	}
	got, _ := os.ReadFile(files[0])
	popAfterHeaders(t, "getmail", got, want)
}

// TestPOP3OpenSSL: openssl s_client -starttls pop3, a login and STAT.
func TestPOP3OpenSSL(t *testing.T) {
	in := popStart(t)
	want := popDeliver(t, in, "demo", popMessage("openssl-1", 5))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-starttls", "pop3", "-connect", in.POP3Addr,
		"-CAfile", in.CertFile, "-verify_return_error", "-quiet", "-crlf")
	cmd.Stdin = strings.NewReader("USER demo@example.test\nPASS demo-secret\nSTAT\nQUIT\n")
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	for _, w := range []string{"+OK Logged in.\r\n", fmt.Sprintf("+OK 1 %d\r\n", len(want)), "+OK Logging out.\r\n"} {
		if !strings.Contains(string(out), w) {
			t.Fatalf("openssl s_client output lacks %q:\n%s", w, out)
		}
	}
}

// TestPOP3Protocol drives the raw protocol: CAPA before and after TLS and
// after login, AUTH PLAIN and LOGIN, STLS refused on TLS, TOP, pipelined
// commands behind the login, RETR of a message without a final line end.
func TestPOP3Protocol(t *testing.T) {
	in := popStart(t)
	want := popDeliver(t, in, "demo", popMessage("proto-1", 10))

	c := popDial(t, in, in.POP3Addr, false)
	c.expect("CAPA", "+OK")
	capa := string(c.multi())
	for _, w := range []string{"TOP\r\n", "UIDL\r\n", "RESP-CODES\r\n", "AUTH-RESP-CODE\r\n", "PIPELINING\r\n", "STLS\r\n", "IMPLEMENTATION Postern\r\n"} {
		if !strings.Contains(capa, w) {
			t.Errorf("CAPA before TLS lacks %q: %q", w, capa)
		}
	}
	// Loopback counts as secure (as in Dovecot): USER and SASL are offered.
	if !strings.Contains(capa, "USER\r\n") || !strings.Contains(capa, "SASL PLAIN LOGIN\r\n") {
		t.Errorf("CAPA on loopback lacks USER/SASL: %q", capa)
	}
	c.stls(in)
	c.expect("CAPA", "+OK")
	if capa := string(c.multi()); strings.Contains(capa, "STLS") || !strings.Contains(capa, "SASL PLAIN LOGIN") {
		t.Errorf("CAPA after STLS: %q", capa)
	}
	c.expect("STLS", "-ERR")
	c.expect("AUTH", "+OK")
	if m := string(c.multi()); m != "PLAIN\r\nLOGIN\r\n" {
		t.Errorf("AUTH list: %q", m)
	}
	c.expect("AUTH PLAIN", "+ ")
	c.expect("*", "-ERR Authentication cancelled")
	c.expect("AUTH CRAM-MD5", "-ERR")
	// Pipelined behind the login: the session answers them.
	c.write(subPlain("demo@example.test", "demo-secret") + "\r\nSTAT\r\nTOP 1 2\r\n")
	if r := c.line(); r != "+OK Logged in." {
		t.Fatalf("AUTH PLAIN: %q", r)
	}
	if r := c.line(); r != fmt.Sprintf("+OK 1 %d", len(want)) {
		t.Fatalf("pipelined STAT: %q", r)
	}
	c.line()
	top := c.multi()
	hdrEnd := bytes.Index(want, []byte("\r\n\r\n")) + 4
	wantTop := string(want[:hdrEnd]) + "Grüße aus Köln.\r\n.\r\n"
	popSame(t, "TOP 1 2", top, []byte(wantTop))
	c.expect("CAPA", "+OK")
	if capa := string(c.multi()); strings.Contains(capa, "USER") || strings.Contains(capa, "STLS") || !strings.Contains(capa, "UIDL") {
		t.Errorf("CAPA after login: %q", capa)
	}
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(want)))
	popSame(t, "RETR 1", c.multi(), want)
	c.expect("LIST 2", "-ERR")
	c.expect("USER x", "-ERR")
	c.expect("QUIT", "+OK Logging out.")
	c.eof()

	// AUTH LOGIN with and without an initial response, on pop3s.
	for _, initial := range []bool{false, true} {
		c = popDial(t, in, in.POP3SAddr, true)
		c.expect("STLS", "-ERR")
		if initial {
			c.expect("AUTH LOGIN "+subB64("demo@example.test"), "+ UGFzc3dvcmQ6")
		} else {
			c.expect("AUTH LOGIN", "+ VXNlcm5hbWU6")
			c.expect(subB64("demo@example.test"), "+ UGFzc3dvcmQ6")
		}
		c.expect(subB64("demo-secret"), "+OK Logged in.")
		c.expect("LIST 1", fmt.Sprintf("+OK 1 %d", len(want)))
		c.expect("QUIT", "+OK")
		c.eof()
	}
	if !in.WaitLog("login user=<demo@example.test> method=LOGIN rip=127.0.0.1 lip=127.0.0.1 tls=yes", 5*time.Second) {
		t.Errorf("no LOGIN log line:\n%s", in.Log())
	}

	// A message without a final line end gets one before the ".".
	md := in.Maildir("demo")
	before := Messages(md)
	s := dialSMTP(t, in.Addr)
	s.ehlo("client.pop3.test")
	s.expect("MAIL FROM:<>", "250")
	s.expect("RCPT TO:<demo@example.test>", "250")
	s.expect("DATA", "354")
	s.write("Subject: x\r\n\r\nlast line\r\n.\r\n")
	s.reply()
	file := newMaildirFile(t, md, before)
	raw, _ := os.ReadFile(file)
	// Cut the file's final LF off, as another Maildir writer might
	// leave it.
	if err := os.WriteFile(file, bytes.TrimSuffix(raw, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	c = popSession(t, in, "demo@example.test", "demo-secret")
	c.expect("RETR 2", "+OK")
	popSame(t, "RETR of a message without a final LF", c.multi(), popCRLF(raw))
	c.expect("QUIT", "+OK")
}

// TestPOP3Privilege: pop3-login runs as postern with no capability inside
// the spool's login/ directory; a pop3d session runs as the mailbox owner
// (vmail) with no capability and no_new_privs.
func TestPOP3Privilege(t *testing.T) {
	if !isRoot() {
		t.Skip("privilege separation needs root (CI runs as root)")
	}
	in := popStart(t)
	popDeliver(t, in, "demo", popMessage("priv-1", 1))
	pUID, pGID := lookupIDs(t, "postern")
	vUID, vGID := lookupIDs(t, "vmail")
	spool, err := filepath.EvalSymlinks(in.Spool)
	if err != nil {
		t.Fatal(err)
	}
	c := popSession(t, in, "demo@example.test", "demo-secret")
	c.expect("STAT", "+OK 1 ")

	daemons := in.Daemons()
	logins := daemons["pop3-login"]
	if len(logins) == 0 {
		t.Fatalf("no pop3-login process: %v", daemons)
	}
	for _, pid := range logins {
		st, err := opsReadStatus(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if st.UID != [4]int{pUID, pUID, pUID, pUID} || st.GID != [4]int{pGID, pGID, pGID, pGID} {
			t.Errorf("pop3-login[%d]: Uid %v Gid %v, want postern %d:%d", pid, st.UID, st.GID, pUID, pGID)
		}
		if st.CapEff != 0 || st.CapPrm != 0 || st.NoNewPrivs != 1 {
			t.Errorf("pop3-login[%d]: CapEff %x CapPrm %x NoNewPrivs %d", pid, st.CapEff, st.CapPrm, st.NoNewPrivs)
		}
		root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		if err != nil || root != filepath.Join(spool, "login") {
			t.Errorf("pop3-login[%d]: root %q (%v), want %s", pid, root, err, filepath.Join(spool, "login"))
		}
		// Nothing but the session sockets is reachable from there.
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/", pid))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
			if e.Type()&os.ModeSocket == 0 {
				t.Errorf("pop3-login[%d]: its root holds %s, which is not a socket", pid, e.Name())
			}
		}
		t.Logf("pop3-login[%d]: root %s holds %v", pid, root, names)
	}
	acceptors := daemons["pop3d"]
	if len(acceptors) != 1 {
		t.Fatalf("pop3d acceptors: %v", acceptors)
	}
	sessions := popChildren(acceptors[0])
	if len(sessions) != 1 {
		t.Fatalf("pop3d sessions (children of %d): %v", acceptors[0], sessions)
	}
	st, err := opsReadStatus(fmt.Sprintf("/proc/%d/status", sessions[0]))
	if err != nil {
		t.Fatal(err)
	}
	if st.UID != [4]int{vUID, vUID, vUID, vUID} || st.GID != [4]int{vGID, vGID, vGID, vGID} {
		t.Errorf("pop3d session[%d]: Uid %v Gid %v, want vmail %d:%d", sessions[0], st.UID, st.GID, vUID, vGID)
	}
	if st.CapEff != 0 || st.CapPrm != 0 || st.NoNewPrivs != 1 {
		t.Errorf("pop3d session[%d]: CapEff %x CapPrm %x NoNewPrivs %d", sessions[0], st.CapEff, st.CapPrm, st.NoNewPrivs)
	}
	c.expect("QUIT", "+OK")
	c.eof()
	// The session is gone once the client is.
	for end := time.Now().Add(5 * time.Second); len(popChildren(acceptors[0])) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("session process still running after QUIT: %v", popChildren(acceptors[0]))
		}
	}
}

// popChildren lists the pids whose parent is ppid.
func popChildren(ppid int) []int {
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
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// TestPOP3Concurrency: delivery while a session lists and deletes (the
// session's snapshot does not change, the next session sees the new
// mail), a second session gets [IN-USE], UIDL is stable across sessions,
// and a client that drops the connection deletes nothing.
func TestPOP3Concurrency(t *testing.T) {
	in := popStart(t)
	var want [][]byte
	for i := 0; i < 3; i++ {
		want = append(want, popDeliver(t, in, "demo", popMessage(fmt.Sprintf("conc-%d", i), 5)))
	}
	c := popSession(t, in, "demo@example.test", "demo-secret")
	u1 := c.uidls()
	if len(u1) != 3 {
		t.Fatalf("UIDL: %v", u1)
	}
	// The second session is refused while the first holds the mailbox.
	c2 := popDial(t, in, in.POP3SAddr, true)
	if r := c2.login("demo@example.test", "demo-secret"); r != "-ERR [IN-USE] Mailbox is locked by another POP3 session." {
		t.Fatalf("second session: %q", r)
	}
	c2.eof()
	// Deliver while the session is open: its list stays as it was.
	want = append(want, popDeliver(t, in, "demo", popMessage("conc-late", 5)))
	c.expect("STAT", fmt.Sprintf("+OK 3 %d", len(want[0])+len(want[1])+len(want[2])))
	c.expect("DELE 2", "+OK")
	c.expect("LIST 2", "-ERR")
	c.expect("RETR 3", "+OK")
	popSame(t, "RETR 3", c.multi(), want[2])
	c.expect("QUIT", "+OK Logging out, messages deleted.")
	c.eof()

	// UIDs stay: message 1 and 3 keep their ids, the late one follows.
	c = popSession(t, in, "demo@example.test", "demo-secret")
	u2 := c.uidls()
	if len(u2) != 3 || u2[1] != u1[1] || u2[2] != u1[3] || u2[3][:8] <= u1[3][:8] || u2[3][8:] != u1[1][8:] {
		t.Fatalf("UIDL after DELE 2 and a delivery: %v, before %v", u2, u1)
	}
	c.expect("RETR 3", "+OK")
	popSame(t, "late message", c.multi(), want[3])
	// Drop the connection after DELE: nothing is deleted.
	c.expect("DELE 1", "+OK")
	c.expect("DELE 2", "+OK")
	c.c.Close()
	var u3 map[int]string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c = popDial(t, in, in.POP3Addr, false)
		c.stls(in)
		r := c.login("demo@example.test", "demo-secret")
		if r == "+OK Logged in." {
			break
		}
		// The dropped session may still hold the lock for a moment.
		if !strings.HasPrefix(r, "-ERR [IN-USE]") || time.Now().After(end) {
			t.Fatalf("login after a drop: %q", r)
		}
	}
	u3 = c.uidls()
	if fmt.Sprint(u3) != fmt.Sprint(u2) {
		t.Fatalf("after a dropped session: UIDL %v, want %v", u3, u2)
	}
	c.expect("QUIT", "+OK Logging out.")

	// Many deliveries racing a session that deletes everything it saw.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5; i++ {
			s := dialSMTP(t, in.Addr)
			s.ehlo("client.pop3.test")
			s.expect("MAIL FROM:<>", "250")
			s.expect("RCPT TO:<demo@example.test>", "250")
			s.data(popMessage(fmt.Sprintf("race-%d", i), 3))
			s.quit()
		}
	}()
	c = popSession(t, in, "demo@example.test", "demo-secret")
	seen := c.uidls()
	for n := range seen {
		c.expect(fmt.Sprintf("DELE %d", n), "+OK")
	}
	c.expect("QUIT", "+OK")
	<-done
	// Everything delivered after the snapshot is still there.
	popWaitFiles(t, in.Maildir("demo"), 8-len(seen))
	c = popSession(t, in, "demo@example.test", "demo-secret")
	left := c.uidls()
	for _, id := range left {
		for _, old := range seen {
			if id == old {
				t.Fatalf("a deleted message's UIDL %s is back", id)
			}
		}
	}
	c.expect("STAT", fmt.Sprintf("+OK %d ", len(left)))
	c.expect("QUIT", "+OK")
	if len(seen)+len(left) != 3+5 {
		t.Fatalf("deleted %d, left %d, want 8 in all", len(seen), len(left))
	}
}

// TestPOP3BadInput: over-long lines, unknown commands and commands before
// login, wrong passwords up to the limit, hung clients before and after
// login.
func TestPOP3BadInput(t *testing.T) {
	in := popStart(t, "login_timeout = 2s", "pop3d_idle_timeout = 3s")
	popDeliver(t, in, "demo", popMessage("bad-1", 1))

	c := popDial(t, in, in.POP3Addr, false)
	for _, cmd := range []string{"STAT", "LIST", "RETR 1", "NOOP", "DELE 1", "UIDL"} {
		c.expect(cmd, "-ERR Log in first.")
	}
	c.expect("XYZZY", "-ERR Unknown command.")
	c.expect("PASS demo-secret", "-ERR No user name given.")
	c.expect("RETR\x001", "-ERR Invalid command.")
	c.write(strings.Repeat("A", 5000) + "\r\n")
	if r := c.line(); r != "-ERR line too long" {
		t.Fatalf("over-long line: %q", r)
	}
	c.eof()

	// Wrong passwords: [AUTH] each time, closed after the third.
	c = popDial(t, in, in.POP3Addr, false)
	c.stls(in)
	for i := 0; i < 3; i++ {
		c.expect("USER demo@example.test", "+OK")
		c.expect("PASS wrong-"+strconv.Itoa(i), "-ERR [AUTH] Authentication failed.")
	}
	c.eof()
	if !in.WaitLog("auth failed user=<demo@example.test> method=USER rip=127.0.0.1", 5*time.Second) ||
		!in.WaitLog(`auth_failures=3 reason="too many authentication failures"`, 5*time.Second) {
		t.Errorf("no auth failure log lines:\n%s", in.Log())
	}
	c = popDial(t, in, in.POP3SAddr, true)
	c.expect(subPlain("demo@example.test", "nope"), "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH PLAIN "+subB64("other@example.test\x00demo@example.test\x00demo-secret"), "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH PLAIN !!!notbase64", "-ERR [AUTH] Authentication failed.")
	c.eof()

	// A client that says nothing is cut off after login_timeout.
	c = popDial(t, in, in.POP3Addr, false)
	start := time.Now()
	if r := c.line(); r != "-ERR Disconnected for inactivity." {
		t.Fatalf("idle before login: %q", r)
	}
	c.eof()
	if d := time.Since(start); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Fatalf("login_timeout = 2s cut the client off after %v", d)
	}
	// After login: pop3d_idle_timeout, and nothing is deleted.
	c = popSession(t, in, "demo@example.test", "demo-secret")
	c.expect("DELE 1", "+OK")
	start = time.Now()
	if r := c.line(); r != "-ERR Disconnected for inactivity." {
		t.Fatalf("idle after login: %q", r)
	}
	c.eof()
	if d := time.Since(start); d < 2500*time.Millisecond || d > 15*time.Second {
		t.Fatalf("pop3d_idle_timeout = 3s cut the client off after %v", d)
	}
	c = popSession(t, in, "demo@example.test", "demo-secret")
	c.expect("STAT", "+OK 1 ")
	// Bad commands in a session.
	c.expect("RETR 99", "-ERR")
	c.expect("TOP 1 -1", "-ERR")
	c.expect("FOO", "-ERR Unknown command.")
	c.write(strings.Repeat("B", 5000) + "\r\n")
	if r := c.line(); r != "-ERR line too long" {
		t.Fatalf("over-long line in a session: %q", r)
	}
	c.eof()
}

// popWaitFiles waits until a Maildir holds n messages in new/ and cur/.
func popWaitFiles(t *testing.T, md string, n int) {
	t.Helper()
	var got int
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		a, _ := os.ReadDir(filepath.Join(md, "new"))
		b, _ := os.ReadDir(filepath.Join(md, "cur"))
		if got = len(a) + len(b); got == n {
			return
		}
	}
	t.Fatalf("%s holds %d messages, want %d", md, got, n)
}

// popDovecotUIDL runs Debian's Dovecot POP3 server in preauth mode (as
// over ssh: the mailbox on the command line, the protocol on stdin and
// stdout) as the mailbox owner on maildir, and returns its UIDL listing.
func popDovecotUIDL(t *testing.T, in *Instance, maildir string) map[int]string {
	t.Helper()
	dir, err := os.MkdirTemp("", "postern-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte("mail_location = maildir:"+maildir+"\nssl = no\nlog_path = /dev/stderr\nbase_dir = "+dir+"/run\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/lib/dovecot/pop3", "-c", conf)
	cmd.Env = []string{"USER=demo", "HOME=" + dir, "MAIL=maildir:" + maildir}
	cmd.Stdin = strings.NewReader("UIDL\r\nQUIT\r\n")
	cmd.WaitDelay = time.Second
	if isRoot() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(in.uid), Gid: uint32(in.gid), Groups: []uint32{}}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dovecot pop3: %v\n%s\n%s", err, out, stderr.String())
	}
	lines := strings.Split(string(out), "\r\n")
	if len(lines) < 2 || lines[0] != "+OK" {
		t.Fatalf("dovecot pop3 said %q\n%s", out, stderr.String())
	}
	ids := map[int]string{}
	for _, l := range lines[1:] {
		if l == "." {
			return ids
		}
		f := strings.Fields(l)
		n, _ := strconv.Atoi(f[0])
		ids[n] = f[1]
	}
	t.Fatalf("dovecot pop3: no end of the UIDL listing in %q", out)
	return nil
}

// TestPOP3DovecotUIDL: Dovecot and Postern share a Maildir and agree on
// every UIDL, whichever of them numbered the messages first — an
// administrator moving from Dovecot keeps every id, and clients that
// leave mail on the server download nothing twice.
func TestPOP3DovecotUIDL(t *testing.T) {
	in := popStart(t)
	md := in.Maildir("demo")
	popDeliver(t, in, "demo", popMessage("dovecot-1", 3))
	popDeliver(t, in, "demo", popMessage("dovecot-2", 3))
	// Dovecot first: it writes dovecot-uidlist and its index files.
	dv := popDovecotUIDL(t, in, md)
	if len(dv) != 2 {
		t.Fatalf("dovecot UIDL: %v", dv)
	}
	c := popSession(t, in, "demo@example.test", "demo-secret")
	if pu := c.uidls(); fmt.Sprint(pu) != fmt.Sprint(dv) {
		t.Fatalf("Postern UIDL %v, Dovecot's %v", pu, dv)
	}
	c.expect("QUIT", "+OK")
	c.eof()
	// Postern numbers the next message; Dovecot agrees.
	popDeliver(t, in, "demo", popMessage("dovecot-3", 3))
	c = popSession(t, in, "demo@example.test", "demo-secret")
	pu := c.uidls()
	c.expect("QUIT", "+OK")
	c.eof()
	if len(pu) != 3 {
		t.Fatalf("Postern UIDL after a third delivery: %v", pu)
	}
	if dv := popDovecotUIDL(t, in, md); fmt.Sprint(pu) != fmt.Sprint(dv) {
		t.Fatalf("Dovecot UIDL %v, Postern's %v", dv, pu)
	}
}
