package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The store: what pop3d, imapd and local use to read and change a
// Maildir++ tree while other processes deliver, sync, rename and expunge
// in it at the same time. Compatible with Dovecot on disk (uidlist.go,
// flags.go, folders.go), so an administrator can move between the two and
// keep every UID.
//
// Privilege: none of its own; it runs as the mailbox owner (pop3d, imapd)
// or on a locked thread with the owner's filesystem ids (local). Apart from
// Watch, no method starts a goroutine, so every file operation runs with
// the caller's thread's credentials.
//
// Concurrency: a file may vanish or be renamed between a readdir and its
// use; that is never an error (ENOENT means: look the key up again). The
// uid list is rewritten only under its dotlock, re-read after taking it,
// and UIDs once given are never reused. A Folder is safe for concurrent
// use by several goroutines.
//
// Limits: messages from Append are bounded by maxSize; the uid list,
// keyword and subscription files by fixed sizes; a lock wait by 10 s.

// Sentinel errors; match them with errors.Is.
var (
	ErrBadName         = errors.New("bad folder name")
	ErrNoFolder        = errors.New("no such folder")
	ErrExists          = errors.New("folder exists")
	ErrInUse           = errors.New("mailbox in use by another session")
	ErrNoMessage       = errors.New("no such message")
	ErrTooBig          = errors.New("message too big")
	ErrNoKeyword       = errors.New("no such keyword")
	ErrTooManyKeywords = errors.New("all 26 keyword letters in use")
	ErrLockTimeout     = errors.New("lock timeout")
)

// Message is one message of a folder as Sync found it.
type Message struct {
	UID    uint32
	Key    string    // base name (unique part, no ":2,")
	Name   string    // file name relative to the folder dir: "cur/<...>" or "new/<...>"
	Flags  string    // maildir info letters, sorted, incl. keyword letters
	Size   int64     // size with CRLF line ends
	Date   time.Time // internal date: the file's mtime (as Dovecot and mutt keep it), else the time in the unique name; zero when not yet known after LazyDates (see Folder.Date)
	Recent bool      // moved new→cur by this Sync call (IMAP \Recent)
}

// Folder is one open folder. Open it with Store.Open.
type Folder struct {
	store *Store
	name  string
	dir   string

	mu      sync.Mutex
	ul      *UIDList // the uid list as last read
	ulStat  fileID   // of the uid list file when ul was read
	corrupt error    // a *CorruptError not yet reported

	// The cache that lets an unchanged folder sync without readdir.
	cacheOK  bool
	newStat  fileID
	curStat  fileID
	ulCached fileID // the uid list the cache was built from
	msgs     []Message
	meta     map[string]msgMeta // per key: sizes and dates found once
	closed   bool
	dirFD    int  // O_PATH descriptor of dir for SetFlags' renames, or -1
	lazy     bool // LazyDates: Sync stats no file for its date
	cacheHit int  // for tests: syncs answered from the cache
}

// parkedFolder is what a closed Folder knew, kept by its Store for the
// next Open of the same folder in this process (an IMAP client's CLOSE
// and SELECT again): the uid list, so that an unchanged one is not read
// and parsed again, and per-key sizes and dates. Sync validates all of it
// against the disk as it validates its own cache.
type parkedFolder struct {
	ul               *UIDList
	ulStat, ulCached fileID
	cacheOK          bool
	newStat, curStat fileID
	msgs             []Message
	meta             map[string]msgMeta
}

// msgMeta is what was learned about a key at some cost.
type msgMeta struct {
	size int64
	date time.Time
}

// fileID tells whether a file or directory changed.
type fileID struct {
	ino   uint64
	size  int64
	mtime int64 // ns
	ok    bool
}

func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ok: true}, nil
}

// Open opens a folder: "INBOX" in any case, or a name from Folders.
// ErrNoFolder when it does not exist. A folder without a uid list gets
// one; one whose uid list is corrupt is renumbered (see Renumbered).
func (s *Store) Open(name string) (*Folder, error) {
	dir, err := s.folderDir(name)
	if err != nil {
		return nil, err
	}
	if !isFolderDir(dir) {
		return nil, fmt.Errorf("folder %q: %w", name, ErrNoFolder)
	}
	// A folder made by another tool may lack a subdirectory.
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(dir+"/"+sub, 0o700); err != nil && !os.IsExist(err) {
			return nil, fmt.Errorf("maildir %s: %w", dir, err)
		}
	}
	f := &Folder{store: s, name: canonName(name), dir: dir, meta: map[string]msgMeta{}, dirFD: -1}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.mu.Lock()
	if p := s.parked[dir]; p != nil {
		delete(s.parked, dir)
		f.ul, f.ulStat, f.ulCached = p.ul, p.ulStat, p.ulCached
		f.cacheOK, f.newStat, f.curStat = p.cacheOK, p.newStat, p.curStat
		f.msgs, f.meta = p.msgs, p.meta
	}
	s.mu.Unlock()
	if err := f.loadUIDList(false); err != nil {
		return nil, err
	}
	if f.ul == nil {
		// No uid list yet: make one, so UIDVALIDITY is fixed from now on.
		l, err := lockDot(f.uidlistPath())
		if err != nil {
			return nil, err
		}
		err = f.loadUIDList(true)
		if err == nil && f.ul == nil {
			f.ul = newUIDList(s.nextUIDValidity(0))
			err = f.writeUIDList()
		}
		l.unlock()
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Name returns the folder's name ("INBOX" or "a/b").
func (f *Folder) Name() string { return f.name }

// Dir returns the folder's directory.
func (f *Folder) Dir() string { return f.dir }

// UIDValidity returns the folder's UIDVALIDITY as last read.
func (f *Folder) UIDValidity() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ul.UIDValidity
}

// UIDNext returns the UID the next new message will get, as last read.
func (f *Folder) UIDNext() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ul.NextUID
}

// Renumbered returns, once, a *CorruptError if this Folder found the uid
// list corrupt and replaced it (new UIDVALIDITY, every message
// renumbered), for the caller to log; nil otherwise.
func (f *Folder) Renumbered() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.corrupt
	f.corrupt = nil
	return err
}

// Close releases the folder. It holds no lock between calls, and one
// descriptor (of its directory, see SetFlags); what it learned (uid list, sizes, dates, the sync cache) goes to
// the Store for the next Open of this folder in this process, which
// checks it against the disk before trusting it.
func (f *Folder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.dirFD >= 0 {
		unix.Close(f.dirFD)
		f.dirFD = -1
	}
	if f.ul != nil && f.corrupt == nil {
		p := &parkedFolder{ul: f.ul, ulStat: f.ulStat, ulCached: f.ulCached,
			cacheOK: f.cacheOK, newStat: f.newStat, curStat: f.curStat, msgs: f.msgs, meta: f.meta}
		s := f.store
		s.mu.Lock()
		if s.parked == nil {
			s.parked = make(map[string]*parkedFolder)
		}
		if len(s.parked) >= maxParked {
			clear(s.parked) // a bound, not an LRU: parking is only a shortcut
		}
		s.parked[f.dir] = p
		s.mu.Unlock()
	}
	f.ul, f.msgs, f.meta, f.cacheOK = nil, nil, nil, false
	return nil
}

// maxParked bounds the closed folders a Store remembers.
const maxParked = 8

// LazyDates makes Sync leave Message.Date zero where finding it would
// cost a stat of the message's file (a date once found is still
// reported); Date finds it on demand. For IMAP, which needs the internal
// date only for INTERNALDATE and date searches.
func (f *Folder) LazyDates() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lazy = true
}

// Date returns m's internal date: m.Date when known, else the file's
// mtime (stat'ed once and remembered), else the time in its name.
func (f *Folder) Date(m Message) time.Time {
	if !m.Date.IsZero() {
		return m.Date
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.meta == nil {
		f.meta = map[string]msgMeta{}
	}
	t := f.dateOf(diskFile{name: m.Name, key: m.Key})
	if f.meta[m.Key].date.IsZero() {
		// Renamed meanwhile: look it up by key once.
		if p, ok := f.findByKey(m.Key); ok {
			t = f.dateOf(diskFile{name: p, key: m.Key})
		}
	}
	return t
}

func (f *Folder) uidlistPath() string { return f.dir + "/" + uidlistFile }

// loadUIDList reads the uid list if it changed since the last read. A
// missing file leaves f.ul nil (when never read). A corrupt one is
// replaced under the lock (which the caller holds already if locked).
func (f *Folder) loadUIDList(locked bool) error {
	path := f.uidlistPath()
	id, err := statID(path)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maildir %s: %w", path, err)
	}
	if f.ul != nil && id == f.ulStat {
		return nil
	}
	data, err := readLimited(path, maxUIDListSize)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	l, perr := ParseUIDList(data)
	if perr != nil {
		return f.replaceCorrupt(data, perr, locked)
	}
	if f.ul != nil && (l.UIDValidity != f.ul.UIDValidity) {
		// Someone renumbered it: our cached UIDs mean nothing now.
		f.cacheOK = false
	}
	f.ul, f.ulStat = l, id
	return nil
}

// replaceCorrupt renumbers a folder whose uid list does not parse.
func (f *Folder) replaceCorrupt(data []byte, perr error, locked bool) error {
	if !locked {
		l, err := lockDot(f.uidlistPath())
		if err != nil {
			return err
		}
		defer l.unlock()
	}
	// Another process may have fixed it meanwhile.
	if d2, err := readLimited(f.uidlistPath(), maxUIDListSize); err == nil {
		if ul, err := ParseUIDList(d2); err == nil {
			id, _ := statID(f.uidlistPath())
			f.ul, f.ulStat = ul, id
			return nil
		}
	}
	old := oldUIDValidity(data)
	if f.ul != nil && old == 0 {
		old = f.ul.UIDValidity // what this session's client saw
	}
	f.ul = newUIDList(f.store.nextUIDValidity(old))
	f.corrupt = &CorruptError{Path: f.uidlistPath(), Err: perr, OldUIDValidity: old, NewUIDValidity: f.ul.UIDValidity}
	f.cacheOK = false
	// Number what is there now, in delivery order.
	files, err := f.scan()
	if err != nil {
		return err
	}
	f.assign(files)
	return f.writeUIDList()
}

// writeUIDList writes f.ul (lock held) and notes its new identity.
func (f *Folder) writeUIDList() error {
	if f.ul.GUID == "" {
		f.ul.GUID = newGUID()
	}
	if err := writeAtomic(f.uidlistPath(), f.ul.Marshal()); err != nil {
		return err
	}
	id, err := statID(f.uidlistPath())
	if err != nil {
		return fmt.Errorf("maildir %s: %w", f.uidlistPath(), err)
	}
	f.ulStat = id
	return nil
}

// diskFile is a message file found by a scan.
type diskFile struct {
	name  string // "cur/..." or "new/..."
	key   string
	flags string
}

// scan reads new/ and then cur/ (in that order, so a file moved new→cur
// meanwhile is seen at least once) and returns the files by key.
func (f *Folder) scan() (map[string]diskFile, error) {
	hint := 0
	if f.ul != nil {
		hint = len(f.ul.Entries) + 16
	}
	files := make(map[string]diskFile, hint)
	for _, sub := range []string{"new", "cur"} {
		names, err := readNames(f.dir + "/" + sub)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			key, flags := ParseInfo(n)
			if !validKey(key) {
				continue
			}
			if sub == "new" {
				flags = ""
			}
			files[key] = diskFile{name: sub + "/" + n, key: key, flags: cleanFlags(flags)}
		}
	}
	return files, nil
}

// readNames lists a directory's regular entries, without dot files.
func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", dir, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", dir, err)
	}
	out := names[:0]
	for _, n := range names {
		if n != "" && n[0] != '.' {
			out = append(out, n)
		}
	}
	return out, nil
}

// assign gives UIDs to the files f.ul lacks, in order of delivery time
// then name, and drops entries whose file is gone. The lock is held and
// f.ul is fresh. It reports whether f.ul changed.
func (f *Folder) assign(files map[string]diskFile) bool {
	known := make(map[string]bool, len(f.ul.Entries))
	kept := f.ul.Entries[:0]
	changed := false
	for _, e := range f.ul.Entries {
		if _, ok := files[e.Key]; ok {
			known[e.Key] = true
			kept = append(kept, e)
		} else {
			changed = true
		}
	}
	f.ul.Entries = kept
	type nk struct {
		t   time.Time
		key string
	}
	var fresh []nk
	for key, df := range files {
		if !known[key] {
			fresh = append(fresh, nk{f.orderOf(df), key})
		}
	}
	slices.SortFunc(fresh, func(a, b nk) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	for _, n := range fresh {
		if f.ul.NextUID == ^uint32(0) {
			break // UID space exhausted; the folder needs a renumber by hand
		}
		vs := keyField(n.key, 'W')
		if vs < 0 {
			if m, ok := f.meta[n.key]; ok && m.size >= 0 {
				vs = m.size
			}
		}
		f.ul.Entries = append(f.ul.Entries, UIDEntry{UID: f.ul.NextUID, Key: n.key, VSize: vs})
		f.ul.NextUID++
		changed = true
	}
	return changed
}

// orderOf returns the time that orders new files for numbering: the time
// in the name (when the file was saved), else its internal date. Dovecot
// numbers new files in the order of their names' times too.
func (f *Folder) orderOf(df diskFile) time.Time {
	if t, ok := keyTime(df.key); ok {
		return t
	}
	return f.dateOf(df)
}

// dateOf returns a file's internal date: its mtime (stat'ed once and
// remembered), else the time in its name. The mtime, not the name, is
// where Maildir keeps the internal date: Dovecot's APPEND with a date and
// its COPY, and mutt's save, give a file a name of the time of saving and
// the mtime of the message's date, and Dovecot reports the mtime as
// INTERNALDATE (Postern's Append and Deliver set both alike).
func (f *Folder) dateOf(df diskFile) time.Time {
	if m, ok := f.meta[df.key]; ok && !m.date.IsZero() {
		return m.date
	}
	var st unix.Stat_t
	if err := unix.Stat(f.dir+"/"+df.name, &st); err != nil {
		// Renamed (flags changed) or expunged meanwhile: the name's time
		// for now, not remembered, so that the next Sync stats again.
		t, _ := keyTime(df.key)
		return t
	}
	t := time.Unix(st.Mtim.Unix())
	m, ok := f.meta[df.key]
	if !ok {
		m.size = -1
	}
	m.date = t
	f.meta[df.key] = m
	return t
}

// syncDate is the date Sync reports: dateOf, or with LazyDates only a
// date already known.
func (f *Folder) syncDate(df diskFile) time.Time {
	if f.lazy {
		return f.meta[df.key].date
	}
	return f.dateOf(df)
}

// sizeOf returns a message's CRLF size: W= in its name, the uid list, or
// counted once from the file and remembered.
func (f *Folder) sizeOf(df diskFile, e UIDEntry) int64 {
	if w := keyField(df.key, 'W'); w >= 0 {
		return w
	}
	if e.VSize >= 0 {
		return e.VSize
	}
	if m, ok := f.meta[df.key]; ok && m.size >= 0 {
		return m.size
	}
	n, err := fileCRLFSize(f.dir + "/" + df.name)
	if err != nil {
		// Renamed meanwhile: try by key; else report the stat size.
		if p, ok := f.findByKey(df.key); ok {
			n, err = fileCRLFSize(f.dir + "/" + p)
		}
		if err != nil {
			return 0
		}
	}
	m := f.meta[df.key]
	m.size = n
	f.meta[df.key] = m
	return n
}

// findByKey looks for the file of a key in cur/ and then new/; it returns
// its name relative to the folder.
func (f *Folder) findByKey(key string) (string, bool) {
	for _, sub := range []string{"cur", "new"} {
		names, err := readNames(f.dir + "/" + sub)
		if err != nil {
			continue
		}
		for _, n := range names {
			if k, _ := ParseInfo(n); k == key {
				return sub + "/" + n, true
			}
		}
	}
	return "", false
}

// cacheAge is how old a directory's mtime must be before we trust that an
// unchanged mtime means unchanged contents: the kernel's clock for file
// times is coarse, so a change just after our readdir may keep the mtime.
const cacheAge = time.Second

// Sync scans new/ and cur/, gives UIDs to files the uid list lacks (under
// the lock, in order of delivery time then name), drops entries whose file
// is gone, and returns every message in UID order. takeNew moves new/
// files into cur/ (adding ":2,") and marks them Recent. A second Sync of
// an unchanged folder answers from memory without readdir.
func (f *Folder) Sync(takeNew bool) ([]Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("maildir %s: folder closed", f.dir)
	}
	start := time.Now()
	newID, err1 := statID(f.dir + "/new")
	curID, err2 := statID(f.dir + "/cur")
	if err1 != nil || err2 != nil {
		if os.IsNotExist(err1) || os.IsNotExist(err2) {
			return nil, fmt.Errorf("folder %q: %w", f.name, ErrNoFolder)
		}
		return nil, fmt.Errorf("maildir %s: %v %v", f.dir, err1, err2)
	}
	if err := f.loadUIDList(false); err != nil {
		return nil, err
	}
	if f.ul == nil {
		// Removed under us (a tool "reset" the folder): start again.
		return nil, fmt.Errorf("maildir %s: uid list vanished", f.dir)
	}
	if f.cacheOK && newID == f.newStat && curID == f.curStat && f.ulStat == f.ulCached &&
		(!takeNew || !f.hasNew()) {
		f.cacheHit++
		out := slices.Clone(f.msgs)
		return out, nil
	}

	files, err := f.scan()
	if err != nil {
		return nil, err
	}
	if f.needsAssign(files) {
		// A readdir racing with a rename may miss a file: look again
		// before believing that something is new or gone.
		if files, err = f.scanTwice(files); err != nil {
			return nil, err
		}
		if f.needsAssign(files) {
			if files, err = f.lockedAssign(); err != nil {
				return nil, err
			}
		}
	}

	recent := map[string]bool{}
	if takeNew {
		for key, df := range files {
			if !strings.HasPrefix(df.name, "new/") {
				continue
			}
			base := df.name[len("new/"):]
			to := "cur/" + key + infoSep + df.flags
			if strings.Contains(base, infoSep) {
				to = "cur/" + base
			}
			err := renameFile(f.dir+"/"+df.name, f.dir+"/"+to)
			if err == nil {
				df.name = to
				files[key] = df
				recent[key] = true
			} else if p, ok := f.findByKey(key); ok {
				// Another session took it first.
				_, fl := ParseInfo(p[4:])
				df.name, df.flags = p, cleanFlags(fl)
				files[key] = df
			} else {
				delete(files, key) // expunged meanwhile
			}
		}
	}

	msgs := make([]Message, 0, len(f.ul.Entries))
	computed := 0
	for _, e := range f.ul.Entries {
		df, ok := files[e.Key]
		if !ok {
			continue
		}
		if e.VSize < 0 && keyField(e.Key, 'W') < 0 {
			computed++
		}
		msgs = append(msgs, Message{
			UID:    e.UID,
			Key:    e.Key,
			Name:   df.name,
			Flags:  df.flags,
			Size:   f.sizeOf(df, e),
			Date:   f.syncDate(df),
			Recent: recent[e.Key],
		})
	}
	f.msgs = msgs
	if computed > 0 {
		// Sizes counted from files: keep them in the uid list, so that no
		// later session opens those files again.
		if err := f.storeSizes(); err != nil {
			return nil, err
		}
	}
	f.ulCached = f.ulStat
	// Trust the cache next time only if the directories were not changed
	// too recently to tell, and we changed nothing ourselves.
	f.newStat, f.curStat = newID, curID
	f.cacheOK = len(recent) == 0 && start.Sub(time.Unix(0, max(newID.mtime, curID.mtime))) > cacheAge
	for k := range f.meta {
		if _, ok := files[k]; !ok {
			delete(f.meta, k)
		}
	}
	out := slices.Clone(msgs)
	for i := range f.msgs {
		f.msgs[i].Recent = false
	}
	return out, nil
}

// storeSizes writes sizes learned from files into the uid list entries
// that lack them, under the lock.
func (f *Folder) storeSizes() error {
	l, err := lockDot(f.uidlistPath())
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := f.loadUIDList(true); err != nil {
		return err
	}
	changed := false
	for i, e := range f.ul.Entries {
		if m, ok := f.meta[e.Key]; ok && e.VSize < 0 && m.size >= 0 {
			f.ul.Entries[i].VSize = m.size
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return f.writeUIDList()
}

// hasNew reports whether the cached list has a message still in new/.
func (f *Folder) hasNew() bool {
	for _, m := range f.msgs {
		if strings.HasPrefix(m.Name, "new/") {
			return true
		}
	}
	return false
}

// needsAssign reports whether some file has no UID yet, or some entry of
// the uid list no file.
func (f *Folder) needsAssign(files map[string]diskFile) bool {
	if len(files) != len(f.ul.Entries) {
		return true
	}
	for _, e := range f.ul.Entries {
		if _, ok := files[e.Key]; !ok {
			return true
		}
	}
	return false
}

// scanTwice scans again and merges with an earlier scan (the later name
// wins): readdir is not atomic against renames in the same directory, and
// a file missed by one scan is found by the other.
func (f *Folder) scanTwice(first map[string]diskFile) (map[string]diskFile, error) {
	second, err := f.scan()
	if err != nil {
		return nil, err
	}
	for k, df := range first {
		if _, ok := second[k]; !ok {
			second[k] = df
		}
	}
	return second, nil
}

// lockedAssign takes the uid list lock, re-reads the list (another process
// may have numbered the files already), rescans (twice, see scanTwice),
// numbers what is still new, drops what is gone, and returns the files.
func (f *Folder) lockedAssign() (map[string]diskFile, error) {
	l, err := lockDot(f.uidlistPath())
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	if err := f.loadUIDList(true); err != nil {
		return nil, err
	}
	files, err := f.scan()
	if err != nil {
		return nil, err
	}
	if files, err = f.scanTwice(files); err != nil {
		return nil, err
	}
	if f.assign(files) {
		if err := f.writeUIDList(); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// resolve returns the current name of m's file, following a rename by
// another process through its key.
func (f *Folder) resolve(m Message) (string, error) {
	if m.Name != "" {
		if _, err := os.Lstat(f.dir + "/" + m.Name); err == nil {
			return m.Name, nil
		}
	}
	if p, ok := f.findByKey(m.Key); ok {
		return p, nil
	}
	return "", fmt.Errorf("maildir %s: message %s: %w", f.dir, m.Key, ErrNoMessage)
}

// Open opens the message's file for reading; if it was renamed by another
// process (flags changed) it finds it again by Key. ErrNoMessage when it
// is gone.
func (f *Folder) Open(m Message) (*os.File, error) {
	if m.Name != "" {
		// The name Sync saw is almost always still right: try it before
		// paying for a lookup.
		fh, err := os.OpenFile(f.dir+"/"+m.Name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err == nil {
			return fh, nil
		}
		if !os.IsNotExist(err) {
			return nil, fmt.Errorf("maildir %s: %w", f.dir, err)
		}
		m.Name = ""
	}
	for range 3 {
		name, err := f.resolve(m)
		if err != nil {
			return nil, err
		}
		fh, err := os.OpenFile(f.dir+"/"+name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err == nil {
			return fh, nil
		}
		if !os.IsNotExist(err) {
			return nil, fmt.Errorf("maildir %s: %w", f.dir, err)
		}
		m.Name = ""
	}
	return nil, fmt.Errorf("maildir %s: message %s: %w", f.dir, m.Key, ErrNoMessage)
}

// ReadMessage reads the first limit bytes of m's file (all of it if
// shorter) into buf, grown as needed, and returns them; a file renamed by
// another process is found again by Key, ErrNoMessage when it is gone.
// It costs an open, a read and a close where Open and a read cost more
// (os.File registers every file with the poller, and a read to see EOF
// is saved when the key's S= tells the size), which counts when a client
// fetches thousands of messages.
func (f *Folder) ReadMessage(m Message, buf []byte, limit int) ([]byte, error) {
	size := keyField(m.Key, 'S')
	name := m.Name
	for range 3 {
		if name == "" {
			p, err := f.resolve(m)
			if err != nil {
				return nil, err
			}
			name = p
		}
		fd, err := unix.Open(f.dir+"/"+name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOENT {
			name, m.Name = "", ""
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("maildir %s: %s: %w", f.dir, name, err)
		}
		out, err := readFD(fd, buf[:0], limit, size)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("maildir %s: %s: %w", f.dir, name, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("maildir %s: message %s: %w", f.dir, m.Key, ErrNoMessage)
}

// readFD appends up to limit bytes of fd to b; it stops early at EOF or
// once size bytes (the file size, if known, else -1) are read.
func readFD(fd int, b []byte, limit int, size int64) ([]byte, error) {
	for len(b) < limit {
		if len(b) == cap(b) {
			want := limit
			if size >= 0 && size < int64(limit) {
				want = int(size)
			}
			if want <= cap(b) {
				want = max(cap(b)*2, 512)
			}
			b = slices.Grow(b, min(want, limit)-len(b))
		}
		n, err := unix.Read(fd, b[len(b):min(cap(b), limit)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
		if size >= 0 && int64(len(b)) == size {
			break
		}
	}
	return b, nil
}

// SetFlags renames the file to carry flags (letters; validated, sorted,
// deduplicated); a message in new/ moves to cur/. It returns the updated
// Message.
func (f *Folder) SetFlags(m Message, flags string) (Message, error) {
	flags, err := NormalizeFlags(flags)
	if err != nil {
		return m, fmt.Errorf("maildir %s: %w", f.dir, err)
	}
	to := "cur/" + m.Key + infoSep + flags
	if m.Name != "" && m.Name != to {
		// The name Sync saw is almost always still right: rename without
		// looking first (a lookup would double the system calls of a
		// STORE on a large mailbox).
		err := f.renameIn(m.Name, to)
		if err == nil {
			m.Name, m.Flags = to, flags
			return m, nil
		}
		if !os.IsNotExist(err) {
			return m, fmt.Errorf("maildir %s: set flags: %w", f.dir, err)
		}
		m.Name = ""
	}
	for range 5 {
		name, err := f.resolve(m)
		if err != nil {
			return m, err
		}
		if name == to {
			m.Name, m.Flags = to, flags
			return m, nil
		}
		err = renameFile(f.dir+"/"+name, f.dir+"/"+to)
		if err == nil {
			m.Name, m.Flags = to, flags
			return m, nil
		}
		if !os.IsNotExist(err) {
			return m, fmt.Errorf("maildir %s: set flags: %w", f.dir, err)
		}
		m.Name = "" // renamed under us: look again
	}
	return m, fmt.Errorf("maildir %s: message %s keeps changing: %w", f.dir, m.Key, ErrNoMessage)
}

// renameIn renames a message file within the folder, relative to a
// descriptor of the folder's directory kept from the first call on: the
// kernel then walks two components per rename, not the whole path (a
// STORE on 10,000 messages is 10,000 renames). Should the directory be
// renamed meanwhile (RENAME by another session), the message follows it,
// as it would have had the rename come first.
func (f *Folder) renameIn(from, to string) error {
	// f.mu, so that Close cannot close the descriptor under us.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirFD < 0 && !f.closed {
		if fd, err := unix.Open(f.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			f.dirFD = fd
		}
	}
	if f.dirFD < 0 {
		return renameFile(f.dir+"/"+from, f.dir+"/"+to)
	}
	if err := unix.Renameat(f.dirFD, from, f.dirFD, to); err != nil {
		return &os.LinkError{Op: "rename", Old: f.dir + "/" + from, New: f.dir + "/" + to, Err: err}
	}
	return nil
}

// renameFile renames a message file. os.Rename stats the target first
// (to refuse renaming over a directory, which rename(2) refuses anyway for
// a file), which would double the system calls of a STORE.
func renameFile(from, to string) error {
	if err := unix.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// Expunge removes the message's file; one already gone is not an error.
// Its uid list entry goes at the next renumbering sync.
func (f *Folder) Expunge(m Message) error {
	for range 5 {
		name, err := f.resolve(m)
		if errors.Is(err, ErrNoMessage) {
			return nil
		}
		if err != nil {
			return err
		}
		err = os.Remove(f.dir + "/" + name)
		if err == nil || !os.IsNotExist(err) {
			if err != nil {
				return fmt.Errorf("maildir %s: expunge: %w", f.dir, err)
			}
			return nil
		}
		m.Name = ""
	}
	return nil
}

// appendHost is the host part of the names Append and CopyTo make.
func appendHost() string { return sanitizeHost("") }

// newKey makes a unique key for a message of the given date (the name
// carries the date, which Sync reads as the internal date).
func newKey(date time.Time, size, vsize int64) string {
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s,W=%d,S=%d", date.Unix(), date.Nanosecond()/1000,
		os.Getpid(), seq.Add(1), newGUID()[:8], appendHost(), vsize, size)
}

// Append writes r (CRLF or LF; stored with LF) via tmp/ → cur/ with flags
// and mtime=date, fsyncs file and directory, assigns the next UID (lock
// held) and returns it. maxSize > 0 bounds the size read (ErrTooBig).
func (f *Folder) Append(r io.Reader, flags string, date time.Time, maxSize int64) (uint32, error) {
	flags, err := NormalizeFlags(flags)
	if err != nil {
		return 0, fmt.Errorf("maildir %s: %w", f.dir, err)
	}
	if date.IsZero() {
		date = time.Now()
	}
	tmp := fmt.Sprintf("%s/tmp/%d.M%dP%dQ%d.%s", f.dir, time.Now().Unix(), time.Now().Nanosecond()/1000, os.Getpid(), seq.Add(1), appendHost())
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("maildir %s: append: %w", f.dir, err)
	}
	fail := func(err error) (uint32, error) {
		fh.Close()
		os.Remove(tmp)
		return 0, err
	}
	cr := &countReader{r: r}
	if maxSize > 0 {
		cr.r = io.LimitReader(r, maxSize+1)
	}
	size, vsize, err := writeMessage(int(fh.Fd()), tmp, nil, cr)
	if err != nil {
		return fail(err)
	}
	if maxSize > 0 && cr.n > maxSize {
		return fail(fmt.Errorf("maildir %s: append: more than %d bytes: %w", f.dir, maxSize, ErrTooBig))
	}
	if err := fh.Sync(); err != nil {
		return fail(fmt.Errorf("maildir %s: append: %w", f.dir, err))
	}
	if err := fh.Close(); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("maildir %s: append: %w", f.dir, err)
	}
	os.Chtimes(tmp, date, date)
	key := newKey(date, size, vsize)
	name := "cur/" + key + infoSep + flags
	if err := renameNoReplacePath(tmp, f.dir+"/"+name); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("maildir %s: append: %w", f.dir, err)
	}
	if err := syncDirPath(f.dir + "/cur"); err != nil {
		return 0, fmt.Errorf("maildir %s: append: %w", f.dir, err)
	}
	return f.uidFor(key, vsize)
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// uidFor returns the UID of a file just placed in the folder, giving it
// the next one under the lock unless a concurrent Sync already did.
func (f *Folder) uidFor(key string, vsize int64) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := lockDot(f.uidlistPath())
	if err != nil {
		return 0, err
	}
	defer l.unlock()
	if err := f.loadUIDList(true); err != nil {
		return 0, err
	}
	if f.ul == nil {
		f.ul = newUIDList(f.store.nextUIDValidity(0))
	}
	for _, e := range f.ul.Entries {
		if e.Key == key {
			return e.UID, nil
		}
	}
	if f.ul.NextUID == ^uint32(0) {
		return 0, fmt.Errorf("maildir %s: UID space exhausted", f.dir)
	}
	uid := f.ul.NextUID
	f.ul.Entries = append(f.ul.Entries, UIDEntry{UID: uid, Key: key, VSize: vsize})
	f.ul.NextUID++
	if err := f.writeUIDList(); err != nil {
		return 0, err
	}
	f.cacheOK = false
	return uid, nil
}

// CopyTo puts a copy of m into dst (a hard link when possible, else a
// copy) with the same flags and date, and returns its new UID in dst.
func (f *Folder) CopyTo(m Message, dst *Folder) (uint32, error) {
	name, err := f.resolve(m)
	if err != nil {
		return 0, err
	}
	_, flags := ParseInfo(name[4:])
	if strings.HasPrefix(name, "new/") {
		flags = ""
	}
	flags = cleanFlags(flags)
	src := f.dir + "/" + name
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		if err == unix.ENOENT {
			// Renamed between resolve and stat: once more.
			if name, err = f.resolve(Message{Key: m.Key}); err != nil {
				return 0, err
			}
			src = f.dir + "/" + name
			if err := unix.Stat(src, &st); err != nil {
				return 0, fmt.Errorf("maildir %s: copy: %w", f.dir, err)
			}
		} else {
			return 0, fmt.Errorf("maildir %s: copy: %w", f.dir, err)
		}
	}
	date := m.Date
	if date.IsZero() {
		date = time.Unix(st.Mtim.Unix())
	}
	vsize := m.Size
	if w := keyField(m.Key, 'W'); w >= 0 {
		vsize = w
	}
	key := newKey(date, st.Size, vsize)
	to := dst.dir + "/cur/" + key + infoSep + flags
	if err := os.Link(src, to); err != nil {
		if os.IsNotExist(err) {
			if !isFolderDir(dst.dir + "/cur") {
				return 0, fmt.Errorf("folder %q: %w", dst.name, ErrNoFolder)
			}
			return 0, fmt.Errorf("maildir %s: message %s: %w", f.dir, m.Key, ErrNoMessage)
		}
		// Another filesystem, or links not allowed: copy.
		in, oerr := f.Open(m)
		if oerr != nil {
			return 0, oerr
		}
		defer in.Close()
		return dst.Append(in, flags, date, 0)
	}
	if err := syncDirPath(dst.dir + "/cur"); err != nil {
		return 0, fmt.Errorf("maildir %s: copy: %w", dst.dir, err)
	}
	return dst.uidFor(key, vsize)
}

// MoveTo moves m into dst by rename (same filesystem, as Maildir++
// folders are), keeping flags and date, and returns its new UID in dst.
// If the rename fails for another reason than ENOENT it falls back to
// CopyTo and Expunge.
func (f *Folder) MoveTo(m Message, dst *Folder) (uint32, error) {
	for range 5 {
		name, err := f.resolve(m)
		if err != nil {
			return 0, err
		}
		base := name[4:]
		key, flags := ParseInfo(base)
		if strings.HasPrefix(name, "new/") {
			flags = ""
		}
		var st unix.Stat_t
		if err := unix.Stat(f.dir+"/"+name, &st); err != nil {
			m.Name = ""
			continue
		}
		date := m.Date
		if date.IsZero() {
			date = time.Unix(st.Mtim.Unix())
		}
		vs := keyField(key, 'W')
		if vs < 0 {
			vs = m.Size
		}
		// A fresh key: the old one may still stand, expunged, in dst's uid
		// list (a message moved there and back), and must not bring its
		// old UID back.
		newKey := newKey(date, st.Size, vs)
		to := "cur/" + newKey + infoSep + cleanFlags(flags)
		err = renameNoReplacePath(f.dir+"/"+name, dst.dir+"/"+to)
		if err == nil {
			syncDirPath(dst.dir + "/cur")
			return dst.uidFor(newKey, vs)
		}
		if os.IsNotExist(err) {
			m.Name = ""
			continue
		}
		uid, cerr := f.CopyTo(m, dst)
		if cerr != nil {
			return 0, cerr
		}
		return uid, f.Expunge(m)
	}
	return 0, fmt.Errorf("maildir %s: message %s: %w", f.dir, m.Key, ErrNoMessage)
}

// String describes the folder for log lines.
func (f *Folder) String() string { return f.name + " (" + f.dir + ")" }
