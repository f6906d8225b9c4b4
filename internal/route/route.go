// Package route decides what a recipient address is: a local (system)
// user of mydestination, a virtual mailbox, an unknown user of a domain we
// are final destination for, or a remote address; and for local and
// virtual recipients, where the mail goes. smtpd uses it at RCPT time (so
// unknown users are refused then, not bounced later), qmgr to pick the
// transport, and local to find the mailbox.
//
// All tables are loaded when the Resolver is made (before a daemon drops
// privilege and chroots); a reload restarts the daemons, which makes new
// Resolvers. Lookups never touch the disk.
//
// Lookups follow Postfix: domains compare case-insensitively; local parts
// of local(8) users are folded to lower case; with recipient_delimiter
// set, "user+ext" is looked up as itself first and then as "user";
// postmaster always exists in every domain we are final destination for.
package route

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"postern/internal/address"
	"postern/internal/authclient"
	"postern/internal/config"
	"postern/internal/passwd"
)

// Class is what kind of destination an address has.
type Class int

// The classes of a recipient.
const (
	Remote  Class = iota // another host's domain
	Local                // a domain in mydestination
	Virtual              // a domain in virtual_mailbox_domains
)

func (c Class) String() string {
	switch c {
	case Local:
		return "local"
	case Virtual:
		return "virtual"
	}
	return "remote"
}

// Resolver answers questions about recipients.
type Resolver struct {
	myDest   *config.DomainList
	virtDom  *config.DomainList
	virtMaps config.Maps
	uidMaps  config.Maps
	gidMaps  config.Maps
	aliases  config.Maps
	owners   []int // per alias_maps entry: the file's owner uid, -1 for static
	virtBase string
	homeMbox string
	spoolDir string
	delim    string
	users    *passwd.DB
	myHost   string
	userdb   UserDB

	transports config.Maps
	relayhost  string
	defaultTr  string // default_transport
	relayDoms  *config.DomainList
}

// UserDB is the credential database's view of mailbox users (the auth
// daemon): virtual users listed there need no virtual_mailbox_maps entry.
type UserDB interface {
	Lookup(addr string) (authclient.User, bool, error)
}

// SetUserDB makes r consult db for virtual addresses the maps do not know.
func (r *Resolver) SetUserDB(db UserDB) { r.userdb = db }

// New loads everything the resolver needs from cfg and the user database.
func New(cfg *config.Config, users *passwd.DB) (*Resolver, error) {
	r := &Resolver{
		virtBase: cfg.Get("virtual_mailbox_base"),
		homeMbox: cfg.Get("home_mailbox"),
		spoolDir: cfg.Get("mail_spool_directory"),
		delim:    cfg.Get("recipient_delimiter"),
		users:    users,
		myHost:   strings.ToLower(cfg.Get("myhostname")),
	}
	var err error
	if r.myDest, err = cfg.Domains("mydestination"); err != nil {
		return nil, fmt.Errorf("mydestination: %w", err)
	}
	if r.virtDom, err = cfg.Domains("virtual_mailbox_domains"); err != nil {
		return nil, fmt.Errorf("virtual_mailbox_domains: %w", err)
	}
	for _, d := range r.virtDom.Names() {
		if r.myDest.Match(normDomain(d)) {
			return nil, fmt.Errorf("domain %s is in both mydestination and virtual_mailbox_domains; a domain is one or the other", d)
		}
	}
	load := func(name string) config.Maps {
		if err != nil {
			return nil
		}
		var m config.Maps
		m, err = cfg.Maps(name)
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
		}
		return m
	}
	r.virtMaps = load("virtual_mailbox_maps")
	r.uidMaps = load("virtual_uid_maps")
	r.gidMaps = load("virtual_gid_maps")
	r.aliases = load("alias_maps")
	for _, m := range r.aliases {
		// Commands and files in an alias table run as its owner, so the
		// owner is part of what was read (before the daemon drops
		// privilege and may no longer stat the file).
		owner := -1
		if t := m.Table(); t != nil {
			var st syscall.Stat_t
			if serr := syscall.Stat(t.Path(), &st); serr != nil {
				if err == nil {
					err = fmt.Errorf("alias_maps: %s: %w", t.Path(), serr)
				}
			} else {
				owner = int(st.Uid)
			}
		}
		r.owners = append(r.owners, owner)
	}
	r.transports = load("transport_maps")
	r.relayhost = strings.TrimSpace(cfg.Get("relayhost"))
	r.defaultTr = strings.TrimSpace(cfg.Get("default_transport"))
	if err == nil {
		if r.relayDoms, err = cfg.Domains("relay_domains"); err != nil {
			err = fmt.Errorf("relay_domains: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if !r.virtDom.Empty() && r.virtBase == "" {
		return nil, fmt.Errorf("virtual_mailbox_domains is set but virtual_mailbox_base is empty")
	}
	return r, nil
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// Classify says which kind of domain the address belongs to. A bare
// "postmaster" (no domain) is local.
func (r *Resolver) Classify(a address.Address) Class {
	d := normDomain(a.Domain)
	switch {
	case d == "" || r.myDest.Match(d):
		return Local
	case r.virtDom.Match(d):
		return Virtual
	}
	return Remote
}

// Transport is the delivery service for an address: "local" for local and
// virtual mailboxes (one daemon delivers both), "smtp" otherwise.
func (r *Resolver) Transport(a address.Address) string {
	t, _ := r.Route(a)
	return t
}

// RelayDomain reports whether the domain is one this host relays for
// from anywhere (relay_domains).
func (r *Resolver) RelayDomain(domain string) bool {
	return r.relayDoms.Match(normDomain(domain))
}

// Route picks the transport and next hop of an address, as Postfix's
// trivial-rewrite does: transport_maps (the full address, then the
// domain, then each parent as ".parent"), then local and virtual domains
// to "local", then relayhost, then the recipient's domain by MX. The
// transports are "local", "smtp", "lmtp", "error" (nexthop is the text)
// and "discard".
func (r *Resolver) Route(a address.Address) (transport, nexthop string) {
	d := normDomain(a.Domain)
	if len(r.transports) > 0 {
		keys := []string{strings.ToLower(a.Local) + "@" + d, d}
		for p := d; ; {
			i := strings.IndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[i+1:]
			keys = append(keys, "."+p)
		}
		for _, k := range keys {
			if v, ok := r.transports.Lookup(k); ok {
				t, nh, _ := strings.Cut(strings.TrimSpace(v), ":")
				if t == "" {
					t = "smtp"
				}
				if nh == "" && t == "smtp" {
					nh = d
				}
				return t, nh
			}
		}
	}
	if r.Classify(a) != Remote {
		return "local", ""
	}
	// default_transport (error: on a host that sends no mail out) covers
	// the rest of the world; relay_domains keep going out by SMTP, as
	// Postfix's relay_transport does.
	if t, nh, _ := strings.Cut(r.defaultTr, ":"); t != "" && t != "smtp" && !r.RelayDomain(d) {
		return t, nh
	}
	if r.relayhost != "" {
		return "smtp", r.relayhost
	}
	return "smtp", d
}

// Known reports whether a local or virtual recipient exists; for a remote
// address it is always true (relay policy is smtpd's business). The reason
// names the table that does not know the user, in Postfix's words. An
// error means the user database could not be asked (a temporary failure).
func (r *Resolver) Known(a address.Address) (bool, string, error) {
	switch r.Classify(a) {
	case Local:
		user := strings.ToLower(a.Local)
		if user == "postmaster" {
			return true, "", nil
		}
		for _, u := range r.candidates(user) {
			if _, ok := r.aliases.Lookup(u); ok {
				return true, "", nil
			}
			if _, ok := r.users.User(u); ok {
				return true, "", nil
			}
		}
		return false, "User unknown in local recipient table", nil
	case Virtual:
		if _, ok := r.virtualEntry(a); ok || strings.EqualFold(a.Local, "postmaster") {
			return true, "", nil
		}
		if _, ok, err := r.dbUser(a); ok || err != nil {
			return ok, "", err
		}
		return false, "User unknown in virtual mailbox table", nil
	}
	return true, "", nil
}

// dbUser asks the user database for a virtual address, with and without
// its extension.
func (r *Resolver) dbUser(a address.Address) (authclient.User, bool, error) {
	if r.userdb == nil {
		return authclient.User{}, false, nil
	}
	for _, u := range r.candidates(strings.ToLower(a.Local)) {
		du, ok, err := r.userdb.Lookup(u + "@" + normDomain(a.Domain))
		if ok || err != nil {
			return du, ok, err
		}
	}
	return authclient.User{}, false, nil
}

// candidates lists the lookup keys for a local part: itself, then without
// its extension.
func (r *Resolver) candidates(local string) []string {
	out := []string{local}
	if r.delim != "" {
		// "user+" has an empty extension and still means user.
		if u, _ := address.SplitExtension(local, r.delim); u != "" && u != local {
			out = append(out, u)
		}
	}
	return out
}

func (r *Resolver) virtualEntry(a address.Address) (string, bool) {
	if v, ok := r.virtualUserEntry(a); ok {
		return v, true
	}
	return r.virtMaps.Lookup("@" + normDomain(a.Domain))
}

// virtualUserEntry is virtualEntry without the domain's catch-all.
func (r *Resolver) virtualUserEntry(a address.Address) (string, bool) {
	d := normDomain(a.Domain)
	for _, u := range r.candidates(a.Local) {
		if v, ok := r.virtMaps.Lookup(u + "@" + d); ok {
			return v, true
		}
	}
	return "", false
}

// Alias returns the expansion of a local user in alias_maps, if any.
func (r *Resolver) Alias(local string) ([]string, bool) {
	l, _, ok := r.AliasOwner(local)
	return l, ok
}

// AliasOwner is Alias that also returns the uid of the owner of the alias
// table the entry came from (its commands and files run as that user),
// or -1 for a static: entry.
func (r *Resolver) AliasOwner(local string) ([]string, int, bool) {
	for _, u := range r.candidates(strings.ToLower(local)) {
		// The aliases(5) parser already split the value (commas, white
		// space, quoted targets such as "|cmd with, commas").
		for i, m := range r.aliases {
			if l, ok := (config.Maps{m}).LookupList(u); ok {
				owner := -1
				if i < len(r.owners) {
					owner = r.owners[i]
				}
				return l, owner, true
			}
		}
	}
	return nil, -1, false
}

// HasAlias reports whether local (exactly, without extension stripping)
// is an alias: owner-X is looked up this way.
func (r *Resolver) HasAlias(local string) bool {
	_, ok := r.aliases.Lookup(strings.ToLower(local))
	return ok
}

// Mailbox is where a message for one recipient is written, and as whom.
type Mailbox struct {
	Path     string // absolute path of the Maildir (ends in "/") or mbox file
	Maildir  bool
	Spool    bool // an mbox in mail_spool_directory (a shared directory)
	UID, GID int
	User     string // account name for logs, or the virtual address
}

// LocalMailbox finds the mailbox of a local (system) user. Extensions are
// stripped; the user must exist in the passwd database.
func (r *Resolver) LocalMailbox(local string) (Mailbox, error) {
	for _, u := range r.candidates(strings.ToLower(local)) {
		pw, ok := r.users.User(u)
		if !ok {
			continue
		}
		p := r.homeMbox
		if p == "" {
			// Postfix's default: an mbox file named after the user in
			// mail_spool_directory (/var/mail/USER).
			spool := r.spoolDir
			if spool == "" {
				spool = "/var/mail"
			}
			if strings.HasSuffix(spool, "/") && spool != "/" {
				// mail_spool_directory = /var/mail/ means Maildir there.
				return Mailbox{Path: filepath.Join(spool, pw.Name) + "/", Maildir: true, Spool: true, UID: pw.UID, GID: pw.GID, User: pw.Name}, nil
			}
			return Mailbox{Path: filepath.Join(spool, pw.Name), Spool: true, UID: pw.UID, GID: pw.GID, User: pw.Name}, nil
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(pw.Home, p)
			if strings.HasSuffix(r.homeMbox, "/") || r.homeMbox == "" {
				p += "/"
			}
		}
		return Mailbox{Path: p, Maildir: strings.HasSuffix(p, "/"), UID: pw.UID, GID: pw.GID, User: pw.Name}, nil
	}
	return Mailbox{}, fmt.Errorf("user %q unknown", local)
}

// VirtualMailbox finds the mailbox of a virtual address per
// virtual_mailbox_maps, virtual_uid_maps and virtual_gid_maps.
func (r *Resolver) VirtualMailbox(a address.Address) (Mailbox, error) {
	// The user's own entry, then the user database, and the domain's
	// catch-all (@domain) last: a catch-all collects mail for addresses
	// nobody has, and must not take a real user's mail (nor give that
	// user, logging in over POP3 or IMAP, everybody else's).
	v, ok := r.virtualUserEntry(a)
	var du authclient.User
	found := false
	if !ok {
		var err error
		du, found, err = r.dbUser(a)
		if err != nil {
			return Mailbox{}, fmt.Errorf("%s: user database: %w", a, err)
		}
		if !found {
			v, ok = r.virtMaps.Lookup("@" + normDomain(a.Domain))
		}
		if !found && !ok {
			return Mailbox{}, fmt.Errorf("%s: not in virtual_mailbox_maps", a)
		}
	}
	if found {
		var err error
		p := du.Mail
		if p == "" && du.Home != "" {
			p = filepath.Join(du.Home, "Maildir") + "/"
		}
		if p == "" {
			return Mailbox{}, fmt.Errorf("%s: the user database gives neither a home nor a mail location", a)
		}
		uid, gid := du.UID, du.GID
		if uid < 0 {
			if uid, err = r.id(r.uidMaps, "virtual_uid_maps", a); err != nil {
				return Mailbox{}, err
			}
		}
		if gid < 0 {
			if gid, err = r.id(r.gidMaps, "virtual_gid_maps", a); err != nil {
				return Mailbox{}, err
			}
		}
		if uid == 0 {
			return Mailbox{}, fmt.Errorf("%s: the user database gives uid 0; virtual mail is never written as root", a)
		}
		return Mailbox{Path: p, Maildir: strings.HasSuffix(p, "/"), UID: uid, GID: gid, User: du.Name}, nil
	}
	if strings.Contains(v, "..") || filepath.IsAbs(v) {
		return Mailbox{}, fmt.Errorf("%s: virtual_mailbox_maps value %q must be a path below virtual_mailbox_base", a, v)
	}
	uid, err := r.id(r.uidMaps, "virtual_uid_maps", a)
	if err != nil {
		return Mailbox{}, err
	}
	gid, err := r.id(r.gidMaps, "virtual_gid_maps", a)
	if err != nil {
		return Mailbox{}, err
	}
	p := filepath.Join(r.virtBase, v)
	if strings.HasSuffix(v, "/") {
		p += "/"
	}
	return Mailbox{Path: p, Maildir: strings.HasSuffix(p, "/"), UID: uid, GID: gid, User: a.String()}, nil
}

func (r *Resolver) id(m config.Maps, setting string, a address.Address) (int, error) {
	var v string
	ok := false
	for _, u := range r.candidates(strings.ToLower(a.Local)) {
		if v, ok = m.Lookup(u + "@" + normDomain(a.Domain)); ok {
			break
		}
	}
	if !ok {
		v, ok = m.Lookup("@" + normDomain(a.Domain))
	}
	if !ok {
		return 0, fmt.Errorf("%s: no entry in %s", a, setting)
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %s value %q is not a number", a, setting, v)
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: %s gives id 0; virtual mail is never written as root", a, setting)
	}
	return n, nil
}

// MyHostname is the canonical local domain, where postmaster of a virtual
// domain is sent when the virtual table has no entry for it.
func (r *Resolver) MyHostname() string { return r.myHost }
