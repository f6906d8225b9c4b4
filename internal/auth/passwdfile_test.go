package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadFixture(t *testing.T) *DB {
	t.Helper()
	db, err := Load("testdata/users.passwd", "testdata/crlf.passwd")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return db
}

func TestLoadFixture(t *testing.T) {
	db := loadFixture(t)
	if db.Len() != 8 {
		t.Fatalf("Len = %d, want 8", db.Len())
	}
	tests := []struct {
		name, canon    string
		uid, gid       int
		home, mail     string
		hasPassword    bool
		extraKey, xval string
	}{
		{"ALICE@example.org", "alice@example.org", 5000, 5000, "/var/vmail/example.org/alice", "/var/vmail/example.org/alice/Maildir/", true, "", ""},
		{"bob@example.org", "bob@example.org", 5000, 5000, "/var/vmail/example.org/bob", "/var/vmail/example.org/bob/mail/", true, "quota_rule", "*:storage=1G"},
		{"carol", "carol", 1001, 1001, "/home/carol", "/home/carol/Maildir/", true, "allow_nets", "192.0.2.0/24,2001:db8::/32,local"},
		{"dave@example.net", "dave@example.net", 5001, 5001, "/srv/mail/dave", "/srv/vmail/example.net/dave/", true, "mail", "/srv/vmail/%d/%n/"},
		{"erin@example.net", "erin@example.net", 5001, 5001, "/srv/mail/erin", "/srv/mail/erin/Maildir/", false, "reason", "moved"},
		{"frank@example.net", "frank@example.net", 5001, 5001, "/srv/mail/frank", "/srv/mail/frank/Maildir/", false, "", ""},
		{"grace@example.net", "grace@example.net", -1, -1, "", "", true, "", ""},
		{"Henry@Example.com", "henry@example.com", 5002, 5002, "/var/vmail/henry", "/var/vmail/henry/Maildir/", true, "", ""},
	}
	for _, tt := range tests {
		u, ok := db.Lookup(tt.name)
		if !ok {
			t.Errorf("Lookup(%q): not found", tt.name)
			continue
		}
		if u.Name != tt.canon || u.UID != tt.uid || u.GID != tt.gid || u.Home != tt.home || u.Mail != tt.mail || u.HasPassword() != tt.hasPassword {
			t.Errorf("Lookup(%q) = %+v", tt.name, u)
		}
		if tt.extraKey != "" && u.Extra[tt.extraKey] != tt.xval {
			t.Errorf("%s: Extra[%s] = %q, want %q", tt.name, tt.extraKey, u.Extra[tt.extraKey], tt.xval)
		}
	}
	if _, ok := db.Lookup("nobody@example.org"); ok {
		t.Error("Lookup of an unknown user succeeded")
	}
	if _, ok := db.Lookup("bad name"); ok {
		t.Error("Lookup of an invalid name succeeded")
	}
	if u, _ := db.Lookup("alice@example.org"); u.File != "testdata/users.passwd" || u.Line != 4 {
		t.Errorf("alice at %s:%d", u.File, u.Line)
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	_, err := Load("testdata/bad.passwd")
	if err == nil {
		t.Fatal("Load of bad.passwd succeeded")
	}
	msg := err.Error()
	want := []string{
		"testdata/bad.passwd:2: user plain@example.org: {PLAIN}: clear-text passwords are refused",
		"testdata/bad.passwd:3: user md5@example.org: crypt id $1$ is not",
		"testdata/bad.passwd:4: user root@example.org: uid: 0 (root) is not allowed",
		"testdata/bad.passwd:5: user rel@example.org: home \"var/vmail\": not an absolute path",
		"testdata/bad.passwd:6: user nocolon: no password field",
		"testdata/bad.passwd:8: user \"alice@example.org\" already defined at testdata/bad.passwd:7",
		"testdata/bad.passwd:9: user mbox@example.org: mail location \"mbox:~/mail\": format \"mbox\": only maildir",
		"testdata/bad.passwd:10: user costly@example.org: ARGON2ID: m=4194304 not in 8..1048576",
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q; got:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "secret") {
		t.Errorf("error quotes a clear-text password:\n%s", msg)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != "testdata/bad.passwd" {
		t.Errorf("errors.As ParseError: %v", pe)
	}
	if !errors.Is(err, errUnsupported) {
		t.Error("error does not wrap errUnsupported")
	}
}

func TestParseLineErrors(t *testing.T) {
	const h = "{BLF-CRYPT}$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy"
	tests := []struct{ line, want string }{
		{"a b:" + h, "white space"},
		{":" + h, "empty user name"},
		{"@example.org:" + h, "not user or user@domain"},
		{"a@b@c:" + h, "not user or user@domain"},
		{"a\x01b:" + h, "control character"},
		{"a:" + h + ":x", "uid: \"x\" is not a number"},
		{"a:" + h + ":+5", "uid: \"+5\" is not a number"},
		{"a:" + h + ":5:4294967295", "gid: 4294967295"},
		{"a:" + h + ":5:5::/x/../y", ". or .. components"},
		{"a:{SHA256-CRYPT}$5$x$y", "{SHA256-CRYPT}"},
		{"a:{}x", "empty scheme"},
		{"a:{BLF-CRYPTx", "no closing }"},
		{"a:{ARGON2ID}$6$salt$" + strings.Repeat("a", 86), "data is a SHA512-CRYPT hash"},
		{"a:{SHA512-CRYPT}$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy", "data is a BLF-CRYPT hash"},
		{"a:{SHA512-CRYPT}nothing", "data is not a SHA512-CRYPT hash"},
		{"a:{CRYPT}", "empty password field"},
		{"a:secretpassword", "not a hash of"},
		{"a:$2x$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy", "$2x$"},
		{"a:$2b$04$short", "malformed"},
		{"a:$2b$99$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy", "bad cost"},
		{"a:$2b$20$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy", "cost 20 over the limit"},
		{"a:$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Iv!", "bad character"},
		{"a:$argon2id$v=16$m=64,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "not v=19"},
		{"a:$argon2id$v=19$t=1,m=64,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "not m=M,t=T,p=P"},
		{"a:$argon2id$v=19$m=64,t=0,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "t=0"},
		{"a:$argon2id$v=19$m=64,t=1,p=0$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "p=0"},
		{"a:$argon2id$v=19$m=4,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "m=4"},
		{"a:$argon2id$v=19$m=64,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w==$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "salt"},
		{"a:$argon2id$v=19$m=64,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w$AAAA", "hash is not 16"},
		{"a:$argon2id$v=19$m=64,t=1,p=1$KHHZ", "malformed"},
		{"a:$6$rounds=x$salt$" + strings.Repeat("a", 86), "bad rounds"},
		{"a:$6$rounds=99999999$salt$" + strings.Repeat("a", 86), "over the limit"},
		{"a:$6$salt$short", "hash is not 86"},
		{"a:$6$saltonly", "malformed"},
		{"a:" + h + ":5:5::/h::mail=~other/x", "~user"},
		{"a:" + h + ":5:5::::mail=~/x", "no home"},
		{"a:" + h + ":5:5::/h::mail=maildir:/v/%d", "has none"},
		{"a:" + h + ":5:5::/h::mail=maildir:/v/%q", "unknown variable"},
		{"a:" + h + ":5:5::/h::mail=maildir:/v/%", "ends in %"},
		{"a:" + h + ":5:5::/h::mail=maildir:/v/%{user", "without }"},
		{"a:" + h + ":5:5::/h::mail=relative", "absolute"},
		{"a/b:" + h + ":5:5::/h::mail=/v/%u", "would put a /"},
		{"a@..:" + h + ":5:5::/h::mail=/v/%d", ". or .."},
		{"a:" + h + ":5:5::/h::allow_nets=10.0.0.0/99", "allow_nets"},
		{"a:" + h + ":5:5::/h::=x", "no name"},
		{"a\xff:" + h, "UTF-8"},
		{strings.Repeat("a", MaxUserLen+1) + ":" + h, "longer than"},
	}
	for _, tt := range tests {
		_, err := parseLine(tt.line)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseLine(%.60q) = %v, want error with %q", tt.line, err, tt.want)
		}
	}
}

func TestMailLocations(t *testing.T) {
	const h = "{BLF-CRYPT}$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy"
	tests := []struct{ extra, want string }{
		{"", "/home/u/Maildir/"},
		{"mail=maildir:~/Maildir", "/home/u/Maildir/"},
		{"MAIL=Maildir:~/Maildir:INBOX=~/Maildir/.INBOX:LAYOUT=fs", "/home/u/Maildir/"},
		{"userdb_mail=maildir:/var/vmail/%d/%n mail=maildir:/elsewhere", "/var/vmail/example.org/user/"},
		{"mail=/var/vmail/%{domain}/%{username}/Maildir/", "/var/vmail/example.org/user/Maildir/"},
		{"mail=%h/mail", "/home/u/mail/"},
		{"mail=/v/%u", "/v/user@example.org/"},
		{"mail=/v/100%%", "/v/100%/"},
		{"mail=~", "/home/u/"},
	}
	for _, tt := range tests {
		u, err := parseLine("User@Example.org:" + h + ":5:5::/home/u/::" + tt.extra)
		if err != nil {
			t.Errorf("%q: %v", tt.extra, err)
			continue
		}
		if u.Mail != tt.want {
			t.Errorf("%q: Mail = %q, want %q", tt.extra, u.Mail, tt.want)
		}
	}
}

func TestAllowNets(t *testing.T) {
	db := loadFixture(t)
	carol, _ := db.Lookup("carol")
	for addr, want := range map[string]bool{
		"192.0.2.9": true, "::ffff:192.0.2.9": true, "2001:db8::1": true, "": true,
		"198.51.100.1": false, "2001:db9::1": false, "garbage": false,
	} {
		if got := carol.allowedFrom(addr); got != want {
			t.Errorf("allowedFrom(%q) = %v, want %v", addr, got, want)
		}
	}
	alice, _ := db.Lookup("alice@example.org")
	if !alice.allowedFrom("198.51.100.1") {
		t.Error("a user without allow_nets is refused")
	}
}

func TestLoadLimitsAndWarnings(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long")
	data := "a:" + strings.Repeat("x", MaxLineLen) + "\n" +
		"b@x:{BLF-CRYPT}$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy:5:5::/h::nopassword\n"
	os.WriteFile(long, []byte(data), 0o600)
	if _, err := Load(long); err == nil || !strings.Contains(err.Error(), long+":1: line longer than") {
		t.Errorf("over-long line: %v", err)
	}
	// The over-long line does not hide the next one's line number.
	os.WriteFile(long, []byte(data+"c:{PLAIN}x\n"), 0o600)
	if _, err := Load(long); err == nil || !strings.Contains(err.Error(), long+":3:") {
		t.Errorf("line after an over-long line: %v", err)
	}

	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte(data[strings.IndexByte(data, '\n')+1:]), 0o644)
	db, err := Load(ok)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(db.Warnings(), "\n")
	if !strings.Contains(w, "readable by every user") || !strings.Contains(w, ok+":1: user b@x: nopassword is not honoured") {
		t.Errorf("warnings = %q", w)
	}
	if u, _ := db.Lookup("b@x"); u.HasPassword() {
		t.Error("nopassword user can log in")
	}

	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	// Across files, a user may be defined once.
	if _, err := Load(ok, ok); err == nil || !strings.Contains(err.Error(), ok+":1: user \"b@x\" already defined at "+ok+":1") {
		t.Errorf("duplicate across files: %v", err)
	}

	var many strings.Builder
	for range 50 {
		many.WriteString("x:{PLAIN}y\n")
	}
	if _, err := Parse("many", []byte(many.String())); err == nil || !strings.Contains(err.Error(), "and 30 more errors") {
		t.Errorf("many errors: %v", err)
	}
	if db, err := Parse("empty", nil); err != nil || db.Len() != 0 {
		t.Errorf("empty file: %v", err)
	}
}

func TestCanonicalUser(t *testing.T) {
	for in, want := range map[string]string{"Bob": "bob", "Bob@Example.ORG": "bob@example.org", "ÄRGER@x": "ärger@x"} {
		if got, err := CanonicalUser(in); err != nil || got != want {
			t.Errorf("CanonicalUser(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "a b", "a:b", "a\tb", "a@", "@a", "a@b@c", "a\u00a0b"} {
		if _, err := CanonicalUser(in); err == nil {
			t.Errorf("CanonicalUser(%q) succeeded", in)
		}
	}
}
