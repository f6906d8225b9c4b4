package maildir

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Folders are Maildir++ as Dovecot and Courier lay them out: INBOX is the
// Maildir itself; folder "a/b" (IMAP names use "/") is the directory
// ".a.b" beside INBOX's cur/ new/ tmp/, each component in IMAP's modified
// UTF-7 (RFC 3501 §5.1.3), with an empty "maildirfolder" file inside. A
// parent and its children are independent directories. The list of
// subscribed folders is the file "subscriptions", one name per line,
// mUTF-7 with "." between levels (Dovecot's version 1 form; version 2,
// tab-separated, is read too).

// subscriptionsFile is the subscription list in the root Maildir.
const subscriptionsFile = "subscriptions"

// maxSubscriptionsFile bounds the subscription file we read.
const maxSubscriptionsFile = 1 << 20

// maxDirName is NAME_MAX: a folder's directory name must fit.
const maxDirName = 255

// specialFolders are the folders EnsureSpecial makes, with their RFC 6154
// special-use attribute.
var specialFolders = []struct{ name, use string }{
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}

// Store is one user's Maildir++ tree. It is safe for concurrent use.
// Apart from the root path it holds only what closed Folders learned
// (their uid list and per-message facts, see Folder.Close), which a later
// Open of the same folder validates against the disk before use.
type Store struct {
	root string

	mu     sync.Mutex
	parked map[string]*parkedFolder // by folder dir
}

// OpenStore opens a user's Maildir (root = INBOX, absolute path); creates
// root and its tmp/ new/ cur/ (0700) when create is true, and missing
// parents (0700, as local does for a first delivery): a user may log in
// over POP3 or IMAP before any mail has arrived.
func OpenStore(root string, create bool) (*Store, error) {
	if root == "" || !filepath.IsAbs(root) {
		return nil, fmt.Errorf("maildir %q: the Maildir path is not absolute", root)
	}
	root = filepath.Clean(root)
	if create {
		if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
			return nil, fmt.Errorf("maildir %s: %w", root, err)
		}
		if err := makeMaildir(root, false); err != nil {
			return nil, err
		}
	}
	st, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", root, err)
	}
	if st.Mode()&os.ModeSymlink != 0 {
		// The root may legitimately be a symlink (~/Maildir -> /srv/...):
		// follow it once, here, and work on the target.
		if root, err = filepath.EvalSymlinks(root); err != nil {
			return nil, fmt.Errorf("maildir %s: %w", root, err)
		}
		st, err = os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("maildir %s: %w", root, err)
		}
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("maildir %s: %w", root, unix.ENOTDIR)
	}
	return &Store{root: root}, nil
}

// makeMaildir creates dir and its tmp/ new/ cur/ (0700), and an empty
// maildirfolder file when sub is set; existing parts are kept.
func makeMaildir(dir string, sub bool) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("maildir %s: %w", dir, err)
	}
	for _, s := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(dir+"/"+s, 0o700); err != nil && !os.IsExist(err) {
			return fmt.Errorf("maildir %s: %w", dir, err)
		}
	}
	if sub {
		f, err := os.OpenFile(dir+"/maildirfolder", os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return fmt.Errorf("maildir %s: %w", dir, err)
		}
		f.Close()
	}
	syncDirPath(dir)
	syncDirPath(dirOf(dir))
	return nil
}

// Root returns the Maildir path (INBOX).
func (s *Store) Root() string { return s.root }

// isInbox reports whether name is INBOX (case-insensitively, as IMAP says).
func isInbox(name string) bool { return strings.EqualFold(name, "INBOX") }

// checkName validates an IMAP folder name (UTF-8, "/" between levels)
// and returns its components.
func checkName(name string) ([]string, error) {
	bad := func(why string) error { return fmt.Errorf("folder %q: %s: %w", name, why, ErrBadName) }
	if name == "" {
		return nil, bad("empty")
	}
	if !utf8.ValidString(name) {
		return nil, bad("not UTF-8")
	}
	if strings.HasPrefix(name, "/") {
		return nil, bad("starts with /")
	}
	if strings.ContainsRune(name, '.') {
		return nil, bad(`contains "." (the hierarchy separator on disk)`)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return nil, bad("contains a control character")
		}
	}
	comps := strings.Split(name, "/")
	if slices.Contains(comps, "") {
		return nil, bad("empty level")
	}
	if isInbox(comps[0]) {
		comps[0] = "INBOX"
	}
	return comps, nil
}

// dirName returns the directory (relative to the root) of a folder other
// than INBOX: ".a.b" with mUTF-7 components.
func dirName(name string) (string, error) {
	comps, err := checkName(name)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range comps {
		b.WriteByte('.')
		b.WriteString(EncodeMUTF7(c))
	}
	if b.Len() > maxDirName {
		return "", fmt.Errorf("folder %q: name too long: %w", name, ErrBadName)
	}
	return b.String(), nil
}

// nameOfDir is the inverse of dirName; ok is false for a directory that
// is not a folder (".", "..", Dovecot's "..DOVECOT-TRASHED", bad mUTF-7).
func nameOfDir(d string) (string, bool) {
	if len(d) < 2 || d[0] != '.' || d[1] == '.' {
		return "", false
	}
	comps := strings.Split(d[1:], ".")
	for i, c := range comps {
		u, err := DecodeMUTF7(c)
		if err != nil || u == "" || strings.ContainsAny(u, "/") {
			return "", false
		}
		comps[i] = u
	}
	name := strings.Join(comps, "/")
	if _, err := checkName(name); err != nil {
		return "", false
	}
	return name, true
}

// folderDir returns the absolute directory of a folder name.
func (s *Store) folderDir(name string) (string, error) {
	if isInbox(name) {
		return s.root, nil
	}
	d, err := dirName(name)
	if err != nil {
		return "", err
	}
	if isInbox(d[1:]) {
		return "", fmt.Errorf("folder %q: %w", name, ErrBadName)
	}
	return s.root + "/" + d, nil
}

// canonName returns "INBOX" for any case of it, else name.
func canonName(name string) string {
	if isInbox(name) {
		return "INBOX"
	}
	return name
}

// isFolderDir reports whether dir is an existing directory (not a symlink
// to elsewhere is not required: Dovecot allows symlinked folders).
func isFolderDir(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}

// Folders lists every folder, "INBOX" first, then sorted; names are UTF-8
// with "/" between levels.
func (s *Store) Folders() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", s.root, err)
	}
	var names []string
	for _, e := range ents {
		name, ok := nameOfDir(e.Name())
		if !ok || isInbox(name) {
			continue
		}
		if e.IsDir() || (e.Type()&os.ModeSymlink != 0 && isFolderDir(s.root+"/"+e.Name())) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return append([]string{"INBOX"}, names...), nil
}

// Create makes a folder, and its missing parents. ErrExists if it exists
// (INBOX always does).
func (s *Store) Create(name string) error {
	dir, err := s.folderDir(name)
	if err != nil {
		return err
	}
	if dir == s.root || isFolderDir(dir) {
		return fmt.Errorf("folder %q: %w", name, ErrExists)
	}
	comps := strings.Split(name, "/")
	for i := 1; i < len(comps); i++ {
		parent := strings.Join(comps[:i], "/")
		if isInbox(parent) {
			continue
		}
		pdir, err := s.folderDir(parent)
		if err != nil {
			return err
		}
		if !isFolderDir(pdir) {
			if err := makeMaildir(pdir, true); err != nil {
				return err
			}
		}
	}
	// Build it under a temporary name and rename it into place, so that
	// nobody sees a folder without cur/ new/ tmp/.
	tmp := fmt.Sprintf("%s/..postern-new.%d.%s", s.root, os.Getpid(), newGUID()[:8])
	if err := makeMaildir(tmp, true); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := renameNoReplacePath(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("folder %q: %w", name, ErrExists)
		}
		return fmt.Errorf("maildir create %s: %w", dir, err)
	}
	syncDirPath(s.root)
	return nil
}

// renameNoReplacePath renames without replacing an existing target.
func renameNoReplacePath(from, to string) error {
	return renameNoReplace(unix.AT_FDCWD, from, unix.AT_FDCWD, to)
}

// Delete removes a folder (not INBOX) and everything in it. Its children
// are separate folders and stay (IMAP DELETE leaves them).
func (s *Store) Delete(name string) error {
	if isInbox(name) {
		return fmt.Errorf("folder %q: INBOX cannot be deleted: %w", name, ErrBadName)
	}
	dir, err := s.folderDir(name)
	if err != nil {
		return err
	}
	if !isFolderDir(dir) {
		return fmt.Errorf("folder %q: %w", name, ErrNoFolder)
	}
	// Rename it out of sight first, as Dovecot does: a concurrent session
	// sees the folder vanish at once instead of half removed.
	trash := fmt.Sprintf("%s/..postern-deleted.%d.%s", s.root, os.Getpid(), newGUID()[:8])
	if err := os.Rename(dir, trash); err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("folder %q: %w", name, ErrNoFolder)
		}
		return fmt.Errorf("maildir delete %s: %w", dir, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("maildir delete %s: %w", dir, err)
	}
	syncDirPath(s.root)
	return nil
}

// Rename renames a folder and its children. Renaming INBOX moves all of
// its messages into the new folder (created; it must not exist) and
// leaves INBOX empty (RFC 3501 §6.3.5). ErrNoFolder, ErrExists, and
// ErrBadName for a move into its own child.
func (s *Store) Rename(oldName, newName string) error {
	newDir, err := s.folderDir(newName)
	if err != nil {
		return err
	}
	if isInbox(newName) || isFolderDir(newDir) {
		return fmt.Errorf("folder %q: %w", newName, ErrExists)
	}
	if isInbox(oldName) {
		return s.renameInbox(newName)
	}
	oldDir, err := s.folderDir(oldName)
	if err != nil {
		return err
	}
	if !isFolderDir(oldDir) {
		return fmt.Errorf("folder %q: %w", oldName, ErrNoFolder)
	}
	if strings.HasPrefix(newName+"/", oldName+"/") {
		return fmt.Errorf("folder %q into its own child %q: %w", oldName, newName, ErrBadName)
	}
	oldBase, newBase := filepath.Base(oldDir), filepath.Base(newDir)
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("maildir %s: %w", s.root, err)
	}
	// Parents of the new name first, then the folder, then its children.
	comps := strings.Split(newName, "/")
	for i := 1; i < len(comps); i++ {
		parent := strings.Join(comps[:i], "/")
		if pdir, err := s.folderDir(parent); err == nil && !isInbox(parent) && !isFolderDir(pdir) {
			if err := makeMaildir(pdir, true); err != nil {
				return err
			}
		}
	}
	if err := renameNoReplacePath(oldDir, newDir); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("folder %q: %w", newName, ErrExists)
		}
		return fmt.Errorf("maildir rename %s: %w", oldDir, err)
	}
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), oldBase+"."); ok {
			from, to := s.root+"/"+e.Name(), s.root+"/"+newBase+"."+rest
			if err := renameNoReplacePath(from, to); err != nil {
				return fmt.Errorf("maildir rename %s: %w", from, err)
			}
		}
	}
	syncDirPath(s.root)
	s.renameSubscriptions(oldName, newName)
	return nil
}

// renameInbox moves every INBOX message into a new folder.
func (s *Store) renameInbox(newName string) error {
	if err := s.Create(newName); err != nil {
		return err
	}
	src, err := s.Open("INBOX")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := s.Open(newName)
	if err != nil {
		return err
	}
	defer dst.Close()
	msgs, err := src.Sync(false)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if _, err := src.MoveTo(m, dst); err != nil && !errors.Is(err, ErrNoMessage) {
			return err
		}
	}
	return nil
}

// readSubscriptions returns the subscribed names, in file order.
func (s *Store) readSubscriptions() ([]string, error) {
	data, err := readLimited(s.root+"/"+subscriptionsFile, maxSubscriptionsFile)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSubscriptions(data), nil
}

// parseSubscriptions reads Dovecot's subscription file, version 1 (one
// mUTF-7 name per line, "." between levels) or 2 ("V\t2" header, tabs
// between levels). Lines that do not make a valid name are skipped.
func parseSubscriptions(data []byte) []string {
	var names []string
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > 0 && bytes.HasPrefix(lines[0], []byte("V\t")) {
		lines = lines[1:]
	}
	for _, line := range lines {
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			continue
		}
		sep := "."
		if bytes.IndexByte(line, '\t') >= 0 {
			sep = "\t"
		}
		comps := strings.Split(string(line), sep)
		ok := true
		for i, c := range comps {
			u, err := DecodeMUTF7(c)
			if err != nil {
				// Dovecot's version 2 file holds UTF-8.
				if !utf8.ValidString(c) {
					ok = false
					break
				}
				u = c
			}
			comps[i] = u
		}
		name := strings.Join(comps, "/")
		if _, err := checkName(name); !ok || err != nil {
			continue
		}
		if !slices.Contains(names, canonName(name)) {
			names = append(names, canonName(name))
		}
	}
	return names
}

// writeSubscriptions writes names in the version 1 form.
func (s *Store) writeSubscriptions(names []string) error {
	var b bytes.Buffer
	for _, n := range names {
		comps := strings.Split(n, "/")
		for i, c := range comps {
			comps[i] = EncodeMUTF7(c)
		}
		b.WriteString(strings.Join(comps, ".") + "\n")
	}
	return writeAtomic(s.root+"/"+subscriptionsFile, b.Bytes())
}

// Subscriptions returns the subscribed folder names (which need not
// exist), sorted.
func (s *Store) Subscriptions() ([]string, error) {
	names, err := s.readSubscriptions()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// Subscribe adds (on) or removes a name from the subscriptions.
func (s *Store) Subscribe(name string, on bool) error {
	if _, err := checkName(name); err != nil {
		return err
	}
	name = canonName(name)
	l, err := lockDot(s.root + "/" + subscriptionsFile)
	if err != nil {
		return err
	}
	defer l.unlock()
	names, err := s.readSubscriptions()
	if err != nil {
		return err
	}
	i := slices.Index(names, name)
	switch {
	case on && i < 0:
		names = append(names, name)
	case !on && i >= 0:
		names = slices.Delete(names, i, i+1)
	default:
		return nil
	}
	return s.writeSubscriptions(names)
}

// renameSubscriptions follows a folder rename (and its children's) in the
// subscriptions, best effort.
func (s *Store) renameSubscriptions(oldName, newName string) {
	l, err := lockDot(s.root + "/" + subscriptionsFile)
	if err != nil {
		return
	}
	defer l.unlock()
	names, err := s.readSubscriptions()
	if err != nil {
		return
	}
	changed := false
	for i, n := range names {
		if n == oldName {
			names[i], changed = newName, true
		} else if rest, ok := strings.CutPrefix(n, oldName+"/"); ok {
			names[i], changed = newName+"/"+rest, true
		}
	}
	if changed {
		s.writeSubscriptions(names)
	}
}

// EnsureSpecial creates (and subscribes) Sent, Drafts, Trash, Junk and
// Archive where missing.
func (s *Store) EnsureSpecial() error {
	for _, sf := range specialFolders {
		err := s.Create(sf.name)
		if errors.Is(err, ErrExists) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.Subscribe(sf.name, true); err != nil {
			return err
		}
	}
	return nil
}

// SpecialUse returns the RFC 6154 attribute of a folder name: "\Sent",
// "\Drafts", "\Trash", "\Junk", "\Archive", or "".
func SpecialUse(name string) string {
	for _, sf := range specialFolders {
		if name == sf.name {
			return sf.use
		}
	}
	return ""
}

// mutf7 is the base64 alphabet of modified UTF-7: ',' instead of '/', no
// padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// EncodeMUTF7 encodes a UTF-8 string in IMAP's modified UTF-7 (RFC 3501
// §5.1.3): printable ASCII as itself ('&' as "&-"), anything else as
// "&<base64 of UTF-16BE>-".
func EncodeMUTF7(s string) string {
	var b strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		raw := make([]byte, 2*len(run))
		for i, u := range run {
			raw[2*i], raw[2*i+1] = byte(u>>8), byte(u)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = utf16.AppendRune(run, r)
	}
	flush()
	return b.String()
}

// errMUTF7 is returned for a string that is not valid modified UTF-7.
var errMUTF7 = errors.New("not valid modified UTF-7")

// DecodeMUTF7 decodes IMAP's modified UTF-7 into UTF-8, strictly: a
// shifted run must hold something that could not be written directly.
func DecodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errMUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return "", errMUTF7
		}
		enc := s[i+1 : i+1+j]
		i += j + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.Strict().DecodeString(enc)
		if err != nil || len(raw)%2 != 0 || len(raw) == 0 {
			return "", errMUTF7
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		for _, r := range utf16.Decode(u) {
			if r == utf8.RuneError || r >= 0x20 && r <= 0x7e {
				return "", errMUTF7
			}
			b.WriteRune(r)
		}
		// Two shifted runs back to back would have been one.
		if i+1 < len(s) && s[i+1] == '&' && i+2 < len(s) && s[i+2] != '-' {
			return "", errMUTF7
		}
	}
	return b.String(), nil
}
