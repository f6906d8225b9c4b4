package maildrop

import (
	"bufio"
	"bytes"
	"io"
	"net/mail"
	"strings"
)

// MaxHeaderScan is how much of a message's header section
// HeaderRecipients reads; what follows is taken as body.
const MaxHeaderScan = 1 << 20

// HeaderRecipients reads the header section of a message (sendmail -t)
// and returns the addresses of its To, Cc and Bcc headers, or of its
// Resent-To, Resent-Cc and Resent-Bcc headers when there are any (RFC
// 5322 3.6.6: the resent ones name who gets the resent message). Group
// syntax and display names are understood (net/mail); an address list
// that does not parse is split at commas and each part tried alone, and
// what still fails is returned in bad, for a warning. It reads at most
// MaxHeaderScan bytes.
func HeaderRecipients(r io.Reader) (addrs, bad []string, err error) {
	fields, err := headerFields(r)
	if err != nil {
		return nil, nil, err
	}
	want := map[string]bool{"to": true, "cc": true, "bcc": true}
	for _, f := range fields {
		if strings.HasPrefix(f.name, "resent-") && want[strings.TrimPrefix(f.name, "resent-")] {
			want = map[string]bool{"resent-to": true, "resent-cc": true, "resent-bcc": true}
			break
		}
	}
	for _, f := range fields {
		if !want[f.name] {
			continue
		}
		v := strings.TrimSpace(f.value)
		if v == "" {
			continue
		}
		if l, err := mail.ParseAddressList(v); err == nil {
			for _, a := range l {
				addrs = append(addrs, a.Address)
			}
			continue
		}
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if a, err := mail.ParseAddress(part); err == nil {
				addrs = append(addrs, a.Address)
			} else if !strings.ContainsAny(part, " <>()\"") && part != "" && !strings.HasSuffix(part, ";") {
				// A bare local name ("alice"), as cron writes To: lines;
				// pickup qualifies it with myorigin.
				addrs = append(addrs, part)
			} else {
				bad = append(bad, part)
			}
		}
	}
	return addrs, bad, nil
}

type field struct{ name, value string }

// headerFields returns the header fields, unfolded, names lower-cased.
func headerFields(r io.Reader) ([]field, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxHeaderScan))
	var out []field
	for {
		l, err := br.ReadString('\n')
		line := strings.TrimRight(l, "\r\n")
		if line == "" {
			if err != nil && err != io.EOF {
				return nil, err
			}
			return out, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(out) > 0 {
				out[len(out)-1].value += " " + strings.TrimSpace(line)
			}
		} else {
			name, val, ok := strings.Cut(line, ":")
			if !ok || !validFieldName(name) {
				// The body began without an empty line.
				return out, nil
			}
			out = append(out, field{strings.ToLower(name), val})
		}
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, err
		}
	}
}

// validFieldName: RFC 5322 ftext, printable US-ASCII but colon and space.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 32 || s[i] >= 127 {
			return false
		}
	}
	return true
}

// Canonicalize copies a message from r to w with CRLF line ends (a bare
// LF becomes CRLF; a CR not followed by LF is kept as it is, for the SMTP
// client to deal with), as the queue stores mail (DESIGN.md §5). With
// stripBcc it leaves out every Bcc header field of the header section,
// with its continuation lines (sendmail -t). A final line without an end
// gets CRLF. It returns the bytes written. Lines of any length pass.
func Canonicalize(w io.Writer, r io.Reader, stripBcc bool) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	var n int64
	inHeader, skipping, atStart := true, false, true
	var pending bool // the previous fragment ended in CR
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			complete := frag[len(frag)-1] == '\n'
			if inHeader && atStart {
				// A new line starts: decide on it.
				switch {
				case isBlankLine(frag):
					inHeader, skipping = false, false
				case frag[0] == ' ' || frag[0] == '\t':
					// Continuation: follows the decision of its field.
				default:
					name, _, ok := bytes.Cut(frag, []byte(":"))
					if !ok || !validFieldName(string(name)) {
						inHeader, skipping = false, false
					} else {
						skipping = stripBcc && strings.EqualFold(string(name), "bcc")
					}
				}
			}
			if !(inHeader && skipping) {
				out := frag
				if complete {
					body := frag[:len(frag)-1]
					hasCR := len(body) > 0 && body[len(body)-1] == '\r' || len(body) == 0 && pending
					if !hasCR {
						out = append(append(body[:len(body):len(body)], '\r'), '\n')
					}
				}
				m, werr := bw.Write(out)
				n += int64(m)
				if werr != nil {
					return n, werr
				}
			}
			pending = frag[len(frag)-1] == '\r'
			atStart = complete
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if !atStart && !(inHeader && skipping) {
				end := "\r\n"
				if pending {
					end = "\n"
				}
				m, werr := bw.WriteString(end)
				n += int64(m)
				if werr != nil {
					return n, werr
				}
			}
			return n, bw.Flush()
		}
		if err != nil {
			return n, err
		}
	}
}

func isBlankLine(l []byte) bool {
	return bytes.Equal(l, []byte("\n")) || bytes.Equal(l, []byte("\r\n"))
}
