package smtp

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// eofConn ends the input once the fuzzer's bytes have all been read, so
// that a session over net.Pipe ends without waiting for a timeout.
type eofConn struct {
	net.Conn
	mu   sync.Mutex
	left int
}

func (c *eofConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	left := c.left
	c.mu.Unlock()
	if left == 0 {
		return 0, io.EOF
	}
	if len(p) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.left -= n
	c.mu.Unlock()
	return n, err
}

// FuzzSession runs a whole session from the fuzzer's bytes against the
// fake handler, with STARTTLS and AUTH offered: it must never panic or
// hang. (A STARTTLS handshake fails on the fuzzer's bytes, so what
// follows a successful one is left to the unit tests.)
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<> SIZE=1\r\nRCPT TO:<reject@x.test>\r\nDATA\r\n",
		"EHLO x\r\nMAIL FROM:<用户@例子.广告> SMTPUTF8\r\nRCPT TO:<jörg@x.test> NOTIFY=NEVER ORCPT=rfc822;a+40b\r\nDATA\r\na\n.\nMAIL FROM:<e@x>\r\n.\r\nRSET\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<close@d.test>\r\n",
		"GET / HTTP/1.1\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n..\r\n\r.\r\n.\r\nNOOP\r\n",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN\r\nMAIL FROM:<a@b.test>\r\n",
		"EHLO x\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nAUTH PLAIN =\r\nAUTH LOGIN\r\n\r\n!!\r\n",
		"EHLO x\r\nAUTH PLAIN\r\nAGFsaWNlAHdyb25n\r\nAUTH CRAM-MD5\r\nSTARTTLS x\r\nSTARTTLS\r\nEHLO y\r\n",
		"STARTTLS\r\n\x16\x03\x01\x00\x05hello",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := &ServerConfig{
			Hostname: "mx.test", MaxSize: 200, MaxRecipients: 2, Timeout: 2 * time.Second,
			SessionTimeout: 5 * time.Second, ErrorSleep: -1, HardErrorLimit: 30,
			SMTPUTF8: true, DSN: true, LineLimit: 1000,
			TLS:  serverTLS(t),
			Auth: (&fakeAuth{}).check,
		}
		cli, srv := net.Pipe()
		defer cli.Close()
		s := NewSession(&eofConn{Conn: srv, left: len(in)}, cfg, &fakeHandler{})
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background()) }()
		go func() { _, _ = io.Copy(io.Discard, cli) }()
		go func() { _, _ = cli.Write(in) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session hangs on %q", in)
		}
		_ = s.Stats()
	})
}
