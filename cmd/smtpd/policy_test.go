package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"postern/internal/address"
	"postern/internal/config"
	"postern/internal/passwd"
	"postern/internal/route"
	"postern/internal/smtp"
)

const policyConf = `myhostname = mail.example.com
alias_maps = texthash:aliases
virtual_mailbox_domains = virt.example
virtual_mailbox_base = /var/vmail
virtual_mailbox_maps = texthash:vmailbox
virtual_uid_maps = static:5000
virtual_gid_maps = static:5000
relay_domains = backup.example
smtpd_sender_login_maps = texthash:senders
`

// senders is smtpd_sender_login_maps: an address owned by one login, one
// shared by two, and a whole domain owned by one login with one address
// of it given to another.
const senders = `alice@example.com   alice
shared@example.com  alice, bob
@corp.example       admin
boss@corp.example   boss
`

// newPolicy builds the policy as main does, from policyConf plus extra
// settings, with fixture tables in the configuration directory.
func newPolicy(t *testing.T, extra string) *policy {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"passwd":   "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
		"aliases":  "postmaster: root\n",
		"vmailbox": "bob@virt.example virt.example/bob/\n",
		"senders":  senders,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := policyConf
	if strings.Contains(extra, "smtpd_sender_login_maps") {
		conf = strings.Replace(conf, "smtpd_sender_login_maps = texthash:senders\n", "", 1)
	}
	cfg, err := config.Parse(dir, []byte(conf+extra), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	users, err := passwd.Load(filepath.Join(dir, "passwd"), "")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := route.New(cfg, users)
	if err != nil {
		t.Fatal(err)
	}
	loginMaps, err := cfg.Maps("smtpd_sender_login_maps")
	if err != nil {
		t.Fatal(err)
	}
	return &policy{
		relay:     cfg.List("smtpd_relay_restrictions"),
		recipient: cfg.List("smtpd_recipient_restrictions"),
		sender:    cfg.List("smtpd_sender_restrictions"),
		loginMaps: loginMaps,
		route:     rt,
	}
}

func mustAddr(t *testing.T, s string) address.Address {
	t.Helper()
	a, err := address.Parse(s, true)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}

// checkReply compares a reply with the wanted code, enhanced code and a
// piece of its text; code 0 wants no reply.
func checkReply(t *testing.T, what string, r *smtp.Reply, code int, enhanced, text string) {
	t.Helper()
	switch {
	case code == 0 && r != nil:
		t.Errorf("%s: %d %s %s, want no reply", what, r.Code, r.Enhanced, r.Text)
	case code != 0 && r == nil:
		t.Errorf("%s: no reply, want %d %s ...%s...", what, code, enhanced, text)
	case code != 0 && (r.Code != code || r.Enhanced != enhanced || !strings.Contains(r.Text, text)):
		t.Errorf("%s: %d %s %s, want %d %s ...%s...", what, r.Code, r.Enhanced, r.Text, code, enhanced, text)
	}
}

// TestRelayDefaults runs the default smtpd_relay_restrictions:
// permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination.
func TestRelayDefaults(t *testing.T) {
	p := newPolicy(t, "")
	if !slices.Equal(p.relay, []string{"permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination"}) {
		t.Fatalf("default smtpd_relay_restrictions = %q", p.relay)
	}
	sender := mustAddr(t, "someone@elsewhere.example")
	for _, tc := range []struct {
		rcpt       string
		mynetworks bool
		sasl       string
		code       int
	}{
		// Remote recipients: only trusted or authenticated clients.
		{"x@remote.example", false, "", 554},
		{"x@remote.example", true, "", 0},
		{"x@remote.example", false, "alice", 0},
		{"x@sub.mail.example.com", false, "", 554},
		{"x@[192.0.2.1]", false, "", 554},
		// Local, virtual and relay_domains recipients: anyone.
		{"alice@mail.example.com", false, "", 0},
		{"nobody@Mail.Example.COM", false, "", 0}, // unknown users are refused later
		{"x@localhost", false, "", 0},
		{"bob@virt.example", false, "", 0},
		{"nobody@virt.example", false, "", 0},
		{"x@backup.example", false, "", 0},
		{"x@BACKUP.example.", false, "", 0},
		{"x@sub.backup.example", false, "", 554},
	} {
		rcpt := mustAddr(t, tc.rcpt)
		r := p.atRcpt(facts{mynetworks: tc.mynetworks, saslUser: tc.sasl, sender: sender, rcpt: &rcpt})
		what := "RCPT " + tc.rcpt
		if tc.mynetworks {
			what += " from mynetworks"
		}
		if tc.sasl != "" {
			what += " as " + tc.sasl
		}
		checkReply(t, what, r, tc.code, "5.7.1", "<"+rcpt.String()+">: Relay access denied")
	}
	// Nothing at MAIL time by default.
	checkReply(t, "MAIL", p.atMail(facts{sender: sender}), 0, "", "")
}

// TestEmptyListsPermit: with every list empty, everything is allowed,
// even relaying, as in Postfix.
func TestEmptyListsPermit(t *testing.T) {
	p := newPolicy(t, "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions =\nsmtpd_sender_restrictions =\n")
	if len(p.relay)+len(p.recipient)+len(p.sender) != 0 {
		t.Fatalf("lists not empty: %q %q %q", p.relay, p.recipient, p.sender)
	}
	rcpt := mustAddr(t, "x@remote.example")
	f := facts{sender: mustAddr(t, "alice@example.com"), rcpt: &rcpt}
	checkReply(t, "RCPT with empty lists", p.atRcpt(f), 0, "", "")
	f.rcpt = nil
	checkReply(t, "MAIL with empty lists", p.atMail(f), 0, "", "")
	if v, r := p.evalList(nil, f); v != dunno || r != nil {
		t.Errorf("evalList(nil) = %v, %v", v, r)
	}
}

func TestPermitRejectWords(t *testing.T) {
	rcpt := mustAddr(t, "x@remote.example")
	local := mustAddr(t, "alice@mail.example.com")
	sender := mustAddr(t, "Someone@Example.COM")
	for _, tc := range []struct {
		relay, recipient, sender string
		rcpt                     *address.Address
		mynetworks               bool
		code                     int
		text                     string
	}{
		// The first permit or reject of a list decides.
		{relay: "permit, reject", rcpt: &rcpt},
		{relay: "reject, permit", rcpt: &local, code: 554, text: "<alice@mail.example.com>: Recipient address rejected: Access denied"},
		{relay: "permit_mynetworks, reject", rcpt: &local, mynetworks: true},
		{relay: "permit_mynetworks, reject", rcpt: &local, code: 554, text: "Recipient address rejected"},
		{relay: "permit_sasl_authenticated, reject", rcpt: &local, code: 554, text: "Recipient address rejected"},
		// reject_unauth_destination never decides a local recipient: the
		// list goes on.
		{relay: "reject_unauth_destination, reject", rcpt: &local, code: 554, text: "Recipient address rejected"},
		{relay: "reject_unauth_destination, permit", rcpt: &rcpt, code: 554, text: "Relay access denied"},
		// A permit in smtpd_relay_restrictions does not skip
		// smtpd_recipient_restrictions.
		{relay: "permit", recipient: "reject", rcpt: &rcpt, code: 554, text: "Recipient address rejected"},
		{relay: "reject", recipient: "permit", rcpt: &rcpt, code: 554, text: "Recipient address rejected"},
		{relay: "permit", recipient: "permit_mynetworks", rcpt: &rcpt},
		// At MAIL time, reject names the sender.
		{sender: "reject", code: 554, text: "<Someone@example.com>: Sender address rejected: Access denied"},
		{sender: "permit_mynetworks, reject", mynetworks: true},
		{sender: "permit, reject"},
		// reject_unauth_destination means nothing at MAIL time.
		{sender: "reject_unauth_destination"},
	} {
		conf := "smtpd_relay_restrictions = " + tc.relay + "\nsmtpd_recipient_restrictions = " + tc.recipient +
			"\nsmtpd_sender_restrictions = " + tc.sender + "\n"
		p := newPolicy(t, conf)
		f := facts{mynetworks: tc.mynetworks, sender: sender, rcpt: tc.rcpt}
		var r *smtp.Reply
		what := "MAIL, smtpd_sender_restrictions = " + tc.sender
		if tc.rcpt != nil {
			r = p.atRcpt(f)
			what = "RCPT " + tc.rcpt.String() + ", relay = " + tc.relay + ", recipient = " + tc.recipient
		} else {
			r = p.atMail(f)
		}
		if tc.mynetworks {
			what += " (mynetworks)"
		}
		checkReply(t, what, r, tc.code, "5.7.1", tc.text)
	}
}

func TestSenderLoginMismatch(t *testing.T) {
	p := newPolicy(t, "smtpd_sender_restrictions = reject_sender_login_mismatch\n")
	for _, tc := range []struct {
		sasl, sender string
		code         int
		text         string
	}{
		// Authenticated owners, by address key.
		{"alice", "alice@example.com", 0, ""},
		{"ALICE", "Alice@Example.COM", 0, ""},
		{"alice", "shared@example.com", 0, ""},
		{"bob", "shared@example.com", 0, ""},
		// By @domain key.
		{"admin", "anyone@corp.example", 0, ""},
		{"Admin", "ANYONE@corp.example", 0, ""},
		// The address key wins over the domain key.
		{"boss", "boss@corp.example", 0, ""},
		{"admin", "boss@corp.example", 553, "<boss@corp.example>: Sender address rejected: not owned by user admin"},
		// A login that is the address itself owns it when no entry says
		// otherwise.
		{"dave@example.com", "dave@example.com", 0, ""},
		{"Dave@Example.com", "DAVE@example.com", 0, ""},
		// Non-owners.
		{"carol", "alice@example.com", 553, "<alice@example.com>: Sender address rejected: not owned by user carol"},
		{"carol", "shared@example.com", 553, "not owned by user carol"},
		{"bob", "alice@example.com", 553, "not owned by user bob"},
		{"alice", "anyone@corp.example", 553, "not owned by user alice"},
		{"alice", "unlisted@example.com", 553, "not owned by user alice"}, // no entry, login is not the address
		{"dave@example.com", "dave@other.example", 553, "not owned by user dave@example.com"},
		{"alice@example.com", "shared@example.com", 553, "not owned"}, // an entry exists and does not name this login
		// An entry overrides the login-is-the-address rule.
		{"alice@example.com", "alice@example.com", 553, "not owned by user alice@example.com"},
		// Unauthenticated clients may not use an owned address.
		{"", "alice@example.com", 553, "<alice@example.com>: Sender address rejected: not logged in"},
		{"", "ALICE@example.com", 553, "not logged in"},
		{"", "anyone@corp.example", 553, "not logged in"},
		{"", "unlisted@example.com", 0, ""},
		{"", "someone@remote.example", 0, ""},
		// The null sender has no owner.
		{"", "", 0, ""},
		{"alice", "", 0, ""},
	} {
		f := facts{saslUser: tc.sasl, sender: mustAddr(t, tc.sender)}
		what := "MAIL FROM:<" + tc.sender + "> as " + tc.sasl
		if tc.sasl == "" {
			what = "MAIL FROM:<" + tc.sender + "> unauthenticated"
		}
		checkReply(t, what, p.atMail(f), tc.code, "5.7.1", tc.text)
		if r := p.loginMismatch(f); (r == nil) != (tc.code == 0) {
			t.Errorf("%s: loginMismatch = %v", what, r)
		}
	}
}

// TestSenderLoginMismatchAtRcpt: the restriction works in the RCPT lists
// too, and is not skipped by permit_mynetworks placed after it.
func TestSenderLoginMismatchAtRcpt(t *testing.T) {
	p := newPolicy(t, "smtpd_relay_restrictions = reject_sender_login_mismatch, permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\n")
	rcpt := mustAddr(t, "x@remote.example")
	f := facts{mynetworks: true, sender: mustAddr(t, "alice@example.com"), rcpt: &rcpt}
	checkReply(t, "unauthenticated owned sender from mynetworks", p.atRcpt(f), 553, "5.7.1", "not logged in")
	f.saslUser = "alice"
	checkReply(t, "owner", p.atRcpt(f), 0, "", "")
	f.saslUser = "carol"
	checkReply(t, "non-owner", p.atRcpt(f), 553, "5.7.1", "not owned by user carol")
	f.saslUser, f.mynetworks, f.sender = "", false, mustAddr(t, "x@unlisted.example")
	checkReply(t, "unowned sender, remote rcpt", p.atRcpt(f), 554, "5.7.1", "Relay access denied")
}

// TestSenderLoginMismatchNoMaps: without smtpd_sender_login_maps an
// authenticated client may use only its own login as the address, and an
// unauthenticated one anything.
func TestSenderLoginMismatchNoMaps(t *testing.T) {
	p := newPolicy(t, "smtpd_sender_login_maps =\nsmtpd_sender_restrictions = reject_sender_login_mismatch\n")
	checkReply(t, "unauthenticated", p.atMail(facts{sender: mustAddr(t, "alice@example.com")}), 0, "", "")
	checkReply(t, "login is the address", p.atMail(facts{saslUser: "alice@example.com", sender: mustAddr(t, "alice@example.com")}), 0, "", "")
	checkReply(t, "login is another name", p.atMail(facts{saslUser: "alice", sender: mustAddr(t, "alice@example.com")}), 553, "5.7.1", "not owned by user alice")
}

func TestParseNetworks(t *testing.T) {
	got, err := ParseNetworks([]string{
		"127.0.0.0/8", "[::1]/128", "192.0.2.7", "[2001:db8::]/32", "2001:db8:1::5",
		"[2001:db8:2::1]", "10.1.2.3/8", "::ffff:192.0.2.0/120",
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Prefix
	for _, s := range []string{
		"127.0.0.0/8", "::1/128", "192.0.2.7/32", "2001:db8::/32", "2001:db8:1::5/128",
		"2001:db8:2::1/128", "10.0.0.0/8", "::ffff:192.0.2.0/120",
	} {
		want = append(want, netip.MustParsePrefix(s))
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseNetworks = %v, want %v", got, want)
	}
	if got, err := ParseNetworks(nil); got != nil || err != nil {
		t.Errorf("ParseNetworks(nil) = %v, %v", got, err)
	}
	// Brackets are only stripped, not checked: config validates
	// mynetworks (brackets included) before smtpd starts.
	for _, bad := range []string{"mail.example.com", "192.0.2.0/33", "192.0.2", "", "2001:db8::/129", "1.2.3.4/-1", "[[::1]]"} {
		if got, err := ParseNetworks([]string{"127.0.0.1", bad}); err == nil {
			t.Errorf("ParseNetworks(%q) = %v, want an error", bad, got)
		}
	}
}

func TestInMynetworks(t *testing.T) {
	nets, err := ParseNetworks([]string{"127.0.0.0/8", "[::1]/128", "192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{mynets: nets}
	for a, want := range map[string]bool{
		"127.0.0.1":        true,
		"127.255.0.9":      true,
		"::1":              true,
		"192.0.2.200":      true,
		"::ffff:192.0.2.1": true, // IPv4-mapped, as a dual-stack listener reports it
		"::ffff:127.0.0.1": true,
		"192.0.3.1":        false,
		"::2":              false,
		"2001:db8::1":      false,
	} {
		if got := s.inMynetworks(netip.MustParseAddr(a)); got != want {
			t.Errorf("inMynetworks(%s) = %v, want %v", a, got, want)
		}
	}
	if (&server{}).inMynetworks(netip.MustParseAddr("127.0.0.1")) {
		t.Error("empty mynetworks trusts loopback")
	}
}
