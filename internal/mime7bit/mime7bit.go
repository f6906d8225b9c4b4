// Package mime7bit converts a message with 8-bit data into one that is
// 7-bit throughout, for the smtp client to send to a server that does not
// offer 8BITMIME (RFC 6152 §3: convert, or bounce). Needs tells whether a
// message has any 8-bit octet at all; Convert does the conversion. Both
// stream: the smtp daemon runs them on an io.SectionReader of the queue
// file.
//
// What Convert changes, and nothing else:
//
//   - A leaf body (a MIME part, or a message's body, that is not
//     multipart/* or message/rfc822) labelled 7bit, 8bit, binary, an
//     unknown encoding, or not labelled, that holds 8-bit octets or a line
//     over 998 octets, is encoded: quoted-printable when its type is text/*
//     or message/* (or none, which is text/plain) and at most one octet in
//     six needs escaping, base64 otherwise. Its Content-Transfer-Encoding
//     field is replaced (or added). A message without MIME-Version gets
//     "MIME-Version: 1.0"; a body of default type without Content-Type gets
//     "Content-Type: text/plain; charset=utf-8" when it is valid UTF-8.
//     In quoted-printable a CRLF, and a bare LF as well, is a line break (the
//     SMTP client would turn a bare LF into CRLF anyway); a bare CR is =0D.
//   - multipart/* and message/rfc822 are not encoded (RFC 2046 §5 forbids
//     it) but walked: every part, and the inner message with its header,
//     is converted in turn. Boundaries, preamble and epilogue (but see
//     below), and the structure stay as they are. Such an entity labelled
//     8bit or binary is relabelled 7bit, and so is a leaf that is left
//     as it is: the output holds no 8bit or binary label.
//   - A body already labelled quoted-printable or base64 is not decoded:
//     an illegal 8-bit octet in it becomes =XX (quoted-printable; lenient
//     decoders read it as itself) or is dropped (base64, where decoders
//     ignore it), and an over-long line is cut (soft breaks in
//     quoted-printable).
//   - In a preamble or epilogue, which no reader shows, an 8-bit octet
//     becomes "?" and a line is cut at 998 octets.
//   - A header field with 8-bit octets is rewritten as encoded words
//     (RFC 2047, charset utf-8, Q, or B when that is a quarter shorter),
//     folded near 78 octets: all of free text (Subject, Comments, X-...,
//     any field not named below, encoded words already there kept with
//     the white space next to them); display names (encoded words in them
//     decoded first, then the whole name encoded), group names and
//     comments in address
//     fields (From, To, Cc, Bcc, Reply-To, Sender, Resent-*, Return-Path,
//     Disposition-Notification-To, ...); parameters of Content-Type and
//     Content-Disposition become RFC 2231 extended values in UTF-8.
//     8-bit text that is not UTF-8, 8-bit octets in an address itself (a
//     message that needs SMTPUTF8), in a parameter field that
//     mime.ParseMediaType refuses, or in a field where RFC 2047 allows no
//     encoded word (Message-ID, References, In-Reply-To, Date, Received,
//     DKIM-Signature, List-*, ...) give ErrHeaders8Bit: bounce.
//   - A 7-bit header field with a line over 998 octets is refolded at its
//     white space (free text without any is put in encoded words); when
//     that cannot be done, ErrHeaderLimit.
//
// So a message with no 8-bit octet, no line over 998 octets and no 8bit or
// binary label comes out byte for byte as it went in; converting an output
// again changes nothing. Line ends are copied as they are; what Convert
// writes itself ends in CRLF.
//
// Parsing is as lenient as mail readers are, and never fails on
// malformed MIME: a header block ends at an empty line, at a boundary
// line, or at the first line that is neither a field nor a continuation
// (that line starts the body, as in Postfix; if the body is then encoded,
// an empty line is put before it). A Content-Type that mime.ParseMediaType
// refuses is searched by hand for its boundary; a multipart/* without a
// usable boundary (none, 8-bit, or over 200 octets) is a leaf. A part ends at the
// delimiter of any enclosing multipart, so a missing close delimiter
// costs nothing. Deeper than 32 nested entities, an entity is a leaf.
// Recognised as a delimiter is a line (CRLF or LF) of "--" boundary, then
// optionally "--", then only spaces and tabs, within 16 KiB.
//
// Limits: memory is bounded whatever the input. One line is read in
// pieces of at most 16 KiB (readBufSize); output goes through a 32 KiB
// buffer; one header block at a time is held, at most 256 KiB and 1000
// fields (more is ErrHeaderLimit); and one leaf body at a time is held
// until its end shows whether it needs encoding and which: at most
// partBufferCap (1 MiB) plus one piece. A body longer than that is
// decided on its first MiB and streamed: it is encoded even if the rest
// would have needed nothing (quoted-printable if its type is text-like and
// that first MiB needs few escapes, else base64), and its charset=utf-8
// label, when one is added, rests on that first MiB. In all about 1.4 MiB
// per conversion, allocated as needed and reused from part to part.
//
// Failure modes: ErrHeaders8Bit and ErrHeaderLimit (both wrapped with the
// field's name) mean the message cannot be sent 7-bit: bounce it (5.6.3).
// A read or write error is returned wrapped. Output has been written by
// then: a caller streaming into DATA must drop the connection, or first
// run Convert into io.Discard (a SectionReader can be read twice) to find
// out before it sends anything.
package mime7bit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrHeaders8Bit means a header field has 8-bit octets that cannot be
// written as encoded words (see the package comment): the message cannot
// go to a server without 8BITMIME and should be bounced.
var ErrHeaders8Bit = errors.New("mime7bit: 8-bit header data that cannot be encoded")

// ErrHeaderLimit means a header block is over 256 KiB or 1000 fields, or a
// header field has a line over 998 octets that cannot be folded.
var ErrHeaderLimit = errors.New("mime7bit: header over the limits")

const (
	maxLine        = 998 // octets in a line, CRLF not counted (RFC 5322 §2.1.1)
	readBufSize    = 16 << 10
	writeBufSize   = 32 << 10
	maxHeaderBytes = 256 << 10
	maxFields      = 1000
	maxDepth       = 32
	maxBoundary    = 200
)

// partBufferCap is how much of a leaf body is held to decide on it; a
// variable so that tests can make it small.
var partBufferCap = 1 << 20

// Needs reports whether the message in r has any octet >= 0x80. It reads
// r to the end (or to the first such octet) through a 32 KiB buffer.
func Needs(r io.Reader) (bool, error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if has8bit(buf[:n]) {
			return true, nil
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("mime7bit: reading message: %w", err)
		}
	}
}

// Convert copies the message in r (RFC 5322, CRLF line ends) to w so that
// every octet is 7-bit and no line is over 998 octets, re-encoding what
// must be and keeping everything else; the package comment says exactly
// what changes, what it costs, and when it fails.
func Convert(w io.Writer, r io.Reader) error {
	ow := &outWriter{w: w}
	c := &converter{lr: newLineReader(r), ow: ow, out: bufio.NewWriterSize(ow, writeBufSize)}
	err := c.entity(true, "text/plain")
	ferr := c.out.Flush()
	switch {
	case err != nil:
		return err
	case ow.err != nil:
		return ow.err
	case ferr != nil:
		return fmt.Errorf("mime7bit: writing: %w", ferr)
	}
	return nil
}

type converter struct {
	lr     *lineReader
	ow     *outWriter
	out    *bufio.Writer
	bounds [][]byte // "--" + boundary of every enclosing multipart, innermost last
	depth  int
	hdr    header // one header block at a time is ever held
	part   []byte // the leaf body buffer
	held   []byte
}

// entity converts one entity (a message, or a body part) from its header
// to the delimiter that ends it, or to the end of the input.
func (c *converter) entity(top bool, defType string) error {
	c.depth++
	defer func() { c.depth-- }()
	h := &c.hdr
	if err := c.readHeader(h); err != nil {
		return err
	}
	mi := analyze(h, defType)
	if err := c.prepare(h); err != nil {
		return err
	}
	plain := mi.cte == "" || mi.cte == "7bit" || mi.cte == "8bit" || mi.cte == "binary"
	walk := plain && c.depth <= maxDepth
	switch {
	case walk && strings.HasPrefix(mi.mt, "multipart/") && validBoundary(mi.boundary):
		c.writeHeader(h, relabel(mi.cte), nil)
		c.writeTerm(h)
		def := "text/plain"
		if mi.mt == "multipart/digest" {
			def = "message/rfc822" // RFC 2046 §5.1.5
		}
		return c.multipart(mi.boundary, def)
	case walk && mi.mt == "message/rfc822":
		c.writeHeader(h, relabel(mi.cte), nil)
		c.writeTerm(h)
		return c.entity(true, "text/plain")
	case mi.cte == "base64":
		c.writeHeader(h, "", nil)
		c.writeTerm(h)
		var f b64Fix
		return c.stream(func(p []byte) { f.write(c.out, p) })
	case mi.cte == "quoted-printable":
		c.writeHeader(h, "", nil)
		c.writeTerm(h)
		var f qpFix
		err := c.stream(func(p []byte) { f.write(c.out, p) })
		f.end(c.out)
		return err
	}
	return c.leaf(h, mi, top)
}

// validBoundary refuses a boundary that is empty, over maxBoundary
// octets, or 8-bit (its delimiter lines could not go out 7-bit).
func validBoundary(b string) bool {
	return len(b) <= maxBoundary && strings.TrimRight(b, " \t") != "" && !has8bit(b)
}

// relabel is the label for an entity labelled cte whose content leaves
// 7-bit: 8bit and binary become 7bit, other labels stay ("").
func relabel(cte string) string {
	if cte == "8bit" || cte == "binary" {
		return "7bit"
	}
	return ""
}

// writeHeader writes the header block's fields, the first
// Content-Transfer-Encoding field replaced by cte (and the others
// dropped; added after the last field when there is none) unless cte is
// "", then the extra fields.
func (c *converter) writeHeader(h *header, cte string, extra []string) {
	replaced := false
	for i := range h.fields {
		f := &h.fields[i]
		if cte != "" && f.lname == "content-transfer-encoding" {
			if !replaced {
				c.out.WriteString(h.name(f))
				c.out.WriteString(": " + cte + "\r\n")
				replaced = true
			}
			continue
		}
		if f.out != nil {
			c.out.Write(f.out)
		} else {
			c.out.Write(h.raw[f.start:f.end])
		}
	}
	for _, e := range extra {
		c.out.WriteString(e)
	}
	if cte != "" && !replaced {
		c.out.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
}

func (c *converter) writeTerm(h *header) {
	if h.term == termBlank {
		c.out.Write(h.blank)
	}
}

// delim returns the index in c.bounds of the innermost boundary of which
// line b is a delimiter, and whether it is the close delimiter; -1 if
// none. skipTop leaves the innermost boundary out (its multipart is
// closed: its epilogue is running).
func (c *converter) delim(b []byte, skipTop bool) (int, bool) {
	content := b[:len(b)-eolLen(b)]
	if len(content) < 2 || content[0] != '-' || content[1] != '-' {
		return -1, false
	}
	for i := len(c.bounds) - 1; i >= 0; i-- {
		if skipTop && i == len(c.bounds)-1 {
			continue
		}
		rest, ok := bytes.CutPrefix(content, c.bounds[i])
		if !ok {
			continue
		}
		rest, isClose := bytes.CutPrefix(rest, []byte("--"))
		if len(bytes.TrimLeft(rest, " \t")) == 0 {
			return i, isClose
		}
	}
	return -1, false
}

// atDelim reports whether ch is a delimiter line of any open multipart.
func (c *converter) atDelim(ch chunk) bool {
	if ch.cont || !ch.complete {
		return false
	}
	i, _ := c.delim(ch.b, false)
	return i >= 0
}

// multipart walks a multipart body: the preamble, each part after a
// delimiter (converted as an entity), the epilogue after the close
// delimiter; it ends at EOF or at the delimiter of an enclosing multipart,
// which it leaves unread.
func (c *converter) multipart(boundary, defType string) error {
	bd := append([]byte("--"), boundary...)
	c.bounds = append(c.bounds, bd)
	defer func() { c.bounds = c.bounds[:len(c.bounds)-1] }()
	me := len(c.bounds) - 1
	closed := false
	var san sanitizer
	for {
		if c.ow.err != nil {
			return c.ow.err
		}
		ch, err := c.lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !ch.cont && ch.complete {
			if i, isClose := c.delim(ch.b, closed); i >= 0 {
				if i < me {
					c.lr.unread(ch)
					return nil
				}
				if len(ch.b)-eolLen(ch.b) > maxLine {
					// Transport padding made it too long: drop it.
					c.out.Write(bd)
					if isClose {
						c.out.WriteString("--")
					}
					c.out.Write(ch.b[len(ch.b)-eolLen(ch.b):])
				} else {
					c.out.Write(ch.b)
				}
				san = sanitizer{}
				if isClose {
					closed = true
					continue
				}
				if err := c.entity(false, defType); err != nil {
					return err
				}
				continue
			}
		}
		san.write(c.out, ch.b)
	}
}

// stream passes the body up to the next delimiter (left unread) or EOF
// through fn.
func (c *converter) stream(fn func([]byte)) error {
	for {
		if c.ow.err != nil {
			return c.ow.err
		}
		ch, err := c.lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if c.atDelim(ch) {
			c.lr.unread(ch)
			return nil
		}
		fn(ch.b)
	}
}

// leaf converts a leaf body that is not labelled base64 or
// quoted-printable: held (up to partBufferCap) until its end shows whether
// it needs encoding, then written as it was or encoded.
func (c *converter) leaf(h *header, mi mediaInfo, top bool) error {
	var st stats
	buf := c.part[:0]
	atEOF, over := false, false
	for {
		ch, err := c.lr.next()
		if errors.Is(err, io.EOF) {
			atEOF = true
			break
		}
		if err != nil {
			return err
		}
		if c.atDelim(ch) {
			c.lr.unread(ch)
			break
		}
		st.add(ch.b)
		buf = growAppend(buf, ch.b)
		if len(buf) > partBufferCap {
			over = true
			break
		}
	}
	c.part = buf[:0]
	if !over && !st.needs() {
		c.writeHeader(h, relabel(mi.cte), nil)
		c.writeTerm(h)
		c.out.Write(buf)
		return c.ow.err
	}
	textLike := strings.HasPrefix(mi.mt, "text/") || strings.HasPrefix(mi.mt, "message/")
	cte := "base64"
	if textLike && (st.eight+st.ctl)*6 <= st.n {
		cte = "quoted-printable"
	}
	var extra []string
	if top && !mi.hasMV {
		extra = append(extra, "MIME-Version: 1.0\r\n")
	}
	if !mi.hasCT && mi.mt == "text/plain" && st.validUTF8(!over) {
		extra = append(extra, "Content-Type: text/plain; charset=utf-8\r\n")
	}
	c.writeHeader(h, cte, extra)
	if h.term == termBlank {
		c.out.Write(h.blank)
	} else {
		c.out.WriteString("\r\n")
	}
	var e bodyEncoder = &qpEncoder{w: c.out}
	if cte == "base64" {
		e = newB64Encoder(c.out)
	}
	f := feeder{enc: e, held: c.held[:0]}
	f.feed(buf)
	if over {
		for {
			if c.ow.err != nil {
				return c.ow.err
			}
			ch, err := c.lr.next()
			if errors.Is(err, io.EOF) {
				atEOF = true
				break
			}
			if err != nil {
				return err
			}
			if c.atDelim(ch) {
				c.lr.unread(ch)
				break
			}
			f.feed(ch.b)
		}
	}
	f.end(c.out, atEOF)
	c.held = f.held
	return c.ow.err
}

// growAppend appends p to buf, growing it to at most partBufferCap plus
// one read piece, so that the buffer's size is bounded exactly.
func growAppend(buf, p []byte) []byte {
	if len(buf)+len(p) > cap(buf) {
		n := max(2*cap(buf), len(buf)+len(p), 4096)
		n = min(n, max(partBufferCap+readBufSize, len(buf)+len(p)))
		nb := make([]byte, len(buf), n)
		copy(nb, buf)
		buf = nb
	}
	return append(buf, p...)
}
