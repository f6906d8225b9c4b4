// FETCH. Maildir files hold LF line ends; IMAP counts and sends CRLF, so
// every byte served goes through maildir.NewCRLFReader, and RFC822.SIZE is
// Message.Size (the CRLF size the store knows from W= or its uid list). A
// whole message (BODY[], RFC822, with or without <partial>) is streamed
// from the file; other sections use imapserver's MIME helpers.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postern/internal/log"
	"postern/internal/maildir"
)

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	idx, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	sel := s.sel
	markSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	// A whole message (BODY[], RFC822) is read by writeWhole itself.
	needBody := options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	for _, bs := range options.BodySection {
		needBody = needBody || !isWhole(bs)
	}
	expunged := false
	for _, i := range idx {
		e := &sel.msgs[i]
		if e.gone {
			expunged = true
			continue
		}
		var f *os.File
		if needBody {
			f, err = sel.f.Open(e.m)
			if errors.Is(err, maildir.ErrNoMessage) {
				expunged = true
				continue
			} else if err != nil {
				return s.imapErr("FETCH", err)
			}
		}
		err := s.fetchOne(w, uint32(i+1), e, f, options, markSeen)
		if f != nil {
			f.Close()
		}
		if err != nil {
			return err
		}
	}
	if sel.fresh >= saveAfter {
		sel.saveDiskCache()
	}
	if expunged {
		return errExpungeIssued
	}
	return nil
}

// fetchOne writes one message's FETCH response.
func (s *session) fetchOne(w *imapserver.FetchWriter, seq uint32, e *entry, f *os.File, options *imap.FetchOptions, markSeen bool) error {
	sel := s.sel
	flagsChanged := false
	if markSeen && !strings.ContainsRune(e.m.Flags, 'S') {
		m, err := sel.f.SetFlags(e.m, sortLetters(e.m.Flags+"S"))
		if err == nil {
			e.m = m
			flagsChanged = true
		} else if !errors.Is(err, maildir.ErrNoMessage) {
			log.Warnf("%s: setting \\Seen on UID %d: %v", s.user, e.m.UID, err)
		}
	}
	rw := w.CreateMessage(seq)
	defer func() {
		if rw != nil {
			rw.Close()
		}
	}()
	rw.WriteUID(imap.UID(e.m.UID))
	if options.Flags || flagsChanged {
		rw.WriteFlags(sel.flags(&e.m))
	}
	if options.InternalDate {
		rw.WriteInternalDate(sel.date(e))
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(e.m.Size)
	}
	if options.Envelope {
		h, err := sel.header(e, f)
		if err != nil {
			return s.fileErr(e, err)
		}
		rw.WriteEnvelope(h.env)
	}
	// The file is at its start until something reads it (readHeader
	// does not move it).
	moved := false
	rewind := func() error {
		if !moved {
			moved = true
			return nil
		}
		_, err := f.Seek(0, io.SeekStart)
		return err
	}
	if options.BodyStructure != nil {
		if err := rewind(); err != nil {
			return s.fileErr(e, err)
		}
		bs := imapserver.ExtractBodyStructure(maildir.NewCRLFReader(bufio.NewReader(f)))
		rw.WriteBodyStructure(fixBodyStructure(bs, false))
	}
	for _, bs := range options.BodySection {
		if isWhole(bs) {
			if err := s.writeWhole(rw, bs, e, f); err != nil {
				return err
			}
			moved = true
			continue
		}
		if err := rewind(); err != nil {
			return s.fileErr(e, err)
		}
		buf := imapserver.ExtractBodySection(maildir.NewCRLFReader(bufio.NewReader(f)), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		if err := rewind(); err != nil {
			return s.fileErr(e, err)
		}
		buf := imapserver.ExtractBinarySection(maildir.NewCRLFReader(bufio.NewReader(f)), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		if err := rewind(); err != nil {
			return s.fileErr(e, err)
		}
		n := imapserver.ExtractBinarySectionSize(maildir.NewCRLFReader(bufio.NewReader(f)), bss)
		rw.WriteBinarySectionSize(bss, n)
	}
	err := rw.Close()
	rw = nil
	return err
}

// fileErr logs a read error of a message file and answers NO; the
// response already begun is closed by the caller.
func (s *session) fileErr(e *entry, err error) error {
	log.Errorf("%s: reading UID %d (%s): %v", s.user, e.m.UID, e.m.Name, err)
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug,
		Text: fmt.Sprintf("Reading message UID %d failed, the server log says why", e.m.UID)}
}

// maxHeader bounds what is read for ENVELOPE.
const maxHeader = 1 << 20

func isWhole(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone &&
		len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0
}

// maxInMemory is the largest message writeWhole converts in memory.
const maxInMemory = 1 << 20

// wholeBufs hold a message read whole and its CRLF form.
var wholeBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeWhole sends the message (or the <partial> range of it) as CRLF: a
// message up to maxInMemory is read whole (Folder.ReadMessage: open, one
// read, close) and converted in one pass, a larger one streamed from f,
// opened here if the caller did not.
func (s *session) writeWhole(rw *imapserver.FetchResponseWriter, bs *imap.FetchItemBodySection, e *entry, f *os.File) error {
	total := e.m.Size
	off, n := int64(0), total
	if p := bs.Partial; p != nil {
		off = min(p.Offset, total)
		n = min(p.Size, total-off)
	}
	if total > maxInMemory {
		if f == nil {
			var err error
			if f, err = s.sel.f.Open(e.m); err != nil {
				return s.fileErr(e, err)
			}
			defer f.Close()
		} else if _, err := f.Seek(0, io.SeekStart); err != nil {
			return s.fileErr(e, err)
		}
		return streamWhole(rw, bs, e, f, off, n)
	}
	rawp, outp := wholeBufs.Get().(*[]byte), wholeBufs.Get().(*[]byte)
	defer func() { wholeBufs.Put(rawp); wholeBufs.Put(outp) }()
	// The file (LF line ends) is at most its CRLF size long; what is
	// beyond is not sent, as the size announced is the recorded one.
	raw, err := s.sel.f.ReadMessage(e.m, (*rawp)[:0], int(total))
	if err != nil {
		// The response is begun: say what is wrong and fail the command.
		return s.fileErr(e, err)
	}
	*rawp = raw
	out := maildir.AppendCRLF((*outp)[:0], raw)
	*outp = out
	out = out[min(off, int64(len(out))):]
	out = out[:min(n, int64(len(out)))]
	wc := rw.WriteBodySection(bs, n)
	if _, err := wc.Write(out); err != nil {
		wc.Close()
		return err
	}
	if err := pad(wc, e, n-int64(len(out))); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// streamWhole is writeWhole for a large message.
func streamWhole(rw *imapserver.FetchResponseWriter, bs *imap.FetchItemBodySection, e *entry, f *os.File, off, n int64) error {
	r := maildir.NewCRLFReader(f)
	if off > 0 {
		if _, err := io.CopyN(io.Discard, r, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	wc := rw.WriteBodySection(bs, n)
	copied, err := io.CopyN(wc, r, n)
	if err != nil && !errors.Is(err, io.EOF) {
		wc.Close()
		return err
	}
	if err := pad(wc, e, n-copied); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// pad writes short spaces when the file is shorter than its recorded
// size, so that the literal stays the length announced and the protocol
// in step.
func pad(w io.Writer, e *entry, short int64) error {
	if short <= 0 {
		return nil
	}
	log.Warnf("message %s is %d bytes shorter than its recorded size", e.m.Name, short)
	sp := bytes.Repeat([]byte{' '}, int(min(short, 1<<20)))
	for short > 0 {
		k := min(short, int64(len(sp)))
		if _, err := w.Write(sp[:k]); err != nil {
			return err
		}
		short -= k
	}
	return nil
}

func writeLiteral(wc io.WriteCloser, buf []byte) error {
	_, err := wc.Write(buf)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}
