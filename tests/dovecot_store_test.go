package tests

// Interoperability of Postern's Maildir store (internal/maildir) with a
// real Dovecot and with mutt (issue 5 §2): both sides read what the other
// wrote — dovecot-uidlist (UIDVALIDITY, UIDs, next UID), flags in file
// names, dovecot-keywords, sizes (W= and S=), internal dates (the file's
// mtime), Maildir++ folders in modified UTF-7 and the subscriptions file
// — and neither reuses a UID the other gave.
//
// Dovecot runs as a private instance (dovecot -F -c <conf>, its own
// base_dir, state_dir and log in a temporary directory, IMAP on a free
// port of 127.0.0.1, no TLS, a passwd-file passdb and a static userdb of
// the user vmail). The system's Dovecot, if any, is not touched. Postern's
// side of each test calls the store directly, with vmail's filesystem ids
// (privsep.AsUser), as local and imapd do.
//
// Needs root (Dovecot's master runs as root and its mail processes as
// vmail) and Debian's dovecot-core, dovecot-imapd and mutt (make deps):
// CI has all of them, so a missing one fails rather than skips.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"postern/internal/maildir"
	"postern/internal/privsep"
)

// dvPeer is a running private Dovecot serving one Maildir over IMAP.
type dvPeer struct {
	t        *testing.T
	dir      string // everything of this instance lives below it
	maildir  string // the Maildir (INBOX) Dovecot serves
	addr     string // IMAP, 127.0.0.1:port
	uid, gid int    // vmail: the owner of the Maildir
	cmd      *exec.Cmd
	log      string
}

// dvUser and dvPass are the one account of the private Dovecot.
const (
	dvUser = "demo"
	dvPass = "demo-secret"
)

// dvStart makes a fresh directory (mode 0755, so that vmail can reach the
// Maildir below it) with an empty mail/ owned by vmail, configures Dovecot
// to serve mail/Maildir, starts it and stops it when the test ends. The
// Maildir itself does not exist yet: whoever writes first creates it.
func dvStart(t *testing.T) *dvPeer {
	t.Helper()
	if !isRoot() {
		t.Fatalf("the Dovecot peer needs root (CI runs as root): its master runs as root, its mail processes as vmail")
	}
	if _, err := exec.LookPath("dovecot"); err != nil {
		t.Fatalf("dovecot is not installed (make deps: dovecot-core, dovecot-imapd): %v", err)
	}
	ensureUsers(t)
	uid, gid := lookupIDs(t, "vmail")
	dir, err := os.MkdirTemp("", "postern-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &dvPeer{t: t, dir: dir, maildir: filepath.Join(dir, "mail", "Maildir"), uid: uid, gid: gid,
		log: filepath.Join(dir, "dovecot.log")}
	for _, d := range []string{"mail", "run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "mail"), uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(dvUser+":{PLAIN}"+dvPass+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	p.addr = "127.0.0.1:" + strconv.Itoa(port)
	// The namespace's separator is "/", as Postern's IMAP names have it;
	// on disk both use Maildir++ ("." between levels, mUTF-7).
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:%[3]s
mail_uid = %[4]d
mail_gid = %[5]d
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[5]d home=%[1]s/mail
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[6]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, p.log, p.maildir, uid, gid, port)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	p.cmd = exec.CommandContext(ctx, "dovecot", "-F", "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "dovecot.out"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// A group of its own: at the end the whole instance (master, auth,
	// imap processes) goes, and nothing else.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Cancel = func() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		cancel()
		out.Close()
		t.Fatalf("dovecot: %v", err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		cancel()
		if t.Failed() {
			p.dumpLog()
		}
	})
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			p.dumpLog()
			t.Fatalf("dovecot exited before listening on %s", p.addr)
		default:
		}
		if time.Now().After(end) {
			p.dumpLog()
			t.Fatalf("dovecot does not listen on %s: %v", p.addr, err)
		}
	}
	return p
}

// dumpLog puts Dovecot's output and log into the test log.
func (p *dvPeer) dumpLog() {
	for _, f := range []string{filepath.Join(p.dir, "dovecot.out"), p.log} {
		if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
			p.t.Logf("%s:\n%s", f, b)
		}
	}
}

// login opens an IMAP session with Dovecot.
func (p *dvPeer) login() *imapConn {
	p.t.Helper()
	c := imapDial(p.t, p.addr, nil)
	c.ok("LOGIN %s %s", dvUser, dvPass)
	return c
}

// asVmail runs fn with vmail's filesystem ids, as Postern's local and
// imapd touch a virtual mailbox; it fails the test on error.
func (p *dvPeer) asVmail(what string, fn func() error) {
	p.t.Helper()
	if err := privsep.AsUser(p.uid, p.gid, fn); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// dvMessage is a small message with a Message-ID to recognise it by.
func dvMessage(id, subject string) string {
	return fmt.Sprintf("From: a@example.test\r\nTo: demo@example.test\r\nSubject: %s\r\n"+
		"Message-ID: <%s@example.test>\r\nDate: Thu, 03 Dec 2026 07:00:00 +0000\r\n\r\n"+
		"Body of %s.\r\n", subject, id, id)
}

// dvAppend appends msg with flags over IMAP (LITERAL+) and returns the
// UID Dovecot gave it (APPENDUID, RFC 4315).
func dvAppend(c *imapConn, mailbox, flags, msg string) uint32 {
	c.t.Helper()
	return dvAppendDated(c, mailbox, flags, "", msg)
}

// dvAppendDated is dvAppend with an internal date (IMAP date-time, "" for
// none).
func dvAppendDated(c *imapConn, mailbox, flags, date, msg string) uint32 {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("t%d", c.tag)
	if date != "" {
		date = ` "` + date + `"`
	}
	c.write(fmt.Sprintf("%s APPEND %s (%s)%s {%d+}\r\n%s\r\n", tag, mailbox, flags, date, len(msg), msg))
	r := c.until(tag)
	m := regexp.MustCompile(`^` + tag + ` OK \[APPENDUID \d+ (\d+)\]`).FindStringSubmatch(r[len(r)-1])
	if m == nil {
		c.t.Fatalf("APPEND %s: %q", mailbox, r)
	}
	uid, _ := strconv.ParseUint(m[1], 10, 32)
	return uint32(uid)
}

// dvSelected is what Dovecot reports of a mailbox.
type dvSelected struct {
	uidValidity uint32
	uidNext     uint32
	msgs        map[string]dvMsg // by Message-ID (without <@example.test>)
}

// dvMsg is one message as Dovecot FETCHes it.
type dvMsg struct {
	uid   uint32
	flags []string // sorted, without \Recent
	size  int64    // RFC822.SIZE
	date  time.Time
}

var (
	dvFetchUID   = regexp.MustCompile(`\bUID (\d+)`)
	dvFetchFlags = regexp.MustCompile(`\bFLAGS \(([^)]*)\)`)
	dvFetchMsgID = regexp.MustCompile(`(?i)Message-ID: <([^@>]+)@`)
	dvFetchSize  = regexp.MustCompile(`\bRFC822\.SIZE (\d+)`)
	dvFetchDate  = regexp.MustCompile(`\bINTERNALDATE "([^"]+)"`)
)

// dvSelectAll selects (or, readOnly, examines) a mailbox and fetches every
// message's UID, flags and Message-ID.
func dvSelectAll(c *imapConn, mailbox string, readOnly bool) dvSelected {
	c.t.Helper()
	verb := "SELECT"
	if readOnly {
		verb = "EXAMINE"
	}
	var s dvSelected
	r := c.ok("%s %s", verb, mailbox)
	if m := regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`).FindStringSubmatch(strings.Join(r, "\n")); m != nil {
		v, _ := strconv.ParseUint(m[1], 10, 32)
		s.uidValidity = uint32(v)
	} else {
		c.t.Fatalf("%s %s: no UIDVALIDITY in %q", verb, mailbox, r)
	}
	if m := regexp.MustCompile(`\[UIDNEXT (\d+)\]`).FindStringSubmatch(strings.Join(r, "\n")); m != nil {
		v, _ := strconv.ParseUint(m[1], 10, 32)
		s.uidNext = uint32(v)
	}
	s.msgs = dvFetch(c)
	return s
}

// dvFetch fetches UID, FLAGS, RFC822.SIZE, INTERNALDATE and Message-ID
// of every message of the selected mailbox.
func dvFetch(c *imapConn) map[string]dvMsg {
	c.t.Helper()
	out := map[string]dvMsg{}
	for _, l := range c.ok("UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])") {
		if !regexp.MustCompile(`^\* \d+ FETCH `).MatchString(l) {
			continue
		}
		mu, mf, mi := dvFetchUID.FindStringSubmatch(l), dvFetchFlags.FindStringSubmatch(l), dvFetchMsgID.FindStringSubmatch(l)
		ms, md := dvFetchSize.FindStringSubmatch(l), dvFetchDate.FindStringSubmatch(l)
		if mu == nil || mf == nil || mi == nil || ms == nil || md == nil {
			c.t.Fatalf("FETCH line %q", l)
		}
		size, _ := strconv.ParseInt(ms[1], 10, 64)
		date, err := time.Parse("_2-Jan-2006 15:04:05 -0700", md[1])
		if err != nil {
			c.t.Fatalf("FETCH line %q: INTERNALDATE: %v", l, err)
		}
		uid, _ := strconv.ParseUint(mu[1], 10, 32)
		var flags []string
		for _, f := range strings.Fields(mf[1]) {
			if f != `\Recent` {
				flags = append(flags, f)
			}
		}
		slices.Sort(flags)
		out[mi[1]] = dvMsg{uid: uint32(uid), flags: flags, size: size, date: date}
	}
	return out
}

// dvStoreMsg is one message as Postern's store sees it.
type dvStoreMsg struct {
	msg   maildir.Message
	flags []string // IMAP flags and keywords, sorted
}

// storeView opens a folder of the store with vmail's ids, syncs it
// (takeNew as given) and returns UIDVALIDITY, next UID and the messages
// by Message-ID, their flags in IMAP form.
func (p *dvPeer) storeView(folder string, takeNew bool) (uint32, uint32, map[string]dvStoreMsg) {
	p.t.Helper()
	var uv, next uint32
	out := map[string]dvStoreMsg{}
	p.asVmail("store view "+folder, func() error {
		st, err := maildir.OpenStore(p.maildir, false)
		if err != nil {
			return err
		}
		f, err := st.Open(folder)
		if err != nil {
			return err
		}
		defer f.Close()
		msgs, err := f.Sync(takeNew)
		if err != nil {
			return err
		}
		kw, err := f.Keywords()
		if err != nil {
			return err
		}
		uv, next = f.UIDValidity(), f.UIDNext()
		for _, m := range msgs {
			fh, err := f.Open(m)
			if err != nil {
				return err
			}
			b := make([]byte, 4096)
			n, _ := fh.Read(b)
			fh.Close()
			id := dvFetchMsgID.FindSubmatch(b[:n])
			if id == nil {
				return fmt.Errorf("message %s has no Message-ID: %q", m.Name, b[:n])
			}
			out[string(id[1])] = dvStoreMsg{msg: m, flags: dvIMAPFlags(m.Flags, kw)}
		}
		return nil
	})
	return uv, next, out
}

// dvSame compares a message as Dovecot and as Postern see it and returns
// the differences, "" if none.
func dvSame(g dvMsg, v dvStoreMsg) string {
	var d []string
	if g.uid != v.msg.UID {
		d = append(d, fmt.Sprintf("UID %d vs %d", g.uid, v.msg.UID))
	}
	if !slices.Equal(g.flags, v.flags) {
		d = append(d, fmt.Sprintf("flags %q vs %q", g.flags, v.flags))
	}
	if g.size != v.msg.Size {
		d = append(d, fmt.Sprintf("size %d vs %d", g.size, v.msg.Size))
	}
	if !g.date.Equal(v.msg.Date.Truncate(time.Second)) {
		d = append(d, fmt.Sprintf("internal date %v vs %v", g.date, v.msg.Date))
	}
	return strings.Join(d, ", ")
}

// dvIMAPFlags turns maildir info letters into IMAP flags and keywords.
func dvIMAPFlags(letters string, kw []string) []string {
	sys := map[byte]string{'D': `\Draft`, 'F': `\Flagged`, 'R': `\Answered`, 'S': `\Seen`, 'T': `\Deleted`}
	var out []string
	for i := 0; i < len(letters); i++ {
		c := letters[i]
		if n, ok := sys[c]; ok {
			out = append(out, n)
		} else if c >= 'a' && c <= 'z' {
			out = append(out, maildir.KeywordName(kw, c))
		}
	}
	slices.Sort(out)
	return out
}

// dvDecodeName decodes a mailbox name of a LIST/LSUB line (quoted or an
// atom, mUTF-7, "/" between levels) into UTF-8.
func dvDecodeName(t *testing.T, raw string) string {
	t.Helper()
	if uq, err := strconv.Unquote(raw); err == nil {
		raw = uq
	}
	comps := strings.Split(raw, "/")
	for i, c := range comps {
		u, err := maildir.DecodeMUTF7(c)
		if err != nil {
			t.Fatalf("mailbox name %q: %v", raw, err)
		}
		comps[i] = u
	}
	return strings.Join(comps, "/")
}

// dvList runs LIST or LSUB "" "*" and returns the names, decoded, sorted.
// Names LIST shows only because they have children (\NonExistent or
// \Noselect: Maildir++ needs no directory for a parent, and Dovecot makes
// none) are left out: Store.Folders lists folder directories only.
func dvList(c *imapConn, verb string) []string {
	c.t.Helper()
	re := regexp.MustCompile(`^\* ` + verb + ` \(([^)]*)\) (?:"/"|NIL) (.+)$`)
	var names []string
	for _, l := range c.ok(`%s "" "*"`, verb) {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if verb == "LIST" && (strings.Contains(m[1], `\NonExistent`) || strings.Contains(m[1], `\Noselect`)) {
			continue
		}
		names = append(names, dvDecodeName(c.t, m[2]))
	}
	slices.Sort(names)
	return names
}

// dvUIDList reads the uid list of a folder directory, for failure
// messages.
func dvUIDList(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "dovecot-uidlist"))
	return string(b)
}

// TestDovecotReadsPosternStore: Postern delivers five messages, numbers
// them, sets flags and a keyword, makes folders (one with a non-ASCII
// name, two levels) and subscribes to them; Dovecot then reports the same
// UIDVALIDITY, UIDs, flags, keyword, folder names and subscriptions, and
// after Dovecot has had the mailbox, Postern still agrees with it.
func TestDovecotReadsPosternStore(t *testing.T) {
	p := dvStart(t)
	ids := []string{"p1", "p2", "p3", "p4", "p5"}
	p.asVmail("postern writes", func() error {
		if err := os.Mkdir(p.maildir, 0o700); err != nil {
			return err
		}
		d := &maildir.Delivery{Dir: p.maildir, Create: true, Hostname: "postern.test"}
		for _, id := range ids {
			if _, err := d.Deliver([]byte("Return-Path: <a@example.test>\n"), strings.NewReader(dvMessage(id, "subject "+id))); err != nil {
				return err
			}
		}
		st, err := maildir.OpenStore(p.maildir, false)
		if err != nil {
			return err
		}
		f, err := st.Open("INBOX")
		if err != nil {
			return err
		}
		defer f.Close()
		msgs, err := f.Sync(false)
		if err != nil {
			return err
		}
		if len(msgs) != 5 {
			return fmt.Errorf("Sync: %d messages, want 5", len(msgs))
		}
		for i, m := range msgs {
			if m.UID != uint32(i+1) {
				return fmt.Errorf("Sync: message %d has UID %d", i, m.UID)
			}
		}
		k, err := f.KeywordLetter("$Label1", true)
		if err != nil {
			return err
		}
		// 1: Seen; 2: Flagged; 3: Seen and $Label1; 4: Answered and
		// $Label1; 5: none (and still in new/).
		sets := []string{"S", "F", "S" + string(k), "R" + string(k)}
		for i, fl := range sets {
			if _, err := f.SetFlags(msgs[i], fl); err != nil {
				return err
			}
		}
		for _, name := range []string{"Sent", "Entwürfe/Alt", "Q&A"} {
			if err := st.Create(name); err != nil {
				return err
			}
			if err := st.Subscribe(name, true); err != nil {
				return err
			}
		}
		return nil
	})
	uv, next, want := p.storeView("INBOX", false)
	if next != 6 {
		t.Errorf("Postern's next UID %d, want 6", next)
	}

	c := p.login()
	got := dvSelectAll(c, "INBOX", true)
	if got.uidValidity != uv {
		t.Errorf("Dovecot UIDVALIDITY %d, Postern's %d", got.uidValidity, uv)
	}
	if got.uidNext != 6 {
		t.Errorf("Dovecot UIDNEXT %d, want 6", got.uidNext)
	}
	wantFlags := map[string][]string{
		"p1": {`\Seen`}, "p2": {`\Flagged`}, "p3": {"$Label1", `\Seen`}, "p4": {"$Label1", `\Answered`}, "p5": nil,
	}
	for i, id := range ids {
		g, ok := got.msgs[id]
		w := want[id]
		switch {
		case !ok:
			t.Errorf("Dovecot lacks message %s", id)
		case g.uid != uint32(i+1) || w.msg.UID != uint32(i+1):
			t.Errorf("message %s: Dovecot UID %d, Postern UID %d, want %d", id, g.uid, w.msg.UID, i+1)
		case !slices.Equal(g.flags, wantFlags[id]) || !slices.Equal(w.flags, wantFlags[id]):
			t.Errorf("message %s: Dovecot flags %q, Postern flags %q, want %q", id, g.flags, w.flags, wantFlags[id])
		}
	}
	if len(got.msgs) != 5 {
		t.Errorf("Dovecot has %d messages: %v", len(got.msgs), got.msgs)
	}
	if r := c.ok("EXAMINE INBOX"); !strings.Contains(strings.Join(r, "\n"), "$Label1") {
		t.Errorf("Dovecot's FLAGS lack the keyword $Label1: %q", r)
	}
	wantList := []string{"Entwürfe", "Entwürfe/Alt", "INBOX", "Q&A", "Sent"}
	if l := dvList(c, "LIST"); !slices.Equal(l, wantList) {
		t.Errorf("Dovecot LIST %q, want %q", l, wantList)
	}
	wantSubs := []string{"Entwürfe/Alt", "Q&A", "Sent"}
	if l := dvList(c, "LSUB"); !slices.Equal(l, wantSubs) {
		t.Errorf("Dovecot LSUB %q, want %q", l, wantSubs)
	}
	// Selecting read-write takes p5 from new/ to cur/ (Dovecot's own
	// name) and writes its own uid list and indexes.
	got2 := dvSelectAll(c, "INBOX", false)
	c.ok("LOGOUT")
	if t.Failed() {
		t.Logf("uid list:\n%s", dvUIDList(p.maildir))
	}

	uv2, next2, after := p.storeView("INBOX", true)
	if uv2 != uv || next2 != 6 {
		t.Errorf("after Dovecot: Postern UIDVALIDITY %d next %d, want %d and 6\n%s", uv2, next2, uv, dvUIDList(p.maildir))
	}
	for id, g := range got2.msgs {
		if d := dvSame(g, after[id]); d != "" {
			t.Errorf("after Dovecot: message %s: Dovecot vs Postern: %s", id, d)
		}
	}
	var folders, subs []string
	p.asVmail("postern folders", func() error {
		st, err := maildir.OpenStore(p.maildir, false)
		if err != nil {
			return err
		}
		if folders, err = st.Folders(); err != nil {
			return err
		}
		subs, err = st.Subscriptions()
		return err
	})
	slices.Sort(folders)
	if !slices.Equal(folders, wantList) || !slices.Equal(subs, wantSubs) {
		t.Errorf("after Dovecot: Postern folders %q subscriptions %q", folders, subs)
	}
}

// TestPosternReadsDovecotStore: Dovecot makes the Maildir, appends three
// messages, stores flags and keywords, makes a folder (non-ASCII, two
// levels) and subscribes; Postern's store then reads the same
// UIDVALIDITY, UIDs, flags, keywords, folder names and subscriptions.
func TestPosternReadsDovecotStore(t *testing.T) {
	p := dvStart(t)
	c := p.login()
	uids := map[string]uint32{}
	uids["d1"] = dvAppend(c, "INBOX", `\Seen`, dvMessage("d1", "first"))
	uids["d2"] = dvAppend(c, "INBOX", "", dvMessage("d2", "second"))
	uids["d3"] = dvAppend(c, "INBOX", `\Draft Projekt`, dvMessage("d3", "third"))
	// An internal date given to APPEND, far from the time of saving.
	uids["d5"] = dvAppendDated(c, "INBOX", `\Seen`, "01-Jan-2020 10:00:00 +0000", dvMessage("d5", "dated"))
	c.ok("SELECT INBOX")
	c.ok(`UID STORE %d +FLAGS (\Flagged $Label2)`, uids["d2"])
	c.ok(`UID STORE %d +FLAGS (\Answered $Label2)`, uids["d1"])
	c.ok(`UID STORE %d -FLAGS (Projekt)`, uids["d3"])
	c.ok(`UID STORE %d +FLAGS (Projekt)`, uids["d3"])
	c.ok(`CREATE "%s"`, "Entw&APw-rfe/Alt")
	c.ok(`CREATE Archiv`)
	c.ok(`SUBSCRIBE "%s"`, "Entw&APw-rfe/Alt")
	c.ok(`SUBSCRIBE Archiv`)
	dvAppend(c, `"Entw&APw-rfe/Alt"`, `\Seen`, dvMessage("d4", "in a folder"))
	got := dvSelectAll(c, "INBOX", true)
	sub := dvSelectAll(c, `"Entw&APw-rfe/Alt"`, true)
	list, lsub := dvList(c, "LIST"), dvList(c, "LSUB")
	c.ok("LOGOUT")
	for id, u := range uids {
		if got.msgs[id].uid != u {
			t.Fatalf("Dovecot: %s has UID %d, APPENDUID said %d", id, got.msgs[id].uid, u)
		}
	}

	uv, next, view := p.storeView("INBOX", false)
	if uv != got.uidValidity || next != got.uidNext {
		t.Errorf("Postern UIDVALIDITY %d next %d, Dovecot %d and %d\n%s", uv, next, got.uidValidity, got.uidNext, dvUIDList(p.maildir))
	}
	if len(view) != len(got.msgs) {
		t.Errorf("Postern sees %d messages, Dovecot %d", len(view), len(got.msgs))
	}
	for id, g := range got.msgs {
		v, ok := view[id]
		if d := dvSame(g, v); !ok || d != "" {
			t.Errorf("message %s (Postern has it: %v): Dovecot vs Postern: %s", id, ok, d)
		}
	}
	want := map[string][]string{"d1": {"$Label2", `\Answered`, `\Seen`}, "d2": {"$Label2", `\Flagged`}, "d3": {"Projekt", `\Draft`}}
	for id, w := range want {
		if !slices.Equal(got.msgs[id].flags, w) {
			t.Errorf("message %s: Dovecot flags %q, want %q", id, got.msgs[id].flags, w)
		}
	}
	suv, _, sview := p.storeView("Entwürfe/Alt", false)
	if suv != sub.uidValidity || len(sview) != 1 || sview["d4"].msg.UID != sub.msgs["d4"].uid ||
		!slices.Equal(sview["d4"].flags, []string{`\Seen`}) {
		t.Errorf("folder Entwürfe/Alt: Postern UIDVALIDITY %d messages %v, Dovecot %d %v", suv, sview, sub.uidValidity, sub.msgs)
	}
	var folders, subs []string
	p.asVmail("postern folders", func() error {
		st, err := maildir.OpenStore(p.maildir, false)
		if err != nil {
			return err
		}
		if folders, err = st.Folders(); err != nil {
			return err
		}
		subs, err = st.Subscriptions()
		return err
	})
	slices.Sort(folders)
	if !slices.Equal(folders, list) {
		t.Errorf("Postern folders %q, Dovecot LIST %q", folders, list)
	}
	if !slices.Equal(subs, lsub) || !slices.Equal(lsub, []string{"Archiv", "Entwürfe/Alt"}) {
		t.Errorf("Postern subscriptions %q, Dovecot LSUB %q", subs, lsub)
	}
	if t.Failed() {
		t.Logf("uid list:\n%s", dvUIDList(p.maildir))
		b, _ := os.ReadFile(filepath.Join(p.maildir, "subscriptions"))
		t.Logf("subscriptions:\n%q", b)
	}
}

// TestDovecotPosternConcurrent: Dovecot has INBOX selected while Postern
// delivers and appends, and Postern syncs while Dovecot appends and
// expunges. UIDs go on from wherever the other side left them: none is
// given twice, not even the UID of a message expunged last.
func TestDovecotPosternConcurrent(t *testing.T) {
	p := dvStart(t)
	c := p.login()
	// Dovecot makes the Maildir; Postern delivers into it.
	u1 := dvAppend(c, "INBOX", "", dvMessage("c1", "from dovecot"))
	c.ok("SELECT INBOX")

	var st *maildir.Store
	deliver := func(id string) {
		t.Helper()
		p.asVmail("deliver "+id, func() error {
			d := &maildir.Delivery{Dir: p.maildir, Hostname: "postern.test"}
			_, err := d.Deliver(nil, strings.NewReader(dvMessage(id, "from postern")))
			return err
		})
	}
	appendP := func(id, flags string) uint32 {
		t.Helper()
		var uid uint32
		p.asVmail("append "+id, func() error {
			var err error
			if st == nil {
				if st, err = maildir.OpenStore(p.maildir, false); err != nil {
					return err
				}
			}
			f, err := st.Open("INBOX")
			if err != nil {
				return err
			}
			defer f.Close()
			// An internal date of the past, which Dovecot must see too.
			uid, err = f.Append(strings.NewReader(dvMessage(id, "appended by postern")), flags, time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC), 1<<20)
			return err
		})
		return uid
	}
	uidOf := func(view map[string]dvStoreMsg, id string) uint32 { return view[id].msg.UID }

	// Postern delivers (new/) and appends (cur/) while Dovecot watches.
	deliver("c2")
	_, _, v := p.storeView("INBOX", false)
	u2 := uidOf(v, "c2")
	u3 := appendP("c3", "S")
	if u1 != 1 || u2 != 2 || u3 != 3 {
		t.Errorf("UIDs %d %d %d, want 1 2 3\n%s", u1, u2, u3, dvUIDList(p.maildir))
	}
	if !imapSees(c, `^\* 3 EXISTS$`) {
		t.Errorf("Dovecot's session did not see Postern's two messages")
	}
	m := dvFetch(c)
	if m["c2"].uid != u2 || m["c3"].uid != u3 || !slices.Equal(m["c3"].flags, []string{`\Seen`}) {
		t.Errorf("Dovecot sees %v, want c2=%d c3=%d (\\Seen)", m, u2, u3)
	}

	// Dovecot appends, then expunges the newest message.
	u4 := dvAppend(c, "INBOX", "", dvMessage("c4", "from dovecot"))
	u5 := dvAppend(c, "INBOX", `\Flagged`, dvMessage("c5", "from dovecot"))
	if u4 != 4 || u5 != 5 {
		t.Errorf("Dovecot gave UIDs %d %d after Postern's 3, want 4 5", u4, u5)
	}
	_, next, v := p.storeView("INBOX", false)
	if uidOf(v, "c4") != u4 || uidOf(v, "c5") != u5 || next != 6 {
		t.Errorf("Postern: c4=%d c5=%d next %d, want %d %d 6\n%s", uidOf(v, "c4"), uidOf(v, "c5"), next, u4, u5, dvUIDList(p.maildir))
	}
	c.ok(`UID STORE %d +FLAGS.SILENT (\Deleted)`, u5)
	c.ok("EXPUNGE")

	// Postern must not give 5 again.
	deliver("c6")
	_, next, v = p.storeView("INBOX", false)
	if u := uidOf(v, "c6"); u != 6 || next != 7 {
		t.Errorf("Postern's delivery after Dovecot expunged UID 5 got UID %d (next %d), want 6 (next 7)\n%s", u, next, dvUIDList(p.maildir))
	}
	if _, ok := v["c5"]; ok {
		t.Errorf("Postern still sees the message Dovecot expunged")
	}
	u7 := appendP("c7", "")
	if u7 != 7 {
		t.Errorf("Postern's append got UID %d, want 7", u7)
	}
	// c1 c2 c3 c4 c6 c7: Dovecot's session must know c7 before it can
	// see it go.
	if !imapSees(c, `^\* 6 EXISTS$`) {
		t.Errorf("Dovecot's session did not see Postern's c6 and c7")
	}

	// Postern expunges its newest; Dovecot must not give 7 again.
	p.asVmail("expunge c7", func() error {
		f, err := st.Open("INBOX")
		if err != nil {
			return err
		}
		defer f.Close()
		msgs, err := f.Sync(false)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.UID == u7 {
				if err := f.Expunge(m); err != nil {
					return err
				}
			}
		}
		_, err = f.Sync(false)
		return err
	})
	if !imapSees(c, `^\* \d+ EXPUNGE$`) {
		t.Errorf("Dovecot's session did not see Postern's expunge")
	}
	if u8 := dvAppend(c, "INBOX", "", dvMessage("c8", "from dovecot")); u8 != 8 {
		t.Errorf("Dovecot's append after Postern expunged UID 7 got UID %d, want 8\n%s", u8, dvUIDList(p.maildir))
	}

	// Keywords both ways: Dovecot makes the keyword file, Postern adds a
	// keyword to it and sets it, and Dovecot's session sees it.
	c.ok(`UID STORE %d +FLAGS ($FromDovecot)`, u1)
	_, _, v = p.storeView("INBOX", false)
	if !slices.Contains(v["c1"].flags, "$FromDovecot") {
		t.Errorf("Postern: c1 flags %q lack Dovecot's keyword", v["c1"].flags)
	}
	p.asVmail("keyword", func() error {
		f, err := st.Open("INBOX")
		if err != nil {
			return err
		}
		defer f.Close()
		k, err := f.KeywordLetter("$FromPostern", true)
		if err != nil {
			return err
		}
		old, err := f.KeywordLetter("$fromdovecot", false)
		if err != nil {
			return fmt.Errorf("Dovecot's keyword, looked up in another case: %w", err)
		}
		if k == old {
			return fmt.Errorf("new keyword got Dovecot's letter %c", k)
		}
		_, err = f.SetFlags(v["c2"].msg, v["c2"].msg.Flags+string(k))
		return err
	})
	if !imapSees(c, `^\* \d+ FETCH \(.*FLAGS \([^)]*\$FromPostern`) {
		t.Errorf("Dovecot's session did not see Postern's keyword\n%s", dvUIDList(p.maildir))
	}
	m = dvFetch(c)
	if !slices.Contains(m["c2"].flags, "$FromPostern") || !slices.Contains(m["c1"].flags, "$FromDovecot") {
		t.Errorf("Dovecot: c1 flags %q, c2 flags %q", m["c1"].flags, m["c2"].flags)
	}
	c.ok("LOGOUT")
	_, next, v = p.storeView("INBOX", true)
	if next != 9 || len(v) != len(m) {
		t.Errorf("end: Postern next %d with %d messages, Dovecot %d messages\n%s", next, len(v), len(m), dvUIDList(p.maildir))
	}
	for id, g := range m {
		if d := dvSame(g, v[id]); d != "" {
			t.Errorf("end: message %s: Dovecot vs Postern: %s", id, d)
		}
	}
	// And Dovecot, in a fresh session, agrees with the uid list as
	// Postern left it.
	c = p.login()
	got := dvSelectAll(c, "INBOX", true)
	c.ok("LOGOUT")
	for id, g := range got.msgs {
		if v[id].msg.UID != g.uid {
			t.Errorf("fresh Dovecot session: message %s UID %d, Postern %d", id, g.uid, v[id].msg.UID)
		}
	}
	if got.uidNext != 9 {
		t.Errorf("fresh Dovecot session: UIDNEXT %d, want 9", got.uidNext)
	}
}

// TestDovecotPosternParallel: Postern appends and delivers (and syncs)
// while Dovecot appends over IMAP, all at once. Both take the uid list's
// dotlock (dovecot-uidlist.lock), so every message gets one UID, no UID
// is given twice, and both end with the same numbering.
func TestDovecotPosternParallel(t *testing.T) {
	p := dvStart(t)
	c := p.login()
	dvAppend(c, "INBOX", "", dvMessage("x0", "first")) // Dovecot makes the Maildir
	c.ok("SELECT INBOX")
	const n = 25
	errc := make(chan error, 1)
	go func() {
		errc <- privsep.AsUser(p.uid, p.gid, func() error {
			st, err := maildir.OpenStore(p.maildir, false)
			if err != nil {
				return err
			}
			f, err := st.Open("INBOX")
			if err != nil {
				return err
			}
			defer f.Close()
			d := &maildir.Delivery{Dir: p.maildir, Hostname: "postern.test"}
			for i := range n {
				if _, err := f.Append(strings.NewReader(dvMessage(fmt.Sprintf("pa%d", i), "append")), "", time.Now(), 1<<20); err != nil {
					return err
				}
				if _, err := d.Deliver(nil, strings.NewReader(dvMessage(fmt.Sprintf("pd%d", i), "deliver"))); err != nil {
					return err
				}
				if _, err := f.Sync(i%2 == 0); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	dvUIDs := map[string]uint32{}
	for i := range n {
		id := fmt.Sprintf("dv%d", i)
		dvUIDs[id] = dvAppend(c, "INBOX", "", dvMessage(id, "dovecot"))
		if i%5 == 0 {
			c.ok("NOOP")
		}
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Postern's side: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("Postern's side did not finish")
	}
	c.ok("NOOP")
	m := dvFetch(c)
	c.ok("LOGOUT")
	_, next, v := p.storeView("INBOX", true)
	if len(m) != 1+3*n || len(v) != 1+3*n {
		t.Errorf("Dovecot has %d messages, Postern %d, want %d\n%s", len(m), len(v), 1+3*n, dvUIDList(p.maildir))
	}
	seen := map[uint32]string{}
	for id, g := range m {
		if other, dup := seen[g.uid]; dup {
			t.Errorf("UID %d given to %s and %s", g.uid, other, id)
		}
		seen[g.uid] = id
		if d := dvSame(g, v[id]); d != "" {
			t.Errorf("message %s: Dovecot vs Postern: %s", id, d)
		}
		if u, ok := dvUIDs[id]; ok && u != g.uid {
			t.Errorf("message %s: APPENDUID %d, later UID %d", id, u, g.uid)
		}
		if g.uid >= next {
			t.Errorf("message %s: UID %d not below Postern's next UID %d", id, g.uid, next)
		}
	}
}

// TestDovecotUIDValidity: Postern and Dovecot share the store's
// dovecot-uidvalidity, so that every new folder's UIDVALIDITY is above
// every one given before by either, even within one second: a folder
// deleted and made again must never get its old UIDVALIDITY back.
func TestDovecotUIDValidity(t *testing.T) {
	p := dvStart(t)
	var order []string
	vals := map[string]uint32{}
	postern := func(names ...string) {
		t.Helper()
		p.asVmail("postern folders", func() error {
			st, err := maildir.OpenStore(p.maildir, true)
			if err != nil {
				return err
			}
			for _, n := range names {
				if n != "INBOX" {
					if err := st.Create(n); err != nil {
						return err
					}
				}
				f, err := st.Open(n)
				if err != nil {
					return err
				}
				vals["postern "+n] = f.UIDValidity()
				order = append(order, "postern "+n)
				f.Close()
			}
			return nil
		})
	}
	dovecot := func(names ...string) {
		t.Helper()
		c := p.login()
		for _, n := range names {
			if n != "INBOX" {
				c.ok("CREATE %s", n)
			}
			vals["dovecot "+n] = dvSelectAll(c, n, true).uidValidity
			order = append(order, "dovecot "+n)
		}
		c.ok("LOGOUT")
	}
	postern("INBOX", "A", "B", "C")
	dovecot("D", "E")
	postern("F", "G")
	dovecot("H")
	for i := 1; i < len(order); i++ {
		if vals[order[i]] <= vals[order[i-1]] {
			t.Errorf("%s has UIDVALIDITY %d, not above %s's %d", order[i], vals[order[i]], order[i-1], vals[order[i-1]])
		}
	}
	if t.Failed() {
		out, _ := exec.Command("sh", "-c", "ls "+p.maildir+"; cat "+p.maildir+"/dovecot-uidvalidity").CombinedOutput()
		t.Logf("%s", out)
	}
}

// TestMuttReadsPosternMaildir: mutt, read-only, opens a Maildir that
// Postern's store wrote (delivered, numbered, flagged) and shows the
// message, in a pseudo-terminal with cat as the pager; then mutt changes
// the message's flags and Postern reads them, the UID unchanged.
func TestMuttReadsPosternMaildir(t *testing.T) {
	if _, err := exec.LookPath("mutt"); err != nil {
		t.Fatalf("mutt is not installed (make deps): %v", err)
	}
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	d := &maildir.Delivery{Dir: md, Create: true, Hostname: "postern.test"}
	if _, err := d.Deliver(nil, strings.NewReader(dvMessage("m1", "mutt reads this subject"))); err != nil {
		t.Fatal(err)
	}
	st, err := maildir.OpenStore(md, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := st.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := f.Sync(true)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Sync: %v %v", msgs, err)
	}
	if _, err := f.SetFlags(msgs[0], "F"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rc := filepath.Join(dir, "muttrc")
	// prompt_after=no: after an external pager mutt would wait for a key
	// ("Command: "), which a pushed function does not answer.
	conf := fmt.Sprintf(`set folder="%s"
set spoolfile="%s"
set pager="cat"
set prompt_after=no
set wait_key=no
set quit=yes
set move=no
set mark_old=no
set header_cache=""
set mbox_type=Maildir
`, dir, md)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// Limit the index to flagged messages first: the message shows only
	// if mutt read the F in its name.
	out := dvMutt(t, dir, fmt.Sprintf("mutt -n -R -F %s -f %s -e 'push <limit>~F<enter><display-message><exit>'", rc, md))
	if !strings.Contains(out, "Body of m1.") {
		t.Fatalf("mutt did not show the message:\n%s", out)
	}

	// Now mutt writes: it reads the message (S) and takes its flag away
	// (F), and saves on quitting. Postern sees the same message, the same
	// UID, the new flags.
	dvMutt(t, dir, fmt.Sprintf("mutt -n -F %s -f %s -e 'push <display-message><flag-message><sync-mailbox><quit>'", rc, md))
	f, err = st.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, err := f.Sync(false)
	if err != nil || len(after) != 1 || after[0].UID != msgs[0].UID || after[0].Key != msgs[0].Key || after[0].Flags != "S" {
		t.Fatalf("after mutt: %+v %v, want UID %d key %s flags S", after, err, msgs[0].UID, msgs[0].Key)
	}
}

// dvMutt runs a mutt command line in a pseudo-terminal (mutt needs one)
// for at most 30 seconds and returns what it wrote.
func dvMutt(t *testing.T, home, cmdline string) string {
	t.Helper()
	const muttTimeout = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), muttTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qfec", cmdline, "/dev/null")
	cmd.Env = append(os.Environ(), "HOME="+home, "TERM=xterm", "COLUMNS=120", "LINES=40")
	// script's input stays open (and empty) while mutt runs: at its end
	// script would pass an end-of-file on to mutt as a key.
	stdin, keep, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	defer stdin.Close()
	cmd.Stdin = stdin
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("mutt did not exit within %v\n%s", muttTimeout, out)
	}
	if err != nil {
		t.Fatalf("mutt: %v\n%s", err, out)
	}
	return string(out)
}
