// Command smtpd is Postern's SMTP server (DESIGN.md §4): it speaks SMTP
// with clients on the listening sockets master hands it and streams each
// accepted message to cleanup, which writes the queue file.
//
// Privilege: runs as mail_owner, chrooted into the queue directory, with
// no capabilities; it reads the user database and lookup tables at start,
// before the drop, and nothing on disk afterwards. Its only way out is
// private/cleanup.
//
// Limits and failure modes:
//   - the protocol engine (internal/smtp) enforces line, command, size and
//     recipient limits, the per-read deadline (smtpd_timeout) and rejects
//     bare CR or LF in DATA;
//   - unknown recipients of local and virtual domains get 550 5.1.1 at RCPT
//     time; remote recipients are accepted only from mynetworks (554 5.7.1);
//   - more than smtpd_client_connection_count_limit sessions from one
//     address get 421 4.7.0 at connect;
//   - the message goes to cleanup as it arrives; if cleanup is not there or
//     fails, the client gets a 451 4.3.0 and must retry: nothing is
//     acknowledged that is not on disk.
package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"postern/internal/address"
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

	mu      sync.Mutex
	clients map[netip.Addr]int
}

func main() {
	d := service.Init("smtpd")
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
		},
	}
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
	sess := smtp.NewSession(c, &cfg, h)
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
	return nil
}

func (h *session) Rcpt(to address.Address, p smtp.RcptParams) *smtp.Reply {
	if to.Domain == "" && !strings.EqualFold(to.Local, "postmaster") {
		return &smtp.Reply{Code: 501, Enhanced: "5.1.3", Text: "Bad recipient address syntax"}
	}
	if to.Domain == "" {
		to.Domain = h.srv.route.MyHostname()
	}
	switch h.srv.route.Classify(to) {
	case route.Remote:
		if !h.relayOK {
			return &smtp.Reply{Code: 554, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Relay access denied", to)}
		}
	default:
		if ok, why := h.srv.route.Known(to); !ok {
			return &smtp.Reply{Code: 550, Enhanced: "5.1.1", Text: fmt.Sprintf("<%s>: Recipient address rejected: %s", to, why)}
		}
	}
	h.rcpts = append(h.rcpts, to)
	h.rparam = append(h.rparam, p)
	return nil
}

func (h *session) proto() string {
	switch {
	case h.mail.SMTPUTF8:
		return "UTF8SMTP"
	case h.esmtp:
		return "ESMTP"
	}
	return "SMTP"
}

func (h *session) Reset() {
	h.from, h.mail, h.rcpts, h.rparam = address.Address{}, smtp.MailParams{}, nil, nil
}

func (h *session) Data() (smtp.MessageSink, *smtp.Reply) {
	c, err := ipc.Dial("private/cleanup", 10*time.Second)
	if err != nil {
		log.Warnf("connect to private/cleanup: %v", err)
		return nil, &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
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
	m.AddInt("size", h.mail.Size)
	for i, r := range h.rcpts {
		m.Add("rcpt", r.String())
		m.Add("orcpt", h.rparam[i].ORcpt)
		m.Add("notify", strings.Join(h.rparam[i].Notify, ","))
	}
	if err := c.Send(m); err != nil {
		c.Close()
		log.Warnf("send to cleanup: %v", err)
		return nil, &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	r, _, err := c.Recv(h.srv.ipcTimeout)
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
	log.Infof("%s: client=%s", id, h.client)
	return &sink{c: c, w: c.StreamWriter(), id: id, timeout: h.srv.ipcTimeout}, nil
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
	defer k.c.Close()
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
