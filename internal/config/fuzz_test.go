package config

import (
	"strings"
	"testing"
)

// FuzzParse feeds postern.conf and services.conf contents to the parser:
// it must never panic, and a configuration it accepts must answer every
// accessor and give every service an address.
func FuzzParse(f *testing.F) {
	f.Add([]byte("myhostname = mail.example.com\nmydestination = $myhostname,\n  localhost\n"), []byte(DefaultServices))
	f.Add([]byte("mail_name = ${mail_name}\nsmtpd_banner = $(myhostname) $$ x\n"), []byte("submission inet n - - - - smtpd\n -o {smtpd_banner = x y}\n"))
	f.Add([]byte("mynetworks = [::1]/128 10.0.0.0/8\ninet_interfaces = loopback-only\nalias_maps = static:{a b}, hash:x\n"), []byte("[::1]:smtp inet - - - - - a\n"))
	f.Add([]byte("smtpd_timeout = 5w\nminimal_backoff_time=1\n#x\n\r\n"), []byte("x pass n n n 1 2 x -o mail_name=y\n"))
	f.Fuzz(func(t *testing.T, main, services []byte) {
		c, err := Parse("/etc/postern", main, services)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, s := range Settings() {
			v := c.Get(s.Name)
			_ = c.Raw(s.Name)
			switch s.Kind {
			case KindInt:
				if _, err := parseCount(v, 0, 0); err != nil {
					t.Fatalf("%s = %q accepted: %v", s.Name, v, err)
				}
			case KindDuration:
				if _, err := parseDuration(v, 0, 0); err != nil {
					t.Fatalf("%s = %q accepted: %v", s.Name, v, err)
				}
			case KindMaps:
				if _, err := parseMapList(v, "/etc/postern", false); err != nil {
					t.Fatalf("%s = %q accepted: %v", s.Name, v, err)
				}
			}
		}
		_ = c.Networks("mynetworks")
		_ = c.Interfaces()
		for _, s := range c.Services() {
			if _, err := s.ListenAddr(c); err != nil {
				t.Fatalf("service %+v accepted but: %v", s, err)
			}
			if _, err := c.ForService(s); err != nil {
				t.Fatalf("service %+v accepted but its options fail: %v", s, err)
			}
		}
		var b strings.Builder
		if err := c.Print(&b, false, nil); err != nil {
			t.Fatal(err)
		}
		// What Print shows for the settings that were given must
		// parse back to the same values.
		b.Reset()
		c.Print(&b, true, nil)
		c2, err := Parse("/etc/postern", []byte(b.String()), nil)
		if err != nil {
			t.Fatalf("Print output does not parse: %v\n%s", err, b.String())
		}
		for _, s := range Settings() {
			if c.Get(s.Name) != c2.Get(s.Name) {
				t.Fatalf("%s: %q after Print, was %q", s.Name, c2.Get(s.Name), c.Get(s.Name))
			}
		}
	})
}

// FuzzTable feeds table and aliases files to the table parser.
func FuzzTable(f *testing.F) {
	f.Add([]byte("a b\nc d, e\n  f\n# x\n"), false)
	f.Add([]byte("root: alice, \"|cmd a\", \"john doe\"@x\n  bob\n\"q n\": x\n"), true)
	f.Add([]byte("a: \"\\\"\"\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, aliases bool) {
		tb, err := ParseTable(data, "t", aliases)
		if err != nil {
			return
		}
		for _, k := range tb.Keys() {
			if _, ok := tb.Lookup(strings.ToUpper(k)); !ok && strings.ToLower(strings.ToUpper(k)) == k {
				t.Fatalf("key %q not found in upper case", k)
			}
			l, ok := tb.LookupList(k)
			if !ok {
				t.Fatalf("key %q lost", k)
			}
			if aliases && len(l) == 0 {
				t.Fatalf("alias %q without values", k)
			}
		}
	})
}

// FuzzValue checks single values of every kind against the checks, and
// the splitters and expansion directly.
func FuzzValue(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8 [::1]/128", "all", "5d", "yes", "static:{a}", "$myhostname${mail_name}$(x)$$", "{a {b} c}", "[::ffff:1.2.3.4]/120"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for i := range table {
			_ = checkValue(&table[i], v)
		}
		_, _ = splitList(v)
		_, _ = splitFields(v)
		_, _ = splitAliasValues(v)
		_, _ = parseInetName(v)
		_, _ = expand(v, func(string) (string, error) { return v, nil })
		_ = suggest(v)
	})
}
