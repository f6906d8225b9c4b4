// Package auth checks passwords and answers user lookups for the auth
// daemon (DESIGN.md §2, §4): the credential database in Dovecot's
// passwd-file format, the password hash schemes, and the rate limiter
// that slows down and then refuses guessing.
//
// Format. One user per line, Dovecot's
//
//	user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields
//
// Every field after the password may be left out, and gecos and shell are
// ignored. The user is "user" or "user@domain", compared in lower case.
// The password field is empty (the user exists for lookups only; logins
// fail) or a hash: {BLF-CRYPT} (also {BCRYPT}; $2a$, $2b$, $2y$ bcrypt),
// {ARGON2ID} and {ARGON2I} ($argon2id$v=19$m=..,t=..,p=..$salt$hash, salt
// and hash in unpadded standard base 64, as libsodium and Dovecot write
// them), {SHA512-CRYPT} ($6$[rounds=N$]salt$hash, Drepper's SHA-crypt),
// or a bare crypt(3) string of those ($2y$, $argon2id$, $6$), which is
// what Dovecot's default scheme CRYPT accepts. {PLAIN} and every other
// scheme are refused. uid and gid are numbers other than 0, or empty (-1:
// the caller decides, e.g. from virtual_uid_maps). home is absolute. The
// extra fields are the rest of the line (so they may hold colons),
// space-separated name=value: mail= or userdb_mail= gives the mailbox as
// a Dovecot mail location (maildir:PATH[:options], ~ and %u %n %d %h
// expanded; only maildir), default home/Maildir/; allow_nets= limits the
// client addresses a login may come from ("local" for none); nologin
// (with reason=) makes every login fail; nopassword is not honoured (a
// login with any password would be too easy to leave behind by mistake):
// such a user's logins fail, and Load warns. Other extra fields are kept
// in User.Extra and otherwise ignored. Blank lines and lines starting
// with # are skipped; a CR before the LF is removed.
//
// Limits and failure modes. A file over 64 MiB, a line over 64 KiB, a
// malformed field, an unsupported scheme, a hash whose cost is over the
// sanity limits (bcrypt cost 16; argon2 1 GiB, t=64, p=16; SHA-crypt
// 10,000,000 rounds) or a user defined twice (in one file or across
// files) is an error naming file:line, and any error fails the whole
// Load: a credential database read in part would lock out some users
// without anyone noticing. At most 20 errors are reported. An error never
// quotes a password field, which may hold a clear-text password put there
// by mistake. A password longer than MaxPasswordLen bytes never matches.
//
// Timing. A login of an unknown user, of a user without a password, or of
// one whose allow_nets refuses the client, checks the password against a
// dummy hash made like the most common hash in the database, so that the
// answer takes as long as for a real user and user names cannot be
// probed by timing. Hash results are compared in constant time. At most
// MaxConcurrent hashes (one per CPU) are computed at once; further logins
// wait their turn.
//
// Rate limiting. Failures are counted per client address (IPv6 per /64,
// since one host usually has a whole /64) and per user name (existing or
// not) within FailureWindow. After FailureLimit failures of either, the
// key is blocked for FailureWindow: its attempts get a temporary failure
// without any password being checked, so a blocked attacker learns
// nothing. Every failure and every refusal is answered after
// FailureDelay. A user's counter is reset by a successful login; a
// client's is not (or one valid account would buy unlimited guesses at
// others). Per-user blocking means that anyone can keep a user locked
// out by failing on purpose; a higher FailureLimit makes that harder,
// and the user's mail still arrives. The limiter tracks at most
// MaxEntries keys (see Limiter for what happens when it is full).
package auth

import (
	"context"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// DefaultMaxEntries is the limiter's table size when Config leaves it 0:
// about 100 bytes each, a few MiB in all.
const DefaultMaxEntries = 65536

// Config tunes an Authenticator; the daemon fills it from postern.conf.
type Config struct {
	FailureDelay  time.Duration    // auth_failure_delay
	FailureLimit  int              // auth_failure_limit
	FailureWindow time.Duration    // auth_failure_window
	MaxConcurrent int              // hashes computed at once; 0: runtime.NumCPU()
	MaxEntries    int              // limiter keys; 0: DefaultMaxEntries
	Now           func() time.Time // nil: time.Now
}

// Outcome is the verdict on a login.
type Outcome int

// Outcomes of Login.
const (
	OK       Outcome = iota // the password is right
	Fail                    // wrong password, unknown user, login not allowed
	TempFail                // rate limited or shutting down: try again later
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Fail:
		return "fail"
	}
	return "tempfail"
}

// Result is what Login found.
type Result struct {
	Outcome Outcome
	User    *User  // the entry, when OK
	Why     string // for the log, never for the client; never holds the password
}

// Authenticator checks logins against a DB with rate limiting.
type Authenticator struct {
	db    *DB
	cfg   Config
	lim   *Limiter
	sem   chan struct{}
	dummy *hashed
}

// NewAuthenticator makes the dummy hash (this takes one hash's time) and
// the limiter.
func NewAuthenticator(db *DB, cfg Config) (*Authenticator, error) {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = runtime.NumCPU()
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	model := commonHash(db)
	dummy, err := dummyLike(model)
	if err != nil {
		return nil, err
	}
	// An Argon2 hash takes tens of MiB for a moment; give them back now
	// rather than carry them for the daemon's life.
	debug.FreeOSMemory()
	return &Authenticator{
		db:    db,
		cfg:   cfg,
		lim:   NewLimiter(cfg.FailureLimit, cfg.FailureWindow, cfg.MaxEntries, cfg.Now),
		sem:   make(chan struct{}, cfg.MaxConcurrent),
		dummy: dummy,
	}, nil
}

// commonHash returns the hash whose scheme and cost most users share
// (the first such), or the default scheme's parameters.
func commonHash(db *DB) *hashed {
	count := map[string]int{}
	var best *hashed
	bestN := 0
	for _, u := range db.Users() {
		if u.pw == nil {
			continue
		}
		k := u.pw.costKey()
		count[k]++
		if count[k] > bestN {
			best, bestN = u.pw, count[k]
		}
	}
	if best == nil {
		best = &hashed{scheme: SchemeArgon2ID, memory: argon2Memory, time: argon2Time, threads: argon2Threads,
			salt: make([]byte, argon2SaltLen), key: make([]byte, argon2KeyLen)}
	}
	return best
}

// DB returns the database the Authenticator checks against.
func (a *Authenticator) DB() *DB { return a.db }

// Limiter returns the rate limiter, for tests and statistics.
func (a *Authenticator) Limiter() *Limiter { return a.lim }

// Lookup returns the user entry for name, without rate limiting: it is
// for the other daemons' recipient checks and deliveries.
func (a *Authenticator) Lookup(name string) (*User, bool) { return a.db.Lookup(name) }

// ClientKey is the limiter key of a client address: "ip:" and the
// address for IPv4, "net:" and the /64 for IPv6, "" for no address.
// Brackets and an "IPv6:" prefix (address literal forms) are removed.
func ClientKey(addr string) string {
	a, ok := parseClient(addr)
	switch {
	case ok && a.Is6():
		p, _ := a.Prefix(64)
		return "net:" + p.String()
	case ok:
		return "ip:" + a.String()
	case addr == "":
		return ""
	}
	if len(addr) > 64 {
		addr = addr[:64]
	}
	return "ip:" + strings.ToLower(addr)
}

func parseClient(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
		s = s[5:]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// Login checks a password. It blocks for the hash computation (waiting
// for a free slot first) and, when the answer is not OK, for
// FailureDelay; ctx cuts both short. clientAddr may be "".
func (a *Authenticator) Login(ctx context.Context, user, password, clientAddr string) Result {
	name, nameErr := CanonicalUser(user)
	var keys []string
	if ck := ClientKey(clientAddr); ck != "" {
		keys = append(keys, ck)
	}
	if nameErr == nil {
		keys = append(keys, "user:"+name)
	}
	if ok, by := a.lim.Begin(keys...); !ok {
		why := "too many failed logins for " + strings.Replace(by, ":", " ", 1)
		if by == "" {
			why = "failure table full (many clients failing at once)"
		}
		a.delay(ctx)
		return Result{Outcome: TempFail, Why: why}
	}
	res := a.check(ctx, name, nameErr, password, clientAddr)
	if res.Outcome == TempFail {
		a.lim.End(false, keys...)
		return res
	}
	a.lim.End(res.Outcome != OK, keys...)
	if res.Outcome == OK {
		a.lim.Reset("user:" + name)
		return res
	}
	a.delay(ctx)
	return res
}

func (a *Authenticator) check(ctx context.Context, name string, nameErr error, password, clientAddr string) Result {
	switch {
	case nameErr != nil:
		return Result{Outcome: Fail, Why: "bad user name: " + nameErr.Error()}
	case password == "":
		return Result{Outcome: Fail, Why: "empty password"}
	case len(password) > MaxPasswordLen:
		return Result{Outcome: Fail, Why: "password too long"}
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{Outcome: TempFail, Why: "shutting down"}
	}
	u, found := a.db.users[name]
	h := a.dummy
	if found && u.pw != nil {
		h = u.pw
	}
	match := h.verify(password)
	<-a.sem
	addr := ""
	if ip, ok := parseClient(clientAddr); ok {
		addr = ip.String()
	} else if clientAddr != "" {
		addr = "invalid"
	}
	switch {
	case !found:
		return Result{Outcome: Fail, Why: "unknown user"}
	case u.pw == nil || u.noLogin:
		return Result{Outcome: Fail, Why: u.reason}
	case !match:
		return Result{Outcome: Fail, Why: "password mismatch"}
	case !u.allowedFrom(addr):
		return Result{Outcome: Fail, Why: "client address not in allow_nets"}
	}
	return Result{Outcome: OK, User: u, Why: "password ok"}
}

func (a *Authenticator) delay(ctx context.Context) {
	if a.cfg.FailureDelay <= 0 {
		return
	}
	t := time.NewTimer(a.cfg.FailureDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
