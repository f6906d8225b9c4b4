package tests

// End-to-end tests of mail submission, SMTP AUTH and TLS (issue 4): real
// mail clients (swaks, Python's smtplib, curl, openssl s_client) and raw
// connections against a whole Postern started with Options.Submission,
// whose two submission services are SubmissionAddr (STARTTLS, then AUTH;
// smtpd_tls_security_level=encrypt) and SubmissionsAddr (implicit TLS,
// RFC 8314), both with permit_sasl_authenticated,reject as relay policy
// and reject_sender_login_mismatch. in.Addr plays port 25: STARTTLS
// offered, no AUTH.
//
// What is accepted is checked byte for byte in the Maildir (a Received
// header "with ESMTPSA" and the TLS protocol in it); what is refused must
// leave nothing anywhere: no queue file in any queue directory, no
// Maildir file, an empty `postern queue list`. Each test starts its own
// instance: the auth daemon's failure counters and the queue of one test
// must not leak into another.
//
// Helpers come from smtp_test.go (smtpClient, replyIs, queuedID, ...),
// privilege_test.go (opsReadStatus) and the harness; the ones here are
// named sub*.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// subStart starts a Postern with the submission services and extra
// settings.
func subStart(t *testing.T, settings ...string) *Instance {
	t.Helper()
	in := Start(t, Options{Submission: true, Settings: settings})
	if in.SubmissionAddr == "" || in.SubmissionsAddr == "" || in.CertFile == "" {
		t.Fatalf("harness gave no submission services: %+v", in)
	}
	return in
}

// subTLSConfig trusts only the instance's self-signed certificate and
// checks the name in it, as a mail client configured for this host does.
func subTLSConfig(t *testing.T, in *Instance) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(in.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no PEM certificate", in.CertFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "mx.postern.test", MinVersion: tls.VersionTLS12}
}

// subDial connects from local ("" for any) to addr; with implicit the TLS
// handshake comes first (RFC 8314). It checks the 220 greeting.
func subDial(t *testing.T, in *Instance, local, addr string, implicit bool) *smtpClient {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	var c net.Conn
	var err error
	if implicit {
		c, err = tls.DialWithDialer(d, "tcp", addr, subTLSConfig(t, in))
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s from %q (implicit TLS %v): %v", addr, local, implicit, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sc := &smtpClient{t: t, c: c, br: bufio.NewReader(c)}
	if g := sc.reply(); !strings.HasPrefix(g, "220 mx.postern.test ") {
		t.Fatalf("greeting %q, want 220 mx.postern.test ...", g)
	}
	return sc
}

// subStartTLS sends STARTTLS, expects 220 2.0.0 and does the client side
// of the handshake; it returns the connection state.
func subStartTLS(t *testing.T, in *Instance, c *smtpClient) tls.ConnectionState {
	t.Helper()
	c.expect("STARTTLS", "220 2.0.0")
	return subHandshake(t, in, c)
}

// subHandshake turns c into a TLS client connection after the server's
// 220 to STARTTLS.
func subHandshake(t *testing.T, in *Instance, c *smtpClient) tls.ConnectionState {
	t.Helper()
	if n := c.br.Buffered(); n > 0 {
		t.Fatalf("the server sent %d octets after its 220 to STARTTLS, before TLS", n)
	}
	tc := tls.Client(c.c, subTLSConfig(t, in))
	tc.SetDeadline(time.Now().Add(60 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake after STARTTLS: %v", err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	return tc.ConnectionState()
}

// subSubmitter returns a client on SubmissionAddr after STARTTLS and EHLO
// (or on SubmissionsAddr after EHLO), with AUTH offered.
func subSubmitter(t *testing.T, in *Instance, implicit bool) *smtpClient {
	t.Helper()
	addr := in.SubmissionAddr
	if implicit {
		addr = in.SubmissionsAddr
	}
	c := subDial(t, in, "", addr, implicit)
	if !implicit {
		ext := c.ehlo("client.submit.test")
		if subHasExt(ext, "AUTH") {
			t.Fatalf("AUTH offered before STARTTLS on the submission port: %q", ext)
		}
		if !subHasExt(ext, "STARTTLS") {
			t.Fatalf("STARTTLS not offered on the submission port: %q", ext)
		}
		subStartTLS(t, in, c)
	}
	ext := c.ehlo("client.submit.test")
	if !subHasLine(ext, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO over TLS does not offer AUTH PLAIN LOGIN: %q", ext)
	}
	if subHasExt(ext, "STARTTLS") {
		t.Fatalf("STARTTLS offered again over TLS: %q", ext)
	}
	return c
}

// subHasExt reports whether an EHLO keyword is among ext.
func subHasExt(ext []string, kw string) bool {
	for _, e := range ext {
		if f := strings.Fields(e); len(f) > 0 && strings.EqualFold(f[0], kw) {
			return true
		}
	}
	return false
}

func subHasLine(ext []string, line string) bool {
	for _, e := range ext {
		if e == line {
			return true
		}
	}
	return false
}

func subB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// subPlain is the AUTH PLAIN command with an initial response (RFC 4616).
func subPlain(user, pass string) string {
	return "AUTH PLAIN " + subB64("\x00"+user+"\x00"+pass)
}

// subExact sends a command and wants exactly the reply line want.
func subExact(t *testing.T, c *smtpClient, line, want string) {
	t.Helper()
	if r := c.cmd(line); r != want+"\r\n" {
		t.Fatalf("%.80q: reply %q, want exactly %q", line, r, want)
	}
}

// subLogin runs AUTH LOGIN and returns the final reply.
func subLogin(t *testing.T, c *smtpClient, user, pass string) string {
	t.Helper()
	if r := c.cmd("AUTH LOGIN"); r != "334 VXNlcm5hbWU6\r\n" {
		t.Fatalf("AUTH LOGIN: %q, want 334 VXNlcm5hbWU6 (Username:)", r)
	}
	if r := c.cmd(subB64(user)); r != "334 UGFzc3dvcmQ6\r\n" {
		t.Fatalf("AUTH LOGIN user name: %q, want 334 UGFzc3dvcmQ6 (Password:)", r)
	}
	return c.cmd(subB64(pass))
}

// subMessage is a complete message with Date and Message-ID, so that
// cleanup has nothing to add and the delivered copy can be compared byte
// for byte.
func subMessage(tag, from, to string) []byte {
	return crlfMessage(
		"From: "+from,
		"To: "+to,
		"Subject: submission test "+tag,
		"Date: Mon, 2 Feb 2026 10:00:00 +0000",
		"Message-ID: <"+tag+"@client.submit.test>",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"",
		"Sent by "+tag+".",
		".a line that begins with a dot",
		"",
		"the end")
}

// subReceivedRE is cleanup's Received header for a TLS session, unfolded:
// from HELO (name [addr]) (using PROTO with cipher C) by host (Postern)
// with PROTOCOL id ID [for <rcpt>]; date.
var subReceivedRE = regexp.MustCompile(`^Received: from (\S+) \(unknown \[127\.0\.0\.1\]\) \(using (TLSv1\.[23]) with cipher ([A-Z0-9_]+)\) by mx\.postern\.test \(Postern\) with (\S+) id (\S+)(?: for <([^<>]*)>)?; (.+)$`)

// subWant is what one delivered Maildir file must hold.
type subWant struct {
	sender, deliveredTo, helo string
	proto                     string // ESMTPSA, ESMTPS
	id                        string // from the 250 reply
	forRcpt                   string // "" when the message had several recipients
	body                      []byte // as sent, CRLF
}

// subCheckDelivered checks one Maildir file byte for byte: Return-Path,
// Delivered-To, the Received header (TLS, protocol, queue ID), then the
// message exactly as sent with CRLF as LF.
func subCheckDelivered(t *testing.T, path string, w subWant) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head := "Return-Path: <" + w.sender + ">\nDelivered-To: " + w.deliveredTo + "\n"
	if !bytes.HasPrefix(b, []byte(head)) {
		t.Fatalf("%s does not begin with %q:\n%s", path, head, smtpClip(b))
	}
	rest := b[len(head):]
	end := 0
	for {
		i := bytes.IndexByte(rest[end:], '\n')
		if i < 0 {
			t.Fatalf("%s: header section ends inside Received:\n%s", path, smtpClip(b))
		}
		end += i + 1
		if end >= len(rest) || (rest[end] != ' ' && rest[end] != '\t') {
			break
		}
	}
	recv := string(rest[:end])
	m := subReceivedRE.FindStringSubmatch(strings.Join(strings.Fields(recv), " "))
	if m == nil {
		t.Fatalf("%s: third header is not the expected Received: %q\n%s", path, recv, smtpClip(b))
	}
	if m[1] != w.helo {
		t.Errorf("Received from %q, want the HELO name %q: %q", m[1], w.helo, recv)
	}
	if m[4] != w.proto {
		t.Errorf("Received with %q, want %q: %q", m[4], w.proto, recv)
	}
	if m[5] != w.id {
		t.Errorf("Received id %q, want %q from the 250 reply: %q", m[5], w.id, recv)
	}
	if m[6] != w.forRcpt {
		t.Errorf("Received for <%s>, want <%s>: %q", m[6], w.forRcpt, recv)
	}
	if d, err := mail.ParseDate(m[7]); err != nil {
		t.Errorf("Received date %q: %v", m[7], err)
	} else if s := time.Since(d); s < -time.Minute || s > 5*time.Minute {
		t.Errorf("Received date %s is not now", d)
	}
	want := bytes.ReplaceAll(w.body, []byte("\r\n"), []byte("\n"))
	if got := rest[end:]; !bytes.Equal(got, want) {
		t.Fatalf("%s: message differs from what was sent\n got %d bytes: %s\nwant %d bytes: %s", path, len(got), smtpClip(got), len(want), smtpClip(want))
	}
}

// subQueueEntry is one line of `postern queue list -j`.
type subQueueEntry struct {
	QueueName  string `json:"queue_name"`
	QueueID    string `json:"queue_id"`
	Sender     string `json:"sender"`
	Recipients []struct {
		Address string `json:"address"`
		Status  string `json:"status"`
	} `json:"recipients"`
}

// subWaitDeferred waits until `postern queue list -j` shows id in
// deferred/ from sender, with user@remote.example still to be delivered
// and every other recipient delivered.
func subWaitDeferred(t *testing.T, in *Instance, id, sender string, delivered ...string) {
	t.Helper()
	var out string
	var e subQueueEntry
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var err error
		out, err = in.Postern("queue", "list", "-j")
		if err != nil {
			t.Fatalf("postern queue list -j: %v\n%s", err, out)
		}
		e = subQueueEntry{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Contains(l, `"`+id+`"`) {
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("queue list -j line %q: %v", l, err)
				}
			}
		}
		if e.QueueName == "deferred" {
			break
		}
	}
	st := map[string]string{}
	for _, r := range e.Recipients {
		st[r.Address] = r.Status
	}
	ok := e.QueueName == "deferred" && e.QueueID == id && e.Sender == sender &&
		len(e.Recipients) == 1+len(delivered) &&
		(st["user@remote.example"] == "pending" || st["user@remote.example"] == "delayed")
	for _, d := range delivered {
		ok = ok && st[d] == "delivered"
	}
	if !ok {
		t.Fatalf("queue list -j does not show %s from <%s> deferred for user@remote.example (delivered: %v):\n%s", id, sender, delivered, out)
	}
}

// subNothingQueued waits a little, then checks that no queue file is in
// any queue directory, that `postern queue list` is empty, and that the
// mailboxes hold exactly the files in keep (nil: none).
func subNothingQueued(t *testing.T, in *Instance, keep ...string) {
	t.Helper()
	time.Sleep(smtpSettle)
	if left := smtpSpoolFiles(in); len(left) != 0 {
		t.Errorf("refused mail left queue files: %v", left)
	}
	if out, err := in.Postern("queue", "list"); err != nil || !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("postern queue list (%v):\n%s", err, out)
	}
	want := map[string]bool{}
	for _, k := range keep {
		want[k] = true
	}
	for _, u := range []string{"demo", "other"} {
		for _, f := range Messages(in.Maildir(u)) {
			if !want[f] {
				b, _ := os.ReadFile(f)
				t.Errorf("refused mail was delivered: %s\n%s", f, smtpClip(b))
			}
		}
	}
}

// subNoSecretsLogged fails if any of the secrets, as they are or in
// base64 (as they went over the wire), is in the log.
func subNoSecretsLogged(t *testing.T, in *Instance, secrets ...string) {
	t.Helper()
	log := in.Log()
	for _, s := range secrets {
		for _, form := range []string{s, subB64(s)} {
			if strings.Contains(log, form) {
				t.Errorf("the log holds a secret (%q):\n%s", form, log)
			}
		}
	}
}

// subQueuedLine finds the "250 2.0.0 Ok: queued as ID" line a client
// printed, prefix being how the client shows a server line ("<~  " for
// swaks over TLS, "< " for curl).
func subQueuedLine(t *testing.T, client, prefix string, out []byte) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `(250 2\.0\.0 Ok: queued as \S+?)\r?$`)
	m := re.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no 250 queued reply in %s's transcript:\n%s", client, out)
	}
	return queuedID(t, m[1]+"\r\n")
}

// TestSubmissionClients: swaks, smtplib and curl submit as
// demo@example.test, with STARTTLS on SubmissionAddr and implicit TLS on
// SubmissionsAddr, PLAIN and LOGIN, each one message to a remote address
// (which waits in deferred/: there is no remote delivery yet) and to
// other@example.test (delivered, checked byte for byte).
func TestSubmissionClients(t *testing.T) {
	in := subStart(t)
	other := in.Maildir("other")
	hostS, portS, _ := net.SplitHostPort(in.SubmissionAddr)
	hostI, portI, _ := net.SplitHostPort(in.SubmissionsAddr)
	rcpts := []string{"user@remote.example", "other@example.test"}

	// check follows one accepted message: the delivered copy, the queue,
	// the log.
	check := func(t *testing.T, tag, helo, id string, msg []byte, before []string) {
		t.Helper()
		f := newMaildirFile(t, other, before)
		subCheckDelivered(t, f, subWant{sender: "demo@example.test", deliveredTo: "other@example.test", helo: helo,
			proto: "ESMTPSA", id: id, forRcpt: "", body: msg})
		subWaitDeferred(t, in, id, "demo@example.test", "other@example.test")
		if !strings.Contains(in.Log(), id+": client=unknown[127.0.0.1], sasl_username=demo@example.test") {
			t.Errorf("no client/sasl_username log line for %s:\n%s", id, in.Log())
		}
		if n := len(Messages(in.Maildir("demo"))); n != 0 {
			t.Errorf("demo's Maildir holds %d messages, want none", n)
		}
	}

	for _, c := range []struct {
		name, host, port, tlsFlag, mech string
	}{
		{"swaks-starttls-plain", hostS, portS, "--tls", "PLAIN"},
		{"swaks-starttls-login", hostS, portS, "--tls", "LOGIN"},
		{"swaks-tlsc-plain", hostI, portI, "--tlsc", "PLAIN"},
		{"swaks-tlsc-login", hostI, portI, "--tlsc", "LOGIN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath("swaks"); err != nil {
				t.Fatalf("swaks is not installed (make deps): %v", err)
			}
			msg := subMessage(c.name, "demo@example.test", "user@remote.example, other@example.test")
			before := Messages(other)
			helo := c.name + ".client.test"
			out, err := runClient("swaks", "--server", c.host, "--port", c.port, c.tlsFlag,
				"--tls-verify", "--tls-ca-path", in.CertFile,
				"--auth", c.mech, "--auth-user", "demo@example.test", "--auth-password", "demo-secret",
				"--helo", helo, "--from", "demo@example.test", "--to", strings.Join(rcpts, ","),
				"--timeout", "30",
				// swaks ends the data with CRLF "." CRLF itself.
				"--data", "@"+smtpTempFile(t, "msg.eml", bytes.TrimSuffix(msg, []byte("\r\n"))))
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			if !regexp.MustCompile(`(?m)^=== TLS started with cipher TLSv1\.[23]:`).Match(out) {
				t.Errorf("swaks did not report TLS 1.2 or 1.3:\n%s", out)
			}
			if !strings.Contains(string(out), "<~  235 2.7.0 Authentication successful") {
				t.Errorf("swaks transcript has no 235 2.7.0 over TLS:\n%s", out)
			}
			id := subQueuedLine(t, "swaks", "<~  ", out)
			check(t, c.name, helo, id, msg, before)
		})
	}

	for _, c := range []struct{ name, addr, mode, mech string }{
		{"smtplib-starttls", in.SubmissionAddr, "starttls", ""},
		{"smtplib-ssl", in.SubmissionsAddr, "implicit", ""},
		{"smtplib-ssl-login", in.SubmissionsAddr, "implicit", "LOGIN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			py, err := exec.LookPath("python3")
			if err != nil {
				t.Fatalf("python3: %v", err)
			}
			script, _ := filepath.Abs("testdata/submission/submit.py")
			msg := subMessage(c.name, "demo@example.test", "user@remote.example, other@example.test")
			before := Messages(other)
			helo := c.name + ".client.test"
			args := []string{script, "--server", c.addr, "--tls", c.mode, "--cafile", in.CertFile, "--helo", helo,
				"--user", "demo@example.test", "--from", "demo@example.test", "--message", smtpTempFile(t, "msg.eml", msg)}
			if c.mech != "" {
				args = append(args, "--mech", c.mech)
			}
			for _, r := range rcpts {
				args = append(args, "--to", r)
			}
			out, err := subRunStdin("demo-secret\n", py, args...)
			if err != nil {
				t.Fatalf("smtplib: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 3 || !regexp.MustCompile(`^TLS TLSv1\.[23] \S+$`).MatchString(lines[0]) ||
				lines[1] != "AUTH 235 2.7.0 Authentication successful" || !strings.HasPrefix(lines[2], "DATA ") {
				t.Fatalf("smtplib printed %q", out)
			}
			id := queuedID(t, strings.TrimPrefix(lines[2], "DATA ")+"\r\n")
			check(t, c.name, helo, id, msg, before)
		})
	}

	for _, c := range []struct{ name, url, mech string }{
		{"curl-starttls", "smtp://" + in.SubmissionAddr, ""},
		{"curl-smtps", "smtps://" + in.SubmissionsAddr, ""},
		{"curl-smtps-login", "smtps://" + in.SubmissionsAddr, "LOGIN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath("curl"); err != nil {
				t.Fatalf("curl is not installed (make deps): %v", err)
			}
			msg := subMessage(c.name, "demo@example.test", "user@remote.example, other@example.test")
			before := Messages(other)
			helo := c.name + ".client.test"
			// The URL's path is the EHLO name; --ssl-reqd makes curl
			// refuse to go on without STARTTLS.
			args := []string{"-sS", "-v", "--max-time", "30", c.url + "/" + helo, "--ssl-reqd", "--cacert", in.CertFile,
				"--user", "demo@example.test:demo-secret", "--mail-from", "demo@example.test",
				"-T", smtpTempFile(t, "msg.eml", msg)}
			if c.mech != "" {
				args = append(args, "--login-options", "AUTH="+c.mech)
			}
			for _, r := range rcpts {
				args = append(args, "--mail-rcpt", r)
			}
			out, err := runClient("curl", args...)
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			if !regexp.MustCompile(`(?m)^\* SSL connection using TLSv1\.[23] `).Match(out) {
				t.Errorf("curl did not report TLS 1.2 or 1.3:\n%s", out)
			}
			if !strings.Contains(string(out), "< 235 2.7.0 Authentication successful") {
				t.Errorf("curl transcript has no 235 2.7.0:\n%s", out)
			}
			mech := c.mech
			if mech == "" {
				mech = "PLAIN"
			}
			if !strings.Contains(string(out), "> AUTH "+mech) {
				t.Errorf("curl did not use AUTH %s:\n%s", mech, out)
			}
			id := subQueuedLine(t, "curl", "< ", out)
			check(t, c.name, helo, id, msg, before)
		})
	}

	// The password never reaches the log, in any form.
	subNoSecretsLogged(t, in, "demo-secret", "\x00demo@example.test\x00demo-secret")
}

// subRunStdin runs a client with stdin for at most a minute and returns
// its combined output.
func subRunStdin(stdin, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// subOpenSSL runs openssl s_client with stdin at EOF (it does the
// handshake, prints the session, and leaves).
func subOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is not installed (make deps): %v", err)
	}
	out, _ := runClient("openssl", append([]string{"s_client"}, args...)...)
	return string(out)
}

var (
	subOpenSSLSubject  = regexp.MustCompile(`(?m)^subject=\s*CN\s*=\s*mx\.postern\.test\s*$`)
	subOpenSSLProtocol = regexp.MustCompile(`(?m)^\s*Protocol\s*:\s*(\S+)\s*$`)
	subOpenSSLVerified = regexp.MustCompile(`(?m)^\s*Verify return code: 0 \(ok\)\s*$`)
)

// TestSubmissionOpenSSL: openssl s_client shows the certificate
// (mx.postern.test) and a TLS 1.2+ protocol with STARTTLS on
// SubmissionAddr and in.Addr and implicit TLS on SubmissionsAddr; TLS 1.1
// and 1.0 are refused, by openssl and by crypto/tls clients.
func TestSubmissionOpenSSL(t *testing.T) {
	in := subStart(t)
	pemBytes, err := os.ReadFile(in.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatalf("%s: no PEM block", in.CertFile)
	}

	for _, c := range []struct {
		name  string
		args  []string
		proto string // "" for 1.2 or 1.3
	}{
		{"starttls-submission", []string{"-starttls", "smtp", "-connect", in.SubmissionAddr}, ""},
		{"starttls-submission-tls1.2", []string{"-starttls", "smtp", "-connect", in.SubmissionAddr, "-tls1_2"}, "TLSv1.2"},
		{"starttls-submission-tls1.3", []string{"-starttls", "smtp", "-connect", in.SubmissionAddr, "-tls1_3"}, "TLSv1.3"},
		{"starttls-smtp", []string{"-starttls", "smtp", "-connect", in.Addr}, ""},
		{"implicit-submissions", []string{"-connect", in.SubmissionsAddr}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := subOpenSSL(t, append(c.args, "-CAfile", in.CertFile, "-verify_return_error", "-verify_hostname", "mx.postern.test", "-showcerts")...)
			if !subOpenSSLSubject.MatchString(out) {
				t.Errorf("no subject=CN = mx.postern.test in openssl's output:\n%s", out)
			}
			if !subOpenSSLVerified.MatchString(out) {
				t.Errorf("certificate did not verify against %s:\n%s", in.CertFile, out)
			}
			m := subOpenSSLProtocol.FindStringSubmatch(out)
			switch {
			case m == nil:
				t.Errorf("no Protocol line in openssl's output:\n%s", out)
			case c.proto != "" && m[1] != c.proto:
				t.Errorf("protocol %s, want %s:\n%s", m[1], c.proto, out)
			case c.proto == "" && m[1] != "TLSv1.2" && m[1] != "TLSv1.3":
				t.Errorf("protocol %s, want TLSv1.2 or TLSv1.3:\n%s", m[1], out)
			}
			// The certificate shown is the configured one.
			if !strings.Contains(out, strings.TrimSpace(string(pemBytes))) {
				t.Errorf("openssl shows a certificate other than %s:\n%s", in.CertFile, out)
			}
		})
	}

	for _, c := range []struct{ name, flag string }{{"tls1.1", "-tls1_1"}, {"tls1.0", "-tls1"}} {
		for _, target := range []struct {
			name string
			args []string
		}{
			{"submission", []string{"-starttls", "smtp", "-connect", in.SubmissionAddr}},
			{"submissions", []string{"-connect", in.SubmissionsAddr}},
			{"smtp", []string{"-starttls", "smtp", "-connect", in.Addr}},
		} {
			t.Run("refused-"+c.name+"-"+target.name, func(t *testing.T) {
				// SECLEVEL=0 lets openssl itself offer the old protocol, so
				// that the refusal is the server's: a protocol_version
				// alert, and no certificate.
				out := subOpenSSL(t, append(target.args, c.flag, "-cipher", "DEFAULT:@SECLEVEL=0")...)
				if !strings.Contains(out, "alert protocol version") {
					t.Errorf("%s: no protocol_version alert from the server:\n%s", c.name, out)
				}
				if subOpenSSLSubject.MatchString(out) || !strings.Contains(out, "no peer certificate available") {
					t.Errorf("%s: a certificate was shown:\n%s", c.name, out)
				}
			})
		}
	}

	t.Run("crypto-tls", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			cfg := subTLSConfig(t, in)
			cfg.MinVersion, cfg.MaxVersion = v, v
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.SubmissionsAddr, cfg)
			if err == nil {
				c.Close()
				t.Errorf("implicit TLS with version %#04x only: handshake succeeded", v)
			}
			sc := subDial(t, in, "", in.SubmissionAddr, false)
			sc.ehlo("old.client.test")
			sc.expect("STARTTLS", "220 2.0.0")
			tc := tls.Client(sc.c, cfg)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err == nil {
				t.Errorf("STARTTLS with version %#04x only: handshake succeeded", v)
			} else if !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("STARTTLS with version %#04x only: %v, want a protocol version alert", v, err)
			}
		}
		// TLS 1.2 and 1.3 work, and the peer's certificate is the file's.
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			cfg := subTLSConfig(t, in)
			cfg.MinVersion, cfg.MaxVersion = v, v
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.SubmissionsAddr, cfg)
			if err != nil {
				t.Errorf("implicit TLS version %#04x: %v", v, err)
				continue
			}
			st := c.ConnectionState()
			if st.Version != v || len(st.PeerCertificates) == 0 || !bytes.Equal(st.PeerCertificates[0].Raw, blk.Bytes) {
				t.Errorf("implicit TLS version %#04x: got version %#04x, certificate other than %s", v, st.Version, in.CertFile)
			}
			c.Close()
		}
	})
	if !strings.Contains(in.Log(), "SSL_accept error from unknown[127.0.0.1]") {
		t.Errorf("no SSL_accept error logged for the refused handshakes:\n%s", in.Log())
	}
}

// TestSubmissionAuthErrors: wrong password and unknown user get 535
// 5.7.8; AUTH before STARTTLS 530 on the submission port and 502 on the
// port 25 service, which offers no AUTH; AUTH twice 503 5.5.1; malformed
// base64 501 5.5.2; an over-long response 500 5.5.6. A failed AUTH leaves
// the client unauthenticated (no relay, no submission), and no password
// reaches the log.
func TestSubmissionAuthErrors(t *testing.T) {
	in := subStart(t)
	const wrong1, wrong2, wrong3 = "wrong-Pw-7Zq1", "wrong-Pw-8Yr2", "nobody-Pw-9Xs3"

	t.Run("wrong-password-plain", func(t *testing.T) {
		c := subSubmitter(t, in, false)
		c.expect(subPlain("demo@example.test", wrong1), "535 5.7.8")
		// Still a stranger: the submission port relays for nobody else
		// and takes no mail for a local user either.
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		c.expect("RCPT TO:<user@remote.example>", "554 5.7.1")
		c.expect("RCPT TO:<other@example.test>", "554 5.7.1")
		c.expect("DATA", "554 5.5.1")
		c.expect("RSET", "250 2.0.0")
		// The right password still works in the same session.
		c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
		c.quit()
	})
	t.Run("wrong-password-login", func(t *testing.T) {
		c := subSubmitter(t, in, true)
		mustReply(t, "AUTH LOGIN with a wrong password", subLogin(t, c, "demo@example.test", wrong2), "535 5.7.8")
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		c.expect("RCPT TO:<other@example.test>", "554 5.7.1")
		c.quit()
	})
	t.Run("unknown-user", func(t *testing.T) {
		c := subSubmitter(t, in, false)
		c.expect(subPlain("nobody@example.test", wrong3), "535 5.7.8")
		mustReply(t, "AUTH LOGIN for an unknown user", subLogin(t, c, "nobody@example.test", wrong3), "535 5.7.8")
		// Another user's address with demo's password.
		c.expect(subPlain("other@example.test", "demo-secret"), "535 5.7.8")
		c.quit()
	})
	t.Run("authzid-other-user", func(t *testing.T) {
		// demo's own credentials asking to act as other@: refused.
		c := subSubmitter(t, in, false)
		c.expect("AUTH PLAIN "+subB64("other@example.test\x00demo@example.test\x00demo-secret"), "535 5.7.8")
		c.quit()
	})
	t.Run("before-starttls", func(t *testing.T) {
		c := subDial(t, in, "", in.SubmissionAddr, false)
		if ext := c.ehlo("early.client.test"); subHasExt(ext, "AUTH") {
			t.Errorf("AUTH offered before STARTTLS: %q", ext)
		}
		c.expect(subPlain("demo@example.test", "demo-secret"), "530 5.7.0")
		c.expect("AUTH LOGIN", "530 5.7.0")
		c.expect("MAIL FROM:<demo@example.test>", "530 5.7.0")
		c.quit()
	})
	t.Run("smtp-port-has-no-auth", func(t *testing.T) {
		c := subDial(t, in, "", in.Addr, false)
		if ext := c.ehlo("mx.client.test"); subHasExt(ext, "AUTH") || !subHasExt(ext, "STARTTLS") {
			t.Errorf("port 25 EHLO before TLS: %q, want STARTTLS and no AUTH", ext)
		}
		c.expect(subPlain("demo@example.test", "demo-secret"), "502 5.5.1")
		subStartTLS(t, in, c)
		if ext := c.ehlo("mx.client.test"); subHasExt(ext, "AUTH") || subHasExt(ext, "STARTTLS") {
			t.Errorf("port 25 EHLO over TLS: %q, want neither AUTH nor STARTTLS", ext)
		}
		c.expect(subPlain("demo@example.test", "demo-secret"), "502 5.5.1")
		c.expect("AUTH LOGIN", "502 5.5.1")
		c.quit()
	})
	t.Run("auth-twice", func(t *testing.T) {
		c := subSubmitter(t, in, false)
		c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
		c.expect(subPlain("demo@example.test", "demo-secret"), "503 5.5.1")
		c.expect(subPlain("other@example.test", "other-secret"), "503 5.5.1")
		c.expect("AUTH LOGIN", "503 5.5.1")
		c.quit()
		c = subSubmitter(t, in, true)
		mustReply(t, "AUTH LOGIN", subLogin(t, c, "demo@example.test", "demo-secret"), "235 2.7.0")
		c.expect(subPlain("demo@example.test", "demo-secret"), "503 5.5.1")
		c.quit()
	})
	t.Run("malformed-base64", func(t *testing.T) {
		c := subSubmitter(t, in, false)
		c.expect("AUTH PLAIN not*base64!", "501 5.5.2")
		c.expect("AUTH PLAIN "+subB64("\x00demo@example.test\x00demo-secret")[1:], "501 5.5.2") // length not a multiple of 4
		c.expect("AUTH PLAIN", "334")
		c.expect("%%%%", "501 5.5.2")
		subExact(t, c, "AUTH LOGIN", "334 VXNlcm5hbWU6")
		subExact(t, c, subB64("demo@example.test"), "334 UGFzc3dvcmQ6")
		c.expect("ZGVtby1zZWNyZXQ", "501 5.5.2") // demo-secret without its padding
		// "*" cancels (RFC 4954 4).
		subExact(t, c, "AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.expect("*", "501 5.0.0")
		c.expect("AUTH CRAM-MD5", "504 5.5.4")
		// None of this authenticated anyone; the session goes on.
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		c.expect("RCPT TO:<other@example.test>", "554 5.7.1")
		c.expect("RSET", "250 2.0.0")
		c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
		c.quit()
	})
	t.Run("over-long-response", func(t *testing.T) {
		c := subSubmitter(t, in, true)
		c.expect("AUTH PLAIN", "334")
		// 16 KiB of valid base64: more than the 12288 octets RFC 4954
		// obliges a server to take.
		c.expect(strings.Repeat("QUFB", 4096), "500 5.5.6")
		subExact(t, c, "AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.expect(strings.Repeat("QUFB", 4096), "500 5.5.6")
		c.expect("NOOP", "250 2.0.0")
		c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
		c.quit()
	})

	log := in.Log()
	for _, want := range []string{
		"warning: unknown[127.0.0.1]: SASL PLAIN authentication failed",
		"warning: unknown[127.0.0.1]: SASL LOGIN authentication failed",
		"login failed for user=<demo@example.test> client=127.0.0.1 service=smtp",
		"login failed for user=<nobody@example.test> client=127.0.0.1 service=smtp",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}
	subNoSecretsLogged(t, in, "demo-secret", "other-secret", wrong1, wrong2, wrong3,
		"\x00demo@example.test\x00"+wrong1, "\x00nobody@example.test\x00"+wrong3)
	subNothingQueued(t, in)
}

// TestSubmissionAuthRateLimit: after auth_failure_limit (3) failed
// logins, further attempts with the right password get 454 4.7.0, for
// the failing client address and for the failing user, until
// auth_failure_window has passed.
func TestSubmissionAuthRateLimit(t *testing.T) {
	const window = 5 * time.Second
	in := subStart(t, "auth_failure_limit = 3", fmt.Sprintf("auth_failure_window = %ds", int(window/time.Second)))
	c := subSubmitter(t, in, true)
	for i := 0; i < 3; i++ {
		c.expect(subPlain("demo@example.test", fmt.Sprintf("bad-guess-%d", i)), "535 5.7.8")
	}
	lastFailure := time.Now()
	// The right password, from the same address: refused for now.
	c.expect(subPlain("demo@example.test", "demo-secret"), "454 4.7.0")
	mustReply(t, "AUTH LOGIN while blocked", subLogin(t, c, "demo@example.test", "demo-secret"), "454 4.7.0")
	c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
	c.expect("RCPT TO:<other@example.test>", "554 5.7.1")
	c.quit()

	// The same address for another user: refused (the address is
	// blocked). The same user from another address: refused (the user
	// is blocked). Another user from another address: fine.
	other := subDial(t, in, "", in.SubmissionsAddr, true)
	other.ehlo("client.submit.test")
	other.expect(subPlain("other@example.test", "other-secret"), "454 4.7.0")
	other.quit()
	away := subDial(t, in, "127.0.0.2", in.SubmissionsAddr, true)
	away.ehlo("client.submit.test")
	away.expect(subPlain("demo@example.test", "demo-secret"), "454 4.7.0")
	away.expect(subPlain("other@example.test", "other-secret"), "235 2.7.0")
	away.quit()
	if time.Since(lastFailure) >= window {
		t.Fatalf("the checks took longer than auth_failure_window (%v): the test proves nothing", window)
	}

	// "For a while": after the window, the right password works again.
	time.Sleep(time.Until(lastFailure.Add(window + 500*time.Millisecond)))
	c = subSubmitter(t, in, false)
	c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
	c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
	c.expect("RCPT TO:<other@example.test>", "250 2.1.5")
	msg := subMessage("after-block", "demo@example.test", "other@example.test")
	id := queuedID(t, c.data(msg))
	c.quit()
	f := newMaildirFile(t, in.Maildir("other"), nil)
	subCheckDelivered(t, f, subWant{sender: "demo@example.test", deliveredTo: "other@example.test", helo: "client.submit.test",
		proto: "ESMTPSA", id: id, forRcpt: "other@example.test", body: msg})

	log := in.Log()
	for _, want := range []string{
		"login refused for user=<demo@example.test> client=127.0.0.1 service=smtp: too many failed logins",
		"login refused for user=<other@example.test> client=127.0.0.1 service=smtp: too many failed logins",
		"login refused for user=<demo@example.test> client=127.0.0.2 service=smtp: too many failed logins",
		"login ok for user=<other@example.test> client=127.0.0.2 service=smtp",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}
	subNoSecretsLogged(t, in, "demo-secret", "other-secret", "bad-guess-0", "bad-guess-1", "bad-guess-2")
}

// subRelayRcpts are the open-relay tricks and what each must get from a
// client that may not relay, on the port 25 service: a remote
// destination 554 5.7.1 (Relay access denied); a local domain whose
// local part names no mailbox, whatever routing it hides, 550 5.1.1; an
// address that is no address, 501 5.1.3.
var subRelayRcpts = []struct{ rcpt, want string }{
	{"user@remote.example", "554 5.7.1"},
	{"user%remote.example@example.test", "550 5.1.1"},
	{"remote.example!user@example.test", "550 5.1.1"},
	{"@example.test:user@remote.example", "554 5.7.1"},
	{"@localhost,@mx.postern.test:user@remote.example", "554 5.7.1"},
	{`"user@remote.example"@example.test`, "550 5.1.1"},
	{"user@remote.example@example.test", "501 5.1.3"},
	{"user@remote.example.", "554 5.7.1"},
	{"USER@REMOTE.EXAMPLE", "554 5.7.1"},
	{"User@Remote.Example.", "554 5.7.1"},
	{"user@[127.0.0.1]", "554 5.7.1"},
	{"user@[192.0.2.1]", "554 5.7.1"},
	{"user@[IPv6:::1]", "554 5.7.1"},
	{"user%remote.example@[127.0.0.1]", "554 5.7.1"},
	{"user%remote.example@localhost", "550 5.1.1"},
	{"remote.example!user@localhost", "550 5.1.1"},
	{`"user@remote.example"@localhost`, "550 5.1.1"},
	{"user%remote.example@EXAMPLE.TEST.", "550 5.1.1"},
}

// TestSubmissionOpenRelay: from 127.0.0.2, outside mynetworks
// (127.0.0.1/32) and not authenticated, every relay trick is refused
// on the port 25 service with every kind of sender, and on the
// submission port after STARTTLS without AUTH (554 5.7.1 for every
// recipient, local ones too); nothing is queued.
func TestSubmissionOpenRelay(t *testing.T) {
	// Every refusal counts as an error; the battery makes more than the
	// default smtpd_hard_error_limit (20) allows in one session, and
	// past smtpd_soft_error_limit each reply would come a second late.
	in := subStart(t, "mynetworks = 127.0.0.1/32", "smtpd_hard_error_limit = 1000", "smtpd_soft_error_limit = 1000")

	senders := []string{
		"<>",
		"<demo@example.test>",                // our own user, forged
		"<postmaster@mx.postern.test>",       // our host name
		"<@example.test:demo@example.test>",  // source route
		"<demo@[127.0.0.1]>",                 // an address literal of ours
		"<user@remote.example>",              // the destination itself
		"<DEMO@EXAMPLE.TEST.>",               // case and trailing dot
		"<user%remote.example@example.test>", // percent hack
	}
	t.Run("smtp", func(t *testing.T) {
		c := subDial(t, in, "127.0.0.2", in.Addr, false)
		c.ehlo("outside.client.test")
		for _, from := range senders {
			c.expect("MAIL FROM:"+from, "250 2.1.0")
			for _, r := range subRelayRcpts {
				c.expect("RCPT TO:<"+r.rcpt+">", r.want)
			}
			c.expect("DATA", "554 5.5.1")
			c.expect("RSET", "250 2.0.0")
		}
		// The odd senders that are no address at all never open a
		// transaction, so a recipient after them has nothing to join.
		for _, from := range []string{"< >", `<"">`, "<postmaster>", "<user@remote.example@example.test>", "<@>"} {
			c.expect("MAIL FROM:"+from, "501 5.1.7")
			c.expect("RCPT TO:<user@remote.example>", "503 5.5.1")
		}
		c.quit()
		if want := "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <user@remote.example>: Relay access denied; from=<> to=<user@remote.example> proto=ESMTP helo=<outside.client.test>"; !strings.Contains(in.Log(), want) {
			t.Errorf("log has no %q:\n%s", want, in.Log())
		}
	})

	t.Run("smtp-starttls", func(t *testing.T) {
		// TLS makes no client more trusted.
		c := subDial(t, in, "127.0.0.2", in.Addr, false)
		c.ehlo("outside.client.test")
		subStartTLS(t, in, c)
		c.ehlo("outside.client.test")
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		for _, r := range subRelayRcpts {
			c.expect("RCPT TO:<"+r.rcpt+">", r.want)
		}
		c.expect("DATA", "554 5.5.1")
		c.quit()
	})

	for _, sub := range []struct {
		name, local string
		implicit    bool
	}{
		{"submission-outside", "127.0.0.2", false},
		{"submission-mynetworks", "127.0.0.1", false},
		{"submissions-outside", "127.0.0.2", true},
	} {
		t.Run(sub.name, func(t *testing.T) {
			addr := in.SubmissionAddr
			if sub.implicit {
				addr = in.SubmissionsAddr
			}
			c := subDial(t, in, sub.local, addr, sub.implicit)
			if !sub.implicit {
				c.ehlo("outside.client.test")
				subStartTLS(t, in, c)
			}
			c.ehlo("outside.client.test")
			for _, from := range []string{"<>", "<demo@example.test>", "<user@remote.example>"} {
				c.expect("MAIL FROM:"+from, "250 2.1.0")
				for _, r := range subRelayRcpts {
					want := "554 5.7.1" // permit_sasl_authenticated, reject
					if r.want == "501 5.1.3" {
						want = r.want
					}
					c.expect("RCPT TO:<"+r.rcpt+">", want)
				}
				for _, local := range []string{"demo@example.test", "other@example.test", "postmaster"} {
					c.expect("RCPT TO:<"+local+">", "554 5.7.1")
				}
				c.expect("DATA", "554 5.5.1")
				c.expect("RSET", "250 2.0.0")
			}
			c.quit()
		})
	}
	subNothingQueued(t, in)
	if n := strings.Count(in.Log(), ": client="); n != 0 {
		t.Errorf("%d messages were started although every recipient was refused:\n%s", n, in.Log())
	}
}

// TestSubmissionSenderLoginMismatch: an authenticated user sends only as
// itself (553 5.7.1 otherwise); the port 25 service, which has no
// reject_sender_login_mismatch, takes demo@example.test as sender from a
// client that did not authenticate.
func TestSubmissionSenderLoginMismatch(t *testing.T) {
	in := subStart(t, "mynetworks = 127.0.0.1/32")
	var keep []string

	t.Run("submission", func(t *testing.T) {
		c := subSubmitter(t, in, false)
		c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
		if r := c.cmd("MAIL FROM:<other@example.test>"); r != "553 5.7.1 <other@example.test>: Sender address rejected: not owned by user demo@example.test\r\n" {
			t.Fatalf("MAIL FROM another user's address: %q, want 553 5.7.1 <other@example.test>: Sender address rejected: not owned by user demo@example.test", r)
		}
		for _, from := range []string{"<Other@Example.Test>", "<other@EXAMPLE.TEST.>", "<user@remote.example>", "<demo@remote.example>", "<demo+tag@example.test>", "<@example.test:other@example.test>"} {
			c.expect("MAIL FROM:"+from, "553 5.7.1")
		}
		// No transaction was opened by the refusals.
		c.expect("RCPT TO:<other@example.test>", "503 5.5.1")
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		c.expect("RCPT TO:<other@example.test>", "250 2.1.5")
		msg := subMessage("mismatch-own-address", "demo@example.test", "other@example.test")
		before := Messages(in.Maildir("other"))
		id := queuedID(t, c.data(msg))
		c.quit()
		f := newMaildirFile(t, in.Maildir("other"), before)
		keep = append(keep, f)
		subCheckDelivered(t, f, subWant{sender: "demo@example.test", deliveredTo: "other@example.test", helo: "client.submit.test",
			proto: "ESMTPSA", id: id, forRcpt: "other@example.test", body: msg})
		if want := "NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 553 5.7.1 <other@example.test>: Sender address rejected: not owned by user demo@example.test; from=<other@example.test> proto=ESMTP helo=<client.submit.test>"; !strings.Contains(in.Log(), want) {
			t.Errorf("log has no %q:\n%s", want, in.Log())
		}
	})

	t.Run("submissions", func(t *testing.T) {
		c := subSubmitter(t, in, true)
		mustReply(t, "AUTH LOGIN", subLogin(t, c, "other@example.test", "other-secret"), "235 2.7.0")
		c.expect("MAIL FROM:<demo@example.test>", "553 5.7.1")
		c.expect("MAIL FROM:<other@example.test>", "250 2.1.0")
		c.quit()
	})

	t.Run("smtp-unauthenticated", func(t *testing.T) {
		// From 127.0.0.1 (mynetworks): the port 25 service does not tie
		// senders to logins.
		c := subDial(t, in, "127.0.0.1", in.Addr, false)
		c.ehlo("inside.client.test")
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		c.expect("RCPT TO:<other@example.test>", "250 2.1.5")
		msg := subMessage("smtp-as-demo", "demo@example.test", "other@example.test")
		before := Messages(in.Maildir("other"))
		id := queuedID(t, c.data(msg))
		c.quit()
		f := newMaildirFile(t, in.Maildir("other"), before)
		keep = append(keep, f)
		checkMessage(t, f, wantMsg{sender: "demo@example.test", deliveredTo: "other@example.test", helo: "inside.client.test",
			proto: "ESMTP", id: id, forRcpt: "other@example.test", body: msg})
	})
	waitSpoolEmpty(t, in)
	subNothingQueued(t, in, keep...)
}

// TestSubmissionStartTLSInjection: commands pipelined after STARTTLS in
// the same packet came in the clear and must be thrown away, not run
// once TLS is up (CVE-2011-0411).
func TestSubmissionStartTLSInjection(t *testing.T) {
	in := subStart(t)

	for _, c := range []struct{ name, addr, inject string }{
		// The brief's case: RSET and MAIL after STARTTLS.
		{"smtp-rset-mail", in.Addr, "STARTTLS\r\nRSET\r\nMAIL FROM:<a@example.org>\r\n"},
		// With an EHLO in the injection, a MAIL that ran would be
		// accepted and the RCPT below would get a 250.
		{"smtp-ehlo-mail", in.Addr, "STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<a@example.org>\r\n"},
		// On the submission port the prize is an AUTH: after the
		// handshake the client must still be a stranger.
		{"submission-auth", in.SubmissionAddr, "STARTTLS\r\nEHLO evil.test\r\n" + subPlain("demo@example.test", "demo-secret") + "\r\nMAIL FROM:<demo@example.test>\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mark := len(in.Log())
			sc := subDial(t, in, "", c.addr, false)
			if ext := sc.ehlo("client.inject.test"); !subHasExt(ext, "STARTTLS") {
				t.Fatalf("no STARTTLS offered: %q", ext)
			}
			sc.write(c.inject) // one write: one segment on loopback
			if r := sc.reply(); !replyIs(r, "220 2.0.0") {
				t.Fatalf("STARTTLS: %q, want 220 2.0.0", r)
			}
			subHandshake(t, in, sc)
			// The first reply over TLS is the one to this RCPT: nothing
			// answers the injected commands.
			if r := sc.cmd("RCPT TO:<demo@example.test>"); r != "503 5.5.1 Error: need MAIL command\r\n" {
				t.Fatalf("RCPT after the handshake: %q, want 503 5.5.1 Error: need MAIL command", r)
			}
			ext := sc.ehlo("client.inject.test")
			if c.addr == in.SubmissionAddr {
				if !subHasLine(ext, "AUTH PLAIN LOGIN") {
					t.Errorf("no AUTH offered over TLS: %q", ext)
				}
				// Not authenticated: MAIL is taken, relay is not.
				sc.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
				sc.expect("RCPT TO:<other@example.test>", "554 5.7.1")
				sc.expect("RSET", "250 2.0.0")
				sc.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
			}
			sc.quit()
			n := len(c.inject) - len("STARTTLS\r\n")
			want := fmt.Sprintf("warning: unknown[127.0.0.1]: pipelined commands after STARTTLS discarded: %d octets", n)
			if !in.WaitLog(want, 5*time.Second) || !strings.Contains(in.Log()[mark:], want) {
				t.Errorf("log has no %q:\n%s", want, in.Log()[mark:])
			}
		})
	}

	t.Run("session-after-tls", func(t *testing.T) {
		// The same discard does not disturb a correct client: a whole
		// transaction over TLS after STARTTLS on port 25.
		sc := subDial(t, in, "", in.Addr, false)
		sc.ehlo("client.inject.test")
		subStartTLS(t, in, sc)
		sc.ehlo("client.inject.test")
		sc.expect("MAIL FROM:<a@example.org>", "250 2.1.0")
		sc.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		msg := subMessage("after-starttls", "a@example.org", "demo@example.test")
		id := queuedID(t, sc.data(msg))
		sc.quit()
		f := newMaildirFile(t, in.Maildir("demo"), nil)
		subCheckDelivered(t, f, subWant{sender: "a@example.org", deliveredTo: "demo@example.test", helo: "client.inject.test",
			proto: "ESMTPS", id: id, forRcpt: "demo@example.test", body: msg})
	})
	waitSpoolEmpty(t, in)
	if n := len(Messages(in.Maildir("demo"))) + len(Messages(in.Maildir("other"))); n != 1 {
		t.Errorf("%d messages delivered, want only the one of session-after-tls", n)
	}
}

// subFileMode describes a file for messages and for subMayRead.
type subFileMode struct {
	path     string
	uid, gid int
	perm     fs.FileMode
	fi       os.FileInfo
}

func subStatFile(t *testing.T, path string) subFileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return subFileMode{path: path, uid: int(st.Uid), gid: int(st.Gid), perm: fi.Mode().Perm(), fi: fi}
}

// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: either lets a process read
// any file whatever its mode.
const subCapDACRead = 1<<1 | 1<<2

// subMayRead applies the kernel's rule for opening a regular file for
// reading to a process whose /proc status is st: a DAC capability
// overrides the mode; otherwise the owner's bits apply if the filesystem
// uid owns the file, else the group's bits if the filesystem gid or a
// supplementary group is the file's group, else the others' bits. (The
// directories on the way are not considered: the answer may say "yes"
// where a directory would stop the process, never the other way.)
func subMayRead(st opsProcStatus, f subFileMode) (bool, string) {
	fsuid, fsgid := st.UID[3], st.GID[3]
	switch {
	case st.CapEff&subCapDACRead != 0:
		return true, fmt.Sprintf("it holds CapEff %x (DAC override)", st.CapEff)
	case fsuid == f.uid:
		return f.perm&0o400 != 0, fmt.Sprintf("its uid %d owns it", fsuid)
	case fsgid == f.gid || opsContainsInt(st.Groups, f.gid):
		return f.perm&0o040 != 0, fmt.Sprintf("its group %d (gid %d, groups %v) is the file's", f.gid, fsgid, st.Groups)
	}
	return f.perm&0o004 != 0, fmt.Sprintf("others' bits (uid %d, gid %d, groups %v)", fsuid, fsgid, st.Groups)
}

// subOpenFDs lists the descriptors of pid that point to f.
func subOpenFDs(pid int, f subFileMode) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p) // follows the magic link to the open file
		if err != nil {
			continue
		}
		if os.SameFile(fi, f.fi) {
			l, _ := os.Readlink(p)
			out = append(out, e.Name()+" -> "+l)
		}
	}
	return out
}

// subTryRead opens f with the credentials of a process (its filesystem
// uid and gid and its groups, no capabilities) in a child and reports
// whether that worked: the kernel's answer beside subMayRead's.
func subTryRead(st opsProcStatus, path string) (bool, string) {
	groups := make([]uint32, len(st.Groups))
	for i, g := range st.Groups {
		groups[i] = uint32(g)
	}
	cmd := exec.Command("/bin/cat", "--", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(st.UID[3]), Gid: uint32(st.GID[3]), Groups: groups}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return false, strings.TrimSpace(string(out))
	}
	return true, fmt.Sprintf("read %d bytes", len(out))
}

// subOpenEvent is one open(2) of a file below the watched prefix.
type subOpenEvent struct {
	pid       int
	exe, path string
}

// subOpenWatch records, with fanotify, who opens files whose path starts
// with prefix, on the filesystem that holds it: the kernel's account of
// "only auth ever opened the passwd-file", which descriptors at rest
// cannot give (a daemon may have read and closed it).
type subOpenWatch struct {
	fd       int
	prefix   string
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	mu       sync.Mutex
	events   []subOpenEvent
	overflow bool
	readErr  error
}

func subWatchOpens(dir, prefix string) (*subOpenWatch, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_UNLIMITED_QUEUE,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN, unix.AT_FDCWD, dir); err != nil {
		if err2 := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_OPEN, unix.AT_FDCWD, dir); err2 != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("fanotify_mark %s: %v; as a mount: %w", dir, err, err2)
		}
	}
	w := &subOpenWatch{fd: fd, prefix: prefix, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w, nil
}

func (w *subOpenWatch) loop() {
	defer close(w.done)
	buf := make([]byte, 256<<10)
	const metaLen = 24 // struct fanotify_event_metadata
	stopping := false
	for {
		n, err := unix.Read(w.fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			if stopping {
				return // drained after the stop
			}
			select {
			case <-w.stop:
				stopping = true
			default:
				unix.Poll([]unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}, 50)
			}
			continue
		}
		if err != nil {
			w.mu.Lock()
			w.readErr = err
			w.mu.Unlock()
			return
		}
		for off := 0; off+metaLen <= n; {
			evLen := int(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint64(buf[off+8:])
			efd := int(int32(binary.NativeEndian.Uint32(buf[off+16:])))
			pid := int(int32(binary.NativeEndian.Uint32(buf[off+20:])))
			if evLen < metaLen {
				break
			}
			off += evLen
			if mask&unix.FAN_Q_OVERFLOW != 0 {
				w.mu.Lock()
				w.overflow = true
				w.mu.Unlock()
			}
			if efd < 0 {
				continue
			}
			path, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", efd))
			unix.Close(efd)
			if !strings.HasPrefix(path, w.prefix) {
				continue
			}
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil {
				exe = "?"
			}
			w.mu.Lock()
			w.events = append(w.events, subOpenEvent{pid: pid, exe: exe, path: path})
			w.mu.Unlock()
		}
	}
}

// Stop ends the watch after reading what is queued, and returns the
// events.
func (w *subOpenWatch) Stop() ([]subOpenEvent, bool, error) {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		unix.Close(w.fd)
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]subOpenEvent(nil), w.events...), w.overflow, w.readErr
}

// TestSubmissionPrivilege is issue 4's privilege test, as root (CI): no
// smtpd has the TLS key open or could open it; only the auth daemon ever
// opened the passwd-file, none of the other daemons holds it or could
// read it; the auth daemon runs as postern, with no capability and
// no_new_privs.
func TestSubmissionPrivilege(t *testing.T) {
	if !isRoot() {
		t.Skip("privilege separation needs root (CI runs as root)")
	}
	// The watch starts before the instance, so that every open of its
	// files, from the first, is seen.
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	watch, werr := subWatchOpens(tmp, filepath.Join(tmp, "postern-test-"))
	if werr == nil {
		defer watch.Stop()
	}
	in := subStart(t)
	pUID, pGID := lookupIDs(t, "postern")
	etc, err := filepath.EvalSymlinks(in.Etc)
	if err != nil {
		t.Fatal(err)
	}
	key := subStatFile(t, filepath.Join(etc, "key.pem"))
	passwd := subStatFile(t, filepath.Join(etc, "passwd"))
	if key.uid != 0 || key.perm != 0o600 {
		t.Fatalf("%s is %d:%d %v, want root's and 0600 (what the test is about)", key.path, key.uid, key.gid, key.perm)
	}
	if passwd.uid != 0 || passwd.gid != 0 || passwd.perm != 0o640 {
		t.Fatalf("%s is %d:%d %v, want root:root 0640 (what the test is about)", passwd.path, passwd.uid, passwd.gid, passwd.perm)
	}

	// Every daemon handles a request first (smtpd with TLS and AUTH, auth
	// a login, cleanup, qmgr and local a delivery), so that all have
	// dropped privilege and done what they do.
	for _, implicit := range []bool{false, true} {
		c := subSubmitter(t, in, implicit)
		c.expect(subPlain("demo@example.test", "demo-secret"), "235 2.7.0")
		c.expect("MAIL FROM:<demo@example.test>", "250 2.1.0")
		c.expect("RCPT TO:<other@example.test>", "250 2.1.5")
		queuedID(t, c.data(subMessage(fmt.Sprintf("privilege-%v", implicit), "demo@example.test", "other@example.test")))
		c.quit()
	}
	c := subDial(t, in, "", in.Addr, false)
	c.ehlo("client.priv.test")
	subStartTLS(t, in, c)
	c.quit()
	WaitMessages(t, in.Maildir("other"), 2, 15*time.Second)
	waitSpoolEmpty(t, in)

	var daemons map[string][]int
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		daemons = in.Daemons()
		if len(daemons["smtpd"]) == 3 && len(daemons["auth"]) == 1 && len(daemons["cleanup"]) == 1 &&
			len(daemons["qmgr"]) == 1 && len(daemons["local"]) == 1 {
			break
		}
	}
	if len(daemons["smtpd"]) != 3 || len(daemons["auth"]) != 1 {
		t.Fatalf("want three smtpd (25, 587, 465) and one auth among master's children, have %v", daemons)
	}
	var names []string
	for n := range daemons {
		names = append(names, n)
	}
	sort.Strings(names)
	status := func(t *testing.T, prog string, pid int) opsProcStatus {
		t.Helper()
		st, err := opsReadStatus(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatalf("%s[%d]: %v", prog, pid, err)
		}
		return st
	}

	t.Run("key-not-in-smtpd", func(t *testing.T) {
		for _, pid := range daemons["smtpd"] {
			st := status(t, "smtpd", pid)
			if fds := subOpenFDs(pid, key); len(fds) > 0 {
				t.Errorf("smtpd[%d] has %s open: %v", pid, key.path, fds)
			}
			if st.UID != [4]int{pUID, pUID, pUID, pUID} {
				t.Errorf("smtpd[%d] runs as uid %v, want postern (%d)", pid, st.UID, pUID)
			}
			if ok, why := subMayRead(st, key); ok {
				t.Errorf("smtpd[%d] may read %s (%d:%d %v): %s", pid, key.path, key.uid, key.gid, key.perm, why)
			}
			if ok, why := subTryRead(st, key.path); ok {
				t.Errorf("a process with smtpd[%d]'s credentials read %s: %s", pid, key.path, why)
			}
			// And chrooted into the spool, it cannot even name it.
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root%s", pid, key.path)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("smtpd[%d] can reach %s from its root directory: %v", pid, key.path, err)
			}
		}
		// Nor does any other daemon, or master, keep the key open.
		for _, n := range names {
			for _, pid := range daemons[n] {
				if fds := subOpenFDs(pid, key); len(fds) > 0 {
					t.Errorf("%s[%d] has %s open: %v", n, pid, key.path, fds)
				}
			}
		}
		if fds := subOpenFDs(in.MasterPid(), key); len(fds) > 0 {
			t.Errorf("master[%d] has %s open: %v", in.MasterPid(), key.path, fds)
		}
	})

	t.Run("passwd-only-auth", func(t *testing.T) {
		for _, n := range names {
			for _, pid := range daemons[n] {
				if fds := subOpenFDs(pid, passwd); len(fds) > 0 {
					t.Errorf("%s[%d] has %s open at rest: %v", n, pid, passwd.path, fds)
				}
				if n == "auth" {
					continue
				}
				st := status(t, n, pid)
				if ok, why := subMayRead(st, passwd); ok {
					t.Errorf("%s[%d] (Uid %v, Gid %v, CapEff %x) may read %s (%d:%d %v): %s", n, pid, st.UID, st.GID, st.CapEff, passwd.path, passwd.uid, passwd.gid, passwd.perm, why)
				}
				if st.UID[3] != 0 {
					if ok, why := subTryRead(st, passwd.path); ok {
						t.Errorf("a process with %s[%d]'s credentials read %s: %s", n, pid, passwd.path, why)
					}
				}
			}
		}
		if fds := subOpenFDs(in.MasterPid(), passwd); len(fds) > 0 {
			t.Errorf("master[%d] has %s open: %v", in.MasterPid(), passwd.path, fds)
		}
	})

	t.Run("auth-process", func(t *testing.T) {
		pid := daemons["auth"][0]
		paths := []string{fmt.Sprintf("/proc/%d/status", pid)}
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, e := range tasks {
			paths = append(paths, fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
		}
		if len(tasks) < 2 {
			t.Errorf("auth[%d]: only %d thread(s) listed", pid, len(tasks))
		}
		for _, p := range paths {
			st, err := opsReadStatus(p)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue
			}
			if err != nil {
				t.Errorf("auth[%d]: %v", pid, err)
				continue
			}
			if st.UID != [4]int{pUID, pUID, pUID, pUID} || st.GID != [4]int{pGID, pGID, pGID, pGID} {
				t.Errorf("%s: Uid %v Gid %v, want postern %d:%d", p, st.UID, st.GID, pUID, pGID)
			}
			if st.CapEff != 0 || st.CapPrm != 0 || st.CapInh != 0 || st.CapAmb != 0 {
				t.Errorf("%s: CapEff %x CapPrm %x CapInh %x CapAmb %x, want none", p, st.CapEff, st.CapPrm, st.CapInh, st.CapAmb)
			}
			if st.NoNewPrivs != 1 {
				t.Errorf("%s: NoNewPrivs %d, want 1", p, st.NoNewPrivs)
			}
		}
		// Unprivileged, auth has no way to the TLS key either.
		if ok, why := subMayRead(status(t, "auth", pid), key); ok {
			t.Errorf("auth[%d] may read %s: %s", pid, key.path, why)
		}
	})

	t.Run("passwd-opened-by", func(t *testing.T) {
		if werr != nil {
			t.Skipf("fanotify is not available here (%v); the descriptor and permission checks above still ran", werr)
		}
		events, overflow, err := watch.Stop()
		if err != nil {
			t.Fatalf("fanotify read: %v", err)
		}
		if overflow {
			t.Errorf("fanotify queue overflowed: some opens were not seen")
		}
		self, _ := os.Executable()
		authOpens := 0
		for _, e := range events {
			switch e.path {
			case passwd.path:
				switch base := filepath.Base(e.exe); {
				case base == "auth" && filepath.Dir(e.exe) == binDir:
					authOpens++
				case e.pid == os.Getpid() || e.exe == self:
					// the harness writing the file
				case base == "postern" && filepath.Dir(e.exe) == binDir:
					// the administrator's command, as root
				default:
					t.Errorf("%s was opened by pid %d (%s), not by the auth daemon", passwd.path, e.pid, e.exe)
				}
			case key.path:
				t.Logf("%s opened by pid %d (%s)", key.path, e.pid, e.exe)
			}
		}
		if authOpens == 0 {
			t.Errorf("the watch never saw auth open %s: it saw nothing (%d events)", passwd.path, len(events))
		}
	})
}
