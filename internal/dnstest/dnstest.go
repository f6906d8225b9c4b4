// Package dnstest is a DNS server for tests, and for nothing else: it listens
// on 127.0.0.1 (UDP and TCP on one port), answers from records the test sets,
// and stops when the test ends. It plays a recursive resolver: CNAME chains
// it holds are followed inside the answer, as a real resolver would.
//
// Answers are right where mail delivery cares: a name that owns any record,
// or has a name below it, answers NODATA (NOERROR, empty) for the types it
// lacks; any other name answers NXDOMAIN. EDNS0 is echoed, and a UDP answer
// larger than the client's buffer is truncated with TC set, as real servers
// do. Fail, Delay and Truncate make it misbehave on purpose.
//
// Limits: class IN only, no zone cuts, no authority or additional sections,
// no DNSSEC; a query that does not parse is dropped; queries are handled
// concurrently, each delayed one until its delay is over or the server
// stops.
package dnstest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// ttl is the TTL of every record; nothing caches in a test.
const ttl = 60

// Server is a running test DNS server.
type Server struct {
	// Addr is where it listens, UDP and TCP: "127.0.0.1:port".
	Addr string

	t    testing.TB
	udp  net.PacketConn
	tcp  net.Listener
	done chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	records  map[string][]mdns.RR // by canonical owner name ("a.example.")
	fail     map[string]int
	delay    map[string]time.Duration
	truncate map[string]bool
	queries  []string
	tcpQs    []string
}

// Start starts a server on a free port of 127.0.0.1 and stops it when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		done:     make(chan struct{}),
		records:  make(map[string][]mdns.RR),
		fail:     make(map[string]int),
		delay:    make(map[string]time.Duration),
		truncate: make(map[string]bool),
	}
	// Take a free UDP port, then the same port for TCP; another process
	// may hold it for TCP, so try a few ports.
	var err error
	for range 20 {
		s.udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		s.Addr = s.udp.LocalAddr().String()
		s.tcp, err = net.Listen("tcp", s.Addr)
		if err == nil {
			break
		}
		s.udp.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: no port free for both UDP and TCP: %v", err)
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(s.stop)
	return s
}

// stop closes the sockets and waits for every handler.
func (s *Server) stop() {
	close(s.done)
	s.udp.Close()
	s.tcp.Close()
	s.wg.Wait()
}

// fqdn makes a name canonical: lower-case, with the trailing dot.
func fqdn(name string) string {
	return mdns.CanonicalName(name)
}

// add records rr under its owner.
func (s *Server) add(rr mdns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := fqdn(rr.Header().Name)
	rr.Header().Name = owner
	s.records[owner] = append(s.records[owner], rr)
}

// hdr is the header of a record.
func hdr(name string, typ uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: fqdn(name), Rrtype: typ, Class: mdns.ClassINET, Ttl: ttl}
}

// MX adds an MX record: domain's mail goes to host at preference pref.
func (s *Server) MX(domain string, pref uint16, host string) {
	s.add(&mdns.MX{Hdr: hdr(domain, mdns.TypeMX), Preference: pref, Mx: fqdn(host)})
}

// NullMX adds the null MX of RFC 7505 (preference 0, host ".") to domain.
func (s *Server) NullMX(domain string) {
	s.add(&mdns.MX{Hdr: hdr(domain, mdns.TypeMX), Preference: 0, Mx: "."})
}

// A adds IPv4 addresses to host. An address that does not parse as IPv4
// fails the test.
func (s *Server) A(host string, ips ...string) {
	for _, ip := range ips {
		a := net.ParseIP(ip).To4()
		if a == nil {
			s.t.Helper()
			s.t.Fatalf("dnstest: A %s: %q is not an IPv4 address", host, ip)
			return
		}
		s.add(&mdns.A{Hdr: hdr(host, mdns.TypeA), A: a})
	}
}

// AAAA adds IPv6 addresses to host. An address that does not parse as IPv6
// fails the test.
func (s *Server) AAAA(host string, ips ...string) {
	for _, ip := range ips {
		a := net.ParseIP(ip)
		if a == nil || a.To4() != nil {
			s.t.Helper()
			s.t.Fatalf("dnstest: AAAA %s: %q is not an IPv6 address", host, ip)
			return
		}
		s.add(&mdns.AAAA{Hdr: hdr(host, mdns.TypeAAAA), AAAA: a})
	}
}

// CNAME makes name an alias of target.
func (s *Server) CNAME(name, target string) {
	s.add(&mdns.CNAME{Hdr: hdr(name, mdns.TypeCNAME), Target: fqdn(target)})
}

// RR adds any record in zone-file syntax ("_25._tcp.mx.example.org. 60 IN
// TLSA 3 1 1 ..." or "example.org. TXT \"v=spf1 -all\""), for the types
// that have no method of their own. A line that does not parse fails the
// test.
func (s *Server) RR(line string) {
	rr, err := mdns.NewRR(line)
	if err != nil || rr == nil {
		s.t.Helper()
		s.t.Fatalf("dnstest: RR %q: %v", line, err)
		return
	}
	s.add(rr)
}

// Fail makes every query for name answer rcode (mdns.RcodeServerFailure,
// 2, for SERVFAIL; 5 for REFUSED), whatever its records.
func (s *Server) Fail(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[fqdn(name)] = rcode
}

// Delay makes every answer for name wait d (over UDP and TCP).
func (s *Server) Delay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay[fqdn(name)] = d
}

// Truncate makes UDP answers for name empty with TC set, so that the
// client must ask again over TCP, where the answer is whole.
func (s *Server) Truncate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[fqdn(name)] = true
}

// Queries returns the questions received so far, over UDP and TCP, in
// order, as "TYPE name" ("MX example.org"): lower-case, no trailing dot.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// TCPQueries returns the questions that came over TCP, as Queries does.
func (s *Server) TCPQueries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tcpQs...)
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if out := s.answer(q, false); out != nil {
				s.udp.WriteTo(out, from)
			}
		}()
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// serveConn answers queries on one TCP connection until the client closes
// it, it idles for 10 s, or the server stops.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-s.done:
			c.Close()
		case <-stop:
		}
	}()
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var lb [2]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		out := s.answer(q, true)
		if out == nil {
			return
		}
		msg := make([]byte, 2+len(out))
		binary.BigEndian.PutUint16(msg, uint16(len(out)))
		copy(msg[2:], out)
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// answer builds the packed reply to a packed query, or nil to drop it.
func (s *Server) answer(raw []byte, tcp bool) []byte {
	q := new(mdns.Msg)
	if err := q.Unpack(raw); err != nil || q.Response || len(q.Question) != 1 {
		return nil
	}
	question := q.Question[0]
	name := fqdn(question.Name)
	typ := mdns.Type(question.Qtype).String()

	s.mu.Lock()
	entry := typ + " " + strings.TrimSuffix(name, ".")
	s.queries = append(s.queries, entry)
	if tcp {
		s.tcpQs = append(s.tcpQs, entry)
	}
	delay := s.delay[name]
	s.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-s.done:
			return nil
		}
	}

	m := new(mdns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true

	s.mu.Lock()
	rcode, failing := s.fail[name]
	truncate := s.truncate[name] && !tcp
	if failing {
		m.Rcode = rcode
	} else if question.Qclass == mdns.ClassINET {
		m.Answer, m.Rcode = s.lookup(name, question.Qtype)
	} else {
		m.Rcode = mdns.RcodeNotImplemented
	}
	s.mu.Unlock()

	size := mdns.MinMsgSize
	if tcp {
		size = mdns.MaxMsgSize
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(4096, false)
		if !tcp {
			size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		}
	}
	if truncate {
		m.Answer = nil
		m.Truncated = true
	}
	m.Truncate(size)
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

// lookup answers a question from the records, following CNAMEs (the
// chain stops where it would loop, as the client must notice). Called with
// s.mu held.
func (s *Server) lookup(name string, qtype uint16) ([]mdns.RR, int) {
	var answer []mdns.RR
	seen := map[string]bool{}
	for !seen[name] {
		seen[name] = true
		if !s.exists(name) {
			return answer, mdns.RcodeNameError
		}
		var cname *mdns.CNAME
		for _, rr := range s.records[name] {
			if rr.Header().Rrtype == qtype {
				answer = append(answer, mdns.Copy(rr))
			} else if c, ok := rr.(*mdns.CNAME); ok && cname == nil {
				cname = c
			}
		}
		if cname == nil || qtype == mdns.TypeCNAME {
			break
		}
		answer = append(answer, mdns.Copy(cname))
		name = cname.Target
	}
	return answer, mdns.RcodeSuccess
}

// exists tells whether name owns a record or has a name below it (an empty
// non-terminal, which exists too: RFC 8020). Called with s.mu held.
func (s *Server) exists(name string) bool {
	if len(s.records[name]) > 0 {
		return true
	}
	for owner := range s.records {
		if strings.HasSuffix(owner, "."+name) {
			return true
		}
	}
	return false
}
