package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/sys/unix"

	"postern/internal/config"
	"postern/internal/maildir"
)

// testSettings are small limits so the limit tests stay fast.
var testSettings = settings{idle: 30 * time.Minute, maxLine: 8192, appendLimit: 30 << 20, maxLiteral: 30 << 20}

type result struct {
	in, out int64
	reason  string
}

// newMaildir makes an empty Maildir and returns its path (with "/").
func newMaildir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir") + "/"
	if _, err := maildir.OpenStore(dir, true); err != nil {
		t.Fatal(err)
	}
	return dir
}

func deliver(t *testing.T, dir, msg string) {
	t.Helper()
	d := &maildir.Delivery{Dir: dir, Hostname: "test"}
	if _, err := d.Deliver(nil, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// startSession runs a session on one end of a socketpair, as the
// acceptor would, and returns the other end.
func startSession(t *testing.T, dir string, set settings) (net.Conn, <-chan result) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	store, err := maildir.OpenStore(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureSpecial(); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	finished := make(chan struct{})
	go func() {
		in, out, reason := serve(conns[1], "demo", store, set)
		done <- result{in, out, reason}
		close(finished)
	}()
	t.Cleanup(func() {
		conns[0].Close()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("session did not end")
		}
	})
	conns[0].SetDeadline(time.Now().Add(60 * time.Second))
	return conns[0], done
}

// raw is a line-level IMAP client for exact protocol checks.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
	n  int
}

func newRaw(t *testing.T, c net.Conn) *raw {
	r := &raw{t: t, c: c, br: bufio.NewReader(c)}
	greet := r.line()
	if !strings.HasPrefix(greet, "* PREAUTH ") {
		t.Fatalf("greeting %q", greet)
	}
	return r
}

var litRe = regexp.MustCompile(`~?\{(\d+)\}\r\n$`)

// line reads one response line, literals included.
func (r *raw) line() string {
	r.t.Helper()
	var b strings.Builder
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("read: %v (after %q)", err, b.String()+l)
		}
		b.WriteString(l)
		m := litRe.FindStringSubmatch(l)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			r.t.Fatal(err)
		}
		b.Write(buf)
	}
}

// cmd sends a command and returns all lines up to and including the
// tagged one.
func (r *raw) cmd(format string, args ...any) []string {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("t%d", r.n)
	r.send(tag + " " + fmt.Sprintf(format, args...) + "\r\n")
	return r.until(tag)
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) until(tag string) []string {
	r.t.Helper()
	var lines []string
	for {
		l := r.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

func last(lines []string) string { return lines[len(lines)-1] }

func mustOK(t *testing.T, lines []string) {
	t.Helper()
	if !strings.Contains(last(lines), " OK") {
		t.Fatalf("not OK: %q", lines)
	}
}

func joined(lines []string) string { return strings.Join(lines, "") }

const simpleMsg = "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: hello\nDate: Mon, 02 Jan 2006 15:04:05 +0000\nMessage-ID: <1@example.test>\n\nline one\nline two\n"

func TestSelectFetchBasics(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, simpleMsg)
	deliver(t, dir, "Subject: second\n\nbody\n")
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	lines := r.cmd("SELECT INBOX")
	mustOK(t, lines)
	all := joined(lines)
	for _, want := range []string{"* 2 EXISTS", "* 2 RECENT", "[UIDVALIDITY ", "[UIDNEXT 3]", "[READ-WRITE]", "[PERMANENTFLAGS ("} {
		if !strings.Contains(all, want) {
			t.Errorf("SELECT lacks %q: %q", want, all)
		}
	}
	lines = r.cmd("FETCH 1 (UID FLAGS RFC822.SIZE BODY.PEEK[])")
	mustOK(t, lines)
	crlf := strings.ReplaceAll(simpleMsg, "\n", "\r\n")
	all = joined(lines)
	if !strings.Contains(all, fmt.Sprintf("RFC822.SIZE %d", len(crlf))) {
		t.Errorf("size: %q", all)
	}
	if !strings.Contains(all, fmt.Sprintf("BODY[] {%d}\r\n%s", len(crlf), crlf)) {
		t.Errorf("body not served as CRLF: %q", all)
	}
	if !strings.Contains(all, `\Recent`) {
		t.Errorf("no \\Recent for rev1: %q", all)
	}
	// partial fetch of the whole message and of the text
	lines = r.cmd("FETCH 1 (BODY.PEEK[]<6.10> BODY.PEEK[TEXT]<2.5>)")
	mustOK(t, lines)
	all = joined(lines)
	if !strings.Contains(all, "BODY[]<6> {10}\r\n"+crlf[6:16]) {
		t.Errorf("partial BODY[]: %q", all)
	}
	if !strings.Contains(all, "BODY[TEXT]<2> {5}\r\nne on") {
		t.Errorf("partial TEXT: %q", all)
	}
	// fetching without PEEK sets \Seen, visible in the file name
	lines = r.cmd("FETCH 2 BODY[TEXT]")
	mustOK(t, lines)
	if !strings.Contains(joined(lines), `\Seen`) {
		t.Errorf("no FLAGS with \\Seen after BODY[]: %q", lines)
	}
	names, _ := filepath.Glob(dir + "cur/*:2,S")
	if len(names) != 1 {
		t.Errorf("want one file with :2,S, have %v", names)
	}
	mustOK(t, r.cmd("LOGOUT"))
}

func TestEnvelopeGroups(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, "From: \"Doe, Jane\" <jane@example.test>\nTo: undisclosed-recipients:;\nCc: Team: a@example.test, B <b@example.test>;, c@example.test\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n\nx\n")
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	mustOK(t, r.cmd("SELECT INBOX"))
	lines := r.cmd("FETCH 1 ENVELOPE")
	mustOK(t, lines)
	all := joined(lines)
	for _, want := range []string{
		`(("Doe, Jane" NIL "jane" "example.test"))`,
		`((NIL NIL "undisclosed-recipients" NIL) (NIL NIL NIL NIL))`,
		`((NIL NIL "Team" NIL) (NIL NIL "a" "example.test") ("B" NIL "b" "example.test") (NIL NIL NIL NIL) (NIL NIL "c" "example.test"))`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("ENVELOPE lacks %s:\n%s", want, all)
		}
	}
}

const nestedMsg = `From: a@example.test
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

plain text
--inner
Content-Type: text/html; charset=utf-8

<p>html</p>
--inner--
--outer
Content-Type: application/octet-stream; name="a.bin"
Content-Disposition: attachment; filename="a.bin"
Content-Transfer-Encoding: base64

AAECAw==
--outer--
`

func TestBodyStructureNested(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, nestedMsg)
	c, _ := startSession(t, dir, testSettings)
	cl := imapclient.New(c, nil)
	defer cl.Close()
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BinarySection: []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}},
		BodySection:   []*imap.FetchItemBodySection{{Part: []int{1, 2}, Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	bs, ok := msgs[0].BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || bs.Subtype != "mixed" || len(bs.Children) != 2 {
		t.Fatalf("outer: %#v", msgs[0].BodyStructure)
	}
	alt, ok := bs.Children[0].(*imap.BodyStructureMultiPart)
	if !ok || alt.Subtype != "alternative" || len(alt.Children) != 2 {
		t.Fatalf("inner: %#v", bs.Children[0])
	}
	if alt.Children[1].MediaType() != "text/html" {
		t.Errorf("1.2 is %s", alt.Children[1].MediaType())
	}
	att := bs.Children[1].(*imap.BodyStructureSinglePart)
	if att.Disposition() == nil || att.Disposition().Params["filename"] != "a.bin" {
		t.Errorf("attachment: %#v", att)
	}
	var bin, html []byte
	for _, b := range msgs[0].BinarySection {
		bin = b.Bytes
	}
	for _, b := range msgs[0].BodySection {
		html = b.Bytes
	}
	if !bytes.Equal(bin, []byte{0, 1, 2, 3}) {
		t.Errorf("BINARY[2] = %v", bin)
	}
	if string(html) != "<p>html</p>" {
		t.Errorf("BODY[1.2] = %q", html)
	}
}

func TestSearch(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, "Subject: apple\n\nred fruit\n")
	deliver(t, dir, "Subject: banana\n\nyellow fruit\n")
	deliver(t, dir, "Subject: cherry\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nK=E4se und Kirsche\n")
	deliver(t, dir, "Subject: date\n\nbrown\n")
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	mustOK(t, r.cmd("SELECT INBOX"))
	cases := []struct{ cmd, want string }{
		{"SEARCH OR SUBJECT apple SUBJECT date", "* SEARCH 1 4\r\n"},
		{"SEARCH NOT BODY fruit", "* SEARCH 3 4\r\n"},
		{"UID SEARCH UID 2:3", "* SEARCH 2 3\r\n"},
		{"SEARCH UID 2:* NOT UID 4", "* SEARCH 2 3\r\n"},
		{"SEARCH CHARSET UTF-8 BODY käse", "* SEARCH 3\r\n"},
		{"SEARCH TEXT YELLOW", "* SEARCH 2\r\n"},
		{"SEARCH 2:3 OR BODY red BODY brown", "* SEARCH\r\n"},
		{"SEARCH RETURN (MIN MAX COUNT) BODY fruit", ") MIN 1 MAX 2 COUNT 2\r\n"},
	}
	for _, tc := range cases {
		lines := r.cmd("%s", tc.cmd)
		mustOK(t, lines)
		if !strings.Contains(joined(lines), tc.want) {
			t.Errorf("%s: got %q, want %q", tc.cmd, lines, tc.want)
		}
	}
}

func TestCopyMoveExpungeAcrossSessions(t *testing.T) {
	dir := newMaildir(t)
	for i := 0; i < 4; i++ {
		deliver(t, dir, fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
	}
	c1, _ := startSession(t, dir, testSettings)
	c2, _ := startSession(t, dir, testSettings)
	a, b := newRaw(t, c1), newRaw(t, c2)
	mustOK(t, a.cmd("SELECT INBOX"))
	mustOK(t, b.cmd("SELECT INBOX"))
	lines := a.cmd("UID COPY 1:2 Archive")
	mustOK(t, lines)
	if !regexp.MustCompile(`OK \[COPYUID \d+ 1:2 1:2\]`).MatchString(last(lines)) {
		t.Errorf("COPY: %q", lines)
	}
	lines = a.cmd("MOVE 3 Archive")
	mustOK(t, lines)
	all := joined(lines)
	if !regexp.MustCompile(`\* OK \[COPYUID \d+ 3 3\]`).MatchString(all) || !strings.Contains(all, "* 3 EXPUNGE") {
		t.Errorf("MOVE: %q", lines)
	}
	// b sees the move's expunge at its next command
	lines = b.cmd("NOOP")
	if !strings.Contains(joined(lines), "* 3 EXPUNGE") {
		t.Errorf("second session did not see EXPUNGE: %q", lines)
	}
	// flags set by a reach b as FETCH FLAGS; EXPUNGE too
	mustOK(t, a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"))
	lines = b.cmd("NOOP")
	if !strings.Contains(joined(lines), `* 1 FETCH (UID 1 FLAGS (\Deleted`) {
		t.Errorf("second session did not see flags: %q", lines)
	}
	lines = a.cmd("EXPUNGE")
	mustOK(t, lines)
	if !strings.Contains(joined(lines), "* 1 EXPUNGE") {
		t.Errorf("EXPUNGE: %q", lines)
	}
	lines = b.cmd("NOOP")
	if !strings.Contains(joined(lines), "* 1 EXPUNGE") {
		t.Errorf("second session did not see EXPUNGE: %q", lines)
	}
	// FETCH must not announce EXPUNGE: a ghost stays until NOOP
	mustOK(t, a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"))
	mustOK(t, a.cmd("EXPUNGE"))
	lines = b.cmd("FETCH 1 UID")
	if strings.Contains(joined(lines), "EXPUNGE") {
		t.Errorf("EXPUNGE during FETCH: %q", lines)
	}
	lines = b.cmd("NOOP")
	if !strings.Contains(joined(lines), "* 1 EXPUNGE") {
		t.Errorf("no EXPUNGE after FETCH: %q", lines)
	}
	lines = a.cmd("STATUS Archive (MESSAGES UIDNEXT SIZE)")
	mustOK(t, lines)
	if !strings.Contains(joined(lines), "MESSAGES 3") {
		t.Errorf("STATUS: %q", lines)
	}
}

func TestIdleSeesDelivery(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, simpleMsg)
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	mustOK(t, r.cmd("SELECT INBOX"))
	r.send("i1 IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	deliver(t, dir, "Subject: new\n\nnew mail\n")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	l := r.line()
	if l != "* 2 EXISTS\r\n" {
		t.Fatalf("IDLE got %q", l)
	}
	t.Logf("EXISTS after %v", time.Since(start))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r.send("DONE\r\n")
	lines := r.until("i1")
	mustOK(t, lines)
}

func TestAppendLarge(t *testing.T) {
	dir := newMaildir(t)
	c, _ := startSession(t, dir, testSettings)
	cl := imapclient.New(c, nil)
	defer cl.Close()
	var body bytes.Buffer
	body.WriteString("Subject: big\r\nFrom: a@example.test\r\n\r\n")
	line := strings.Repeat("x", 998) + "\r\n"
	for body.Len() < 20<<20 {
		body.WriteString(line)
	}
	start := time.Now()
	cmd := cl.Append("INBOX", int64(body.Len()), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, "$Label1"}})
	if _, err := cmd.Write(body.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("APPEND %d bytes in %v, UID %d", body.Len(), time.Since(start), data.UID)
	if data.UID != 1 {
		t.Errorf("UID %d", data.UID)
	}
	names, _ := filepath.Glob(dir + "cur/*:2,Sa")
	if len(names) != 1 {
		t.Fatalf("appended file with flags Sa: %v", names)
	}
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{RFC822Size: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].RFC822Size != int64(body.Len()) {
		t.Errorf("RFC822.SIZE %d, want %d", msgs[0].RFC822Size, body.Len())
	}
	if fmt.Sprint(msgs[0].Flags) != "[\\Seen $Label1]" {
		t.Errorf("flags %v", msgs[0].Flags)
	}
	// over the limit: refused before the literal is sent
	small := testSettings
	small.appendLimit = 1000
	c2, _ := startSession(t, dir, small)
	r := newRaw(t, c2)
	r.send("a1 APPEND INBOX {5000}\r\n")
	if l := r.line(); !strings.Contains(l, "a1 NO [TOOBIG]") {
		t.Errorf("over-limit APPEND: %q", l)
	}
	mustOK(t, r.cmd("NOOP"))
}

func TestMailboxNames(t *testing.T) {
	dir := newMaildir(t)
	c, _ := startSession(t, dir, testSettings)
	cl := imapclient.New(c, nil)
	defer cl.Close()
	for _, name := range []string{"Entwürfe", "日本語", "日本語/子"} {
		if err := cl.Create(name, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", name, err)
		}
	}
	list, err := cl.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range list {
		got[l.Mailbox] = true
	}
	for _, want := range []string{"INBOX", "Entwürfe", "日本語", "日本語/子", "Sent", "Trash"} {
		if !got[want] {
			t.Errorf("LIST lacks %q: %v", want, got)
		}
	}
	if _, err := os.Stat(dir + ".Entw&APw-rfe"); err != nil {
		t.Errorf("mUTF-7 directory: %v", err)
	}
	if err := cl.Rename("日本語", "Japan", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Select("Japan/子", nil).Wait(); err != nil {
		t.Errorf("child after rename: %v", err)
	}
	if err := cl.Delete("Entwürfe").Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestRawMailboxNamesAndSpecialUse(t *testing.T) {
	dir := newMaildir(t)
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	mustOK(t, r.cmd("CREATE \"Entw&APw-rfe\""))
	lines := r.cmd("LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES SIZE))")
	mustOK(t, lines)
	all := joined(lines)
	for _, want := range []string{`"Entw&APw-rfe"`, `\Sent) "/" "Sent"`, `\Trash`, `* STATUS INBOX (MESSAGES 0 SIZE 0)`} {
		if !strings.Contains(all, want) {
			t.Errorf("LIST lacks %q: %s", want, all)
		}
	}
	mustOK(t, r.cmd("ENABLE UTF8=ACCEPT"))
	lines = r.cmd("LIST \"\" \"Entw*\"")
	if !strings.Contains(joined(lines), `"Entwürfe"`) {
		t.Errorf("UTF-8 LIST: %q", lines)
	}
	// malformed modified UTF-7 is the client's error, not a server bug
	lines = r.cmd("SELECT \"&Jjo\"")
	if l := last(lines); !strings.Contains(l, " BAD ") || strings.Contains(l, "SERVERBUG") {
		t.Errorf("bad mUTF-7: %q", l)
	}
	lines = r.cmd("CREATE \"a.b\"")
	if l := last(lines); !strings.Contains(l, "NO [CANNOT]") {
		t.Errorf("dot in name: %q", l)
	}
	lines = r.cmd("SELECT nosuch")
	if l := last(lines); !strings.Contains(l, "NO [NONEXISTENT]") {
		t.Errorf("missing mailbox: %q", l)
	}
	lines = r.cmd("NAMESPACE")
	if !strings.Contains(joined(lines), `* NAMESPACE (("" "/")) NIL NIL`) {
		t.Errorf("NAMESPACE: %q", lines)
	}
}

func TestLiteralsAndLimits(t *testing.T) {
	dir := newMaildir(t)
	c, done := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	// synchronising literal
	r.send("s1 CREATE {3}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("no continuation: %q", l)
	}
	r.send("foo\r\n")
	mustOK(t, r.until("s1"))
	// non-synchronising literal
	r.send("s2 CREATE {3+}\r\nbar\r\n")
	mustOK(t, r.until("s2"))
	// a refused synchronising literal: the next line is a new command
	r.send("s3 CREATE {99999}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "s3 ") || strings.Contains(l, " OK") {
		t.Fatalf("big sync literal: %q", l)
	}
	mustOK(t, r.cmd("NOOP"))
	// an over-long line is answered and skipped
	r.send("s4 NOOP " + strings.Repeat("x", 20000) + "\r\n")
	if l := r.line(); !strings.HasPrefix(l, "s4 BAD [TOOBIG]") {
		t.Fatalf("long line: %q", l)
	}
	mustOK(t, r.cmd("NOOP"))
	// garbage
	r.send("\r\nlonely\r\nx* NOOP\r\n")
	for _, want := range []string{"lonely BAD", "* BAD"} {
		if l := r.line(); !strings.HasPrefix(l, want) {
			t.Errorf("malformed line: got %q, want %q", l, want)
		}
	}
	for _, bad := range []string{"FETCH", "FETCH x:y FLAGS", "SEARCH FOO", "UID", "UID FROB", "STORE 1 FLAGS", "FETCH 99 FLAGS", "SELECT"} {
		lines := r.cmd("%s", bad)
		if l := last(lines); !strings.Contains(l, " BAD ") && !strings.Contains(l, " NO ") {
			t.Errorf("%s: %q", bad, l)
		} else if strings.Contains(l, "SERVERBUG") {
			t.Errorf("%s: server bug: %q", bad, l)
		}
	}
	// a non-synchronising literal over the limit ends the session
	r.send("s9 CREATE {5000+}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "s9 BAD [TOOBIG]") {
		t.Fatalf("big nonsync literal: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("no BYE: %q", l)
	}
	select {
	case res := <-done:
		if res.reason != "literal too big" || res.in == 0 || res.out == 0 {
			t.Errorf("result %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
}

func TestStoreFlagsInFileNames(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, simpleMsg)
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	mustOK(t, r.cmd("SELECT INBOX"))
	lines := r.cmd("STORE 1 +FLAGS (\\Seen \\Flagged $Important)")
	mustOK(t, lines)
	if !strings.Contains(joined(lines), `FLAGS (\Flagged \Seen $Important \Recent)`) {
		t.Errorf("STORE response: %q", lines)
	}
	names, _ := filepath.Glob(dir + "cur/*:2,FSa")
	if len(names) != 1 {
		t.Errorf("file name with FSa: %v", mustGlob(dir+"cur/*"))
	}
	kw, _ := os.ReadFile(dir + "dovecot-keywords")
	if string(kw) != "0 $Important\n" {
		t.Errorf("dovecot-keywords %q", kw)
	}
	lines = r.cmd("STORE 1 FLAGS (\\Answered)")
	mustOK(t, lines)
	if names, _ := filepath.Glob(dir + "cur/*:2,R"); len(names) != 1 {
		t.Errorf("after FLAGS (\\Answered): %v", mustGlob(dir+"cur/*"))
	}
	mustOK(t, r.cmd("EXAMINE INBOX"))
	lines = r.cmd("STORE 1 +FLAGS (\\Seen)")
	if !strings.Contains(last(lines), "NO [READ-ONLY]") {
		t.Errorf("STORE in EXAMINE: %q", lines)
	}
	lines = r.cmd("COPY 1 NoSuchBox")
	if !strings.Contains(last(lines), "NO [TRYCREATE]") {
		t.Errorf("COPY to missing mailbox: %q", lines)
	}
	mustOK(t, r.cmd("CLOSE"))
	// IMAP4rev2: no \Recent
	mustOK(t, r.cmd("ENABLE IMAP4rev2"))
	mustOK(t, r.cmd("SELECT INBOX"))
	lines = r.cmd("FETCH 1 FLAGS")
	if strings.Contains(joined(lines), "Recent") {
		t.Errorf("\\Recent with IMAP4rev2: %q", lines)
	}
}

func mustGlob(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}

func TestAutologout(t *testing.T) {
	dir := newMaildir(t)
	set := testSettings
	set.idle = 300 * time.Millisecond
	c, done := startSession(t, dir, set)
	r := newRaw(t, c)
	mustOK(t, r.cmd("NOOP"))
	if l := r.line(); !strings.HasPrefix(l, "* BYE Autologout") {
		t.Errorf("got %q", l)
	}
	select {
	case res := <-done:
		if res.reason != "autologout" {
			t.Errorf("reason %q", res.reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
}

func TestCapabilities(t *testing.T) {
	dir := newMaildir(t)
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	lines := r.cmd("CAPABILITY")
	mustOK(t, lines)
	caps := " " + strings.TrimSpace(lines[0]) + " "
	for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "LITERAL+",
		"ENABLE", "UNSELECT", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "STATUS=SIZE", "BINARY",
		"APPENDLIMIT=31457280"} {
		if !strings.Contains(caps, " "+want+" ") {
			t.Errorf("CAPABILITY lacks %s: %s", want, caps)
		}
	}
	if strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH=") {
		t.Errorf("login capabilities after login: %s", caps)
	}
}

// TestLargeMailbox times the phases of `make bench` on 10,000 messages;
// the numbers are logged, not asserted.
func TestLargeMailbox(t *testing.T) {
	const n = 10000
	dir := newMaildir(t)
	start := time.Now()
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("From: Sender %d <s%d@example.test>\nTo: demo@example.test\nSubject: message %d\nDate: Mon, 02 Jan 2006 15:04:05 +0000\nMessage-ID: <%d@example.test>\n\nbody of message %d\n", i, i, i, i, i)
		name := fmt.Sprintf("%d.M%dP1Q%d.test,S=%d,W=%d:2,", 1700000000+i, i, i, len(msg), len(msg)+strings.Count(msg, "\n"))
		if err := os.WriteFile(dir+"cur/"+name, []byte(msg), 0600); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d files in %v", n, time.Since(start))
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	phase := func(name, cmd string) []string {
		start := time.Now()
		lines := r.cmd("%s", cmd)
		mustOK(t, lines)
		t.Logf("%-28s %8.3fs  (%d lines)", name, time.Since(start).Seconds(), len(lines))
		return lines
	}
	phase("SELECT (first: UIDs)", "SELECT INBOX")
	phase("SELECT (unchanged)", "SELECT INBOX")
	if lines := phase("FETCH 1:* (FLAGS ENVELOPE)", "FETCH 1:* (FLAGS ENVELOPE)"); len(lines) != n+1 {
		t.Errorf("FETCH gave %d lines", len(lines))
	}
	phase("FETCH 1:1000 BODY.PEEK[]", "FETCH 1:1000 BODY.PEEK[]")
	phase("SEARCH BODY", "SEARCH BODY \"message 9999\"")
	phase("SEARCH UNSEEN", "SEARCH UNSEEN")
	phase("STORE 1:* +FLAGS (\\Seen)", "STORE 1:* +FLAGS.SILENT (\\Seen)")
	phase("NOOP", "NOOP")
}

func TestReadSettings(t *testing.T) {
	cfg, err := config.Parse(t.TempDir(), []byte("message_size_limit = 2000000\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := readSettings(cfg)
	if s.idle != 30*time.Minute || s.maxLine != 65536 || s.appendLimit != 2000000 || s.maxLiteral != 2000000 {
		t.Errorf("defaults: %+v", s)
	}
}

func TestListVariants(t *testing.T) {
	dir := newMaildir(t)
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	mustOK(t, r.cmd("CREATE Work/2026"))
	mustOK(t, r.cmd("SUBSCRIBE Work/2026"))
	mustOK(t, r.cmd("SUBSCRIBE Gone"))
	cases := []struct{ cmd, want, not string }{
		{`LIST "" ""`, `* LIST (\Noselect) "/" ""`, ""},
		{`LIST "" "%"`, `* LIST (\HasChildren) "/" "Work"`, `Work/2026`},
		{`LIST "Work/" "%"`, `* LIST (\HasNoChildren) "/" "Work/2026"`, `"Sent"`},
		{`LSUB "" "*"`, `* LSUB (\HasNoChildren \Subscribed) "/" "Work/2026"`, `"Work"`},
		{`LIST (SUBSCRIBED) "" "*"`, `* LIST (\NonExistent \Subscribed) "/" "Gone"`, `"Work"`},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"`, `"Work" (CHILDINFO ("SUBSCRIBED"))`, ""},
		{`LIST (SPECIAL-USE) "" "*"`, `\Junk) "/" "Junk"`, `INBOX`},
	}
	for _, tc := range cases {
		lines := r.cmd("%s", tc.cmd)
		mustOK(t, lines)
		all := joined(lines)
		if !strings.Contains(all, tc.want) {
			t.Errorf("%s: lacks %q:\n%s", tc.cmd, tc.want, all)
		}
		if tc.not != "" && strings.Contains(all, tc.not) {
			t.Errorf("%s: has %q:\n%s", tc.cmd, tc.not, all)
		}
	}
	lines := r.cmd("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT)")
	mustOK(t, lines)
	if !regexp.MustCompile(`\* STATUS INBOX \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0 DELETED 0 SIZE 0 RECENT 0\)`).MatchString(joined(lines)) {
		t.Errorf("STATUS: %q", lines)
	}
}

func TestFetchHeaderFieldsAndDates(t *testing.T) {
	dir := newMaildir(t)
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	msg := "From: a@example.test\r\nSubject: dated\r\nX-Other: y\r\n\r\nbody\r\n"
	r.send(fmt.Sprintf("a1 APPEND INBOX (\\Draft) \"05-Mar-2024 10:20:30 +0100\" {%d+}\r\n%s\r\n", len(msg), msg))
	lines := r.until("a1")
	if !regexp.MustCompile(`a1 OK \[APPENDUID \d+ 1\]`).MatchString(last(lines)) {
		t.Fatalf("APPEND: %q", lines)
	}
	mustOK(t, r.cmd("SELECT INBOX"))
	lines = r.cmd("UID FETCH 1 (INTERNALDATE FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[1] RFC822.HEADER)")
	mustOK(t, lines)
	all := joined(lines)
	for _, want := range []string{
		`INTERNALDATE " 5-Mar-2024 09:20:30 +0000"`,
		`FLAGS (\Draft)`,
		"BODY[HEADER.FIELDS (\"SUBJECT\" \"FROM\")] {40}\r\nFrom: a@example.test\r\nSubject: dated\r\n\r\n",
		"BODY[1] {6}\r\nbody\r\n",
		"RFC822.HEADER {52}\r\nFrom: a@example.test\r\nSubject: dated\r\nX-Other: y\r\n\r\n",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("FETCH lacks %q:\n%s", want, all)
		}
	}
	lines = r.cmd("SEARCH SENTBEFORE 1-Jan-2000 OR DRAFT SINCE 6-Mar-2024")
	if !strings.Contains(joined(lines), "* SEARCH 1\r\n") {
		t.Errorf("SEARCH: %q", lines)
	}
}

func TestIdleSeesOtherSession(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, simpleMsg)
	deliver(t, dir, simpleMsg)
	c1, _ := startSession(t, dir, testSettings)
	c2, _ := startSession(t, dir, testSettings)
	a, b := newRaw(t, c1), newRaw(t, c2)
	mustOK(t, a.cmd("SELECT INBOX"))
	mustOK(t, b.cmd("SELECT INBOX"))
	b.send("i1 IDLE\r\n")
	if l := b.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	mustOK(t, a.cmd("STORE 2 +FLAGS.SILENT (\\Flagged)"))
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if l := b.line(); !strings.HasPrefix(l, `* 2 FETCH (UID 2 FLAGS (\Flagged`) {
		t.Fatalf("flags in IDLE: %q", l)
	}
	mustOK(t, a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)"))
	mustOK(t, a.cmd("EXPUNGE"))
	var got []string
	for len(got) == 0 || !strings.Contains(strings.Join(got, ""), "* 1 EXPUNGE") {
		got = append(got, b.line())
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	b.send("DONE\r\n")
	mustOK(t, b.until("i1"))
	lines := b.cmd("FETCH 1 UID")
	if !strings.Contains(joined(lines), "* 1 FETCH (UID 2)") {
		t.Errorf("after EXPUNGE: %q", lines)
	}
}

// TestListMissingParent: a folder whose parent has no directory (Dovecot
// creates "a/b" without "a") still has that parent listed, \Noselect.
func TestListMissingParent(t *testing.T) {
	dir := newMaildir(t)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, ".Archiv.2025", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := startSession(t, dir, testSettings)
	r := newRaw(t, c)
	lines := r.cmd(`LIST "" "%%"`)
	mustOK(t, lines)
	if all := joined(lines); !strings.Contains(all, `* LIST (\Noselect \HasChildren) "/" "Archiv"`) {
		t.Errorf("LIST %%: no \\Noselect parent:\n%s", all)
	}
	lines = r.cmd(`LIST "Archiv/" "%%"`)
	mustOK(t, lines)
	if all := joined(lines); !strings.Contains(all, `"Archiv/2025"`) {
		t.Errorf("LIST Archiv/%%: child missing:\n%s", all)
	}
	if l := last(r.cmd("SELECT Archiv")); !strings.Contains(l, "NO") {
		t.Errorf("SELECT of the missing parent: %q", l)
	}
}
