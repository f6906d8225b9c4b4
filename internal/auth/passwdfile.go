package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of a passwd-file.
const (
	// MaxFileSize is the largest passwd-file Load accepts.
	MaxFileSize = 64 << 20
	// MaxLineLen is the longest line accepted.
	MaxLineLen = 64 << 10
	// MaxUserLen is the longest user name.
	MaxUserLen = 320
	// maxErrors bounds the errors reported for one load.
	maxErrors = 20
)

// User is one entry of a passwd-file. It never holds the password hash
// in an exported field: nothing that copies a User can leak one.
type User struct {
	Name  string // canonical login name: lower case
	UID   int    // -1 when the file leaves the field empty
	GID   int    // -1 when the file leaves the field empty
	Home  string // absolute, or "" when not given
	Mail  string // mailbox path, ending in "/" (Maildir), or "" when unknown
	Extra map[string]string
	File  string // where the entry is, for log lines
	Line  int

	pw         *hashed // nil: no password, logins fail
	noLogin    bool    // nologin or nopassword: logins fail
	reason     string  // for the log, why logins fail
	nets       []netip.Prefix
	allowLocal bool // allow_nets has "local": a client without an address
	hasNets    bool
}

// ParseError is one problem in a passwd-file, with its place.
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// DB is the users of one or more passwd-files, read once; it is never
// changed afterwards, so any number of goroutines may use it.
type DB struct {
	users    map[string]*User
	order    []*User
	warnings []string
}

// Load reads the passwd-files in order. A user may appear in only one of
// them, once. Every problem is reported, file:line, up to a limit; any
// problem fails the whole load, because a half-read credential database
// locks out users whose lines were skipped without anyone noticing.
func Load(files ...string) (*DB, error) {
	db := newDB()
	var errs []error
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("passwd-file: %w", err))
			continue
		}
		st, err := f.Stat()
		if err == nil && st.Mode().Perm()&0o004 != 0 {
			db.warnings = append(db.warnings, fmt.Sprintf("%s: readable by every user (mode %#o): anyone on this host can copy the hashes", name, st.Mode().Perm()))
		}
		err = db.read(name, f)
		f.Close()
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := joinErrors(errs); err != nil {
		return nil, err
	}
	return db, nil
}

// Parse reads one passwd-file's content; name is used in errors.
func Parse(name string, data []byte) (*DB, error) {
	db := newDB()
	if err := db.read(name, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	return db, nil
}

func newDB() *DB { return &DB{users: map[string]*User{}} }

// joinErrors joins at most maxErrors errors and says how many more there
// were.
func joinErrors(errs []error) error {
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("... and %d more errors", more))
	}
	return errors.Join(errs...)
}

// read adds the entries of one file.
func (db *DB) read(name string, r io.Reader) error {
	var errs []error
	fail := func(line int, err error) {
		errs = append(errs, &ParseError{File: name, Line: line, Err: err})
	}
	br := bufio.NewReaderSize(io.LimitReader(r, MaxFileSize+1), 64<<10)
	var total int64
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		total += int64(len(line)) + 1
		if total > MaxFileSize+1 {
			return joinErrors(append(errs, fmt.Errorf("%s: larger than %d bytes", name, MaxFileSize)))
		}
		if errors.Is(err, errLineTooLong) {
			fail(lineNo, fmt.Errorf("line longer than %d bytes", MaxLineLen))
		} else if err != nil && err != io.EOF {
			return joinErrors(append(errs, fmt.Errorf("%s: read: %w", name, err)))
		} else if u, perr := parseLine(line); perr != nil {
			fail(lineNo, perr)
		} else if u != nil {
			u.File, u.Line = name, lineNo
			if old, dup := db.users[u.Name]; dup {
				fail(lineNo, fmt.Errorf("user %q already defined at %s:%d", u.Name, old.File, old.Line))
			} else {
				db.users[u.Name] = u
				db.order = append(db.order, u)
				if _, ok := u.Extra["nopassword"]; ok {
					db.warnings = append(db.warnings, fmt.Sprintf("%s:%d: user %s: nopassword is not honoured: every login of this user fails", name, lineNo, u.Name))
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	return joinErrors(errs)
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its end, reading at most
// MaxLineLen bytes of it; the rest of an over-long line is skipped.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(b)+len(chunk) > MaxLineLen+1 {
			// Skip to the end of the line, then report it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return "", err
			}
			return "", errLineTooLong
		}
		b = append(b, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		return string(b), err
	}
}

// parseLine parses one line; a comment or blank line gives nil, nil.
// user:password:uid:gid:gecos:home:shell:extra fields, every field after
// the password optional. The extra fields are the rest of the line, so
// they may contain colons (mail=maildir:~/Maildir).
func parseLine(line string) (*User, error) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return nil, nil
	}
	if !utf8.ValidString(line) {
		return nil, errors.New("not valid UTF-8")
	}
	if i := strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }); i >= 0 {
		return nil, fmt.Errorf("control character at column %d", i+1)
	}
	f := strings.SplitN(line, ":", 8)
	for len(f) < 8 {
		f = append(f, "")
	}
	name, err := CanonicalUser(f[0])
	if err != nil {
		return nil, err
	}
	if !strings.Contains(line, ":") {
		return nil, fmt.Errorf("user %s: no password field (want user:{SCHEME}hash:...)", name)
	}
	u := &User{Name: name, UID: -1, GID: -1}
	if pw := f[1]; pw != "" {
		if u.pw, err = parseHash(pw); err != nil {
			return nil, fmt.Errorf("user %s: %w", name, err)
		}
	} else {
		u.noLogin, u.reason = true, "no password in the passwd-file"
	}
	if u.UID, err = parseID(f[2]); err != nil {
		return nil, fmt.Errorf("user %s: uid: %w", name, err)
	}
	if u.GID, err = parseID(f[3]); err != nil {
		return nil, fmt.Errorf("user %s: gid: %w", name, err)
	}
	// f[4] (gecos) and f[6] (shell) mean nothing to a mail server.
	if h := f[5]; h != "" {
		if err := checkPath(h); err != nil {
			return nil, fmt.Errorf("user %s: home %q: %w", name, h, err)
		}
		u.Home = path.Clean(h)
	}
	if err := u.parseExtra(f[7]); err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return u, nil
}

// CanonicalUser checks a login name and returns it in lower case, the
// form the database is keyed by: user or user@domain, at most MaxUserLen
// bytes, no white space, control characters or colons.
func CanonicalUser(s string) (string, error) {
	switch {
	case s == "":
		return "", errors.New("empty user name")
	case len(s) > MaxUserLen:
		return "", fmt.Errorf("user name longer than %d bytes", MaxUserLen)
	case !utf8.ValidString(s):
		return "", errors.New("user name is not valid UTF-8")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == ':' }) >= 0:
		return "", fmt.Errorf("user name %q has white space, a control character or a colon", s)
	}
	if local, domain, ok := strings.Cut(s, "@"); ok && (local == "" || domain == "" || strings.Contains(domain, "@")) {
		return "", fmt.Errorf("user name %q is not user or user@domain", s)
	}
	return strings.ToLower(s), nil
}

// parseID parses a uid or gid: empty (-1), or 1..4294967294. 0 is refused:
// a virtual user's mail must never be written as root.
func parseID(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a number (names are not looked up)", s)
	}
	if n == 0 {
		return 0, errors.New("0 (root) is not allowed for a mail user")
	}
	if n == 1<<32-1 {
		return 0, errors.New("4294967295 is (uid_t)-1, not an id")
	}
	return int(n), nil
}

// checkPath accepts an absolute path without "." or ".." components.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("not an absolute path")
	}
	for _, c := range strings.Split(p, "/") {
		if c == "." || c == ".." {
			return errors.New("has . or .. components")
		}
	}
	return nil
}

// parseExtra reads the space-separated key=value extra fields and
// interprets those Postern uses: mail and userdb_mail (the mailbox),
// nologin, nopassword, reason, allow_nets. The others are kept in Extra.
func (u *User) parseExtra(s string) error {
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return fmt.Errorf("extra field %q has no name", kv)
		}
		if u.Extra == nil {
			u.Extra = map[string]string{}
		}
		u.Extra[strings.ToLower(k)] = v
	}
	loc, ok := u.Extra["userdb_mail"]
	if !ok {
		loc, ok = u.Extra["mail"]
	}
	if ok {
		m, err := u.mailLocation(loc)
		if err != nil {
			return fmt.Errorf("mail location %q: %w", loc, err)
		}
		u.Mail = m
	} else if u.Home != "" {
		u.Mail = strings.TrimSuffix(u.Home, "/") + "/Maildir/"
	}
	if _, ok := u.Extra["nologin"]; ok {
		u.noLogin, u.reason = true, "nologin"
		if r := u.Extra["reason"]; r != "" {
			u.reason = "nologin: " + r
		}
	}
	if _, ok := u.Extra["nopassword"]; ok {
		u.noLogin, u.reason = true, "nopassword is not honoured"
	}
	if nets, ok := u.Extra["allow_nets"]; ok {
		u.hasNets = true
		for _, n := range strings.Split(nets, ",") {
			n = strings.TrimSpace(n)
			switch {
			case n == "":
				continue
			case strings.EqualFold(n, "local"):
				u.allowLocal = true
				continue
			}
			p, err := netip.ParsePrefix(n)
			if err != nil {
				a, aerr := netip.ParseAddr(n)
				if aerr != nil {
					return fmt.Errorf("allow_nets: %q is not an address or network", n)
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
			}
			u.nets = append(u.nets, p.Masked())
		}
	}
	return nil
}

// mailLocation turns a Dovecot mail location, [maildir:]PATH[:OPTIONS],
// into a Maildir path ending in "/". ~ at the start is the home; %u, %n,
// %d, %h and %% (and their long forms %{user}, %{username}, %{domain},
// %{home}) are expanded as Dovecot does. The options (INBOX=, LAYOUT=,
// INDEX=...) are ignored: they concern the IMAP server's view, not where
// mail is delivered. Other formats (mbox, sdbox, mdbox) are refused.
func (u *User) mailLocation(loc string) (string, error) {
	typ, rest, found := strings.Cut(loc, ":")
	if !found || strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "~") {
		typ, rest = "maildir", loc
	}
	if !strings.EqualFold(typ, "maildir") {
		return "", fmt.Errorf("format %q: only maildir is supported", typ)
	}
	p, _, _ := strings.Cut(rest, ":")
	p, err := u.expand(p)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(p, "~") {
		if u.Home == "" {
			return "", errors.New("uses ~ but the entry has no home")
		}
		if p != "~" && !strings.HasPrefix(p, "~/") {
			return "", errors.New("~user is not supported")
		}
		p = u.Home + p[1:]
	}
	if err := checkPath(p); err != nil {
		return "", err
	}
	return strings.TrimSuffix(path.Clean(p), "/") + "/", nil
}

// expand replaces Dovecot's variables in a mail location.
func (u *User) expand(s string) (string, error) {
	local, domain, _ := strings.Cut(u.Name, "@")
	vars := map[string]string{"u": u.Name, "user": u.Name, "n": local, "username": local, "d": domain, "domain": domain, "h": u.Home, "home": u.Home}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("ends in %")
		}
		var name string
		if s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", errors.New("%{ without }")
			}
			name = s[i+2 : i+end]
			i += end
		} else {
			name = s[i+1 : i+2]
			i++
		}
		if name == "%" {
			b.WriteByte('%')
			continue
		}
		v, ok := vars[name]
		if !ok {
			return "", fmt.Errorf("unknown variable %%%.20s", name)
		}
		if (name == "d" || name == "domain") && v == "" {
			return "", errors.New("uses the domain but the user name has none")
		}
		if (name == "h" || name == "home") && v == "" {
			return "", errors.New("uses the home but the entry has none")
		}
		if strings.Contains(v, "/") && name != "h" && name != "home" {
			return "", fmt.Errorf("%%%s would put a / into the path", name)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// Lookup returns the user with that name (compared in lower case).
func (db *DB) Lookup(name string) (*User, bool) {
	if db == nil {
		return nil, false
	}
	n, err := CanonicalUser(name)
	if err != nil {
		return nil, false
	}
	u, ok := db.users[n]
	return u, ok
}

// Len returns the number of users.
func (db *DB) Len() int {
	if db == nil {
		return 0
	}
	return len(db.users)
}

// Users returns the users in file order. The entries must not be
// changed.
func (db *DB) Users() []*User {
	if db == nil {
		return nil
	}
	return db.order
}

// Warnings lists what Load accepted but the administrator should know:
// a world-readable file, an entry whose nopassword is ignored.
func (db *DB) Warnings() []string {
	if db == nil {
		return nil
	}
	return db.warnings
}

// HasPassword reports whether the entry can log in at all: it has a hash
// and neither nologin nor nopassword.
func (u *User) HasPassword() bool { return u.pw != nil && !u.noLogin }

// allowedFrom reports whether allow_nets admits the client address
// ("" is a client without one, such as a local process).
func (u *User) allowedFrom(addr string) bool {
	if !u.hasNets {
		return true
	}
	if addr == "" {
		return u.allowLocal
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range u.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
