package dsn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
)

// MaxParse is how many bytes of a report Parse reads: the header, the
// text part and the delivery-status part must fit; the original, which
// comes last, is not read.
const MaxParse = 4 << 20

// ErrNotReport is returned by Parse for a message that is not a
// multipart/report with a delivery-status part.
var ErrNotReport = errors.New("dsn: not a delivery status notification")

// Parsed is a report as Parse reads it back. Field names in the
// textproto.MIMEHeader values are canonical ("Final-Recipient",
// "X-Postern-Queue-Id"); use Get, which canonicalises. Folded values are
// unfolded with single spaces.
type Parsed struct {
	Header     textproto.MIMEHeader   // the message's own header
	ReportType string                 // "delivery-status" or "global-delivery-status"
	Text       string                 // part 1, the explanation (CRLF kept)
	Message    textproto.MIMEHeader   // per-message fields (Reporting-MTA, ...)
	Recipients []textproto.MIMEHeader // one per recipient, in order
	Original   string                 // media type of part 3, "" when absent
}

// Parse reads a multipart/report delivery status notification: the
// message header, the human-readable part, the per-message and
// per-recipient fields of the (global-)delivery-status part, and the
// media type of the returned original. It reads at most MaxParse bytes
// and stops at the original's header.
func Parse(r io.Reader) (*Parsed, error) {
	lr := &io.LimitedReader{R: r, N: MaxParse}
	p, err := parse(lr)
	if err != nil && lr.N <= 0 {
		return nil, fmt.Errorf("dsn: report larger than %d bytes: %w", MaxParse, err)
	}
	return p, err
}

func parse(r io.Reader) (*Parsed, error) {
	br := bufio.NewReader(r)
	h, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("dsn: reading header: %w", err)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["boundary"] == "" {
		return nil, fmt.Errorf("%w: content type %q", ErrNotReport, h.Get("Content-Type"))
	}
	p := &Parsed{Header: h, ReportType: strings.ToLower(params["report-type"])}
	mr := multipart.NewReader(br, params["boundary"])
	found := false
	for i := 0; i < 3; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dsn: part %d: %w", i+1, err)
		}
		ct := part.Header.Get("Content-Type")
		pt := "text/plain"
		if ct != "" {
			if pt, _, err = mime.ParseMediaType(ct); err != nil {
				return nil, fmt.Errorf("dsn: part %d: content type %q: %w", i+1, ct, err)
			}
		}
		switch {
		case i == 0 && strings.HasPrefix(pt, "text/"):
			b, err := io.ReadAll(part)
			if err != nil {
				return nil, fmt.Errorf("dsn: part 1: %w", err)
			}
			p.Text = string(b)
		case pt == "message/delivery-status" || pt == "message/global-delivery-status":
			if err := p.parseStatus(part); err != nil {
				return nil, err
			}
			found = true
		case found:
			p.Original = pt
			return p, nil
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no delivery-status part", ErrNotReport)
	}
	return p, nil
}

// parseStatus reads the groups of fields of a delivery-status body: the
// first is per-message, each further one per-recipient.
func (p *Parsed) parseStatus(r io.Reader) error {
	tp := textproto.NewReader(bufio.NewReader(r))
	for {
		g, err := tp.ReadMIMEHeader()
		if len(g) > 0 {
			if p.Message == nil {
				p.Message = g
			} else {
				p.Recipients = append(p.Recipients, g)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("dsn: delivery-status: %w", err)
		}
	}
	if p.Message == nil {
		return fmt.Errorf("%w: empty delivery-status part", ErrNotReport)
	}
	return nil
}
