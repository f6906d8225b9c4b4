package passwd

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadFixtures(t *testing.T) {
	db, err := Load("testdata/passwd", "testdata/group")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []User{
		{"root", 0, 0, "/root", "/bin/bash"},
		{"daemon", 1, 1, "/usr/sbin", "/usr/sbin/nologin"},
		{"alice", 1000, 1000, "/home/alice", "/bin/bash"},
		{"bob", 1001, 100, "/home/bob", ""},
		{"toor", 0, 0, "/root", "/bin/sh"},
		{"big", 4294967294, 4294967294, "/home/big", "/bin/sh"},
		{"crlf", 1007, 100, "/home/crlf", "/bin/sh"},
		{"last", 1008, 100, "/home/last", "/bin/sh"},
	} {
		got, ok := db.User(want.Name)
		if !ok || got != want {
			t.Errorf("User(%q) = %+v, %v; want %+v", want.Name, got, ok, want)
		}
	}
	for _, name := range []string{"+@netgroup", "-baduser", "+", "@netgroup", "baduser", "carol", "dave", "erin", "frank", "gina", "", "ha rry", "ha", "Alice", "#"} {
		if u, ok := db.User(name); ok {
			t.Errorf("User(%q) = %+v, want none", name, u)
		}
	}
	if u, ok := db.UserByUID(0); !ok || u.Name != "root" {
		t.Errorf("UserByUID(0) = %+v, %v; want root (the first)", u, ok)
	}
	if u, ok := db.UserByUID(1000); !ok || u.Name != "alice" {
		t.Errorf("UserByUID(1000) = %+v", u)
	}
	if _, ok := db.UserByUID(2000); ok {
		t.Error("the duplicate alice line was used")
	}
	if _, ok := db.UserByUID(12); ok {
		t.Error("UserByUID(12) found something")
	}

	for name, want := range map[string]int{"root": 0, "users": 100, "mail": 8, "wheel": 10, "alice": 1000} {
		if gid, ok := db.Group(name); !ok || gid != want {
			t.Errorf("Group(%q) = %d, %v; want %d", name, gid, ok, want)
		}
	}
	for _, name := range []string{"+", "broken", "toolong", "nope"} {
		if gid, ok := db.Group(name); ok {
			t.Errorf("Group(%q) = %d, want none", name, gid)
		}
	}
	if got := db.GroupsOf("alice"); !slices.Equal(got, []int{1000, 100, 8}) {
		t.Errorf("GroupsOf(alice) = %v", got)
	}
	if got := db.GroupsOf("bob"); !slices.Equal(got, []int{100, 10}) {
		t.Errorf("GroupsOf(bob) = %v", got)
	}
	if got := db.GroupsOf("carol"); !slices.Equal(got, []int{10}) {
		t.Errorf("GroupsOf(carol) = %v", got)
	}

	bad := db.Bad()
	wantBad := []string{
		"testdata/passwd:13: user \"carol\": uid",
		"testdata/passwd:14: user \"dave\": gid",
		"testdata/passwd:15: user \"erin\": uid: \"4294967295\" is reserved",
		"testdata/passwd:16: 6 fields, want 7",
		"testdata/passwd:17: user \"gina\": home \"relative\" is not an absolute path",
		"testdata/passwd:18: user \"alice\" listed again",
		"testdata/passwd:19: empty name",
		"testdata/passwd:20: name \"ha rry\"",
		"testdata/group:7: group \"broken\": gid",
		"testdata/group:8: 3 fields, want 4",
		"testdata/group:9: group \"users\" listed again",
	}
	if len(bad) != len(wantBad) {
		t.Fatalf("Bad() = %d reports, want %d:\n%s", len(bad), len(wantBad), strings.Join(bad, "\n"))
	}
	for i, w := range wantBad {
		if !strings.HasPrefix(bad[i], w) {
			t.Errorf("Bad()[%d] = %q, want prefix %q", i, bad[i], w)
		}
	}
	bad[0] = "changed"
	if db.Bad()[0] == "changed" {
		t.Error("Bad() exposes its slice")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load("testdata/nope", ""); err == nil || !strings.Contains(err.Error(), "testdata/nope") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load("", "testdata/nope"); err == nil {
		t.Error("missing group file accepted")
	}
	db, err := Load("", "")
	if err != nil || len(db.Bad()) != 0 {
		t.Fatalf("empty paths: %v", err)
	}
	if _, ok := db.User("root"); ok {
		t.Error("user from nowhere")
	}

	// A sparse file over the size limit is refused before it is read.
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(MaxFileSize + 1)
	f.Close()
	if _, err := Load(huge, ""); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
}

// TestLimitsStreamed checks the limits on input whose size stat cannot
// tell (a pipe, /proc), through the reader path.
func TestLimitsStreamed(t *testing.T) {
	long := strings.Repeat("x", MaxLineLen+10)
	in := "a:x:1:1::/a:/bin/sh\n" + long + "\n" + "b:x:2:2::/b:" + long[:100] + "\n" + long
	db := newDB()
	if err := db.parsePasswd("p", strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.User("a"); !ok {
		t.Error("a missing")
	}
	if _, ok := db.User("b"); !ok {
		t.Error("b missing (after an over-long line)")
	}
	bad := db.Bad()
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "p:2: line longer") || !strings.HasPrefix(bad[1], "p:4: line longer") {
		t.Errorf("Bad() = %q", bad)
	}

	// Over MaxFileSize in total, streamed: refused.
	line := "u:x:1:1::/h:/bin/sh\n"
	r := &repeatReader{line: []byte(line), n: MaxFileSize/len(line) + 2}
	if err := newDB().parsePasswd("p", r); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("streamed huge file: %v", err)
	}
}

func TestBadCapped(t *testing.T) {
	var b bytes.Buffer
	for range maxBad + 5 {
		b.WriteString("junk\n")
	}
	db := newDB()
	if err := db.parseGroup("g", &b); err != nil {
		t.Fatal(err)
	}
	bad := db.Bad()
	if len(bad) != maxBad+1 || !strings.Contains(bad[maxBad], "5 more") {
		t.Errorf("%d reports, last %q", len(bad), bad[len(bad)-1])
	}
}

type repeatReader struct {
	line []byte
	n    int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && r.n > 0 {
		c := copy(p, r.line[r.off:])
		p = p[c:]
		total += c
		r.off += c
		if r.off == len(r.line) {
			r.off = 0
			r.n--
		}
	}
	if total == 0 {
		return 0, io.EOF
	}
	return total, nil
}

// FuzzLoad parses arbitrary passwd and group contents and checks that
// whatever is accepted is consistent.
func FuzzLoad(f *testing.F) {
	p, _ := os.ReadFile("testdata/passwd")
	g, _ := os.ReadFile("testdata/group")
	f.Add(p, g)
	f.Add([]byte("a:x:1:1::/a:\n+\n#\n"), []byte("g:x:1:a,b\n"))
	f.Fuzz(func(t *testing.T, p, g []byte) {
		db := newDB()
		if err := db.parsePasswd("p", bytes.NewReader(p)); err != nil {
			t.Fatal(err)
		}
		if err := db.parseGroup("g", bytes.NewReader(g)); err != nil {
			t.Fatal(err)
		}
		for name, u := range db.users {
			if u.Name != name || name == "" || !strings.HasPrefix(u.Home, "/") || u.UID < 0 || u.GID < 0 {
				t.Fatalf("bad user %+v", u)
			}
			if v, ok := db.UserByUID(u.UID); !ok || v.UID != u.UID {
				t.Fatalf("UserByUID(%d) = %+v, %v", u.UID, v, ok)
			}
			if strings.ContainsAny(u.Name+u.Home+u.Shell, ":\n") {
				t.Fatalf("separator in %+v", u)
			}
			db.GroupsOf(name)
		}
		for name := range db.groups {
			if gid, ok := db.Group(name); !ok || gid < 0 {
				t.Fatalf("Group(%q) = %d, %v", name, gid, ok)
			}
		}
		for _, b := range db.Bad() {
			if !strings.HasPrefix(b, "p:") && !strings.HasPrefix(b, "g:") {
				t.Fatalf("report %q", b)
			}
		}
	})
}
