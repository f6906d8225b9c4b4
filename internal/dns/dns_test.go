package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"postern/internal/dnstest"
)

// resolver returns a resolver that asks only the given servers, quickly.
func resolver(t *testing.T, servers ...string) *Resolver {
	t.Helper()
	r, err := New(servers, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMXPreferenceOrder(t *testing.T) {
	s := dnstest.Start(t)
	s.MX("example.org", 30, "mx3.example.org")
	s.MX("example.org", 10, "MX1.Example.Org.")
	s.MX("example.org", 20, "mx2.example.org")
	s.MX("example.org", 40, "mx1.example.org") // a duplicate at a worse preference
	r := resolver(t, s.Addr)

	mxs, implicit, err := r.LookupMX(ctx(t), "EXAMPLE.org.")
	if err != nil || implicit {
		t.Fatalf("LookupMX: %v, implicit %v", err, implicit)
	}
	want := []MX{{"mx1.example.org", 10}, {"mx2.example.org", 20}, {"mx3.example.org", 30}}
	if !slices.Equal(mxs, want) {
		t.Errorf("got %v, want %v", mxs, want)
	}
	if q := s.Queries(); !slices.Equal(q, []string{"MX example.org"}) {
		t.Errorf("queries %v", q)
	}
}

func TestMXEqualPreferencesShuffled(t *testing.T) {
	s := dnstest.Start(t)
	s.MX("example.org", 10, "a.example.org")
	s.MX("example.org", 10, "b.example.org")
	s.MX("example.org", 5, "first.example.org")
	s.MX("example.org", 20, "last.example.org")
	r := resolver(t, s.Addr)
	seen := map[string]int{}
	for range 100 {
		mxs, _, err := r.LookupMX(ctx(t), "example.org")
		if err != nil {
			t.Fatal(err)
		}
		if len(mxs) != 4 || mxs[0].Host != "first.example.org" || mxs[3].Host != "last.example.org" {
			t.Fatalf("order broken: %v", mxs)
		}
		seen[mxs[1].Host]++
	}
	if seen["a.example.org"] == 0 || seen["b.example.org"] == 0 {
		t.Errorf("equal preferences not shuffled over 100 runs: %v", seen)
	}
}

func TestNullMX(t *testing.T) {
	s := dnstest.Start(t)
	s.NullMX("nomail.example.org")
	s.A("nomail.example.org", "192.0.2.1")
	// A "." among real MXs is only skipped.
	s.NullMX("mixed.example.org")
	s.MX("mixed.example.org", 10, "mx.example.org")
	r := resolver(t, s.Addr)

	_, _, err := r.LookupMX(ctx(t), "nomail.example.org")
	if !errors.Is(err, ErrNullMX) || IsTemporary(err) {
		t.Errorf("null MX: %v (temporary %v)", err, IsTemporary(err))
	}
	mxs, _, err := r.LookupMX(ctx(t), "mixed.example.org")
	if err != nil || !slices.Equal(mxs, []MX{{"mx.example.org", 10}}) {
		t.Errorf("mixed: %v, %v", mxs, err)
	}
}

func TestImplicitMX(t *testing.T) {
	s := dnstest.Start(t)
	s.A("example.org", "192.0.2.7")
	r := resolver(t, s.Addr)
	mxs, implicit, err := r.LookupMX(ctx(t), "Example.org")
	if err != nil || !implicit || !slices.Equal(mxs, []MX{{"example.org", 0}}) {
		t.Fatalf("got %v implicit %v err %v", mxs, implicit, err)
	}
	addrs, err := r.LookupHost(ctx(t), mxs[0].Host)
	if err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("192.0.2.7")}) {
		t.Errorf("LookupHost: %v, %v", addrs, err)
	}
}

func TestNXDOMAIN(t *testing.T) {
	s := dnstest.Start(t)
	s.A("exists.example.org", "192.0.2.1")
	s.CNAME("dangling.example.org", "nowhere.example.org")
	r := resolver(t, s.Addr)
	for _, name := range []string{"nosuch.example.org", "dangling.example.org"} {
		_, _, err := r.LookupMX(ctx(t), name)
		if !errors.Is(err, ErrNoSuchDomain) || IsTemporary(err) {
			t.Errorf("MX %s: %v", name, err)
		}
		_, err = r.LookupHost(ctx(t), name)
		if !errors.Is(err, ErrNoAddress) || !errors.Is(err, ErrNoSuchDomain) || IsTemporary(err) {
			t.Errorf("host %s: %v", name, err)
		}
	}
	// example.org owns nothing but has a name below it: NODATA, so an
	// implicit MX, whose host has no address.
	mxs, implicit, err := r.LookupMX(ctx(t), "example.org")
	if err != nil || !implicit || len(mxs) != 1 {
		t.Errorf("empty non-terminal: %v %v %v", mxs, implicit, err)
	}
	_, err = r.LookupHost(ctx(t), "example.org")
	if !errors.Is(err, ErrNoAddress) || errors.Is(err, ErrNoSuchDomain) || IsTemporary(err) {
		t.Errorf("NODATA host: %v", err)
	}
}

func TestServfailIsTemporary(t *testing.T) {
	s := dnstest.Start(t)
	s.MX("broken.example.org", 10, "mx.example.org")
	s.Fail("broken.example.org", mdns.RcodeServerFailure)
	s.Fail("refused.example.org", mdns.RcodeRefused)
	r := resolver(t, s.Addr)
	r.Attempts = 3
	_, _, err := r.LookupMX(ctx(t), "broken.example.org")
	if !IsTemporary(err) || !errors.Is(err, ErrServerFailure) || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("SERVFAIL: %v", err)
	}
	if n := len(s.Queries()); n != 3 {
		t.Errorf("%d queries for 3 attempts", n)
	}
	_, err = r.LookupHost(ctx(t), "refused.example.org")
	if !IsTemporary(err) || !strings.Contains(err.Error(), "REFUSED") {
		t.Errorf("REFUSED: %v", err)
	}
}

func TestTimeoutIsTemporary(t *testing.T) {
	s := dnstest.Start(t)
	s.MX("slow.example.org", 10, "mx.example.org")
	s.Delay("slow.example.org", 5*time.Second)
	r, err := New([]string{s.Addr}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = r.LookupMX(ctx(t), "slow.example.org")
	if !IsTemporary(err) || !errors.Is(err, ErrServerFailure) {
		t.Errorf("timeout: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("2 attempts of 100ms took %v", d)
	}

	// The context's deadline ends the lookup before Timeout does.
	r.Timeout = 5 * time.Second
	c, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, _, err = r.LookupMX(c, "slow.example.org")
	if !IsTemporary(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("context deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("context deadline of 150ms took %v", d)
	}

	// So does cancelling it.
	c, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = r.LookupHost(c, "slow.example.org")
	if !IsTemporary(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel after 100ms took %v", d)
	}
}

func TestCNAMEChain(t *testing.T) {
	s := dnstest.Start(t)
	s.CNAME("alias.example.org", "mid.example.net")
	s.CNAME("mid.example.net", "real.example.com")
	s.MX("real.example.com", 10, "mx.example.com")
	s.CNAME("mx.example.com", "host.example.com")
	s.AAAA("host.example.com", "2001:db8::25")
	s.A("host.example.com", "192.0.2.25")
	r := resolver(t, s.Addr)

	mxs, implicit, err := r.LookupMX(ctx(t), "alias.example.org")
	if err != nil || implicit || !slices.Equal(mxs, []MX{{"mx.example.com", 10}}) {
		t.Fatalf("MX through CNAMEs: %v %v %v", mxs, implicit, err)
	}
	addrs, err := r.LookupHost(ctx(t), "mx.example.com")
	want := []netip.Addr{netip.MustParseAddr("2001:db8::25"), netip.MustParseAddr("192.0.2.25")}
	if err != nil || !slices.Equal(addrs, want) {
		t.Errorf("host through CNAME: %v %v", addrs, err)
	}
	// The chain came whole in the answers: one query per lookup.
	if n := len(s.Queries()); n != 3 {
		t.Errorf("%d queries: %v", n, s.Queries())
	}

	// Eight links are followed, nine are not.
	for i := range 9 {
		s.CNAME(fmt.Sprintf("c%d.example.org", i), fmt.Sprintf("c%d.example.org", i+1))
	}
	s.A("c9.example.org", "192.0.2.9")
	if _, err := r.LookupHost(ctx(t), "c1.example.org"); err != nil {
		t.Errorf("8 CNAMEs: %v", err)
	}
	_, err = r.LookupHost(ctx(t), "c0.example.org")
	if !errors.Is(err, ErrCNAMELoop) || !IsTemporary(err) {
		t.Errorf("9 CNAMEs: %v", err)
	}

	s.CNAME("loop1.example.org", "loop2.example.org")
	s.CNAME("loop2.example.org", "loop1.example.org")
	_, _, err = r.LookupMX(ctx(t), "loop1.example.org")
	if !errors.Is(err, ErrCNAMELoop) || !IsTemporary(err) {
		t.Errorf("loop: %v", err)
	}
	s.CNAME("self.example.org", "self.example.org")
	_, err = r.LookupHost(ctx(t), "self.example.org")
	if !errors.Is(err, ErrCNAMELoop) {
		t.Errorf("self loop: %v", err)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	s := dnstest.Start(t)
	s.MX("big.example.org", 10, "mx.example.org")
	s.Truncate("big.example.org")
	for i := range 400 {
		s.A("many.example.org", fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	r := resolver(t, s.Addr)
	mxs, _, err := r.LookupMX(ctx(t), "big.example.org")
	if err != nil || !slices.Equal(mxs, []MX{{"mx.example.org", 10}}) {
		t.Errorf("truncated MX: %v %v", mxs, err)
	}
	if !slices.Contains(s.TCPQueries(), "MX big.example.org") {
		t.Errorf("no TCP query: %v", s.TCPQueries())
	}
	// 400 A records do not fit 4096 bytes: the server truncates by itself.
	addrs, err := r.LookupHost(ctx(t), "many.example.org")
	if err != nil || len(addrs) != 400 {
		t.Errorf("400 addresses: got %d, %v", len(addrs), err)
	}
	if !slices.Contains(s.TCPQueries(), "A many.example.org") {
		t.Errorf("no TCP query: %v", s.TCPQueries())
	}
}

func TestAddresses(t *testing.T) {
	s := dnstest.Start(t)
	s.AAAA("v6only.example.org", "2001:db8::1", "2001:db8::2")
	s.A("v4only.example.org", "192.0.2.4")
	s.A("both.example.org", "192.0.2.1", "192.0.2.1", "192.0.2.2")
	s.AAAA("both.example.org", "2001:db8::1")
	s.MX("nohost.example.org", 10, "mx.example.org")
	s.A("halfbroken.example.org", "192.0.2.3")
	s.Fail("halfbroken.example.org", mdns.RcodeServerFailure)
	r := resolver(t, s.Addr)
	for _, tc := range []struct {
		host string
		want string
	}{
		{"v6only.example.org", "2001:db8::1 2001:db8::2"},
		{"v4only.example.org.", "192.0.2.4"},
		{"BOTH.example.org", "2001:db8::1 192.0.2.1 192.0.2.2"},
		{"192.0.2.99", "192.0.2.99"},
		{"2001:db8::99", "2001:db8::99"},
		{"[192.0.2.98]", "192.0.2.98"},
		{"[IPv6:2001:db8::98]", "2001:db8::98"},
	} {
		addrs, err := r.LookupHost(ctx(t), tc.host)
		if err != nil {
			t.Errorf("%s: %v", tc.host, err)
			continue
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %v, want %s", tc.host, got, tc.want)
		}
	}
	_, err := r.LookupHost(ctx(t), "nohost.example.org")
	if !errors.Is(err, ErrNoAddress) || IsTemporary(err) {
		t.Errorf("NODATA for both: %v", err)
	}
	_, err = r.LookupHost(ctx(t), "halfbroken.example.org")
	if !IsTemporary(err) {
		t.Errorf("SERVFAIL for both: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	r := &Resolver{Servers: []string{"127.0.0.1:1"}} // never asked
	long := strings.Repeat("a", 64) + ".org"
	longer := strings.Repeat("abcdefghi.", 26) + "org"
	for _, name := range []string{"", ".", "a..b", "bücher.example", "exa mple.org", long, longer, "a\x00.org", "[foo]", "[fe80::1%eth0]", "fe80::1%eth0"} {
		_, _, err := r.LookupMX(ctx(t), name)
		if !errors.Is(err, ErrInvalidName) || IsTemporary(err) {
			t.Errorf("MX %q: %v", name, err)
		}
		_, err = r.LookupHost(ctx(t), name)
		if !errors.Is(err, ErrInvalidName) || IsTemporary(err) {
			t.Errorf("host %q: %v", name, err)
		}
	}
	_, _, err := r.LookupMX(ctx(t), "bücher.example")
	if err == nil || !strings.Contains(err.Error(), "IDNA") {
		t.Errorf("non-ASCII error does not say why: %v", err)
	}
}

func TestServersTriedInOrder(t *testing.T) {
	good := dnstest.Start(t)
	good.MX("example.org", 10, "mx.example.org")
	bad := dnstest.Start(t)
	bad.Fail("example.org", mdns.RcodeServerFailure)
	// A UDP port nobody listens on: the kernel answers port unreachable.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()

	r := resolver(t, deadAddr, bad.Addr, good.Addr)
	mxs, _, err := r.LookupMX(ctx(t), "example.org")
	if err != nil || len(mxs) != 1 {
		t.Fatalf("%v %v", mxs, err)
	}
	if len(bad.Queries()) != 1 || len(good.Queries()) != 1 {
		t.Errorf("bad asked %d times, good %d", len(bad.Queries()), len(good.Queries()))
	}
}

// fake is a DNS server whose replies a test writes byte by byte: handle gets
// each query and returns the datagrams (or TCP messages) to send back.
type fake struct {
	Addr   string
	handle func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte
	udp    net.PacketConn
}

func startFake(t testing.TB, handle func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte) *fake {
	t.Helper()
	f := &fake{handle: handle}
	var tl net.Listener
	var err error
	for range 20 {
		f.udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tl, err = net.Listen("tcp", f.udp.LocalAddr().String())
		if err == nil {
			break
		}
		f.udp.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Addr = f.udp.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := f.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(mdns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			for _, out := range f.handle(q, false, from) {
				f.udp.WriteTo(out, from)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var lb [2]byte
			if _, err := io.ReadFull(c, lb[:]); err == nil {
				buf := make([]byte, binary.BigEndian.Uint16(lb[:]))
				if _, err := io.ReadFull(c, buf); err == nil {
					q := new(mdns.Msg)
					if q.Unpack(buf) == nil {
						for _, out := range f.handle(q, true, c.RemoteAddr()) {
							binary.BigEndian.PutUint16(lb[:], uint16(len(out)))
							c.Write(append(lb[:], out...))
						}
					}
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		f.udp.Close()
		tl.Close()
		wg.Wait()
	})
	return f
}

// reply builds a packed answer to q with the given records and rcode.
func reply(q *mdns.Msg, rcode int, rrs ...string) []byte {
	m := new(mdns.Msg)
	m.SetReply(q)
	m.Rcode = rcode
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	out, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return out
}

func TestSpoofedAnswersIgnored(t *testing.T) {
	spoofer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	f := startFake(t, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		good := reply(q, 0, q.Question[0].Name+" 60 IN MX 10 good.example.org.")
		evil := q.Copy()
		evil.Id++
		wrongID := reply(evil, 0, q.Question[0].Name+" 60 IN MX 10 evil.example.org.")
		other := q.Copy()
		other.Question[0].Name = "other.example.org."
		wrongName := reply(other, 0, "other.example.org. 60 IN MX 10 evil.example.org.")
		other = q.Copy()
		other.Question[0].Qtype = mdns.TypeA
		wrongType := reply(other, 0, q.Question[0].Name+" 60 IN A 192.0.2.66")
		notResponse := reply(q, 0, q.Question[0].Name+" 60 IN MX 10 evil.example.org.")
		notResponse[2] &^= 0x80
		noQuestion := q.Copy()
		noQuestion.Question = nil
		noQuestion.Response = true
		noQ, _ := noQuestion.Pack()
		// From another port of the same host: the connected socket must
		// not even see it.
		spoofer.WriteTo(reply(q, 0, q.Question[0].Name+" 60 IN MX 10 evil.example.org."), from)
		time.Sleep(10 * time.Millisecond)
		return [][]byte{wrongID, wrongName, wrongType, notResponse, noQ, []byte("garbage"), good}
	})
	r := resolver(t, f.Addr)
	mxs, _, err := r.LookupMX(ctx(t), "example.org")
	if err != nil || !slices.Equal(mxs, []MX{{"good.example.org", 10}}) {
		t.Errorf("got %v %v", mxs, err)
	}
}

func TestGarbageServer(t *testing.T) {
	f := startFake(t, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		// The right ID, then nothing that parses.
		g := []byte{byte(q.Id >> 8), byte(q.Id), 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 0xff, 0xff, 0xff}
		return [][]byte{g, []byte{1, 2, 3}}
	})
	r, err := New([]string{f.Addr}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	r.Attempts = 1
	_, _, err = r.LookupMX(ctx(t), "example.org")
	if !IsTemporary(err) || !strings.Contains(err.Error(), "ignored 2 bad answers") {
		t.Errorf("garbage: %v", err)
	}
}

// A server that includes only the CNAME, not its target's records, makes
// the resolver ask for the target; a loop spread over several answers is
// caught too.
func TestCNAMETargetAskedAgain(t *testing.T) {
	f := startFake(t, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		name := q.Question[0].Name
		switch name {
		case "alias.example.org.":
			return [][]byte{reply(q, 0, "alias.example.org. 60 IN CNAME Target.Example.NET.")}
		case "target.example.net.":
			if q.Question[0].Qtype == mdns.TypeMX {
				return [][]byte{reply(q, 0, "target.example.net. 60 IN MX 5 mx.example.net.")}
			}
			return [][]byte{reply(q, 0, "target.example.net. 60 IN A 192.0.2.5")}
		case "a.example.org.":
			return [][]byte{reply(q, 0, "a.example.org. 60 IN CNAME b.example.org.")}
		case "b.example.org.":
			return [][]byte{reply(q, 0, "b.example.org. 60 IN CNAME a.example.org.")}
		case "stray.example.org.":
			// Records of other owners and classes are not the answer.
			return [][]byte{reply(q, 0, "elsewhere.example.org. 60 IN MX 1 evil.example.org.",
				"stray.example.org. 60 CH MX 1 evil.example.org.")}
		}
		return [][]byte{reply(q, mdns.RcodeNameError)}
	})
	r := resolver(t, f.Addr)
	mxs, _, err := r.LookupMX(ctx(t), "alias.example.org")
	if err != nil || !slices.Equal(mxs, []MX{{"mx.example.net", 5}}) {
		t.Errorf("MX: %v %v", mxs, err)
	}
	addrs, err := r.LookupHost(ctx(t), "alias.example.org")
	if err != nil || len(addrs) != 1 || addrs[0].String() != "192.0.2.5" {
		t.Errorf("host: %v %v", addrs, err)
	}
	_, _, err = r.LookupMX(ctx(t), "a.example.org")
	if !errors.Is(err, ErrCNAMELoop) {
		t.Errorf("loop over answers: %v", err)
	}
	mxs, implicit, err := r.LookupMX(ctx(t), "stray.example.org")
	if err != nil || !implicit || mxs[0].Host != "stray.example.org" {
		t.Errorf("stray records: %v %v %v", mxs, implicit, err)
	}
}

// A UDP answer cut off in the middle of a record, TC set, is asked again
// over TCP even though it does not parse.
func TestCutOffAnswerRetriedOverTCP(t *testing.T) {
	f := startFake(t, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		full := reply(q, 0, q.Question[0].Name+" 60 IN MX 10 mx.example.org.")
		if tcp {
			return [][]byte{full}
		}
		cut := append([]byte(nil), full[:len(full)-5]...)
		cut[2] |= 0x02
		return [][]byte{cut}
	})
	mxs, _, err := resolver(t, f.Addr).LookupMX(ctx(t), "example.org")
	if err != nil || !slices.Equal(mxs, []MX{{"mx.example.org", 10}}) {
		t.Errorf("%v %v", mxs, err)
	}
}

func TestFORMERRRetriedWithoutEDNS(t *testing.T) {
	f := startFake(t, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		if q.IsEdns0() != nil {
			m := new(mdns.Msg)
			m.SetRcodeFormatError(q)
			m.Question = nil // as some old servers do
			out, _ := m.Pack()
			return [][]byte{out}
		}
		return [][]byte{reply(q, 0, q.Question[0].Name+" 60 IN MX 10 old.example.org.")}
	})
	mxs, _, err := resolver(t, f.Addr).LookupMX(ctx(t), "example.org")
	if err != nil || !slices.Equal(mxs, []MX{{"old.example.org", 10}}) {
		t.Errorf("%v %v", mxs, err)
	}
}

func TestBadMXHosts(t *testing.T) {
	f := startFake(t, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		return [][]byte{reply(q, 0, `example.org. 60 IN MX 10 bad\032host.example.org.`)}
	})
	_, _, err := resolver(t, f.Addr).LookupMX(ctx(t), "example.org")
	if !errors.Is(err, ErrNoMXHost) || IsTemporary(err) {
		t.Errorf("%v", err)
	}
}

func TestNew(t *testing.T) {
	r, err := New([]string{"192.0.2.1", "", "192.0.2.2:5353, 2001:db8::1 [2001:db8::2] [2001:db8::3]:54"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1:53", "192.0.2.2:5353", "[2001:db8::1]:53", "[2001:db8::2]:53", "[2001:db8::3]:54"}
	if !slices.Equal(r.Servers, want) || r.Timeout != DefaultTimeout || r.Attempts != DefaultAttempts {
		t.Errorf("got %+v", r)
	}
	for _, bad := range []string{"example.org", "example.org:53", "192.0.2.1:0", "192.0.2.1:x", "[192.0.2.1]", "[::1"} {
		if _, err := New([]string{bad}, 0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := New(nil, -time.Second); err == nil {
		t.Error("negative timeout accepted")
	}
	if _, err := New(slices.Repeat([]string{"192.0.2.1"}, MaxServers+1), 0); err == nil {
		t.Error("too many servers accepted")
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	old := resolvConf
	t.Cleanup(func() { resolvConf = old })

	resolvConf = filepath.Join(dir, "resolv.conf")
	conf := "# comment\n; comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver   2001:db8::53\n" +
		"nameserver bogus\nnameserver\noptions ndots:2 timeout:3 attempts:9 rotate\n"
	if err := os.WriteFile(resolvConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New([]string{"", " "}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Servers, []string{"192.0.2.53:53", "[2001:db8::53]:53"}) ||
		r.Timeout != 3*time.Second || r.Attempts != maxAttempts {
		t.Errorf("got %+v", r)
	}
	r, _ = New(nil, time.Second)
	if r.Timeout != time.Second {
		t.Errorf("explicit timeout overridden: %v", r.Timeout)
	}

	resolvConf = filepath.Join(dir, "missing")
	r, _ = New(nil, 0)
	if !slices.Equal(r.Servers, []string{"127.0.0.1:53"}) || r.Timeout != DefaultTimeout {
		t.Errorf("no resolv.conf: %+v", r)
	}

	// A zero Resolver reads resolv.conf at each lookup.
	s := dnstest.Start(t)
	s.MX("example.org", 10, "mx.example.org")
	host, port, _ := net.SplitHostPort(s.Addr)
	_ = port
	resolvConf = filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolvConf, []byte("nameserver "+host+"\n"), 0o644)
	var zero Resolver
	zero.Servers = nil
	servers, timeout, attempts, err := zero.config()
	if err != nil || !slices.Equal(servers, []string{host + ":53"}) || timeout != DefaultTimeout || attempts != DefaultAttempts {
		t.Errorf("zero Resolver config: %v %v %v %v", servers, timeout, attempts, err)
	}
	// A server set by hand without a port gets :53; a bad one fails the
	// lookup, temporarily (the local setup is wrong, not the domain).
	hand := Resolver{Servers: []string{host}}
	if servers, _, _, _ := hand.config(); !slices.Equal(servers, []string{host + ":53"}) {
		t.Errorf("hand-set server: %v", servers)
	}
	hand.Servers = []string{"not an address"}
	if _, _, err := hand.LookupMX(ctx(t), "example.org"); !IsTemporary(err) {
		t.Errorf("bad hand-set server: %v", err)
	}
}

func TestIsTemporary(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{ErrNoSuchDomain, false},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("wrapped: %w", ErrServerFailure), true},
		{&Error{Err: ErrServerFailure, Temporary: true}, true},
		{fmt.Errorf("deliver: %w", &Error{Err: ErrNullMX}), false},
	} {
		if got := IsTemporary(tc.err); got != tc.want {
			t.Errorf("IsTemporary(%v) = %v", tc.err, got)
		}
	}
}
