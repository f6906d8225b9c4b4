package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	// ednsSize is the UDP payload size advertised with EDNS0 (RFC 6891);
	// 4096 as the brief and most stub resolvers use.
	ednsSize = 4096
	// maxReply bounds a reply: the most a UDP datagram or a TCP length
	// prefix can carry, so nothing larger can arrive, but the buffer size
	// is stated here once.
	maxReply = 65535
	// headerLen is the length of the fixed DNS header.
	headerLen = 12
)

// query asks the servers for qtype records of fqdn and returns the first
// answer whose rcode is NOERROR or NXDOMAIN. Any other outcome, from every
// server in every round, is an error wrapping ErrServerFailure or the
// context's error.
func (r *Resolver) query(ctx context.Context, fqdn string, qtype uint16) (*mdns.Msg, error) {
	servers, timeout, attempts, err := r.config()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServerFailure, err)
	}
	var last error
	for range attempts {
		for _, srv := range servers {
			if err := ctx.Err(); err != nil {
				if last != nil {
					return nil, fmt.Errorf("%w (before: %v)", err, last)
				}
				return nil, err
			}
			m, err := exchange(ctx, srv, fqdn, qtype, timeout)
			if err == nil {
				return m, nil
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("server %s: %w", srv, ctxErr)
			}
			last = fmt.Errorf("server %s: %w", srv, err)
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrServerFailure, last)
}

// exchange asks one server one question: over UDP, again over TCP when the
// answer is truncated, again without EDNS0 when the server does not know it.
// Only NOERROR and NXDOMAIN answers are returned.
func exchange(ctx context.Context, srv, fqdn string, qtype uint16, timeout time.Duration) (*mdns.Msg, error) {
	edns := true
	for {
		m, truncated, err := exchangeUDP(ctx, srv, fqdn, qtype, edns, deadline(ctx, timeout))
		if err != nil {
			return nil, err
		}
		if truncated {
			m, err = exchangeTCP(ctx, srv, fqdn, qtype, edns, deadline(ctx, timeout))
			if err != nil {
				return nil, fmt.Errorf("over TCP after a truncated UDP answer: %w", err)
			}
		}
		switch m.Rcode {
		case mdns.RcodeSuccess, mdns.RcodeNameError:
			return m, nil
		case mdns.RcodeFormatError:
			// An old server that refuses EDNS0 answers FORMERR (RFC 6891
			// section 7); ask it once more the old way.
			if edns {
				edns = false
				continue
			}
		}
		return nil, fmt.Errorf("answered %s", rcodeName(m.Rcode))
	}
}

// deadline is when one query must be done: Timeout from now, or earlier
// when the context says so.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

// newQuery packs a recursive question with a random ID.
func newQuery(fqdn string, qtype uint16, edns bool) (uint16, []byte, error) {
	m := new(mdns.Msg)
	m.Id = uint16(rand.Uint32())
	m.RecursionDesired = true
	m.Question = []mdns.Question{{Name: fqdn, Qtype: qtype, Qclass: mdns.ClassINET}}
	if edns {
		m.SetEdns0(ednsSize, false)
	}
	wire, err := m.Pack()
	if err != nil {
		return 0, nil, fmt.Errorf("packing the query: %w", err)
	}
	return m.Id, wire, nil
}

// exchangeUDP sends the question from a new socket (a new random source
// port) connected to the server, so the kernel drops datagrams from other
// addresses, and waits for an answer that matches it; anything else that
// arrives is ignored. truncated reports the TC bit, in which case m may be
// nil.
func exchangeUDP(ctx context.Context, srv, fqdn string, qtype uint16, edns bool, dl time.Time) (m *mdns.Msg, truncated bool, err error) {
	id, wire, err := newQuery(fqdn, qtype, edns)
	if err != nil {
		return nil, false, err
	}
	d := net.Dialer{Deadline: dl}
	conn, err := d.DialContext(ctx, "udp", srv)
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	// A cancelled context must end the wait at once, not at the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.SetDeadline(dl); err != nil {
		return nil, false, err
	}
	if _, err := conn.Write(wire); err != nil {
		return nil, false, err
	}
	buf := make([]byte, maxReply)
	ignored := 0
	var why error
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = errors.New("no answer in time")
			}
			if ignored > 0 {
				return nil, false, fmt.Errorf("%w (ignored %d bad answers, the last: %v)", err, ignored, why)
			}
			return nil, false, err
		}
		m, truncated, err := check(buf[:n], id, fqdn, qtype)
		if err != nil {
			ignored++
			why = err
			continue
		}
		return m, truncated, nil
	}
}

// exchangeTCP asks over TCP (RFC 7766): a two-byte length before each
// message. Over TCP nobody else can inject an answer, so a reply that does
// not match is an error of the server, not something to wait past.
func exchangeTCP(ctx context.Context, srv, fqdn string, qtype uint16, edns bool, dl time.Time) (*mdns.Msg, error) {
	id, wire, err := newQuery(fqdn, qtype, edns)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Deadline: dl}
	conn, err := d.DialContext(ctx, "tcp", srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := conn.SetDeadline(dl); err != nil {
		return nil, err
	}
	out := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	copy(out[2:], wire)
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}
	var lb [2]byte
	if _, err := io.ReadFull(conn, lb[:]); err != nil {
		return nil, timeoutText(err)
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n > maxReply {
		return nil, fmt.Errorf("answer of %d bytes is too long", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, timeoutText(err)
	}
	m, _, err := check(buf, id, fqdn, qtype)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("truncated answer over TCP")
	}
	return m, nil
}

// timeoutText makes a deadline error say what it means.
func timeoutText(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("no answer in time")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("connection closed before a whole answer")
	}
	return err
}

// check parses a reply and verifies that it answers our question: the ID,
// the QR bit, the opcode, and the question's name, type and class. A reply
// with the TC bit whose records are cut off is reported as truncated with a
// nil message; the header is enough to know that TCP is needed.
func check(raw []byte, id uint16, fqdn string, qtype uint16) (*mdns.Msg, bool, error) {
	if len(raw) < headerLen {
		return nil, false, fmt.Errorf("answer of %d bytes is shorter than a header", len(raw))
	}
	if got := binary.BigEndian.Uint16(raw); got != id {
		return nil, false, fmt.Errorf("answer has ID %d, not %d", got, id)
	}
	const qrBit, tcBit = 0x80, 0x02
	if raw[2]&qrBit == 0 {
		return nil, false, errors.New("not a response")
	}
	m, err := unpack(raw)
	if err != nil {
		if raw[2]&tcBit != 0 {
			return nil, true, nil
		}
		return nil, false, err
	}
	if m.Opcode != mdns.OpcodeQuery {
		return nil, false, fmt.Errorf("answer has opcode %d", m.Opcode)
	}
	switch len(m.Question) {
	case 1:
		q := m.Question[0]
		if !strings.EqualFold(q.Name, fqdn) || q.Qtype != qtype || q.Qclass != mdns.ClassINET {
			return nil, false, fmt.Errorf("answer is for another question (%s %s)", q.Name, mdns.Type(q.Qtype))
		}
	case 0:
		// Some servers leave the question out of an error answer
		// (FORMERR, REFUSED); such an answer carries no data to trust,
		// only its rcode, so it is taken.
		if m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError {
			return nil, false, errors.New("answer has no question")
		}
	default:
		return nil, false, fmt.Errorf("answer has %d questions", len(m.Question))
	}
	return m, m.Truncated, nil
}

// unpack parses a message. The library is fuzzed upstream and here, but a
// panic on a peer's bytes must never take a daemon down, so it is turned
// into an error.
func unpack(raw []byte) (m *mdns.Msg, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("unparseable answer (%v)", p)
		}
	}()
	m = new(mdns.Msg)
	if err := m.Unpack(raw); err != nil {
		return nil, fmt.Errorf("unparseable answer: %w", err)
	}
	return m, nil
}

// rcodeName names an rcode for an error message.
func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}
