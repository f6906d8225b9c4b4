package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"postern/internal/address"
)

// fakeHandler accepts everything except local parts that say otherwise:
// "reject" gets 550, "tempfail" 451, "close" 421; "accept" in the
// sender's local part gives a custom 2xx.
type fakeHandler struct {
	mu       sync.Mutex
	calls    []string
	froms    []address.Address
	rcpts    []address.Address
	mparams  []MailParams
	rparams  []RcptParams
	sinks    []*fakeSink
	helloRej *Reply
	dataRej  *Reply
	commit   *Reply
	failW    bool // sinks fail their writes
	resets   int
	tlsSeen  []*tls.ConnectionState
	authSeen []string
}

func (h *fakeHandler) TLSStarted(st *tls.ConnectionState) {
	h.log("tls")
	h.mu.Lock()
	h.tlsSeen = append(h.tlsSeen, st)
	h.mu.Unlock()
}

func (h *fakeHandler) Authenticated(user string) {
	h.log("auth " + user)
	h.mu.Lock()
	h.authSeen = append(h.authSeen, user)
	h.mu.Unlock()
}

func (h *fakeHandler) called(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.calls {
		if c == s {
			return true
		}
	}
	return false
}

func (h *fakeHandler) log(s string) {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
}

func (h *fakeHandler) Hello(name string, ext bool) *Reply {
	h.log(fmt.Sprintf("hello %s %v", name, ext))
	return h.helloRej
}

func localReply(local string) *Reply {
	switch local {
	case "reject":
		return &Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
	case "tempfail":
		return &Reply{Code: 451, Enhanced: "4.3.0", Text: "Try later"}
	case "close":
		return &Reply{Code: 421, Enhanced: "4.7.0", Text: "Go away"}
	case "weird":
		return &Reply{Code: 999, Text: "bad"}
	}
	return nil
}

func (h *fakeHandler) Mail(from address.Address, p MailParams) *Reply {
	h.log("mail " + from.String())
	h.mu.Lock()
	h.froms = append(h.froms, from)
	h.mparams = append(h.mparams, p)
	h.mu.Unlock()
	if from.Local == "accept" {
		return &Reply{Code: 250, Enhanced: "2.1.0", Text: "Sender fine"}
	}
	return localReply(from.Local)
}

func (h *fakeHandler) Rcpt(to address.Address, p RcptParams) *Reply {
	h.log("rcpt " + to.String())
	h.mu.Lock()
	h.rcpts = append(h.rcpts, to)
	h.rparams = append(h.rparams, p)
	h.mu.Unlock()
	return localReply(to.Local)
}

func (h *fakeHandler) Data() (MessageSink, *Reply) {
	h.log("data")
	if h.dataRej != nil {
		return nil, h.dataRej
	}
	s := &fakeSink{commit: h.commit, failW: h.failW}
	h.mu.Lock()
	h.sinks = append(h.sinks, s)
	h.mu.Unlock()
	return s, nil
}

func (h *fakeHandler) Reset() {
	h.mu.Lock()
	h.resets++
	h.mu.Unlock()
}

func (h *fakeHandler) sink(t *testing.T, i int) *fakeSink {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if i >= len(h.sinks) {
		t.Fatalf("no sink %d (have %d)", i, len(h.sinks))
	}
	return h.sinks[i]
}

type fakeSink struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	committed bool
	aborted   string
	commit    *Reply
	failW     bool
}

func (s *fakeSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failW {
		return 0, errors.New("disk full")
	}
	return s.buf.Write(p)
}

func (s *fakeSink) Commit() *Reply {
	s.mu.Lock()
	s.committed = true
	s.mu.Unlock()
	return s.commit
}

func (s *fakeSink) Abort(reason string) {
	s.mu.Lock()
	s.aborted = reason
	s.mu.Unlock()
}

func (s *fakeSink) state() (string, bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.committed, s.aborted
}

// recConn records the server's writes, to see how replies were grouped.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, string(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recConn) Writes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

// testClient drives a session over net.Pipe. Writes go through their own
// goroutine, since net.Pipe has no buffer and the server may be writing
// while the client still is.
type testClient struct {
	t      *testing.T
	mu     sync.Mutex // guards conn for the writer goroutine
	conn   net.Conn
	r      *bufio.Reader
	wch    chan []byte
	srv    *Session
	srvc   *recConn
	h      *fakeHandler
	done   chan error
	cancel context.CancelFunc
	logs   *logRec
}

type logRec struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRec) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logRec) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (l *logRec) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func testConfig() *ServerConfig {
	return &ServerConfig{
		Hostname:       "mx.test",
		Timeout:        5 * time.Second,
		SessionTimeout: 20 * time.Second,
		ErrorSleep:     -1,
		SMTPUTF8:       true,
		DSN:            true,
	}
}

func startSession(t *testing.T, cfg *ServerConfig, h *fakeHandler) *testClient {
	t.Helper()
	if cfg == nil {
		cfg = testConfig()
	}
	if h == nil {
		h = &fakeHandler{}
	}
	cli, srv := net.Pipe()
	rc := &recConn{Conn: srv}
	return startSessionOn(t, cfg, h, cli, rc)
}

// startSessionOn runs a session on srv (a *recConn is remembered as
// srvc) and drives it from cli.
func startSessionOn(t *testing.T, cfg *ServerConfig, h *fakeHandler, cli, srv net.Conn) *testClient {
	t.Helper()
	logs := &logRec{}
	cfg.Logf = logs.logf
	ctx, cancel := context.WithCancel(context.Background())
	c := &testClient{t: t, conn: cli, r: bufio.NewReader(cli), wch: make(chan []byte, 64),
		h: h, done: make(chan error, 1), cancel: cancel, logs: logs}
	c.srvc, _ = srv.(*recConn)
	c.srv = NewSession(srv, cfg, h)
	go func() { c.done <- c.srv.Serve(ctx) }()
	go func() {
		for b := range c.wch {
			c.mu.Lock()
			w := c.conn
			c.mu.Unlock()
			if _, err := w.Write(b); err != nil {
				for range c.wch {
				}
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cli.Close()
		close(c.wch)
	})
	return c
}

func (c *testClient) send(s string) { c.wch <- []byte(s) }

// reply reads one reply, all lines, joined with "\n".
func (c *testClient) reply() string {
	c.t.Helper()
	var lines []string
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (have %q)", err, lines)
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("reply line without CRLF: %q", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] == ' ' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect reads a reply and checks that it starts with prefix.
func (c *testClient) expect(prefix string) string {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("got reply %q, want %q...", r, prefix)
	}
	return r
}

// cmd sends a line and checks the reply.
func (c *testClient) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(prefix)
}

// ehlo reads the greeting and does EHLO.
func (c *testClient) ehlo() {
	c.t.Helper()
	c.expect("220 mx.test ESMTP Postern")
	c.cmd("EHLO client.test", "250-mx.test")
}

// wait waits for Serve to return.
func (c *testClient) wait() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(15 * time.Second):
		c.t.Fatal("session did not end")
		return nil
	}
}

// closed checks that the server closed the connection.
func (c *testClient) closed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("expected close, got %q", b)
	}
}
