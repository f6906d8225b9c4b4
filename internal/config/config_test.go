package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// withHostname makes the system host name h for one test.
func withHostname(t *testing.T, h string) {
	t.Helper()
	old := hostname
	hostname = func() (string, error) { return h, nil }
	t.Cleanup(func() { hostname = old })
}

func mustParse(t *testing.T, main, services string) *Config {
	t.Helper()
	c, err := Parse("/etc/postern", []byte(main), []byte(services))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// parseErr parses and returns the error text, failing if there is none.
func parseErr(t *testing.T, main, services string) string {
	t.Helper()
	_, err := Parse("/etc/postern", []byte(main), []byte(services))
	if err == nil {
		t.Fatalf("Parse(%q, %q): no error", main, services)
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not *Errors: %v", err, err)
	}
	return err.Error()
}

func TestDefaults(t *testing.T) {
	withHostname(t, "Mail.Example.COM")
	c := mustParse(t, "", "")
	for name, want := range map[string]string{
		"myhostname":       "mail.example.com",
		"mydomain":         "example.com",
		"myorigin":         "mail.example.com",
		"mydestination":    "mail.example.com, localhost.example.com, localhost",
		"smtpd_banner":     "mail.example.com ESMTP Postern",
		"config_directory": "/etc/postern",
		"maillog_file":     "",
		"alias_maps":       "texthash:/etc/aliases",
		"no_such_setting":  "",
	} {
		if got := c.Get(name); got != want {
			t.Errorf("Get(%s) = %q, want %q", name, got, want)
		}
	}
	if got := c.Int("message_size_limit"); got != 10240000 {
		t.Errorf("message_size_limit = %d", got)
	}
	if c.Bool("smtpd_peername_lookup") || !c.Bool("smtputf8_enable") {
		t.Error("bool defaults wrong")
	}
	if got := c.Duration("maximal_queue_lifetime"); got != 5*24*time.Hour {
		t.Errorf("maximal_queue_lifetime = %v", got)
	}
	if got := c.Duration("delay_warning_time"); got != 4*time.Hour {
		t.Errorf("delay_warning_time = %v", got)
	}
	if got := c.List("mydestination"); !reflect.DeepEqual(got, []string{"mail.example.com", "localhost.example.com", "localhost"}) {
		t.Errorf("List(mydestination) = %q", got)
	}
	if c.List("virtual_mailbox_domains") != nil {
		t.Error("empty list is not nil")
	}
	if c.IsSet("myhostname") {
		t.Error("IsSet of a default")
	}
	if f, l := c.Source("myhostname"); f != "" || l != 0 {
		t.Errorf("Source of a default = %s:%d", f, l)
	}
	if c.Int("no_such") != 0 || c.Bool("no_such") || c.Duration("no_such") != 0 || c.List("no_such") != nil {
		t.Error("unknown names should give zero values")
	}
	// Every default must check, and every setting be documented.
	for _, s := range Settings() {
		if s.Doc == "" || s.Group == "" || kindWords[s.Kind] == "" {
			t.Errorf("setting %s: missing doc, group or kind", s.Name)
		}
	}
}

func TestMydomainDefault(t *testing.T) {
	for host, want := range map[string]string{
		"mail.example.com": "example.com",
		"example.com":      "localdomain",
		"vm":               "localdomain",
		"a.b.c.d":          "b.c.d",
	} {
		withHostname(t, host)
		c := mustParse(t, "", "")
		if got := c.Get("mydomain"); got != want {
			t.Errorf("host %s: mydomain = %q, want %q", host, got, want)
		}
		if got := c.Get("myhostname"); got != host {
			t.Errorf("myhostname = %q, want %q", got, host)
		}
	}
	// An explicit myhostname drives the default mydomain.
	withHostname(t, "vm")
	c := mustParse(t, "myhostname = mx.example.org\n", "")
	if got := c.Get("mydomain"); got != "example.org" {
		t.Errorf("mydomain = %q", got)
	}
	// And Default reports what this host computes.
	if got := Default("myhostname"); got != "vm" {
		t.Errorf("Default(myhostname) = %q", got)
	}
	if got := Default("message_size_limit"); got != "10240000" {
		t.Errorf("Default(message_size_limit) = %q", got)
	}
}

func TestSyntax(t *testing.T) {
	withHostname(t, "mail.example.com")
	c := mustParse(t, `# a comment
   # an indented comment

myhostname=mx.example.org
mydestination = $myhostname,
    localhost.$mydomain
  # a comment inside does not end the entry
	localhost
smtpd_banner = ${myhostname} says $(mail_name) $$5 #not a comment
mail_name = Test
recipient_delimiter =
message_size_limit   =   0   `+"\r\n", "")
	if got := c.Get("mydestination"); got != "mx.example.org, localhost.example.org localhost" {
		t.Errorf("mydestination = %q", got)
	}
	if got := c.Raw("mydestination"); got != "$myhostname, localhost.$mydomain localhost" {
		t.Errorf("Raw(mydestination) = %q", got)
	}
	if got := c.Get("smtpd_banner"); got != "mx.example.org says Test $5 #not a comment" {
		t.Errorf("smtpd_banner = %q", got)
	}
	if got := c.Get("recipient_delimiter"); got != "" || !c.IsSet("recipient_delimiter") {
		t.Errorf("recipient_delimiter = %q", got)
	}
	if c.Int("message_size_limit") != 0 || !c.IsSet("message_size_limit") {
		t.Error("message_size_limit")
	}
	if f, l := c.Source("mydestination"); f != "/etc/postern/postern.conf" || l != 5 {
		t.Errorf("Source = %s:%d", f, l)
	}
}

func TestErrors(t *testing.T) {
	withHostname(t, "mail.example.com")
	cases := []struct{ main, want string }{
		{"myhostnam = x\n", "postern.conf:1: myhostnam: unknown setting; did you mean myhostname?"},
		{"\n\nhostname = x\n", "postern.conf:3: hostname: unknown setting; did you mean myhostname?"},
		{"zzzzzzzzzz = x\n", "postern.conf:1: zzzzzzzzzz: unknown setting\n"},
		{"myhostname\n", "postern.conf:1: missing '='"},
		{"= x\n", "postern.conf:1: missing setting name"},
		{"  myhostname = x\n", "postern.conf:1: continuation line"},
		{"mail_name = a\nmail_name = b\n", "postern.conf:2: mail_name: set again (first set at line 1)"},
		{"message_size_limit = 10M\n", "postern.conf:1: message_size_limit: \"10M\" is not a number"},
		{"message_size_limit = -1\n", "is not a number"},
		{"smtpd_recipient_limit = 0\n", "smtpd_recipient_limit: 0 is out of range 1..1048576"},
		{"smtpd_recipient_limit = 99999999999999999999999\n", "out of range"},
		{"smtputf8_enable = true\n", "smtputf8_enable: \"true\" is not yes or no"},
		{"smtpd_timeout = 5x\n", "smtpd_timeout: \"5x\" is not a time"},
		{"smtpd_timeout = s\n", "is not a time"},
		{"smtpd_timeout = 0\n", "smtpd_timeout: 0 is out of range 1s..100d"},
		{"smtpd_timeout = 99999999999999999w\n", "too long"},
		{"in_flow_delay = 11s\n", "in_flow_delay: 11s is out of range"},
		{"minimal_backoff_time = 1h\nmaximal_backoff_time = 30m\n", "postern.conf:2: maximal_backoff_time: maximal_backoff_time (30m0s) is less than minimal_backoff_time (1h0m0s)"},
		{"minimal_backoff_time = 2h\n", "postern.conf:1: minimal_backoff_time: maximal_backoff_time"},
		{"alias_maps = lmdb:/etc/aliases\n", "alias_maps: \"lmdb:/etc/aliases\": unsupported table type \"lmdb\""},
		{"alias_maps = aliases\n", "not a type:name table"},
		{"alias_maps = texthash:\n", "missing path"},
		{"alias_maps = static:{a b\n", "unbalanced {"},
		{"mynetworks = 10.1.2.3/8\n", "mynetworks: \"10.1.2.3/8\" has host bits set; did you mean 10.0.0.0/8?"},
		{"mynetworks = example.com\n", "is not an IP address or network"},
		{"mynetworks = [10.0.0.0]/8\n", "only an IPv6 address goes in brackets"},
		{"mynetworks = [::1\n", "missing ]"},
		{"mynetworks = fe80::1%eth0\n", "zone"},
		{"inet_interfaces = all, 127.0.0.1\n", "all must stand alone"},
		{"inet_interfaces = mail.example.com\n", "host names are not accepted"},
		{"inet_interfaces =\n", "inet_interfaces: empty"},
		{"myhostname = bad_host\n", "myhostname: \"bad_host\" is not a domain name"},
		{"myhostname = -a.example\n", "not a domain name"},
		{"mydestination = example.com, bad..name\n", "\"bad..name\" is not a domain name"},
		{"queue_directory = var/spool\n", "queue_directory: \"var/spool\" is not an absolute path"},
		{"mail_owner = -x\n", "not a valid user or group name"},
		{"home_mailbox = /var/mail/x\n", "must be relative"},
		{"home_mailbox = ../x/\n", `may not contain ".."`},
		{"recipient_delimiter = @\n", "a delimiter may not be"},
		{"mail_name =\n", "mail_name: must not be empty"},
		// Expansion.
		{"mail_name = $nosuch\n", "postern.conf:1: mail_name: $nosuch: unknown setting"},
		{"mail_name = $mail_nme\n", "did you mean $mail_name?"},
		{"mail_name = a$\n", "$ at the end"},
		{"mail_name = a$-\n", "$ followed by '-'"},
		{"mail_name = ${mail_name\n", "missing } after ${"},
		{"mail_name = ${a b}\n", "is not a setting name"},
		{"mail_name = ${myhostname?x}\n", "conditional expansion is not supported"},
		{"mail_name = $mail_name\n", "postern.conf:1: mail_name: expansion loop: mail_name -> mail_name"},
		{"mail_name = $smtpd_banner\n", "expansion loop: mail_name -> smtpd_banner -> mail_name"},
		{"myhostname = $mydomain\n", "expansion loop: myhostname -> mydomain -> myhostname"},
		{"mail_name = x" + strings.Repeat("$recipient_delimiter", 3000) + "\nrecipient_delimiter = " + strings.Repeat("-", 60) + "\n", "longer than 65536 bytes after expansion"},
		// Line rules.
		{"mail_name = " + strings.Repeat("x", maxLine) + "\n", "postern.conf:1: line longer than 65536 bytes"},
		{"mail_name = x\n" + strings.Repeat(" "+strings.Repeat("x", 1000)+"\n", 70), "postern.conf:1: entry longer than 65536 bytes"},
		{"mail_name = a\x00b\n", "postern.conf:1: NUL byte"},
	}
	for _, tc := range cases {
		got := parseErr(t, tc.main, "")
		if !strings.Contains(got+"\n", tc.want) {
			t.Errorf("main %q:\n got %q\nwant %q", truncate(tc.main), truncate(got), tc.want)
		}
	}
}

func TestAllErrorsReported(t *testing.T) {
	got := parseErr(t, "a_bad = 1\nsmtpd_timeout = x\nsmtputf8_enable = maybe\n", "bogus\n")
	for _, want := range []string{"postern.conf:1:", "postern.conf:2:", "postern.conf:3:", "services.conf:1:"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 4 {
		t.Errorf("%d errors, want 4:\n%s", n, got)
	}
	// A bad myhostname is reported once, not again through the
	// defaults that expand it.
	got = parseErr(t, "myhostname = bad_name\n", "")
	if n := strings.Count(got, "\n") + 1; n != 1 {
		t.Errorf("%d errors, want 1:\n%s", n, got)
	}
	// A bad default caused by the host name names the default.
	withHostname(t, "bad_name")
	got = parseErr(t, "", "")
	if !strings.Contains(got, "myhostname: default value \"bad_name\"") {
		t.Errorf("got %q", got)
	}
}

func TestNetworksAndInterfaces(t *testing.T) {
	c := mustParse(t, "mynetworks = 192.0.2.0/24, 198.51.100.7 [2001:db8::]/32 ::1 2001:db8:1::/48 [::2]\ninet_interfaces = 192.0.2.1 [2001:db8::1] loopback-only\n", "")
	n := c.Networks("mynetworks")
	if len(n) != 6 {
		t.Fatalf("networks = %v", n)
	}
	for a, want := range map[string]bool{
		"192.0.2.200":      true,
		"::ffff:192.0.2.9": true,
		"198.51.100.7":     true,
		"198.51.100.8":     false,
		"2001:db8:ffff::1": true,
		"::1":              true,
		"::2":              true,
		"127.0.0.1":        false,
		"10.0.0.1":         false,
	} {
		if got := n.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v", a, got)
		}
	}
	d := mustParse(t, "", "")
	if !d.Networks("mynetworks").Contains(netip.MustParseAddr("127.1.2.3")) || d.Networks("mynetworks").Contains(netip.MustParseAddr("192.168.1.1")) {
		t.Error("default mynetworks is not loopback only")
	}
	if d.Interfaces() != nil {
		t.Error("default interfaces should be all (nil)")
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	if got := c.Interfaces(); !reflect.DeepEqual(got, want) {
		t.Errorf("Interfaces = %v", got)
	}
}

const testServices = `# comment
smtp      inet  n - y - - smtpd
submission inet n - - - 20 smtpd -v
  -o smtpd_client_connection_count_limit=5
  -o {smtpd_banner = $myhostname submission}
  -omail_name=Sub
127.0.0.1:2525 inet n y n 0 1 smtpd-test
[::1]:smtps inet - - - - - smtpd
cleanup   unix  y - y - 0 cleanup
qmgr      unix  n - y 300 1 qmgr
local     unix  - n n - - local
relay     pass  - - - - - smtpd
`

func TestServices(t *testing.T) {
	withHostname(t, "mail.example.com")
	c := mustParse(t, "default_process_limit = 7\ninet_interfaces = loopback-only\n", testServices)
	s := c.Services()
	if len(s) != 8 {
		t.Fatalf("%d services", len(s))
	}
	sub := s[1]
	if sub.Name != "submission" || sub.Type != TypeInet || sub.Private || !sub.Unpriv || !sub.Chroot || sub.MaxProc != 20 || sub.Line != 3 ||
		!reflect.DeepEqual(sub.Args, []string{"-v"}) ||
		!reflect.DeepEqual(sub.Options, map[string]string{
			"smtpd_client_connection_count_limit": "5",
			"smtpd_banner":                        "$myhostname submission",
			"mail_name":                           "Sub",
		}) {
		t.Errorf("submission = %+v", sub)
	}
	if s[0].MaxProc != 7 || s[0].Wakeup != 0 {
		t.Errorf("smtp defaults = %+v", s[0])
	}
	if x := s[2]; !x.Unpriv || x.Chroot || x.MaxProc != 1 || x.Command != "smtpd-test" {
		t.Errorf("2525 = %+v", x)
	}
	if x := s[4]; !x.Private || x.MaxProc != 0 {
		t.Errorf("cleanup = %+v", x)
	}
	if x := s[5]; x.Private || x.Wakeup != 300 {
		t.Errorf("qmgr = %+v", x)
	}
	if x := s[6]; !x.Private || x.Unpriv || x.Chroot {
		t.Errorf("local = %+v", x)
	}
	addrs := map[string][]string{
		"smtp":           {"127.0.0.1:25", "[::1]:25"},
		"submission":     {"127.0.0.1:587", "[::1]:587"},
		"127.0.0.1:2525": {"127.0.0.1:2525"},
		"[::1]:smtps":    {"[::1]:465"},
		"cleanup":        {"private/cleanup"},
		"qmgr":           {"public/qmgr"},
		"local":          {"private/local"},
		"relay":          {"private/relay"},
	}
	for _, sv := range s {
		got, err := sv.ListenAddr(c)
		if err != nil || !reflect.DeepEqual(got, addrs[sv.Name]) {
			t.Errorf("ListenAddr(%s) = %q, %v", sv.Name, got, err)
		}
	}
	// -o applies per service.
	sc, err := c.ForService(sub)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Int("smtpd_client_connection_count_limit") != 5 || sc.Get("smtpd_banner") != "mail.example.com submission" || sc.Get("mail_name") != "Sub" {
		t.Errorf("ForService: %q %q", sc.Get("smtpd_banner"), sc.Get("mail_name"))
	}
	if f, l := sc.Source("mail_name"); !strings.HasSuffix(f, "services.conf") || l != 3 {
		t.Errorf("Source = %s:%d", f, l)
	}
	if c.Int("smtpd_client_connection_count_limit") != 50 {
		t.Error("ForService changed its receiver")
	}
	// Services returns copies.
	s[1].Options["mail_name"] = "changed"
	s[1].Args[0] = "changed"
	if x, _ := c.Service("submission", TypeInet); x.Options["mail_name"] != "Sub" || x.Args[0] != "-v" {
		t.Error("Services does not copy")
	}
	if _, ok := c.Service("submission", TypeUnix); ok {
		t.Error("Service matched the wrong type")
	}
	// All interfaces.
	d := mustParse(t, "", "smtp inet n - y - - smtpd\n")
	if got, _ := d.Services()[0].ListenAddr(d); !reflect.DeepEqual(got, []string{":25"}) {
		t.Errorf("all: %q", got)
	}
	// localhost:port.
	d = mustParse(t, "", "localhost:submission inet n - y - - smtpd\n")
	if got, _ := d.Services()[0].ListenAddr(d); !reflect.DeepEqual(got, []string{"127.0.0.1:587", "[::1]:587"}) {
		t.Errorf("localhost: %q", got)
	}
	// A hand-made bad service.
	if _, err := (Service{Name: "x", Type: "tcp"}).ListenAddr(d); err == nil {
		t.Error("unknown type accepted")
	}
	if _, err := (Service{Name: "../x", Type: TypeUnix}).ListenAddr(d); err == nil {
		t.Error("bad socket name accepted")
	}
}

func TestServiceErrors(t *testing.T) {
	cases := []struct{ services, want string }{
		{"smtp inet n - y - - \n", "services.conf:1: 7 fields"},
		{"smtp tcp n - y - - smtpd\n", "services.conf:1: smtp: type \"tcp\" is not inet, unix or pass"},
		{"smtpx inet n - y - - smtpd\n", "\"smtpx\" is not a port number"},
		{"0 inet n - y - - smtpd\n", "not a port number"},
		{"65536 inet n - y - - smtpd\n", "not a port number"},
		{"host.example:25 inet n - y - - smtpd\n", "the host must be an IP address or localhost"},
		{"::1:25 inet n - y - - smtpd\n", "is not host:port"},
		{"smtp inet y - y - - smtpd\n", "an inet service cannot be private"},
		{"smtp inet n x y - - smtpd\n", "unpriv column is \"x\""},
		{"smtp inet n - yes - - smtpd\n", "chroot column is \"yes\""},
		{"smtp inet n - y -1 - smtpd\n", "wakeup column"},
		{"smtp inet n - y - many smtpd\n", "maxproc column"},
		{"smtp inet n - y - - bin/smtpd\n", "must be a program name in daemon_directory, without a /"},
		{"smtp inet n - y - - /usr/sbin/smtpd\n", "without a /"},
		{"../x unix - - - - - x\n", "\"../x\" is not a valid socket name"},
		{"a/b unix - - - - - x\n", "not a valid socket name"},
		{"smtp inet n - y - - smtpd -o\n", "-o without name=value"},
		{"smtp inet n - y - - smtpd -o novalue\n", "expected name=value"},
		{"smtp inet n - y - - smtpd\n -o smtpd_timout=5\n", "services.conf:1: -o smtpd_timout: unknown setting; did you mean smtpd_timeout?"},
		{"smtp inet n - y - - smtpd\n -o smtpd_timeout=5\n -o smtpd_timeout=6\n", "-o smtpd_timeout given twice"},
		{"smtp inet n - y - - smtpd\n -o smtpd_timeout=forever\n", "services.conf:1: smtpd_timeout: \"forever\" is not a time"},
		{"smtp inet n - y - - smtpd\n -o mail_name=$nosuch\n", "services.conf:1: mail_name: $nosuch: unknown setting"},
		{"smtp inet n - y - - smtpd\n -o myhostname=bad_host\n", "services.conf:1: myhostname:"},
		{"smtp inet n - y - - smtpd {a b\n", "unbalanced {"},
		{"smtp inet n - y - - smtpd\n25 inet n - y - - smtpd\n", "services.conf:2: 25: inet service listens on the same port 25 as the one at line 1"},
		{"smtp inet n - y - - smtpd\n127.0.0.1:25 inet n - y - - smtpd\n", "same port 25"},
		{"localhost:25 inet n - y - - smtpd\n[::1]:25 inet n - y - - smtpd\n", "same port 25"},
		{"x unix - - - - - a\nx pass - - - - - b\n", "services.conf:2: x: service name already used at line 1"},
		{"  -o x=y\n", "services.conf:1: continuation line"},
		{strings.Repeat("x", 64) + " unix - - - - - a\n", "socket path"},
		{strings.Repeat("x", 65) + " unix - - - - - a\n", "not a valid socket name"},
	}
	for _, tc := range cases {
		main := ""
		if strings.Contains(tc.want, "socket path") {
			main = "queue_directory = /" + strings.Repeat("q", 40) + "\n"
		}
		got := parseErr(t, main, tc.services)
		if !strings.Contains(got, tc.want) {
			t.Errorf("services %q:\n got %q\nwant %q", tc.services, got, tc.want)
		}
	}
	// Different addresses on one port are fine.
	mustParse(t, "", "127.0.0.1:25 inet n - y - - smtpd\n[::1]:25 inet n - y - - smtpd\n127.0.0.2:25 inet n - y - - smtpd\n")
	mustParse(t, "inet_interfaces = 192.0.2.1\n", "smtp inet n - y - - smtpd\n127.0.0.1:25 inet n - y - - smtpd\n")
}

func TestWithOverrides(t *testing.T) {
	withHostname(t, "mail.example.com")
	c := mustParse(t, "mail_name = Base\n", "")
	n, err := c.WithOverrides(map[string]string{"myhostname": "other.example.net", "smtpd_timeout": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Get("smtpd_banner") != "other.example.net ESMTP Base" || n.Get("mydomain") != "example.net" || n.Duration("smtpd_timeout") != time.Minute {
		t.Errorf("override: %q %q", n.Get("smtpd_banner"), n.Get("mydomain"))
	}
	if !n.IsSet("myhostname") || c.IsSet("myhostname") {
		t.Error("IsSet")
	}
	if f, _ := n.Source("myhostname"); f != "-o" {
		t.Errorf("Source = %q", f)
	}
	if _, err := c.WithOverrides(map[string]string{"smtpd_timeout": "x"}); err == nil || !strings.Contains(err.Error(), "-o: smtpd_timeout: \"x\" is not a time") {
		t.Errorf("bad override: %v", err)
	}
	if _, err := c.WithOverrides(map[string]string{"nope": "x"}); err == nil || !strings.Contains(err.Error(), "unknown setting") {
		t.Errorf("unknown override: %v", err)
	}
	var nilc *Config
	if nilc.Get("x") != "" || nilc.IsSet("x") || nilc.Services() != nil {
		t.Error("nil config")
	}
	if _, err := nilc.WithOverrides(nil); err == nil {
		t.Error("nil config WithOverrides")
	}
}

func TestLoadAndFiles(t *testing.T) {
	withHostname(t, "mail.example.com")
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || errors.As(err, new(*Errors)) {
		t.Errorf("missing files: %v", err)
	}
	created, err := WriteDefaults(dir)
	if err != nil || len(created) != 2 {
		t.Fatalf("WriteDefaults = %v, %v", created, err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatalf("Load of the defaults: %v", err)
	}
	for _, s := range Settings() {
		if c.IsSet(s.Name) {
			t.Errorf("default postern.conf sets %s", s.Name)
		}
	}
	if len(c.Services()) != 9 || c.Get("config_directory") != dir {
		t.Errorf("services %d, config_directory %q", len(c.Services()), c.Get("config_directory"))
	}
	data, _ := os.ReadFile(filepath.Join(dir, MainFile))
	for _, s := range Settings() {
		if !bytes.Contains(data, []byte("\n#"+s.Name+" =")) {
			t.Errorf("default postern.conf lacks %s", s.Name)
		}
	}
	// Uncommenting every line of the default file gives a valid file
	// that sets every setting to its default.
	var un bytes.Buffer
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, " =") && !strings.HasPrefix(l, "# ") {
			l = l[1:]
		}
		un.WriteString(l + "\n")
	}
	u, err := Parse(dir, un.Bytes(), nil)
	if err != nil {
		t.Fatalf("uncommented defaults: %v", err)
	}
	for _, s := range Settings() {
		if !u.IsSet(s.Name) || u.Get(s.Name) != c.Get(s.Name) {
			t.Errorf("uncommented %s = %q, default %q", s.Name, u.Get(s.Name), c.Get(s.Name))
		}
	}
	// Never overwrite.
	os.WriteFile(filepath.Join(dir, MainFile), []byte("mail_name = Mine\n"), 0o644)
	if created, err := WriteDefaults(dir); err != nil || len(created) != 0 {
		t.Errorf("second WriteDefaults = %v, %v", created, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, MainFile)); string(b) != "mail_name = Mine\n" {
		t.Error("WriteDefaults overwrote postern.conf")
	}
	// A nested directory is created.
	sub := filepath.Join(dir, "a", "b")
	if created, err := WriteDefaults(sub); err != nil || len(created) != 2 {
		t.Errorf("WriteDefaults(nested) = %v, %v", created, err)
	}
	ents, _ := os.ReadDir(sub)
	if len(ents) != 2 {
		t.Errorf("leftover files: %v", ents)
	}
	// Errors from files name the files.
	os.WriteFile(filepath.Join(dir, ServicesFile), []byte("smtp inet n - y - - smtpd\nsmtp inet n - y - - smtpd\n"), 0o644)
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ServicesFile)+":2: smtp:") {
		t.Errorf("Load error = %v", err)
	}
	// Size limit.
	os.WriteFile(filepath.Join(dir, MainFile), bytes.Repeat([]byte("# x\n"), maxConfFile/4+1), 0o644)
	if _, err := Load(dir); err == nil || !errors.Is(err, errTooBig) {
		t.Errorf("big file: %v", err)
	}
}

func TestPrint(t *testing.T) {
	withHostname(t, "mail.example.com")
	c := mustParse(t, "mail_name = Test\nmynetworks = 10.0.0.0/8\n  192.168.0.0/16\n", "")
	var b bytes.Buffer
	if err := c.Print(&b, true, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "mail_name = Test\nmynetworks = 10.0.0.0/8 192.168.0.0/16\n" {
		t.Errorf("Print -n = %q", got)
	}
	b.Reset()
	c.Print(&b, false, []string{"smtpd_banner", "myhostname", "maillog_file", "myhostname"})
	if got := b.String(); got != "maillog_file =\nmyhostname = mail.example.com\nsmtpd_banner = $myhostname ESMTP $mail_name\n" {
		t.Errorf("Print names = %q", got)
	}
	b.Reset()
	c.Print(&b, false, nil)
	if n := strings.Count(b.String(), "\n"); n != len(table) {
		t.Errorf("Print all: %d lines", n)
	}
	b.Reset()
	if err := c.Print(&b, false, []string{"mail_name", "mail_nam"}); err == nil || b.Len() != 0 || !strings.Contains(err.Error(), "did you mean mail_name") {
		t.Errorf("Print unknown = %v, %q", err, b.String())
	}
}

func TestEdit(t *testing.T) {
	withHostname(t, "mail.example.com")
	dir := t.TempDir()
	path := filepath.Join(dir, MainFile)
	orig := `# my config
mail_name = Old
mynetworks = 10.0.0.0/8,
   # comment kept
    192.168.0.0/16
smtpd_timeout = 60s
mail_name = Dup`
	os.WriteFile(path, []byte(orig), 0o640)
	os.WriteFile(filepath.Join(dir, ServicesFile), []byte(DefaultServices), 0o644)
	if err := Edit(dir, []string{"mail_name=New", "mynetworks = 127.0.0.0/8", "message_size_limit=0", "smtpd_timeout=2m"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := `# my config
mail_name = New
mynetworks = 127.0.0.0/8
   # comment kept
smtpd_timeout = 2m
message_size_limit = 0
`
	if string(got) != want {
		t.Errorf("edited:\n%s\nwant:\n%s", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Error("lock file left behind")
	}
	c, err := Load(dir)
	if err != nil || c.Get("mail_name") != "New" {
		t.Fatalf("Load after edit: %v", err)
	}
	// Bad edits change nothing.
	for _, bad := range [][]string{
		{"smtpd_timeout=forever"},
		{"nosuch=1"},
		{"mail_name"},
		{"mail_name=a\nb"},
		{"mail_name=$mail_name"},
		{"default_process_limit=0"},
	} {
		if err := Edit(dir, bad); err == nil {
			t.Errorf("Edit(%q) accepted", bad)
		}
		if now, _ := os.ReadFile(path); string(now) != want {
			t.Errorf("Edit(%q) changed the file", bad)
		}
	}
	// An edit that breaks services.conf's -o options is refused...
	os.WriteFile(filepath.Join(dir, ServicesFile), []byte("smtp inet n - y - - smtpd -o mail_name=$mail_owner\n"), 0o644)
	if err := Edit(dir, []string{"mail_owner=$mail_name"}); err == nil {
		t.Error("edit that breaks services.conf accepted")
	}
	// ...but one to a services.conf that was broken already is not.
	os.WriteFile(filepath.Join(dir, ServicesFile), []byte("smtp inet n - y - - smtpd\n25 inet n - y - - smtpd\n"), 0o644)
	if err := Edit(dir, []string{"mail_name=Fixed"}); err != nil {
		t.Errorf("edit beside a broken services.conf: %v", err)
	}
	// A missing postern.conf is created.
	dir2 := t.TempDir()
	if err := Edit(dir2, []string{"mail_name=X"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir2, MainFile)); string(b) != "mail_name = X\n" {
		t.Errorf("new file = %q", b)
	}
	if err := Edit(filepath.Join(dir2, "missing"), []string{"mail_name=X"}); err == nil {
		t.Error("edit in a missing directory")
	}
}

func TestEditConcurrent(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, MainFile), nil, 0o644)
	names := []string{"mail_name", "smtpd_banner", "myorigin", "mail_owner", "setgid_group", "home_mailbox"}
	done := make(chan error)
	for _, n := range names {
		go func() { done <- Edit(dir, []string{n + "=x" + strings.Repeat("y", 3)}) }()
	}
	for range names {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	c, err := Parse(dir, mustRead(t, filepath.Join(dir, MainFile)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !c.IsSet(n) {
			t.Errorf("lost edit of %s", n)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":                          nil,
		" a, b,,c\td ":              {"a", "b", "c", "d"},
		"static:{a b}, {x, y} z":    {"static:{a b}", "x, y", "z"},
		"{ a }":                     {"a"},
		"{a}{b}":                    {"{a}{b}"},
		"x{a,{b c}}":                {"x{a,{b c}}"},
		"texthash:/a hash:/b /c":    {"texthash:/a", "hash:/b", "/c"},
		"\"quoted, not special\" x": {"\"quoted", "not", "special\"", "x"},
	} {
		got, err := splitList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("splitList(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"{", "}", "a}b", "{{a}"} {
		if _, err := splitList(bad); err == nil {
			t.Errorf("splitList(%q) accepted", bad)
		}
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"myhostnme":                "myhostname",
		"mydestinations":           "mydestination",
		"message_size":             "message_size_limit",
		"maximal_queue_life_time":  "maximal_queue_lifetime",
		"relayhosts":               "relayhost",
		"fallback_relay":           "",
		"x":                        "",
		strings.Repeat("a", 10000): "",
	} {
		if got := suggest(in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", truncate(in), got, want)
		}
	}
}

// TestHostileSizes checks that the largest files the limits allow are
// handled in bounded time and give bounded output.
func TestHostileSizes(t *testing.T) {
	start := time.Now()
	var b strings.Builder
	for b.Len() < maxConfFile-100 {
		b.WriteString("mail_nme_" + strings.Repeat("x", 30) + " = 1\n")
	}
	got := parseErr(t, b.String(), "")
	if n := strings.Count(got, "\n"); n > maxErrors+1 || !strings.Contains(got, "too many errors") {
		t.Errorf("%d error lines", n)
	}
	b.Reset()
	for i := 0; b.Len() < maxConfFile-100; i++ {
		fmt.Fprintf(&b, "127.%d.%d.%d:25 inet n - y - - smtpd -o mail_name=x\n", i>>16&255, i>>8&255, i&255)
	}
	got = parseErr(t, "", b.String())
	if !strings.Contains(got, "more than 1000 services") {
		t.Errorf("got %q", truncate(got))
	}
	var tb strings.Builder
	for tb.Len() < 1<<20 {
		tb.WriteString("key\n")
	}
	if _, err := ParseTable([]byte(tb.String()), "t", false); err == nil || strings.Count(err.Error(), "\n") > maxErrors+1 {
		t.Errorf("table errors unbounded")
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %v", d)
	}
}
