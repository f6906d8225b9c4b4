package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		in        string
		utf8      bool
		want      Address
		canonical string
	}{
		{"", false, Address{}, ""},
		{"user@Example.ORG", false, Address{"user", "example.org"}, "user@example.org"},
		{"User.Name@example.org.", false, Address{"User.Name", "example.org"}, "User.Name@example.org"},
		{"a+b-c=d!#$%&'*/?^_`{|}~@x.example", false, Address{"a+b-c=d!#$%&'*/?^_`{|}~", "x.example"}, "a+b-c=d!#$%&'*/?^_`{|}~@x.example"},
		{`"john doe"@example.org`, false, Address{"john doe", "example.org"}, `"john doe"@example.org`},
		{`"a\"b\\c"@example.org`, false, Address{`a"b\c`, "example.org"}, `"a\"b\\c"@example.org`},
		{`"\a"@example.org`, false, Address{"a", "example.org"}, "a@example.org"},
		{`"a..b"@example.org`, false, Address{"a..b", "example.org"}, `"a..b"@example.org`},
		{`""@example.org`, false, Address{"", "example.org"}, `""@example.org`},
		{`"a>b"@example.org`, false, Address{"a>b", "example.org"}, `"a>b"@example.org`},
		{"postmaster", false, Address{"postmaster", ""}, "postmaster"},
		{"PostMaster", false, Address{"postmaster", ""}, "postmaster"},
		{"PostMaster@Example.org", false, Address{"PostMaster", "example.org"}, "PostMaster@example.org"},
		{"@a.example,@b.example:user@c.example", false, Address{"user", "c.example"}, "user@c.example"},
		{"@[192.0.2.1]:user@c.example", false, Address{"user", "c.example"}, "user@c.example"},
		{"user@[192.0.2.1]", false, Address{"user", "[192.0.2.1]"}, "user@[192.0.2.1]"},
		{"user@[IPv6:2001:DB8:0:0::1]", false, Address{"user", "[IPv6:2001:db8::1]"}, "user@[IPv6:2001:db8::1]"},
		{"user@[ipv6:::ffff:192.0.2.1]", false, Address{"user", "[IPv6:::ffff:192.0.2.1]"}, "user@[IPv6:::ffff:192.0.2.1]"},
		{"user@a-b.c1.example", false, Address{"user", "a-b.c1.example"}, "user@a-b.c1.example"},
		{"user@1.2.3.example", false, Address{"user", "1.2.3.example"}, "user@1.2.3.example"},
		{"用户@例子.广告", true, Address{"用户", "例子.广告"}, "用户@例子.广告"},
		{"Jörg@Bücher.EXAMPLE", true, Address{"Jörg", "bücher.example"}, "Jörg@bücher.example"},
		{`"jö rg"@example.org`, true, Address{"jö rg", "example.org"}, `"jö rg"@example.org`},
		{strings.Repeat("a", 64) + "@example.org", false, Address{strings.Repeat("a", 64), "example.org"}, ""},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in, tt.utf8)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
		if tt.canonical != "" && got.String() != tt.canonical {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got.String(), tt.canonical)
		}
		if got.IsASCII() == tt.utf8 {
			t.Errorf("Parse(%q).IsASCII() = %v", tt.in, got.IsASCII())
		}
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		in   string
		utf8 bool
		want error
	}{
		{"user", false, ErrSyntax},
		{"user@", false, ErrSyntax},
		{"@example.org", false, ErrSyntax},
		{".user@example.org", false, ErrSyntax},
		{"user.@example.org", false, ErrSyntax},
		{"us..er@example.org", false, ErrSyntax},
		{"us er@example.org", false, ErrSyntax},
		{"us(er@example.org", false, ErrSyntax},
		{"user@@example.org", false, ErrSyntax},
		{"user@exa mple.org", false, ErrSyntax},
		{"user@-example.org", false, ErrSyntax},
		{"user@example-.org", false, ErrSyntax},
		{"user@example..org", false, ErrSyntax},
		{"user@example.org..", false, ErrSyntax},
		{"user@.", false, ErrSyntax},
		{"user@ex_ample.org", false, ErrSyntax},
		{"user@1.2.3.4", false, ErrSyntax},
		{"user@[1.2.3]", false, ErrSyntax},
		{"user@[01.2.3.4]", false, ErrSyntax},
		{"user@[1.2.3.4", false, ErrSyntax},
		{"user@[IPv6:1.2.3.4]", false, ErrSyntax},
		{"user@[IPv6:fe80::1%eth0]", false, ErrSyntax},
		{"user@[::1]", false, ErrSyntax},
		{"user@[x-tag:abc]", false, ErrSyntax},
		{"user@example.org>", false, ErrSyntax},
		{`"unterminated@example.org`, false, ErrSyntax},
		{`"a"b@example.org`, false, ErrSyntax},
		{"user\x00@example.org", false, ErrSyntax},
		{"user\r@example.org", false, ErrSyntax},
		{"user@exa\nmple.org", false, ErrSyntax},
		{`"a\` + "\x01" + `"@example.org`, false, ErrSyntax},
		{"@a.example:", false, ErrSyntax},
		{"@a.example,b.example:user@c.example", false, ErrSyntax},
		{"@a_b:user@c.example", false, ErrSyntax},
		{"postmaster@", false, ErrSyntax},
		{"用户@example.org", false, ErrNonASCII},
		{"user@例子.广告", false, ErrNonASCII},
		{`"jö"@example.org`, false, ErrNonASCII},
		{"\xff@example.org", true, ErrSyntax},
		{"\xc2\x85@example.org", true, ErrSyntax},
		{strings.Repeat("a", 65) + "@example.org", false, ErrTooLong},
		{"a@" + strings.Repeat("b", 64) + ".example", false, ErrTooLong},
		{"a@" + strings.Repeat("b.", 130) + "example", false, ErrTooLong},
		{strings.Repeat("a", 60) + "@" + strings.Repeat("abcdefghi.", 20) + "example", false, ErrTooLong},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in, tt.utf8)
		if !errors.Is(err, tt.want) {
			t.Errorf("Parse(%q) = %#v, %v; want error %v", tt.in, got, err, tt.want)
		}
	}
}

func TestNull(t *testing.T) {
	a, err := Parse("", false)
	if err != nil || !a.IsNull() || a.String() != "" || !a.IsASCII() {
		t.Fatalf("null: %#v %v", a, err)
	}
	b, _ := Parse("postmaster", false)
	if b.IsNull() {
		t.Fatal("bare postmaster is null")
	}
}

func TestSplitExtension(t *testing.T) {
	tests := []struct{ local, delim, user, ext string }{
		{"user+tag", "+", "user", "tag"},
		{"user+tag+more", "+", "user", "tag+more"},
		{"user-tag", "+-", "user", "tag"},
		{"user+a-b", "-+", "user", "a-b"},
		{"user", "+", "user", ""},
		{"user+", "+", "user", ""},
		{"+user", "+", "+user", ""},
		{"user+tag", "", "user+tag", ""},
		{"postmaster+x", "+", "postmaster", "x"},
		{"PostMaster", "+", "PostMaster", ""},
		{"MAILER-DAEMON", "-", "MAILER-DAEMON", ""},
		{"owner-list", "-", "owner-list", ""},
		{"list-request", "-", "list-request", ""},
		{"owner+x", "+", "owner", "x"},
		{"list-request", "+", "list-request", ""},
		{"jörg+tag", "+", "jörg", "tag"},
	}
	for _, tt := range tests {
		u, e := SplitExtension(tt.local, tt.delim)
		if u != tt.user || e != tt.ext {
			t.Errorf("SplitExtension(%q, %q) = %q, %q; want %q, %q", tt.local, tt.delim, u, e, tt.user, tt.ext)
		}
	}
}

// FuzzParse checks that Parse never panics, respects its limits, and that
// the canonical form parses back to the same address.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "user@example.org", `"a b"@x.example`, "postmaster",
		"@a,@b:u@c.example", "u@[IPv6:::1]", "u@[1.2.3.4]", "用户@例子.广告", `"\"\\"@x.y`, "a.b.c@d-e.f."} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allowUTF8 bool) {
		a, err := Parse(s, allowUTF8)
		if err != nil {
			return
		}
		if len(a.Domain) > MaxDomain+len("[IPv6:]") {
			t.Fatalf("domain too long: %q", a.Domain)
		}
		if !allowUTF8 && !a.IsASCII() {
			t.Fatalf("non-ASCII accepted without SMTPUTF8: %q", s)
		}
		c := a.String()
		b, err := Parse(c, !a.IsASCII())
		if err != nil {
			// The canonical form may need more quoting octets than
			// the input had; only the length limits may bite.
			if errors.Is(err, ErrTooLong) {
				return
			}
			t.Fatalf("Parse(%q) ok, canonical %q fails: %v", s, c, err)
		}
		if b != a {
			t.Fatalf("Parse(%q) = %#v, canonical %q gives %#v", s, a, c, b)
		}
	})
}
