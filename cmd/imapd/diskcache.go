// The header cache on disk: postern-cache in a folder's directory keeps,
// per message key, what hdrcache.go parses from a header (the ENVELOPE
// and the decoded header text), so that a new session's FETCH ENVELOPE
// or header SEARCH opens no message file. A Maildir file never changes
// its content under its key, so an entry stays right as long as its key
// exists; entries of keys gone are dropped at the next write. Dovecot
// ignores the file (as Postern ignores Dovecot's index files).
//
// Privilege: the session's (the mailbox owner); the file is 0600.
// Failure modes: the file is only a cache. One that is missing,
// unreadable, too large, of another version or malformed is ignored (and
// rewritten); a write that fails is logged and forgotten. It is written
// to a unique temporary name and renamed over the old one, without
// fsync: a crash leaves the old file, no file, or the new one, all fine.
// Limits: at most maxCacheFile bytes are read; every length in it is
// checked against what is left.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"

	"postern/internal/log"
)

const (
	cacheFileName = "postern-cache"
	cacheMagic    = "POSTERN-HDRCACHE 1\n"
	maxCacheFile  = 64 << 20
	// saveAfter is how many headers a FETCH must have parsed anew for the
	// file to be rewritten at its end (else at CLOSE or logout).
	saveAfter = 500
)

var errBadCache = errors.New("malformed header cache")

// loadDiskCache fills sel.hdrs from the folder's cache file, once per
// selection, for the keys in the view.
func (sel *selected) loadDiskCache() {
	if sel.diskLoaded {
		return
	}
	sel.diskLoaded = true
	path := sel.f.Dir() + "/" + cacheFileName
	data, err := readCacheFile(path)
	if err != nil {
		if !os.IsNotExist(err) {
			log.Warnf("%s: %s: %v (rebuilding it)", sel.s.user, path, err)
		}
		return
	}
	want := make(map[string]bool, len(sel.msgs))
	for i := range sel.msgs {
		want[sel.msgs[i].m.Key] = true
	}
	if sel.hdrs == nil {
		sel.hdrs = make(map[string]*hdrInfo, len(sel.msgs))
	}
	err = decodeCache(data, func(key string, h *hdrInfo) bool {
		if want[key] && sel.hdrs[key] == nil && len(sel.hdrs) < maxHdrCache {
			sel.hdrs[key] = h
		}
		return len(sel.hdrs) < maxHdrCache
	})
	if err != nil {
		log.Warnf("%s: %s: %v (rebuilding it)", sel.s.user, path, err)
		sel.fresh += saveAfter // rewrite it even if nothing new is parsed
	}
}

// readCacheFile reads the cache file, at most maxCacheFile bytes.
func readCacheFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return nil, fmt.Errorf("header cache %s: %w", path, err)
	}
	if len(data) > maxCacheFile {
		return nil, fmt.Errorf("header cache %s: larger than %d bytes", path, maxCacheFile)
	}
	return data, nil
}

// saveDiskCache writes the entries of the messages in the view, if
// headers were parsed since the file was read.
func (sel *selected) saveDiskCache() {
	if sel.fresh == 0 || sel.hdrs == nil {
		return
	}
	sel.fresh = 0
	buf := []byte(cacheMagic)
	for i := range sel.msgs {
		e := &sel.msgs[i]
		if h := sel.hdrs[e.m.Key]; h != nil && !e.gone {
			buf = appendEntry(buf, e.m.Key, h)
		}
	}
	dir := sel.f.Dir()
	tmp := fmt.Sprintf("%s/%s.%d.%d.tmp", dir, cacheFileName, os.Getpid(), time.Now().UnixNano())
	err := os.WriteFile(tmp, buf, 0o600)
	if err == nil {
		err = os.Rename(tmp, dir+"/"+cacheFileName)
	}
	if err != nil {
		os.Remove(tmp)
		log.Warnf("%s: writing the header cache of %s: %v", sel.s.user, sel.name, err)
	}
}

// The encoding: cacheMagic, then per entry the key and the hdrInfo, as
// strings (uvarint length, bytes) and integers (varint).

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendAddrs(b []byte, as []imap.Address) []byte {
	b = binary.AppendUvarint(b, uint64(len(as)))
	for _, a := range as {
		b = appendStr(appendStr(appendStr(b, a.Name), a.Mailbox), a.Host)
	}
	return b
}

func appendEntry(b []byte, key string, h *hdrInfo) []byte {
	b = appendStr(b, key)
	flags := byte(0)
	if h.badDate {
		flags |= 1
	}
	env := h.env
	if !env.Date.IsZero() {
		flags |= 2
	}
	b = append(b, flags)
	if !env.Date.IsZero() {
		_, off := env.Date.Zone()
		b = binary.AppendVarint(b, env.Date.Unix())
		b = binary.AppendVarint(b, int64(off))
	}
	b = appendStr(b, h.text)
	b = appendStr(b, env.Subject)
	b = appendStr(b, env.MessageID)
	b = binary.AppendUvarint(b, uint64(len(env.InReplyTo)))
	for _, id := range env.InReplyTo {
		b = appendStr(b, id)
	}
	for _, as := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b = appendAddrs(b, as)
	}
	return b
}

// cacheDecoder reads the encoding; the first error sticks.
type cacheDecoder struct {
	b   []byte
	err error
}

func (d *cacheDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadCache
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cacheDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadCache
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cacheDecoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errBadCache
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a list length; each element takes at least min bytes.
func (d *cacheDecoder) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.err = errBadCache
		return 0
	}
	return int(n)
}

func (d *cacheDecoder) addrs() []imap.Address {
	n := d.count(3)
	if n == 0 {
		return nil
	}
	as := make([]imap.Address, n)
	for i := range as {
		as[i] = imap.Address{Name: d.str(), Mailbox: d.str(), Host: d.str()}
	}
	return as
}

// decodeCache calls fn for every entry of a cache file until fn returns
// false. A malformed file is an error (the entries before it were given).
func decodeCache(data []byte, fn func(key string, h *hdrInfo) bool) error {
	if len(data) < len(cacheMagic) || string(data[:len(cacheMagic)]) != cacheMagic {
		return errBadCache
	}
	d := &cacheDecoder{b: data[len(cacheMagic):]}
	for len(d.b) > 0 {
		key := d.str()
		if d.err != nil || len(d.b) == 0 {
			return errBadCache
		}
		flags := d.b[0]
		d.b = d.b[1:]
		env := &imap.Envelope{}
		h := &hdrInfo{env: env, badDate: flags&1 != 0}
		if flags&2 != 0 {
			sec, off := d.varint(), d.varint()
			if off < -24*3600 || off > 24*3600 {
				return errBadCache
			}
			env.Date = time.Unix(sec, 0).In(time.FixedZone("", int(off)))
		}
		h.text = d.str()
		env.Subject = d.str()
		env.MessageID = d.str()
		if n := d.count(1); n > 0 {
			env.InReplyTo = make([]string, n)
			for i := range env.InReplyTo {
				env.InReplyTo[i] = d.str()
			}
		}
		env.From, env.Sender, env.ReplyTo = d.addrs(), d.addrs(), d.addrs()
		env.To, env.Cc, env.Bcc = d.addrs(), d.addrs(), d.addrs()
		if d.err != nil {
			return d.err
		}
		if !fn(key, h) {
			return nil
		}
	}
	return nil
}
