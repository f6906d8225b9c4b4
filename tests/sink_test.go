package tests

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/internal/address"
	"postern/internal/smtp"
)

// Sink is a "remote" SMTP server for remote delivery tests, made of
// Postern's own protocol engine, on a loopback address of its own. It
// records every message and can be told to refuse.
type Sink struct {
	Addr string // ip:port
	ln   net.Listener

	mu       sync.Mutex
	Messages []SinkMessage
	// RcptReply, when set, answers RCPT for an address (e.g. a 550).
	// Change it while mail flows only through SetRcptReply.
	RcptReply map[string]*smtp.Reply
	// GreetDelay stalls the greeting (a greeting timeout test).
	cfg smtp.ServerConfig

	// Options beyond ServerConfig, set with their setters (they are read
	// under mu when a connection or command arrives).
	greeting     *smtp.Reply // the only reply of every session (e.g. 421)
	hide8BitMIME bool        // a 7-bit server: no 8BITMIME in the EHLO reply
	requireAuth  bool        // MAIL before AUTH gets 530 5.7.0
	conns, mails int         // connections accepted, MAIL commands seen
}

// SinkMessage is one message the sink accepted.
type SinkMessage struct {
	From  string
	Rcpts []string
	Data  string
	Body  string // BODY= parameter
	TLS   bool
	Auth  string // the user that authenticated, "" for none
	UTF8  bool   // the SMTPUTF8 parameter
}

// StartSink listens on ip:port (port 25 for MX tests) until the test ends.
func StartSink(t testing.TB, ip string, port int, mod func(*smtp.ServerConfig)) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s := &Sink{Addr: ln.Addr().String(), ln: ln, RcptReply: map[string]*smtp.Reply{}}
	s.cfg = smtp.ServerConfig{Hostname: "sink.test", Timeout: 30 * time.Second, MaxSize: 50 << 20, SMTPUTF8: true, DSN: true}
	if mod != nil {
		mod(&s.cfg)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			greet, hide := s.greeting, s.hide8BitMIME
			s.mu.Unlock()
			if greet != nil {
				// A server that refuses at the greeting says its one
				// line and hangs up (RFC 5321 3.1).
				c.SetDeadline(time.Now().Add(5 * time.Second))
				text := greet.Text
				if greet.Enhanced != "" {
					text = greet.Enhanced + " " + text
				}
				fmt.Fprintf(c, "%d %s\r\n", greet.Code, text)
				c.Close()
				continue
			}
			if hide {
				c = &no8BitConn{Conn: c}
			}
			go func() {
				cfg := s.cfg
				h := &sinkHandler{s: s}
				sess := smtp.NewSession(c, &cfg, h)
				h.sess = sess
				sess.Serve(context.Background())
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// SetRcptReply makes the sink answer RCPT for addr with r from now on;
// nil accepts addr again.
func (s *Sink) SetRcptReply(addr string, r *smtp.Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r == nil {
		delete(s.RcptReply, strings.ToLower(addr))
		return
	}
	s.RcptReply[strings.ToLower(addr)] = r
}

// SetGreeting makes the sink answer every new connection with r alone and
// hang up: a 421 for a server that is busy or shutting down. nil restores
// the normal 220.
func (s *Sink) SetGreeting(r *smtp.Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.greeting = r
}

// SetHide8BitMIME makes new connections leave 8BITMIME out of the EHLO
// reply: a server that only takes 7-bit data (RFC 6152). The engine would
// still take BODY=8BITMIME; SinkMessage.Body shows whether it was sent.
// Only for connections without TLS (the filter sees the cleartext).
func (s *Sink) SetHide8BitMIME(hide bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hide8BitMIME = hide
}

// SetRequireAuth makes MAIL before a successful AUTH fail with 530 5.7.0,
// as a smarthost does for clients outside its networks.
func (s *Sink) SetRequireAuth(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requireAuth = on
}

// Stats returns how many connections the sink accepted and how many MAIL
// commands reached its handler (accepted or not).
func (s *Sink) Stats() (conns, mails int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, s.mails
}

// no8BitConn removes the "250-8BITMIME" line from what the engine writes.
// The engine never puts 8BITMIME last in its EHLO reply (ENHANCEDSTATUSCODES
// follows), and writes a reply in one buffered write, so the line is
// always whole in one Write.
type no8BitConn struct{ net.Conn }

func (c *no8BitConn) Write(p []byte) (int, error) {
	q := bytes.ReplaceAll(p, []byte("250-8BITMIME\r\n"), nil)
	if _, err := c.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Wait waits until the sink holds n messages.
func (s *Sink) Wait(n int, d time.Duration) []SinkMessage {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		m := append([]SinkMessage(nil), s.Messages...)
		s.mu.Unlock()
		if len(m) >= n || time.Now().After(end) {
			return m
		}
	}
}

type sinkHandler struct {
	s     *Sink
	sess  *smtp.Session
	cur   SinkMessage
	body  bytes.Buffer
	tlsOn bool
}

func (h *sinkHandler) Hello(string, bool) *smtp.Reply { return nil }
func (h *sinkHandler) Mail(from address.Address, p smtp.MailParams) *smtp.Reply {
	h.s.mu.Lock()
	h.s.mails++
	needAuth := h.s.requireAuth
	h.s.mu.Unlock()
	user := h.sess.AuthUser()
	if needAuth && user == "" {
		return &smtp.Reply{Code: 530, Enhanced: "5.7.0", Text: "Authentication required"}
	}
	h.cur = SinkMessage{From: from.String(), Body: p.Body, Auth: user, UTF8: p.SMTPUTF8}
	return nil
}
func (h *sinkHandler) Rcpt(to address.Address, p smtp.RcptParams) *smtp.Reply {
	h.s.mu.Lock()
	r := h.s.RcptReply[strings.ToLower(to.String())]
	h.s.mu.Unlock()
	if r != nil {
		return r
	}
	h.cur.Rcpts = append(h.cur.Rcpts, to.String())
	return nil
}
func (h *sinkHandler) TLSStarted(*tls.ConnectionState) { h.tlsOn = true }
func (h *sinkHandler) Data() (smtp.MessageSink, *smtp.Reply) {
	h.body.Reset()
	return h, nil
}
func (h *sinkHandler) Reset() {}
func (h *sinkHandler) Write(p []byte) (int, error) {
	return h.body.Write(p)
}
func (h *sinkHandler) Commit() *smtp.Reply {
	m := h.cur
	m.Data = h.body.String()
	m.TLS = h.tlsOn
	h.s.mu.Lock()
	h.s.Messages = append(h.s.Messages, m)
	h.s.mu.Unlock()
	return &smtp.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued"}
}
func (h *sinkHandler) Abort(string) {}
