package config

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Setting describes one postern.conf setting. The table of settings drives
// the defaults, the validation, `postern config`, the commented default
// postern.conf and the settings section of postern.conf(5).
type Setting struct {
	// Name is the setting's name, as written in postern.conf.
	Name string
	// Kind is one of "string", "int", "bool", "duration", "list" or "maps".
	Kind string
	// Default is the literal default value, before $name expansion. It is
	// empty for the few settings whose default is computed when the
	// configuration is loaded (myhostname, mydomain); Doc says how.
	Default string
	// Doc is a one-line description.
	Doc string
	// Detail is an optional longer description for the manual page; it
	// names any difference from Postfix.
	Detail string
	// Group is the heading under which the setting appears in the default
	// postern.conf and in the manual page.
	Group string
}

// The kinds of value a setting can hold.
const (
	KindString   = "string"
	KindInt      = "int"
	KindBool     = "bool"
	KindDuration = "duration"
	KindList     = "list"
	KindMaps     = "maps"
)

// Groups, in the order they appear in the default postern.conf and the
// manual page.
var groups = []string{
	"Files and ownership",
	"Host and domain names",
	"Listening and trusted networks",
	"SMTP server",
	"Local delivery",
	"Virtual mailboxes",
	"Queue",
	"Processes and timeouts",
	"Logging",
	"TLS and authentication",
	"Remote delivery",
	"Reading mail (POP3 and IMAP)",
	"Local submission",
}

// param is an entry of the table: the public description plus how the value
// is checked and, for computed defaults, how the default is found.
type param struct {
	Setting
	min, max int64 // for int (count) and duration (seconds); max 0 = none
	check    func(v string) error
	// def computes the default when Default cannot be a constant.
	def func(c *Config, resolve func(string) (string, error)) (string, error)
	// aliases marks a maps setting whose texthash tables are in aliases(5)
	// format.
	aliases bool
	// noExpand marks a setting whose $names belong to the program that
	// reads it (local expands $home in forward_path per recipient).
	noExpand bool
}

// Build-time defaults: a packager sets them with
// -ldflags "-X postern/internal/config.DefaultDaemonDirectory=..." so that
// an installed postern finds its daemons without configuration.
var (
	DefaultDaemonDirectory = "/usr/libexec/postern"
	DefaultConfigDirectory = "/etc/postern"
)

// hostname is os.Hostname, replaceable by tests.
var hostname = os.Hostname

const day = 86400

var table = []param{
	// Files and ownership.
	{Setting: Setting{Name: "config_directory", Kind: KindString, Default: "/etc/postern", Group: groups[0],
		Doc:    "Directory that holds postern.conf, services.conf and lookup tables named by a relative path.",
		Detail: "The effective default is the directory the configuration was loaded from: /etc/postern, or the one that the -c option of the commands names; setting it in postern.conf does not move the configuration, it only changes what $config_directory expands to."},
		check: checkAbsPath,
		def: func(c *Config, _ func(string) (string, error)) (string, error) {
			if c.Dir == "" {
				return DefaultConfigDirectory, nil
			}
			return c.Dir, nil
		}},
	{Setting: Setting{Name: "queue_directory", Kind: KindString, Default: "/var/spool/postern", Group: groups[0],
		Doc: "Root of the spool: the queue directories and the sockets of the daemons; the chroot directory of chrooted services."},
		check: checkAbsPath},
	{Setting: Setting{Name: "daemon_directory", Kind: KindString, Default: DefaultDaemonDirectory, Group: groups[0],
		Doc: "Directory of the daemon programs that services.conf names in its command column."},
		check: checkAbsPath},
	{Setting: Setting{Name: "mail_owner", Kind: KindString, Default: "postern", Group: groups[0],
		Doc: "System user that owns the spool and that unprivileged daemons run as."},
		check: checkAccountName},
	{Setting: Setting{Name: "setgid_group", Kind: KindString, Default: "postdrop", Group: groups[0],
		Doc: "Group of postern-drop and of the maildrop and public directories, through which local users submit mail."},
		check: checkAccountName},

	// Host and domain names.
	{Setting: Setting{Name: "myhostname", Kind: KindString, Default: "", Group: groups[1],
		Doc:    "Fully qualified name of this host; the default is the system host name.",
		Detail: "The kernel's name (hostname(1)) is used as it is: a name without a dot is not completed, so set this explicitly on a host whose kernel name is not fully qualified."},
		check: checkDomain,
		def: func(*Config, func(string) (string, error)) (string, error) {
			h, err := hostname()
			if err != nil || h == "" {
				return "localhost", nil
			}
			return strings.ToLower(strings.TrimSuffix(h, ".")), nil
		}},
	{Setting: Setting{Name: "mydomain", Kind: KindString, Default: "", Group: groups[1],
		Doc:    "Domain of this host; the default is $myhostname minus its first label, or localdomain.",
		Detail: "As in Postfix, the first label is removed only when what remains still contains a dot: mail.example.com gives example.com, but example.com or a host name without a dot gives localdomain."},
		check: checkDomain,
		def: func(_ *Config, resolve func(string) (string, error)) (string, error) {
			h, err := resolve("myhostname")
			if err != nil {
				return "", err
			}
			if i := strings.IndexByte(h, '.'); i >= 0 && strings.Contains(h[i+1:], ".") {
				return h[i+1:], nil
			}
			return "localdomain", nil
		}},
	{Setting: Setting{Name: "myorigin", Kind: KindString, Default: "$myhostname", Group: groups[1],
		Doc: "Domain appended to a sender or recipient address without a domain in locally submitted mail."},
		check: checkDomain},
	{Setting: Setting{Name: "mydestination", Kind: KindList, Default: "$myhostname, localhost.$mydomain, localhost", Group: groups[1],
		Doc:    "Domains delivered by the local transport to system accounts and aliases.",
		Detail: "Entries are domain names (matched exactly, without case), type:name lookup tables whose keys are domains, or a /path to a file that lists domains separated by white space or commas."},
		check: checkDomainList},
	{Setting: Setting{Name: "mail_name", Kind: KindString, Default: "Postern", Group: groups[1],
		Doc: "Name of the mail system, used in the SMTP greeting and in generated messages."},
		check: checkNonEmpty},

	// Listening and trusted networks.
	{Setting: Setting{Name: "inet_interfaces", Kind: KindList, Default: "all", Group: groups[2],
		Doc:    "Addresses that inet services listen on: all, loopback-only, or a list of IP addresses.",
		Detail: "loopback-only (or localhost) means 127.0.0.1 and ::1. Unlike Postfix, entries must be IP addresses (an IPv6 address may be written in brackets), not host names, so that what master binds does not depend on DNS. An inet service named host:port in services.conf listens on that address only and ignores this setting."},
		check: checkInterfaces},
	{Setting: Setting{Name: "mynetworks", Kind: KindList, Default: "127.0.0.0/8 [::1]/128", Group: groups[2],
		Doc:    "Trusted client networks, which may relay mail without authentication.",
		Detail: "Entries are networks in CIDR notation (192.0.2.0/24, [2001:db8::]/32 or 2001:db8::/32) or single addresses; a network with host bits set is an error. Deliberately unlike Postfix, whose default trusts every subnet the host is attached to, the default trusts the loopback addresses only."},
		check: checkNetworks},

	// SMTP server.
	{Setting: Setting{Name: "smtpd_banner", Kind: KindString, Default: "$myhostname ESMTP $mail_name", Group: groups[3],
		Doc:    "Text of the SMTP greeting after the 220 code.",
		Detail: "It must begin with $myhostname's value for RFC 5321 conformance."},
		check: checkOneLine},
	{Setting: Setting{Name: "message_size_limit", Kind: KindInt, Default: "10240000", Group: groups[3],
		Doc: "Largest message, in bytes, including the envelope; 0 means no limit."},
		min: 0, max: 1 << 40},
	{Setting: Setting{Name: "smtpd_recipient_limit", Kind: KindInt, Default: "1000", Group: groups[3],
		Doc: "Most recipients that one message may have over SMTP."},
		min: 1, max: 1 << 20},
	{Setting: Setting{Name: "smtpd_timeout", Kind: KindDuration, Default: "300s", Group: groups[3],
		Doc: "How long the SMTP server waits for the client to send a command or data, or to take a reply."},
		min: 1, max: 100 * day},
	{Setting: Setting{Name: "smtpd_hard_error_limit", Kind: KindInt, Default: "20", Group: groups[3],
		Doc: "Errors a client may cause in one session before the server disconnects."},
		min: 1, max: 1 << 20},
	{Setting: Setting{Name: "smtpd_soft_error_limit", Kind: KindInt, Default: "10", Group: groups[3],
		Doc: "Errors after which the server delays each reply by one second."},
		min: 0, max: 1 << 20},
	{Setting: Setting{Name: "smtpd_client_connection_count_limit", Kind: KindInt, Default: "50", Group: groups[3],
		Doc: "Simultaneous connections one client address may hold; 0 means no limit."},
		min: 0, max: 1 << 20},
	{Setting: Setting{Name: "smtpd_peername_lookup", Kind: KindBool, Default: "no", Group: groups[3],
		Doc:    "Whether the SMTP server looks up the client's host name in DNS.",
		Detail: "Deliberately off by default, unlike Postfix: the chrooted smtpd has no resolver configuration, and the accept path must not wait on DNS. Logs and Received headers then show the name unknown and the address."},
	},
	{Setting: Setting{Name: "smtputf8_enable", Kind: KindBool, Default: "yes", Group: groups[3],
		Doc: "Whether the SMTP server offers SMTPUTF8 (RFC 6531) and the SMTP client uses it."}},
	{Setting: Setting{Name: "line_length_limit", Kind: KindInt, Default: "2048", Group: groups[3],
		Doc: "Longest line, in bytes, that the SMTP server accepts in a command, a header or the body."},
		min: 1000, max: 1 << 20},
	{Setting: Setting{Name: "hopcount_limit", Kind: KindInt, Default: "50", Group: groups[3],
		Doc: "Most Received headers a message may carry before it is bounced as a mail loop."},
		min: 1, max: 1 << 16},

	// TLS and authentication (groups[9]).
	{Setting: Setting{Name: "smtpd_tls_cert_file", Kind: KindList, Default: "", Group: groups[9],
		Doc:    "Certificate chain files (PEM) of the SMTP server, one per key; several give several key types (RSA and ECDSA).",
		Detail: "Pairs with smtpd_tls_key_file by position. The files are read by smtpd as root before it drops privilege, and again on postern reload; the unprivileged process never has them open."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "smtpd_tls_key_file", Kind: KindList, Default: "$smtpd_tls_cert_file", Group: groups[9],
		Doc:    "Private key files (PEM) that match smtpd_tls_cert_file, by position.",
		Detail: "As in Postfix, the default is the certificate file, which may hold the key too. Keep keys mode 0600 root."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "smtpd_tls_security_level", Kind: KindString, Default: "may", Group: groups[9],
		Doc:    "none: no STARTTLS; may: offer STARTTLS when a certificate is configured; encrypt: require TLS before MAIL, RCPT, DATA, VRFY, EXPN and AUTH.",
		Detail: "Postfix's default is empty (none); Postern offers STARTTLS whenever smtpd_tls_cert_file is set. TLS 1.2 is the minimum protocol version."},
		check: checkOneOf("none", "may", "encrypt")},
	{Setting: Setting{Name: "smtpd_tls_wrappermode", Kind: KindBool, Default: "no", Group: groups[9],
		Doc: "Implicit TLS from the first byte (RFC 8314), for the submissions service on port 465; set it with -o in services.conf."}},
	{Setting: Setting{Name: "smtpd_tls_auth_only", Kind: KindBool, Default: "yes", Group: groups[9],
		Doc:    "Offer and accept AUTH only over TLS.",
		Detail: "Postfix's default is no; Postern never lets a password cross the network in clear unless this is turned off."}},
	{Setting: Setting{Name: "smtpd_sasl_auth_enable", Kind: KindBool, Default: "no", Group: groups[9],
		Doc: "Offer SMTP AUTH (PLAIN and LOGIN), checked by the auth daemon over private/auth."}},
	{Setting: Setting{Name: "smtpd_sasl_authenticated_header", Kind: KindBool, Default: "no", Group: groups[9],
		Doc: "Name the authenticated user in the Received header."}},
	{Setting: Setting{Name: "smtpd_relay_restrictions", Kind: KindList, Default: "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination", Group: groups[9],
		Doc:    "Checks at RCPT time that decide who may relay: permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, reject_sender_login_mismatch, permit, reject.",
		Detail: "Evaluated in order; the first permit or reject decides. Then smtpd_recipient_restrictions is evaluated the same way. An empty list permits."},
		check: checkRestrictions},
	{Setting: Setting{Name: "smtpd_recipient_restrictions", Kind: KindList, Default: "", Group: groups[9],
		Doc: "Further checks at RCPT time, after smtpd_relay_restrictions; same words."},
		check: checkRestrictions},
	{Setting: Setting{Name: "smtpd_sender_restrictions", Kind: KindList, Default: "", Group: groups[9],
		Doc: "Checks at MAIL time; the same words, typically reject_sender_login_mismatch."},
		check: checkRestrictions},
	{Setting: Setting{Name: "smtpd_sender_login_maps", Kind: KindMaps, Default: "", Group: groups[9],
		Doc:    "Which SASL login names may use which envelope sender: keys are addresses or @domain, values are comma-separated login names.",
		Detail: "Used by reject_sender_login_mismatch: an authenticated client may send only as an address that maps to its login name (an address with no entry is its own login's only if the login name equals the address); an unauthenticated client may not use an address that has an owner."}},
	{Setting: Setting{Name: "auth_passwd_file", Kind: KindList, Default: "", Group: groups[9],
		Doc:    "Credential files in Dovecot's passwd-file format (user@domain:{SCHEME}hash:uid:gid::home::extra), read only by the auth daemon.",
		Detail: "Schemes: BLF-CRYPT (bcrypt), ARGON2ID, SHA512-CRYPT. Users listed here whose domain is in virtual_mailbox_domains are also virtual mailbox users: their mailbox is the mail= field, else home/Maildir/, unless virtual_mailbox_maps names one."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "auth_failure_delay", Kind: KindDuration, Default: "2s", Group: groups[9],
		Doc: "How long a failed login waits before it is answered."},
		min: 0, max: 60},
	{Setting: Setting{Name: "auth_failure_limit", Kind: KindInt, Default: "10", Group: groups[9],
		Doc: "Failed logins from one client address, or for one user, within auth_failure_window after which further attempts get a temporary refusal."},
		min: 1, max: 1 << 20},
	{Setting: Setting{Name: "auth_failure_window", Kind: KindDuration, Default: "300s", Group: groups[9],
		Doc: "The period over which auth_failure_limit counts failures, and how long the refusal lasts."},
		min: 1, max: day},

	// Remote delivery (groups[10]).
	{Setting: Setting{Name: "dns_servers", Kind: KindList, Default: "", Group: groups[10],
		Doc:    "DNS servers (address or address:port) for MX and address lookups; empty: the nameserver lines of /etc/resolv.conf.",
		Detail: "Not a Postfix setting: Postfix uses the system resolver. The smtp daemon is chrooted to an empty directory, so it reads /etc/resolv.conf once at start, before the chroot."}},
	{Setting: Setting{Name: "default_transport", Kind: KindString, Default: "smtp", Group: groups[10],
		Doc:    "Transport for mail to domains that are neither local, virtual, relay_domains nor in transport_maps: smtp (by MX, or through relayhost), error:text (bounce at once with text, for a host that sends no mail out), or discard:.",
		Detail: "As Postfix's default_transport; Debian's \"local only\" Postfix sets it to error."},
		check: checkDefaultTransport},
	{Setting: Setting{Name: "relayhost", Kind: KindString, Default: "", Group: groups[10],
		Doc: "Send all remote mail through this host instead of looking up MX records: host, host:port, [host] or [host]:port ([ ] skips the MX lookup)."}},
	{Setting: Setting{Name: "relay_domains", Kind: KindList, Default: "", Group: groups[10],
		Doc: "Domains this host relays for from anywhere (a backup MX or a gateway); mail for them is accepted and forwarded."},
		check: checkDomainList},
	{Setting: Setting{Name: "transport_maps", Kind: KindMaps, Default: "", Group: groups[10],
		Doc: "Tables from an address or domain (.domain for subdomains) to transport:nexthop: smtp:[host]:port, local:, lmtp:unix:/path, lmtp:[host]:port, error:text, discard:."}},
	{Setting: Setting{Name: "smtp_bind_address", Kind: KindString, Default: "", Group: groups[10],
		Doc: "Local IPv4 address for outgoing SMTP connections; empty: the system chooses."}},
	{Setting: Setting{Name: "smtp_bind_address6", Kind: KindString, Default: "", Group: groups[10],
		Doc: "Local IPv6 address for outgoing SMTP connections; empty: the system chooses."}},
	{Setting: Setting{Name: "smtp_tls_security_level", Kind: KindString, Default: "may", Group: groups[10],
		Doc:    "none: never TLS; may: STARTTLS when offered (opportunistic); encrypt: TLS required, not verified; verify: TLS required and the certificate verified against the system roots and the next-hop name.",
		Detail: "Postfix's default is empty (none); Postern uses TLS whenever a server offers it."},
		check: checkOneOf("none", "may", "encrypt", "verify")},
	{Setting: Setting{Name: "smtp_sasl_auth_enable", Kind: KindBool, Default: "no", Group: groups[10],
		Doc: "Authenticate to the next hop (a smarthost) with the credentials of smtp_sasl_password_maps; only over TLS."}},
	{Setting: Setting{Name: "smtp_sasl_password_maps", Kind: KindMaps, Default: "", Group: groups[10],
		Doc: "Tables from a next hop ([host]:port, host, or domain) to user:password for smarthost authentication; keep the file mode 0600 root."}},
	{Setting: Setting{Name: "initial_destination_concurrency", Kind: KindInt, Default: "5", Group: groups[10],
		Doc: "Parallel deliveries to one destination when it is new or has just failed."},
		min: 1, max: 1000},
	{Setting: Setting{Name: "default_destination_concurrency_limit", Kind: KindInt, Default: "20", Group: groups[10],
		Doc: "Most parallel deliveries to one destination once it works."},
		min: 1, max: 1000},
	{Setting: Setting{Name: "smtp_destination_recipient_limit", Kind: KindInt, Default: "50", Group: groups[10],
		Doc: "Most recipients in one SMTP transaction."},
		min: 1, max: 100000},
	{Setting: Setting{Name: "smtp_connect_timeout", Kind: KindDuration, Default: "30s", Group: groups[10],
		Doc: "How long the SMTP client waits for a TCP connection."},
		min: 1, max: day},
	{Setting: Setting{Name: "smtp_helo_timeout", Kind: KindDuration, Default: "300s", Group: groups[10],
		Doc: "How long the SMTP client waits for the greeting and the EHLO reply."},
		min: 1, max: day},
	{Setting: Setting{Name: "smtp_data_done_timeout", Kind: KindDuration, Default: "600s", Group: groups[10],
		Doc: "How long the SMTP client waits for the reply to the end of data; other commands wait 300s."},
		min: 1, max: day},

	// Local delivery.
	{Setting: Setting{Name: "alias_maps", Kind: KindMaps, Default: "texthash:/etc/aliases", Group: groups[4],
		Doc:    "Alias tables, in aliases(5) format, that the local transport consults.",
		Detail: "Postfix's default is hash:/etc/aliases, nis:mail.aliases; Postern has no NIS, and reads /etc/aliases as text, so newaliases only checks it."},
		aliases: true},
	{Setting: Setting{Name: "recipient_delimiter", Kind: KindString, Default: "+", Group: groups[4],
		Doc:    "Characters that separate a user name from an address extension (user+tag); empty turns extensions off.",
		Detail: "Postfix's default is empty; Postern turns address extensions on by default."},
		check: checkDelimiter},
	{Setting: Setting{Name: "home_mailbox", Kind: KindString, Default: "Maildir/", Group: groups[4],
		Doc:    "Mailbox of a local user, relative to the home directory; a trailing / means Maildir, otherwise mbox; empty means the mbox mail_spool_directory/USER.",
		Detail: "Postfix's default is empty (mbox in /var/mail); Postern delivers into ~/Maildir/ by default."},
		check: checkHomeMailbox},
	{Setting: Setting{Name: "local_destination_concurrency_limit", Kind: KindInt, Default: "20", Group: groups[4],
		Doc:    "Most simultaneous deliveries by the local transport.",
		Detail: "Postfix's default is 2."},
		min: 1, max: 1 << 16},

	// Virtual mailboxes.
	{Setting: Setting{Name: "virtual_mailbox_domains", Kind: KindList, Default: "", Group: groups[5],
		Doc:    "Domains whose recipients have virtual mailboxes (no system account).",
		Detail: "Entries as in mydestination. Postfix's default is $virtual_mailbox_maps; Postern's is empty, so virtual domains must be named."},
		check: checkDomainList},
	{Setting: Setting{Name: "virtual_mailbox_base", Kind: KindString, Default: "", Group: groups[5],
		Doc: "Directory that the mailbox paths of virtual_mailbox_maps are relative to."},
		check: checkAbsPathOrEmpty},
	{Setting: Setting{Name: "virtual_mailbox_maps", Kind: KindMaps, Default: "", Group: groups[5],
		Doc: "Tables from a virtual address to its mailbox path below virtual_mailbox_base; a trailing / means Maildir."}},
	{Setting: Setting{Name: "virtual_uid_maps", Kind: KindMaps, Default: "", Group: groups[5],
		Doc: "Tables from a virtual address to the numeric user ID its mailbox is written as; static:5000 for one ID."}},
	{Setting: Setting{Name: "virtual_gid_maps", Kind: KindMaps, Default: "", Group: groups[5],
		Doc: "Tables from a virtual address to the numeric group ID its mailbox is written as; static:5000 for one ID."}},

	// Queue.
	{Setting: Setting{Name: "minimal_backoff_time", Kind: KindDuration, Default: "300s", Group: groups[6],
		Doc: "Shortest time a deferred message waits before the next delivery attempt."},
		min: 1, max: 100 * day},
	{Setting: Setting{Name: "maximal_backoff_time", Kind: KindDuration, Default: "4000s", Group: groups[6],
		Doc: "Longest time a deferred message waits before the next delivery attempt; at least minimal_backoff_time."},
		min: 1, max: 100 * day},
	{Setting: Setting{Name: "queue_run_delay", Kind: KindDuration, Default: "300s", Group: groups[6],
		Doc: "How often the queue manager scans the deferred queue."},
		min: 1, max: 100 * day},
	{Setting: Setting{Name: "maximal_queue_lifetime", Kind: KindDuration, Default: "5d", Group: groups[6],
		Doc: "How long a message may stay in the queue before it is bounced; 0 bounces at the first temporary failure."},
		min: 0, max: 100 * day},
	{Setting: Setting{Name: "bounce_queue_lifetime", Kind: KindDuration, Default: "5d", Group: groups[6],
		Doc: "maximal_queue_lifetime for bounces (mail with the null sender)."},
		min: 0, max: 100 * day},
	{Setting: Setting{Name: "delay_warning_time", Kind: KindDuration, Default: "4h", Group: groups[6],
		Doc:    "After how long the sender is warned (once) that a message is still queued; 0 sends no warning.",
		Detail: "Postfix's default is 0h (no warning); Postern warns after four hours, as most senders expect, and only recipients whose NOTIFY asks for DELAY (or have no NOTIFY) are listed."},
		min: 0, max: 100 * day},

	// Processes and timeouts.
	{Setting: Setting{Name: "default_process_limit", Kind: KindInt, Default: "100", Group: groups[7],
		Doc: "Process limit of a service whose maxproc column in services.conf is -."},
		min: 1, max: 1 << 20},
	{Setting: Setting{Name: "daemon_timeout", Kind: KindDuration, Default: "18000s", Group: groups[7],
		Doc: "How long a daemon may take to handle one request before it is killed."},
		min: 1, max: 100 * day},
	{Setting: Setting{Name: "ipc_timeout", Kind: KindDuration, Default: "3600s", Group: groups[7],
		Doc: "How long a daemon waits on a read or write of an internal socket."},
		min: 1, max: 100 * day},
	{Setting: Setting{Name: "in_flow_delay", Kind: KindDuration, Default: "0s", Group: groups[7],
		Doc:    "How long the submission of a message is delayed when the queue manager is falling behind; 0 turns this off.",
		Detail: "Postfix's default is 1s; Postern turns the delay off by default. At most 10s."},
		min: 0, max: 10},
	{Setting: Setting{Name: "daemon_gomaxprocs", Kind: KindInt, Default: "0", Group: groups[7],
		Doc:    "How many threads smtpd, cleanup, qmgr and smtp each run Go code on at once (GOMAXPROCS); 0 means a quarter of the CPUs, at least one.",
		Detail: "Postern only. A message passes through several daemons busy at the same time; fewer scheduler threads each save the wake-ups of idle threads (measured: about a fifth of the CPU per relayed message on two CPUs)."},
		min: 0, max: 1 << 12},
	{Setting: Setting{Name: "master_stop_timeout", Kind: KindDuration, Default: "30s", Group: groups[7],
		Doc:    "How long master waits after SIGTERM to its daemons before it kills them.",
		Detail: "Postern only; Postfix has no such setting."},
		min: 1, max: day},

	// Logging.
	{Setting: Setting{Name: "maillog_file", Kind: KindString, Default: "", Group: groups[8],
		Doc:    "File that master writes the log to; empty means syslog, or standard error under postern start-fg.",
		Detail: "Unlike Postfix, no postlog service is needed: master writes the file itself."},
		check: checkAbsPathOrEmpty},
	// Reading mail.
	{Setting: Setting{Name: "disable_plaintext_auth", Kind: KindBool, Default: "yes", Group: groups[11],
		Doc:    "Refuse passwords (POP3 USER/PASS and AUTH, IMAP LOGIN and AUTHENTICATE) on a connection that is not encrypted, unless the client is on a loopback address.",
		Detail: "Dovecot's setting of the same name and default."}},
	{Setting: Setting{Name: "login_timeout", Kind: KindDuration, Default: "60s", Group: groups[11],
		Doc: "How long pop3-login and imap-login wait for the next command before the client has logged in, and at most three times that in all before login."},
		min: 1, max: day},
	{Setting: Setting{Name: "login_auth_failure_limit", Kind: KindInt, Default: "3", Group: groups[11],
		Doc: "Failed logins on one POP3 or IMAP connection before it is closed (the auth daemon also delays and rate-limits failures)."},
		min: 1, max: 100},
	{Setting: Setting{Name: "login_client_limit", Kind: KindInt, Default: "1000", Group: groups[11],
		Doc: "Most clients one pop3-login or imap-login process serves at once, before and after login (it relays the stream of logged-in clients)."},
		min: 1, max: 1 << 20},
	{Setting: Setting{Name: "mail_max_userip_connections", Kind: KindInt, Default: "10", Group: groups[11],
		Doc:    "Most sessions one user may have open from one client address, per protocol.",
		Detail: "Dovecot's setting of the same name and default."},
		min: 1, max: 1 << 16},
	{Setting: Setting{Name: "mail_first_valid_uid", Kind: KindInt, Default: "500", Group: groups[11],
		Doc:    "Lowest uid a POP3 or IMAP session may run as; mail_owner and uid 0 are refused whatever this says.",
		Detail: "Dovecot's first_valid_uid, same default: a login whose mailbox belongs to a system account (bin, daemon) is refused."},
		min: 1, max: 1 << 31},
	{Setting: Setting{Name: "mail_first_valid_gid", Kind: KindInt, Default: "1", Group: groups[11],
		Doc:    "Lowest gid a POP3 or IMAP session may run as; gid 0 is always refused.",
		Detail: "Dovecot's first_valid_gid."},
		min: 1, max: 1 << 31},
	{Setting: Setting{Name: "mail_session_limit", Kind: KindInt, Default: "1000", Group: groups[11],
		Doc: "Most POP3 (or IMAP) session processes at once; a login beyond it is refused as a temporary failure."},
		min: 1, max: 1 << 20},
	{Setting: Setting{Name: "pop3d_tls_cert_file", Kind: KindList, Default: "$smtpd_tls_cert_file", Group: groups[11],
		Doc: "Certificate chains (PEM) for POP3 STLS and pop3s; read by pop3-login as root before it drops privilege."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "pop3d_tls_key_file", Kind: KindList, Default: "$smtpd_tls_key_file", Group: groups[11],
		Doc: "Private keys that match pop3d_tls_cert_file, by position."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "pop3d_tls_wrappermode", Kind: KindBool, Default: "no", Group: groups[11],
		Doc: "Implicit TLS from the first byte (pop3s, port 995); set it with -o in services.conf."}},
	{Setting: Setting{Name: "pop3d_idle_timeout", Kind: KindDuration, Default: "10m", Group: groups[11],
		Doc:    "How long a logged-in POP3 session may wait for a command before it is closed without the UPDATE state (nothing is deleted).",
		Detail: "RFC 1939 asks for at least 10 minutes."},
		min: 1, max: day},
	{Setting: Setting{Name: "imapd_tls_cert_file", Kind: KindList, Default: "$smtpd_tls_cert_file", Group: groups[11],
		Doc: "Certificate chains (PEM) for IMAP STARTTLS and imaps; read by imap-login as root before it drops privilege."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "imapd_tls_key_file", Kind: KindList, Default: "$smtpd_tls_key_file", Group: groups[11],
		Doc: "Private keys that match imapd_tls_cert_file, by position."},
		check: checkAbsPathList},
	{Setting: Setting{Name: "imapd_tls_wrappermode", Kind: KindBool, Default: "no", Group: groups[11],
		Doc: "Implicit TLS from the first byte (imaps, port 993); set it with -o in services.conf."}},
	{Setting: Setting{Name: "imapd_idle_timeout", Kind: KindDuration, Default: "30m", Group: groups[11],
		Doc:    "How long a logged-in IMAP session (also in IDLE) may be silent before it is logged out.",
		Detail: "RFC 9051 asks for at least 30 minutes."},
		min: 1, max: day},
	{Setting: Setting{Name: "imapd_max_line_length", Kind: KindInt, Default: "65536", Group: groups[11],
		Doc: "Longest IMAP command line, literals excluded; a longer one is answered BAD [TOOBIG]. imapd caps it at 50176 (its protocol library's own limit)."},
		min: 1024, max: 1 << 24},
	{Setting: Setting{Name: "imapd_append_limit", Kind: KindInt, Default: "$message_size_limit", Group: groups[11],
		Doc: "Largest message APPEND accepts (advertised as APPENDLIMIT); 0 means no limit."},
		min: 0, max: 1 << 40},
	{Setting: Setting{Name: "imapd_max_literal_size", Kind: KindInt, Default: "$imapd_append_limit", Group: groups[11],
		Doc: "Largest non-synchronising literal ({n+}) imapd reads; it also caps the APPENDLIMIT advertised. 0 means no limit."},
		min: 0, max: 1 << 40},

	// Local delivery for Unix users.
	{Setting: Setting{Name: "default_privs", Kind: KindString, Default: "nobody", Group: groups[4],
		Doc: "The account that runs commands and writes files named in an alias file owned by root (|command, /file)."}},
	{Setting: Setting{Name: "command_time_limit", Kind: KindDuration, Default: "1000s", Group: groups[4],
		Doc: "How long a |command delivery may run before its process group is killed and the delivery deferred."},
		min: 1, max: day},
	{Setting: Setting{Name: "mail_spool_directory", Kind: KindString, Default: "/var/mail", Group: groups[4],
		Doc: "Directory of mbox files (one per user) when home_mailbox is empty; dotlock and fcntl locks, as Debian's mail tools expect."},
		check: checkAbsPathOrEmpty},
	{Setting: Setting{Name: "allow_mail_to_commands", Kind: KindList, Default: "alias, forward", Group: groups[4],
		Doc: "Where |command deliveries are allowed: alias (alias files), forward (.forward files), include (:include: files)."}},
	{Setting: Setting{Name: "allow_mail_to_files", Kind: KindList, Default: "alias, forward", Group: groups[4],
		Doc: "Where /file deliveries are allowed: alias, forward, include."}},
	{Setting: Setting{Name: "forward_path", Kind: KindList, Default: "$home/.forward", Group: groups[4],
		Doc:    "Where local looks for a user's .forward files, first found wins; local expands $home, $user, $local, $domain, $extension and $recipient_delimiter per recipient.",
		Detail: "Postfix's default is $home/.forward${recipient_delimiter}${extension}, $home/.forward. These $names are not settings: they are left for local to expand."},
		noExpand: true},
	{Setting: Setting{Name: "owner_request_special", Kind: KindBool, Default: "yes", Group: groups[4],
		Doc: "Mail expanded from alias NAME is sent with the envelope sender owner-NAME when an owner-NAME alias exists, so bounces go to the list owner."}},

	// Local submission.
	{Setting: Setting{Name: "authorised_mailq_users", Kind: KindList, Default: "static:anyone", Group: groups[12],
		Doc:    "Local users (names or uids) who may list the whole queue with mailq; others see only what they submitted. static:anyone: everybody.",
		Detail: "Postfix's authorized_mailq_users, spelled as the issue asks."}},
}

// byName indexes table.
var byName = func() map[string]*param {
	m := make(map[string]*param, len(table))
	for i := range table {
		m[table[i].Name] = &table[i]
	}
	return m
}()

// Settings returns the table of settings, sorted by name.
func Settings() []Setting {
	s := make([]Setting, len(table))
	for i := range table {
		s[i] = table[i].Setting
	}
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	return s
}

// Describe returns the description of one setting.
func Describe(name string) (Setting, bool) {
	p, ok := byName[name]
	if !ok {
		return Setting{}, false
	}
	return p.Setting, true
}

// suggest returns a known setting whose name is close to name, or "".
func suggest(name string) string {
	best, bestD := "", 1<<30
	limit := 2 + len(name)/6
	for i := range table {
		n := table[i].Name
		d := editDistance(name, n, limit+1)
		if d < bestD {
			best, bestD = n, d
		}
	}
	if bestD <= limit {
		return best
	}
	// A name that is a distinctive part of a known one (a missing
	// prefix such as "hostname" for "myhostname") is worth a hint too.
	if len(name) >= 6 {
		for i := range table {
			if strings.Contains(table[i].Name, name) {
				return table[i].Name
			}
		}
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b, or max if it is at
// least max; names are short, and max bounds the work on long input.
func editDistance(a, b string, max int) int {
	if len(a) > 200 || len(b) > 200 {
		return max
	}
	if d := len(a) - len(b); d >= max || -d >= max {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	if prev[len(b)] > max {
		return max
	}
	return prev[len(b)]
}

// absDir makes a configuration directory absolute, so that relative table
// paths keep their meaning after a daemon changes its directory.
func absDir(dir string) string {
	if dir == "" {
		return dir
	}
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return filepath.Clean(dir)
}
