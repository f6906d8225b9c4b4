// Package passwd reads the system user database, /etc/passwd and /etc/group,
// in pure Go (no cgo, no NSS).
//
// Daemons load it once, before they chroot, and keep it in memory; a change
// to the files takes effect when master restarts them on reload. Only the
// flat files are read: users that exist only in LDAP, NIS or systemd's
// dynamic users are invisible, and the NIS compatibility lines that begin
// with '+' or '-' are skipped (without complaint). The password field is
// never kept.
//
// Format. passwd lines have exactly 7 fields, name:passwd:uid:gid:gecos:
// home:shell; group lines exactly 4, name:passwd:gid:members. Empty lines,
// lines of only white space and lines beginning with '#' are skipped. A
// trailing CR is removed. Names are case-sensitive, as in the kernel's eyes;
// folding the case of a mail address is the caller's business.
//
// Malformed lines (wrong field count, empty name or a name with white
// space or control characters, a uid or gid that is not a decimal number in
// 0..4294967294, a home that is not an absolute path, a line longer than
// 64 KiB) are skipped and reported by DB.Bad as "file:line: why"; they are
// not fatal, so one broken line cannot take every mailbox down. A second
// line for a name already seen is skipped and reported too: as with
// getpwnam(3), the first one wins. UserByUID also returns the first user
// with that uid (several names for one uid, such as root and toor, are
// normal and not reported).
//
// Limits. A file larger than 64 MiB is refused (Load fails). At most
// maxBad reports are kept; a last report says how many more there were.
package passwd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

const (
	// MaxFileSize is the largest passwd or group file Load accepts.
	MaxFileSize = 64 << 20
	// MaxLineLen is the longest line Load accepts; longer ones are skipped.
	MaxLineLen = 64 << 10
	// maxBad bounds the reports kept in memory for a file full of garbage.
	maxBad = 1000
)

// User is one account from the passwd file.
type User struct {
	Name  string
	UID   int
	GID   int    // the primary group
	Home  string // always an absolute path
	Shell string // may be empty, which login(1) reads as /bin/sh
}

type group struct {
	gid     int
	members []string
}

// DB is the loaded user and group database. It is read-only after Load and
// safe for concurrent use.
type DB struct {
	users   map[string]User
	byUID   map[int]User
	groups  map[string]group
	order   []string // group names in file order, for GroupsOf
	bad     []string
	badMore int
}

// Load reads passwdPath and groupPath. Either path may be empty to skip that
// file. It fails only if a file cannot be read or is larger than
// MaxFileSize; malformed lines are reported by Bad.
func Load(passwdPath, groupPath string) (*DB, error) {
	db := newDB()
	if passwdPath != "" {
		if err := loadFile(passwdPath, db.parsePasswd); err != nil {
			return nil, err
		}
	}
	if groupPath != "" {
		if err := loadFile(groupPath, db.parseGroup); err != nil {
			return nil, err
		}
	}
	return db, nil
}

func newDB() *DB {
	return &DB{
		users:  make(map[string]User),
		byUID:  make(map[int]User),
		groups: make(map[string]group),
	}
}

func loadFile(path string, parse func(string, io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return fmt.Errorf("passwd: %w", err)
	} else if st.Size() > MaxFileSize {
		return fmt.Errorf("passwd: %s: file larger than %d bytes", path, MaxFileSize)
	}
	return parse(path, f)
}

// User returns the user called name.
func (db *DB) User(name string) (User, bool) {
	u, ok := db.users[name]
	return u, ok
}

// UserByUID returns the first user in the passwd file with uid.
func (db *DB) UserByUID(uid int) (User, bool) {
	u, ok := db.byUID[uid]
	return u, ok
}

// Group returns the gid of the group called name.
func (db *DB) Group(name string) (gid int, ok bool) {
	g, ok := db.groups[name]
	return g.gid, ok
}

// GroupsOf returns the gids of the groups that list name as a member, in
// file order, plus the user's primary gid first if the user exists: what
// initgroups(3) would give to setgroups before running something as that
// user (a |command delivery). Duplicates are removed.
func (db *DB) GroupsOf(name string) []int {
	var gids []int
	seen := make(map[int]bool)
	if u, ok := db.users[name]; ok {
		gids = append(gids, u.GID)
		seen[u.GID] = true
	}
	for _, gname := range db.order {
		g := db.groups[gname]
		if seen[g.gid] {
			continue
		}
		for _, m := range g.members {
			if m == name {
				gids = append(gids, g.gid)
				seen[g.gid] = true
				break
			}
		}
	}
	return gids
}

// Bad returns one "file:line: why" report per skipped line.
func (db *DB) Bad() []string {
	out := make([]string, len(db.bad), len(db.bad)+1)
	copy(out, db.bad)
	if db.badMore > 0 {
		out = append(out, fmt.Sprintf("passwd: %d more malformed lines not listed", db.badMore))
	}
	return out
}

func (db *DB) report(file string, line int, format string, args ...any) {
	if len(db.bad) >= maxBad {
		db.badMore++
		return
	}
	db.bad = append(db.bad, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
}

// lines calls fn for every line of r that is not empty, a comment or a NIS
// line, with its number. It enforces MaxFileSize and MaxLineLen.
func (db *DB) lines(file string, r io.Reader, fn func(n int, line string)) error {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxFileSize+1), MaxLineLen+1)
	var total int64
	for n := 1; ; n++ {
		b, err := br.ReadSlice('\n')
		total += int64(len(b))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Skip the rest of the over-long line.
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				total += int64(len(b))
			}
			if total > MaxFileSize {
				return fmt.Errorf("passwd: %s: file larger than %d bytes", file, MaxFileSize)
			}
			db.report(file, n, "line longer than %d bytes", MaxLineLen)
		} else {
			if total > MaxFileSize {
				return fmt.Errorf("passwd: %s: file larger than %d bytes", file, MaxFileSize)
			}
			line := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			trimmed := strings.TrimSpace(line)
			switch {
			case len(b) == 0:
			case trimmed == "", trimmed[0] == '#':
			case line[0] == '+' || line[0] == '-': // NIS compat
			default:
				fn(n, line)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("passwd: %s:%d: %w", file, n, err)
		}
	}
}

func (db *DB) parsePasswd(file string, r io.Reader) error {
	return db.lines(file, r, func(n int, line string) {
		f := strings.Split(line, ":")
		if len(f) != 7 {
			db.report(file, n, "%d fields, want 7", len(f))
			return
		}
		name := f[0]
		if why := checkName(name); why != "" {
			db.report(file, n, "%s", why)
			return
		}
		uid, err := parseID(f[2])
		if err != nil {
			db.report(file, n, "user %q: uid: %v", name, err)
			return
		}
		gid, err := parseID(f[3])
		if err != nil {
			db.report(file, n, "user %q: gid: %v", name, err)
			return
		}
		if !strings.HasPrefix(f[5], "/") {
			db.report(file, n, "user %q: home %q is not an absolute path", name, f[5])
			return
		}
		if _, dup := db.users[name]; dup {
			db.report(file, n, "user %q listed again, the first entry wins", name)
			return
		}
		u := User{Name: name, UID: uid, GID: gid, Home: f[5], Shell: f[6]}
		db.users[name] = u
		if _, ok := db.byUID[uid]; !ok {
			db.byUID[uid] = u
		}
	})
}

func (db *DB) parseGroup(file string, r io.Reader) error {
	return db.lines(file, r, func(n int, line string) {
		f := strings.Split(line, ":")
		if len(f) != 4 {
			db.report(file, n, "%d fields, want 4", len(f))
			return
		}
		name := f[0]
		if why := checkName(name); why != "" {
			db.report(file, n, "%s", why)
			return
		}
		gid, err := parseID(f[2])
		if err != nil {
			db.report(file, n, "group %q: gid: %v", name, err)
			return
		}
		if _, dup := db.groups[name]; dup {
			db.report(file, n, "group %q listed again, the first entry wins", name)
			return
		}
		var members []string
		for m := range strings.SplitSeq(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		db.groups[name] = group{gid: gid, members: members}
		db.order = append(db.order, name)
	})
}

// checkName returns why name is not usable, or "".
func checkName(name string) string {
	if name == "" {
		return "empty name"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f {
			return fmt.Sprintf("name %q contains white space or a control character", name)
		}
	}
	return ""
}

// parseID parses a uid or gid: decimal, 0..4294967294 ((uid_t)-1 means
// "no change" to the kernel and is never an id).
func parseID(s string) (int, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number in 0..4294967294", s)
	}
	if v == 1<<32-1 {
		return 0, fmt.Errorf("%q is reserved ((uid_t)-1)", s)
	}
	return int(v), nil
}
