// SEARCH over the view: flags, sizes and dates from the uid list and file
// names; headers and bodies read only when a criterion needs them, MIME
// decoded (transfer encoding and charset, via go-message/charset) so that
// a UTF-8 search string finds text sent as ISO-8859-1 or base64. Matching
// is case-insensitive substring, as RFC 9051 asks.
package main

import (
	"bufio"
	"io"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
)

// maxSearchText bounds the decoded text kept per message part.
const maxSearchText = 64 << 20

// maxMIMEDepth bounds nesting of multiparts and attached messages.
const maxMIMEDepth = 20

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	if sel == nil {
		return nil, errNoSelect
	}
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i := range sel.msgs {
		e := &sel.msgs[i]
		if e.gone {
			continue
		}
		mc := &matchCtx{s: s, e: e, seq: uint32(i + 1)}
		ok := mc.match(criteria)
		mc.close()
		if !ok {
			continue
		}
		uidSet.AddNum(imap.UID(e.m.UID))
		num := mc.seq
		if kind == imapserver.NumKindUID {
			num = e.m.UID
		} else {
			seqSet.AddNum(num)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	if options.ReturnSave {
		s.searchRes = uidSet
	}
	if sel.fresh >= saveAfter {
		sel.saveDiskCache()
	}
	return &data, nil
}

// matchCtx is one message under test; header and text are read once.
type matchCtx struct {
	s     *session
	e     *entry
	seq   uint32
	f     *os.File
	bad   bool // the file could not be read
	moved bool // the file was read from, so is not at its start
	info  *hdrInfo
	bText string // the decoded text of the body parts, lower case
	bDone bool
}

func (mc *matchCtx) close() {
	if mc.f != nil {
		mc.f.Close()
	}
}

func (mc *matchCtx) open() bool {
	if mc.f == nil && !mc.bad {
		f, err := mc.s.sel.f.Open(mc.e.m)
		if err != nil {
			mc.bad = true
			return false
		}
		mc.f = f
	}
	if mc.bad {
		return false
	}
	if !mc.moved {
		return true
	}
	_, err := mc.f.Seek(0, io.SeekStart)
	return err == nil
}

// hdr returns the message's header information: from the session's
// cache when a FETCH or an earlier SEARCH parsed it, else read now (and
// cached); an unreadable file has an empty header.
func (mc *matchCtx) hdr() *hdrInfo {
	if mc.info == nil {
		sel := mc.s.sel
		if h, err := sel.header(mc.e, mc.f); err == nil {
			mc.info = h
		}
		if mc.info == nil {
			mc.info = &hdrInfo{env: &imap.Envelope{}}
		}
	}
	return mc.info
}

func (mc *matchCtx) body() string {
	if !mc.bDone {
		mc.bDone = true
		if mc.open() {
			mc.moved = true
			var b strings.Builder
			if ent, err := gomessage.Read(bufio.NewReader(mc.f)); ent != nil {
				_ = err // unknown charset or encoding: use what decodes
				collectText(&b, ent, 0)
			}
			mc.bText = strings.ToLower(b.String())
		}
	}
	return mc.bText
}

// collectText appends the decoded text of e's text parts (and of attached
// messages, headers included) to b.
func collectText(b *strings.Builder, e *gomessage.Entity, depth int) {
	if depth > maxMIMEDepth || b.Len() > maxSearchText {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if p == nil || (err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err)) {
				return
			}
			collectText(b, p, depth+1)
		}
	}
	t, _, _ := e.Header.ContentType()
	switch {
	case t == "" || strings.HasPrefix(t, "text/"):
		io.Copy(b, io.LimitReader(e.Body, maxSearchText))
		b.WriteByte('\n')
	case t == "message/rfc822" || t == "message/global":
		inner, err := gomessage.Read(e.Body)
		if inner == nil {
			_ = err
			return
		}
		for fl := inner.Header.Fields(); fl.Next(); {
			v, _ := fl.Text()
			b.WriteString(fl.Key() + ": " + v + "\n")
		}
		collectText(b, inner, depth+1)
	}
}

func (mc *matchCtx) match(c *imap.SearchCriteria) bool {
	sel := mc.s.sel
	m := &mc.e.m
	for _, set := range c.SeqNum {
		if imap.IsSearchRes(set) {
			if !mc.s.searchRes.Contains(imap.UID(m.UID)) {
				return false
			}
			continue
		}
		if !rangesContain(seqRanges(set), mc.seq, uint32(len(sel.msgs))) {
			return false
		}
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			set = mc.s.searchRes
		}
		if !rangesContain(uidRanges(set), m.UID, sel.maxUID) {
			return false
		}
	}
	if (!c.Since.IsZero() || !c.Before.IsZero()) && !dateIn(sel.date(mc.e), c.Since, c.Before) {
		return false
	}
	if c.Larger != 0 && m.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && m.Size >= c.Smaller {
		return false
	}
	if len(c.Flag) > 0 || len(c.NotFlag) > 0 {
		have := map[string]bool{}
		for _, f := range sel.flags(m) {
			have[strings.ToLower(string(f))] = true
		}
		if sel.recent[m.UID] {
			have[`\recent`] = true
		}
		for _, f := range c.Flag {
			if !have[strings.ToLower(string(f))] {
				return false
			}
		}
		for _, f := range c.NotFlag {
			if have[strings.ToLower(string(f))] {
				return false
			}
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		// the envelope's date: the zero time when there is no Date
		h := mc.hdr()
		if h.badDate || !dateIn(h.env.Date, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, hf := range c.Header {
		want := strings.ToLower(hf.Value)
		key := strings.ToLower(strings.TrimSpace(hf.Key))
		found := mc.hdr().field(key, func(v string) bool {
			return want == "" || strings.Contains(v, want)
		})
		if !found {
			return false
		}
	}
	for _, t := range c.Body {
		if !strings.Contains(mc.body(), strings.ToLower(t)) {
			return false
		}
	}
	for _, t := range c.Text {
		t = strings.ToLower(t)
		if !strings.Contains(mc.hdr().text, t) && !strings.Contains(mc.body(), t) {
			return false
		}
	}
	for i := range c.Not {
		if mc.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !mc.match(&c.Or[i][0]) && !mc.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

type numRange struct{ start, stop uint32 } // 0 = "*"

func seqRanges(s imap.SeqSet) []numRange {
	r := make([]numRange, len(s))
	for i, x := range s {
		r[i] = numRange{x.Start, x.Stop}
	}
	return r
}

func uidRanges(s imap.UIDSet) []numRange {
	r := make([]numRange, len(s))
	for i, x := range s {
		r[i] = numRange{uint32(x.Start), uint32(x.Stop)}
	}
	return r
}

// rangesContain reports whether n is in one of the ranges, "*" being star.
func rangesContain(rs []numRange, n, star uint32) bool {
	for _, r := range rs {
		a, b := r.start, r.stop
		if a == 0 {
			a = star
		}
		if b == 0 {
			b = star
		}
		if a > b {
			a, b = b, a
		}
		if n >= a && n <= b {
			return true
		}
	}
	return false
}

// dateIn compares dates only, ignoring time and zone (RFC 9051 §6.4.4).
func dateIn(t, since, before time.Time) bool {
	y, mo, d := t.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && day.Before(since) {
		return false
	}
	if !before.IsZero() && !day.Before(before) {
		return false
	}
	return true
}
