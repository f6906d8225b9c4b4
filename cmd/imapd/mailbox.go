// The selected state: the client's view of one folder (sequence numbers,
// flags as last reported), kept in step with the Maildir, which local,
// pop3d and other imapd processes change under us. Every command ends with
// Poll, and IDLE waits on Folder.Watch (inotify), so a delivery, an
// expunge or a flag change by anyone is announced at once: EXPUNGE,
// FETCH (FLAGS) and EXISTS, in that order. While EXPUNGE may not be sent
// (during FETCH, STORE, SEARCH) a vanished message stays in the view as a
// ghost; FETCH of it answers NO [EXPUNGEISSUED].
package main

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postern/internal/log"
	"postern/internal/maildir"
)

// idleRescan is how often IDLE syncs without a notification: a safety net
// when inotify is unavailable or a change came through a path it misses.
const idleRescan = 30 * time.Second

type entry struct {
	m    maildir.Message
	gone bool // expunged by someone else, not yet announced
}

type selected struct {
	s           *session
	f           *maildir.Folder
	name        string
	readOnly    bool
	uidValidity uint32
	msgs        []entry // index+1 = sequence number; sorted by UID
	maxUID      uint32
	recent      map[uint32]bool
	kw          []string // keyword table (index = letter-'a')
	kwSent      int      // keywords announced in FLAGS
	watch       <-chan struct{}
	cancel      context.CancelFunc
	hdrs        map[string]*hdrInfo // by maildir key; see hdrcache.go
	diskLoaded  bool                // postern-cache was read (diskcache.go)
	fresh       int                 // headers parsed since, not yet in the file
	skipPoll    bool                // the next Poll need not sync (see Store)
}

// bulkStore is the number of files a STORE must rename for the Poll that
// ends it to be skipped: the renames changed cur/, so that Poll would
// have to read the whole directory again only to find our own changes;
// the next command's Poll announces what others did meanwhile.
const bulkStore = 1000

func openSelected(s *session, name string, readOnly bool) (*selected, error) {
	f, err := s.store.Open(name)
	if err != nil {
		return nil, err
	}
	// INTERNALDATE and date searches are rare: do not stat every file
	// for its date at SELECT (see date).
	f.LazyDates()
	msgs, err := f.Sync(!readOnly)
	if err != nil {
		f.Close()
		return nil, err
	}
	sel := &selected{
		s: s, f: f, name: name, readOnly: readOnly,
		uidValidity: f.UIDValidity(),
		recent:      make(map[uint32]bool),
	}
	sel.msgs = make([]entry, len(msgs))
	for i, m := range msgs {
		sel.msgs[i] = entry{m: m}
		if m.Recent {
			sel.recent[m.UID] = true
		}
		sel.maxUID = max(sel.maxUID, m.UID)
	}
	sel.reloadKeywords()
	sel.kwSent = len(sel.kw)
	ctx, cancel := context.WithCancel(context.Background())
	sel.cancel = cancel
	if ch, err := f.Watch(ctx); err == nil {
		sel.watch = ch
	} else {
		log.Warnf("%s: watching %s: %v (falling back to polling)", s.user, name, err)
	}
	return sel, nil
}

func (sel *selected) close() {
	sel.saveDiskCache()
	sel.cancel()
	sel.f.Close()
}

func (sel *selected) reloadKeywords() {
	kw, err := sel.f.Keywords()
	if err != nil {
		log.Warnf("%s: keywords of %s: %v", sel.s.user, sel.name, err)
		return
	}
	sel.kw = kw
}

// mailboxFlags is the FLAGS response: system flags and every keyword.
func (sel *selected) mailboxFlags() []imap.Flag {
	fl := []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}
	for _, k := range sel.kw {
		if k != "" {
			fl = append(fl, imap.Flag(k))
		}
	}
	return fl
}

func (sel *selected) selectData() *imap.SelectData {
	data := &imap.SelectData{
		Flags:       sel.mailboxFlags(),
		NumMessages: uint32(len(sel.msgs)),
		NumRecent:   uint32(len(sel.recent)),
		UIDNext:     imap.UID(max(sel.f.UIDNext(), sel.maxUID+1)),
		UIDValidity: sel.uidValidity,
	}
	if !sel.readOnly {
		data.PermanentFlags = append(sel.mailboxFlags(), imap.FlagWildcard)
	}
	for i := range sel.msgs {
		if !strings.ContainsRune(sel.msgs[i].m.Flags, 'S') {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data
}

// date returns a message's internal date, found on first use and kept.
func (sel *selected) date(e *entry) time.Time {
	if e.m.Date.IsZero() {
		e.m.Date = sel.f.Date(e.m)
	}
	return e.m.Date
}

// flags is a message's FLAGS as this session reports them.
func (sel *selected) flags(m *maildir.Message) []imap.Flag {
	fl := make([]imap.Flag, 0, len(m.Flags)+1)
	for i := 0; i < len(m.Flags); i++ {
		c := m.Flags[i]
		if f := letterFlag(c); f != "" {
			fl = append(fl, f)
		} else if c >= 'a' && c <= 'z' {
			if name := maildir.KeywordName(sel.kw, c); name != "" {
				fl = append(fl, imap.Flag(name))
			}
		}
	}
	if sel.recent[m.UID] && !sel.s.rev2() {
		fl = append(fl, flagRecent)
	}
	return fl
}

// refresh syncs the folder and tells the client what changed. w may be
// nil only when nothing is to be written (never used so).
func (sel *selected) refresh(w *imapserver.UpdateWriter, allowExpunge bool) error {
	msgs, err := sel.f.Sync(!sel.readOnly)
	if err != nil {
		return sel.s.imapErr("sync "+sel.name, err)
	}
	if sel.f.UIDValidity() != sel.uidValidity {
		log.Warnf("%s: %s: UIDVALIDITY changed from %d to %d", sel.s.user, sel.name, sel.uidValidity, sel.f.UIDValidity())
		sel.s.conn.Bye("Mailbox UIDVALIDITY changed, please reconnect")
		return errEnded
	}
	var changed []int // indexes in sel.msgs whose flags changed
	var added []entry
	i, j := 0, 0
	for i < len(sel.msgs) || j < len(msgs) {
		switch {
		case j >= len(msgs) || (i < len(sel.msgs) && sel.msgs[i].m.UID < msgs[j].UID):
			sel.msgs[i].gone = true
			i++
		case i >= len(sel.msgs) || msgs[j].UID > sel.msgs[i].m.UID:
			if msgs[j].UID > sel.maxUID {
				added = append(added, entry{m: msgs[j]})
			}
			j++
		default: // same UID
			e := &sel.msgs[i]
			if e.gone {
				// a ghost came back? cannot happen with a sane uid list;
				// keep it gone
			} else if e.m.Flags != msgs[j].Flags {
				changed = append(changed, i)
			}
			if !e.gone {
				d := e.m.Date
				e.m = msgs[j]
				if e.m.Date.IsZero() {
					e.m.Date = d
				}
			}
			i++
			j++
		}
	}
	for k := range msgs {
		if msgs[k].Recent {
			sel.recent[msgs[k].UID] = true
		}
	}
	if needKeywords(msgs, len(sel.kw)) {
		sel.reloadKeywords()
	}
	if len(sel.kw) > sel.kwSent {
		sel.kwSent = len(sel.kw)
		if err := w.WriteMailboxFlags(sel.mailboxFlags()); err != nil {
			return err
		}
	}
	if allowExpunge {
		if err := sel.dropGone(w.WriteExpunge, &changed); err != nil {
			return err
		}
	}
	for _, idx := range changed {
		e := &sel.msgs[idx]
		if e.gone {
			continue
		}
		if err := w.WriteMessageFlags(uint32(idx+1), imap.UID(e.m.UID), sel.flags(&e.m)); err != nil {
			return err
		}
	}
	if len(added) > 0 {
		newRecent := false
		for _, e := range added {
			sel.maxUID = max(sel.maxUID, e.m.UID)
			if sel.recent[e.m.UID] {
				newRecent = true
			}
		}
		sel.msgs = append(sel.msgs, added...)
		if err := w.WriteNumMessages(uint32(len(sel.msgs))); err != nil {
			return err
		}
		if newRecent {
			if err := w.WriteNumRecent(uint32(len(sel.recent))); err != nil {
				return err
			}
		}
	}
	return nil
}

// needKeywords reports whether a message carries a keyword letter the
// table we hold does not name.
func needKeywords(msgs []maildir.Message, have int) bool {
	for i := range msgs {
		fl := msgs[i].Flags
		for k := len(fl) - 1; k >= 0 && fl[k] >= 'a' && fl[k] <= 'z'; k-- {
			if int(fl[k]-'a') >= have {
				return true
			}
		}
	}
	return false
}

// dropGone removes ghosts from the view, announcing each with write
// (highest sequence number first, so each number is valid when sent), and
// shifts the indexes in changed.
func (sel *selected) dropGone(write func(uint32) error, changed *[]int) error {
	any := false
	for i := range sel.msgs {
		if sel.msgs[i].gone {
			any = true
			break
		}
	}
	if !any {
		return nil
	}
	for i := len(sel.msgs) - 1; i >= 0; i-- {
		if !sel.msgs[i].gone {
			continue
		}
		if err := write(uint32(i + 1)); err != nil {
			return err
		}
		delete(sel.recent, sel.msgs[i].m.UID)
	}
	kept := sel.msgs[:0]
	shift := make([]int, len(sel.msgs))
	for i, e := range sel.msgs {
		shift[i] = len(kept)
		if !e.gone {
			kept = append(kept, e)
		}
	}
	if changed != nil {
		out := (*changed)[:0]
		for _, idx := range *changed {
			if !sel.msgs[idx].gone {
				out = append(out, shift[idx])
			}
		}
		*changed = out
	}
	// clear the tail so old Messages can be collected
	for k := len(kept); k < len(sel.msgs); k++ {
		sel.msgs[k] = entry{}
	}
	sel.msgs = kept
	return nil
}

func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	if s.sel.skipPoll {
		s.sel.skipPoll = false
		return nil
	}
	return s.sel.update(w, allowExpunge)
}

// update is refresh for Poll and Idle: imapserver ends the connection on
// any error from them, so a failed sync (a lock held too long, say) is
// logged and retried at the next command instead.
func (sel *selected) update(w *imapserver.UpdateWriter, allowExpunge bool) error {
	err := sel.refresh(w, allowExpunge)
	var ie *imap.Error
	if errors.As(err, &ie) {
		log.Warnf("%s: %s: sync failed, will retry: %s", sel.s.user, sel.name, ie.Text)
		return nil
	}
	return err
}

// Idle announces changes as they happen until the client says DONE.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.sel == nil {
		<-stop
		return nil
	}
	if err := s.sel.update(w, true); err != nil {
		return err
	}
	watch := s.sel.watch
	every := idleRescan
	if watch == nil {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case _, ok := <-watch:
			if !ok { // the watcher gave up: poll instead
				watch = nil
				t.Reset(2 * time.Second)
			}
		case <-t.C:
		}
		if err := s.sel.update(w, true); err != nil {
			return err
		}
	}
}

var errNoSelect = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "No mailbox selected"}

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is read-only (EXAMINE)"}

var errBadSeq = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Invalid message sequence number"}

// resolve turns a sequence or UID set into view indexes, ascending.
func (s *session) resolve(numSet imap.NumSet) ([]int, error) {
	sel := s.sel
	if sel == nil {
		return nil, errNoSelect
	}
	if imap.IsSearchRes(numSet) {
		numSet = s.searchRes
	}
	var idx []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		n := uint32(len(sel.msgs))
		var seen []bool
		for _, r := range set {
			start, stop := r.Start, r.Stop
			if start == 0 {
				start = n
			}
			if stop == 0 {
				stop = n
			}
			if start > stop {
				start, stop = stop, start
			}
			if start == 0 || stop > n {
				if n == 0 && (r.Start == 0 || r.Stop == 0) {
					continue // "*" in an empty mailbox
				}
				return nil, errBadSeq
			}
			if seen == nil {
				seen = make([]bool, n)
			}
			for k := start; k <= stop; k++ {
				seen[k-1] = true
			}
		}
		for k, ok := range seen {
			if ok {
				idx = append(idx, k)
			}
		}
	case imap.UIDSet:
		maxUID := uint32(0)
		if len(sel.msgs) > 0 {
			maxUID = sel.msgs[len(sel.msgs)-1].m.UID
		}
		static := make(imap.UIDSet, len(set))
		for k, r := range set {
			start, stop := uint32(r.Start), uint32(r.Stop)
			if start == 0 {
				start = maxUID
			}
			if stop == 0 {
				stop = maxUID
			}
			if start > stop {
				start, stop = stop, start
			}
			static[k] = imap.UIDRange{Start: imap.UID(start), Stop: imap.UID(stop)}
		}
		for k := range sel.msgs {
			if static.Contains(imap.UID(sel.msgs[k].m.UID)) {
				idx = append(idx, k)
			}
		}
	}
	return idx, nil
}

// Expunge removes \Deleted messages (of uids, for UID EXPUNGE).
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel == nil {
		return errNoSelect
	}
	if sel.readOnly {
		if *w == (imapserver.ExpungeWriter{}) {
			// CLOSE (imapserver's silent writer): on a read-only
			// mailbox it just closes (RFC 9051 §6.4.2)
			return nil
		}
		return errReadOnly
	}
	for i := range sel.msgs {
		e := &sel.msgs[i]
		if e.gone || !strings.ContainsRune(e.m.Flags, 'T') {
			continue
		}
		if uids != nil && !uids.Contains(imap.UID(e.m.UID)) {
			continue
		}
		if err := sel.f.Expunge(e.m); err != nil {
			return s.imapErr("EXPUNGE", err)
		}
		e.gone = true
	}
	return sel.dropGone(w.WriteExpunge, nil)
}

// Store changes flags, renaming the files, and reports the new flags
// unless .SILENT.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	idx, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	add, err := flagLetters(sel.f, flags.Flags, flags.Op != imap.StoreFlagsDel)
	if err != nil {
		return s.imapErr("STORE", err)
	}
	if len(sel.kw) > sel.kwSent || strings.IndexFunc(add, isKeywordLetter) >= 0 {
		sel.reloadKeywords()
	}
	expunged := false
	renamed := 0
	for _, i := range idx {
		e := &sel.msgs[i]
		if e.gone {
			expunged = true
			continue
		}
		cur := e.m.Flags
		var next string
		switch flags.Op {
		case imap.StoreFlagsSet:
			// keep what IMAP cannot express (P, unknown keyword letters)
			next = keepUnmapped(cur, len(sel.kw)) + add
		case imap.StoreFlagsAdd:
			next = cur + add
		case imap.StoreFlagsDel:
			next = removeLetters(cur, add)
		}
		next = sortLetters(next)
		if next != cur {
			m, err := sel.f.SetFlags(e.m, next)
			if errors.Is(err, maildir.ErrNoMessage) {
				expunged = true
				continue
			} else if err != nil {
				return s.imapErr("STORE", err)
			}
			e.m = m
			renamed++
		}
		if flags.Silent {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		rw.WriteUID(imap.UID(e.m.UID))
		rw.WriteFlags(sel.flags(&e.m))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if expunged {
		return errExpungeIssued
	}
	// imapserver polls only after success
	sel.skipPoll = renamed >= bulkStore
	return nil
}

var errExpungeIssued = &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeExpungeIssued, Text: "Some messages were expunged"}

func isKeywordLetter(r rune) bool { return r >= 'a' && r <= 'z' }

// keepUnmapped returns the letters of flags that no IMAP flag stands for.
func keepUnmapped(flags string, kw int) string {
	var b []byte
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		switch {
		case letterFlag(c) != "":
		case c >= 'a' && c <= 'z' && int(c-'a') < kw:
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func removeLetters(flags, del string) string {
	var b []byte
	for i := 0; i < len(flags); i++ {
		if strings.IndexByte(del, flags[i]) < 0 {
			b = append(b, flags[i])
		}
	}
	return string(b)
}

// Copy copies messages (COPYUID for UIDPLUS).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := s.copy(numSet, dest)
	return data, err
}

func (s *session) copy(numSet imap.NumSet, dest string) (*imap.CopyData, []int, error) {
	idx, err := s.resolve(numSet)
	if err != nil {
		return nil, nil, err
	}
	dest, err = mailboxName(dest)
	if err != nil {
		return nil, nil, err
	}
	dst, err := s.store.Open(dest)
	if errors.Is(err, maildir.ErrNoFolder) {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	} else if err != nil {
		return nil, nil, s.imapErr("COPY", err)
	}
	defer dst.Close()
	sel := s.sel
	data := &imap.CopyData{UIDValidity: dst.UIDValidity()}
	var done []int
	for _, i := range idx {
		e := &sel.msgs[i]
		if e.gone {
			continue
		}
		uid, err := sel.f.CopyTo(e.m, dst)
		if errors.Is(err, maildir.ErrNoMessage) {
			continue
		} else if err != nil {
			return nil, nil, s.imapErr("COPY", err)
		}
		data.SourceUIDs.AddNum(imap.UID(e.m.UID))
		data.DestUIDs.AddNum(imap.UID(uid))
		done = append(done, i)
	}
	if dst.Dir() == sel.f.Dir() {
		sel.reloadKeywords()
	}
	if len(done) == 0 {
		if len(idx) > 0 {
			return nil, nil, errExpungeIssued
		}
		return nil, nil, nil
	}
	// COPYUID's UIDVALIDITY must be the destination's after the copy.
	data.UIDValidity = dst.UIDValidity()
	return data, done, nil
}

// Move is COPY then expunge of the originals (RFC 6851).
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel != nil && s.sel.readOnly {
		return errReadOnly
	}
	data, done, err := s.copy(numSet, dest)
	if err != nil {
		return err
	}
	if data == nil {
		return nil
	}
	sel := s.sel
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	for _, i := range done {
		if err := sel.f.Expunge(sel.msgs[i].m); err != nil {
			log.Errorf("%s: MOVE: expunging UID %d from %s: %v", s.user, sel.msgs[i].m.UID, sel.name, err)
			continue
		}
		sel.msgs[i].gone = true
	}
	sort.Ints(done)
	return sel.dropGone(w.WriteExpunge, nil)
}

// Names imap does not define.
const (
	flagRecent        imap.Flag         = `\Recent`
	codeExpungeIssued imap.ResponseCode = "EXPUNGEISSUED"
)
