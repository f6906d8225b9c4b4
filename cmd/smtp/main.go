// Command smtp delivers mail to other mail servers (DESIGN.md §4), and,
// run as the service named lmtp, to an LMTP mailbox store such as
// Dovecot. qmgr hands it a queue file descriptor, the sender, a next hop
// and up to smtp_destination_recipient_limit recipients over
// private/smtp; it answers with one status per recipient carrying the
// remote server's own reply.
//
// The next hop is a domain (MX lookup: preference order, random among
// equal preferences; null MX fails at once; no MX means the domain's own
// addresses), host or host:port (MX lookup on host), [host] or
// [host]:port (no MX lookup), and for LMTP unix:/path too. Every address of
// every MX is tried, IPv6 and IPv4, until one takes the mail: a
// connection failure or a 4xx/5xx greeting moves on to the next.
//
// Privilege: mail_owner, chrooted (services.conf) into the spool's empty
// directory, no capabilities. It
// reads the resolver configuration, the system's CA roots and
// smtp_sasl_password_maps at start, before the drop; afterwards it reads
// the message only through the descriptor it is handed.
//
// Limits and failure modes:
//   - DNS and every SMTP stage have deadlines (smtp_*_timeout);
//   - a temporary DNS failure, no reachable server, or a 4xx defers the
//     recipient; NXDOMAIN, a null MX or a 5xx bounces it; a message that
//     needs SMTPUTF8 and a server without it bounces (5.6.7);
//   - TLS per smtp_tls_security_level: may (opportunistic; a failed
//     handshake is retried in clear), encrypt, verify;
//   - connections are kept open for reuse by the next message to the same
//     next hop for connCacheTime, then closed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/internal/config"
	"postern/internal/dns"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/mime7bit"
	"postern/internal/queue"
	"postern/internal/service"
	"postern/internal/smtp"
)

const connCacheTime = 2 * time.Second

type agent struct {
	d        *service.Daemon
	lmtp     bool
	res      *dns.Resolver
	roots    *x509.CertPool
	level    string
	sasl     config.Maps
	saslOn   bool
	bind4    net.Addr
	bind6    net.Addr
	hostname string
	timeouts smtp.Timeouts

	mu    sync.Mutex
	cache map[string][]cached // next hop -> idle connections
}

type cached struct {
	c    *smtp.Client
	peer string
	at   time.Time
}

func main() {
	d := service.Init("smtp")
	d.LimitProcs()
	cfg := d.Config
	a := &agent{d: d, lmtp: d.Service.Name == "lmtp", hostname: cfg.Get("myhostname"),
		level: cfg.Get("smtp_tls_security_level"), saslOn: cfg.Bool("smtp_sasl_auth_enable"),
		cache: map[string][]cached{}}
	var err error
	if a.res, err = dns.New(cfg.List("dns_servers"), 0); err != nil {
		d.Fatalf("dns_servers: %v", err)
	}
	if len(a.res.Servers) == 0 {
		d.Fatalf("no DNS server: set dns_servers or list one in /etc/resolv.conf")
	}
	a.roots, _ = x509.SystemCertPool() // nil: verify fails, may/encrypt work
	if a.sasl, err = cfg.Maps("smtp_sasl_password_maps"); err != nil {
		d.Fatalf("smtp_sasl_password_maps: %v", err)
	}
	if s := cfg.Get("smtp_bind_address"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() {
			d.Fatalf("smtp_bind_address %q is not an IPv4 address", s)
		}
		a.bind4 = &net.TCPAddr{IP: ip.AsSlice()}
	}
	if s := cfg.Get("smtp_bind_address6"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is6() {
			d.Fatalf("smtp_bind_address6 %q is not an IPv6 address", s)
		}
		a.bind6 = &net.TCPAddr{IP: ip.AsSlice()}
	}
	std := 300 * time.Second
	a.timeouts = smtp.Timeouts{
		Connect: cfg.Duration("smtp_connect_timeout"), Greeting: cfg.Duration("smtp_helo_timeout"),
		Helo: cfg.Duration("smtp_helo_timeout"), StartTLS: std, Mail: std, Rcpt: std,
		Data: 120 * time.Second, DataBlock: 180 * time.Second, DataDone: cfg.Duration("smtp_data_done_timeout"),
		Rset: 20 * time.Second, Quit: 300 * time.Second,
	}
	d.DropEmpty()
	go a.expire()
	d.ServeRequests(d.Service.MaxProc, 1<<20, a.request)
	a.closeAll()
}

// status is the answer for one recipient.
type status struct{ status, dsn, reason, relay string }

func (a *agent) request(ctx context.Context, req *ipc.Msg, files []*os.File) *ipc.Msg {
	id := req.Get("queue_id")
	if req.Get("op") != "deliver" || !queue.ValidID(id) || len(files) != 1 {
		log.Warnf("bad request from qmgr: op=%q queue_id=%q files=%d", req.Get("op"), id, len(files))
		return nil
	}
	qf, err := queue.Open(files[0])
	if err != nil {
		log.Errorf("%s: queue file: %v", id, err)
		return nil
	}
	env := qf.Envelope()
	ix, rcpts, orcpts, notify := req.All("rcpt_index"), req.All("rcpt"), req.All("orcpt"), req.All("notify")
	if len(ix) != len(rcpts) || len(rcpts) == 0 {
		log.Warnf("%s: bad request from qmgr: %d indexes, %d recipients", id, len(ix), len(rcpts))
		return nil
	}
	e := &smtp.Envelope{From: env.Sender, Size: env.Size, Body8Bit: env.Body == "8BITMIME",
		SMTPUTF8: env.SMTPUTF8, Ret: env.Ret, EnvID: env.EnvID}
	for i, r := range rcpts {
		rc := smtp.Rcpt{Addr: r}
		if i < len(orcpts) {
			rc.ORcpt = orcpts[i]
		}
		if i < len(notify) && notify[i] != "" {
			rc.Notify = strings.Split(notify[i], ",")
		}
		e.Rcpts = append(e.Rcpts, rc)
	}
	if e.SMTPUTF8 && !needsUTF8(e, qf.Message()) {
		// Submitted with SMTPUTF8 but all ASCII where it matters: any
		// server can take it (RFC 6531 section 3.2).
		e.SMTPUTF8 = false
	}
	sts := a.deliver(ctx, id, req.Get("nexthop"), e, qf.Message())
	resp := ipc.NewMsg()
	for i := range rcpts {
		st := sts[i]
		resp.Add("rcpt_index", ix[i]).Add("status", st.status).Add("dsn", st.dsn).Add("reason", st.reason)
		word := map[string]string{"sent": "sent", "defer": "deferred", "bounce": "bounced"}[st.status]
		relay := st.relay
		if relay == "" {
			relay = "none"
		}
		log.Infof("%s: to=<%s>, relay=%s, delay=%.2f, dsn=%s, status=%s (%s)",
			id, rcpts[i], relay, time.Since(env.Arrival).Seconds(), st.dsn, word, log.Clean(st.reason))
	}
	return resp
}

// convertFor returns the envelope and message to send to c: as stored, or,
// for an 8-bit message and a server without 8BITMIME, converted to 7 bits
// (quoted-printable or base64 per MIME part, RFC 6152 section 3) while it
// is sent. A message whose 8-bit header fields cannot be encoded is an
// error: the caller bounces it.
func convertFor(c *smtp.Client, e *smtp.Envelope, msg *io.SectionReader) (*smtp.Envelope, io.Reader, error) {
	if _, ok := c.Extensions()["8BITMIME"]; ok || !e.Body8Bit {
		return e, io.NewSectionReader(msg, 0, msg.Size()), nil
	}
	// A dry run first: the conversion fails, if it does, on the header,
	// before anything is sent.
	if err := mime7bit.Convert(io.Discard, io.NewSectionReader(msg, 0, msg.Size())); err != nil {
		return nil, nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(mime7bit.Convert(pw, io.NewSectionReader(msg, 0, msg.Size())))
	}()
	cp := *e
	cp.Body8Bit = false
	cp.Size = 0 // grows with the encoding; SIZE= would understate it
	return &cp, pr, nil
}

// needsUTF8 reports whether the envelope or the header section has
// non-ASCII text, which only an SMTPUTF8 server may receive.
func needsUTF8(e *smtp.Envelope, msg *io.SectionReader) bool {
	if !ascii(e.From) {
		return true
	}
	for _, r := range e.Rcpts {
		if !ascii(r.Addr) {
			return true
		}
	}
	br := bufio.NewReader(io.LimitReader(io.NewSectionReader(msg, 0, msg.Size()), 1<<20))
	for {
		line, err := br.ReadSlice('\n')
		if len(bytes.TrimRight(line, "\r\n")) == 0 && err != bufio.ErrBufferFull {
			return false // end of the header section
		}
		for _, c := range line {
			if c >= 0x80 {
				return true
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return false
		}
	}
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func all(n int, st status) []status {
	out := make([]status, n)
	for i := range out {
		out[i] = st
	}
	return out
}

// target is one server to try.
type target struct {
	host string // name for TLS and logs
	addr netip.Addr
	port int
	unix string // LMTP over a Unix socket
}

// deliver sends one message to its next hop and says what became of each
// recipient.
func (a *agent) deliver(ctx context.Context, id, nexthop string, e *smtp.Envelope, msg *io.SectionReader) []status {
	n := len(e.Rcpts)
	targets, perm, err := a.targets(ctx, nexthop)
	if err != nil {
		if perm {
			return all(n, status{"bounce", "5.1.2", err.Error(), ""})
		}
		return all(n, status{"defer", "4.4.3", err.Error(), ""})
	}
	var lastErr error
	for _, t := range targets {
		c, peer, err := a.connect(ctx, nexthop, t)
		if err != nil {
			lastErr = err
			continue
		}
		send, body, perr := convertFor(c, e, msg)
		if perr != nil {
			a.release(nexthop, c, peer, true)
			return all(n, status{"bounce", "5.6.3", fmt.Sprintf("host %s does not take 8-bit mail (no 8BITMIME) and the message cannot be converted to 7 bits: %v", peer, perr), peer})
		}
		res, err := c.Send(ctx, send, body)
		if pc, ok := body.(io.Closer); ok {
			pc.Close() // ends the converter if Send stopped reading early
		}
		if errors.Is(err, smtp.ErrNoSMTPUTF8) {
			a.release(nexthop, c, peer, true)
			return all(n, status{"bounce", "5.6.7", "SMTPUTF8 is required, but was not offered by host " + peer, peer})
		}
		if err != nil && len(res) == 0 {
			c.Close()
			lastErr = err
			continue
		}
		out := make([]status, n)
		for i := range out {
			out[i] = status{"defer", "4.4.2", "lost connection with " + peer + " while sending message", peer}
		}
		for _, r := range res {
			if r.Rcpt < 0 || r.Rcpt >= n {
				continue
			}
			enh := r.Enhanced
			text := fmt.Sprintf("%d %s %s", r.Code, enh, r.Text)
			if enh == "" {
				enh = fmt.Sprintf("%d.0.0", r.Code/100)
				text = fmt.Sprintf("%d %s", r.Code, r.Text)
			}
			why := "host " + peer + " said: " + text + stage(r)
			if r.Local {
				// The client's own verdict (SIZE, SMTPUTF8, a lost
				// connection): not the server's words.
				why = r.Text
			}
			switch r.Code / 100 {
			case 2:
				out[r.Rcpt] = status{"sent", enh, text, peer}
			case 4:
				out[r.Rcpt] = status{"defer", enh, why, peer}
			default:
				out[r.Rcpt] = status{"bounce", enh, why, peer}
			}
		}
		a.release(nexthop, c, peer, err == nil)
		return out
	}
	// No server took the message: try again later, as Postfix does even
	// for a 5xx greeting or a refused AUTH (a misconfigured host is fixed
	// sooner than a sender re-sends); expiry bounces it in the end.
	why := "no server to deliver to"
	if lastErr != nil {
		why = lastErr.Error()
	}
	return all(n, status{"defer", "4.4.1", why, ""})
}

func stage(r smtp.Result) string {
	if r.Stage == "" {
		return ""
	}
	return " (in reply to " + r.Stage + " command)"
}

// targets resolves a next hop to the servers to try, in order.
func (a *agent) targets(ctx context.Context, nexthop string) ([]target, bool, error) {
	if a.lmtp && strings.HasPrefix(nexthop, "unix:") {
		p := strings.TrimPrefix(nexthop, "unix:")
		if !strings.HasPrefix(p, "/") {
			return nil, true, fmt.Errorf("LMTP next hop %q: the socket path must be absolute", nexthop)
		}
		return []target{{host: "localhost", unix: p}}, false, nil
	}
	host, port, noMX, err := parseNexthop(nexthop, a.lmtp)
	if err != nil {
		return nil, true, err
	}
	var hosts []string
	implicit := true
	if noMX {
		hosts = []string{host}
	} else {
		mxs, imp, err := a.res.LookupMX(ctx, host)
		if err != nil {
			if errors.Is(err, dns.ErrNullMX) {
				return nil, true, fmt.Errorf("domain %s does not accept mail (null MX)", host)
			}
			return nil, !dns.IsTemporary(err), err
		}
		implicit = imp
		for _, m := range mxs {
			hosts = append(hosts, m.Host)
		}
	}
	var out []target
	var lastErr error
	for _, h := range hosts {
		addrs, err := a.res.LookupHost(ctx, h)
		if err != nil {
			lastErr = err
			continue
		}
		for _, ad := range addrs {
			out = append(out, target{host: h, addr: ad, port: port})
		}
	}
	if len(out) == 0 {
		if lastErr == nil {
			lastErr = fmt.Errorf("no address for %s", host)
		}
		// No address at all for the domain itself: permanent; for MX
		// hosts, a temporary problem of theirs.
		return nil, implicit && !dns.IsTemporary(lastErr), lastErr
	}
	return out, false, nil
}

// parseNexthop splits "[host]:port", "host:port", "[host]", "host".
func parseNexthop(nh string, lmtp bool) (host string, port int, noMX bool, err error) {
	port = 25
	if lmtp {
		port = 24
		noMX = true
	}
	s := strings.TrimPrefix(nh, "inet:")
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, false, fmt.Errorf("next hop %q: missing ]", nh)
		}
		host, s = s[1:end], s[end+1:]
		noMX = true
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[:i], ":") {
		host, s = s[:i], s[i:]
	} else {
		host, s = s, ""
	}
	if s != "" {
		if !strings.HasPrefix(s, ":") {
			return "", 0, false, fmt.Errorf("next hop %q: bad port", nh)
		}
		p, err := strconv.Atoi(s[1:])
		if err != nil || p < 1 || p > 65535 {
			return "", 0, false, fmt.Errorf("next hop %q: bad port", nh)
		}
		port = p
	}
	if host == "" {
		return "", 0, false, fmt.Errorf("next hop %q: no host", nh)
	}
	return strings.ToLower(host), port, noMX, nil
}

// connect returns a client for t: a cached idle one to the same next hop
// when there is one, otherwise a new connection.
func (a *agent) connect(ctx context.Context, nexthop string, t target) (*smtp.Client, string, error) {
	if c, peer := a.cachedConn(nexthop); c != nil {
		return c, peer, nil
	}
	cfg := &smtp.ClientConfig{Hostname: a.hostname, LMTP: a.lmtp, Timeouts: a.timeouts}
	peer := t.host
	network, addr := "unix", t.unix
	var local net.Addr
	if t.unix == "" {
		network = "tcp"
		addr = netip.AddrPortFrom(t.addr, uint16(t.port)).String()
		peer = fmt.Sprintf("%s[%s]:%d", t.host, t.addr, t.port)
		if t.addr.Is4() || t.addr.Is4In6() {
			local = a.bind4
		} else {
			local = a.bind6
		}
	}
	cfg.PeerName = t.host
	switch a.level {
	case "none":
		cfg.TLSPolicy = smtp.TLSNone
	case "encrypt":
		cfg.TLSPolicy = smtp.TLSEncrypt
	case "verify":
		cfg.TLSPolicy = smtp.TLSVerify
	default:
		cfg.TLSPolicy = smtp.TLSMay
	}
	if t.unix != "" {
		cfg.TLSPolicy = smtp.TLSNone
	}
	cfg.TLS = &tls.Config{ServerName: t.host, RootCAs: a.roots, MinVersion: tls.VersionTLS12}
	if a.saslOn {
		if up, ok := a.saslFor(nexthop, t); ok {
			u, p, _ := strings.Cut(up, ":")
			cfg.Auth = &smtp.ClientAuth{User: u, Password: p}
		}
	}
	c, err := smtp.Dial(ctx, network, addr, local, cfg)
	if errors.Is(err, smtp.ErrTLSFailed) && cfg.TLSPolicy == smtp.TLSMay {
		// Opportunistic TLS that fails is not worth losing the mail over.
		log.Infof("TLS with %s failed; trying again without TLS", peer)
		cfg.TLSPolicy = smtp.TLSNone
		c, err = smtp.Dial(ctx, network, addr, local, cfg)
	}
	if err != nil {
		return nil, peer, err
	}
	if st := c.TLSState(); st != nil {
		log.Infof("Untrusted TLS connection established to %s: %s with cipher %s", peer, tlsVersion(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	return c, peer, nil
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}

// saslFor finds the smarthost credentials: [host]:port, [host], host,
// then the next hop as written.
func (a *agent) saslFor(nexthop string, t target) (string, bool) {
	keys := []string{nexthop, "[" + t.host + "]:" + strconv.Itoa(t.port), "[" + t.host + "]", t.host}
	for _, k := range keys {
		if v, ok := a.sasl.Lookup(strings.ToLower(k)); ok {
			return v, true
		}
	}
	return "", false
}

func (a *agent) cachedConn(nexthop string) (*smtp.Client, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.cache[nexthop]
	for len(l) > 0 {
		x := l[len(l)-1]
		l = l[:len(l)-1]
		a.cache[nexthop] = l
		if time.Since(x.at) < connCacheTime {
			return x.c, x.peer
		}
		go x.c.Quit()
	}
	return nil, ""
}

// release keeps a healthy connection for the next message to the same
// next hop (after RSET), or closes it.
func (a *agent) release(nexthop string, c *smtp.Client, peer string, healthy bool) {
	if !healthy || c.Reset() != nil {
		c.Close()
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache[nexthop]) >= 4 {
		go c.Quit()
		return
	}
	a.cache[nexthop] = append(a.cache[nexthop], cached{c, peer, time.Now()})
}

func (a *agent) expire() {
	t := time.NewTicker(connCacheTime)
	defer t.Stop()
	for {
		select {
		case <-a.d.Draining():
			return
		case <-t.C:
		}
		a.mu.Lock()
		for k, l := range a.cache {
			var keep []cached
			for _, x := range l {
				if time.Since(x.at) < connCacheTime {
					keep = append(keep, x)
				} else {
					go x.c.Quit()
				}
			}
			if len(keep) == 0 {
				delete(a.cache, k)
			} else {
				a.cache[k] = keep
			}
		}
		a.mu.Unlock()
	}
}

func (a *agent) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.cache {
		for _, x := range l {
			x.c.Quit()
		}
	}
	a.cache = map[string][]cached{}
}
