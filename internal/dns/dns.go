// Package dns is the resolver that remote delivery uses: MX lookups with the
// rules of RFC 5321 section 5.1 and RFC 7505, and address lookups (AAAA and A)
// for the hosts they name. It is a stub resolver: it asks the recursive
// servers of /etc/resolv.conf (or those it is given) and trusts their answers
// no further than the checks below. The wire format is github.com/miekg/dns
// (v1); nothing of that library shows in this package's API, so that a move
// to its v2 stays inside this directory.
//
// What it does:
//
//   - Queries go over UDP with EDNS0 and a 4096-byte buffer, from a fresh
//     socket (a random source port) with a random query ID. An answer whose
//     ID, question name, type or class differs from the query, or that is
//     not a response, or that does not parse, is ignored and the resolver
//     goes on waiting for the real one until the deadline: a stray or spoofed
//     datagram cannot end a lookup. An answer with the TC bit is asked again
//     over TCP. A server that answers FORMERR to EDNS0 is asked once more
//     without it.
//   - Every server is tried in order, and the whole list Attempts times. Each
//     query waits at most Timeout, and never past the deadline of the
//     caller's context.
//   - CNAMEs are followed: the chain in the answer, and a fresh query for
//     its target when the server did not include the target's records; at
//     most MaxCNAMEs links, and a chain that comes back to a name it has
//     already passed is a loop.
//   - Names are lower-cased and a trailing dot is accepted. Only ASCII
//     names are accepted (A-labels): a name with any other byte gives
//     ErrInvalidName, since IDNA conversion belongs to whoever parsed the
//     address.
//
// Limits: a reply is at most 65535 bytes (the most that DNS can carry over
// either transport); a resolv.conf is read up to 64 KiB and its first
// MaxServers name servers. No cache: the recursive server has one. No
// DNSSEC validation and no AD bit (DANE will need both, from a trusted
// local validating resolver).
//
// Failure modes, as the caller (the smtp daemon) must treat them:
//
//   - ErrNoSuchDomain (NXDOMAIN): permanent.
//   - ErrNullMX: the domain accepts no mail (RFC 7505); permanent.
//   - ErrNoAddress from LookupHost: the host has neither AAAA nor A. For an
//     implicit MX this is permanent; for one MX host of several it means
//     "try the next MX".
//   - ErrInvalidName: the name cannot be a host name; permanent.
//   - ErrCNAMELoop: a CNAME loop or a chain longer than MaxCNAMEs. This is
//     a misconfiguration of the remote domain that its administrators will
//     likely fix, so it is reported as temporary (the message is deferred,
//     not bounced), as is any other failure to get an answer: SERVFAIL,
//     REFUSED, timeouts, unreachable servers, garbage. IsTemporary tells.
//
// A Resolver must be built (New) before the calling daemon chroots: New
// reads /etc/resolv.conf. A Resolver whose Servers list is empty reads it
// again at each lookup, which inside a chroot falls back to 127.0.0.1:53.
package dns

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults and limits of a Resolver.
const (
	// DefaultTimeout is how long one query to one server waits when neither
	// New's caller nor resolv.conf says otherwise (as resolv.conf(5)).
	DefaultTimeout = 5 * time.Second
	// DefaultAttempts is how many times the list of servers is tried.
	DefaultAttempts = 2
	// MaxCNAMEs is the longest chain of CNAMEs that is followed.
	MaxCNAMEs = 8
	// MaxServers is how many name servers a Resolver uses at most.
	MaxServers = 8
	// maxAttempts caps the attempts from resolv.conf, as glibc does.
	maxAttempts = 5
	// maxTimeout caps the timeout from resolv.conf, as glibc does.
	maxTimeout = 30 * time.Second
	// maxConfSize bounds how much of resolv.conf is read.
	maxConfSize = 64 << 10
)

// resolvConf is the file that New reads; tests point it elsewhere.
var resolvConf = "/etc/resolv.conf"

// Resolver asks recursive name servers. Its zero value is usable: it reads
// /etc/resolv.conf at each lookup. Its fields must not be changed while a
// lookup is running.
type Resolver struct {
	// Servers are the name servers as host:port, the host an IP address
	// (an IPv6 one in brackets). Empty means those of /etc/resolv.conf.
	Servers []string
	// Timeout is how long one query to one server may take; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many rounds over Servers a query makes; 0 means
	// DefaultAttempts.
	Attempts int
}

// New returns a Resolver that asks servers, each an IP address with an
// optional port ("192.0.2.1", "192.0.2.1:5353", "2001:db8::1",
// "[2001:db8::1]:53"). Empty strings are skipped, and an entry may hold
// several servers separated by commas or white space (as a dns_servers
// setting does). With no server at all, the nameserver lines of
// /etc/resolv.conf are used, or 127.0.0.1:53 when it has none or cannot be
// read. timeout is the time one query to one server may take; 0 means the
// "options timeout:" of resolv.conf or DefaultTimeout.
func New(servers []string, timeout time.Duration) (*Resolver, error) {
	if timeout < 0 {
		return nil, fmt.Errorf("dns: negative timeout %v", timeout)
	}
	r := &Resolver{Timeout: timeout, Attempts: DefaultAttempts}
	for _, entry := range servers {
		for _, s := range strings.FieldsFunc(entry, func(c rune) bool {
			return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'
		}) {
			hp, err := serverAddr(s)
			if err != nil {
				return nil, fmt.Errorf("dns: server %q: %w", s, err)
			}
			r.Servers = append(r.Servers, hp)
		}
	}
	if len(r.Servers) > MaxServers {
		return nil, fmt.Errorf("dns: %d servers given, at most %d are allowed", len(r.Servers), MaxServers)
	}
	if len(r.Servers) > 0 {
		if r.Timeout == 0 {
			r.Timeout = DefaultTimeout
		}
		return r, nil
	}
	conf := readConf(resolvConf)
	r.Servers = conf.servers
	if r.Timeout == 0 {
		r.Timeout = conf.timeout
	}
	r.Attempts = conf.attempts
	return r, nil
}

// serverAddr checks a server given as IP or IP:port and returns it as
// host:port. A host name is refused: finding the resolver must not need a
// resolver.
func serverAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() {
			return "", fmt.Errorf("not an IPv6 address in brackets")
		}
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("not an IP address or IP:port")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address", host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("bad port %q", port)
	}
	return netip.AddrPortFrom(a, uint16(p)).String(), nil
}

// conf is what resolv.conf says, defaults filled in.
type conf struct {
	servers  []string
	timeout  time.Duration
	attempts int
}

// readConf reads a resolv.conf. It never fails: a missing or unreadable file
// gives the defaults, as the C library does, and so does a bad line.
func readConf(path string) conf {
	c := conf{timeout: DefaultTimeout, attempts: DefaultAttempts}
	f, err := os.Open(path)
	if err == nil {
		c = parseConf(io.LimitReader(f, maxConfSize))
		f.Close()
	}
	if len(c.servers) == 0 {
		c.servers = []string{"127.0.0.1:53"}
	}
	return c
}

// parseConf reads the nameserver and options lines of a resolv.conf; the
// rest (search, domain, sortlist) means nothing to a mail server, which
// looks up only fully qualified names.
func parseConf(rd io.Reader) conf {
	c := conf{timeout: DefaultTimeout, attempts: DefaultAttempts}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), maxConfSize)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			// resolv.conf's servers are plain addresses (a zone allowed),
			// always on port 53.
			a, err := netip.ParseAddr(f[1])
			if err != nil || len(c.servers) >= MaxServers {
				continue
			}
			c.servers = append(c.servers, netip.AddrPortFrom(a, 53).String())
		case "options":
			for _, o := range f[1:] {
				name, val, ok := strings.Cut(o, ":")
				if !ok {
					continue
				}
				n, err := strconv.Atoi(val)
				if err != nil || n < 1 {
					continue
				}
				switch name {
				case "timeout":
					c.timeout = time.Duration(min(n, int(maxTimeout/time.Second))) * time.Second
				case "attempts":
					c.attempts = min(n, maxAttempts)
				}
			}
		}
	}
	return c
}

// config returns the servers, timeout and attempts that a lookup uses. A
// server that a caller put into Servers without going through New is
// checked here, and given port 53 when it has none.
func (r *Resolver) config() ([]string, time.Duration, int, error) {
	servers, timeout, attempts := r.Servers, r.Timeout, r.Attempts
	if len(servers) == 0 {
		c := readConf(resolvConf)
		servers = c.servers
		if timeout <= 0 {
			timeout = c.timeout
		}
		if attempts <= 0 {
			attempts = c.attempts
		}
	}
	if len(servers) > MaxServers {
		servers = servers[:MaxServers]
	}
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		hp, err := serverAddr(s)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("server %q: %w", s, err)
		}
		out = append(out, hp)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	return out, timeout, attempts, nil
}
