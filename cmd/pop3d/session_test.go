package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postern/internal/maildir"
)

// deliver puts messages (CRLF text) into a fresh Maildir and returns it.
func deliver(t *testing.T, msgs ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir") + "/"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &maildir.Delivery{Dir: filepath.Clean(dir), Hostname: "test", Create: true}
	for _, m := range msgs {
		if _, err := d.Deliver(nil, strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct delivery times keep the order
	}
	return dir
}

// client is the test's end of a session.
type client struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	done chan int
}

// startSession runs serve on one end of a pipe and returns the other,
// after the first line (which it returns too).
func startSession(t *testing.T, dir string, idle time.Duration) (*client, string) {
	t.Helper()
	a, b := net.Pipe()
	cl := &client{t: t, c: b, br: bufio.NewReader(b), done: make(chan int, 1)}
	go func() {
		cl.done <- serve(sessionConfig{Conn: a, User: "demo", Mail: dir, ClientAddr: "127.0.0.1:1", Idle: idle})
	}()
	t.Cleanup(func() { b.Close() })
	b.SetDeadline(time.Now().Add(20 * time.Second))
	return cl, cl.line()
}

func (c *client) line() string {
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

// cmd sends a command and returns the first reply line.
func (c *client) cmd(s string) string {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
	return c.line()
}

// multi reads a multi-line body up to ".", un-stuffed, with CRLF ends.
func (c *client) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
	}
}

func (c *client) expect(cmd, prefix string) string {
	c.t.Helper()
	r := c.cmd(cmd)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%s: %q, want %s...", cmd, r, prefix)
	}
	return r
}

const (
	msg1 = "Subject: one\r\n\r\nfirst\r\n.dot line\r\n..two dots\r\n.\r\n"
	msg2 = "Subject: two\r\nX: y\r\n\r\nb1\r\nb2\r\nb3\r\n"
)

func TestSession(t *testing.T) {
	dir := deliver(t, msg1, msg2)
	c, first := startSession(t, dir, 0)
	if first != "+OK Logged in." {
		t.Fatalf("first line %q", first)
	}
	if r := c.cmd("STAT"); r != "+OK 2 "+itoa(len(msg1)+len(msg2)) {
		t.Fatalf("STAT = %q", r)
	}
	c.expect("LIST", "+OK")
	if l := c.multi(); l != "1 "+itoa(len(msg1))+"\r\n2 "+itoa(len(msg2))+"\r\n" {
		t.Fatalf("LIST = %q", l)
	}
	c.expect("UIDL", "+OK")
	uidl := c.multi()
	f := strings.Fields(uidl)
	if len(f) != 4 || len(f[1]) != 16 || !strings.HasPrefix(f[1], "00000001") || !strings.HasPrefix(f[3], "00000002") || f[1][8:] != f[3][8:] {
		t.Fatalf("UIDL = %q", uidl)
	}
	if r := c.cmd("UIDL 2"); r != "+OK 2 "+f[3] {
		t.Fatalf("UIDL 2 = %q", r)
	}
	if r := c.cmd("LIST 1"); r != "+OK 1 "+itoa(len(msg1)) {
		t.Fatalf("LIST 1 = %q", r)
	}
	c.expect("RETR 1", "+OK "+itoa(len(msg1))+" octets")
	if got := c.multi(); got != msg1 {
		t.Fatalf("RETR 1 = %q, want %q", got, msg1)
	}
	c.expect("TOP 2 1", "+OK")
	if got := c.multi(); got != "Subject: two\r\nX: y\r\n\r\nb1\r\n" {
		t.Fatalf("TOP 2 1 = %q", got)
	}
	c.expect("TOP 2 0", "+OK")
	if got := c.multi(); got != "Subject: two\r\nX: y\r\n\r\n" {
		t.Fatalf("TOP 2 0 = %q", got)
	}
	for _, bad := range []string{"RETR 3", "RETR 0", "RETR x", "RETR", "DELE -1", "TOP 1", "LIST 1 2", "XYZZY", "USER x", "STLS", "QUIT now"} {
		c.expect(bad, "-ERR")
	}
	c.expect("DELE 2", "+OK")
	c.expect("DELE 2", "-ERR")
	c.expect("RETR 2", "-ERR")
	if r := c.cmd("STAT"); r != "+OK 1 "+itoa(len(msg1)) {
		t.Fatalf("STAT after DELE = %q", r)
	}
	c.expect("RSET", "+OK")
	c.expect("STAT", "+OK 2 ")
	c.expect("DELE 1", "+OK")
	c.expect("NOOP", "+OK")
	c.expect("CAPA", "+OK")
	if capa := c.multi(); !strings.Contains(capa, "UIDL\r\n") || strings.Contains(capa, "USER") || strings.Contains(capa, "STLS") {
		t.Fatalf("CAPA = %q", capa)
	}
	c.expect("QUIT", "+OK Logging out")
	if st := <-c.done; st != 0 {
		t.Fatalf("exit status %d", st)
	}
	// Message 1 is gone, 2 was not retrieved: no S flag; and new/ is empty.
	news, curs, err := maildir.List(filepath.Clean(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(news) != 0 || len(curs) != 1 {
		t.Fatalf("after QUIT: new %v cur %v", news, curs)
	}
	if _, flags := maildir.ParseInfo(curs[0]); strings.Contains(flags, "S") {
		t.Fatalf("unretrieved message got Seen: %s", curs[0])
	}

	// A new session sees message 2 under the same UIDL; RETR then QUIT
	// marks it Seen.
	c, _ = startSession(t, dir, 0)
	if r := c.cmd("UIDL 1"); r != "+OK 1 "+f[3] {
		t.Fatalf("UIDL in the second session = %q, want %s", r, f[3])
	}
	c.expect("RETR 1", "+OK")
	if got := c.multi(); got != msg2 {
		t.Fatalf("RETR = %q", got)
	}
	c.expect("QUIT", "+OK")
	<-c.done
	_, curs, _ = maildir.List(filepath.Clean(dir))
	if _, flags := maildir.ParseInfo(curs[0]); len(curs) != 1 || !strings.Contains(flags, "S") {
		t.Fatalf("retrieved message has no Seen flag: %v", curs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestSessionDropDeletesNothing: DELE without QUIT changes nothing.
func TestSessionDropDeletesNothing(t *testing.T) {
	dir := deliver(t, msg1, msg2)
	c, _ := startSession(t, dir, 0)
	c.expect("DELE 1", "+OK")
	c.expect("RETR 2", "+OK")
	c.multi()
	c.c.Close()
	<-c.done
	_, curs, _ := maildir.List(filepath.Clean(dir))
	if len(curs) != 2 {
		t.Fatalf("after a drop: %v", curs)
	}
	for _, n := range curs {
		if _, flags := maildir.ParseInfo(n); flags != "" {
			t.Fatalf("flags set without QUIT: %s", n)
		}
	}
}

// TestSessionInUse: a second session gets [IN-USE] and ends.
func TestSessionInUse(t *testing.T) {
	dir := deliver(t, msg1)
	c1, first := startSession(t, dir, 0)
	if first != "+OK Logged in." {
		t.Fatal(first)
	}
	c2, first := startSession(t, dir, 0)
	if first != "-ERR [IN-USE] Mailbox is locked by another POP3 session." {
		t.Fatalf("second session: %q", first)
	}
	if st := <-c2.done; st != 0 {
		t.Fatalf("exit %d", st)
	}
	c1.expect("QUIT", "+OK")
	<-c1.done
	c3, first := startSession(t, dir, 0)
	if first != "+OK Logged in." {
		t.Fatalf("after unlock: %q", first)
	}
	c3.expect("QUIT", "+OK")
}

// TestSessionLimits: an over-long line ends the session, so does idling,
// and bad commands are counted; nothing is deleted in any of these cases.
func TestSessionLimits(t *testing.T) {
	dir := deliver(t, msg1)
	c, _ := startSession(t, dir, 0)
	c.expect("DELE 1", "+OK")
	// A pipe has no buffer: write from another goroutine, the server
	// answers before it has read the whole line.
	go c.c.Write([]byte(strings.Repeat("A", 5000) + "\r\n"))
	if r := c.line(); r != "-ERR line too long" {
		t.Fatalf("long line: %q", r)
	}
	<-c.done

	c, _ = startSession(t, dir, 300*time.Millisecond)
	c.expect("DELE 1", "+OK")
	if r := c.line(); r != "-ERR Disconnected for inactivity." {
		t.Fatalf("idle: %q", r)
	}
	<-c.done

	c, _ = startSession(t, dir, 0)
	c.expect("DELE 1", "+OK")
	for i := 0; i < maxBadCommands-1; i++ {
		c.expect("BOGUS", "-ERR Unknown command")
	}
	c.expect("BOGUS", "-ERR Too many bad commands")
	<-c.done
	if _, curs, _ := maildir.List(filepath.Clean(dir)); len(curs) != 1 {
		t.Fatalf("a message vanished: %v", curs)
	}
}

// TestSessionPipelining: commands sent in one write get their replies in
// order.
func TestSessionPipelining(t *testing.T) {
	dir := deliver(t, msg1, msg2)
	c, _ := startSession(t, dir, 0)
	go c.c.Write([]byte("STAT\r\nLIST 2\r\nRETR 2\r\nNOOP\r\n"))
	if r := c.line(); !strings.HasPrefix(r, "+OK 2 ") {
		t.Fatal(r)
	}
	if r := c.line(); r != "+OK 2 "+itoa(len(msg2)) {
		t.Fatal(r)
	}
	c.line()
	if got := c.multi(); got != msg2 {
		t.Fatalf("pipelined RETR = %q", got)
	}
	if r := c.line(); r != "+OK" && !strings.HasPrefix(r, "+OK") {
		t.Fatal(r)
	}
}

// TestSessionLFAndNoFinalNewline: a message stored without a final line
// end is sent with one; bare LF in the file become CRLF.
func TestSessionNoFinalNewline(t *testing.T) {
	dir := deliver(t, "Subject: x\r\n\r\nno end")
	c, _ := startSession(t, dir, 0)
	c.expect("RETR 1", "+OK")
	if got := c.multi(); got != "Subject: x\r\n\r\nno end\r\n" {
		t.Fatalf("RETR = %q", got)
	}
}

// TestSessionLarge: a 10,000-message mailbox is listed without reading
// the messages (sizes come from the names), then all of it retrieved.
func TestSessionLarge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir") + "/"
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const n = 10000
	body := "Subject: m\n\nline\n"
	base := time.Now().Unix() - n
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%d.M%dP1.test,S=%d,W=%d", base+int64(i), i, len(body), len(body)+3)
		if err := os.WriteFile(filepath.Join(dir, "new", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	c, first := startSession(t, dir, 0)
	if first != "+OK Logged in." {
		t.Fatal(first)
	}
	login := time.Since(start)
	if r := c.cmd("STAT"); r != fmt.Sprintf("+OK %d %d", n, n*(len(body)+3)) {
		t.Fatalf("STAT = %q", r)
	}
	c.expect("UIDL", "+OK")
	if got := strings.Count(c.multi(), "\n"); got != n {
		t.Fatalf("UIDL listed %d", got)
	}
	c.expect("LIST", "+OK")
	c.multi()
	list := time.Since(start)
	// Pipeline every RETR, as fetching clients do.
	go func() {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "RETR %d\r\n", i)
		}
		c.c.Write([]byte(b.String()))
	}()
	want := "Subject: m\r\n\r\nline\r\n"
	for i := 1; i <= n; i++ {
		c.line()
		if got := c.multi(); got != want {
			t.Fatalf("RETR %d = %q", i, got)
		}
	}
	c.expect("QUIT", "+OK")
	t.Logf("%d messages: login (first sync) %v, STAT+UIDL+LIST %v, all RETRs %v", n, login, list-login, time.Since(start)-list)
}

// TestSessionSeenKeepsFlags: flags another client set during the session
// survive the Seen flag that QUIT adds.
func TestSessionSeenKeepsFlags(t *testing.T) {
	dir := deliver(t, msg1)
	c, _ := startSession(t, dir, 0)
	c.expect("RETR 1", "+OK")
	c.multi()
	// Meanwhile an IMAP session flags it.
	st, err := maildir.OpenStore(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := st.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := f.Sync(false)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("sync: %v %v", msgs, err)
	}
	if _, err := f.SetFlags(msgs[0], "F"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.expect("QUIT", "+OK")
	<-c.done
	_, curs, _ := maildir.List(filepath.Clean(dir))
	if _, flags := maildir.ParseInfo(curs[0]); flags != "FS" {
		t.Fatalf("flags after QUIT: %q (%v), want FS", flags, curs)
	}
}

// TestSessionRetrRenamed: a message whose file another session renamed
// (new flags) after login is still found by RETR, converted and stuffed
// as before; one removed meanwhile answers -ERR and the session goes on.
func TestSessionRetrRenamed(t *testing.T) {
	dir := deliver(t, "Subject: a\n\n.x\nb\n", msg2)
	c, _ := startSession(t, dir, 0)
	st, err := maildir.OpenStore(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := st.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := f.Sync(false)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("sync: %v %v", msgs, err)
	}
	if _, err := f.SetFlags(msgs[0], "F"); err != nil {
		t.Fatal(err)
	}
	if err := f.Expunge(msgs[1]); err != nil {
		t.Fatal(err)
	}
	c.expect("RETR 1", "+OK")
	if got, want := c.multi(), "Subject: a\r\n\r\n.x\r\nb\r\n"; got != want {
		t.Fatalf("RETR 1 after a rename: %q, want %q", got, want)
	}
	c.expect("RETR 2", "-ERR Message was removed")
	c.expect("NOOP", "+OK")
	c.expect("QUIT", "+OK")
}

// BenchmarkRetr measures the session's side of RETR of a 4 KB message
// (open, LF to CRLF, stuffing, one write) over a loopback TCP connection.
func BenchmarkRetr(b *testing.B) {
	body := strings.Repeat("a line of about sixty characters of text in a message body\n", 64)
	dir := filepath.Join(b.TempDir(), "Maildir") + "/"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	d := &maildir.Delivery{Dir: filepath.Clean(dir), Hostname: "test", Create: true}
	const n = 100
	for range n {
		if _, err := d.Deliver(nil, strings.NewReader("Subject: x\n\n.dot\n"+body)); err != nil {
			b.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			serve(sessionConfig{Conn: c, User: "demo", Mail: dir, ClientAddr: "127.0.0.1:1", Idle: time.Minute})
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
		b.Fatalf("first line %q", l)
	}
	b.SetBytes(int64(len(body)))
	i := 0
	for b.Loop() {
		fmt.Fprintf(c, "RETR %d\r\n", i%n+1)
		i++
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(l) == 3 && l[0] == '.' {
				break
			}
		}
	}
}
