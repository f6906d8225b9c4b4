package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// MX is one mail exchanger of a domain.
type MX struct {
	// Host is the exchanger's name, lower-case, without a trailing dot.
	Host string
	// Pref is its preference; lower is tried first.
	Pref uint16
}

// LookupMX returns the MX hosts of domain in preference order, equal
// preferences shuffled (RFC 5321 section 5.1), a host named twice kept once
// at its best preference. A null MX (RFC 7505: the only MX record names
// ".") gives ErrNullMX; a "." among other MX records is skipped, as is a
// record whose host cannot be a host name. A domain with no MX records
// (NODATA) has an implicit MX: [{Host: domain, Pref: 0}] with implicit true,
// whose addresses the caller looks up with LookupHost. NXDOMAIN gives
// ErrNoSuchDomain; SERVFAIL, timeouts and the like a temporary error.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (mxs []MX, implicit bool, err error) {
	name, err := canonical(domain)
	if err != nil {
		return nil, false, &Error{Type: "MX", Name: domain, Err: err}
	}
	rrs, err := r.resolve(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, false, lookupError("MX", name, err)
	}
	if len(rrs) == 0 {
		return []MX{{Host: name, Pref: 0}}, true, nil
	}
	nulls, bad := 0, 0
	for _, rr := range rrs {
		mx, ok := rr.(*mdns.MX)
		if !ok {
			bad++
			continue
		}
		if mx.Mx == "." {
			nulls++
			continue
		}
		host, err := canonical(mx.Mx)
		if err != nil {
			bad++
			continue
		}
		if i := slices.IndexFunc(mxs, func(m MX) bool { return m.Host == host }); i >= 0 {
			mxs[i].Pref = min(mxs[i].Pref, mx.Preference)
			continue
		}
		mxs = append(mxs, MX{Host: host, Pref: mx.Preference})
	}
	if len(mxs) == 0 {
		if nulls > 0 {
			return nil, false, &Error{Type: "MX", Name: name, Err: ErrNullMX}
		}
		return nil, false, &Error{Type: "MX", Name: name, Err: fmt.Errorf("%w (%d records)", ErrNoMXHost, bad)}
	}
	// Shuffle first, then a stable sort: equal preferences keep the random
	// order, spreading load as RFC 5321 asks.
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return cmp.Compare(a.Pref, b.Pref) })
	return mxs, false, nil
}

// LookupHost returns the IPv6 and then the IPv4 addresses of host (AAAA and
// A are asked at the same time, CNAMEs followed), without duplicates, in the
// order the server gave them. A literal IP address ("192.0.2.1",
// "2001:db8::1", or in brackets as in an address literal, "[192.0.2.1]",
// "[IPv6:2001:db8::1]") is returned as is. When one family fails
// temporarily and the other has addresses, those addresses are returned.
// Neither AAAA nor A, for NODATA or NXDOMAIN, gives ErrNoAddress (and for
// NXDOMAIN ErrNoSuchDomain as well).
//
// Addresses are not filtered: refusing loopback, private or unspecified
// addresses of a remote MX is the caller's policy.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok, err := literal(host); ok {
		if err != nil {
			return nil, &Error{Type: "A/AAAA", Name: host, Err: err}
		}
		return []netip.Addr{a}, nil
	}
	name, err := canonical(host)
	if err != nil {
		return nil, &Error{Type: "A/AAAA", Name: host, Err: err}
	}
	type result struct {
		rrs []mdns.RR
		err error
	}
	var v6, v4 result
	done := make(chan struct{})
	go func() {
		defer close(done)
		v6.rrs, v6.err = r.resolve(ctx, name, mdns.TypeAAAA)
	}()
	v4.rrs, v4.err = r.resolve(ctx, name, mdns.TypeA)
	<-done

	var addrs []netip.Addr
	seen := make(map[netip.Addr]bool)
	for _, rr := range append(v6.rrs, v4.rrs...) {
		var a netip.Addr
		var ok bool
		switch rr := rr.(type) {
		case *mdns.AAAA:
			a, ok = netip.AddrFromSlice(rr.AAAA)
			ok = ok && a.Is6()
		case *mdns.A:
			a, ok = netip.AddrFromSlice(rr.A)
			a = a.Unmap()
			ok = ok && a.Is4()
		}
		if ok && !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	// Nothing: a temporary failure of either family wins, since the
	// missing addresses may be there when it is over.
	for _, res := range []struct {
		typ string
		result
	}{{"AAAA", v6}, {"A", v4}} {
		if res.err != nil && isTemporaryCause(res.err) {
			return nil, lookupError(res.typ, name, res.err)
		}
	}
	cause := v6.err
	if cause == nil {
		cause = v4.err
	}
	if cause != nil {
		return nil, &Error{Type: "A/AAAA", Name: name, Err: fmt.Errorf("%w: %w", ErrNoAddress, cause)}
	}
	return nil, &Error{Type: "A/AAAA", Name: name, Err: ErrNoAddress}
}

// resolve asks for qtype records of name (canonical, without the trailing
// dot) and follows CNAMEs: first the chain inside the answer, then, when the
// answer stops at a name whose records it does not hold, a new query for
// that name. It returns the records of qtype owned by the last name of the
// chain (none for NODATA); an error names that last name when it is not
// name itself. NXDOMAIN, which RFC 6604 says is about the last name of the
// chain, gives ErrNoSuchDomain.
func (r *Resolver) resolve(ctx context.Context, name string, qtype uint16) ([]mdns.RR, error) {
	seen := map[string]bool{name: true}
	cur := name
	links := 0
	// fail names the end of the chain when it is not the name asked for.
	fail := func(err error) ([]mdns.RR, error) {
		if cur != name && !errors.Is(err, ErrCNAMELoop) {
			err = fmt.Errorf("%w (for %s, the CNAME target)", err, cur)
		}
		return nil, err
	}
	for {
		m, err := r.query(ctx, cur+".", qtype)
		if err != nil {
			return fail(err)
		}
		asked := cur
		for {
			target, ok, err := cnameOf(m.Answer, cur)
			if err != nil {
				return fail(err)
			}
			if !ok {
				break
			}
			links++
			if links > MaxCNAMEs {
				return fail(fmt.Errorf("%w: more than %d CNAMEs", ErrCNAMELoop, MaxCNAMEs))
			}
			if seen[target] {
				return fail(fmt.Errorf("%w: %s comes back to %s", ErrCNAMELoop, cur, target))
			}
			seen[target] = true
			cur = target
		}
		if m.Rcode == mdns.RcodeNameError {
			return fail(ErrNoSuchDomain)
		}
		var rrs []mdns.RR
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Rrtype == qtype && h.Class == mdns.ClassINET && sameName(h.Name, cur) {
				rrs = append(rrs, rr)
			}
		}
		if len(rrs) > 0 || cur == asked {
			return rrs, nil
		}
		// The chain ends at a name whose records the server left out (it
		// is not authoritative for it, or the target has none): ask.
	}
}

// cnameOf returns the target of the CNAME that name has in the answer.
func cnameOf(answer []mdns.RR, name string) (string, bool, error) {
	for _, rr := range answer {
		c, ok := rr.(*mdns.CNAME)
		if !ok || c.Hdr.Class != mdns.ClassINET || !sameName(c.Hdr.Name, name) {
			continue
		}
		target, err := canonical(c.Target)
		if err != nil {
			return "", false, fmt.Errorf("CNAME of %s: %w", name, err)
		}
		return target, true, nil
	}
	return "", false, nil
}

// sameName compares a name from the wire (any case, a trailing dot) with a
// canonical one.
func sameName(wire, name string) bool {
	return strings.EqualFold(strings.TrimSuffix(wire, "."), name)
}

// lookupError wraps the failure of a lookup, deciding whether it is
// temporary.
func lookupError(typ, name string, err error) error {
	return &Error{Type: typ, Name: name, Err: err, Temporary: isTemporaryCause(err)}
}

// isTemporaryCause tells whether a lookup may succeed later.
func isTemporaryCause(err error) bool {
	return errors.Is(err, ErrServerFailure) || errors.Is(err, ErrCNAMELoop) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// canonical checks a domain name and returns it lower-cased without a
// trailing dot. Only what can name a host is accepted: ASCII letters,
// digits, hyphens and underscores (the last for names such as
// _mta-sts.example.org), in labels of 1 to 63 bytes, 253 bytes in all.
func canonical(name string) (string, error) {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return "", fmt.Errorf("%w: %q is not ASCII; convert it to A-labels (IDNA) first", ErrInvalidName, name)
		}
	}
	if len(name) > 253 {
		return "", fmt.Errorf("%w: %d bytes, longer than 253", ErrInvalidName, len(name))
	}
	name = strings.ToLower(name)
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return "", fmt.Errorf("%w: %q has an empty label", ErrInvalidName, name)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("%w: %q has a label longer than 63 bytes", ErrInvalidName, name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%w: %q has the character %q", ErrInvalidName, name, c)
			}
		}
	}
	return name, nil
}

// literal recognises an IP address, bare or as an address literal in
// brackets. ok tells that host is meant as one; err that it is a bad one.
func literal(host string) (netip.Addr, bool, error) {
	s := host
	bracketed := strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")
	if bracketed {
		s = s[1 : len(s)-1]
		if len(s) >= 5 && strings.EqualFold(s[:5], "IPv6:") {
			s = s[5:]
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if bracketed {
			return netip.Addr{}, true, fmt.Errorf("%w: %q is not an IP address literal", ErrInvalidName, host)
		}
		return netip.Addr{}, false, nil
	}
	if a.Zone() != "" {
		return netip.Addr{}, true, fmt.Errorf("%w: %q has a zone", ErrInvalidName, host)
	}
	return a, true, nil
}
