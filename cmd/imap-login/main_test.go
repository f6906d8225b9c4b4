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
	"sync"
	"testing"
	"time"

	"postern/internal/ipc"
	"postern/internal/postlogin"
)

// fakeAcceptor answers login requests on a Unix socket as imapd's
// acceptor would. The password decides: "pw" logs in (the session greets
// with PREAUTH and then echoes each line as "* ECHO line"), "temp" and
// "limit" are temporary refusals, "bye" starts a session that refuses
// with BYE, anything else fails.
func fakeAcceptor(t *testing.T) (sock string, requests func() []*ipc.Msg) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "imapd")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var reqs []*ipc.Msg
	go func() {
		for {
			uc, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				defer uc.Close()
				c := ipc.NewConn(uc, 16<<10)
				req, files, err := c.Recv(5 * time.Second)
				if err != nil || len(files) != 1 {
					t.Errorf("request: %v, %d files", err, len(files))
					return
				}
				mu.Lock()
				reqs = append(reqs, req)
				mu.Unlock()
				stream, err := net.FileConn(files[0])
				files[0].Close()
				if err != nil {
					t.Error(err)
					return
				}
				switch req.Get("password") {
				case "pw", "bye":
				case "temp":
					stream.Close()
					c.Send(ipc.NewMsg("status", "tempfail", "code", postlogin.CodeTemp, "reason", "Auth is down"))
					return
				case "limit":
					stream.Close()
					c.Send(ipc.NewMsg("status", "tempfail", "code", postlogin.CodeLimit, "reason", "Too many sessions"))
					return
				default:
					stream.Close()
					c.Send(ipc.NewMsg("status", "fail", "code", postlogin.CodeAuth, "reason", "Authentication failed"))
					return
				}
				c.Send(ipc.NewMsg("status", "ok", "user", strings.ToLower(req.Get("user"))))
				go func() {
					defer stream.Close()
					stream.SetDeadline(time.Now().Add(10 * time.Second))
					if req.Get("password") == "bye" {
						if req.Get("stream") == "client" {
							// imapd answers a handed-over LOGIN itself.
							stream.Write([]byte(req.Get("tag") + " NO [UNAVAILABLE] Mailbox is locked\r\n* BYE Mailbox is locked\r\n"))
							return
						}
						stream.Write([]byte("* BYE [UNAVAILABLE] Mailbox is locked\r\n"))
						return
					}
					if req.Get("stream") == "client" {
						// A handed-over client: the session answers
						// the LOGIN itself (imapd's loginReply).
						stream.Write([]byte(req.Get("tag") + " OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in\r\n"))
					} else {
						stream.Write([]byte("* PREAUTH [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in as demo\r\n"))
					}
					br := bufio.NewReader(stream)
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						stream.Write([]byte("* ECHO " + line))
					}
				}()
			}()
		}
	}()
	return sock, func() []*ipc.Msg {
		mu.Lock()
		defer mu.Unlock()
		return append([]*ipc.Msg(nil), reqs...)
	}
}

// testTLS makes a self-signed certificate for 127.0.0.1.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imap.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// remoteConn pretends that the client is not on loopback.
type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}
}

// startServer runs handle for every connection to a loopback listener.
func startServer(t *testing.T, s *server, remote bool) (addr string, cancel func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		l.Close()
		wg.Wait()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if remote {
				c = remoteConn{c}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.handle(ctx, c)
			}()
		}
	}()
	return l.Addr().String(), cancel
}

func newServer(t *testing.T) (*server, func() []*ipc.Msg) {
	sock, reqs := fakeAcceptor(t)
	return &server{
		tls:          testTLS(t),
		plainOff:     true,
		timeout:      5 * time.Second,
		failureLimit: 3,
		relayIdle:    10 * time.Second,
		maxLine:      1024,
		sock:         sock,
	}, reqs
}

// client is a raw IMAP client.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command line and returns the response lines up to the
// tagged one (or a BYE).
func (c *client) cmd(tag, line string) []string {
	c.t.Helper()
	c.write(tag + " " + line + "\r\n")
	return c.until(tag)
}

func (c *client) until(tag string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// eof checks that the server closed the connection.
func (c *client) eof() {
	c.t.Helper()
	if l, err := c.br.ReadString('\n'); err == nil {
		c.t.Fatalf("got %q, want the connection closed", l)
	}
}

func (c *client) starttls() {
	c.t.Helper()
	if r := c.cmd("s", "STARTTLS"); r[0] != "s OK Begin TLS negotiation now." {
		c.t.Fatalf("STARTTLS: %q", r)
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
}

func TestGreetingAndCapability(t *testing.T) {
	s, _ := newServer(t)
	addr, _ := startServer(t, s, false)
	c := dial(t, addr)
	want := "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE STARTTLS AUTH=PLAIN AUTH=LOGIN"
	if g := c.line(); g != "* OK [CAPABILITY "+want+"] Postern ready." {
		t.Errorf("greeting %q", g)
	}
	if r := c.cmd("a", "CAPABILITY"); len(r) != 2 || r[0] != "* CAPABILITY "+want || r[1] != "a OK Capability completed." {
		t.Errorf("CAPABILITY: %q", r)
	}
	if r := c.cmd("b", "noop"); r[0] != "b OK NOOP completed." {
		t.Errorf("NOOP: %q", r)
	}
	if r := c.cmd("c", `ID ("name" "test" "version" NIL)`); len(r) != 2 || r[0] != `* ID ("name" "Postern")` || r[1] != "c OK ID completed." {
		t.Errorf("ID: %q", r)
	}
	if r := c.cmd("d", "ID NIL"); r[len(r)-1] != "d OK ID completed." {
		t.Errorf("ID NIL: %q", r)
	}
	for _, bad := range []string{`ID ("name")`, "ID", `ID (name "x")`, "NOOP x", "CAPABILITY x"} {
		if r := c.cmd("e", bad); r[0] != "e BAD Invalid arguments." {
			t.Errorf("%s: %q", bad, r)
		}
	}
	if r := c.cmd("f", "SELECT INBOX"); r[0] != "f BAD Log in first." {
		t.Errorf("SELECT: %q", r)
	}
	if r := c.cmd("g", "XYZZY"); r[0] != "g BAD Unknown command." {
		t.Errorf("XYZZY: %q", r)
	}
	if r := c.cmd("h", "AUTHENTICATE CRAM-MD5"); r[0] != "h NO Unsupported authentication mechanism." {
		t.Errorf("CRAM-MD5: %q", r)
	}
	if r := c.cmd("i", "LOGOUT"); len(r) != 2 || r[0] != "* BYE Logging out." || r[1] != "i OK Logout completed." {
		t.Errorf("LOGOUT: %q", r)
	}
	c.eof()
}

func TestPlaintextRefusedUntilTLS(t *testing.T) {
	s, reqs := newServer(t)
	addr, _ := startServer(t, s, true)
	c := dial(t, addr)
	if g := c.line(); !strings.Contains(g, " STARTTLS LOGINDISABLED]") || strings.Contains(g, "AUTH=") {
		t.Errorf("greeting %q", g)
	}
	if r := c.cmd("a", "LOGIN demo pw"); r[0] != "a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections." {
		t.Errorf("LOGIN: %q", r)
	}
	if r := c.cmd("b", "AUTHENTICATE PLAIN AGRlbW8AcHc="); !strings.HasPrefix(r[0], "b NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE: %q", r)
	}
	c.starttls()
	r := c.cmd("c", "CAPABILITY")
	if r[0] != "* CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN" {
		t.Errorf("CAPABILITY over TLS: %q", r)
	}
	if r := c.cmd("d", "STARTTLS"); r[0] != "d BAD TLS is already active." {
		t.Errorf("second STARTTLS: %q", r)
	}
	if r := c.cmd("e", "LOGIN demo pw"); r[0] != "e OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in" {
		t.Fatalf("LOGIN over TLS: %q", r)
	}
	c.write("f NOOP\r\n")
	if l := c.line(); l != "* ECHO f NOOP" {
		t.Errorf("relayed: %q", l)
	}
	rq := reqs()
	if len(rq) != 1 || rq[0].Get("service") != "imap" || rq[0].Get("user") != "demo" || rq[0].Get("mech") != "LOGIN" ||
		rq[0].Get("tls") != "yes" || rq[0].Get("client_addr") != "192.0.2.7:40000" || !strings.HasPrefix(rq[0].Get("local_addr"), "127.0.0.1:") {
		t.Errorf("requests: %v", rq)
	}
}

func TestStartTLSInjection(t *testing.T) {
	s, _ := newServer(t)
	addr, _ := startServer(t, s, true)
	c := dial(t, addr)
	c.line()
	c.write("s STARTTLS\r\nx LOGIN demo pw\r\n")
	if r := c.until("s"); r[0] != "s BAD Commands sent after STARTTLS before TLS." {
		t.Errorf("STARTTLS with pipelined data: %q", r)
	}
	if l := c.line(); l != "* BYE Closing." {
		t.Errorf("after: %q", l)
	}
	c.eof()
}

func TestLoginLiteralsAndPipelining(t *testing.T) {
	s, reqs := newServer(t)
	addr, _ := startServer(t, s, false)
	c := dial(t, addr)
	c.line()
	// A synchronising literal for the user, a non-synchronising one
	// for the password, and a command pipelined behind the login.
	c.write("a LOGIN {4}\r\n")
	if l := c.line(); l != "+ Ready" {
		t.Fatalf("continuation: %q", l)
	}
	c.write("demo {2+}\r\npw\r\nb SELECT INBOX\r\n")
	if r := c.until("a"); r[0] != "a OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in" {
		t.Fatalf("LOGIN: %q", r)
	}
	if l := c.line(); l != "* ECHO b SELECT INBOX" {
		t.Errorf("pipelined command: %q", l)
	}
	if rq := reqs(); len(rq) != 1 || rq[0].Get("user") != "demo" || rq[0].Get("password") != "pw" {
		t.Errorf("requests: %v", rq)
	}
}

func TestAuthenticate(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	s, reqs := newServer(t)
	addr, _ := startServer(t, s, false)

	// PLAIN with SASL-IR.
	c := dial(t, addr)
	c.line()
	if r := c.cmd("a", "AUTHENTICATE PLAIN "+b64("\x00demo\x00pw")); r[0] != "a OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in" {
		t.Errorf("PLAIN with an initial response: %q", r)
	}

	// PLAIN with a challenge, after a cancelled attempt and a bad one.
	c = dial(t, addr)
	c.line()
	c.write("a AUTHENTICATE PLAIN\r\n")
	if l := c.line(); l != "+ " {
		t.Fatalf("challenge %q", l)
	}
	c.write("*\r\n")
	if r := c.until("a"); r[0] != "a BAD Authentication cancelled." {
		t.Errorf("cancel: %q", r)
	}
	c.write("b AUTHENTICATE PLAIN\r\n")
	c.line()
	c.write("not base64!\r\n")
	if r := c.until("b"); r[0] != "b BAD Invalid base64 data." {
		t.Errorf("bad base64: %q", r)
	}
	if r := c.cmd("c", "AUTHENTICATE PLAIN "+b64("other\x00demo\x00pw")); r[0] != "c NO [AUTHORIZATIONFAILED] Authorization failed." {
		t.Errorf("authzid: %q", r)
	}
	c.write("d AUTHENTICATE plain\r\n")
	c.line()
	c.write(b64("demo\x00demo\x00pw") + "\r\n")
	if r := c.until("d"); r[0] != "d OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in" {
		t.Errorf("PLAIN: %q", r)
	}

	// LOGIN, with and without the user as initial response.
	c = dial(t, addr)
	c.line()
	c.write("a AUTHENTICATE LOGIN\r\n")
	if l := c.line(); l != "+ VXNlcm5hbWU6" {
		t.Fatalf("user challenge %q", l)
	}
	c.write(b64("demo") + "\r\n")
	if l := c.line(); l != "+ UGFzc3dvcmQ6" {
		t.Fatalf("password challenge %q", l)
	}
	c.write(b64("wrong") + "\r\n")
	if r := c.until("a"); r[0] != "a NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Errorf("LOGIN, wrong password: %q", r)
	}
	c.write("b AUTHENTICATE LOGIN " + b64("demo") + "\r\n")
	if l := c.line(); l != "+ UGFzc3dvcmQ6" {
		t.Fatalf("password challenge %q", l)
	}
	c.write(b64("pw") + "\r\n")
	if r := c.until("b"); r[0] != "b OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in" {
		t.Errorf("LOGIN: %q", r)
	}
	var mechs []string
	for _, r := range reqs() {
		mechs = append(mechs, r.Get("mech"))
	}
	if strings.Join(mechs, " ") != "PLAIN PLAIN LOGIN LOGIN" {
		t.Errorf("mechanisms asked: %v", mechs)
	}
}

func TestFailures(t *testing.T) {
	s, _ := newServer(t)
	addr, _ := startServer(t, s, false)
	// A session that cannot open the mailbox: the client is told, and
	// (handed over, as plaintext on loopback is) the connection ends.
	c0 := dial(t, addr)
	c0.line()
	if r := c0.cmd("c", "LOGIN demo bye"); r[0] != "c NO [UNAVAILABLE] Mailbox is locked" {
		t.Errorf("session refused: %q", r)
	}
	c := dial(t, addr)
	c.line()
	if r := c.cmd("a", "LOGIN demo temp"); r[0] != "a NO [UNAVAILABLE] Auth is down" {
		t.Errorf("temporary: %q", r)
	}
	if r := c.cmd("b", "LOGIN demo limit"); r[0] != "b NO [LIMIT] Too many sessions" {
		t.Errorf("limit: %q", r)
	}
	if r := c.cmd("d", `LOGIN demo ""`); r[0] != "d NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Errorf("empty password: %q", r)
	}
	if r := c.cmd("e", "LOGIN demo wrong"); r[0] != "e NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Errorf("wrong password: %q", r)
	}
	// The third failure closes the connection.
	r := c.cmd("f", "LOGIN demo wrong")
	if r[0] != "f NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Errorf("third failure: %q", r)
	}
	if l := c.line(); l != "* BYE Too many authentication failures." {
		t.Errorf("after the third failure: %q", l)
	}
	c.eof()

	// A failed acceptor is a temporary failure.
	s2 := *s
	s2.sock = filepath.Join(t.TempDir(), "nothing")
	addr2, _ := startServer(t, &s2, false)
	c = dial(t, addr2)
	c.line()
	if r := c.cmd("a", "LOGIN demo pw"); r[0] != "a NO [UNAVAILABLE] Temporary authentication failure, try again later." {
		t.Errorf("no acceptor: %q", r)
	}
}

func TestBadInput(t *testing.T) {
	s, _ := newServer(t)
	addr, _ := startServer(t, s, false)

	c := dial(t, addr)
	c.line()
	c.write("a LOGIN " + strings.Repeat("x", 2000) + " pw\r\n")
	if l := c.line(); l != "a BAD [TOOBIG] Command line too long" {
		t.Errorf("over-long line: %q", l)
	}
	if l := c.line(); l != "* BYE Command line too long" {
		t.Errorf("over-long line: %q", l)
	}
	c.eof()

	c = dial(t, addr)
	c.line()
	if r := c.cmd("a", "LOGIN {9000}"); r[0] != "a BAD [TOOBIG] Literal too large" {
		t.Errorf("large literal: %q", r)
	}
	c.write("b LOGIN {9000+}\r\n")
	if l := c.line(); l != "b BAD [TOOBIG] Literal too large" {
		t.Errorf("large non-synchronising literal: %q", l)
	}
	c.line() // BYE
	c.eof()

	c = dial(t, addr)
	c.line()
	for _, bad := range []string{"a LOGIN \"x", "+ LOGIN", "a LOGIN (x) y", "a LOGIN x\"y"} {
		c.write(bad + "\r\n")
		if l := c.line(); !strings.Contains(l, " BAD ") {
			t.Errorf("%q: %q", bad, l)
		}
	}
	for i := 0; i < maxBadCommands-5; i++ {
		if r := c.cmd("x", "BOGUS"); r[0] != "x BAD Unknown command." {
			t.Fatalf("bad command %d: %q", i, r)
		}
	}
	c.write("x BOGUS\r\n")
	if l := c.line(); l != "x BAD Unknown command." {
		t.Errorf("last bad command: %q", l)
	}
	if l := c.line(); l != "* BYE Too many invalid commands." {
		t.Errorf("after too many bad commands: %q", l)
	}
	c.eof()
}

func TestTimeoutAndStop(t *testing.T) {
	s, _ := newServer(t)
	s.timeout = 300 * time.Millisecond
	addr, _ := startServer(t, s, false)
	c := dial(t, addr)
	c.line()
	if l := c.line(); l != "* BYE Disconnected for inactivity." {
		t.Errorf("timeout: %q", l)
	}
	c.eof()

	s2, _ := newServer(t)
	addr, stop := startServer(t, s2, false)
	c = dial(t, addr)
	c.line()
	time.Sleep(100 * time.Millisecond)
	stop()
	if l := c.line(); l != "* BYE Server shutting down." {
		t.Errorf("stop: %q", l)
	}
	c.eof()
}

func TestImplicitTLS(t *testing.T) {
	s, _ := newServer(t)
	s.wrapper = true
	addr, _ := startServer(t, s, true)
	raw, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, c: raw, br: bufio.NewReader(raw)}
	if g := c.line(); g != "* OK [CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN] Postern ready." {
		t.Errorf("greeting %q", g)
	}
	if r := c.cmd("a", "LOGIN demo pw"); r[0] != "a OK [CAPABILITY IMAP4rev1 IMAP4rev2 IDLE MOVE] Logged in" {
		t.Errorf("LOGIN: %q", r)
	}
}

func TestPreauthCapability(t *testing.T) {
	for line, want := range map[string]string{
		"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] Logged in": "IMAP4rev1 IDLE",
		"* PREAUTH Logged in":                             "",
		"* PREAUTH":                                       "",
		"* PREAUTH [CAPABILITY IMAP4rev1":                 "",
		"* PREAUTH [CAPABILITY A\x01B] x":                 "",
	} {
		if got, ok := preauthCapability(line); !ok || got != want {
			t.Errorf("%q: %q %v, want %q", line, got, ok, want)
		}
	}
	for _, line := range []string{"* OK hello", "* BYE no", "* PREAUTHX", ""} {
		if _, ok := preauthCapability(line); ok {
			t.Errorf("%q taken for PREAUTH", line)
		}
	}
}
