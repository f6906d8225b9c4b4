package auth

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// cheapLimits lowers the cost limits so that a fuzzed hash cannot make
// one iteration take seconds; parsing is what is under test.
func cheapLimits(t testing.TB) {
	old := costLimits
	costLimits.bcryptCost = 5
	costLimits.argonMemory = 256
	costLimits.argonTime = 2
	costLimits.argonThreads = 2
	costLimits.shaRounds = 2000
	t.Cleanup(func() { costLimits = old })
}

func FuzzParsePasswdFile(f *testing.F) {
	for _, name := range []string{"testdata/users.passwd", "testdata/bad.passwd", "testdata/crlf.passwd"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a:{BLF-CRYPT}$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy:1:1::/h::mail=maildir:%h/%{user}/x:y allow_nets=::1/128,local nologin\n"))
	f.Add([]byte("#\n\n  \nx@y::::::::::\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cheapLimits(t)
		db, err := Parse("fuzz", data)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz:") {
				t.Fatalf("error without its place: %v", err)
			}
			return
		}
		for _, u := range db.Users() {
			got, ok := db.Lookup(u.Name)
			if !ok || got != u {
				t.Fatalf("user %q from the file cannot be looked up", u.Name)
			}
			if u.Home != "" && !strings.HasPrefix(u.Home, "/") {
				t.Fatalf("relative home %q", u.Home)
			}
			if u.Mail != "" && (!strings.HasPrefix(u.Mail, "/") || !strings.HasSuffix(u.Mail, "/") || strings.Contains(u.Mail, "/../")) {
				t.Fatalf("bad mailbox %q", u.Mail)
			}
			if u.UID == 0 || u.GID == 0 {
				t.Fatalf("uid/gid 0 accepted")
			}
			u.allowedFrom("192.0.2.1")
			u.allowedFrom("")
		}
	})
}

func FuzzVerify(f *testing.F) {
	for _, v := range sha512Vectors {
		f.Add(v.want, v.password)
	}
	for _, v := range bcryptVectors {
		f.Add(v.hash, v.password)
	}
	f.Add("{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c", "alice-secret")
	f.Add("{ARGON2I}$argon2i$v=19$m=64,t=2,p=2$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA", "x")
	f.Add("{SHA512-CRYPT}$6$rounds=1000$$"+strings.Repeat(".", 86), "")
	f.Add("{PLAIN}x", "x")
	f.Add("{", "")
	f.Fuzz(func(t *testing.T, field, password string) {
		cheapLimits(t)
		if len(password) > 4*MaxPasswordLen {
			return
		}
		ok, err := Verify(field, password)
		if err != nil && ok {
			t.Fatal("match with an error")
		}
		if err == nil {
			plain := utf8.ValidString(field) && !strings.ContainsFunc(field, func(r rune) bool { return r < 0x20 || r == 0x7f || r == ':' })
			if _, err := parseLine("u:" + field); err != nil && plain {
				t.Fatalf("Verify accepts %q but the parser does not: %v", field, err)
			}
		}
	})
}
