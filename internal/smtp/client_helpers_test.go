package smtp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientConfig is a client configuration with test-sized timeouts.
func clientConfig() *ClientConfig {
	d := 5 * time.Second
	return &ClientConfig{
		Hostname: "client.test",
		PeerName: "mx.test",
		Timeouts: Timeouts{Connect: d, Greeting: d, Helo: d, StartTLS: d, Mail: d, Rcpt: d,
			Data: d, DataBlock: d, DataDone: d, Rset: d, Quit: d},
	}
}

// ourServer runs this package's server on loopback TCP, one Session per
// connection, all with the same handler.
func ourServer(t *testing.T, cfg *ServerConfig, h *fakeHandler) string {
	t.Helper()
	if cfg == nil {
		cfg = testConfig()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = NewSession(conn, cfg, h).Serve(ctx)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		wg.Wait()
	})
	return ln.Addr().String()
}

// script is the server side of a hand-scripted conversation.
type script struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// failf reports a broken expectation and ends the script's goroutine
// (t.Fatal may not be called from it).
func (s *script) failf(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("server script: "+format, args...)
	runtime.Goexit()
}

// send writes each line with CRLF, all in one write.
func (s *script) send(lines ...string) {
	s.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	s.raw(b.String())
}

func (s *script) raw(data string) {
	s.t.Helper()
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.conn.Write([]byte(data)); err != nil {
		s.failf("write: %v", err)
	}
}

// line reads one line without its CRLF.
func (s *script) line() string {
	s.t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.failf("read: %v (have %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		s.failf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads a line and checks it.
func (s *script) expect(want string) string {
	s.t.Helper()
	l := s.line()
	if l != want {
		s.failf("got %q, want %q", l, want)
	}
	return l
}

// quiet checks that the client sends nothing for d: it waits for a
// reply.
func (s *script) quiet(d time.Duration) {
	s.t.Helper()
	if n := s.r.Buffered(); n > 0 {
		s.failf("client sent %d octets without waiting", n)
	}
	s.conn.SetReadDeadline(time.Now().Add(d))
	if _, err := s.r.Peek(1); err == nil {
		s.failf("client did not wait for the reply")
	} else if !os.IsTimeout(err) {
		s.failf("peek: %v", err)
	}
}

// data reads message content up to the lone dot and returns it as sent,
// still dot-stuffed.
func (s *script) data() string {
	s.t.Helper()
	var b strings.Builder
	for {
		l := s.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
}

// greet sends the greeting, expects EHLO and offers exts.
func (s *script) greet(exts ...string) {
	s.t.Helper()
	s.send("220 fake.test ESMTP")
	s.expect("EHLO client.test")
	lines := []string{"250-fake.test"}
	for _, e := range exts {
		lines = append(lines, "250-"+e)
	}
	lines[len(lines)-1] = "250 " + lines[len(lines)-1][4:]
	s.send(lines...)
}

// fakeServer accepts one connection on loopback and runs fn on it.
// The test waits for fn at its end.
func fakeServer(t *testing.T, fn func(s *script)) string {
	t.Helper()
	return fakeServerOn(t, "tcp", "127.0.0.1:0", fn)
}

func fakeServerOn(t *testing.T, network, addr string, fn func(s *script)) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		fn(&script{t: t, conn: conn, r: bufio.NewReader(conn)})
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("server script did not end")
		}
	})
	return ln.Addr().String()
}

// dial connects a client with cfg (clientConfig() when nil) and closes
// it at the end of the test.
func dial(t *testing.T, addr string, cfg *ClientConfig) (*Client, error) {
	t.Helper()
	if cfg == nil {
		cfg = clientConfig()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, "tcp", addr, nil, cfg)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func mustDial(t *testing.T, addr string, cfg *ClientConfig) *Client {
	t.Helper()
	c, err := dial(t, addr, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}

// resultsString shows results compactly for comparisons:
// "0:250 2.0.0 end of DATA|1:550 5.1.1 RCPT TO".
func resultsString(res []Result) string {
	var parts []string
	for _, r := range res {
		s := fmt.Sprintf("%d:%d %s %s", r.Rcpt, r.Code, r.Enhanced, r.Stage)
		if r.Local {
			s += " local"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "|")
}

func envelope(rcpts ...string) *Envelope {
	env := &Envelope{From: "alice@a.test"}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, Rcpt{Addr: r})
	}
	return env
}

func send(t *testing.T, c *Client, env *Envelope, msg string) ([]Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Send(ctx, env, strings.NewReader(msg))
}
