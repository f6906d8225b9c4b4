package dnstest

import (
	"net"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// ask sends one question over UDP or TCP and returns the reply.
func ask(t *testing.T, s *Server, name string, qtype uint16, network string) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", mdns.Type(qtype), name, network, err)
	}
	return r
}

func TestAnswers(t *testing.T) {
	s := Start(t)
	if h, _, err := net.SplitHostPort(s.Addr); err != nil || h != "127.0.0.1" {
		t.Fatalf("Addr = %q", s.Addr)
	}
	s.MX("Example.ORG.", 10, "mx.example.org")
	s.A("mx.example.org", "192.0.2.1")
	s.AAAA("mx.example.org", "2001:db8::1")
	s.CNAME("alias.example.org", "mx.example.org")
	s.CNAME("dangling.example.org", "nowhere.example.org")
	s.NullMX("null.example.org")
	s.RR(`example.org. 60 IN TXT "v=spf1 -all"`)

	for _, tc := range []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
	}{
		{"example.org", mdns.TypeMX, mdns.RcodeSuccess, 1},
		{"example.org", mdns.TypeA, mdns.RcodeSuccess, 0},   // NODATA
		{"example.org", mdns.TypeTXT, mdns.RcodeSuccess, 1}, // RR
		{"mx.example.org", mdns.TypeA, mdns.RcodeSuccess, 1},
		{"mx.example.org", mdns.TypeAAAA, mdns.RcodeSuccess, 1},
		{"mx.example.org", mdns.TypeMX, mdns.RcodeSuccess, 0},
		{"alias.example.org", mdns.TypeA, mdns.RcodeSuccess, 2}, // CNAME + A
		{"dangling.example.org", mdns.TypeA, mdns.RcodeNameError, 1},
		{"null.example.org", mdns.TypeMX, mdns.RcodeSuccess, 1},
		{"org", mdns.TypeMX, mdns.RcodeSuccess, 0}, // empty non-terminal
		{"other.example.org", mdns.TypeMX, mdns.RcodeNameError, 0},
	} {
		for _, network := range []string{"udp", "tcp"} {
			r := ask(t, s, tc.name, tc.qtype, network)
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers {
				t.Errorf("%s %s over %s: rcode %d with %d answers, want %d with %d",
					mdns.Type(tc.qtype), tc.name, network, r.Rcode, len(r.Answer), tc.rcode, tc.answers)
			}
		}
	}
	q := s.Queries()
	if len(q) == 0 || q[0] != "MX example.org" {
		t.Errorf("Queries()[0] = %v, want MX example.org", q)
	}
	if tq := s.TCPQueries(); len(tq) != len(q)/2 {
		t.Errorf("%d TCP queries of %d, want half", len(tq), len(q))
	}
}

func TestMisbehaviour(t *testing.T) {
	s := Start(t)
	s.A("fail.test", "192.0.2.1")
	s.Fail("fail.test", mdns.RcodeServerFailure)
	s.A("slow.test", "192.0.2.2")
	s.Delay("slow.test", 300*time.Millisecond)
	s.A("big.test", "192.0.2.3")
	s.Truncate("big.test")

	if r := ask(t, s, "fail.test", mdns.TypeA, "udp"); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("Fail: rcode %d", r.Rcode)
	}
	start := time.Now()
	if r := ask(t, s, "slow.test", mdns.TypeA, "udp"); len(r.Answer) != 1 {
		t.Errorf("Delay: %d answers", len(r.Answer))
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Delay: answered after %v", d)
	}
	if r := ask(t, s, "big.test", mdns.TypeA, "udp"); !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("Truncate over UDP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := ask(t, s, "big.test", mdns.TypeA, "tcp"); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("Truncate over TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	if !slices.Contains(s.TCPQueries(), "A big.test") {
		t.Errorf("TCPQueries() = %v", s.TCPQueries())
	}
}

func TestLargeAnswerTruncatedOverUDP(t *testing.T) {
	s := Start(t)
	for i := range 300 {
		s.A("many.test", net.IPv4(10, 0, byte(i>>8), byte(i)).String())
	}
	if r := ask(t, s, "many.test", mdns.TypeA, "udp"); !r.Truncated {
		t.Errorf("300 A records over UDP: not truncated (%d answers)", len(r.Answer))
	}
	if r := ask(t, s, "many.test", mdns.TypeA, "tcp"); r.Truncated || len(r.Answer) != 300 {
		t.Errorf("over TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
}

// A delayed query must not hold up the end of the test.
func TestStopDuringDelay(t *testing.T) {
	var sent time.Time
	t.Run("inner", func(t *testing.T) {
		s := Start(t)
		s.A("slow.test", "192.0.2.1")
		s.Delay("slow.test", time.Hour)
		m := new(mdns.Msg)
		m.SetQuestion("slow.test.", mdns.TypeA)
		c, err := net.Dial("udp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wire, _ := m.Pack()
		c.Write(wire)
		deadline := time.Now().Add(2 * time.Second)
		for len(s.Queries()) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if len(s.Queries()) == 0 {
			t.Fatal("query never arrived")
		}
		sent = time.Now()
	})
	// inner's cleanup, which stops the server, has run by now.
	if d := time.Since(sent); d > time.Second {
		t.Errorf("stopping took %v", d)
	}
}
