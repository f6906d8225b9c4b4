package dns

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzReply feeds raw bytes to the resolver as a server's answer, over UDP
// and, when they carry the TC bit, over TCP. The query ID is patched into
// the bytes so that they get past the first check; after them the server
// sends a proper SERVFAIL, so that a reply the resolver rightly ignores
// does not cost a timeout. Whatever the bytes, a lookup must end without a
// panic, with either an *Error or a result that holds only valid names.
func FuzzReply(f *testing.F) {
	var current atomic.Pointer[[]byte]
	srv := startFake(f, func(q *mdns.Msg, tcp bool, from net.Addr) [][]byte {
		raw := append([]byte(nil), *current.Load()...)
		if len(raw) >= 2 {
			raw[0], raw[1] = byte(q.Id>>8), byte(q.Id)
		}
		if tcp {
			return [][]byte{raw}
		}
		return [][]byte{raw, reply(q, mdns.RcodeServerFailure)}
	})
	r := &Resolver{Servers: []string{srv.Addr}, Timeout: 2 * time.Second, Attempts: 1}

	seed := func(qtype uint16, rcode int, tc bool, rrs ...string) {
		q := new(mdns.Msg)
		q.SetQuestion("fuzz.test.", qtype)
		m := new(mdns.Msg)
		m.SetReply(q)
		m.Rcode = rcode
		m.Truncated = tc
		m.SetEdns0(4096, false)
		for _, s := range rrs {
			rr, err := mdns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		out, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(out)
	}
	seed(mdns.TypeMX, 0, false, "fuzz.test. 60 IN MX 10 mx.fuzz.test.", "fuzz.test. 60 IN MX 10 mx2.fuzz.test.")
	seed(mdns.TypeMX, 0, false, "fuzz.test. 60 IN MX 0 .")
	seed(mdns.TypeMX, 0, false, "fuzz.test. 60 IN CNAME fuzz.test.")
	seed(mdns.TypeMX, 0, false, "fuzz.test. 60 IN CNAME a.fuzz.test.", "a.fuzz.test. 60 IN MX 5 mx.fuzz.test.")
	seed(mdns.TypeMX, 0, true)
	seed(mdns.TypeMX, mdns.RcodeNameError, false)
	seed(mdns.TypeMX, mdns.RcodeFormatError, false)
	seed(mdns.TypeA, 0, false, "fuzz.test. 60 IN A 192.0.2.1", "fuzz.test. 60 IN A 192.0.2.1")
	seed(mdns.TypeAAAA, 0, false, "fuzz.test. 60 IN AAAA 2001:db8::1")
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0x81, 0x80})

	f.Fuzz(func(t *testing.T, raw []byte) {
		current.Store(&raw)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mxs, _, err := r.LookupMX(ctx, "fuzz.test")
		checkResult(t, err)
		for _, mx := range mxs {
			if h, err := canonical(mx.Host); err != nil || h != mx.Host {
				t.Errorf("MX host %q is not canonical", mx.Host)
			}
		}
		addrs, err := r.LookupHost(ctx, "fuzz.test")
		checkResult(t, err)
		for _, a := range addrs {
			if !a.IsValid() || a.Zone() != "" {
				t.Errorf("address %v", a)
			}
		}
		if err == nil && len(addrs) == 0 {
			t.Error("no address and no error")
		}
	})
}

// checkResult checks that a lookup's error is one of ours.
func checkResult(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("error %v (%T) is not an *Error", err, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("lookup ran into the test's deadline: %v", err)
	}
}

// FuzzName checks the name checks that every lookup begins with: no panic,
// and what they accept is canonical and stays so.
func FuzzName(f *testing.F) {
	for _, s := range []string{"example.org", "Example.ORG.", "", ".", "a..b", "bücher.example",
		"_mta-sts.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]", "fe80::1%eth0", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := canonical(s); err == nil {
			if n2, err := canonical(n); err != nil || n2 != n || len(n) > 253 {
				t.Errorf("canonical(%q) = %q, then %q, %v", s, n, n2, err)
			}
		} else if !errors.Is(err, ErrInvalidName) {
			t.Errorf("canonical(%q): %v", s, err)
		}
		if a, ok, err := literal(s); ok && err == nil && (!a.IsValid() || a.Zone() != "") {
			t.Errorf("literal(%q) = %v", s, a)
		}
	})
}

// FuzzResolvConf checks that any resolv.conf gives a usable configuration.
func FuzzResolvConf(f *testing.F) {
	f.Add("nameserver 192.0.2.1\nnameserver ::1\noptions timeout:3 attempts:2\n")
	f.Add("nameserver fe80::1%eth0\noptions timeout:999999999999 attempts:-1 timeout:\n")
	f.Add("options timeout:9223372037 attempts:9223372037")
	f.Fuzz(func(t *testing.T, s string) {
		c := parseConf(strings.NewReader(s))
		if len(c.servers) > MaxServers || c.timeout <= 0 || c.timeout > maxTimeout || c.attempts < 1 || c.attempts > maxAttempts {
			t.Errorf("parseConf(%q) = %+v", s, c)
		}
		for _, srv := range c.servers {
			if _, err := serverAddr(srv); err != nil {
				t.Errorf("server %q: %v", srv, err)
			}
		}
	})
}
