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

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

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
	needFile := options.Envelope || options.BodyStructure != nil ||
		len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	expunged := false
	for _, i := range idx {
		e := &sel.msgs[i]
		if e.gone {
			expunged = true
			continue
		}
		var f *os.File
		if needFile {
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
		rw.WriteInternalDate(e.m.Date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(e.m.Size)
	}
	if options.Envelope {
		h, err := readHeader(f)
		if err != nil {
			return s.fileErr(e, err)
		}
		rw.WriteEnvelope(envelope(h))
	}
	if options.BodyStructure != nil {
		if err := rewind(f); err != nil {
			return s.fileErr(e, err)
		}
		bs := imapserver.ExtractBodyStructure(maildir.NewCRLFReader(bufio.NewReader(f)))
		rw.WriteBodyStructure(fixBodyStructure(bs, false))
	}
	for _, bs := range options.BodySection {
		if err := rewind(f); err != nil {
			return s.fileErr(e, err)
		}
		if isWhole(bs) {
			if err := writeWhole(rw, bs, e, f); err != nil {
				return err
			}
			continue
		}
		buf := imapserver.ExtractBodySection(maildir.NewCRLFReader(bufio.NewReader(f)), bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		if err := rewind(f); err != nil {
			return s.fileErr(e, err)
		}
		buf := imapserver.ExtractBinarySection(maildir.NewCRLFReader(bufio.NewReader(f)), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		if err := rewind(f); err != nil {
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

func rewind(f *os.File) error {
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// maxHeader bounds what is read for ENVELOPE.
const maxHeader = 1 << 20

func readHeader(f *os.File) (textproto.Header, error) {
	if err := rewind(f); err != nil {
		return textproto.Header{}, err
	}
	// A malformed header still gets an envelope of what could be read.
	h, _ := textproto.ReadHeader(bufio.NewReader(io.LimitReader(f, maxHeader)))
	return h, nil
}

func isWhole(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone &&
		len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0
}

// writeWhole streams the message (or the <partial> range of it) as CRLF.
func writeWhole(rw *imapserver.FetchResponseWriter, bs *imap.FetchItemBodySection, e *entry, f *os.File) error {
	total := e.m.Size
	off, n := int64(0), total
	if p := bs.Partial; p != nil {
		off = min(p.Offset, total)
		n = min(p.Size, total-off)
	}
	r := maildir.NewCRLFReader(bufio.NewReaderSize(f, 64<<10))
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
	if copied < n {
		// The file is shorter than its recorded size: pad, so that the
		// literal stays the length we announced and the protocol in step.
		log.Warnf("message %s is %d bytes shorter than its recorded size", e.m.Name, n-copied)
		pad := bytes.Repeat([]byte{' '}, int(min(n-copied, 1<<20)))
		for left := n - copied; left > 0; {
			k := min(left, int64(len(pad)))
			if _, err := wc.Write(pad[:k]); err != nil {
				wc.Close()
				return err
			}
			left -= k
		}
	}
	return wc.Close()
}

func writeLiteral(wc io.WriteCloser, buf []byte) error {
	_, err := wc.Write(buf)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}
