package tests

// End-to-end SMTP conformance and delivery: real clients (Python's
// smtplib, swaks, and a raw connection for what libraries would never
// send) against a whole Postern, with every delivered file checked byte
// for byte. Each test starts its own instance, so that one test's
// settings (limits, timeouts, mynetworks) and mailboxes never leak into
// another's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/internal/queue"
)

// smtpClient is a raw SMTP connection: the tests write exactly the bytes
// they mean and read every reply, so that pipelining, line ends and
// limits can be exercised as no client library would.
type smtpClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialSMTP connects to addr and checks the 220 greeting.
func dialSMTP(t *testing.T, addr string) *smtpClient {
	t.Helper()
	return dialSMTPFrom(t, "", addr)
}

// dialSMTPFrom connects from the local address local (an IP of
// 127.0.0.0/8, "" for any) and checks the 220 greeting.
func dialSMTPFrom(t *testing.T, local, addr string) *smtpClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sc := &smtpClient{t: t, c: c, br: bufio.NewReader(c)}
	if g := sc.reply(); !strings.HasPrefix(g, "220 mx.postern.test ") {
		t.Fatalf("greeting %q, want 220 mx.postern.test ...", g)
	}
	return sc
}

// write sends s as it is.
func (c *smtpClient) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one whole reply, every line with its CRLF.
func (c *smtpClient) reply() string {
	c.t.Helper()
	r, err := c.readReply()
	if err != nil {
		c.t.Fatalf("read reply: %v (read so far %q)", err, r)
	}
	return r
}

func (c *smtpClient) readReply() (string, error) {
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			return b.String(), err
		}
		if len(l) < 4 || l[3] != '-' {
			return b.String(), nil
		}
	}
}

// cmd sends one command line (CRLF added) and returns its reply.
func (c *smtpClient) cmd(line string) string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.reply()
}

// expect sends a command and checks the reply's code and enhanced code
// ("250 2.1.5").
func (c *smtpClient) expect(line, want string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !replyIs(r, want) {
		c.t.Fatalf("%.80q: reply %q, want %s", line, r, want)
	}
	return r
}

// ehlo greets and returns the extension lines (without "250-").
func (c *smtpClient) ehlo(name string) []string {
	c.t.Helper()
	r := c.cmd("EHLO " + name)
	var ext []string
	for _, l := range strings.SplitAfter(r, "\r\n") {
		if l == "" {
			continue
		}
		if len(l) < 6 || l[:3] != "250" || !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("EHLO reply %q", r)
		}
		ext = append(ext, strings.TrimSuffix(l[4:], "\r\n"))
	}
	if len(ext) == 0 || ext[0] != "mx.postern.test" {
		c.t.Fatalf("EHLO reply %q: first line must be the host name", r)
	}
	return ext[1:]
}

// data sends DATA, expects 354, sends msg dot-stuffed and the final ".",
// and returns the reply to the end of data. msg must end in CRLF.
func (c *smtpClient) data(msg []byte) string {
	c.t.Helper()
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
		c.t.Fatalf("DATA: reply %q, want 354", r)
	}
	c.write(string(dotStuff(msg)) + ".\r\n")
	return c.reply()
}

// quit sends QUIT and checks that 221 is the last thing the server says.
func (c *smtpClient) quit() {
	c.t.Helper()
	c.write("QUIT\r\n")
	rest, err := io.ReadAll(c.br)
	if err != nil {
		c.t.Fatalf("after QUIT: %v", err)
	}
	if string(rest) != "221 2.0.0 Bye\r\n" {
		c.t.Fatalf("after QUIT the server said %q, want exactly the 221", rest)
	}
	c.c.Close()
}

// dotStuff doubles a leading "." on every line (RFC 5321 4.5.2).
func dotStuff(msg []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(msg, []byte("\r\n")) {
		if len(l) > 0 && l[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, l...)
	}
	return out
}

// replyIs reports whether r is one reply (one or more lines) with the
// code and enhanced code of want, e.g. "550 5.1.1".
func replyIs(r, want string) bool {
	code, enh, _ := strings.Cut(want, " ")
	lines := strings.SplitAfter(r, "\r\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return false
	}
	lines = lines[:len(lines)-1]
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		prefix := code + sep
		if enh != "" {
			prefix += enh + " "
		}
		if !strings.HasPrefix(l, prefix) {
			return false
		}
	}
	return true
}

// mustReply fails the test unless got has want's codes.
func mustReply(t *testing.T, what, got, want string) {
	t.Helper()
	if !replyIs(got, want) {
		t.Fatalf("%s: reply %q, want %s", what, got, want)
	}
}

var queuedRE = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as (\S+)\r\n$`)

// queuedID returns the queue ID of a "250 2.0.0 Ok: queued as ID" reply.
func queuedID(t *testing.T, r string) string {
	t.Helper()
	m := queuedRE.FindStringSubmatch(r)
	if m == nil || !queue.ValidID(m[1]) {
		t.Fatalf("end of data: reply %q, want 250 2.0.0 Ok: queued as <queue ID>", r)
	}
	return m[1]
}

// wantMsg is what one delivered Maildir file must hold.
type wantMsg struct {
	sender      string // envelope sender, "" for <>
	deliveredTo string
	helo        string
	proto       string // "ESMTP", "UTF8SMTP"
	id          string // queue ID from the 250 reply
	forRcpt     string // the Received "for <...>"; "" means no for clause, "*" any
	body        []byte // the message as sent, CRLF line ends, unstuffed
}

var receivedRE = regexp.MustCompile(`^Received: from (\S+) \((?:\S+ )?\[([0-9a-fA-F.:]+)\]\) by (\S+)(?: \([^()]*\))? with (\S+) id (\S+)(?: for <([^<>]*)>)?; (.+)$`)

// checkMessage checks one Maildir file byte for byte: Return-Path,
// Delivered-To, the Received header cleanup added (parsed), then the
// message exactly as sent with CRLF turned into LF.
func checkMessage(t *testing.T, path string, w wantMsg) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.LastIndex(path, ",S="); i >= 0 {
		if n, err := strconv.Atoi(path[i+3:]); err != nil || n != len(b) {
			t.Errorf("%s: the name says S=%s, the file has %d bytes", path, path[i+3:], len(b))
		}
	}
	head := "Return-Path: <" + w.sender + ">\nDelivered-To: " + w.deliveredTo + "\n"
	if !bytes.HasPrefix(b, []byte(head)) {
		t.Fatalf("%s: does not begin with %q:\n%s", path, head, smtpClip(b))
	}
	rest := b[len(head):]
	// The Received header: its first line and every continuation line.
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
	if !strings.HasPrefix(recv, "Received: ") {
		t.Fatalf("%s: third header is not Received:\n%s", path, smtpClip(b))
	}
	unfolded := strings.Join(strings.Fields(recv), " ")
	m := receivedRE.FindStringSubmatch(unfolded)
	if m == nil {
		t.Fatalf("%s: Received header not as expected: %q", path, recv)
	}
	if m[1] != w.helo {
		t.Errorf("Received from %q, want the HELO name %q: %q", m[1], w.helo, recv)
	}
	if m[2] != "127.0.0.1" {
		t.Errorf("Received client address [%s], want [127.0.0.1]: %q", m[2], recv)
	}
	if m[3] != "mx.postern.test" {
		t.Errorf("Received by %q, want mx.postern.test: %q", m[3], recv)
	}
	if m[4] != w.proto {
		t.Errorf("Received with %q, want %q: %q", m[4], w.proto, recv)
	}
	if m[5] != w.id {
		t.Errorf("Received id %q, want the queue ID of the 250 reply %q: %q", m[5], w.id, recv)
	}
	switch w.forRcpt {
	case "*":
	case "":
		if m[6] != "" {
			t.Errorf("Received has for <%s>, want none: %q", m[6], recv)
		}
	default:
		if m[6] != w.forRcpt {
			t.Errorf("Received for <%s>, want <%s>: %q", m[6], w.forRcpt, recv)
		}
	}
	date, err := mail.ParseDate(m[7])
	if err != nil {
		t.Errorf("Received date %q: %v", m[7], err)
	} else if d := time.Since(date); d < -time.Minute || d > 5*time.Minute {
		t.Errorf("Received date %s is not now", date)
	}
	want := bytes.ReplaceAll(w.body, []byte("\r\n"), []byte("\n"))
	if got := rest[end:]; !bytes.Equal(got, want) {
		t.Fatalf("%s: message differs from what was sent\n got %d bytes: %s\nwant %d bytes: %s", path, len(got), smtpClip(got), len(want), smtpClip(want))
	}
}

// clip shortens a message for an error text.
func smtpClip(b []byte) string {
	if len(b) > 2000 {
		return fmt.Sprintf("%q ... (%d more bytes)", b[:2000], len(b)-2000)
	}
	return fmt.Sprintf("%q", b)
}

// smtpSettle is how long a test waits to be sure that something that must
// not happen (a second copy, a delivery of a refused message) does not.
const smtpSettle = 1500 * time.Millisecond

// waitExactly waits until maildir/new holds n files, then a little longer
// to see that no more arrive, and returns them.
func waitExactly(t *testing.T, in *Instance, maildir string, n int) []string {
	t.Helper()
	files := WaitMessages(t, maildir, n, 15*time.Second)
	if len(files) == n {
		time.Sleep(smtpSettle)
		files = Messages(maildir)
	}
	if len(files) != n {
		t.Fatalf("%s/new holds %d messages, want %d: %v", maildir, len(files), n, files)
	}
	return files
}

// newFile waits for exactly one file in maildir/new that is not in
// before and returns it.
func newMaildirFile(t *testing.T, maildir string, before []string) string {
	t.Helper()
	old := map[string]bool{}
	for _, f := range before {
		old[f] = true
	}
	var fresh []string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		fresh = fresh[:0]
		for _, f := range Messages(maildir) {
			if !old[f] {
				fresh = append(fresh, f)
			}
		}
		if len(fresh) > 0 {
			break
		}
	}
	if len(fresh) != 1 {
		t.Fatalf("%s/new: %d new messages, want 1: %v", maildir, len(fresh), fresh)
	}
	return fresh[0]
}

// spoolFiles lists the queue files in the spool's queue directories
// (tmp/ included), by name.
func smtpSpoolFiles(in *Instance) []string {
	var out []string
	for _, d := range []string{"tmp", "incoming", "active", "deferred", "hold", "corrupt"} {
		filepath.WalkDir(filepath.Join(in.Spool, d), func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				out = append(out, strings.TrimPrefix(p, in.Spool+"/"))
			}
			return nil
		})
	}
	return out
}

// waitSpoolEmpty waits until no queue file is left anywhere in the spool.
func waitSpoolEmpty(t *testing.T, in *Instance) {
	t.Helper()
	var left []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if left = smtpSpoolFiles(in); len(left) == 0 {
			return
		}
	}
	t.Fatalf("the spool still holds %v", left)
}

var rejectedRE = regexp.MustCompile(`postern/smtpd\[\d+\]: ([0-9A-F]+): message rejected: ([^\n]*)`)

// logMark is where the log ends now; rejected looks only after it.
func smtpLogMark(in *Instance) int { return len(in.Log()) }

// rejected waits for smtpd's "ID: message rejected: reason" log line
// after mark and returns the ID.
func smtpRejected(t *testing.T, in *Instance, mark int, reason string) string {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, m := range rejectedRE.FindAllStringSubmatch(in.Log()[mark:], -1) {
			if m[2] == reason {
				return m[1]
			}
		}
	}
	t.Fatalf("no %q rejection in the log after the message was sent:\n%s", reason, in.Log()[mark:])
	return ""
}

// neverQueued checks that the refused message id never reached qmgr or a
// mailbox and left no file in the spool.
func neverQueued(t *testing.T, in *Instance, id string) {
	t.Helper()
	time.Sleep(smtpSettle)
	for _, l := range strings.Split(in.Log(), "\n") {
		if strings.Contains(l, id+": from=<") || strings.Contains(l, id+": to=<") || strings.Contains(l, id+": message-id=") {
			t.Errorf("refused message %s was queued or delivered: %s", id, l)
		}
	}
	for _, f := range smtpSpoolFiles(in) {
		if strings.Contains(f, id) {
			t.Errorf("refused message %s left %s in the spool", id, f)
		}
	}
}

// countLog counts log lines containing s.
func smtpCountLog(in *Instance, s string) int {
	return strings.Count(in.Log(), s)
}

// owner returns a file's uid and gid.
func fileOwner(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// writeTemp writes b to a file in the test's temporary directory.
func smtpTempFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pythonSend sends a message with testdata/smtp/send.py (smtplib) and
// returns smtplib's reply to the end of data.
func pythonSend(t *testing.T, in *Instance, helo, from string, to []string, opts []string, msg []byte) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	script, _ := filepath.Abs("testdata/smtp/send.py")
	args := []string{script, "--server", in.Addr, "--helo", helo, "--from", from, "--message", smtpTempFile(t, "msg", msg)}
	for _, r := range to {
		args = append(args, "--to", r)
	}
	for _, o := range opts {
		args = append(args, "--mail-opt", o)
	}
	out, err := runClient(py, args...)
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "DATA ") {
		t.Fatalf("smtplib printed %q", out)
	}
	// smtplib gives the code and the text apart; put the reply together
	// in wire form.
	return strings.TrimPrefix(line, "DATA ") + "\r\n"
}

// runClient runs a client program for at most a minute and returns its
// combined output.
func runClient(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// crlfMessage builds a CRLF message from lines.
func crlfMessage(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// randomLines makes n printable ASCII lines of width characters that
// include leading dots now and then.
func smtpLines(seed int64, n, width int) []byte {
	r := rand.New(rand.NewSource(seed))
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-_=+/()<>"
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		w := 1 + r.Intn(width)
		for j := 0; j < w; j++ {
			b.WriteByte(chars[r.Intn(len(chars))])
		}
		if i%97 == 0 {
			// A line that begins with a dot, and one that is a lone dot.
			b.WriteString("\r\n.")
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// TestSMTPClients delivers with Python's smtplib and with swaks, an 8-bit
// body (BODY=8BITMIME) and a 1 MB message, and checks every Maildir file
// byte for byte.
func TestSMTPClients(t *testing.T) {
	in := Start(t, Options{})
	demo := in.Maildir("demo")

	t.Run("smtplib", func(t *testing.T) {
		msg := crlfMessage(
			"From: Py Sender <py@example.org>",
			"To: demo@example.test",
			"Subject: from smtplib",
			"Message-ID: <smtplib.1@example.org>",
			"",
			"Hello from Python.",
			".a line that smtplib has to dot-stuff",
			".",
			"last line")
		before := Messages(demo)
		r := pythonSend(t, in, "py.client.test", "py@example.org", []string{"demo@example.test"}, nil, msg)
		id := queuedID(t, r)
		f := newMaildirFile(t, demo, before)
		checkMessage(t, f, wantMsg{sender: "py@example.org", deliveredTo: "demo@example.test", helo: "py.client.test",
			proto: "ESMTP", id: id, forRcpt: "demo@example.test", body: msg})
		if u, g := fileOwner(t, f); u != in.uid || g != in.gid {
			t.Errorf("%s owned by %d:%d, want the virtual owner %d:%d", f, u, g, in.uid, in.gid)
		}
	})

	t.Run("swaks", func(t *testing.T) {
		if _, err := exec.LookPath("swaks"); err != nil {
			t.Fatalf("swaks is not installed (make deps): %v", err)
		}
		msg := crlfMessage(
			"From: swaks@example.org",
			"To: demo@example.test",
			"Subject: from swaks",
			"",
			"Hello from swaks.",
			"..two dots",
			"end")
		before := Messages(demo)
		host, port, _ := net.SplitHostPort(in.Addr)
		out, err := runClient("swaks", "--server", host, "--port", port, "--helo", "swaks.client.test",
			"--from", "swaks@example.org", "--to", "demo@example.test", "--timeout", "30",
			// swaks ends the data with CRLF "." CRLF itself: the file
			// has no final line end, or the message would gain an
			// empty line.
			"--data", "@"+smtpTempFile(t, "swaks.eml", bytes.TrimSuffix(msg, []byte("\r\n"))))
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`(?m)^<-  (250 2\.0\.0 Ok: queued as \S+)\r?$`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("no 250 queued reply in swaks' transcript:\n%s", out)
		}
		id := queuedID(t, m[1]+"\r\n")
		f := newMaildirFile(t, demo, before)
		checkMessage(t, f, wantMsg{sender: "swaks@example.org", deliveredTo: "demo@example.test", helo: "swaks.client.test",
			proto: "ESMTP", id: id, forRcpt: "demo@example.test", body: msg})
	})

	t.Run("8bitmime", func(t *testing.T) {
		var body bytes.Buffer
		body.WriteString("From: eight@example.org\r\nTo: demo@example.test\r\nSubject: 8bit\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		body.WriteString("UTF-8: d\xc3\xa9j\xc3\xa0 vu, \xe2\x82\xac, \xf0\x9f\x93\xac\r\n")
		body.WriteString("Latin-1: caf\xe9 na\xefve\r\n")
		// Every octet from 0x80 to 0xFF, 32 to a line.
		for i := 0x80; i <= 0xff; i++ {
			body.WriteByte(byte(i))
			if i%32 == 31 {
				body.WriteString("\r\n")
			}
		}
		body.WriteString(".\xff leading dot\r\n")
		msg := body.Bytes()
		before := Messages(demo)
		r := pythonSend(t, in, "eight.client.test", "eight@example.org", []string{"demo@example.test"}, []string{"BODY=8BITMIME"}, msg)
		id := queuedID(t, r)
		f := newMaildirFile(t, demo, before)
		checkMessage(t, f, wantMsg{sender: "eight@example.org", deliveredTo: "demo@example.test", helo: "eight.client.test",
			proto: "ESMTP", id: id, forRcpt: "demo@example.test", body: msg})
		if out, _ := in.Postern("queue", "list"); !strings.Contains(out, "Mail queue is empty") {
			t.Errorf("queue after delivery:\n%s", out)
		}
	})

	t.Run("1MB", func(t *testing.T) {
		msg := append(crlfMessage("From: big@example.org", "To: demo@example.test", "Subject: one megabyte", ""), smtpLines(1, 1<<20/40, 78)...)
		if len(msg) < 1<<20 {
			t.Fatalf("test message is only %d bytes", len(msg))
		}
		before := Messages(demo)
		r := pythonSend(t, in, "big.client.test", "big@example.org", []string{"demo@example.test"}, []string{"SIZE=" + strconv.Itoa(len(msg))}, msg)
		id := queuedID(t, r)
		f := newMaildirFile(t, demo, before)
		checkMessage(t, f, wantMsg{sender: "big@example.org", deliveredTo: "demo@example.test", helo: "big.client.test",
			proto: "ESMTP", id: id, forRcpt: "demo@example.test", body: msg})
	})
	// Every delivered message has left the queue.
	waitSpoolEmpty(t, in)
}

// TestSMTPPipelining sends whole RFC 2920 command groups in one write and
// checks each reply, in order, and what was delivered.
func TestSMTPPipelining(t *testing.T) {
	in := Start(t, Options{})
	demo, other := in.Maildir("demo"), in.Maildir("other")
	c := dialSMTP(t, in.Addr)
	ext := c.ehlo("pipe.client.test")
	if !smtpHas(ext, "PIPELINING") {
		t.Fatalf("EHLO does not offer PIPELINING: %v", ext)
	}

	// One group: MAIL, RCPT (good), RCPT (unknown), RCPT (good), DATA.
	c.write("MAIL FROM:<p1@example.org>\r\nRCPT TO:<demo@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<other@example.test>\r\nDATA\r\n")
	for i, want := range []string{"250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5"} {
		mustReply(t, fmt.Sprintf("group 1 reply %d", i+1), c.reply(), want)
	}
	if r := c.reply(); !strings.HasPrefix(r, "354 ") {
		t.Fatalf("group 1 DATA: %q, want 354", r)
	}
	msg1 := crlfMessage("Subject: pipelined 1", "", "first")
	// The end of data, then the next group: a transaction that RSET
	// abandons and a new one, all in one write.
	c.write(string(msg1) + ".\r\nMAIL FROM:<p2@example.org>\r\nRCPT TO:<demo@example.test>\r\nRSET\r\nMAIL FROM:<p3@example.org>\r\nRCPT TO:<other@example.test>\r\nDATA\r\n")
	id1 := queuedID(t, c.reply())
	for i, want := range []string{"250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.1.0", "250 2.1.5"} {
		mustReply(t, fmt.Sprintf("group 2 reply %d", i+1), c.reply(), want)
	}
	if r := c.reply(); !strings.HasPrefix(r, "354 ") {
		t.Fatalf("group 2 DATA: %q, want 354", r)
	}
	msg3 := crlfMessage("Subject: pipelined 3", "", "third")
	// End of data, then a group whose only recipient is refused: DATA
	// must be refused too (RFC 2920 3.1), then the rest of the group.
	c.write(string(msg3) + ".\r\nMAIL FROM:<p4@example.org>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\nRSET\r\nNOOP\r\n")
	id3 := queuedID(t, c.reply())
	for i, want := range []string{"250 2.1.0", "550 5.1.1", "554 5.5.1", "250 2.0.0", "250 2.0.0"} {
		mustReply(t, fmt.Sprintf("group 3 reply %d", i+1), c.reply(), want)
	}
	c.quit()

	d := waitExactly(t, in, demo, 1)
	checkMessage(t, d[0], wantMsg{sender: "p1@example.org", deliveredTo: "demo@example.test", helo: "pipe.client.test",
		proto: "ESMTP", id: id1, forRcpt: "", body: msg1})
	o := waitExactly(t, in, other, 2)
	// Which file is which: by queue ID, from the Received header.
	byID := map[string]string{}
	for _, f := range o {
		b, _ := os.ReadFile(f)
		for _, id := range []string{id1, id3} {
			if bytes.Contains(b, []byte(" id "+id)) {
				byID[id] = f
			}
		}
	}
	if len(byID) != 2 {
		t.Fatalf("other's Maildir does not hold messages %s and %s: %v", id1, id3, o)
	}
	checkMessage(t, byID[id1], wantMsg{sender: "p1@example.org", deliveredTo: "other@example.test", helo: "pipe.client.test",
		proto: "ESMTP", id: id1, forRcpt: "", body: msg1})
	checkMessage(t, byID[id3], wantMsg{sender: "p3@example.org", deliveredTo: "other@example.test", helo: "pipe.client.test",
		proto: "ESMTP", id: id3, forRcpt: "other@example.test", body: msg3})
	waitSpoolEmpty(t, in)
}

func smtpHas(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestSMTPLineLimits: a command line over 512 octets gets 500 5.5.2 and
// the session goes on; a DATA line over line_length_limit makes the
// message refused, and the session goes on.
func TestSMTPLineLimits(t *testing.T) {
	in := Start(t, Options{})
	demo := in.Maildir("demo")
	c := dialSMTP(t, in.Addr)
	c.ehlo("long.client.test")

	const tooLong = "500 5.5.2 Error: line too long\r\n"
	if r := c.cmd("NOOP " + strings.Repeat("x", 600)); r != tooLong {
		t.Fatalf("600-octet NOOP: %q, want %q", r, tooLong)
	}
	c.expect("NOOP", "250 2.0.0")
	// Far longer than any buffer: still one reply, then the next command.
	c.write("HELP " + strings.Repeat("y", 100000) + "\r\nNOOP\r\n")
	if r := c.reply(); r != tooLong {
		t.Fatalf("100 kB line: %q, want %q", r, tooLong)
	}
	mustReply(t, "NOOP after the 100 kB line", c.reply(), "250 2.0.0")
	// MAIL and RCPT may be longer than 512 octets, but not without end.
	if r := c.cmd("MAIL FROM:<long@example.org> " + strings.Repeat("Z", 3000)); r != tooLong {
		t.Fatalf("3000-octet MAIL: %q, want %q", r, tooLong)
	}
	// Nothing of the long MAIL stuck: a MAIL now is not "nested".
	c.expect("MAIL FROM:<long@example.org>", "250 2.1.0")
	c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
	bad := crlfMessage("Subject: long line", "", "short", strings.Repeat("L", 3000), "short again")
	mark := smtpLogMark(in)
	if r := c.data(bad); r != "554 5.6.0 Error: line too long\r\n" {
		t.Fatalf("DATA with a 3000-octet line: %q, want 554 5.6.0 Error: line too long", r)
	}
	id := smtpRejected(t, in, mark, "line too long")
	// The session goes on, and a line of RFC 5322's full 998 octets is
	// fine.
	c.expect("NOOP", "250 2.0.0")
	c.expect("MAIL FROM:<long@example.org>", "250 2.1.0")
	c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
	good := crlfMessage("Subject: 998", "", strings.Repeat("G", 998), "."+strings.Repeat("D", 998), "end")
	goodID := queuedID(t, c.data(good))
	c.quit()
	f := waitExactly(t, in, demo, 1)
	checkMessage(t, f[0], wantMsg{sender: "long@example.org", deliveredTo: "demo@example.test", helo: "long.client.test",
		proto: "ESMTP", id: goodID, forRcpt: "demo@example.test", body: good})
	neverQueued(t, in, id)
	// The log lines that neverQueued looks for do exist for a message
	// that was queued, so their absence means something.
	wasQueued(t, in, goodID, "long@example.org")
}

// wasQueued checks that qmgr logged message id with its sender and that
// it was delivered.
func wasQueued(t *testing.T, in *Instance, id, sender string) {
	t.Helper()
	if !in.WaitLog(id+": from=<"+sender+">", 5*time.Second) || !in.WaitLog(id+": to=<", 5*time.Second) {
		t.Errorf("no qmgr or delivery line for queued message %s:\n%s", id, in.Log())
	}
}

// smuggledTail is the tail of a smuggling attempt: a second transaction that
// must stay message content.
const smuggledTail = "MAIL FROM:<smuggler@example.org>\r\nRCPT TO:<other@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"

// TestSMTPBareLineEnds: a bare LF or bare CR in DATA makes the message
// refused (554 5.6.0) and not delivered, and no "end of data" look-alike
// built from them lets a hidden second transaction run.
func TestSMTPBareLineEnds(t *testing.T) {
	in := Start(t, Options{})
	demo, other := in.Maildir("demo"), in.Maildir("other")
	const refused = "554 5.6.0 Error: bare <CR> or <LF> not allowed\r\n"

	bodies := map[string]string{
		"bare LF":           "Subject: lf\r\n\r\nline one\nline two\r\n",
		"bare CR":           "Subject: cr\r\n\r\nline one\rline two\r\n",
		"CR CR LF":          "Subject: crcrlf\r\n\r\nline one\r\r\nline two\r\n",
		"LF in header":      "Subject: a\nX-Injected: b\r\n\r\nbody\r\n",
		"lone LF line":      "Subject: lflf\r\n\r\n\n\r\n",
		"CR at end of data": "Subject: end\r\n\r\nbody\r",
		"LF before the dot": "Subject: end\r\n\r\nbody\n",
	}
	for _, name := range []string{"bare LF", "bare CR", "CR CR LF", "LF in header", "lone LF line", "CR at end of data", "LF before the dot"} {
		t.Run(name, func(t *testing.T) {
			c := dialSMTP(t, in.Addr)
			c.ehlo("bare.client.test")
			c.expect("MAIL FROM:<bare@example.org>", "250 2.1.0")
			c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
			if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
				t.Fatalf("DATA: %q", r)
			}
			mark := smtpLogMark(in)
			body := bodies[name]
			end := "\r\n.\r\n"
			if strings.HasSuffix(body, "\r\n") {
				end = ".\r\n"
			}
			c.write(body + end)
			if r := c.reply(); r != refused {
				t.Fatalf("reply %q, want %q", r, refused)
			}
			id := smtpRejected(t, in, mark, "bare CR or LF")
			// The session goes on, with the transaction reset.
			c.expect("RCPT TO:<demo@example.test>", "503 5.5.1")
			c.expect("NOOP", "250 2.0.0")
			c.quit()
			neverQueued(t, in, id)
		})
	}

	for _, seq := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", "\n..\n", "\r\n.\r\r\n"} {
		t.Run(fmt.Sprintf("smuggling %q", seq), func(t *testing.T) {
			datas := smtpCountLog(in, ": client=")
			mark := smtpLogMark(in)
			c := dialSMTP(t, in.Addr)
			c.ehlo("smuggle.client.test")
			c.expect("MAIL FROM:<outer@example.org>", "250 2.1.0")
			c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
			if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
				t.Fatalf("DATA: %q", r)
			}
			c.write("Subject: outer\r\n\r\nhello" + seq + smuggledTail + ".\r\n")
			if r := c.reply(); r != refused {
				t.Fatalf("reply %q, want %q", r, refused)
			}
			id := smtpRejected(t, in, mark, "bare CR or LF")
			// Only QUIT's 221 follows: no reply to a hidden command.
			c.quit()
			neverQueued(t, in, id)
			if got := smtpCountLog(in, ": client="); got != datas+1 {
				t.Errorf("%d DATA commands reached cleanup, want 1", got-datas)
			}
			if strings.Contains(in.Log(), "smuggler") {
				t.Errorf("the hidden MAIL FROM was seen as a command:\n%s", in.Log())
			}
		})
	}
	if f := Messages(demo); len(f) != 0 {
		t.Errorf("demo received %v", f)
	}
	if f := Messages(other); len(f) != 0 {
		t.Errorf("other (the smuggled recipient) received %v", f)
	}
	waitSpoolEmpty(t, in)
}

// TestSMTPDotStuffing: lines that begin with "." arrive with the
// stuffing dot removed and nothing else changed.
func TestSMTPDotStuffing(t *testing.T) {
	in := Start(t, Options{})
	c := dialSMTP(t, in.Addr)
	c.ehlo("dots.client.test")
	c.expect("MAIL FROM:<dots@example.org>", "250 2.1.0")
	c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
		t.Fatalf("DATA: %q", r)
	}
	wire := "Subject: dots\r\n\r\n" +
		"..leading dot\r\n" +
		"...two dots\r\n" +
		"..\r\n" + // a line that is one dot
		"...\r\n" + // two dots
		"....\r\n" +
		" .space first\r\n" +
		"mid.dle.\r\n" +
		".unstuffed\r\n" + // a client that forgot to stuff: the dot goes (RFC 5321 4.5.2)
		"..\r\n" +
		".\r\n"
	want := crlfMessage("Subject: dots", "",
		".leading dot",
		"..two dots",
		".",
		"..",
		"...",
		" .space first",
		"mid.dle.",
		"unstuffed",
		".")
	c.write(wire)
	id := queuedID(t, c.reply())
	// An empty message: the "." right after the 354.
	c.expect("MAIL FROM:<>", "250 2.1.0")
	c.expect("RCPT TO:<other@example.test>", "250 2.1.5")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
		t.Fatalf("DATA: %q", r)
	}
	emptyID := queuedID(t, c.cmd("."))
	c.quit()
	f := waitExactly(t, in, in.Maildir("demo"), 1)
	checkMessage(t, f[0], wantMsg{sender: "dots@example.org", deliveredTo: "demo@example.test", helo: "dots.client.test",
		proto: "ESMTP", id: id, forRcpt: "demo@example.test", body: want})
	f = waitExactly(t, in, in.Maildir("other"), 1)
	checkMessage(t, f[0], wantMsg{sender: "", deliveredTo: "other@example.test", helo: "dots.client.test",
		proto: "ESMTP", id: emptyID, forRcpt: "other@example.test", body: nil})
	waitSpoolEmpty(t, in)
}

// sized is a message of exactly n octets.
func sizedMessage(n int) []byte {
	b := []byte("Subject: size\r\n\r\n")
	for len(b) < n {
		k := n - len(b)
		if k > 100 {
			k = 100
		}
		if k < 3 {
			// Too short for a line of its own: widen the previous one.
			b = append(b[:len(b)-2], bytes.Repeat([]byte("s"), k)...)
			b = append(b, '\r', '\n')
			continue
		}
		b = append(b, bytes.Repeat([]byte("a"), k-2)...)
		b = append(b, '\r', '\n')
	}
	return b
}

// TestSMTPSize: SIZE= over message_size_limit is refused at MAIL, and a
// message over it at the end of data, with 552 5.3.4 and no delivery.
func TestSMTPSize(t *testing.T) {
	in := Start(t, Options{Settings: []string{"message_size_limit = 10000"}})
	demo := in.Maildir("demo")
	c := dialSMTP(t, in.Addr)
	if ext := c.ehlo("size.client.test"); !smtpHas(ext, "SIZE 10000") {
		t.Fatalf("EHLO does not offer SIZE 10000: %v", ext)
	}
	c.expect("MAIL FROM:<size@example.org> SIZE=10001", "552 5.3.4")
	c.expect("MAIL FROM:<size@example.org> SIZE=99999999999999999999", "552 5.3.4")
	c.expect("MAIL FROM:<size@example.org> SIZE=10000", "250 2.1.0")
	c.expect("RSET", "250 2.0.0")

	for _, tc := range []struct {
		name string
		mail string
		msg  []byte
	}{
		{"20000 octets, no SIZE", "MAIL FROM:<size@example.org>", sizedMessage(20000)},
		{"one octet over", "MAIL FROM:<size@example.org>", sizedMessage(10001)},
		{"SIZE understated", "MAIL FROM:<size@example.org> SIZE=500", sizedMessage(50000)},
	} {
		if len(tc.msg) != 20000 && len(tc.msg) != 10001 && len(tc.msg) != 50000 {
			t.Fatalf("sized: %d", len(tc.msg))
		}
		mark := smtpLogMark(in)
		c.expect(tc.mail, "250 2.1.0")
		c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		if r := c.data(tc.msg); !replyIs(r, "552 5.3.4") {
			t.Fatalf("%s: end of data %q, want 552 5.3.4", tc.name, r)
		}
		neverQueued(t, in, smtpRejected(t, in, mark, "message too large"))
	}
	// Under the limit, the same session delivers.
	msg := sizedMessage(5000)
	c.expect("MAIL FROM:<size@example.org> SIZE=5000", "250 2.1.0")
	c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
	id := queuedID(t, c.data(msg))
	c.quit()
	f := waitExactly(t, in, demo, 1)
	checkMessage(t, f[0], wantMsg{sender: "size@example.org", deliveredTo: "demo@example.test", helo: "size.client.test",
		proto: "ESMTP", id: id, forRcpt: "demo@example.test", body: msg})
	waitSpoolEmpty(t, in)
}

// TestSMTPUTF8: a UTF-8 local part and an 8-bit sender are refused
// without the SMTPUTF8 parameter and delivered with it.
func TestSMTPUTF8(t *testing.T) {
	in := Start(t, Options{Mailboxes: []string{"dédé@example.test example.test/dede/"}})
	dede, demo := in.Maildir("dede"), in.Maildir("demo")
	c := dialSMTP(t, in.Addr)
	if ext := c.ehlo("utf8.client.test"); !smtpHas(ext, "SMTPUTF8") || !smtpHas(ext, "8BITMIME") {
		t.Fatalf("EHLO does not offer SMTPUTF8 and 8BITMIME: %v", ext)
	}
	c.expect("MAIL FROM:<ascii@example.org>", "250 2.1.0")
	c.expect("RCPT TO:<dédé@example.test>", "553 5.6.7")
	c.expect("RSET", "250 2.0.0")
	c.expect("MAIL FROM:<josé@example.org>", "553 5.6.7")
	c.expect("MAIL FROM:<josé@example.org> BODY=8BITMIME", "553 5.6.7")

	// UTF-8 recipient.
	c.expect("MAIL FROM:<ascii@example.org> SMTPUTF8", "250 2.1.0")
	c.expect("RCPT TO:<dédé@example.test>", "250 2.1.5")
	msg1 := crlfMessage("From: ascii@example.org", "To: dédé@example.test", "Subject: café ☕", "", "Grüße aus Köln")
	id1 := queuedID(t, c.data(msg1))

	// UTF-8 sender.
	c.expect("MAIL FROM:<josé@example.org> SMTPUTF8 BODY=8BITMIME", "250 2.1.0")
	c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
	msg2 := crlfMessage("From: José <josé@example.org>", "Subject: olá", "", "São Paulo")
	id2 := queuedID(t, c.data(msg2))
	c.quit()

	f := waitExactly(t, in, dede, 1)
	checkMessage(t, f[0], wantMsg{sender: "ascii@example.org", deliveredTo: "dédé@example.test", helo: "utf8.client.test",
		proto: "UTF8SMTP", id: id1, forRcpt: "dédé@example.test", body: msg1})
	f = waitExactly(t, in, demo, 1)
	checkMessage(t, f[0], wantMsg{sender: "josé@example.org", deliveredTo: "demo@example.test", helo: "utf8.client.test",
		proto: "UTF8SMTP", id: id2, forRcpt: "demo@example.test", body: msg2})

	// And with a real client: smtplib sends SMTPUTF8 itself when asked.
	before := Messages(dede)
	msg3 := crlfMessage("From: zoë@example.org", "Subject: smtplib utf8", "", "naïve")
	id3 := queuedID(t, pythonSend(t, in, "py.utf8.test", "zoë@example.org", []string{"dédé@example.test"}, []string{"SMTPUTF8"}, msg3))
	checkMessage(t, newMaildirFile(t, dede, before), wantMsg{sender: "zoë@example.org", deliveredTo: "dédé@example.test", helo: "py.utf8.test",
		proto: "UTF8SMTP", id: id3, forRcpt: "dédé@example.test", body: msg3})
	waitSpoolEmpty(t, in)
}

// TestSMTPUnknownUser: unknown recipients of virtual and local domains
// are refused at RCPT time; postmaster always exists.
func TestSMTPUnknownUser(t *testing.T) {
	in := Start(t, Options{})
	demo := in.Maildir("demo")
	c := dialSMTP(t, in.Addr)
	c.ehlo("unknown.client.test")
	c.expect("MAIL FROM:<u@example.org>", "250 2.1.0")
	for _, rcpt := range []string{"nobody@example.test", "nosuchuser@localhost", "nosuchuser@mx.postern.test", "NoSuchUser@LOCALHOST", "nobody+tag@example.test"} {
		r := c.expect("RCPT TO:<"+rcpt+">", "550 5.1.1")
		if !strings.Contains(strings.ToLower(r), "<"+strings.ToLower(rcpt)+">") {
			t.Errorf("RCPT %s: reply %q does not name the address", rcpt, r)
		}
	}
	// Every recipient was refused: DATA too.
	c.expect("DATA", "554 5.5.1")
	c.expect("RSET", "250 2.0.0")

	// postmaster@ a virtual domain without an entry of its own, and the
	// bare <postmaster> of RFC 5321 4.1.1.3: both reach the postmaster
	// alias, which is demo.
	msg := crlfMessage("Subject: to postmaster", "", "hello postmaster")
	var ids []string
	for _, rcpt := range []string{"postmaster@example.test", "postmaster", "Postmaster"} {
		c.expect("MAIL FROM:<u@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<"+rcpt+">", "250 2.1.5")
		ids = append(ids, queuedID(t, c.data(msg)))
	}
	c.quit()
	files := waitExactly(t, in, demo, 3)
	for i, id := range ids {
		var f string
		for _, p := range files {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(" id "+id)) {
				f = p
			}
		}
		if f == "" {
			t.Fatalf("message %s (to postmaster #%d) not in demo's Maildir", id, i+1)
		}
		forRcpt := "*"
		if i == 0 {
			forRcpt = "postmaster@example.test"
		}
		checkMessage(t, f, wantMsg{sender: "u@example.org", deliveredTo: "demo@example.test", helo: "unknown.client.test",
			proto: "ESMTP", id: id, forRcpt: forRcpt, body: msg})
	}
	waitSpoolEmpty(t, in)
}

// TestSMTPRelay: only mynetworks may relay; the relayed message waits in
// deferred/ since there is no remote delivery yet.
func TestSMTPRelay(t *testing.T) {
	in := Start(t, Options{Settings: []string{"mynetworks = 127.0.0.1/32"}})
	outside := dialSMTPFrom(t, "127.0.0.2", in.Addr)
	outside.ehlo("outside.client.test")
	outside.expect("MAIL FROM:<o@example.org>", "250 2.1.0")
	if r := outside.cmd("RCPT TO:<user@remote.example>"); r != "554 5.7.1 <user@remote.example>: Relay access denied\r\n" {
		t.Fatalf("relay from 127.0.0.2: %q, want 554 5.7.1 <user@remote.example>: Relay access denied", r)
	}
	outside.expect("RCPT TO:<User@Remote.Example.>", "554 5.7.1")
	// Old tricks to relay through a local domain or past the check.
	for rcpt, want := range map[string]string{
		"@example.test:user@remote.example":  "554 5.7.1", // source route: dropped, the rest is remote
		"@localhost,@mx.postern.test:u@r.ex": "554 5.7.1",
		"user@[192.0.2.1]":                   "554 5.7.1",
		"user%remote.example@localhost":      "550 5.1.1",
		"user%remote.example@example.test":   "550 5.1.1",
		"remote.example!user@localhost":      "550 5.1.1",
		`"user@remote.example"@example.test`: "550 5.1.1",
		`"user@remote.example"@localhost`:    "550 5.1.1",
	} {
		outside.expect("RCPT TO:<"+rcpt+">", want)
	}
	// Our own domains are open to everyone.
	outside.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
	outside.quit()
	if !in.WaitLog("reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <user@remote.example>: Relay access denied", 5*time.Second) {
		t.Errorf("no reject line for the relay attempt:\n%s", in.Log())
	}

	inside := dialSMTP(t, in.Addr)
	inside.ehlo("inside.client.test")
	inside.expect("MAIL FROM:<i@example.org>", "250 2.1.0")
	inside.expect("RCPT TO:<user@remote.example>", "250 2.1.5")
	id := queuedID(t, inside.data(crlfMessage("Subject: relay", "", "to the world")))
	inside.quit()

	var entry struct {
		QueueName  string `json:"queue_name"`
		QueueID    string `json:"queue_id"`
		Sender     string `json:"sender"`
		Recipients []struct {
			Address string `json:"address"`
			Status  string `json:"status"`
		} `json:"recipients"`
	}
	var out string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var err error
		out, err = in.Postern("queue", "list", "-j")
		if err != nil {
			t.Fatalf("postern queue list -j: %v\n%s", err, out)
		}
		entry.QueueName = ""
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Contains(l, id) {
				if err := json.Unmarshal([]byte(l), &entry); err != nil {
					t.Fatalf("queue list -j line %q: %v", l, err)
				}
			}
		}
		if entry.QueueName == "deferred" {
			break
		}
	}
	if entry.QueueName != "deferred" || entry.QueueID != id || entry.Sender != "i@example.org" ||
		len(entry.Recipients) != 1 || entry.Recipients[0].Address != "user@remote.example" ||
		(entry.Recipients[0].Status != "pending" && entry.Recipients[0].Status != "delayed") {
		t.Fatalf("queue list -j does not show %s deferred for user@remote.example:\n%s\n%s", id, out, in.Log())
	}
	text, err := in.Postern("queue", "list")
	if err != nil || !strings.Contains(text, id) || !strings.Contains(text, "i@example.org") || !strings.Contains(text, "user@remote.example") || !strings.Contains(text, "-- 1 Request(s).") {
		t.Errorf("postern queue list (%v):\n%s", err, text)
	}
	if !strings.Contains(in.Log(), id+": to=<user@remote.example>, relay=none") || !strings.Contains(in.Log(), "status=deferred") {
		t.Errorf("no deferral logged for %s:\n%s", id, in.Log())
	}
}

// TestSMTPTimeouts: with smtpd_timeout = 2s an idle client, and one that
// stalls or trickles in DATA, is cut off with 421 4.4.2 within a few
// seconds and nothing is delivered.
func TestSMTPTimeouts(t *testing.T) {
	in := Start(t, Options{Settings: []string{"smtpd_timeout = 2s"}})
	const timedOut = "421 4.4.2 mx.postern.test Error: timeout exceeded\r\n"

	// waitCut reads what the server says until it hangs up, and checks
	// that it is the 421 alone, between 1.5 and 6 seconds after since.
	waitCut := func(t *testing.T, c *smtpClient, since time.Time) {
		t.Helper()
		c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		got, err := io.ReadAll(c.br)
		el := time.Since(since)
		if err != nil {
			t.Fatalf("after %v: %v (got %q)", el, err, got)
		}
		if string(got) != timedOut {
			t.Fatalf("server said %q before hanging up, want %q", got, timedOut)
		}
		if el < 1500*time.Millisecond || el > 6*time.Second {
			t.Fatalf("cut off after %v, want about 2 s", el)
		}
	}

	t.Run("idle after greeting", func(t *testing.T) {
		c := dialSMTP(t, in.Addr)
		waitCut(t, c, time.Now())
	})
	t.Run("trickle a command", func(t *testing.T) {
		c := dialSMTP(t, in.Addr)
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, b := range []byte("NOOP " + strings.Repeat("n", 40)) {
				time.Sleep(300 * time.Millisecond)
				if _, err := c.c.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
		c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		got, _ := io.ReadAll(c.br)
		el := time.Since(start)
		c.c.Close()
		<-done
		if string(got) != timedOut || el > 6*time.Second {
			t.Fatalf("trickling client: server said %q after %v, want %q within about 2 s", got, el, timedOut)
		}
	})
	t.Run("idle in a transaction", func(t *testing.T) {
		c := dialSMTP(t, in.Addr)
		c.ehlo("idle.client.test")
		c.expect("MAIL FROM:<idle@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		waitCut(t, c, time.Now())
	})
	t.Run("stall in DATA", func(t *testing.T) {
		c := dialSMTP(t, in.Addr)
		c.ehlo("stall.client.test")
		c.expect("MAIL FROM:<stall@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
			t.Fatalf("DATA: %q", r)
		}
		mark := smtpLogMark(in)
		// 100 kB first, so that cleanup has a queue file under way
		// when the client stops.
		c.write("Subject: stall\r\n\r\n" + string(dotStuff(smtpLines(2, 2500, 78))) + "half a li")
		waitCut(t, c, time.Now())
		neverQueued(t, in, smtpRejected(t, in, mark, "timeout"))
		waitSpoolEmpty(t, in)
	})
	t.Run("hang up in DATA", func(t *testing.T) {
		c := dialSMTP(t, in.Addr)
		c.ehlo("hangup.client.test")
		c.expect("MAIL FROM:<hangup@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
			t.Fatalf("DATA: %q", r)
		}
		mark := smtpLogMark(in)
		c.write("Subject: hang up\r\n\r\n" + string(dotStuff(smtpLines(3, 2500, 78))))
		c.c.Close()
		neverQueued(t, in, smtpRejected(t, in, mark, "lost connection"))
		waitSpoolEmpty(t, in)
	})
	t.Run("trickle in DATA", func(t *testing.T) {
		// One octet every 300 ms never lets a read wait 2 s, but the
		// line as a whole takes far longer than smtpd_timeout.
		c := dialSMTP(t, in.Addr)
		c.ehlo("trickle.client.test")
		c.expect("MAIL FROM:<trickle@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		if r := c.cmd("DATA"); !strings.HasPrefix(r, "354 ") {
			t.Fatalf("DATA: %q", r)
		}
		mark := smtpLogMark(in)
		c.write("Subject: trickle\r\n\r\n")
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Ends when the server hangs up (the write fails) or
			// after 12 s; the test closes the connection either way.
			for i := 0; i < 40; i++ {
				time.Sleep(300 * time.Millisecond)
				if _, err := c.c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		got, _ := io.ReadAll(c.br)
		el := time.Since(start)
		c.c.Close()
		<-done
		if string(got) != timedOut || el > 6*time.Second {
			t.Fatalf("trickling client: server said %q after %v, want %q within about 2 s", got, el, timedOut)
		}
		neverQueued(t, in, smtpRejected(t, in, mark, "timeout"))
	})
	if f := Messages(in.Maildir("demo")); len(f) != 0 {
		t.Errorf("demo received %v", f)
	}
	waitSpoolEmpty(t, in)
}

// TestSMTPAliasesAndLocalUsers: an alias fans out to virtual mailboxes,
// an address extension lands in the user's mailbox, and a system user
// gets mail in ~/Maildir/new owned by that user.
func TestSMTPAliasesAndLocalUsers(t *testing.T) {
	if !isRoot() {
		t.Fatal("this test creates a system user: it must run as root (CI does)")
	}
	const name = "posternlocal"
	if _, err := user.Lookup(name); err == nil {
		exec.Command("userdel", "-r", "-f", name).Run()
	}
	if out, err := exec.Command("useradd", "-m", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-r", "-f", name).CombinedOutput(); err != nil {
			t.Errorf("userdel: %v\n%s", err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	home := filepath.Join(u.HomeDir, "Maildir")

	// Started after useradd: smtpd and local read the user database at
	// start.
	in := Start(t, Options{Aliases: "postmaster: demo@example.test\nteam: demo@example.test, other@example.test\n"})
	demo, other := in.Maildir("demo"), in.Maildir("other")

	send := func(t *testing.T, rcpt string, msg []byte) string {
		t.Helper()
		c := dialSMTP(t, in.Addr)
		c.ehlo("alias.client.test")
		c.expect("MAIL FROM:<a@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<"+rcpt+">", "250 2.1.5")
		id := queuedID(t, c.data(msg))
		c.quit()
		return id
	}

	t.Run("alias to two mailboxes", func(t *testing.T) {
		msg := crlfMessage("Subject: team", "", "to the whole team")
		id := send(t, "team@localhost", msg)
		d := waitExactly(t, in, demo, 1)
		o := waitExactly(t, in, other, 1)
		checkMessage(t, d[0], wantMsg{sender: "a@example.org", deliveredTo: "demo@example.test", helo: "alias.client.test",
			proto: "ESMTP", id: id, forRcpt: "team@localhost", body: msg})
		checkMessage(t, o[0], wantMsg{sender: "a@example.org", deliveredTo: "other@example.test", helo: "alias.client.test",
			proto: "ESMTP", id: id, forRcpt: "team@localhost", body: msg})
	})
	t.Run("alias and member in one message", func(t *testing.T) {
		// demo is reached twice, directly and through team: one copy.
		bd, bo := Messages(demo), Messages(other)
		c := dialSMTP(t, in.Addr)
		c.ehlo("alias.client.test")
		c.expect("MAIL FROM:<a@example.org>", "250 2.1.0")
		c.expect("RCPT TO:<team@localhost>", "250 2.1.5")
		c.expect("RCPT TO:<demo@example.test>", "250 2.1.5")
		msg := crlfMessage("Subject: twice", "", "one copy each")
		id := queuedID(t, c.data(msg))
		c.quit()
		od := newMaildirFile(t, other, bo)
		checkMessage(t, od, wantMsg{sender: "a@example.org", deliveredTo: "other@example.test", helo: "alias.client.test",
			proto: "ESMTP", id: id, forRcpt: "", body: msg})
		dd := newMaildirFile(t, demo, bd)
		checkMessage(t, dd, wantMsg{sender: "a@example.org", deliveredTo: "demo@example.test", helo: "alias.client.test",
			proto: "ESMTP", id: id, forRcpt: "", body: msg})
		time.Sleep(smtpSettle)
		if n := len(Messages(demo)) - len(bd); n != 1 {
			t.Errorf("demo got %d copies, want 1", n)
		}
	})
	t.Run("recipient delimiter", func(t *testing.T) {
		before := Messages(demo)
		msg := crlfMessage("Subject: tagged", "", "with an extension")
		id := send(t, "demo+tag@example.test", msg)
		checkMessage(t, newMaildirFile(t, demo, before), wantMsg{sender: "a@example.org", deliveredTo: "demo+tag@example.test", helo: "alias.client.test",
			proto: "ESMTP", id: id, forRcpt: "demo+tag@example.test", body: msg})
	})
	t.Run("system user", func(t *testing.T) {
		msg := crlfMessage("Subject: local", "", "to a system account")
		id := send(t, name+"@localhost", msg)
		f := waitExactly(t, in, home, 1)
		checkMessage(t, f[0], wantMsg{sender: "a@example.org", deliveredTo: name + "@localhost", helo: "alias.client.test",
			proto: "ESMTP", id: id, forRcpt: name + "@localhost", body: msg})
		for _, p := range []string{f[0], home, filepath.Join(home, "new"), filepath.Join(home, "cur"), filepath.Join(home, "tmp")} {
			if fu, fg := fileOwner(t, p); fu != uid || fg != gid {
				t.Errorf("%s owned by %d:%d, want %s's %d:%d", p, fu, fg, name, uid, gid)
			}
		}
		if fi, err := os.Stat(f[0]); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v (%v), want no access for group and others", f[0], fi.Mode(), err)
		}
		// With an extension, at the other local domain name.
		before := Messages(home)
		msg2 := crlfMessage("Subject: local+ext", "", "extension")
		id2 := send(t, name+"+box@mx.postern.test", msg2)
		checkMessage(t, newMaildirFile(t, home, before), wantMsg{sender: "a@example.org", deliveredTo: name + "+box@mx.postern.test", helo: "alias.client.test",
			proto: "ESMTP", id: id2, forRcpt: name + "+box@mx.postern.test", body: msg2})
	})
	waitSpoolEmpty(t, in)
}

// TestSMTPRecipientLimit: with smtpd_recipient_limit = 3 the 4th RCPT
// gets 452 4.5.3, the message goes to the first three, and the next
// transaction starts counting again.
func TestSMTPRecipientLimit(t *testing.T) {
	in := Start(t, Options{
		Settings:  []string{"smtpd_recipient_limit = 3"},
		Mailboxes: []string{"third@example.test example.test/third/", "fourth@example.test example.test/fourth/"},
	})
	c := dialSMTP(t, in.Addr)
	c.ehlo("limit.client.test")
	c.expect("MAIL FROM:<l@example.org>", "250 2.1.0")
	for _, r := range []string{"demo", "other", "third"} {
		c.expect("RCPT TO:<"+r+"@example.test>", "250 2.1.5")
	}
	if r := c.cmd("RCPT TO:<fourth@example.test>"); r != "452 4.5.3 Error: too many recipients\r\n" {
		t.Fatalf("4th RCPT: %q, want 452 4.5.3 Error: too many recipients", r)
	}
	c.expect("RCPT TO:<postmaster@example.test>", "452 4.5.3")
	msg := crlfMessage("Subject: three of four", "", "limited")
	id := queuedID(t, c.data(msg))
	// A new transaction has a new count.
	c.expect("MAIL FROM:<l@example.org>", "250 2.1.0")
	c.expect("RCPT TO:<fourth@example.test>", "250 2.1.5")
	msg2 := crlfMessage("Subject: the fourth", "", "next transaction")
	id2 := queuedID(t, c.data(msg2))
	c.quit()
	for _, r := range []string{"demo", "other", "third"} {
		f := waitExactly(t, in, in.Maildir(r), 1)
		checkMessage(t, f[0], wantMsg{sender: "l@example.org", deliveredTo: r + "@example.test", helo: "limit.client.test",
			proto: "ESMTP", id: id, forRcpt: "", body: msg})
	}
	f := waitExactly(t, in, in.Maildir("fourth"), 1)
	checkMessage(t, f[0], wantMsg{sender: "l@example.org", deliveredTo: "fourth@example.test", helo: "limit.client.test",
		proto: "ESMTP", id: id2, forRcpt: "fourth@example.test", body: msg2})
	waitSpoolEmpty(t, in)
}
