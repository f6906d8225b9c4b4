package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/ipc"
)

// testTLS makes a self-signed server certificate and a client config
// that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"}, DNSNames: []string{"mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, ServerName: "mx.test"}
}

type testClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dial runs handle on one end of a pipe (whose address is not loopback)
// and checks the greeting on the other.
func dial(t *testing.T, s *server) *testClient {
	t.Helper()
	a, b := net.Pipe()
	go s.handle(context.Background(), a)
	t.Cleanup(func() { b.Close() })
	b.SetDeadline(time.Now().Add(20 * time.Second))
	c := &testClient{t: t, c: b, br: bufio.NewReader(b)}
	if g := c.line(); g != "+OK Postern ready." {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func (c *testClient) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (%q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *testClient) expect(cmd, prefix string) string {
	c.t.Helper()
	go c.c.Write([]byte(cmd + "\r\n"))
	r := c.line()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%.40q: %q, want %q...", cmd, r, prefix)
	}
	return r
}

func (c *testClient) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(l + "\n")
	}
}

func (c *testClient) closed() {
	c.t.Helper()
	if l, err := c.br.ReadString('\n'); err == nil {
		c.t.Fatalf("the connection is still open: %q", l)
	}
}

func testServer(t *testing.T) (*server, *tls.Config) {
	st, ct := testTLS(t)
	return &server{tls: st, plainOff: true, timeout: 5 * time.Second, failureLimit: 3,
		relayIdle: time.Minute, sock: filepath.Join(t.TempDir(), "no-acceptor")}, ct
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestPlaintextRefused(t *testing.T) {
	s, ct := testServer(t)
	c := dial(t, s)
	c.expect("CAPA", "+OK")
	capa := c.multi()
	if !strings.Contains(capa, "STLS\n") || strings.Contains(capa, "USER") || strings.Contains(capa, "SASL") {
		t.Fatalf("CAPA before TLS: %q", capa)
	}
	c.expect("USER demo", "-ERR [AUTH] Plaintext authentication disallowed")
	c.expect("PASS x", "-ERR [AUTH] Plaintext authentication disallowed")
	c.expect("AUTH PLAIN "+b64("\x00demo\x00x"), "-ERR [AUTH] Plaintext authentication disallowed")
	c.expect("AUTH", "+OK")
	if m := c.multi(); m != "" {
		t.Fatalf("mechanisms offered before TLS: %q", m)
	}
	c.expect("STAT", "-ERR Log in first.")
	c.expect("NOOP", "-ERR Log in first.")

	// STLS with a command pipelined behind it in clear text: the command
	// is discarded.
	go c.c.Write([]byte("STLS\r\nUSER evil\r\n"))
	if r := c.line(); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("STLS: %q", r)
	}
	tc := tls.Client(c.c, ct)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	c.expect("PASS x", "-ERR No user name given.")
	c.expect("CAPA", "+OK")
	capa = c.multi()
	if strings.Contains(capa, "STLS") || !strings.Contains(capa, "USER\n") || !strings.Contains(capa, "SASL PLAIN LOGIN\n") {
		t.Fatalf("CAPA after TLS: %q", capa)
	}
	c.expect("STLS", "-ERR TLS is already active.")
	c.expect("AUTH", "+OK")
	if m := c.multi(); m != "PLAIN\nLOGIN\n" {
		t.Fatalf("mechanisms after TLS: %q", m)
	}
	c.expect("AUTH PLAIN", "+ ")
	c.expect("*", "-ERR Authentication cancelled.")
	c.expect("AUTH LOGIN", "+ VXNlcm5hbWU6")
	c.expect("*", "-ERR Authentication cancelled.")
	c.expect("AUTH DIGEST-MD5", "-ERR Unsupported authentication mechanism.")
	// No acceptor: a temporary failure, not counted.
	c.expect("USER demo", "+OK")
	c.expect("PASS secret with spaces", "-ERR [SYS/TEMP]")
	// Malformed or foreign-authzid responses count as failures; the third
	// closes the connection.
	c.expect("AUTH PLAIN "+b64("other\x00demo\x00pw"), "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH PLAIN !!", "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH LOGIN "+b64("demo"), "+ UGFzc3dvcmQ6")
	c.expect("=", "-ERR [AUTH] Authentication failed.")
	c.closed()
}

func TestPlaintextAllowed(t *testing.T) {
	s, _ := testServer(t)
	s.plainOff = false
	s.tls = nil
	c := dial(t, s)
	c.expect("CAPA", "+OK")
	capa := c.multi()
	if strings.Contains(capa, "STLS") || !strings.Contains(capa, "USER\n") {
		t.Fatalf("CAPA without TLS, plaintext allowed: %q", capa)
	}
	c.expect("STLS", "-ERR TLS is not available.")
	c.expect("USER demo", "+OK")
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
}

func TestLoginLimits(t *testing.T) {
	s, _ := testServer(t)
	c := dial(t, s)
	go c.c.Write([]byte(strings.Repeat("x", 5000) + "\r\n"))
	if r := c.line(); r != "-ERR line too long" {
		t.Fatalf("long line: %q", r)
	}
	c.closed()

	c = dial(t, s)
	for i := 0; i < maxBadCommands-1; i++ {
		c.expect("FOO", "-ERR Unknown command.")
	}
	c.expect("FOO", "-ERR Too many bad commands.")
	c.closed()

	s.timeout = 200 * time.Millisecond
	c = dial(t, s)
	if r := c.line(); r != "-ERR Disconnected for inactivity." {
		t.Fatalf("idle: %q", r)
	}
	c.closed()
}

// TestLoginTotalTimeout: a client that keeps sending CAPA is still cut
// off, three login_timeouts after it connected.
func TestLoginTotalTimeout(t *testing.T) {
	s, _ := testServer(t)
	s.timeout = 300 * time.Millisecond
	c := dial(t, s)
	start := time.Now()
	for {
		go c.c.Write([]byte("CAPA\r\n"))
		r := c.line()
		if r == "-ERR Disconnected for inactivity." {
			break
		}
		c.multi()
		if time.Since(start) > 5*time.Second {
			t.Fatal("a busy client was never cut off")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Fatalf("cut off after %v, want about 900ms", d)
	}
}

// TestHandoff: a plaintext client on a socket is handed to the session
// with what it pipelined behind PASS; replies to commands before PASS
// reach it first.
func TestHandoff(t *testing.T) {
	s, _ := testServer(t)
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "acceptor"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s.sock = l.Addr().String()
	go func() {
		uc, err := l.(*net.UnixListener).AcceptUnix()
		if err != nil {
			return
		}
		defer uc.Close()
		c := ipc.NewConn(uc, 16<<10)
		req, files, err := c.Recv(5 * time.Second)
		if err != nil || len(files) != 1 {
			t.Errorf("request: %v, %d files", err, len(files))
			return
		}
		if req.Get("stream") != "client" || req.Get("pending") != "STAT\r\n" || req.Get("user") != "demo" {
			t.Errorf("request: stream %q pending %q user %q", req.Get("stream"), req.Get("pending"), req.Get("user"))
		}
		conn, err := net.FileConn(files[0])
		files[0].Close()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		c.Send(ipc.NewMsg("status", "ok", "user", "demo"))
		conn.Write([]byte("+OK Logged in.\r\n+OK 0 0\r\n"))
	}()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	client, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.handle(context.Background(), server); close(done) }()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	c := &testClient{t: t, c: client, br: bufio.NewReader(client)}
	if g := c.line(); g != "+OK Postern ready." {
		t.Fatalf("greeting %q", g)
	}
	client.Write([]byte("USER demo\r\nPASS pw\r\nSTAT\r\n"))
	for _, want := range []string{"+OK ", "+OK Logged in.", "+OK 0 0"} {
		if l := c.line(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	// pop3-login is done with the client at once.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pop3-login still holds the client after the handoff")
	}
	c.closed()
}
