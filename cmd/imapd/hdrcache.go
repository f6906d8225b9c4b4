// The header cache of the selected mailbox: a message's ENVELOPE and its
// decoded header text, parsed once per session from the header block only
// (one read of the file's head, not the whole file), then used by every
// later FETCH ENVELOPE and by SEARCH's header keys, so that a SEARCH after
// a FETCH of envelopes (what clients do when they open a mailbox) reads no
// file for its header criteria.
//
// Limits: the header read is bounded by maxHeader; at most maxHdrCache
// messages are cached (beyond that they are parsed each time), so a huge
// mailbox cannot make the session's memory unbounded.
package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// maxHdrCache bounds the messages whose header a session keeps (about
// 1 KB each).
const maxHdrCache = 50000

// hdrInfo is what the session keeps of a message's header.
type hdrInfo struct {
	env *imap.Envelope
	// text is every field as "key: decoded value\n", lower case, a
	// value's own line breaks turned into spaces: what SEARCH HEADER,
	// SUBJECT, FROM, ... and TEXT match against.
	text string
	// badDate: the Date field is there but does not parse (a missing
	// one is the zero time, which SENTBEFORE matches).
	badDate bool
}

// field calls fn with the decoded, lower-case value of every field named
// key (lower case) until fn returns true, and reports whether it did.
func (h *hdrInfo) field(key string, fn func(v string) bool) bool {
	t := h.text
	for len(t) > 0 {
		line := t
		if i := strings.IndexByte(t, '\n'); i >= 0 {
			line, t = t[:i], t[i+1:]
		} else {
			t = ""
		}
		if len(line) > len(key)+1 && line[:len(key)] == key && line[len(key)] == ':' {
			if fn(strings.TrimPrefix(line[len(key)+1:], " ")) {
				return true
			}
		}
	}
	return false
}

// header returns e's header information, from the cache or read from f
// (opened by the caller, positioned anywhere; left where it is) or, when
// f is nil, from the head of the file (Folder.ReadMessage).
func (sel *selected) header(e *entry, f *os.File) (*hdrInfo, error) {
	if h := sel.cachedHeader(e); h != nil {
		return h, nil
	}
	var th textproto.Header
	var err error
	if f != nil {
		th, err = readHeader(f)
	} else {
		th, err = sel.readHeaderOf(e)
	}
	if err != nil {
		return nil, err
	}
	h := newHdrInfo(th)
	if sel.hdrs == nil {
		sel.hdrs = make(map[string]*hdrInfo)
	}
	if len(sel.hdrs) < maxHdrCache {
		sel.hdrs[e.m.Key] = h
		sel.fresh++
	}
	return h, nil
}

// cachedHeader returns e's header information if the cache (in memory,
// else on disk) has it.
func (sel *selected) cachedHeader(e *entry) *hdrInfo {
	if h := sel.hdrs[e.m.Key]; h != nil {
		return h
	}
	if !sel.diskLoaded {
		sel.loadDiskCache()
		return sel.hdrs[e.m.Key]
	}
	return nil
}

func newHdrInfo(th textproto.Header) *hdrInfo {
	var b strings.Builder
	mh := gomessage.Header{Header: th}
	for fl := mh.Fields(); fl.Next(); {
		v, err := fl.Text()
		if err != nil {
			v = fl.Value()
		}
		b.WriteString(strings.ToLower(fl.Key()))
		b.WriteString(": ")
		b.WriteString(strings.Map(noBreak, strings.ToLower(v)))
		b.WriteByte('\n')
	}
	env := envelope(th)
	return &hdrInfo{env: env, text: b.String(), badDate: env.Date.IsZero() && th.Get("Date") != ""}
}

func noBreak(r rune) rune {
	if r == '\n' || r == '\r' {
		return ' '
	}
	return r
}

// headBufs holds the buffers the header of a message is read into.
var headBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// headReaders parse the header blocks read into headBufs.
var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// readHeaderOf reads e's header: the head of its file in one read, else
// (a header longer than a head buffer) through readHeader.
func (sel *selected) readHeaderOf(e *entry) (textproto.Header, error) {
	bp := headBufs.Get().(*[]byte)
	defer headBufs.Put(bp)
	head, err := sel.f.ReadMessage(e.m, (*bp)[:0], cap(*bp))
	if err != nil {
		return textproto.Header{}, err
	}
	end := headerEnd(head)
	if end < 0 && len(head) == cap(*bp) {
		f, err := sel.f.Open(e.m)
		if err != nil {
			return textproto.Header{}, err
		}
		defer f.Close()
		return readHeader(f)
	}
	if end >= 0 {
		head = head[:end]
	}
	return parseHead(head), nil
}

// parseHead parses a header block held in memory.
func parseHead(head []byte) textproto.Header {
	br := headReaders.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(head))
	// ReadHeader copies what it keeps, so the reader can be reused.
	h, _ := textproto.ReadHeader(br)
	br.Reset(nil)
	headReaders.Put(br)
	return h
}

// readHeader reads the header block of f from its start: one read of the
// head of the file, which holds the whole header of nearly every message,
// else up to maxHeader bytes through a buffered reader. A malformed
// header still gives what could be parsed.
func readHeader(f *os.File) (textproto.Header, error) {
	bp := headBufs.Get().(*[]byte)
	defer headBufs.Put(bp)
	buf := *bp
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return textproto.Header{}, err
	}
	head := buf[:n]
	if end := headerEnd(head); end >= 0 || n < len(buf) {
		if end >= 0 {
			head = head[:end]
		}
		return parseHead(head), nil
	}
	// A section reader leaves the file's offset alone, as ReadAt does.
	h, _ := textproto.ReadHeader(bufio.NewReader(io.NewSectionReader(f, 0, maxHeader)))
	return h, nil
}

// headerEnd returns the length of the header block of b including the
// empty line that ends it, or -1 if b holds no end of the header.
func headerEnd(b []byte) int {
	if len(b) > 0 && b[0] == '\n' {
		return 1
	}
	if len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
		return 2
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}
