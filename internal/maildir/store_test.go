package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newStore makes an empty Maildir in a temporary directory.
func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "Maildir"), true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func deliver(t testing.TB, dir, body string) string {
	t.Helper()
	name, err := (&Delivery{Dir: dir, Hostname: "h", Create: true}).Deliver(nil, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func openFolder(t testing.TB, s *Store, name string) *Folder {
	t.Helper()
	f, err := s.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustSync(t testing.TB, f *Folder, takeNew bool) []Message {
	t.Helper()
	msgs, err := f.Sync(takeNew)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestRoundTrip(t *testing.T) {
	s := newStore(t)
	bodies := []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\n\nsecond\n", ""}
	for _, b := range bodies {
		deliver(t, s.Root(), b)
	}
	f := openFolder(t, s, "inbox")
	if f.Name() != "INBOX" || f.Dir() != s.Root() || f.UIDValidity() == 0 || f.UIDNext() != 1 {
		t.Fatalf("folder %s %s V%d N%d", f.Name(), f.Dir(), f.UIDValidity(), f.UIDNext())
	}
	msgs := mustSync(t, f, false)
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		if m.UID != uint32(i+1) || !strings.HasPrefix(m.Name, "new/") || m.Recent || m.Flags != "" {
			t.Fatalf("message %d: %+v", i, m)
		}
		want := crlfOf([]byte(strings.ReplaceAll(bodies[i], "\r\n", "\n")))
		if m.Size != int64(len(want)) {
			t.Fatalf("message %d: size %d, want %d", i, m.Size, len(want))
		}
		if time.Since(m.Date) > time.Minute {
			t.Fatalf("date %v", m.Date)
		}
		fh, err := f.Open(m)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(NewCRLFReader(fh))
		fh.Close()
		if string(got) != string(want) {
			t.Fatalf("message %d: %q, want %q", i, got, want)
		}
	}
	msgs = mustSync(t, f, true)
	for _, m := range msgs {
		if !m.Recent || !strings.HasPrefix(m.Name, "cur/") || !strings.HasSuffix(m.Name, ":2,") {
			t.Fatalf("after takeNew: %+v", m)
		}
	}
	msgs2 := mustSync(t, f, true)
	for i, m := range msgs2 {
		if m.Recent || m.UID != msgs[i].UID {
			t.Fatalf("second takeNew: %+v", m)
		}
	}
	if f.UIDNext() != 4 {
		t.Fatalf("UIDNext %d", f.UIDNext())
	}
	// An open on a stale name finds the file by key.
	m, err := f.SetFlags(msgs[0], "SF")
	if err != nil || m.Flags != "FS" {
		t.Fatalf("SetFlags: %+v %v", m, err)
	}
	fh, err := f.Open(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if err := f.Expunge(msgs[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.Expunge(msgs[0]); err != nil {
		t.Fatalf("second expunge: %v", err)
	}
	if _, err := f.Open(msgs[0]); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("open expunged: %v", err)
	}
	if got := mustSync(t, f, false); len(got) != 2 || got[0].UID != 2 {
		t.Fatalf("after expunge: %+v", got)
	}
}

func TestUIDsStable(t *testing.T) {
	s := newStore(t)
	for i := range 5 {
		deliver(t, s.Root(), fmt.Sprint("m", i))
	}
	f := openFolder(t, s, "INBOX")
	first := mustSync(t, f, true)
	v := f.UIDValidity()
	f.Close()
	deliver(t, s.Root(), "later")

	s2, err := OpenStore(s.Root(), false)
	if err != nil {
		t.Fatal(err)
	}
	f2 := openFolder(t, s2, "INBOX")
	second := mustSync(t, f2, false)
	if f2.UIDValidity() != v || len(second) != 6 {
		t.Fatalf("reopen: V%d (was %d), %d messages", f2.UIDValidity(), v, len(second))
	}
	for i := range first {
		if first[i].Key != second[i].Key || first[i].UID != second[i].UID {
			t.Fatalf("UID changed: %+v vs %+v", first[i], second[i])
		}
	}
	if second[5].UID != 6 {
		t.Fatalf("new message UID %d", second[5].UID)
	}
	// Expunge the newest; its UID is never given again.
	f2.Expunge(second[5])
	mustSync(t, f2, false)
	deliver(t, s.Root(), "after")
	third := mustSync(t, f2, false)
	if third[len(third)-1].UID != 7 {
		t.Fatalf("UID reused: %+v", third[len(third)-1])
	}
}

func TestSyncCache(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "x")
	f := openFolder(t, s, "INBOX")
	mustSync(t, f, true)
	// Age the directories so that the cache may trust their mtimes.
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{"new", "cur"} {
		os.Chtimes(filepath.Join(s.Root(), d), old, old)
	}
	mustSync(t, f, true)
	hits := f.cacheHit
	if got := mustSync(t, f, true); len(got) != 1 || f.cacheHit != hits+1 {
		t.Fatalf("unchanged folder not served from cache (%d hits)", f.cacheHit)
	}
	deliver(t, s.Root(), "y")
	if got := mustSync(t, f, false); len(got) != 2 {
		t.Fatalf("delivery not seen: %d", len(got))
	}
}

func TestFlagsAndKeywords(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "x")
	f := openFolder(t, s, "INBOX")
	m := mustSync(t, f, false)[0]
	if _, err := f.SetFlags(m, "S1"); err == nil {
		t.Fatal("bad flag accepted")
	}
	a, err := f.KeywordLetter("$Forwarded", true)
	if err != nil || a != 'a' {
		t.Fatalf("KeywordLetter: %c %v", a, err)
	}
	b, _ := f.KeywordLetter("Work", true)
	if again, _ := f.KeywordLetter("$forwarded", false); again != 'a' || b != 'b' {
		t.Fatalf("letters %c %c", again, b)
	}
	if _, err := f.KeywordLetter("nope", false); !errors.Is(err, ErrNoKeyword) {
		t.Fatalf("missing keyword: %v", err)
	}
	if _, err := f.KeywordLetter("bad word", true); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad keyword: %v", err)
	}
	m, err = f.SetFlags(m, "bSRSa")
	if err != nil || m.Flags != "RSab" || m.Name != "cur/"+m.Key+":2,RSab" {
		t.Fatalf("SetFlags: %+v %v", m, err)
	}
	got := mustSync(t, f, false)[0]
	if got.Flags != "RSab" || got.UID != m.UID {
		t.Fatalf("after sync: %+v", got)
	}
	kw, _ := f.Keywords()
	if !slices.Equal(kw, []string{"$Forwarded", "Work"}) {
		t.Fatalf("keywords %q", kw)
	}
	data, _ := os.ReadFile(filepath.Join(s.Root(), "dovecot-keywords"))
	if string(data) != "0 $Forwarded\n1 Work\n" {
		t.Fatalf("dovecot-keywords: %q", data)
	}
	for i := 2; i < 26; i++ {
		if _, err := f.KeywordLetter("k"+strconv.Itoa(i), true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.KeywordLetter("one-too-many", true); !errors.Is(err, ErrTooManyKeywords) {
		t.Fatalf("27th keyword: %v", err)
	}
	// Another process renamed the file: SetFlags finds it by key.
	os.Rename(filepath.Join(s.Root(), got.Name), filepath.Join(s.Root(), "cur", got.Key+":2,T"))
	if m2, err := f.SetFlags(got, "S"); err != nil || m2.Flags != "S" {
		t.Fatalf("SetFlags after foreign rename: %+v %v", m2, err)
	}
}

func TestParseInfo(t *testing.T) {
	for in, want := range map[string][2]string{
		"123.M1P2.h,S=3:2,FS": {"123.M1P2.h,S=3", "FS"},
		"123.M1P2.h":          {"123.M1P2.h", ""},
		"x:1,abc":             {"x", ""},
		"x:2,":                {"x", ""},
	} {
		k, f := ParseInfo(in)
		if k != want[0] || f != want[1] {
			t.Errorf("ParseInfo(%q) = %q %q", in, k, f)
		}
	}
}

func TestFolders(t *testing.T) {
	s := newStore(t)
	for _, n := range []string{"Entwürfe", "日本語/子", "a&b", "x/y/z"} {
		if err := s.Create(n); err != nil {
			t.Fatal(n, err)
		}
	}
	if err := s.Create("Entwürfe"); !errors.Is(err, ErrExists) {
		t.Fatalf("create twice: %v", err)
	}
	if err := s.Create("inbox"); !errors.Is(err, ErrExists) {
		t.Fatalf("create INBOX: %v", err)
	}
	for _, bad := range []string{"", "/a", "a//b", "a/", "a.b", "x\x01"} {
		if err := s.Create(bad); !errors.Is(err, ErrBadName) {
			t.Fatalf("Create(%q): %v", bad, err)
		}
	}
	for _, d := range []string{".Entw&APw-rfe", ".&ZeVnLIqe-", ".&ZeVnLIqe-.&W1A-", ".a&-b", ".x.y.z"} {
		if _, err := os.Stat(filepath.Join(s.Root(), d, "maildirfolder")); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	list, err := s.Folders()
	want := []string{"INBOX", "Entwürfe", "a&b", "x", "x/y", "x/y/z", "日本語", "日本語/子"}
	if err != nil || !slices.Equal(list, want) {
		t.Fatalf("Folders = %q %v, want %q", list, err, want)
	}
	// Messages and UIDs travel with a rename, children too.
	f := openFolder(t, s, "x/y")
	if _, err := f.Append(strings.NewReader("Subject: a\r\n\r\nb\r\n"), "S", time.Unix(1700000000, 0), 0); err != nil {
		t.Fatal(err)
	}
	v := f.UIDValidity()
	s.Subscribe("x/y", true)
	s.Subscribe("x/y/z", true)
	if err := s.Rename("x", "w/new"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename("w", "w/new/deeper"); !errors.Is(err, ErrBadName) {
		t.Fatalf("rename into own child: %v", err)
	}
	list, _ = s.Folders()
	want = []string{"INBOX", "Entwürfe", "a&b", "w", "w/new", "w/new/y", "w/new/y/z", "日本語", "日本語/子"}
	if !slices.Equal(list, want) {
		t.Fatalf("after rename: %q", list)
	}
	subs, _ := s.Subscriptions()
	if !slices.Equal(subs, []string{"w/new/y", "w/new/y/z"}) {
		t.Fatalf("subscriptions after rename: %q", subs)
	}
	g := openFolder(t, s, "w/new/y")
	msgs := mustSync(t, g, false)
	if len(msgs) != 1 || g.UIDValidity() != v || msgs[0].UID != 1 || msgs[0].Flags != "S" || !msgs[0].Date.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("renamed folder: %+v V%d", msgs, g.UIDValidity())
	}
	if err := s.Rename("nope", "other"); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("rename missing: %v", err)
	}
	if err := s.Rename("a&b", "Entwürfe"); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
	if err := s.Delete("日本語"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("日本語"); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := s.Delete("INBOX"); !errors.Is(err, ErrBadName) {
		t.Fatalf("delete INBOX: %v", err)
	}
	list, _ = s.Folders()
	if !slices.Contains(list, "日本語/子") || slices.Contains(list, "日本語") {
		t.Fatalf("after delete: %q", list)
	}
	// A folder made again gets a new UIDVALIDITY, even within a second.
	s.Create("again")
	v1 := openFolder(t, s, "again").UIDValidity()
	s.Delete("again")
	s.Create("again")
	if v2 := openFolder(t, s, "again").UIDValidity(); v2 <= v1 {
		t.Fatalf("UIDVALIDITY %d then %d", v1, v2)
	}
	if _, err := s.Open("nope"); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("open missing: %v", err)
	}

	// Renaming INBOX moves its messages and leaves it empty.
	deliver(t, s.Root(), "in inbox")
	deliver(t, s.Root(), "in inbox 2")
	if err := s.Rename("INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	if got := mustSync(t, openFolder(t, s, "INBOX"), false); len(got) != 0 {
		t.Fatalf("INBOX after rename: %d messages", len(got))
	}
	if got := mustSync(t, openFolder(t, s, "Old"), false); len(got) != 2 || got[0].UID != 1 || got[1].UID != 2 {
		t.Fatalf("Old: %+v", got)
	}
}

func TestSubscriptionsAndSpecial(t *testing.T) {
	s := newStore(t)
	if err := s.EnsureSpecial(); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSpecial(); err != nil {
		t.Fatal(err)
	}
	subs, _ := s.Subscriptions()
	if !slices.Equal(subs, []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}) {
		t.Fatalf("subscriptions %q", subs)
	}
	s.Subscribe("Entwürfe/日本", true)
	s.Subscribe("Sent", false)
	s.Subscribe("Sent", false)
	subs, _ = s.Subscriptions()
	if !slices.Equal(subs, []string{"Archive", "Drafts", "Entwürfe/日本", "Junk", "Trash"}) {
		t.Fatalf("subscriptions %q", subs)
	}
	data, _ := os.ReadFile(filepath.Join(s.Root(), "subscriptions"))
	if !strings.Contains(string(data), "Entw&APw-rfe.&ZeVnLA-\n") {
		t.Fatalf("subscriptions file %q", data)
	}
	// Dovecot's version 2 form reads too.
	if got := parseSubscriptions([]byte("V\t2\n\nINBOX\na\tb\n")); !slices.Equal(got, []string{"INBOX", "a/b"}) {
		t.Fatalf("v2: %q", got)
	}
	for n, want := range map[string]string{"Sent": `\Sent`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`, "Drafts": `\Drafts`, "INBOX": ""} {
		if SpecialUse(n) != want {
			t.Errorf("SpecialUse(%s) = %q", n, SpecialUse(n))
		}
	}
}

func TestMUTF7(t *testing.T) {
	for in, want := range map[string]string{
		"Entwürfe": "Entw&APw-rfe", "日本語": "&ZeVnLIqe-", "a&b": "a&-b", "~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
		"😀": "&2D3eAA-", "plain": "plain",
	} {
		if got := EncodeMUTF7(in); got != want {
			t.Errorf("EncodeMUTF7(%q) = %q, want %q", in, got, want)
		}
		if got, err := DecodeMUTF7(want); err != nil || got != in {
			t.Errorf("DecodeMUTF7(%q) = %q %v", want, got, err)
		}
	}
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "\x80", "&2D0-"} {
		if _, err := DecodeMUTF7(bad); err == nil {
			t.Errorf("DecodeMUTF7(%q) accepted", bad)
		}
	}
}

// dovecotSample is a uid list as Dovecot 2.3 writes it.
const dovecotSample = `3 V1655390361 N6 Gbe88b9389940ab62f7580b00ce89bbd1
1 :1655390418.M100238P743770V0000000000000030I00000000081274AE_0.cp.example.ch,S=3734
3 W1042 :1655390419.M2P743770.cp.example.ch,S=1000,W=1042
4 G1a2b3c W88 S80 :1655390420.M3P1.host
`

func TestParseDovecotUIDList(t *testing.T) {
	l, err := ParseUIDList([]byte(dovecotSample))
	if err != nil {
		t.Fatal(err)
	}
	if l.Version != 3 || l.UIDValidity != 1655390361 || l.NextUID != 6 || l.GUID != "be88b9389940ab62f7580b00ce89bbd1" || len(l.Entries) != 3 {
		t.Fatalf("%+v", l)
	}
	if e := l.Entries[2]; e.UID != 4 || e.VSize != 88 || e.Ext != "G1a2b3c S80" || e.Key != "1655390420.M3P1.host" {
		t.Fatalf("entry %+v", e)
	}
	if l2, err := ParseUIDList(l.Marshal()); err != nil || !slices.Equal(l2.Entries, l.Entries) || l2.NextUID != 6 {
		t.Fatalf("round trip: %+v %v", l2, err)
	}
	// Courier's version 1, and a missing G.
	l, err = ParseUIDList([]byte("1 1000 3\n1 a.b.c\n2 d.e.f:2,S\n"))
	if err != nil || l.UIDValidity != 1000 || len(l.Entries) != 2 || l.Entries[1].Key != "d.e.f" {
		t.Fatalf("v1: %+v %v", l, err)
	}
	l, err = ParseUIDList([]byte("3 V7 N2\n5 :k\n"))
	if err != nil || l.NextUID != 6 {
		t.Fatalf("N below a UID: %+v %v", l, err)
	}
	for _, bad := range []string{"", "3 V0 N1\n", "3 V1 N5\n2 :a\n1 :b\n", "9 V1\n", "3 V1 N5\nx :a\n", "3 V1 N2\n1 a\n"} {
		if _, err := ParseUIDList([]byte(bad)); err == nil {
			t.Errorf("ParseUIDList(%q) accepted", bad)
		}
	}

	// A folder with Dovecot's file keeps its UIDs.
	s := newStore(t)
	os.WriteFile(filepath.Join(s.Root(), "cur", "1655390419.M2P743770.cp.example.ch,S=1000,W=1042:2,S"), []byte("x\n"), 0o600)
	os.WriteFile(filepath.Join(s.Root(), "new", "1655390420.M3P1.host"), []byte("y\n"), 0o600)
	os.WriteFile(filepath.Join(s.Root(), "cur", "1655390500.M9P1.host:2,"), []byte("z\nz\n"), 0o600)
	// Saved in 2022 with an internal date of 2020 (Dovecot's APPEND with a
	// date, mutt's save): the mtime holds the internal date.
	internal := time.Unix(1600000000, 0)
	os.Chtimes(filepath.Join(s.Root(), "cur", "1655390500.M9P1.host:2,"), internal, internal)
	os.WriteFile(filepath.Join(s.Root(), "dovecot-uidlist"), []byte(dovecotSample), 0o600)
	f := openFolder(t, s, "INBOX")
	msgs := mustSync(t, f, false)
	if f.UIDValidity() != 1655390361 || len(msgs) != 3 {
		t.Fatalf("V%d %+v", f.UIDValidity(), msgs)
	}
	if msgs[0].UID != 3 || msgs[0].Size != 1042 || msgs[0].Flags != "S" || msgs[1].UID != 4 || msgs[1].Size != 88 || msgs[2].UID != 6 || msgs[2].Size != 6 {
		t.Fatalf("%+v", msgs)
	}
	if !msgs[2].Date.Equal(internal) {
		t.Fatalf("internal date %v, want the mtime %v", msgs[2].Date, internal)
	}
}

// TestControlCharacterName: a file whose name holds a CR (put there by
// hand or by a careless tool) is passed over, so the uid list, which could
// not read such a key back, keeps its UIDVALIDITY across sessions.
func TestControlCharacterName(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "a")
	if err := os.WriteFile(filepath.Join(s.Root(), "cur", "bad\rname:2,S"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := openFolder(t, s, "INBOX")
	if msgs := mustSync(t, f, true); len(msgs) != 1 {
		t.Fatalf("%d messages, want 1 (the CR file passed over)", len(msgs))
	}
	v := f.UIDValidity()
	f.Close()
	f2 := openFolder(t, s, "INBOX")
	mustSync(t, f2, false)
	if err := f2.Renumbered(); err != nil || f2.UIDValidity() != v {
		t.Fatalf("reopen: %v, V%d (was %d)", err, f2.UIDValidity(), v)
	}
}

func TestCorruptUIDList(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "a")
	deliver(t, s.Root(), "b")
	os.WriteFile(filepath.Join(s.Root(), "dovecot-uidlist"), []byte("3 V4000000000 N3\n2 :x\n1 :y\n"), 0o600)
	f := openFolder(t, s, "INBOX")
	var ce *CorruptError
	if err := f.Renumbered(); !errors.As(err, &ce) || ce.OldUIDValidity != 4000000000 || ce.NewUIDValidity <= 4000000000 {
		t.Fatalf("Renumbered: %v", err)
	}
	t.Log(ce)
	if f.Renumbered() != nil {
		t.Fatal("reported twice")
	}
	msgs := mustSync(t, f, false)
	if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 2 {
		t.Fatalf("%+v", msgs)
	}
}

// TestCorruptWhileLocked corrupts the uid list of an open folder: the
// next Sync, which reads it under the lock, must renumber without waiting
// for its own lock.
func TestCorruptWhileLocked(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "a")
	f := openFolder(t, s, "INBOX")
	mustSync(t, f, false)
	v := f.UIDValidity()
	os.WriteFile(filepath.Join(s.Root(), "dovecot-uidlist"), []byte("garbage\n"), 0o600)
	deliver(t, s.Root(), "b")
	start := time.Now()
	msgs := mustSync(t, f, false)
	if time.Since(start) > 5*time.Second || len(msgs) != 2 || f.UIDValidity() == v {
		t.Fatalf("%+v V%d (was %d) after %v", msgs, f.UIDValidity(), v, time.Since(start))
	}
	if f.Renumbered() == nil {
		t.Fatal("renumbering not reported")
	}
}

// TestSizeWithoutW counts the CRLF size of a file named without W= once
// and keeps it in the uid list.
func TestSizeWithoutW(t *testing.T) {
	s := newStore(t)
	os.WriteFile(filepath.Join(s.Root(), "cur", "1700000000.x.host:2,S"), []byte("a\nb\r\n\n"), 0o600)
	f := openFolder(t, s, "INBOX")
	if m := mustSync(t, f, false); len(m) != 1 || m[0].Size != 8 {
		t.Fatalf("%+v", m)
	}
	data, _ := os.ReadFile(filepath.Join(s.Root(), "dovecot-uidlist"))
	if !strings.Contains(string(data), "1 W8 :1700000000.x.host\n") {
		t.Fatalf("uid list %q", data)
	}
}

func TestAppendAndCopy(t *testing.T) {
	s := newStore(t)
	s.Create("Sent")
	inbox := openFolder(t, s, "INBOX")
	sent := openFolder(t, s, "Sent")
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	uid, err := inbox.Append(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), "SD", date, 0)
	if err != nil || uid != 1 {
		t.Fatalf("Append: %d %v", uid, err)
	}
	if _, err := inbox.Append(strings.NewReader(strings.Repeat("x", 101)), "", date, 100); !errors.Is(err, ErrTooBig) {
		t.Fatalf("too big: %v", err)
	}
	if uid, err := inbox.Append(strings.NewReader(strings.Repeat("x", 100)), "", date, 100); err != nil || uid != 2 {
		t.Fatalf("exactly the limit: %d %v", uid, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Fatalf("tmp/ not empty: %v", ents)
	}
	msgs := mustSync(t, inbox, true)
	if len(msgs) != 2 || msgs[0].Flags != "DS" || msgs[0].Size != 20 || !msgs[0].Date.Equal(date) || msgs[0].Recent {
		t.Fatalf("%+v", msgs)
	}
	st, _ := os.Stat(filepath.Join(s.Root(), msgs[0].Name))
	if !st.ModTime().Equal(date) {
		t.Fatalf("mtime %v", st.ModTime())
	}
	for want := uint32(1); want <= 2; want++ {
		uid, err := inbox.CopyTo(msgs[0], sent)
		if err != nil || uid != want {
			t.Fatalf("CopyTo: %d %v", uid, err)
		}
	}
	got := mustSync(t, sent, false)
	if len(got) != 2 || got[0].Flags != "DS" || got[0].Size != 20 || !got[0].Date.Equal(date) {
		t.Fatalf("copy: %+v", got)
	}
	if uid, err := inbox.MoveTo(msgs[1], sent); err != nil || uid != 3 {
		t.Fatalf("MoveTo: %d %v", uid, err)
	}
	if n := len(mustSync(t, inbox, false)); n != 1 {
		t.Fatalf("inbox after move: %d", n)
	}
	// And back: a new UID in INBOX, never the old one.
	moved := mustSync(t, sent, false)[2]
	if uid, err := sent.MoveTo(moved, inbox); err != nil || uid != 3 {
		t.Fatalf("MoveTo back: %d %v", uid, err)
	}
}

func TestWatch(t *testing.T) {
	s := newStore(t)
	f := openFolder(t, s, "INBOX")
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := f.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, s.Root(), "x")
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("no notification within 1 s")
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestLockSession(t *testing.T) {
	s := newStore(t)
	f := openFolder(t, s, "INBOX")
	unlock, err := f.LockSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.LockSession(); !errors.Is(err, ErrInUse) {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock()
	u2, err := f.LockSession()
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

func TestDotlockStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	os.WriteFile(path+".lock", nil, 0o600)
	old := time.Now().Add(-3 * time.Minute)
	os.Chtimes(path+".lock", old, old)
	l, err := lockDot(path)
	if err != nil {
		t.Fatal(err)
	}
	l.unlock()
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Fatal("lock left behind")
	}
}

// TestConcurrentSync delivers 200 messages while 4 goroutines and 2 other
// processes sync (taking new/ into cur/ and changing flags); every message
// must end with exactly one UID, and no UID may serve two messages.
func TestConcurrentSync(t *testing.T) {
	s := newStore(t)
	f0 := openFolder(t, s, "INBOX")
	v := f0.UIDValidity()
	const n = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint32]string{} // UID -> key, across every Sync
	record := func(msgs []Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			if k, ok := seen[m.UID]; ok && k != m.Key {
				return fmt.Errorf("UID %d for %s and %s", m.UID, k, m.Key)
			}
			seen[m.UID] = m.Key
		}
		return nil
	}
	errc := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			f, err := s.Open("INBOX")
			if err != nil {
				errc <- err
				return
			}
			for {
				msgs, err := f.Sync(i%2 == 0)
				if err == nil {
					err = record(msgs)
				}
				if err == nil && len(msgs) > 0 && i == 1 {
					_, err = f.SetFlags(msgs[len(msgs)/2], "S")
				}
				if err != nil {
					errc <- err
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	var procs []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSyncer$")
		cmd.Env = append(os.Environ(), "MAILDIR_SYNCER="+s.Root())
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		wg.Go(func() {
			// Each line the helper prints is "UID KEY".
			data, _ := io.ReadAll(out)
			var msgs []Message
			for line := range strings.SplitSeq(string(data), "\n") {
				u, k, ok := strings.Cut(line, " ")
				if !ok {
					continue
				}
				uid, _ := strconv.ParseUint(u, 10, 32)
				msgs = append(msgs, Message{UID: uint32(uid), Key: k})
			}
			if len(msgs) == 0 {
				errc <- errors.New("a helper process saw no message")
			}
			if err := record(msgs); err != nil {
				errc <- err
			}
		})
	}
	keys := map[string]bool{}
	for i := range n {
		name := deliver(t, s.Root(), fmt.Sprint("message ", i))
		keys[name] = true
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	os.WriteFile(filepath.Join(s.Root(), "stop-syncer"), nil, 0o600)
	for _, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	final := mustSync(t, f0, false)
	if len(final) != n || f0.UIDValidity() != v {
		t.Fatalf("%d messages, V%d (was %d)", len(final), f0.UIDValidity(), v)
	}
	if err := record(final); err != nil {
		t.Fatal(err)
	}
	uids := map[string]uint32{}
	for uid, k := range seen {
		if old, ok := uids[k]; ok {
			t.Fatalf("%s got UIDs %d and %d", k, old, uid)
		}
		uids[k] = uid
	}
	for name := range keys {
		if _, ok := uids[name]; !ok {
			t.Fatalf("%s never got a UID", name)
		}
	}
	if len(uids) != n {
		t.Fatalf("%d keys have UIDs, want %d", len(uids), n)
	}
}

// TestHelperSyncer is the other process of TestConcurrentSync.
func TestHelperSyncer(t *testing.T) {
	root := os.Getenv("MAILDIR_SYNCER")
	if root == "" {
		return
	}
	s, err := OpenStore(root, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	printed := map[uint32]bool{}
	for i := 0; ; i++ {
		msgs, err := f.Sync(i%2 == 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if !printed[m.UID] {
				printed[m.UID] = true
				fmt.Printf("%d %s\n", m.UID, m.Key)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "stop-syncer")); err == nil {
			return
		}
	}
}

func TestSync10000(t *testing.T) {
	s := newStore(t)
	for i := range 10000 {
		name := fmt.Sprintf("%d.M%dP1Q%d.bench,S=%d,W=%d", 1700000000+i, i%1000000, i, 10, 12)
		sub := "new"
		if i%2 == 0 {
			sub, name = "cur", name+":2,S"
		}
		if err := os.WriteFile(filepath.Join(s.Root(), sub, name), []byte("0123456789"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := openFolder(t, s, "INBOX")
	start := time.Now()
	msgs := mustSync(t, f, false)
	t.Logf("first Sync of %d messages (assigning UIDs): %v", len(msgs), time.Since(start))
	start = time.Now()
	mustSync(t, f, false)
	t.Logf("second Sync: %v", time.Since(start))
	f.Close()
	f = openFolder(t, s, "INBOX")
	start = time.Now()
	msgs = mustSync(t, f, true)
	t.Logf("Sync of a fresh Folder taking 5000 new: %v", time.Since(start))
	if len(msgs) != 10000 || msgs[9999].UID != 10000 {
		t.Fatalf("%d messages", len(msgs))
	}
	start = time.Now()
	mustSync(t, f, false)
	t.Logf("Sync after that: %v", time.Since(start))
	old := time.Now().Add(-time.Minute)
	for _, d := range []string{"new", "cur"} {
		os.Chtimes(filepath.Join(s.Root(), d), old, old)
	}
	mustSync(t, f, false)
	start = time.Now()
	hits := f.cacheHit
	mustSync(t, f, false)
	if f.cacheHit != hits+1 {
		t.Fatal("unchanged folder not served from the cache")
	}
	t.Logf("Sync of an unchanged folder (cache): %v", time.Since(start))
}

func FuzzParseUIDList(f *testing.F) {
	f.Add([]byte(dovecotSample))
	f.Add([]byte("1 1000 3\n1 a.b.c\n"))
	f.Add([]byte("3 V1 N1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseUIDList(data)
		if err != nil {
			return
		}
		if l.UIDValidity == 0 {
			t.Fatal("UIDVALIDITY 0 accepted")
		}
		var last uint32
		for _, e := range l.Entries {
			if e.UID <= last || e.UID >= l.NextUID {
				t.Fatalf("UID %d after %d, next %d", e.UID, last, l.NextUID)
			}
			last = e.UID
		}
		l2, err := ParseUIDList(l.Marshal())
		if err != nil {
			t.Fatalf("own output refused: %v\n%s", err, l.Marshal())
		}
		if len(l2.Entries) != len(l.Entries) || l2.NextUID != l.NextUID || l2.UIDValidity != l.UIDValidity {
			t.Fatalf("round trip changed the list")
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	f.Add("123.M1P2.h,S=3,W=4:2,FS")
	f.Add("x:1,y")
	f.Fuzz(func(t *testing.T, name string) {
		key, flags := ParseInfo(name)
		if strings.Contains(key, ":") || len(key)+len(flags) > len(name) {
			t.Fatalf("ParseInfo(%q) = %q %q", name, key, flags)
		}
		if norm, err := NormalizeFlags(flags); err == nil {
			if again, _ := NormalizeFlags(norm); again != norm {
				t.Fatalf("NormalizeFlags not idempotent: %q", flags)
			}
		}
		_ = cleanFlags(flags)
		keyTime(key)
		keyField(key, 'W')
	})
}

func FuzzMUTF7(f *testing.F) {
	f.Add("Entwürfe")
	f.Add("&Jjo-!")
	f.Fuzz(func(t *testing.T, s string) {
		if dec, err := DecodeMUTF7(s); err == nil {
			if EncodeMUTF7(dec) != s {
				t.Fatalf("%q decodes to %q which encodes to %q", s, dec, EncodeMUTF7(dec))
			}
		}
		if _, err := checkName(s); err == nil {
			if dec, err := DecodeMUTF7(EncodeMUTF7(s)); err != nil || dec != s {
				t.Fatalf("round trip of %q: %q %v", s, dec, err)
			}
		}
	})
}

func FuzzParseKeywords(f *testing.F) {
	f.Add([]byte("0 $Forwarded\n1 Work\n"))
	f.Add([]byte("25 z\n26 no\n-1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab := ParseKeywords(data)
		if len(tab) > maxKeywords {
			t.Fatalf("%d keywords", len(tab))
		}
		for _, k := range tab {
			if k != "" && validKeyword(k) != nil {
				t.Fatalf("bad keyword %q", k)
			}
		}
		if got := ParseKeywords(formatKeywords(tab)); !slices.Equal(got, tab) {
			t.Fatalf("round trip %q -> %q", tab, got)
		}
	})
}

func FuzzParseSubscriptions(f *testing.F) {
	f.Add([]byte("INBOX\nEntw&APw-rfe.&ZeVnLA-\n"))
	f.Add([]byte("V\t2\n\na\tb\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, n := range parseSubscriptions(data) {
			if _, err := checkName(n); err != nil {
				t.Fatalf("invalid name %q: %v", n, err)
			}
		}
	})
}

// TestUIDValidityMarker: Dovecot's dovecot-uidvalidity.<hex> marker is
// read (Dovecot may have moved it past the main file's value), renamed to
// the value given, and left the only one; the main file follows it.
func TestUIDValidityMarker(t *testing.T) {
	s := newStore(t)
	future := uint32(time.Now().Unix()) + 1000
	root := s.Root()
	os.WriteFile(filepath.Join(root, "dovecot-uidvalidity"), []byte("00000010"), 0o600)
	os.WriteFile(filepath.Join(root, fmt.Sprintf("dovecot-uidvalidity.%08x", future)), nil, 0o444)
	os.WriteFile(filepath.Join(root, "dovecot-uidvalidity.00000005"), nil, 0o444) // a stray older one
	if err := s.Create("a"); err != nil {
		t.Fatal(err)
	}
	f := openFolder(t, s, "a")
	v := f.UIDValidity()
	if v != future+1 {
		t.Fatalf("UIDVALIDITY %d, want %d (above Dovecot's marker)", v, future+1)
	}
	markers, _ := filepath.Glob(filepath.Join(root, "dovecot-uidvalidity.*"))
	want := filepath.Join(root, fmt.Sprintf("dovecot-uidvalidity.%08x", v))
	if len(markers) != 1 || markers[0] != want {
		t.Fatalf("markers %q, want only %q", markers, want)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "dovecot-uidvalidity")); string(b) != fmt.Sprintf("%08x", v) {
		t.Fatalf("dovecot-uidvalidity holds %q, want %08x", b, v)
	}
	// The next folder goes on from there, marker and file alike.
	if err := s.Create("b"); err != nil {
		t.Fatal(err)
	}
	if g := openFolder(t, s, "b"); g.UIDValidity() != v+1 {
		t.Fatalf("next UIDVALIDITY %d, want %d", g.UIDValidity(), v+1)
	}
	if _, err := os.Stat(filepath.Join(root, fmt.Sprintf("dovecot-uidvalidity.%08x", v+1))); err != nil {
		t.Fatalf("marker not moved on: %v", err)
	}
}

// BenchmarkSyncChanged is the Sync after a STORE on 10,000 messages:
// cur/ changed, so the cache cannot answer and a readdir is due.
func BenchmarkSyncChanged(b *testing.B) {
	s := newStore(b)
	for i := range 10000 {
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d,W=%d:2,", 1700000000+i, i, 3900, 4000)
		if err := os.WriteFile(filepath.Join(s.Root(), "cur", name), []byte("x"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	f := openFolder(b, s, "INBOX")
	f.LazyDates()
	mustSync(b, f, true)
	b.ResetTimer()
	for i := range b.N {
		t := time.Now().Add(time.Duration(i) * time.Second)
		os.Chtimes(filepath.Join(s.Root(), "cur"), t, t)
		mustSync(b, f, true)
	}
}

func TestReadMessage(t *testing.T) {
	s := newStore(t)
	f := openFolder(t, s, "INBOX")
	body := "Subject: x\n\n" + string(make([]byte, 5000))
	if _, err := f.Append(strings.NewReader(body), "", time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	// one without S= in its name
	if err := os.WriteFile(filepath.Join(s.Root(), "cur", "1700000000.plain:2,S"), []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msgs := mustSync(t, f, false)
	for _, m := range msgs {
		want, _ := os.ReadFile(filepath.Join(s.Root(), m.Name))
		for _, limit := range []int{0, 1, 3, 100, 1 << 20} {
			for _, buf := range [][]byte{nil, make([]byte, 0, 2)} {
				got, err := f.ReadMessage(m, buf, limit)
				if err != nil || string(got) != string(want[:min(limit, len(want))]) {
					t.Fatalf("%s limit %d: %d bytes, %v", m.Name, limit, len(got), err)
				}
			}
		}
		// renamed by someone else: found again by key
		moved, err := f.SetFlags(m, "F")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.ReadMessage(m, nil, 1<<20); err != nil || string(got) != string(want) {
			t.Fatalf("after rename to %s: %v", moved.Name, err)
		}
		os.Remove(filepath.Join(s.Root(), moved.Name))
		if _, err := f.ReadMessage(moved, nil, 10); !errors.Is(err, ErrNoMessage) {
			t.Fatalf("gone: %v", err)
		}
	}
}

func TestLazyDatesAndParking(t *testing.T) {
	s := newStore(t)
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	f := openFolder(t, s, "INBOX")
	if _, err := f.Append(strings.NewReader("Subject: x\n\nbody\n"), "S", date, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f = openFolder(t, s, "INBOX")
	f.LazyDates()
	msgs := mustSync(t, f, false)
	if len(msgs) != 1 || !msgs[0].Date.IsZero() {
		t.Fatalf("lazy Sync gave a date: %+v", msgs)
	}
	if d := f.Date(msgs[0]); !d.Equal(date) {
		t.Fatalf("Date %v, want %v", d, date)
	}
	// Known now: Sync reports it; and a renamed file still finds its date.
	if msgs = mustSync(t, f, false); !msgs[0].Date.Equal(date) {
		t.Fatalf("second Sync date %v", msgs[0].Date)
	}
	m, err := f.SetFlags(msgs[0], "FS")
	if err != nil {
		t.Fatal(err)
	}
	f2 := openFolder(t, s, "INBOX") // not parked: a fresh Folder
	f2.LazyDates()
	m.Date = time.Time{}
	old := m
	old.Name = msgs[0].Name // the name before the rename
	if d := f2.Date(old); !d.Equal(date) {
		t.Fatalf("Date after rename %v", d)
	}
	// Close parks the uid list: the next Open does not read it again,
	// yet sees what changed on disk.
	mustSync(t, f, false)
	f.Close()
	if s.parked[f.dir] == nil {
		t.Fatal("nothing parked")
	}
	if _, err := f2.Append(strings.NewReader("Subject: y\n\n"), "", time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	f3 := openFolder(t, s, "INBOX")
	if got := mustSync(t, f3, false); len(got) != 2 || got[0].Flags != "FS" || got[1].UID != 2 {
		t.Fatalf("after parking: %+v", got)
	}
}
