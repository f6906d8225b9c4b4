package smtp

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
	"errors"
	"io"
	"math/big"
	"net"
	netsmtp "net/smtp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

// testCertificate makes one self-signed certificate for mx.test and
// 127.0.0.1 per test binary.
func testCertificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "mx.test"},
			DNSNames:              []string{"mx.test"},
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
		testPool = x509.NewCertPool()
		testPool.AddCert(cert)
	})
	return testCert, testPool
}

func serverTLS(t testing.TB) *tls.Config {
	cert, _ := testCertificate(t)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func clientTLS(t testing.TB) *tls.Config {
	_, pool := testCertificate(t)
	return &tls.Config{RootCAs: pool, ServerName: "mx.test"}
}

// tcpPair connects two ends over loopback TCP. TLS needs it: net.Pipe
// has no buffer, and both ends of a handshake write before they read.
func tcpPair(t *testing.T) (cli, srv net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	cli, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv = <-ch
	if srv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return cli, srv
}

// startTCPSession is startSession over loopback TCP.
func startTCPSession(t *testing.T, cfg *ServerConfig, h *fakeHandler) *testClient {
	t.Helper()
	if h == nil {
		h = &fakeHandler{}
	}
	cli, srv := tcpPair(t)
	return startSessionOn(t, cfg, h, cli, &recConn{Conn: srv})
}

// startTLS does the client's handshake after a 220 to STARTTLS.
func (c *testClient) startTLS() *tls.Conn {
	c.t.Helper()
	if n := c.r.Buffered(); n > 0 {
		c.t.Fatalf("server sent %d octets after its 220", n)
	}
	tc := tls.Client(c.conn, clientTLS(c.t))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("client handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.mu.Lock()
	c.conn = tc
	c.mu.Unlock()
	c.r = bufio.NewReader(tc)
	return tc
}

func tlsConfig(t *testing.T) *ServerConfig {
	cfg := testConfig()
	cfg.TLS = serverTLS(t)
	cfg.Auth = (&fakeAuth{}).check
	cfg.AuthNeedsTLS = true
	return cfg
}

func plainResp(identity, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(identity + "\x00" + user + "\x00" + pass))
}

func TestSTARTTLS(t *testing.T) {
	cfg := tlsConfig(t)
	h := &fakeHandler{}
	c := startTCPSession(t, cfg, h)
	c.expect("220 mx.test ESMTP Postern")
	ehlo := c.cmd("EHLO client.test", "250-mx.test")
	if !strings.Contains(ehlo, "250-STARTTLS\n") || strings.Contains(ehlo, "AUTH") {
		t.Errorf("EHLO before TLS:\n%s", ehlo)
	}
	if help := c.cmd("HELP", "214 "); help != "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS" {
		t.Errorf("HELP: %q", help)
	}
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "538 5.7.11 Encryption required for requested authentication mechanism")
	if c.srv.TLS() != nil {
		t.Error("TLS() before STARTTLS")
	}
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	tc := c.startTLS()
	if st := tc.ConnectionState(); st.Version != tls.VersionTLS13 {
		t.Errorf("version %x", st.Version)
	}
	// The EHLO from before TLS is forgotten.
	c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 Error: send HELO/EHLO first")
	ehlo = c.cmd("EHLO client.test", "250-mx.test")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "250-AUTH PLAIN LOGIN\n") {
		t.Errorf("EHLO after TLS:\n%s", ehlo)
	}
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "235 2.7.0 Authentication successful")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nover TLS\r\n.\r\n")
	c.expect("250 ")
	c.cmd("QUIT", "221 ")
	if err := c.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	st := c.srv.TLS()
	if st == nil || st.Version != tls.VersionTLS13 || !st.HandshakeComplete {
		t.Fatalf("TLS() = %+v", st)
	}
	if c.srv.AuthUser() != "alice" {
		t.Errorf("AuthUser() = %q", c.srv.AuthUser())
	}
	if len(h.tlsSeen) != 1 || h.tlsSeen[0].Version != tls.VersionTLS13 || len(h.authSeen) != 1 || h.authSeen[0] != "alice" {
		t.Errorf("handler saw tls=%v auth=%v", h.tlsSeen, h.authSeen)
	}
	body, committed, _ := h.sink(t, 0).state()
	if !committed || body != "Subject: x\r\n\r\nover TLS\r\n" {
		t.Errorf("sink %q committed=%v", body, committed)
	}
	if !c.logs.has("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher TLS_") ||
		!c.logs.has(" bits)") ||
		!c.logs.has("ehlo=2 starttls=1/2 auth=1/2 mail=1/2 rcpt=1 data=1 help=1 quit=1") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

// CVE-2011-0411: commands behind STARTTLS in the same packet must not
// run after the handshake.
func TestSTARTTLSInjection(t *testing.T) {
	cfg := tlsConfig(t)
	h := &fakeHandler{}
	c := startTCPSession(t, cfg, h)
	c.ehlo()
	c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n")
	c.expect("220 2.0.0 Ready to start TLS")
	c.startTLS()
	c.cmd("EHLO client.test", "250-mx.test")
	c.cmd("RCPT TO:<c@d.test>", "503 5.5.1 Error: need MAIL command")
	c.cmd("QUIT", "221 ")
	c.wait()
	if h.called("mail a@b.test") {
		t.Error("the injected MAIL reached the handler")
	}
	if !c.logs.has("warning: unknown[127.0.0.1]: pipelined commands after STARTTLS discarded: 28 octets") {
		t.Errorf("logs:\n%s", c.logs)
	}
	if s := c.srv.Stats(); strings.Contains(s, "rset") || strings.Contains(s, "mail") {
		t.Errorf("injected commands counted: %s", s)
	}
}

func TestSTARTTLSRefused(t *testing.T) {
	// Not configured: not offered, not implemented.
	c := startSession(t, nil, nil)
	c.ehlo()
	c.cmd("STARTTLS", "502 5.5.1 ")
	c.cmd("STARTTLS now", "502 5.5.1 ")

	// Configured without a certificate.
	cfg := testConfig()
	cfg.TLS = &tls.Config{}
	c = startSession(t, cfg, nil)
	c.expect("220 ")
	if ehlo := c.cmd("EHLO client.test", "250-"); strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate:\n%s", ehlo)
	}
	c.cmd("STARTTLS", "454 4.7.0 TLS not available due to local problem")
	c.cmd("NOOP", "250 ")

	// Arguments, and inside a transaction.
	c = startSession(t, tlsConfig(t), nil)
	c.ehlo()
	c.cmd("STARTTLS now", "501 5.5.4 Syntax: STARTTLS")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("STARTTLS", "503 5.5.1 Error: MAIL transaction in progress")
	c.cmd("QUIT", "221 ")
	c.wait()
	if !c.logs.has("starttls=0/2") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestSTARTTLSHandshakeFails(t *testing.T) {
	// A client that speaks SMTP on after the 220.
	c := startTCPSession(t, tlsConfig(t), nil)
	c.ehlo()
	c.cmd("STARTTLS", "220 ")
	c.send("EHLO client.test\r\n")
	c.closed()
	err := c.wait()
	if !errors.Is(err, ErrTLSHandshake) || errors.Is(err, ErrTimeout) {
		t.Errorf("Serve: %v", err)
	}
	if !c.logs.has("SSL_accept error from unknown[127.0.0.1]: ") || !c.logs.has("lost connection after STARTTLS from unknown[127.0.0.1]") {
		t.Errorf("logs:\n%s", c.logs)
	}

	// A client that says nothing.
	cfg := tlsConfig(t)
	cfg.Timeout = 300 * time.Millisecond
	c = startTCPSession(t, cfg, nil)
	c.ehlo()
	c.cmd("STARTTLS", "220 ")
	err = c.wait()
	if !errors.Is(err, ErrTLSHandshake) || !errors.Is(err, ErrTimeout) {
		t.Errorf("Serve: %v", err)
	}
	if !c.logs.has("timeout after STARTTLS from") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

// STARTTLS forgets an AUTH done in the clear.
func TestSTARTTLSForgetsAuth(t *testing.T) {
	cfg := tlsConfig(t)
	cfg.AuthNeedsTLS = false
	c := startTCPSession(t, cfg, nil)
	c.ehlo()
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "235 ")
	if c.srv.AuthUser() != "alice" {
		t.Fatal("not authenticated")
	}
	c.cmd("STARTTLS", "220 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250-")
	if u := c.srv.AuthUser(); u != "" {
		t.Errorf("AuthUser() = %q after STARTTLS", u)
	}
	c.cmd("AUTH PLAIN "+plainResp("", "alice", "secret"), "235 ")
}

func TestRequireTLS(t *testing.T) {
	cfg := tlsConfig(t)
	cfg.RequireTLS = true
	cfg.AuthNeedsTLS = false // RequireTLS alone keeps AUTH for TLS
	c := startTCPSession(t, cfg, nil)
	c.expect("220 ")
	c.cmd("MAIL FROM:<a@b.test>", "530 5.7.0 Must issue a STARTTLS command first")
	ehlo := c.cmd("EHLO client.test", "250-")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Errorf("EHLO:\n%s", ehlo)
	}
	for _, cmd := range []string{"MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test>", "DATA", "VRFY bob", "EXPN list", "AUTH PLAIN " + plainResp("", "alice", "secret")} {
		c.cmd(cmd, "530 5.7.0 Must issue a STARTTLS command first")
	}
	c.cmd("NOOP", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd("STARTTLS", "220 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250-")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd("AUTH LOGIN "+base64.StdEncoding.EncodeToString([]byte("alice")), "334 UGFzc3dvcmQ6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("secret")), "235 ")
}

func TestImplicitTLS(t *testing.T) {
	cfg := tlsConfig(t)
	cli, srv := tcpPair(t)
	h := &fakeHandler{}
	c := startSessionOn(t, cfg, h, cli, tls.Server(srv, cfg.TLS))
	tc := tls.Client(cli, clientTLS(t))
	c.mu.Lock()
	c.conn = tc
	c.mu.Unlock()
	c.r = bufio.NewReader(tc)
	c.expect("220 mx.test ESMTP Postern")
	ehlo := c.cmd("EHLO client.test", "250-")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO:\n%s", ehlo)
	}
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	c.cmd("AUTH PLAIN "+plainResp("alice", "alice", "secret"), "235 ")
	c.cmd("QUIT", "221 ")
	if err := c.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c.srv.TLS() == nil || len(h.tlsSeen) != 1 {
		t.Error("no TLS state")
	}
	if !c.logs.has("connect from unknown[127.0.0.1]") || !c.logs.has("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestImplicitTLSFails(t *testing.T) {
	// A plain-text client on the TLS port.
	cfg := tlsConfig(t)
	cli, srv := tcpPair(t)
	c := startSessionOn(t, cfg, &fakeHandler{}, cli, tls.Server(srv, cfg.TLS))
	c.send("EHLO client.test\r\n")
	c.closed()
	if err := c.wait(); !errors.Is(err, ErrTLSHandshake) {
		t.Errorf("Serve: %v", err)
	}
	if !c.logs.has("SSL_accept error from unknown[127.0.0.1]") || !c.logs.has("lost connection after CONNECT") {
		t.Errorf("logs:\n%s", c.logs)
	}

	// A client that says nothing: bounded by Timeout, not by the
	// session's budget.
	cfg = tlsConfig(t)
	cfg.Timeout = 300 * time.Millisecond
	cli, srv = tcpPair(t)
	c = startSessionOn(t, cfg, &fakeHandler{}, cli, tls.Server(srv, cfg.TLS))
	start := time.Now()
	if err := c.wait(); !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrTLSHandshake) {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("handshake timeout took %v", d)
	}

	// Shutdown during the handshake.
	cli, srv = tcpPair(t)
	c = startSessionOn(t, tlsConfig(t), &fakeHandler{}, cli, tls.Server(srv, cfg.TLS))
	time.Sleep(50 * time.Millisecond)
	c.cancel()
	if err := c.wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve: %v", err)
	}
}

// Go's net/smtp client over loopback TCP: STARTTLS, AUTH PLAIN, a message.
func TestNetSMTPClientTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	h := &fakeHandler{}
	cfg := tlsConfig(t)
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- NewSession(conn, cfg, h).Serve(context.Background())
	}()
	c, err := netsmtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before TLS")
	}
	if err := c.StartTLS(clientTLS(t)); err != nil {
		t.Fatal(err)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Errorf("AUTH after TLS: %v %q", ok, mechs)
	}
	// (net/smtp hangs up after a failed AUTH, so only the good one here.)
	if err := c.Auth(netsmtp.PlainAuth("", "alice", "secret", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@b.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("c@d.test"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: tls\r\n\r\nhi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if body, committed, _ := h.sink(t, 0).state(); !committed || body != "Subject: tls\r\n\r\nhi\r\n" {
		t.Errorf("sink %q %v", body, committed)
	}
}
