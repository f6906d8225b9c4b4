package auth

import (
	"os/exec"
	"strings"
	"testing"
)

// Vectors from Drepper's specification (its SHA-512 test table), checked
// against glibc/libxcrypt crypt(3) on the development machine.
var sha512Vectors = []struct{ salt, password, want string }{
	{"$6$saltstring", "Hello world!",
		"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"$6$rounds=10000$saltstringsaltstring", "Hello world!",
		"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"$6$rounds=5000$toolongsaltstring", "This is just a test",
		"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.",
		"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
	{"$6$rounds=77777$short", "we have a short salt string but not a short password",
		"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	{"$6$rounds=123456$asaltof16chars..", "a short string",
		"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
	{"$6$rounds=10$roundstoolow", "the minimum number is still observed",
		"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
}

func TestSHA512CryptVectors(t *testing.T) {
	for _, v := range sha512Vectors {
		h, err := parseSHA512(v.want)
		if err != nil {
			t.Fatalf("%s: %v", v.want, err)
		}
		if !h.verify(v.password) {
			t.Errorf("%s: does not verify %q", v.want, v.password)
		}
		if h.verify(v.password + "x") {
			t.Errorf("%s: verifies a wrong password", v.want)
		}
		// And computed from the salt string as given, with the
		// specification's clamping and salt cutting.
		s := strings.TrimPrefix(v.salt, "$6$")
		rounds := sha512DefaultRounds
		if r, ok := strings.CutPrefix(s, "rounds="); ok {
			num, rest, _ := strings.Cut(r, "$")
			rounds = 0
			for _, c := range num {
				rounds = rounds*10 + int(c-'0')
			}
			rounds = max(rounds, sha512MinRounds)
			s = rest
		}
		if len(s) > sha512SaltMax {
			s = s[:sha512SaltMax]
		}
		sum := sha512Crypt([]byte(v.password), []byte(s), rounds)
		if !strings.HasSuffix(v.want, "$"+sum) {
			t.Errorf("sha512Crypt(%q, %q, %d) = %s, want the end of %s", v.password, s, rounds, sum, v.want)
		}
	}
}

// TestSHA512CryptOpenSSL checks hashes made by openssl passwd -6, when
// openssl is installed.
func TestSHA512CryptOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, pw := range []string{"x", "correct horse battery staple", strings.Repeat("long", 40), "ünïcødé"} {
		out, err := exec.Command("openssl", "passwd", "-6", "-salt", "Zq1/xy.9", pw).Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		field := strings.TrimSpace(string(out))
		if ok, err := Verify("{SHA512-CRYPT}"+field, pw); !ok || err != nil {
			t.Errorf("openssl hash %s of %q: %v %v", field, pw, ok, err)
		}
		if ok, _ := Verify(field, pw+"!"); ok {
			t.Errorf("openssl hash %s verifies a wrong password", field)
		}
	}
}

// Openwall crypt_blowfish's test vectors (wrapper.c).
var bcryptVectors = []struct{ hash, password string }{
	{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK", "U*U*"},
	{"$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a", "U*U*U"},
	{"$2b$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
		"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored"},
	{"$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
		"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored as usual"},
	{"$2y$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e", "\xff\xff\xa3"},
	{"$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e", "\xff\xff\xa3"},
}

func TestBcryptVectors(t *testing.T) {
	for _, v := range bcryptVectors {
		for _, f := range []string{v.hash, "{BLF-CRYPT}" + v.hash, "{bcrypt}" + v.hash, "{CRYPT}" + v.hash} {
			ok, err := Verify(f, v.password)
			if err != nil || !ok {
				t.Errorf("Verify(%s, %.20q) = %v, %v", f, v.password, ok, err)
			}
		}
		if ok, _ := Verify(v.hash, "U*U*U*U"); ok {
			t.Errorf("%s verifies a wrong password", v.hash)
		}
	}
}

// The reference implementation's vectors (phc-winner-argon2 test.c).
func TestArgon2Vectors(t *testing.T) {
	for _, f := range []string{
		"{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"{ARGON2I}$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
	} {
		if ok, err := Verify(f, "password"); !ok || err != nil {
			t.Errorf("Verify(%s) = %v, %v", f, ok, err)
		}
	}
	if ok, _ := Verify("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "passwore"); ok {
		t.Error("argon2id verifies a wrong password")
	}
}

func TestHashRoundTrip(t *testing.T) {
	for _, scheme := range []string{"", "argon2id", "ARGON2I", "BLF-CRYPT", "bcrypt", "SHA512-CRYPT"} {
		pw := "pässword with spaces " + scheme
		f, err := Hash(scheme, pw)
		if err != nil {
			t.Fatalf("Hash(%q): %v", scheme, err)
		}
		want := strings.ToUpper(scheme)
		switch want {
		case "":
			want = DefaultScheme
		case "BCRYPT":
			want = SchemeBlowfish
		}
		if !strings.HasPrefix(f, "{"+want+"}") {
			t.Errorf("Hash(%q) = %s", scheme, f)
		}
		if ok, err := Verify(f, pw); !ok || err != nil {
			t.Errorf("Verify(Hash(%q)) = %v, %v", scheme, ok, err)
		}
		if ok, _ := Verify(f, pw[:len(pw)-1]); ok {
			t.Errorf("Hash(%q) verifies a wrong password", scheme)
		}
		if g, _ := Hash(scheme, pw); g == f {
			t.Errorf("Hash(%q) twice gave the same salt", scheme)
		}
	}
	// The parameters the man page promises.
	f, _ := Hash("", "x")
	if !strings.HasPrefix(f, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Errorf("default hash %s", f)
	}
	if f, _ := Hash("blf-crypt", "x"); !strings.HasPrefix(f, "{BLF-CRYPT}$2b$10$") {
		t.Errorf("bcrypt hash %s", f)
	}
	if f, _ := Hash("sha512-crypt", "x"); !strings.HasPrefix(f, "{SHA512-CRYPT}$6$rounds=200000$") {
		t.Errorf("sha512 hash %s", f)
	}
}

func TestHashRefuses(t *testing.T) {
	for _, c := range []struct{ scheme, pw, want string }{
		{"PLAIN", "x", "unknown scheme"},
		{"MD5-CRYPT", "x", "unknown scheme"},
		{"", "", "empty password"},
		{"", strings.Repeat("x", MaxPasswordLen+1), "longer than"},
		{"BLF-CRYPT", strings.Repeat("x", 73), "first 72 bytes"},
	} {
		if _, err := Hash(c.scheme, c.pw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Hash(%q, %d bytes) = %v, want %q", c.scheme, len(c.pw), err, c.want)
		}
	}
}

func TestVerifyLongPassword(t *testing.T) {
	f := "{SHA512-CRYPT}$6$rounds=1000$2ruuE4NIBvAAeeIC$/C9BBWmEDOhIeJ9Z8OafTF4qbThkaC1OlahkMcSE4p6Jg6AsgC582ohyfYXnPI9Hslv4YnBbh/f9eTON/DXLf1"
	if ok, err := Verify(f, strings.Repeat("x", MaxPasswordLen+1)); ok || err != nil {
		t.Errorf("over-long password: %v %v", ok, err)
	}
	if ok, err := Verify(f, "carol-secret"); !ok || err != nil {
		t.Errorf("carol: %v %v", ok, err)
	}
}

func TestDummyLike(t *testing.T) {
	for _, f := range []string{
		"$2b$04$DsWt6ms6Qy3ELu2Qot0fmun/dl/oJb8ne8y7ZDYwcVgj0bDPv3Ivy",
		"$argon2id$v=19$m=64,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c",
		"$argon2i$v=19$m=64,t=1,p=1$KHHZtJk0iswFOc+e8iVy2w$Q902hMuFfdCRzFx0M8djn0h/BdO0uOzCWtC7wd43p/c",
		"$6$rounds=1000$2ruuE4NIBvAAeeIC$/C9BBWmEDOhIeJ9Z8OafTF4qbThkaC1OlahkMcSE4p6Jg6AsgC582ohyfYXnPI9Hslv4YnBbh/f9eTON/DXLf1",
		"$6$2ruuE4NIBvAAeeIC$/C9BBWmEDOhIeJ9Z8OafTF4qbThkaC1OlahkMcSE4p6Jg6AsgC582ohyfYXnPI9Hslv4YnBbh/f9eTON/DXLf1",
	} {
		h, err := parseHash(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := dummyLike(h)
		if err != nil {
			t.Fatal(err)
		}
		if d.costKey() != h.costKey() {
			t.Errorf("dummy of %s has cost %s, want %s", f, d.costKey(), h.costKey())
		}
	}
}
