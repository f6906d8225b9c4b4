package route

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"postern/internal/address"
	"postern/internal/authclient"
	"postern/internal/config"
	"postern/internal/passwd"
)

// Fixture files, written into the configuration directory of each test.
var fixtures = map[string]string{
	"passwd": `root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:
`,
	"group": "root:x:0:\nusers:x:100:bob\n",
	"aliases": `postmaster: root
abuse: alice, bob
team: alice,bob , carol@remote.example
spaced: alice bob
quoted: "|/usr/bin/vacation -a x,y", alice
`,
	"vmailbox": `bob@virt.example      virt.example/bob/
eve@virt.example      virt.example/eve/
root@virt.example     virt.example/root/
mbox@virt.example     virt.example/mbox
evil@virt.example     virt.example/../../etc/
abs@virt.example      /etc/
@catch.example        catch.example/all/
`,
	"vuids": `bob@virt.example 5001
root@virt.example 0
@virt.example 5000
@catch.example 6000
@db.example 5002
`,
}

// baseConf names the fixture tables relative to the configuration
// directory, as an administrator would.
const baseConf = `myhostname = mail.example.com
recipient_delimiter = +
alias_maps = texthash:aliases
virtual_mailbox_domains = virt.example, catch.example, db.example
virtual_mailbox_base = /var/vmail
virtual_mailbox_maps = texthash:vmailbox
virtual_uid_maps = texthash:vuids
virtual_gid_maps = static:5000
`

// setup writes the fixtures to a fresh directory and returns it with the
// passwd database read from it.
func setup(t *testing.T) (string, *passwd.DB) {
	t.Helper()
	dir := t.TempDir()
	for name, text := range fixtures {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	users, err := passwd.Load(filepath.Join(dir, "passwd"), filepath.Join(dir, "group"))
	if err != nil {
		t.Fatal(err)
	}
	if bad := users.Bad(); len(bad) > 0 {
		t.Fatalf("passwd fixture: %q", bad)
	}
	return dir, users
}

func newResolver(t *testing.T, conf string) *Resolver {
	t.Helper()
	dir, users := setup(t)
	cfg, err := config.Parse(dir, []byte(conf), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	r, err := New(cfg, users)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func addr(local, domain string) address.Address {
	return address.Address{Local: local, Domain: domain}
}

func TestClassify(t *testing.T) {
	r := newResolver(t, baseConf)
	for _, tc := range []struct {
		a    address.Address
		want Class
	}{
		{addr("alice", "mail.example.com"), Local},
		{addr("alice", "Mail.Example.COM"), Local},
		{addr("alice", "mail.example.com."), Local},
		{addr("alice", "localhost"), Local},
		{addr("alice", "LOCALHOST."), Local},
		{addr("alice", "localhost.example.com"), Local}, // localhost.$mydomain
		{addr("postmaster", ""), Local},                 // the bare postmaster
		{addr("bob", "virt.example"), Virtual},
		{addr("bob", "VIRT.Example."), Virtual},
		{addr("x", "catch.example"), Virtual},
		{addr("x", "db.example"), Virtual},
		{addr("x", "example.com"), Remote},          // the parent of myhostname
		{addr("x", "sub.mail.example.com"), Remote}, // subdomains do not match
		{addr("x", "sub.virt.example"), Remote},     // nor for virtual domains
		{addr("carol", "remote.example"), Remote},
		{addr("x", "[192.0.2.1]"), Remote},
	} {
		if got := r.Classify(tc.a); got != tc.want {
			t.Errorf("Classify(%s) = %v, want %v", tc.a, got, tc.want)
		}
		want := "local"
		if tc.want == Remote {
			want = "smtp"
		}
		if got := r.Transport(tc.a); got != want {
			t.Errorf("Transport(%s) = %q, want %q", tc.a, got, want)
		}
	}
	if got := r.MyHostname(); got != "mail.example.com" {
		t.Errorf("MyHostname = %q", got)
	}
	for c, want := range map[Class]string{Local: "local", Virtual: "virtual", Remote: "remote", Class(42): "remote"} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}

func TestClassifyDomainFileAndTable(t *testing.T) {
	dir, users := setup(t)
	if err := os.WriteFile(filepath.Join(dir, "localdomains"), []byte("# ours\nLocal-One.example, local-two.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vdomains"), []byte("Tab.Example anything\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "myhostname = mail.example.com\n" +
		"mydestination = $myhostname, " + filepath.Join(dir, "localdomains") + "\n" +
		"virtual_mailbox_domains = texthash:vdomains\n" +
		"virtual_mailbox_base = /var/vmail\n"
	cfg, err := config.Parse(dir, []byte(conf), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, users)
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]Class{
		"local-one.example": Local,
		"LOCAL-TWO.example": Local,
		"tab.example":       Virtual,
		"localhost":         Remote, // not in this mydestination
	} {
		if got := r.Classify(addr("u", d)); got != want {
			t.Errorf("Classify(u@%s) = %v, want %v", d, got, want)
		}
	}
}

// fakeDB is the auth daemon's user lookup.
type fakeDB struct {
	users map[string]authclient.User
	fail  map[string]bool
	asked []string
}

func (f *fakeDB) Lookup(addr string) (authclient.User, bool, error) {
	f.asked = append(f.asked, addr)
	if f.fail[addr] {
		return authclient.User{}, false, errors.New("auth unavailable")
	}
	u, ok := f.users[addr]
	return u, ok, nil
}

func newFakeDB() *fakeDB {
	return &fakeDB{
		users: map[string]authclient.User{
			"carol@db.example": {Name: "carol@db.example", UID: -1, GID: -1, Home: "/srv/home/carol"},
			"dave@db.example":  {Name: "dave@db.example", UID: 7000, GID: 7001, Home: "/srv/home/dave", Mail: "/srv/mail/dave/"},
			"zero@db.example":  {Name: "zero@db.example", UID: 0, GID: 7001, Home: "/root"},
			"empty@db.example": {Name: "empty@db.example", UID: 7000, GID: 7001},
			"frank@db.example": {Name: "frank@db.example", UID: 7002, GID: -1, Mail: "/srv/mail/frank"},
		},
		fail: map[string]bool{"broken@db.example": true},
	}
}

func TestKnown(t *testing.T) {
	r := newResolver(t, baseConf)
	r.SetUserDB(newFakeDB())
	for _, tc := range []struct {
		a   address.Address
		ok  bool
		why string
	}{
		// Local: system users, aliases, extensions, postmaster.
		{addr("alice", "mail.example.com"), true, ""},
		{addr("ALICE", "Mail.Example.COM"), true, ""}, // local parts fold
		{addr("root", "localhost"), true, ""},
		{addr("abuse", "mail.example.com"), true, ""}, // alias only
		{addr("Team", "mail.example.com"), true, ""},
		{addr("alice+lists", "mail.example.com"), true, ""},
		{addr("abuse+x", "mail.example.com"), true, ""}, // alias with an extension
		{addr("nobody", "mail.example.com"), false, "User unknown in local recipient table"},
		{addr("nobody+alice", "mail.example.com"), false, "User unknown in local recipient table"},
		{addr("+alice", "mail.example.com"), false, "User unknown in local recipient table"},
		{addr("postmaster", "mail.example.com"), true, ""},
		{addr("PostMaster", "localhost"), true, ""},
		{addr("postmaster", ""), true, ""},

		// Virtual: maps, catch-all, user database, postmaster.
		{addr("bob", "virt.example"), true, ""},
		{addr("BOB", "VIRT.example"), true, ""},
		{addr("bob+tag", "virt.example"), true, ""},
		{addr("anyone", "catch.example"), true, ""}, // @domain catch-all
		{addr("nobody", "virt.example"), false, "User unknown in virtual mailbox table"},
		{addr("alice", "virt.example"), false, "User unknown in virtual mailbox table"}, // system users are not virtual
		{addr("postmaster", "virt.example"), true, ""},
		{addr("Postmaster", "db.example"), true, ""},
		{addr("carol", "db.example"), true, ""},
		{addr("Carol+tag", "db.example"), true, ""},
		{addr("nobody", "db.example"), false, "User unknown in virtual mailbox table"},

		// Remote: always known; relaying is smtpd's business.
		{addr("whoever", "remote.example"), true, ""},
	} {
		ok, why, err := r.Known(tc.a)
		if err != nil || ok != tc.ok || why != tc.why {
			t.Errorf("Known(%s) = %v, %q, %v; want %v, %q", tc.a, ok, why, err, tc.ok, tc.why)
		}
	}

	// A user database that cannot answer is a temporary failure, not an
	// unknown user.
	ok, _, err := r.Known(addr("broken", "db.example"))
	if err == nil || ok {
		t.Errorf("Known(broken@db.example) = %v, %v; want an error", ok, err)
	}
}

func TestKnownUserDBCandidates(t *testing.T) {
	r := newResolver(t, baseConf)
	db := newFakeDB()
	r.SetUserDB(db)
	if ok, _, err := r.Known(addr("Carol+Tag", "DB.Example.")); !ok || err != nil {
		t.Fatalf("Known = %v, %v", ok, err)
	}
	want := []string{"carol+tag@db.example", "carol@db.example"}
	if !reflect.DeepEqual(db.asked, want) {
		t.Errorf("user database asked %q, want %q", db.asked, want)
	}
	// A map hit does not ask the database at all.
	db.asked = nil
	if ok, _, _ := r.Known(addr("bob", "virt.example")); !ok || db.asked != nil {
		t.Errorf("map hit: ok %v, asked %q", ok, db.asked)
	}
}

func TestKnownWithoutUserDB(t *testing.T) {
	r := newResolver(t, baseConf)
	ok, why, err := r.Known(addr("carol", "db.example"))
	if ok || err != nil || why != "User unknown in virtual mailbox table" {
		t.Errorf("Known without a user database = %v, %q, %v", ok, why, err)
	}
	if _, err := r.VirtualMailbox(addr("carol", "db.example")); err == nil || !strings.Contains(err.Error(), "not in virtual_mailbox_maps") {
		t.Errorf("VirtualMailbox without a user database: %v", err)
	}
}

func TestKnownNoDelimiter(t *testing.T) {
	r := newResolver(t, strings.Replace(baseConf, "recipient_delimiter = +", "recipient_delimiter =", 1))
	for _, a := range []address.Address{addr("alice+tag", "mail.example.com"), addr("bob+tag", "virt.example")} {
		if ok, _, err := r.Known(a); ok || err != nil {
			t.Errorf("Known(%s) without a delimiter = %v, %v", a, ok, err)
		}
	}
	if ok, _, _ := r.Known(addr("alice", "mail.example.com")); !ok {
		t.Error("alice unknown without a delimiter")
	}
}

func TestKnownMultiDelimiter(t *testing.T) {
	r := newResolver(t, strings.Replace(baseConf, "recipient_delimiter = +", "recipient_delimiter = +-", 1))
	for _, l := range []string{"alice+tag", "alice-tag"} {
		if ok, _, _ := r.Known(addr(l, "mail.example.com")); !ok {
			t.Errorf("Known(%s) with delimiters +- is false", l)
		}
	}
}

func TestAlias(t *testing.T) {
	r := newResolver(t, baseConf)
	for _, tc := range []struct {
		local string
		want  []string
		ok    bool
	}{
		{"postmaster", []string{"root"}, true},
		{"abuse", []string{"alice", "bob"}, true},
		{"Abuse", []string{"alice", "bob"}, true},
		{"team", []string{"alice", "bob", "carol@remote.example"}, true},
		{"team+x", []string{"alice", "bob", "carol@remote.example"}, true},
		{"alice", nil, false}, // a user, not an alias
		{"nobody", nil, false},
	} {
		got, ok := r.Alias(tc.local)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Alias(%s) = %q, %v; want %q, %v", tc.local, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLocalMailbox(t *testing.T) {
	r := newResolver(t, baseConf)
	for _, tc := range []struct {
		local string
		want  Mailbox
	}{
		{"alice", Mailbox{Path: "/home/alice/Maildir/", Maildir: true, UID: 1000, GID: 1000, User: "alice"}},
		{"Alice+tag", Mailbox{Path: "/home/alice/Maildir/", Maildir: true, UID: 1000, GID: 1000, User: "alice"}},
		{"bob", Mailbox{Path: "/home/bob/Maildir/", Maildir: true, UID: 1001, GID: 100, User: "bob"}},
		{"root", Mailbox{Path: "/root/Maildir/", Maildir: true, UID: 0, GID: 0, User: "root"}},
	} {
		got, err := r.LocalMailbox(tc.local)
		if err != nil || got != tc.want {
			t.Errorf("LocalMailbox(%s) = %+v, %v; want %+v", tc.local, got, err, tc.want)
		}
	}
	for _, l := range []string{"nobody", "abuse", "nobody+alice", ""} {
		if mb, err := r.LocalMailbox(l); err == nil {
			t.Errorf("LocalMailbox(%q) = %+v, want an error", l, mb)
		}
	}
}

func TestLocalMailboxHomeMailbox(t *testing.T) {
	for _, tc := range []struct {
		setting string
		want    string
		maildir bool
	}{
		{"Maildir/", "/home/alice/Maildir/", true},
		{"mail/inbox/", "/home/alice/mail/inbox/", true},
		{"Mailbox", "/home/alice/Mailbox", false},
		{"./Mailbox", "/home/alice/Mailbox", false},
	} {
		r := newResolver(t, baseConf+"home_mailbox = "+tc.setting+"\n")
		mb, err := r.LocalMailbox("alice")
		if err != nil || mb.Path != tc.want || mb.Maildir != tc.maildir {
			t.Errorf("home_mailbox %s: %+v, %v; want %s maildir %v", tc.setting, mb, err, tc.want, tc.maildir)
		}
	}
}

func TestVirtualMailbox(t *testing.T) {
	r := newResolver(t, baseConf)
	r.SetUserDB(newFakeDB())
	for _, tc := range []struct {
		a    address.Address
		want Mailbox
	}{
		// Path from the map, uid from the per-user entry, gid static.
		{addr("bob", "virt.example"), Mailbox{Path: "/var/vmail/virt.example/bob/", Maildir: true, UID: 5001, GID: 5000, User: "bob@virt.example"}},
		// The uid lookup falls back from user+ext to user.
		{addr("bob+tag", "virt.example"), Mailbox{Path: "/var/vmail/virt.example/bob/", Maildir: true, UID: 5001, GID: 5000, User: "bob+tag@virt.example"}},
		{addr("BOB", "Virt.Example"), Mailbox{Path: "/var/vmail/virt.example/bob/", Maildir: true, UID: 5001, GID: 5000, User: "BOB@Virt.Example"}},
		// No per-user uid: the @domain entry.
		{addr("eve", "virt.example"), Mailbox{Path: "/var/vmail/virt.example/eve/", Maildir: true, UID: 5000, GID: 5000, User: "eve@virt.example"}},
		{addr("mbox", "virt.example"), Mailbox{Path: "/var/vmail/virt.example/mbox", Maildir: false, UID: 5000, GID: 5000, User: "mbox@virt.example"}},
		// Catch-all.
		{addr("anyone", "catch.example"), Mailbox{Path: "/var/vmail/catch.example/all/", Maildir: true, UID: 6000, GID: 5000, User: "anyone@catch.example"}},
		// User database: home + Maildir/, uid and gid from the maps.
		{addr("carol", "db.example"), Mailbox{Path: "/srv/home/carol/Maildir/", Maildir: true, UID: 5002, GID: 5000, User: "carol@db.example"}},
		{addr("carol+tag", "db.example"), Mailbox{Path: "/srv/home/carol/Maildir/", Maildir: true, UID: 5002, GID: 5000, User: "carol@db.example"}},
		// User database: its mail location and ids win.
		{addr("dave", "db.example"), Mailbox{Path: "/srv/mail/dave/", Maildir: true, UID: 7000, GID: 7001, User: "dave@db.example"}},
		// Its own uid, gid from the maps, an mbox location.
		{addr("frank", "db.example"), Mailbox{Path: "/srv/mail/frank", Maildir: false, UID: 7002, GID: 5000, User: "frank@db.example"}},
	} {
		got, err := r.VirtualMailbox(tc.a)
		if err != nil || got != tc.want {
			t.Errorf("VirtualMailbox(%s) = %+v, %v; want %+v", tc.a, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		a    address.Address
		want string
	}{
		{addr("root", "virt.example"), "never written as root"},      // uid 0 in the map
		{addr("evil", "virt.example"), "below virtual_mailbox_base"}, // ".."
		{addr("abs", "virt.example"), "below virtual_mailbox_base"},  // absolute path
		{addr("nobody", "virt.example"), "not in virtual_mailbox_maps"},
		{addr("nobody", "db.example"), "not in virtual_mailbox_maps"},
		{addr("zero", "db.example"), "uid 0"},
		{addr("empty", "db.example"), "neither a home nor a mail location"},
		{addr("broken", "db.example"), "user database"},
	} {
		mb, err := r.VirtualMailbox(tc.a)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("VirtualMailbox(%s) = %+v, %v; want an error with %q", tc.a, mb, err, tc.want)
		}
	}
}

func TestVirtualMailboxIDErrors(t *testing.T) {
	dir, users := setup(t)
	if err := os.WriteFile(filepath.Join(dir, "vgids"), []byte("bob@virt.example 0\n@virt.example many\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(baseConf, "virtual_gid_maps = static:5000", "virtual_gid_maps = texthash:vgids", 1)
	cfg, err := config.Parse(dir, []byte(conf), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, users)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a    address.Address
		want string
	}{
		{addr("bob", "virt.example"), "virtual_gid_maps gives id 0"},
		{addr("eve", "virt.example"), "not a number"},
		{addr("anyone", "catch.example"), "no entry in virtual_gid_maps"},
	} {
		mb, err := r.VirtualMailbox(tc.a)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("VirtualMailbox(%s) = %+v, %v; want an error with %q", tc.a, mb, err, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir, users := setup(t)
	for _, tc := range []struct {
		conf, want string
	}{
		{"myhostname = mail.example.com\nvirtual_mailbox_domains = Mail.Example.COM\nvirtual_mailbox_base = /var/vmail\n",
			"domain mail.example.com is in both mydestination and virtual_mailbox_domains"},
		{"myhostname = mail.example.com\nmydestination = a.example, b.example\nvirtual_mailbox_domains = c.example, B.example\nvirtual_mailbox_base = /var/vmail\n",
			"in both mydestination and virtual_mailbox_domains"},
		{"myhostname = mail.example.com\nvirtual_mailbox_domains = virt.example\n",
			"virtual_mailbox_base is empty"},
		{"myhostname = mail.example.com\nalias_maps = texthash:no-such-file\n",
			"alias_maps"},
		{"myhostname = mail.example.com\nvirtual_mailbox_domains = virt.example\nvirtual_mailbox_base = /v\nvirtual_mailbox_maps = texthash:missing\n",
			"virtual_mailbox_maps"},
		{"myhostname = mail.example.com\nmydestination = texthash:missing\n",
			"mydestination"},
	} {
		cfg, err := config.Parse(dir, []byte(tc.conf), nil)
		if err != nil {
			t.Fatalf("config %q: %v", tc.conf, err)
		}
		r, err := New(cfg, users)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) = %v, %v; want an error with %q", tc.conf, r, err, tc.want)
		}
	}
}

// The default configuration (with the default /etc/aliases swapped for a
// fixture) gives a working resolver with no virtual domains.
func TestDefaults(t *testing.T) {
	r := newResolver(t, "myhostname = mx.example.org\nalias_maps = texthash:aliases\n")
	if got := r.Classify(addr("u", "localhost.example.org")); got != Local {
		t.Errorf("localhost.$mydomain: %v", got)
	}
	if got := r.Classify(addr("u", "virt.example")); got != Remote {
		t.Errorf("no virtual domains: %v", got)
	}
	mb, err := r.LocalMailbox("alice+x")
	if err != nil || mb.Path != "/home/alice/Maildir/" {
		t.Errorf("default home_mailbox and delimiter: %+v, %v", mb, err)
	}
	if !slices.Equal([]string{"alice"}, r.candidates("alice")) {
		t.Errorf("candidates(alice) = %q", r.candidates("alice"))
	}
}

// BUG (reported, not fixed here): aliases(5) values are separated by
// commas or white space, and a value with either in it is quoted (see
// config.Table); Alias splits the raw text at commas only, so
// "spaced: alice bob" expands to the one bogus user "alice bob" and a
// quoted command is cut at its comma and keeps its quotes.
// Maps.LookupList already gives the parsed list.
func TestAliasWhiteSpaceAndQuotes(t *testing.T) {
	r := newResolver(t, baseConf)
	for local, want := range map[string][]string{
		"spaced": {"alice", "bob"},
		"quoted": {"|/usr/bin/vacation -a x,y", "alice"},
	} {
		if got, ok := r.Alias(local); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("Alias(%s) = %q, %v; want %q", local, got, ok, want)
		}
	}
}

// BUG (reported, not fixed here): address.SplitExtension documents that
// "user+" gives "user" and an empty extension, as Postfix's split_addr
// does, but candidates keeps the user only when the extension is not
// empty, so alice+@ is refused at RCPT time (550 5.1.1) although alice
// exists; Postfix delivers it to alice.
func TestEmptyExtension(t *testing.T) {
	r := newResolver(t, baseConf)
	if ok, why, err := r.Known(addr("alice+", "mail.example.com")); !ok || err != nil {
		t.Errorf("Known(alice+@mail.example.com) = %v, %q, %v; want true", ok, why, err)
	}
	if mb, err := r.LocalMailbox("alice+"); err != nil || mb.User != "alice" {
		t.Errorf("LocalMailbox(alice+) = %+v, %v", mb, err)
	}
	if ok, _, _ := r.Known(addr("bob+", "virt.example")); !ok {
		t.Error("Known(bob+@virt.example) = false")
	}
}

// GAP (reported, not fixed here): New refuses a domain that is in both
// mydestination and virtual_mailbox_domains only when
// virtual_mailbox_domains names it literally; one listed in a /path file
// or a type:name table there passes, and Classify then silently treats
// it as local.
func TestOverlapThroughDomainFile(t *testing.T) {
	dir, users := setup(t)
	file := filepath.Join(dir, "vdomains")
	if err := os.WriteFile(file, []byte("virt.example mail.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "myhostname = mail.example.com\nvirtual_mailbox_domains = " + file + "\nvirtual_mailbox_base = /var/vmail\n"
	cfg, err := config.Parse(dir, []byte(conf), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, users); err == nil || !strings.Contains(err.Error(), "in both") {
		t.Errorf("New with mail.example.com in a virtual domain file: %v; want the overlap error", err)
	}
}

// TestCatchAllAfterUserDB: a user of the user database in a domain with a
// catch-all gets the own mailbox, not the catch-all, and an address
// nobody has still goes to the catch-all.
func TestCatchAllAfterUserDB(t *testing.T) {
	r := newResolver(t, baseConf)
	db := newFakeDB()
	db.users["erin@catch.example"] = authclient.User{Name: "erin@catch.example", UID: 7003, GID: 7004, Mail: "/srv/mail/erin/"}
	r.SetUserDB(db)
	mb, err := r.VirtualMailbox(addr("erin", "catch.example"))
	if err != nil || mb.Path != "/srv/mail/erin/" || mb.UID != 7003 {
		t.Errorf("erin@catch.example: %+v, %v; want her own mailbox", mb, err)
	}
	mb, err = r.VirtualMailbox(addr("nobody", "catch.example"))
	if err != nil || mb.Path != "/var/vmail/catch.example/all/" {
		t.Errorf("nobody@catch.example: %+v, %v; want the catch-all", mb, err)
	}
}
