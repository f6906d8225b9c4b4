package maildir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The uid list maps a message's key (its file name up to ":2,") to its
// IMAP UID. It is Dovecot's dovecot-uidlist, version 3:
//
//	3 V<uidvalidity> N<nextuid> G<guid, 32 hex>
//	<uid> [<extension fields, e.g. W<vsize> S<size>>] :<key>
//
// Version 1 files (Courier's courierimapuiddb form, "1 <uidvalidity>
// <nextuid>" then "<uid> <key>") are read too. Unknown header and
// extension fields are kept across a rewrite. The file is only rewritten
// under the dotlock dovecot-uidlist.lock, by writing a temporary file and
// renaming it over the old one, so a reader never sees half a file.

// uidlistFile is the name of the uid list in each folder directory.
const uidlistFile = "dovecot-uidlist"

// maxUIDListSize bounds the uid list we read (about two million messages).
const maxUIDListSize = 256 << 20

// maxUIDLine bounds one line of the uid list.
const maxUIDLine = 8192

// UIDList is a parsed dovecot-uidlist.
type UIDList struct {
	Version     int    // 1 or 3 as read; always written as 3
	UIDValidity uint32 // IMAP UIDVALIDITY, never 0
	NextUID     uint32 // the UID the next new message gets; only grows
	GUID        string // the mailbox GUID, 32 hex digits ("" if none)
	Extra       string // unknown header fields, kept as read
	Entries     []UIDEntry
}

// UIDEntry is one message of a UIDList.
type UIDEntry struct {
	UID   uint32
	Key   string // the file name up to ":2,"
	VSize int64  // W field: size with CRLF line ends, or -1
	Ext   string // other extension fields, kept as read (space separated)
}

// CorruptError describes a uid list that could not be parsed and was
// replaced: every message got a new UID under a new UIDVALIDITY. Clients
// download the folder again; the administrator should hear of it.
type CorruptError struct {
	Path           string
	Err            error  // why the old file was refused
	OldUIDValidity uint32 // 0 if it could not be read
	NewUIDValidity uint32
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("maildir %s: corrupt uid list (%v): renumbered every message, UIDVALIDITY %d -> %d",
		e.Path, e.Err, e.OldUIDValidity, e.NewUIDValidity)
}

// Unwrap returns the parse error.
func (e *CorruptError) Unwrap() error { return e.Err }

// errSyntax is wrapped by every parse error of ParseUIDList.
var errSyntax = errors.New("uid list syntax")

// ParseUIDList parses a dovecot-uidlist (version 3, or Courier's version
// 1). An error means the file is corrupt. A UID at or above the header's
// next UID raises NextUID; a key listed twice keeps its first UID.
func ParseUIDList(data []byte) (*UIDList, error) {
	if len(data) > maxUIDListSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", errSyntax, maxUIDListSize)
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, fmt.Errorf("%w: no header line", errSyntax)
	}
	head := strings.TrimRight(string(data[:nl]), "\r")
	body := data[nl+1:]
	l := &UIDList{}
	fields := strings.Fields(head)
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: empty header", errSyntax)
	}
	switch fields[0] {
	case "1":
		if len(fields) < 3 {
			return nil, fmt.Errorf("%w: short version 1 header", errSyntax)
		}
		v, err1 := strconv.ParseUint(fields[1], 10, 32)
		n, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: bad version 1 header %q", errSyntax, head)
		}
		l.Version, l.UIDValidity, l.NextUID = 1, uint32(v), uint32(n)
	case "3":
		l.Version = 3
		var extra []string
		for _, f := range fields[1:] {
			switch f[0] {
			case 'V', 'N':
				n, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return nil, fmt.Errorf("%w: bad header field %q", errSyntax, f)
				}
				if f[0] == 'V' {
					l.UIDValidity = uint32(n)
				} else {
					l.NextUID = uint32(n)
				}
			case 'G':
				l.GUID = f[1:]
			default:
				extra = append(extra, f)
			}
		}
		l.Extra = strings.Join(extra, " ")
	default:
		return nil, fmt.Errorf("%w: unknown version %q", errSyntax, fields[0])
	}
	if l.UIDValidity == 0 {
		return nil, fmt.Errorf("%w: no UIDVALIDITY", errSyntax)
	}
	if l.NextUID == 0 {
		l.NextUID = 1
	}
	seen := make(map[string]bool)
	var last uint32
	lineNo := 1
	for len(body) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			continue
		}
		if len(line) > maxUIDLine {
			return nil, fmt.Errorf("%w: line %d too long", errSyntax, lineNo)
		}
		e, err := parseUIDLine(string(line), l.Version)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errSyntax, lineNo, err)
		}
		if e.UID <= last {
			return nil, fmt.Errorf("%w: line %d: UID %d not above %d", errSyntax, lineNo, e.UID, last)
		}
		last = e.UID
		if seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		if e.UID >= l.NextUID {
			if e.UID == ^uint32(0) {
				return nil, fmt.Errorf("%w: line %d: UID space exhausted", errSyntax, lineNo)
			}
			l.NextUID = e.UID + 1
		}
		l.Entries = append(l.Entries, e)
	}
	return l, nil
}

// parseUIDLine parses "<uid> [fields] :<key>" (version 3) or
// "<uid> <key>" (version 1).
func parseUIDLine(line string, version int) (UIDEntry, error) {
	e := UIDEntry{VSize: -1}
	sp := strings.IndexByte(line, ' ')
	if sp <= 0 {
		return e, errors.New("no key")
	}
	uid, err := strconv.ParseUint(line[:sp], 10, 32)
	if err != nil || uid == 0 {
		return e, fmt.Errorf("bad UID %q", line[:sp])
	}
	e.UID = uint32(uid)
	rest := line[sp+1:]
	if version == 1 {
		e.Key = rest
	} else {
		c := strings.IndexByte(rest, ':')
		if c < 0 {
			return e, errors.New("no ':' before the file name")
		}
		e.Key = rest[c+1:]
		var ext []string
		for _, f := range strings.Fields(rest[:c]) {
			if f[0] == 'W' {
				if n, err := strconv.ParseInt(f[1:], 10, 64); err == nil && n >= 0 {
					e.VSize = n
					continue
				}
			}
			ext = append(ext, f)
		}
		e.Ext = strings.Join(ext, " ")
	}
	// A file name with info (written by a careless tool) still names its key.
	e.Key, _ = ParseInfo(e.Key)
	if !validKey(e.Key) {
		return e, fmt.Errorf("bad file name %q", e.Key)
	}
	return e, nil
}

// validKey reports whether a file's key can stand in a uid list: not
// empty, no '/', and no control character (a CR above all, which the end
// of a line loses, so the list could not read its own output). No file
// Postern or Dovecot delivers has one; the scan passes over such files.
func validKey(key string) bool {
	return key != "" && !strings.ContainsFunc(key, func(r rune) bool {
		return r == '/' || r < 0x20 || r == 0x7f
	})
}

// Marshal formats the list as a version 3 dovecot-uidlist.
func (l *UIDList) Marshal() []byte {
	var b bytes.Buffer
	b.Grow(64 + 80*len(l.Entries))
	fmt.Fprintf(&b, "3 V%d N%d", l.UIDValidity, l.NextUID)
	if l.GUID != "" {
		b.WriteString(" G" + l.GUID)
	}
	if l.Extra != "" {
		b.WriteString(" " + l.Extra)
	}
	b.WriteByte('\n')
	for _, e := range l.Entries {
		b.WriteString(strconv.FormatUint(uint64(e.UID), 10))
		if e.Ext != "" {
			b.WriteString(" " + e.Ext)
		}
		if e.VSize >= 0 {
			b.WriteString(" W" + strconv.FormatInt(e.VSize, 10))
		}
		b.WriteString(" :" + e.Key + "\n")
	}
	return b.Bytes()
}

// newUIDList starts a list for a folder that has none (or a corrupt one),
// with UIDVALIDITY v.
func newUIDList(v uint32) *UIDList {
	return &UIDList{Version: 3, UIDValidity: v, NextUID: 1, GUID: newGUID()}
}

// uidvalidityFile in the root Maildir holds the last UIDVALIDITY given to
// any folder of the store, in hex, as Dovecot keeps it: a folder deleted
// and made again in the same second still gets a new one (RFC 3501
// §2.3.1.1). Beside it Dovecot keeps one empty marker file,
// dovecot-uidvalidity.<8 hex digits>, named after the same value; it
// trusts the marker, not the file, and claims a value by renaming the
// marker to it (which only one process can do). We follow both: read the
// higher of file and marker, rename the marker (or create the first),
// then write the file.
const uidvalidityFile = "dovecot-uidvalidity"

// nextUIDValidity returns a UIDVALIDITY for a new uid list: the current
// time, but above old and above every value the store gave before (by
// Postern or Dovecot). A store file that cannot be read or written only
// loses that guarantee.
func (s *Store) nextUIDValidity(old uint32) uint32 {
	path := s.root + "/" + uidvalidityFile
	// The dotlock orders Postern's processes; against Dovecot, which does
	// not take it, the marker's rename is what is atomic.
	if l, err := lockDot(path); err == nil {
		defer l.unlock()
	}
	for range 10 {
		last := old
		if data, err := readLimited(path, 64); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 16, 32); err == nil {
				last = max(last, uint32(n))
			}
		}
		marker, mv := s.uidvalidityMarker()
		last = max(last, mv)
		v := max(uint32(time.Now().Unix()), last+1)
		if v == 0 {
			v = 1 // wrapped: 0 is not a UIDVALIDITY
		}
		to := fmt.Sprintf("%s.%08x", path, v)
		if marker != "" {
			if err := os.Rename(s.root+"/"+marker, to); err != nil {
				if os.IsNotExist(err) {
					continue // Dovecot claimed a value meanwhile: look again
				}
				return v
			}
		} else {
			fh, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o444)
			if os.IsExist(err) {
				continue
			}
			if err != nil {
				return v
			}
			fh.Close()
		}
		writeAtomic(path, []byte(fmt.Sprintf("%08x", v)))
		return v
	}
	return max(uint32(time.Now().Unix()), old+1)
}

// uidvalidityMarker returns the name and value of the highest
// dovecot-uidvalidity.<hex> marker in the root ("" and 0 if none), and
// removes the others: Dovecot takes whichever it reads first.
func (s *Store) uidvalidityMarker() (string, uint32) {
	names, err := readNames(s.root)
	if err != nil {
		return "", 0
	}
	var best string
	var bv uint32
	for _, n := range names {
		hex, ok := strings.CutPrefix(n, uidvalidityFile+".")
		if !ok || len(hex) != 8 {
			continue
		}
		v, err := strconv.ParseUint(hex, 16, 32)
		if err != nil {
			continue
		}
		if best != "" && uint32(v) <= bv {
			os.Remove(s.root + "/" + n)
			continue
		}
		if best != "" {
			os.Remove(s.root + "/" + best)
		}
		best, bv = n, uint32(v)
	}
	return best, bv
}

// newGUID returns 128 random bits in hex, Dovecot's mailbox GUID form.
func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// oldUIDValidity digs the V field out of a header that did not parse, so
// that the replacement's UIDVALIDITY differs from what clients saw.
func oldUIDValidity(data []byte) uint32 {
	head, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(head))
	for i, s := range f {
		if len(f) > 0 && f[0] == "1" && i == 1 {
			if n, err := strconv.ParseUint(s, 10, 32); err == nil {
				return uint32(n)
			}
		}
		if strings.HasPrefix(s, "V") {
			if n, err := strconv.ParseUint(s[1:], 10, 32); err == nil {
				return uint32(n)
			}
		}
	}
	return 0
}
