package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// tlsUsable reports whether c can serve a handshake at all: a server
// without a certificate fails every handshake, so STARTTLS is neither
// offered nor accepted (454 4.7.0, as Postfix says when its key cannot
// be loaded).
func tlsUsable(c *tls.Config) bool {
	return c != nil && (len(c.Certificates) > 0 || c.GetCertificate != nil || c.GetConfigForClient != nil)
}

// starttls runs the STARTTLS command (RFC 3207). ok reports a completed
// handshake; a non-nil error ends the session (the handshake failed, or
// the 220 could not be sent).
func (s *Session) starttls(ctx context.Context) (ok bool, err error) {
	switch {
	case s.tlsState != nil:
		s.fail(ctx, reply(503, "5.5.1", "Error: TLS already active"))
		return false, nil
	case !tlsUsable(s.cfg.TLS):
		s.cfg.Logf("warning: %s: STARTTLS refused: no server certificate configured", s.client)
		s.fail(ctx, reply(454, "4.7.0", "TLS not available due to local problem"))
		return false, nil
	case s.inMail:
		s.fail(ctx, reply(503, "5.5.1", "Error: MAIL transaction in progress"))
		return false, nil
	}
	s.send(reply(220, "2.0.0", "Ready to start TLS"), true)
	if err := s.bw.Flush(); err != nil {
		return false, s.readFailed(ctx, err)
	}
	// Whatever the client sent after STARTTLS before seeing the 220
	// came in the clear and could have been injected by a man in the
	// middle (CVE-2011-0411): it must never run as if it came over
	// TLS. Octets still in the kernel's buffer are read by the
	// handshake and make it fail.
	if n := s.br.Buffered(); n > 0 {
		_, _ = s.br.Discard(n)
		s.cfg.Logf("warning: %s: pipelined commands after STARTTLS discarded: %d octets", s.client, n)
	}
	if err := s.startTLS(ctx, tls.Server(s.conn, s.cfg.TLS)); err != nil {
		return false, err
	}
	s.br.Reset(s.io)
	return true, nil
}

// startTLS does the server side of the handshake on tc, which becomes the
// session's connection, and then forgets what the client said in the
// clear (RFC 3207 4.2): HELO/EHLO and AUTH. There is no transaction to
// forget: STARTTLS is refused inside one. The handshake is bounded like a
// command line, by Timeout and the session's time budget.
func (s *Session) startTLS(ctx context.Context, tc *tls.Conn) error {
	s.conn = tc
	err := s.io.handshake(ctx, tc)
	if err != nil {
		s.cfg.Logf("SSL_accept error from %s: %s", s.client, printable(err.Error(), 200))
		switch {
		case ctx.Err() != nil || errors.Is(err, errCanceled):
			s.cfg.Logf("shutdown after %s from %s", s.lastCmd, s.client)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return context.Canceled
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.cfg.Logf("timeout after %s from %s", s.lastCmd, s.client)
			return fmt.Errorf("smtp session with %s: %w after %s: %w", s.client, ErrTLSHandshake, s.lastCmd, ErrTimeout)
		default:
			s.cfg.Logf("lost connection after %s from %s", s.lastCmd, s.client)
			return fmt.Errorf("smtp session with %s: %w after %s: %w", s.client, ErrTLSHandshake, s.lastCmd, err)
		}
	}
	st := tc.ConnectionState()
	s.mu.Lock()
	s.tlsState = &st
	s.authUser = ""
	s.mu.Unlock()
	s.greeted, s.extended, s.helo = false, false, ""
	s.cfg.Logf("%s TLS connection established from %s: %s", tlsTrust(&st), s.client, tlsSummary(&st))
	if o, ok := s.h.(TLSObserver); ok {
		cp := st
		o.TLSStarted(&cp)
	}
	return nil
}

// handshake makes tc the connection that reads and writes go through and
// runs its handshake under one deadline for both directions.
func (c *connIO) handshake(ctx context.Context, tc *tls.Conn) error {
	d := time.Now().Add(c.timeout)
	if d.After(c.end) {
		d = c.end
	}
	c.mu.Lock()
	c.conn = tc
	if c.canceled {
		c.mu.Unlock()
		return errCanceled
	}
	err := tc.SetDeadline(d)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return tc.HandshakeContext(ctx)
}

// tlsTrust is the first word of Postfix's log line: whether the client
// showed a certificate, and whether it verified.
func tlsTrust(st *tls.ConnectionState) string {
	switch {
	case len(st.VerifiedChains) > 0:
		return "Trusted"
	case len(st.PeerCertificates) > 0:
		return "Untrusted"
	}
	return "Anonymous"
}

// tlsSummary describes a connection in Postfix's words:
// "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)".
func tlsSummary(st *tls.ConnectionState) string {
	name := tls.CipherSuiteName(st.CipherSuite)
	return fmt.Sprintf("%s with cipher %s (%s bits)", tlsVersion(st.Version), name, cipherBits(name))
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS-0x%04x", v)
}

// cipherBits gives OpenSSL's "used/algorithm" key sizes for the ciphers
// crypto/tls implements.
func cipherBits(name string) string {
	switch {
	case strings.Contains(name, "AES_128"):
		return "128/128"
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return "256/256"
	case strings.Contains(name, "3DES"):
		return "112/168"
	case strings.Contains(name, "RC4_128"):
		return "128/128"
	}
	return "0/0"
}
