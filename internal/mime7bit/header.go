package mime7bit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"
	"unicode/utf8"
)

// termKind says how a header block ended.
type termKind int

const (
	termBlank termKind = iota // an empty line, kept in header.blank
	termBody                  // a line that is no header field: the body's first line
	termDelim                 // a boundary delimiter line: no body at all
	termEOF                   // the end of the input
)

type field struct {
	start, end int    // the field's raw lines in header.raw
	nameEnd    int    // end of the name in header.raw
	colon      int    // position of the colon in header.raw
	lname      string // the name, lower case
	out        []byte // what to write instead of the raw lines; nil: unchanged
}

// header is one header block, kept raw so that what is not changed goes
// out byte for byte.
type header struct {
	raw    []byte
	fields []field
	term   termKind
	blank  []byte
}

func (h *header) reset() {
	h.raw = h.raw[:0]
	h.fields = h.fields[:0]
	h.blank = h.blank[:0]
	h.term = termEOF
}

func (h *header) name(f *field) string { return string(h.raw[f.start:f.nameEnd]) }

// value is the field body unfolded: every CR and LF removed.
func (h *header) value(f *field) string {
	v := h.raw[f.colon+1 : f.end]
	b := make([]byte, 0, len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b = append(b, c)
		}
	}
	return string(b)
}

// get returns the value of the first field named lname.
func (h *header) get(lname string) (string, bool) {
	for i := range h.fields {
		if h.fields[i].lname == lname {
			return h.value(&h.fields[i]), true
		}
	}
	return "", false
}

// fieldName returns the length of the field name that b starts with and
// the position of its colon (white space may stand between them, as RFC
// 5322's obsolete syntax allows), or ok false when b is no field line.
func fieldName(b []byte) (nameEnd, colon int, ok bool) {
	i := 0
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f && b[i] != ':' {
		i++
	}
	if i == 0 {
		return 0, 0, false
	}
	j := i
	for j < len(b) && isWSP(b[j]) {
		j++
	}
	if j >= len(b) || b[j] != ':' {
		return 0, 0, false
	}
	return i, j, true
}

// readHeader reads one header block. It ends at an empty line, at a line
// that is neither a field nor a continuation (left as the body's first
// line, as Postfix does), at a boundary delimiter, or at the end.
func (c *converter) readHeader(h *header) error {
	h.reset()
	for {
		ch, err := c.lr.next()
		if errors.Is(err, io.EOF) {
			h.term = termEOF
			return nil
		}
		if err != nil {
			return err
		}
		if ch.complete && !ch.cont && isBlankLine(ch.b) {
			h.term = termBlank
			h.blank = append(h.blank, ch.b...)
			return nil
		}
		if c.atDelim(ch) {
			c.lr.unread(ch)
			h.term = termDelim
			return nil
		}
		cont := isWSP(ch.b[0])
		_, _, isField := fieldName(ch.b)
		if ch.cont || (cont && len(h.fields) == 0) || (!cont && !isField) {
			c.lr.unread(ch)
			h.term = termBody
			return nil
		}
		if !cont {
			if len(h.fields) == maxFields {
				return fmt.Errorf("%w: over %d header fields", ErrHeaderLimit, maxFields)
			}
			h.fields = append(h.fields, field{start: len(h.raw)})
		}
		if err := c.appendLine(h, ch); err != nil {
			return err
		}
		f := &h.fields[len(h.fields)-1]
		f.end = len(h.raw)
		if !cont {
			ne, colon, _ := fieldName(h.raw[f.start:f.end])
			f.nameEnd, f.colon = f.start+ne, f.start+colon
			f.lname = strings.ToLower(string(h.raw[f.start:f.nameEnd]))
		}
	}
}

// appendLine adds ch and the rest of its line to the header block.
func (c *converter) appendLine(h *header, ch chunk) error {
	for {
		if len(h.raw)+len(ch.b) > maxHeaderBytes {
			return fmt.Errorf("%w: header block over %d octets", ErrHeaderLimit, maxHeaderBytes)
		}
		h.raw = append(h.raw, ch.b...)
		if ch.complete {
			return nil
		}
		var err error
		ch, err = c.lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Field classes for header encoding.
var (
	// addressFields hold address lists: encoded words may stand only in
	// display names and comments (RFC 2047 §5).
	addressFields = map[string]bool{
		"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
		"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true,
		"resent-bcc": true, "return-path": true, "disposition-notification-to": true,
		"mail-followup-to": true, "mail-reply-to": true, "errors-to": true,
		"return-receipt-to": true,
	}
	// paramFields are MIME fields with parameters: 8-bit parameter
	// values become RFC 2231 extended values.
	paramFields = map[string]bool{"content-type": true, "content-disposition": true}
	// strictFields have a syntax where no encoded word may stand, or a
	// signature over their bytes: 8-bit there cannot be converted.
	strictFields = map[string]bool{
		"message-id": true, "resent-message-id": true, "in-reply-to": true, "references": true,
		"content-id": true, "date": true, "resent-date": true, "received": true,
		"mime-version": true, "content-transfer-encoding": true, "dkim-signature": true,
		"arc-seal": true, "arc-message-signature": true, "arc-authentication-results": true,
		"authentication-results": true, "content-md5": true, "content-language": true,
		"received-spf": true, "list-id": true, "list-post": true, "list-unsubscribe": true,
		"list-help": true, "list-subscribe": true, "list-owner": true, "list-archive": true,
	}
)

// prepare computes the output of every field that cannot go as it is:
// one with 8-bit octets is encoded, one with a line over maxLine octets
// refolded.
func (c *converter) prepare(h *header) error {
	for i := range h.fields {
		f := &h.fields[i]
		raw := h.raw[f.start:f.end]
		switch {
		case has8bit(raw):
			out, err := encodeField(h.name(f), f.lname, h.value(f))
			if err != nil {
				return err
			}
			f.out = out
		case hasLongLine(raw):
			out, err := refoldField(h.name(f), f.lname, h.value(f))
			if err != nil {
				return err
			}
			f.out = out
		}
	}
	return nil
}

func fieldErr(sentinel error, name, why string) error {
	if len(name) > 40 {
		name = name[:40] + "..."
	}
	return fmt.Errorf("%w: %s field: %s", sentinel, name, why)
}

// encodeField rewrites a field with 8-bit octets in 7-bit form, or says
// why it cannot.
func encodeField(name, lname, value string) ([]byte, error) {
	var (
		v   string
		err error
	)
	switch {
	case addressFields[lname]:
		v, err = encodeAddressList(value)
	case paramFields[lname]:
		v, err = encodeParams(value)
	case strictFields[lname]:
		err = errors.New("no encoded words allowed there")
	default:
		v, err = encodeUnstructured(value)
	}
	if err != nil {
		return nil, fieldErr(ErrHeaders8Bit, name, err.Error())
	}
	out, err := foldField(name, v)
	if err != nil {
		return nil, fieldErr(ErrHeaderLimit, name, err.Error())
	}
	return out, nil
}

// refoldField folds a 7-bit field whose line is too long. Free text that
// has no place to fold is put in encoded words, which can be cut.
func refoldField(name, lname, value string) ([]byte, error) {
	out, err := foldField(name, value)
	if err == nil {
		return out, nil
	}
	if !addressFields[lname] && !paramFields[lname] && !strictFields[lname] {
		if v, err2 := encodeUnstructured(value); err2 == nil {
			if out, err2 = foldField(name, v); err2 == nil {
				return out, nil
			}
		}
	}
	return nil, fieldErr(ErrHeaderLimit, name, err.Error())
}

// foldField writes "name: value" CRLF, folding before white space so that
// lines stay near 78 octets; it fails if a line must exceed maxLine.
func foldField(name, value string) ([]byte, error) {
	b := make([]byte, 0, len(name)+len(value)+len(value)/32+8)
	b = append(b, name...)
	b = append(b, ':')
	if value == "" || !isWSP(value[0]) {
		value = " " + value
	}
	lineLen, words := len(b), 0
	for i := 0; i < len(value); {
		j := i
		for j < len(value) && isWSP(value[j]) {
			j++
		}
		k := j
		for k < len(value) && !isWSP(value[k]) {
			k++
		}
		sep, word := value[i:j], value[j:k]
		if words > 0 && sep != "" && word != "" && lineLen+len(sep)+len(word) > 78 {
			b = append(b, '\r', '\n')
			lineLen, words = 0, 0
		}
		b = append(b, sep...)
		b = append(b, word...)
		lineLen += len(sep) + len(word)
		if lineLen > maxLine {
			return nil, errors.New("a line cannot be folded under 998 octets")
		}
		if word != "" {
			words++
		}
		i = k
	}
	return append(b, '\r', '\n'), nil
}

// longWord is the length past which a 7-bit word of free text is put in
// encoded words, so that the field can be folded.
const longWord = 900

// encodeUnstructured encodes free text (RFC 2047 §5(1)): every run of
// words with 8-bit octets (or too long to fold) becomes encoded words; the
// other words stay as they are.
func encodeUnstructured(value string) (string, error) {
	type piece struct {
		sep, word string
		enc       bool
	}
	var ps []piece
	for i := 0; i < len(value); {
		j := i
		for j < len(value) && isWSP(value[j]) {
			j++
		}
		k := j
		for k < len(value) && !isWSP(value[k]) {
			k++
		}
		w := value[j:k]
		ps = append(ps, piece{value[i:j], w, has8bit(w) || len(w) > longWord})
		i = k
	}
	var b strings.Builder
	for i := 0; i < len(ps); {
		if !ps[i].enc {
			b.WriteString(ps[i].sep)
			b.WriteString(ps[i].word)
			i++
			continue
		}
		j := i + 1
		var tb strings.Builder
		tb.WriteString(ps[i].word)
		for j < len(ps) && ps[j].enc {
			tb.WriteString(ps[j].sep)
			tb.WriteString(ps[j].word)
			j++
		}
		// White space between two encoded words is dropped by decoders:
		// next to an encoded word that was already there, it goes inside.
		sep := ps[i].sep
		if i > 0 && isEncodedWord(ps[i-1].word) {
			tb.Reset()
			tb.WriteString(ps[i].sep)
			for k := i; k < j; k++ {
				if k > i {
					tb.WriteString(ps[k].sep)
				}
				tb.WriteString(ps[k].word)
			}
			sep = " "
		}
		if j < len(ps) && isEncodedWord(ps[j].word) {
			tb.WriteString(ps[j].sep)
			ps[j].sep = " "
		}
		text := tb.String()
		if !utf8.ValidString(text) {
			return "", errors.New("8-bit text that is not UTF-8")
		}
		if sep == "" {
			sep = " "
		}
		b.WriteString(sep)
		b.WriteString(strings.Join(encodeWords(text), " "))
		i = j
	}
	return b.String(), nil
}

// isEncodedWord reports whether w looks like an RFC 2047 encoded word.
func isEncodedWord(w string) bool {
	return len(w) >= 8 && strings.HasPrefix(w, "=?") && strings.HasSuffix(w, "?=")
}

// decodeWords decodes the encoded words already in s, so that text about
// to be encoded as a whole does not carry them as literal text; words in
// an unknown charset stay as they are.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	var d mime.WordDecoder
	if v, err := d.DecodeHeader(s); err == nil {
		return v
	}
	return s
}

// qSafe are the octets that stand for themselves in a Q-encoded word
// anywhere, phrases included (RFC 2047 §5(3)).
func qSafe(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '!' || c == '*' || c == '+' || c == '-' || c == '/'
}

// encodeWords encodes UTF-8 text s as encoded words of at most 75 octets,
// cut between characters, Q or B, whichever is shorter (with a bias
// for Q).
func encodeWords(s string) []string {
	q := 0
	for i := 0; i < len(s); i++ {
		if qSafe(s[i]) || s[i] == ' ' {
			q++
		} else {
			q += 3
		}
	}
	// Q keeps mostly-Latin text readable: B only when clearly shorter.
	useB := q > (len(s)+2)/3*4*5/4
	var words []string
	for len(s) > 0 {
		n, cost := 0, 0
		for n < len(s) {
			_, size := utf8.DecodeRuneInString(s[n:])
			if useB {
				if n+size > 45 && n > 0 {
					break
				}
			} else {
				rc := 0
				for k := n; k < n+size; k++ {
					if qSafe(s[k]) || s[k] == ' ' {
						rc++
					} else {
						rc += 3
					}
				}
				if cost+rc > 63 && n > 0 {
					break
				}
				cost += rc
			}
			n += size
		}
		chunk := s[:n]
		s = s[n:]
		if useB {
			words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(chunk))+"?=")
			continue
		}
		var w strings.Builder
		w.WriteString("=?utf-8?q?")
		for k := 0; k < len(chunk); k++ {
			c := chunk[k]
			switch {
			case c == ' ':
				w.WriteByte('_')
			case qSafe(c):
				w.WriteByte(c)
			default:
				w.WriteByte('=')
				w.WriteByte(upperhex[c>>4])
				w.WriteByte(upperhex[c&0x0f])
			}
		}
		w.WriteString("?=")
		words = append(words, w.String())
	}
	return words
}

// token kinds of an address list.
const (
	tWSP     = 'w'
	tAtom    = 'a'
	tQuoted  = 'q'
	tComment = 'c'
	tAngle   = '<'
	tSpecial = 's'
)

type token struct {
	kind byte
	s    string
}

// tokenizeAddr cuts an address list into white space, atoms (which here
// include "@" and "."), quoted strings, comments, angle addresses and the
// list's separators "," ";" ":". Unclosed constructs run to the end.
func tokenizeAddr(v string) []token {
	var ts []token
	for i := 0; i < len(v); {
		c := v[i]
		j := i + 1
		kind := byte(tAtom)
		switch {
		case isWSP(c):
			kind = tWSP
			for j < len(v) && isWSP(v[j]) {
				j++
			}
		case c == '"':
			kind = tQuoted
			j = scanQuoted(v, i)
		case c == '(':
			kind = tComment
			depth := 0
			for j = i; j < len(v); j++ {
				if v[j] == '\\' {
					j++
					continue
				}
				if v[j] == '(' {
					depth++
				} else if v[j] == ')' {
					depth--
					if depth == 0 {
						j++
						break
					}
				}
			}
			j = min(j, len(v))
		case c == '<':
			kind = tAngle
			for j < len(v) && v[j] != '>' {
				if v[j] == '"' {
					j = scanQuoted(v, j)
					continue
				}
				j++
			}
			if j < len(v) {
				j++
			}
		case c == ',' || c == ';' || c == ':':
			kind = tSpecial
		default:
			for j < len(v) && !isWSP(v[j]) && !strings.ContainsRune("\"(<,;:", rune(v[j])) {
				j++
			}
		}
		ts = append(ts, token{kind, v[i:j]})
		i = j
	}
	return ts
}

// scanQuoted returns the end of the quoted string that starts at v[i].
func scanQuoted(v string, i int) int {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(v)
}

// unescape drops the quoting backslashes of a quoted string or comment
// body.
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// encodeAddressList encodes the display names (and group names) and
// comments of an address list; 8-bit octets in an address itself cannot
// be encoded (that message needs SMTPUTF8).
func encodeAddressList(v string) (string, error) {
	ts := tokenizeAddr(v)
	var b strings.Builder
	seg := 0
	for i := 0; i <= len(ts); i++ {
		if i < len(ts) && ts[i].kind != tSpecial {
			continue
		}
		term := ""
		if i < len(ts) {
			term = ts[i].s
		}
		if err := encodeMailbox(&b, ts[seg:i], term == ":"); err != nil {
			return "", err
		}
		b.WriteString(term)
		seg = i + 1
	}
	return b.String(), nil
}

// encodeMailbox encodes one mailbox (or group name) of an address list.
func encodeMailbox(b *strings.Builder, seg []token, groupName bool) error {
	ai := slices.IndexFunc(seg, func(t token) bool { return t.kind == tAngle })
	var phrase, rest []token
	switch {
	case ai >= 0:
		phrase, rest = seg[:ai], seg[ai:]
	case groupName:
		phrase = seg
	default:
		rest = seg
	}
	if err := encodePhrase(b, phrase, ai >= 0); err != nil {
		return err
	}
	for _, t := range rest {
		switch {
		case !has8bit(t.s):
			b.WriteString(t.s)
		case t.kind == tComment:
			if err := encodeComment(b, t.s); err != nil {
				return err
			}
		default:
			return errors.New("8-bit octets in an address")
		}
	}
	return nil
}

// encodePhrase replaces a display name with 8-bit octets by encoded words
// (RFC 2047 §5(3)); quoted strings are unquoted first. White space around
// it is kept.
func encodePhrase(b *strings.Builder, phrase []token, beforeAngle bool) error {
	lead, trail := 0, len(phrase)
	for lead < trail && phrase[lead].kind == tWSP {
		lead++
	}
	for trail > lead && phrase[trail-1].kind == tWSP {
		trail--
	}
	core := phrase[lead:trail]
	if !slices.ContainsFunc(core, func(t token) bool { return has8bit(t.s) }) {
		for _, t := range phrase {
			b.WriteString(t.s)
		}
		return nil
	}
	var text strings.Builder
	for _, t := range core {
		switch t.kind {
		case tWSP:
			text.WriteByte(' ')
		case tQuoted:
			s := strings.TrimSuffix(t.s[1:], "\"")
			text.WriteString(unescape(s))
		default:
			text.WriteString(t.s)
		}
	}
	if !utf8.ValidString(text.String()) {
		return errors.New("8-bit display name that is not UTF-8")
	}
	display := decodeWords(text.String())
	for _, t := range phrase[:lead] {
		b.WriteString(t.s)
	}
	if lead == 0 {
		b.WriteByte(' ')
	}
	b.WriteString(strings.Join(encodeWords(display), " "))
	for _, t := range phrase[trail:] {
		b.WriteString(t.s)
	}
	if trail == len(phrase) && beforeAngle {
		b.WriteByte(' ')
	}
	return nil
}

// encodeComment puts the text of a comment with 8-bit octets in encoded
// words (RFC 2047 §5(2)).
func encodeComment(b *strings.Builder, c string) error {
	s := strings.TrimSuffix(c[1:], ")")
	s = unescape(s)
	if !utf8.ValidString(s) {
		return errors.New("8-bit comment that is not UTF-8")
	}
	s = decodeWords(s)
	b.WriteByte('(')
	b.WriteString(strings.Join(encodeWords(s), " "))
	b.WriteByte(')')
	return nil
}

// encodeParams rewrites a Content-Type or Content-Disposition whose
// parameters hold 8-bit octets: such a value becomes an RFC 2231 extended
// value in UTF-8, cut in continuations when long.
func encodeParams(v string) (string, error) {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return "", fmt.Errorf("cannot parse: %v", err)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(mt)
	for _, k := range keys {
		val := params[k]
		b.WriteString(";")
		if !has8bit(val) {
			b.WriteString(" ")
			b.WriteString(k)
			b.WriteString("=")
			if val != "" && isToken(val) {
				b.WriteString(val)
				continue
			}
			b.WriteByte('"')
			for i := 0; i < len(val); i++ {
				if val[i] == '"' || val[i] == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(val[i])
			}
			b.WriteByte('"')
			continue
		}
		if !utf8.ValidString(val) {
			return "", fmt.Errorf("parameter %s is 8-bit but not UTF-8", k)
		}
		var pieces []string
		var cur strings.Builder
		for i := 0; i < len(val); i++ {
			c := val[i]
			if cur.Len() >= 60 && utf8.RuneStart(c) {
				pieces = append(pieces, cur.String())
				cur.Reset()
			}
			if isAttrChar(c) {
				cur.WriteByte(c)
			} else {
				cur.WriteByte('%')
				cur.WriteByte(upperhex[c>>4])
				cur.WriteByte(upperhex[c&0x0f])
			}
		}
		pieces = append(pieces, cur.String())
		if len(pieces) == 1 {
			fmt.Fprintf(&b, " %s*=utf-8''%s", k, pieces[0])
			continue
		}
		for i, p := range pieces {
			if i > 0 {
				b.WriteString(";")
			}
			if i == 0 {
				p = "utf-8''" + p
			}
			fmt.Fprintf(&b, " %s*%d*=%s", k, i, p)
		}
	}
	return b.String(), nil
}

// isToken reports whether s is an RFC 2045 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// isAttrChar reports whether c may stand unescaped in an RFC 2231
// extended value.
func isAttrChar(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}

// mediaInfo is what the converter needs of an entity's MIME fields.
type mediaInfo struct {
	mt       string // media type, lower case; the default when absent or unparsable
	boundary string // the boundary parameter, "" if none
	cte      string // Content-Transfer-Encoding, lower case, "" if absent
	hasCT    bool
	hasMV    bool
}

func analyze(h *header, defType string) mediaInfo {
	var mi mediaInfo
	mi.mt = defType
	if v, ok := h.get("content-type"); ok {
		mi.hasCT = true
		mt, params, err := mime.ParseMediaType(v)
		if err == nil {
			mi.boundary = params["boundary"]
		} else {
			// Be as lenient as readers are: take the type, and find the
			// boundary by hand.
			mt, _, _ = strings.Cut(v, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			mi.boundary = lenientParam(v, "boundary")
		}
		if i := strings.IndexByte(mt, '/'); i > 0 && i < len(mt)-1 && isToken(mt[:i]) && isToken(mt[i+1:]) {
			mi.mt = mt
		} else if mt != "" {
			mi.mt = "text/plain" // RFC 2045 §5.2: an invalid type is taken as text/plain
		}
	}
	if v, ok := h.get("content-transfer-encoding"); ok {
		v = strings.TrimLeft(v, " \t")
		if i := strings.IndexAny(v, " \t;("); i >= 0 {
			v = v[:i]
		}
		mi.cte = strings.ToLower(v)
	}
	_, mi.hasMV = h.get("mime-version")
	return mi
}

// lenientParam finds parameter name in a Content-Type that
// mime.ParseMediaType refused.
func lenientParam(v, name string) string {
	lv := strings.ToLower(v)
	for off := 0; ; {
		i := strings.Index(lv[off:], name)
		if i < 0 {
			return ""
		}
		i += off
		off = i + len(name)
		if i > 0 && !isWSP(lv[i-1]) && lv[i-1] != ';' {
			continue
		}
		j := off
		for j < len(v) && isWSP(v[j]) {
			j++
		}
		if j >= len(v) || v[j] != '=' {
			continue
		}
		j++
		for j < len(v) && isWSP(v[j]) {
			j++
		}
		if j < len(v) && v[j] == '"' {
			end := scanQuoted(v, j)
			s := v[j+1 : end]
			s = strings.TrimSuffix(s, "\"")
			return unescape(s)
		}
		k := j
		for k < len(v) && !isWSP(v[k]) && v[k] != ';' {
			k++
		}
		return v[j:k]
	}
}
