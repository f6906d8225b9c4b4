package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "virtual", `# virtual
Alice@Example.ORG   alice@here.test
bob@example.org	bob, carol
   dave
# comment
  # indented comment

postmaster@example.org  root   `)
	tb, err := LoadTable(p)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 3 || tb.Path() != p {
		t.Errorf("Len %d Path %s", tb.Len(), tb.Path())
	}
	for k, want := range map[string]string{
		"alice@example.org":      "alice@here.test",
		"ALICE@example.org":      "alice@here.test",
		"bob@example.org":        "bob, carol dave",
		"postmaster@example.org": "root",
	} {
		if v, ok := tb.Lookup(k); !ok || v != want {
			t.Errorf("Lookup(%s) = %q, %v", k, v, ok)
		}
	}
	if _, ok := tb.Lookup("nobody"); ok {
		t.Error("Lookup(nobody) hit")
	}
	if l, ok := tb.LookupList("bob@example.org"); !ok || !reflect.DeepEqual(l, []string{"bob", "carol", "dave"}) {
		t.Errorf("LookupList = %q", l)
	}
	if !reflect.DeepEqual(tb.Keys(), []string{"alice@example.org", "bob@example.org", "postmaster@example.org"}) {
		t.Errorf("Keys = %q", tb.Keys())
	}
	var nt *Table
	if _, ok := nt.Lookup("x"); ok || nt.Len() != 0 {
		t.Error("nil table")
	}
}

func TestTableErrors(t *testing.T) {
	cases := []struct {
		data    string
		aliases bool
		want    string
	}{
		{"key\n", false, "t:1: key \"key\" without a value"},
		{"a 1\n\nA 2\n", false, "t:3: key \"a\" given again (first at line 1)"},
		{" cont\n", false, "t:1: continuation line"},
		{"a " + strings.Repeat("x", maxLine) + "\n", false, "t:1: line longer than 65536 bytes"},
		{"a b\x00\n", false, "t:1: NUL byte"},
		{"root root\n", true, "t:1: missing ':'"},
		{": x\n", true, "t:1: empty alias name"},
		{"a b: x\n", true, "t:1: alias name \"a b\" has white space"},
		{"a:\n", true, "t:1: alias a has no value"},
		{"a: ,, \n", true, "alias a has no value"},
		{"a: \"|cmd\n", true, "unterminated quote"},
		{"\"a: x\n", true, "unterminated quote"},
		{"\"a\" x\n", true, "missing ':' after the alias name"},
		{"a: x\nA: y\n", true, "t:2: key \"a\" given again"},
		{"a: \"\"\n", true, "empty quoted value"},
	}
	for _, tc := range cases {
		_, err := ParseTable([]byte(tc.data), "t", tc.aliases)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTable(%q, %v) = %v; want %q", truncate(tc.data), tc.aliases, err, tc.want)
		}
		var errs *Errors
		if err != nil && !errors.As(err, &errs) {
			t.Errorf("error is %T", err)
		}
	}
	// Every bad line is reported.
	_, err := ParseTable([]byte("a\nb\nc d\ne\n"), "t", false)
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("errors = %v", err)
	}
	dir := t.TempDir()
	if _, err := LoadTable(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing table: %v", err)
	}
	big := filepath.Join(dir, "big")
	f, _ := os.Create(big)
	f.Truncate(maxTableFile + 1)
	f.Close()
	if _, err := LoadTable(big); err == nil || !errors.Is(err, errTooBig) {
		t.Errorf("big table: %v", err)
	}
}

func TestAliases(t *testing.T) {
	tb, err := ParseTable([]byte(`# /etc/aliases
postmaster: root
Root:	alice, bob
	carol@example.org,
  "|/usr/bin/procmail -a \"x\"", /var/log/all\ mail
list: :include:/etc/list, "/var/spool/list archive", "john doe"@example.org alice
"odd name": alice
nocomma: a b	c
`), "aliases", true)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][]string{
		"postmaster": {"root"},
		"root":       {"alice", "bob", "carol@example.org", `|/usr/bin/procmail -a "x"`, `/var/log/all\`, "mail"},
		"list":       {":include:/etc/list", "/var/spool/list archive", `"john doe"@example.org`, "alice"},
		"odd name":   {"alice"},
		"nocomma":    {"a", "b", "c"},
	} {
		got, ok := tb.LookupList(k)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("LookupList(%s) = %q, want %q", k, got, want)
		}
	}
	if v, _ := tb.Lookup("postmaster"); v != "root" {
		t.Errorf("Lookup = %q", v)
	}
	// The list is a copy.
	l, _ := tb.LookupList("postmaster")
	l[0] = "x"
	if l2, _ := tb.LookupList("postmaster"); l2[0] != "root" {
		t.Error("LookupList does not copy")
	}
}

func TestMaps(t *testing.T) {
	withHostname(t, "mail.example.com")
	dir := t.TempDir()
	writeFile(t, dir, "aliases", "root: alice, \"|cmd x\"\n")
	writeFile(t, dir, "one", "a@x 1\n")
	writeFile(t, dir, "two", "a@x 2\nb@x 2, 3\n")
	writeFile(t, dir, MainFile, `alias_maps = texthash:$config_directory/aliases
virtual_mailbox_maps = hash:one, `+dir+`/two, static:{fall back}
virtual_uid_maps = static:5000
`)
	writeFile(t, dir, ServicesFile, "")
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Maps("virtual_mailbox_maps")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"hash:" + dir + "/one", "texthash:" + dir + "/two", "static:{fall back}"}
	for i, r := range m {
		if r.String() != want[i] {
			t.Errorf("map %d = %s, want %s", i, r, want[i])
		}
	}
	if m[0].Table() == nil || m[2].Table() != nil {
		t.Error("Table()")
	}
	for k, w := range map[string]string{"A@X": "1", "b@x": "2, 3", "c@x": "fall back"} {
		if v, ok := m.Lookup(k); !ok || v != w {
			t.Errorf("Lookup(%s) = %q, %v", k, v, ok)
		}
	}
	if l, _ := m.LookupList("b@x"); !reflect.DeepEqual(l, []string{"2", "3"}) {
		t.Errorf("LookupList = %q", l)
	}
	if l, _ := m.LookupList("zz"); !reflect.DeepEqual(l, []string{"fall back"}) {
		t.Errorf("LookupList static = %q", l)
	}
	a, err := c.Maps("alias_maps")
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := a.LookupList("ROOT"); !ok || !reflect.DeepEqual(l, []string{"alice", "|cmd x"}) {
		t.Errorf("alias lookup = %q", l)
	}
	if u, err := c.Maps("virtual_uid_maps"); err != nil || len(u) != 1 {
		t.Errorf("uid maps %v %v", u, err)
	} else if v, _ := u.Lookup("anyone"); v != "5000" {
		t.Errorf("static = %q", v)
	}
	if e, err := c.Maps("virtual_gid_maps"); err != nil || e != nil {
		t.Errorf("empty maps = %v, %v", e, err)
	} else if _, ok := e.Lookup("x"); ok {
		t.Error("empty maps hit")
	}
	if _, err := c.Maps("mail_name"); err == nil {
		t.Error("Maps of a non-map setting")
	}
	if err := c.CheckMaps(); err != nil {
		t.Errorf("CheckMaps: %v", err)
	}
	// A missing table is found by Maps and CheckMaps, not by Load.
	os.Remove(filepath.Join(dir, "two"))
	c, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Maps("virtual_mailbox_maps"); err == nil || !strings.Contains(err.Error(), "virtual_mailbox_maps") {
		t.Errorf("missing table: %v", err)
	}
	if err := c.CheckMaps(); err == nil {
		t.Error("CheckMaps missed a missing table")
	}
}

func TestDomains(t *testing.T) {
	withHostname(t, "mail.example.com")
	dir := t.TempDir()
	writeFile(t, dir, "vdomains", "# domains\nv1.example, V2.example\n  v3.example\n")
	writeFile(t, dir, "vtable", "v4.example ok\n")
	c := mustParseDir(t, dir, "virtual_mailbox_domains = "+dir+"/vdomains texthash:vtable Literal.Example.\n")
	d, err := c.Domains("virtual_mailbox_domains")
	if err != nil {
		t.Fatal(err)
	}
	for dom, want := range map[string]bool{
		"v1.example": true, "v2.example": true, "V3.EXAMPLE.": true, "v4.example": true,
		"literal.example": true, "sub.v1.example": false, "example": false, "": false,
	} {
		if got := d.Match(dom); got != want {
			t.Errorf("Match(%q) = %v", dom, got)
		}
	}
	m, err := c.Domains("mydestination")
	if err != nil || !m.Match("localhost.example.com") || !m.Match("MAIL.example.com") || m.Match("example.com") {
		t.Errorf("mydestination: %v", err)
	}
	if m.Empty() {
		t.Error("Empty")
	}
	e := mustParseDir(t, dir, "")
	if v, err := e.Domains("virtual_mailbox_domains"); err != nil || !v.Empty() || v.Match("x") {
		t.Errorf("empty domains: %v", err)
	}
	if _, err := c.Domains("mail_name"); err == nil {
		t.Error("Domains of a non-domain setting")
	}
	writeFile(t, dir, "bad", "ok.example\nbad..example\n")
	b := mustParseDir(t, dir, "virtual_mailbox_domains = "+dir+"/bad\n")
	if _, err := b.Domains("virtual_mailbox_domains"); err == nil || !strings.Contains(err.Error(), "bad:2:") {
		t.Errorf("bad domain file: %v", err)
	}
	if err := b.CheckMaps(); err == nil {
		t.Error("CheckMaps missed a bad domain file")
	}
}

func mustParseDir(t *testing.T, dir, main string) *Config {
	t.Helper()
	c, err := Parse(dir, []byte(main), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
