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
	RcptReply map[string]*smtp.Reply
	// GreetDelay stalls the greeting (a greeting timeout test).
	cfg smtp.ServerConfig
}

// SinkMessage is one message the sink accepted.
type SinkMessage struct {
	From  string
	Rcpts []string
	Data  string
	Body  string // BODY= parameter
	TLS   bool
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
	h.cur = SinkMessage{From: from.String(), Body: p.Body}
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
