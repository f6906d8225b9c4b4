package smtp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// MaxAuthLine is the longest SASL response line accepted, without its
// CRLF: RFC 4954 4 obliges a server to take 12288 octets.
const MaxAuthLine = 12288

// The LOGIN mechanism's challenges (draft-murchison-sasl-login):
// "Username:" and "Password:" in base64.
const (
	loginUserChallenge = "VXNlcm5hbWU6"
	loginPassChallenge = "UGFzc3dvcmQ6"
)

var errAuthFailed = reply(535, "5.7.8", "Error: authentication failed")

// auth runs the AUTH command (RFC 4954) with the PLAIN (RFC 4616) and
// LOGIN mechanisms. ok reports a successful login; a non-nil error ends
// the session (a read failed during the exchange).
//
// Nothing the client sends in the exchange is logged: the responses hold
// the password.
func (s *Session) auth(ctx context.Context, cmd Command) (ok bool, err error) {
	var r *Reply
	switch {
	case !s.greeted || !s.extended:
		r = reply(503, "5.5.1", "Error: send EHLO first")
	case s.authUser != "":
		r = reply(503, "5.5.1", "Error: already authenticated")
	case s.inMail:
		r = reply(503, "5.5.1", "Error: MAIL transaction in progress")
	case s.cfg.AuthNeedsTLS && s.tlsState == nil:
		r = reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
	case cmd.Arg != "PLAIN" && cmd.Arg != "LOGIN":
		r = reply(504, "5.5.4", "Unrecognized authentication type")
	}
	if r != nil {
		s.fail(ctx, r)
		return false, nil
	}
	var identity, user, pass, why string
	switch cmd.Arg {
	case "PLAIN":
		var resp []byte
		resp, r, why, err = s.saslResponse(cmd.Response, "")
		if r == nil && err == nil {
			identity, user, pass, why = parsePlain(resp)
		}
	case "LOGIN":
		var u, p []byte
		u, r, why, err = s.saslResponse(cmd.Response, loginUserChallenge)
		if r == nil && err == nil {
			p, r, why, err = s.saslResponse("", loginPassChallenge)
		}
		if r == nil && err == nil {
			user, pass = string(u), string(p)
			why = checkLogin(user, pass)
		}
	}
	if err != nil {
		return false, s.readFailed(ctx, err)
	}
	if r == nil && why != "" {
		r = errAuthFailed
	}
	if r == nil {
		r = s.checkAuth(ctx, identity, user, pass)
		if r != nil {
			why = firstLine(r.Text)
		}
	}
	if r != nil && r.Code/100 == 4 {
		// Not the client's fault (auth down, rate limit): a different
		// line, so that fail2ban's postfix-sasl filter does not count it.
		s.cfg.Logf("warning: %s: SASL %s authentication temporarily unavailable: %s", s.client, cmd.Arg, printable(why, 200))
		s.fail(ctx, r)
		return false, nil
	}
	if r != nil {
		s.cfg.Logf("warning: %s: SASL %s authentication failed: %s", s.client, cmd.Arg, printable(why, 200))
		s.fail(ctx, r)
		return false, nil
	}
	s.mu.Lock()
	s.authUser = user
	s.mu.Unlock()
	if o, ok := s.h.(AuthObserver); ok {
		o.Authenticated(user)
	}
	s.send(reply(235, "2.7.0", "Authentication successful"), true)
	return true, nil
}

// checkAuth asks the AuthFunc and checks what it says: only nil is a
// success, so that a confused AuthFunc can never let a client in.
func (s *Session) checkAuth(ctx context.Context, identity, user, pass string) *Reply {
	r := s.cfg.Auth(ctx, identity, user, pass)
	if r == nil {
		return nil
	}
	if (r.Code/100 == 4 || r.Code/100 == 5) && r.Code < 1000 {
		return r
	}
	s.cfg.Logf("warning: %s: auth function returned reply code %d", s.client, r.Code)
	return reply(454, "4.7.0", "Temporary authentication failure")
}

// saslResponse gets one client response: the initial response from the
// AUTH line when there is one, or else the reply to a 334 challenge. A
// refusal comes back as r with the reason to log; err is a read error.
func (s *Session) saslResponse(initial, challenge string) (data []byte, r *Reply, why string, err error) {
	line := initial
	if initial == "" {
		s.send(&Reply{Code: 334, Text: challenge}, false)
		b, tooLong, err := s.readAuthLine()
		if err != nil {
			return nil, nil, "", err
		}
		if tooLong {
			return nil, reply(500, "5.5.6", "Authentication Exchange line is too long"), "response line too long", nil
		}
		line = string(b)
	} else if initial == "=" {
		// RFC 4954 4: "=" is an empty initial response.
		return []byte{}, nil, "", nil
	}
	if line == "*" {
		return nil, reply(501, "5.0.0", "Authentication aborted"), "authentication aborted by client", nil
	}
	data, err = base64.StdEncoding.Strict().DecodeString(line)
	// The decoder skips CR and LF; a response must not hold them.
	if err != nil || strings.ContainsAny(line, "\r\n") {
		return nil, reply(501, "5.5.2", "Cannot decode response"), "cannot decode response", nil
	}
	return data, nil, "", nil
}

// readAuthLine reads one response line of at most MaxAuthLine octets
// without its line end (CRLF or, as for commands, a bare LF); a longer
// one is read to its end and reported, not returned.
func (s *Session) readAuthLine() (line []byte, tooLong bool, err error) {
	s.io.armRead()
	for {
		frag, err := s.br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > MaxAuthLine+2 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		break
	}
	if tooLong {
		return nil, true, nil
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > MaxAuthLine {
		return nil, true, nil
	}
	return line, false, nil
}

// parsePlain splits a PLAIN response, authzid NUL authcid NUL passwd (RFC
// 4616 2). why, when not empty, says what is wrong with it. An
// authorization identity other than the user's own is refused: nobody
// may act as another user here.
func parsePlain(resp []byte) (identity, user, pass, why string) {
	f := bytes.Split(resp, []byte{0})
	if len(f) != 3 {
		return "", "", "", "malformed PLAIN response"
	}
	identity, user, pass = string(f[0]), string(f[1]), string(f[2])
	if why = checkLogin(user, pass); why != "" {
		return "", "", "", why
	}
	if !utf8.ValidString(identity) {
		return "", "", "", "malformed PLAIN response"
	}
	if identity != "" && identity != user {
		return "", "", "", "authorization identity differs from authentication identity"
	}
	return identity, user, pass, ""
}

// checkLogin checks a user name and password before the AuthFunc sees
// them: UTF-8 without NUL (RFC 4616 SAFE), neither empty. An empty
// password is refused here once for every backend, so that none can
// take it for an anonymous bind.
func checkLogin(user, pass string) string {
	switch {
	case user == "":
		return "empty user name"
	case pass == "":
		return "empty password"
	case !utf8.ValidString(user) || !utf8.ValidString(pass) ||
		strings.IndexByte(user, 0) >= 0 || strings.IndexByte(pass, 0) >= 0:
		return "malformed response"
	}
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
