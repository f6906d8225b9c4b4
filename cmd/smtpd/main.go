// Command smtpd is Postern's SMTP server (DESIGN.md §4): it speaks SMTP
// with clients on the listening sockets master hands it and streams each
// accepted message to cleanup, which writes the queue file.
//
// Privilege: runs as mail_owner, chrooted into the queue directory, with
// no capabilities; it reads the user database, lookup tables and TLS
// keys at start, before the drop, and nothing on disk afterwards. It talks
// to private/cleanup (messages) and private/auth (logins, virtual users).
//
// Limits and failure modes:
//   - the protocol engine (internal/smtp) enforces line, command, size and
//     recipient limits, the per-read deadline (smtpd_timeout) and rejects
//     bare CR or LF in DATA;
//   - unknown recipients of local and virtual domains get 550 5.1.1 at RCPT
//     time; remote recipients are accepted as smtpd_relay_restrictions and
//     smtpd_recipient_restrictions say (Postfix's words: mynetworks, SASL
//     login, relay_domains), otherwise 554 5.7.1; a configuration whose
//     lists could never refuse a relay is refused at start;
//   - more than smtpd_client_connection_count_limit sessions from one
//     address get 421 4.7.0 at connect;
//   - the message goes to cleanup as it arrives; if cleanup is not there or
//     fails, the client gets a 451 4.3.0 and must retry: nothing is
//     acknowledged that is not on disk.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"postern/internal/address"
	"postern/internal/authclient"
	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/passwd"
	"postern/internal/route"
	"postern/internal/service"
	"postern/internal/smtp"
)

type server struct {
	cfg        *config.Config
	route      *route.Resolver
	mynets     []netip.Prefix
	srvCfg     smtp.ServerConfig
	ipcTimeout time.Duration
	perClient  int
	policy     *policy
	auth       *authclient.Client
	wrapTLS    bool // smtpd_tls_wrappermode: TLS from the first byte
	authHeader bool // smtpd_sasl_authenticated_header

	mu      sync.Mutex
	clients map[netip.Addr]int
	tlsConf *tls.Config
}

// login checks SMTP AUTH credentials with the auth daemon.
func (s *server) login(ctx context.Context, identity, user, password string) *smtp.Reply {
	_, ok, why, err := s.auth.Login("smtp", user, password, clientAddrFrom(ctx))
	if err != nil {
		log.Warnf("SASL authentication for %s: %v", log.Clean(user), err)
		return &smtp.Reply{Code: 454, Enhanced: "4.7.0", Text: "Temporary authentication failure"}
	}
	if !ok {
		text := "Error: authentication failed"
		if why != "" && !strings.Contains(text, why) {
			text += ": " + why
		}
		return &smtp.Reply{Code: 535, Enhanced: "5.7.8", Text: text}
	}
	return nil
}

type ctxKey struct{}

// clientAddrFrom recovers the client address that handle put in ctx, for
// auth's per-address rate limit.
func clientAddrFrom(ctx context.Context) string {
	if a, ok := ctx.Value(ctxKey{}).(netip.Addr); ok {
		return a.String()
	}
	return ""
}

func main() {
	d := service.Init("smtpd")
	d.LimitProcs()
	cfg := d.Config
	users, err := passwd.Load("/etc/passwd", "/etc/group")
	if err != nil {
		d.Fatalf("%v", err)
	}
	rt, err := route.New(cfg, users)
	if err != nil {
		d.Fatalf("%v", err)
	}
	nets, err := ParseNetworks(cfg.List("mynetworks"))
	if err != nil {
		d.Fatalf("mynetworks: %v", err)
	}
	s := &server{
		cfg: cfg, route: rt, mynets: nets,
		ipcTimeout: cfg.Duration("ipc_timeout"),
		perClient:  int(cfg.Int("smtpd_client_connection_count_limit")),
		clients:    map[netip.Addr]int{},
		srvCfg: smtp.ServerConfig{
			Hostname:       cfg.Get("myhostname"),
			Banner:         cfg.Get("smtpd_banner"),
			MaxSize:        cfg.Int("message_size_limit"),
			MaxRecipients:  int(cfg.Int("smtpd_recipient_limit")),
			Timeout:        cfg.Duration("smtpd_timeout"),
			SessionTimeout: cfg.Duration("daemon_timeout"),
			LineLimit:      int(cfg.Int("line_length_limit")),
			HardErrorLimit: int(cfg.Int("smtpd_hard_error_limit")),
			SoftErrorLimit: int(cfg.Int("smtpd_soft_error_limit")),
			SMTPUTF8:       cfg.Bool("smtputf8_enable"),
			// RFC 3461: qmgr honours RET, ENVID, NOTIFY and ORCPT.
			DSN: true,
		},
	}
	tc, err := loadTLS(cfg)
	if err != nil {
		d.Fatalf("%v", err)
	}
	loginMaps, err := cfg.Maps("smtpd_sender_login_maps")
	if err != nil {
		d.Fatalf("smtpd_sender_login_maps: %v", err)
	}
	s.policy = &policy{
		relay:     cfg.List("smtpd_relay_restrictions"),
		recipient: cfg.List("smtpd_recipient_restrictions"),
		sender:    cfg.List("smtpd_sender_restrictions"),
		loginMaps: loginMaps,
		route:     rt,
	}
	if !refusesRelay(s.policy.relay) && !refusesRelay(s.policy.recipient) {
		d.Fatalf("smtpd_relay_restrictions and smtpd_recipient_restrictions would let anyone relay: one of them must contain reject_unauth_destination or end in reject")
	}
	s.wrapTLS = cfg.Bool("smtpd_tls_wrappermode")
	s.authHeader = cfg.Bool("smtpd_sasl_authenticated_header")
	if tc != nil {
		// With wrapper mode the engine sees a *tls.Conn and offers no
		// STARTTLS; TLS stays set so that AUTH is offered.
		s.srvCfg.TLS = tc
		s.srvCfg.RequireTLS = cfg.Get("smtpd_tls_security_level") == "encrypt"
	}
	if len(cfg.List("auth_passwd_file")) > 0 {
		s.auth = &authclient.Client{Path: "private/auth", Timeout: 30 * time.Second}
		rt.SetUserDB(s.auth)
	}
	if cfg.Bool("smtpd_sasl_auth_enable") {
		if s.auth == nil {
			d.Fatalf("smtpd_sasl_auth_enable = yes needs auth_passwd_file (the auth daemon's credentials)")
		}
		s.srvCfg.Auth = s.login
		s.srvCfg.AuthNeedsTLS = cfg.Bool("smtpd_tls_auth_only")
	}
	s.tlsConf = tc
	d.Drop()
	limit := d.Service.MaxProc
	d.Serve(limit, s.handle)
}

// ParseNetworks reads mynetworks: CIDR prefixes, bare addresses, and
// "[ipv6]/len" as Postfix writes them.
func ParseNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range list {
		s := strings.Replace(strings.Replace(e, "[", "", 1), "]", "", 1)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or network", e)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (s *server) inMynetworks(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.mynets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *server) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	addr := ap.Addr().Unmap()
	cl := "unknown[" + addr.String() + "]"
	s.mu.Lock()
	s.clients[addr]++
	n := s.clients[addr]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.clients[addr]--; s.clients[addr] <= 0 {
			delete(s.clients, addr)
		}
		s.mu.Unlock()
	}()
	if s.perClient > 0 && n > s.perClient {
		log.Infof("connect from %s", cl)
		log.Warnf("Connection concurrency limit exceeded: %d from %s for service smtp", n, cl)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "421 4.7.0 %s Error: too many connections from %s\r\n", s.srvCfg.Hostname, addr)
		log.Infof("disconnect from %s", cl)
		return
	}
	h := &session{srv: s, client: cl, addr: addr, relayOK: s.inMynetworks(addr)}
	cfg := s.srvCfg
	cfg.Logf = func(format string, args ...any) { log.Infof(format, args...) }
	if s.wrapTLS {
		// submissions (RFC 8314): TLS from the first byte.
		c = tls.Server(c, s.tlsConf)
	}
	ctx = context.WithValue(ctx, ctxKey{}, addr)
	sess := smtp.NewSession(c, &cfg, h)
	h.sess = sess
	sess.SetClientName("unknown")
	// The engine logs connect, disconnect, lost connections and rejects.
	sess.Serve(ctx)
	h.Reset()
}

// session is one client's transaction state.
type session struct {
	srv     *server
	client  string
	addr    netip.Addr
	relayOK bool
	helo    string
	esmtp   bool

	sess     *smtp.Session
	saslUser string
	tlsInfo  string

	from   address.Address
	mail   smtp.MailParams
	rcpts  []address.Address
	rparam []smtp.RcptParams
}

func (h *session) Hello(name string, extended bool) *smtp.Reply {
	h.helo, h.esmtp = name, extended
	return nil
}

func (h *session) Mail(from address.Address, p smtp.MailParams) *smtp.Reply {
	h.from, h.mail = from, p
	h.rcpts, h.rparam = nil, nil
	return h.srv.policy.atMail(h.facts(nil))
}

// TLSStarted notes the TLS parameters for the Received header.
func (h *session) TLSStarted(st *tls.ConnectionState) {
	h.saslUser = "" // RFC 3207: the session starts over
	h.tlsInfo = fmt.Sprintf("%s with cipher %s", tlsVersion(st.Version), tls.CipherSuiteName(st.CipherSuite))
}

// Authenticated notes the SASL login name.
func (h *session) Authenticated(user string) { h.saslUser = user }

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}

func (h *session) facts(rcpt *address.Address) facts {
	return facts{mynetworks: h.relayOK, saslUser: h.saslUser, sender: h.from, rcpt: rcpt}
}

func (h *session) Rcpt(to address.Address, p smtp.RcptParams) *smtp.Reply {
	if to.Domain == "" && !strings.EqualFold(to.Local, "postmaster") {
		return &smtp.Reply{Code: 501, Enhanced: "5.1.3", Text: "Bad recipient address syntax"}
	}
	if to.Domain == "" {
		to.Domain = h.srv.route.MyHostname()
	}
	if r := h.srv.policy.atRcpt(h.facts(&to)); r != nil {
		return r
	}
	if h.srv.route.Classify(to) != route.Remote {
		ok, why, err := h.srv.route.Known(to)
		if err != nil {
			log.Warnf("recipient <%s>: %v", to, err)
			return &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: fmt.Sprintf("<%s>: Temporary lookup failure", to)}
		}
		if !ok {
			return &smtp.Reply{Code: 550, Enhanced: "5.1.1", Text: fmt.Sprintf("<%s>: Recipient address rejected: %s", to, why)}
		}
	}
	h.rcpts = append(h.rcpts, to)
	h.rparam = append(h.rparam, p)
	return nil
}

// proto names the protocol for Received, per RFC 3848 and RFC 6531.
func (h *session) proto() string {
	if !h.esmtp {
		return "SMTP"
	}
	p := "ESMTP"
	if h.mail.SMTPUTF8 {
		p = "UTF8SMTP"
	}
	if h.tlsInfo != "" {
		p += "S"
	}
	if h.saslUser != "" {
		p += "A"
	}
	return p
}

func (h *session) Reset() {
	h.from, h.mail, h.rcpts, h.rparam = address.Address{}, smtp.MailParams{}, nil, nil
}

func (h *session) Data() (smtp.MessageSink, *smtp.Reply) {
	m := ipc.NewMsg("op", "submit",
		"sender", h.from.String(),
		"client_name", "unknown",
		"client_addr", h.addr.String(),
		"helo", h.helo,
		"protocol", h.proto(),
		"body", h.mail.Body,
		"ret", h.mail.Ret,
		"envid", h.mail.EnvID)
	if h.mail.SMTPUTF8 {
		m.Add("smtputf8", "yes")
	}
	if h.saslUser != "" {
		m.Add("sasl_username", h.saslUser)
		if h.srv.authHeader {
			m.Add("received_auth", "yes")
		}
	}
	if h.tlsInfo != "" {
		m.Add("tls", h.tlsInfo)
	}
	m.AddInt("size", h.mail.Size)
	for i, r := range h.rcpts {
		m.Add("rcpt", r.String())
		m.Add("orcpt", h.rparam[i].ORcpt)
		m.Add("notify", strings.Join(h.rparam[i].Notify, ","))
	}
	c, r, err := h.submit(m)
	if err != nil && c == nil {
		log.Warnf("cleanup: %v", err)
		return nil, &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	if err != nil || r.Get("status") != "ok" {
		c.Close()
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			why = r.Get("reason")
		}
		log.Warnf("cleanup refused the message: %s", why)
		return nil, &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	id := r.Get("queue_id")
	if h.saslUser != "" {
		log.Infof("%s: client=%s, sasl_username=%s", id, h.client, h.saslUser)
	} else {
		log.Infof("%s: client=%s", id, h.client)
	}
	return &sink{c: c, w: c.StreamWriter(), id: id, timeout: h.srv.ipcTimeout}, nil
}

// submit sends the request to cleanup over a pooled or new connection
// and reads the answer. A pooled connection that fails before an answer
// is replaced by a new one once (nothing was queued: cleanup makes the
// queue file only when it answers). It returns a nil connection when
// none could be used at all.
func (h *session) submit(m *ipc.Msg) (*ipc.Conn, *ipc.Msg, error) {
	for {
		c, pooled, err := dialCleanup()
		if err != nil {
			return nil, nil, fmt.Errorf("connect to private/cleanup: %w", err)
		}
		err = c.Send(m)
		var r *ipc.Msg
		if err == nil {
			r, _, err = c.Recv(h.srv.ipcTimeout)
		}
		if err != nil && pooled {
			c.Close()
			continue
		}
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		return c, r, nil
	}
}

// sink streams the message to cleanup and turns cleanup's verdict into
// the final reply.
type sink struct {
	c *ipc.Conn
	w interface {
		Write([]byte) (int, error)
		Close() error
	}
	id      string
	timeout time.Duration
	failed  bool
}

func (k *sink) Write(p []byte) (int, error) {
	if k.failed {
		return len(p), nil
	}
	if _, err := k.w.Write(p); err != nil {
		// Keep reading the client's data; the verdict is given at the end.
		k.failed = true
		log.Warnf("%s: write to cleanup: %v", k.id, err)
	}
	return len(p), nil
}

func (k *sink) Commit() *smtp.Reply {
	keep := false
	defer func() {
		if keep {
			putCleanup(k.c)
		} else {
			k.c.Close()
		}
	}()
	if k.failed {
		return &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	if err := k.w.Close(); err != nil {
		log.Warnf("%s: end of message to cleanup: %v", k.id, err)
		return &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	r, _, err := k.c.Recv(k.timeout)
	if err != nil {
		log.Warnf("%s: no answer from cleanup: %v", k.id, err)
		return &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	switch r.Get("status") {
	case "ok":
		keep = true
		return &smtp.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as " + k.id}
	case "perm":
		return &smtp.Reply{Code: 554, Enhanced: orDefault(r.Get("dsn"), "5.6.0"), Text: r.Get("reason")}
	}
	return &smtp.Reply{Code: 451, Enhanced: orDefault(r.Get("dsn"), "4.3.0"), Text: orDefault(r.Get("reason"), "Error: queue file write error")}
}

func (k *sink) Abort(reason string) {
	k.c.AbortStream()
	k.c.Close()
	log.Infof("%s: message rejected: %s", k.id, reason)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
