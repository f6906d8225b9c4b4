package route

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseForward(t *testing.T) {
	in := "# my forward\n\nbob@example.org, alice\n|/usr/bin/procmail -f- \"x\"\n\"|/usr/bin/vacation joe\" \\joe\n/home/joe/mbox ,:include:/etc/list\r\n  \"john doe\"@example.org\n"
	got, err := ParseForward([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bob@example.org", "alice", `|/usr/bin/procmail -f- "x"`, "|/usr/bin/vacation joe", `\joe`, "/home/joe/mbox", ":include:/etc/list", `"john doe"@example.org`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"\"unterminated\n", "a\x00b\n", "|\n", "\"\"\n"} {
		if l, err := ParseForward([]byte(bad)); err == nil {
			t.Errorf("ParseForward(%q) = %q, want an error", bad, l)
		}
	}
	if _, err := ParseForward([]byte(strings.Repeat("a,", MaxForwardTargets+1))); err == nil {
		t.Error("too many destinations accepted")
	}
}

func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind Kind
		op   string
		err  bool
	}{
		{"|cmd x", KindCommand, "cmd x", false},
		{"| ", 0, "", true},
		{"/var/x", KindFile, "/var/x", false},
		{"/var/Maildir/", KindFile, "/var/Maildir/", false},
		{":include:/etc/l", KindInclude, "/etc/l", false},
		{":INCLUDE: /etc/l", KindInclude, "/etc/l", false},
		{":include:etc/l", 0, "", true},
		{`\joe`, KindSelf, "joe", false},
		{`\`, 0, "", true},
		{"joe@x", KindAddress, "joe@x", false},
	} {
		k, op, err := Target(tc.in)
		if (err != nil) != tc.err || !tc.err && (k != tc.kind || op != tc.op) {
			t.Errorf("Target(%q) = %v %q %v", tc.in, k, op, err)
		}
	}
}

func FuzzForward(f *testing.F) {
	f.Add([]byte("a, b\n|cmd \"x\"\n\"|q, r\" /f :include:/i \\u\n# c\n"))
	f.Add([]byte("\"a\\\"b\"@c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseForward(data)
		if err != nil {
			return
		}
		if len(l) > MaxForwardTargets {
			t.Fatalf("%d destinations", len(l))
		}
		for _, x := range l {
			if strings.TrimSpace(x) == "" {
				t.Fatalf("empty destination from %q", data)
			}
			Target(x)
		}
	})
}
