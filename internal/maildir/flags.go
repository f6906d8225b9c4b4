package maildir

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Maildir keeps a message's flags in its file name, "<key>:2,<letters>",
// letters in ASCII order: D (draft) F (flagged) P (passed) R (replied)
// S (seen) T (trashed), then a..z for keywords, whose names Dovecot keeps
// in the folder's dovecot-keywords file ("<index> <name>" per line; index 0
// is letter 'a'). We use the same names and files, so Dovecot, mutt and
// Postern agree on every flag.

// infoSep starts the info part of a Maildir file name.
const infoSep = ":2,"

// keywordsFile is Dovecot's keyword table in each folder directory.
const keywordsFile = "dovecot-keywords"

// maxKeywords is the number of keyword letters, a..z.
const maxKeywords = 26

// maxKeywordLen bounds a keyword name (Dovecot allows long ones, but no
// client needs more).
const maxKeywordLen = 128

// maxKeywordsFile bounds the keyword file we read.
const maxKeywordsFile = 64 * 1024

// ParseInfo splits a Maildir file name (without directory) into its key,
// the unique part before ":2,", and its flag letters, as found (not
// validated). A name without info has empty flags; any other ':' info
// (":1,...", experimental) is cut off the key and ignored.
func ParseInfo(name string) (key, flags string) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		return name, ""
	}
	if strings.HasPrefix(name[i:], infoSep) {
		return name[:i], name[i+len(infoSep):]
	}
	return name[:i], ""
}

// NormalizeFlags validates maildir info letters (A-Z, a-z) and returns
// them sorted and without duplicates.
func NormalizeFlags(flags string) (string, error) {
	var seen [128]bool
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return "", fmt.Errorf("maildir: bad flag letter %q", c)
		}
		seen[c] = true
	}
	b := make([]byte, 0, len(flags))
	for c := range seen {
		if seen[c] {
			b = append(b, byte(c))
		}
	}
	return string(b), nil
}

// cleanFlags is NormalizeFlags for a name found on disk: letters that are
// not flags are dropped rather than refused.
func cleanFlags(flags string) string {
	if sortedFlags(flags) {
		return flags // the usual case: no allocation
	}
	b := make([]byte, 0, len(flags))
	for i := 0; i < len(flags); i++ {
		if c := flags[i]; c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' {
			b = append(b, c)
		}
	}
	s, _ := NormalizeFlags(string(b))
	return s
}

// sortedFlags reports whether flags are letters, sorted, without
// duplicates: what NormalizeFlags would return unchanged.
func sortedFlags(flags string) bool {
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') || i > 0 && flags[i-1] >= c {
			return false
		}
	}
	return true
}

// keyField returns the value of a ",X=value" field of a key (S= or W=),
// or -1.
func keyField(key string, field byte) int64 {
	i := strings.IndexByte(key, ',')
	if i < 0 {
		return -1
	}
	for rest := key[i+1:]; rest != ""; {
		f := rest
		if j := strings.IndexByte(rest, ','); j >= 0 {
			f, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		if len(f) > 2 && f[0] == field && f[1] == '=' {
			n, err := strconv.ParseInt(f[2:], 10, 64)
			if err == nil && n >= 0 {
				return n
			}
		}
	}
	return -1
}

// keyTime returns the delivery time encoded in a key that starts with
// "SECONDS." (and optionally ".M<usec>"), and whether there was one.
func keyTime(key string) (time.Time, bool) {
	i := 0
	for i < len(key) && key[i] >= '0' && key[i] <= '9' {
		i++
	}
	if i == 0 || i > 12 || i >= len(key) || key[i] != '.' {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(key[:i], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var usec int64
	rest := key[i+1:]
	if len(rest) > 1 && rest[0] == 'M' {
		j := 1
		for j < len(rest) && j <= 7 && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if u, err := strconv.ParseInt(rest[1:j], 10, 64); err == nil && u < 1000000 {
			usec = u
		}
	}
	return time.Unix(sec, usec*1000), true
}

// ParseKeywords parses a dovecot-keywords file into a table indexed by
// letter ('a'+i); unknown, out-of-range or malformed lines are ignored.
func ParseKeywords(data []byte) []string {
	var tab []string
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		idx, err := strconv.Atoi(string(line[:sp]))
		if err != nil || idx < 0 || idx >= maxKeywords {
			continue
		}
		name := string(bytes.TrimRight(line[sp+1:], "\r"))
		if validKeyword(name) != nil {
			continue
		}
		for len(tab) <= idx {
			tab = append(tab, "")
		}
		tab[idx] = name
	}
	return tab
}

// validKeyword checks an IMAP keyword: an atom without '\', printable
// ASCII, not too long.
func validKeyword(name string) error {
	if name == "" || len(name) > maxKeywordLen || !utf8.ValidString(name) {
		return fmt.Errorf("keyword %q: %w", name, ErrBadName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return fmt.Errorf("keyword %q: %w", name, ErrBadName)
		}
	}
	return nil
}

// formatKeywords writes a keyword table in Dovecot's form.
func formatKeywords(tab []string) []byte {
	var b bytes.Buffer
	for i, k := range tab {
		if k != "" {
			fmt.Fprintf(&b, "%d %s\n", i, k)
		}
	}
	return b.Bytes()
}

// readKeywords reads the folder's keyword table; a missing file is an
// empty table.
func (f *Folder) readKeywords() ([]string, error) {
	path := f.dir + "/" + keywordsFile
	data, err := readLimited(path, maxKeywordsFile)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseKeywords(data), nil
}

// Keywords returns the folder's keyword table in index order: entry i is
// letter 'a'+i; unused indexes are "".
func (f *Folder) Keywords() ([]string, error) {
	return f.readKeywords()
}

// KeywordLetter maps a keyword (case-insensitively, as IMAP compares
// them) to its letter. When the keyword is new and create is true it is
// added to dovecot-keywords under the uidlist lock, as Dovecot does;
// when create is false a new keyword is ErrNoKeyword. With all 26 letters
// in use a new keyword is ErrTooManyKeywords. A bad name is ErrBadName.
func (f *Folder) KeywordLetter(name string, create bool) (byte, error) {
	if err := validKeyword(name); err != nil {
		return 0, err
	}
	find := func(tab []string) byte {
		for i, k := range tab {
			if k != "" && strings.EqualFold(k, name) {
				return byte('a' + i)
			}
		}
		return 0
	}
	tab, err := f.readKeywords()
	if err != nil {
		return 0, err
	}
	if c := find(tab); c != 0 || !create {
		if c == 0 {
			return 0, ErrNoKeyword
		}
		return c, nil
	}
	l, err := lockDot(f.dir + "/" + uidlistFile)
	if err != nil {
		return 0, err
	}
	defer l.unlock()
	if tab, err = f.readKeywords(); err != nil {
		return 0, err
	}
	if c := find(tab); c != 0 {
		return c, nil
	}
	idx := slices.Index(tab, "")
	if idx < 0 {
		if len(tab) >= maxKeywords {
			return 0, fmt.Errorf("maildir %s: keyword %q: %w", f.dir, name, ErrTooManyKeywords)
		}
		idx = len(tab)
		tab = append(tab, "")
	}
	tab[idx] = name
	if err := writeAtomic(f.dir+"/"+keywordsFile, formatKeywords(tab)); err != nil {
		return 0, err
	}
	return byte('a' + idx), nil
}

// KeywordName returns the keyword of letter c ('a'..'z') in tab, or "".
func KeywordName(tab []string, c byte) string {
	if c < 'a' || c > 'z' || int(c-'a') >= len(tab) {
		return ""
	}
	return tab[c-'a']
}
