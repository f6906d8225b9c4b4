// ENVELOPE and BODYSTRUCTURE as RFC 9051 §7.5.2 wants them.
// imapserver.ExtractEnvelope drops address groups ("undisclosed-recipients:;",
// "team: a@x, b@y;") and addresses net/mail cannot parse; envelope keeps
// both: a group becomes its start marker (NIL NIL "name" NIL), its members
// and the end marker (NIL NIL NIL NIL). An address without a domain gets
// Dovecot's placeholders MISSING_MAILBOX / MISSING_DOMAIN so that it
// never looks like a group marker.
package main

import (
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// maxAddresses bounds one header's address list: a hostile header cannot
// make a response unbounded.
const maxAddresses = 1000

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// envelope builds the ENVELOPE of a message from its header.
func envelope(h textproto.Header) *imap.Envelope {
	mh := gomail.Header{Header: gomessage.Header{Header: h}}
	date, _ := mh.Date()
	subject, err := mh.Subject()
	if err != nil {
		subject = mh.Get("Subject")
	}
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	return &imap.Envelope{
		Date:      date,
		Subject:   subject,
		From:      addressList(h.Get("From")),
		Sender:    addressList(h.Get("Sender")),
		ReplyTo:   addressList(h.Get("Reply-To")),
		To:        addressList(h.Get("To")),
		Cc:        addressList(h.Get("Cc")),
		Bcc:       addressList(h.Get("Bcc")),
		InReplyTo: inReplyTo,
		MessageID: messageID,
	}
}

// addressList parses an RFC 5322 address-list, groups included, and is
// lenient: what it cannot parse it still reports as well as it can.
func addressList(v string) []imap.Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var (
		out     []imap.Address
		cur     strings.Builder
		inQuote bool
		comment int
		angle   bool
		inGroup bool
		escape  bool
	)
	flush := func() {
		if a, ok := parseOne(cur.String()); ok {
			out = append(out, a)
		}
		cur.Reset()
	}
	for i := 0; i < len(v) && len(out) < maxAddresses; i++ {
		ch := v[i]
		if escape {
			escape = false
			cur.WriteByte(ch)
			continue
		}
		switch {
		case ch == '\\' && (inQuote || comment > 0):
			escape = true
		case inQuote:
			if ch == '"' {
				inQuote = false
			}
		case comment > 0:
			if ch == '(' {
				comment++
			} else if ch == ')' {
				comment--
			}
		case ch == '"':
			inQuote = true
		case ch == '(':
			comment++
		case ch == '<':
			angle = true
		case ch == '>':
			angle = false
		case angle:
		case ch == ':' && !inGroup:
			name := strings.TrimSpace(decodeWords(stripComments(cur.String())))
			name = unquote(name)
			cur.Reset()
			inGroup = true
			out = append(out, imap.Address{Mailbox: nonEmpty(name, "MISSING_GROUP")})
			continue
		case ch == ',':
			flush()
			continue
		case ch == ';' && inGroup:
			flush()
			inGroup = false
			out = append(out, imap.Address{})
			continue
		}
		cur.WriteByte(ch)
	}
	flush()
	if inGroup {
		out = append(out, imap.Address{})
	}
	return out
}

// parseOne parses a single mailbox ("Name <a@b>", "a@b (comment)").
func parseOne(s string) (imap.Address, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return imap.Address{}, false
	}
	p := mail.AddressParser{WordDecoder: wordDecoder}
	if a, err := p.Parse(s); err == nil {
		return splitAddr(a.Name, a.Address), true
	}
	// Lenient fall back: the part in angle brackets is the address, the
	// rest the name.
	name, addr := "", stripComments(s)
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		name = strings.TrimSpace(s[:i])
		addr = s[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
		// a route ("@a,@b:x@y") is obsolete; keep the mailbox
		if j := strings.LastIndexByte(addr, ':'); j >= 0 {
			addr = addr[j+1:]
		}
	}
	name = unquote(decodeWords(name))
	return splitAddr(name, strings.TrimSpace(addr)), true
}

func splitAddr(name, addr string) imap.Address {
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i+1:]
	}
	return imap.Address{
		Name:    name,
		Mailbox: nonEmpty(local, "MISSING_MAILBOX"),
		Host:    nonEmpty(domain, "MISSING_DOMAIN"),
	}
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		s = strings.ReplaceAll(s, `\"`, `"`)
		s = strings.ReplaceAll(s, `\\`, `\`)
	}
	return s
}

// stripComments removes (comments) outside quoted strings.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth, quote, esc := 0, false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case esc:
			esc = false
		case ch == '\\':
			esc = true
		case quote:
			if ch == '"' {
				quote = false
			}
		case ch == '"' && depth == 0:
			quote = true
		case ch == '(':
			depth++
			continue
		case ch == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// fixBodyStructure fills in RFC 2045's defaults that
// imapserver.ExtractBodyStructure leaves empty for a part without
// Content-Type (text/plain; charset=us-ascii), so the response stays
// valid, and does the same inside message/rfc822 parts.
func fixBodyStructure(bs imap.BodyStructure, parentDigest bool) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if b.Type == "" || b.Subtype == "" {
			if parentDigest {
				b.Type, b.Subtype = "message", "rfc822"
			} else {
				b.Type, b.Subtype = "text", "plain"
				if b.Params == nil {
					b.Params = map[string]string{}
				}
				if b.Params["charset"] == "" {
					b.Params["charset"] = "us-ascii"
				}
				if b.Text == nil {
					b.Text = &imap.BodyStructureText{}
				}
			}
		}
		if b.MessageRFC822 != nil && b.MessageRFC822.BodyStructure != nil {
			b.MessageRFC822.BodyStructure = fixBodyStructure(b.MessageRFC822.BodyStructure, false)
		}
		return b
	case *imap.BodyStructureMultiPart:
		if len(b.Children) == 0 {
			// a multipart with no parseable part: RFC 9051 needs one;
			// describe an empty text part
			b.Children = []imap.BodyStructure{&imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain",
				Params: map[string]string{"charset": "us-ascii"},
				Text:   &imap.BodyStructureText{},
			}}
		}
		digest := strings.EqualFold(b.Subtype, "digest")
		for i, c := range b.Children {
			b.Children[i] = fixBodyStructure(c, digest)
		}
		return b
	}
	return bs
}
