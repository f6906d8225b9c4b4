package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClientAgainstServer(t *testing.T) {
	h := &fakeHandler{}
	addr := ourServer(t, nil, h)
	c := mustDial(t, addr, nil)
	ext := c.Extensions()
	for _, k := range []string{"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES"} {
		if _, ok := ext[k]; !ok {
			t.Errorf("extension %s missing: %v", k, ext)
		}
	}
	if c.ServerName() != "mx.test" || c.Greeting() != "mx.test ESMTP Postern" || c.TLSState() != nil {
		t.Errorf("server name %q greeting %q tls %v", c.ServerName(), c.Greeting(), c.TLSState())
	}
	env := &Envelope{
		From: "alice@a.test", Size: 100, Body8Bit: true, Ret: "hdrs", EnvID: "id+1=x y",
		Rcpts: []Rcpt{
			{Addr: "bob@b.test", ORcpt: "rfc822;bob+x@b.test", Notify: []string{"success", "FAILURE"}},
			{Addr: "reject@b.test", Notify: []string{"NEVER", "DELAY"}}, // a bad NOTIFY is left out
			{Addr: "carol@b.test", ORcpt: "rfc822;\x01"},                // so is a bad ORCPT
		},
	}
	msg := "Subject: hi\r\n\r\n.\r\n..\r\n.x\r\nbare\rcr\nlf\r\n\r\n.\r\nend"
	res, err := send(t, c, env, msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got, want := resultsString(res), "0:250 2.0.0 end of DATA|1:550 5.1.1 RCPT TO|2:250 2.0.0 end of DATA"; got != want {
		t.Errorf("results %s, want %s", got, want)
	}
	if res[1].Text != "User unknown" || res[0].Text != "Ok" {
		t.Errorf("texts %q %q", res[0].Text, res[1].Text)
	}
	body, committed, _ := h.sink(t, 0).state()
	if want := "Subject: hi\r\n\r\n.\r\n..\r\n.x\r\nbare\r\ncr\r\nlf\r\n\r\n.\r\nend\r\n"; !committed || body != want {
		t.Errorf("server got %q (committed %v), want %q", body, committed, want)
	}
	h.mu.Lock()
	mp, rp := h.mparams[0], h.rparams
	h.mu.Unlock()
	if mp.Size != 100 || mp.Body != "8BITMIME" || mp.Ret != "HDRS" || mp.EnvID != "id+1=x y" || mp.SMTPUTF8 {
		t.Errorf("MAIL params %+v", mp)
	}
	if len(rp) != 3 || !reflect.DeepEqual(rp[0].Notify, []string{"SUCCESS", "FAILURE"}) || rp[0].ORcpt != "rfc822;bob+x@b.test" ||
		rp[1].Notify != nil || rp[2].ORcpt != "" {
		t.Errorf("RCPT params %+v", rp)
	}

	// The connection carries another message, after an explicit RSET.
	if err := c.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	res, err = send(t, c, envelope("dave@d.test"), "second\r\n")
	if err != nil || resultsString(res) != "0:250 2.0.0 end of DATA" {
		t.Fatalf("second Send: %s, %v", resultsString(res), err)
	}
	if body, _, _ := h.sink(t, 1).state(); body != "second\r\n" {
		t.Errorf("second message %q", body)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("Quit: %v", err)
	}
	if _, err := send(t, c, envelope("x@y.test"), "x"); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Send after Quit: %v", err)
	}
}

func TestClientPipelining(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.greet("PIPELINING", "SIZE 1000", "ENHANCEDSTATUSCODES")
		// Everything up to DATA comes before any reply.
		s.expect("MAIL FROM:<alice@a.test> SIZE=12")
		s.expect("RCPT TO:<bob@b.test>")
		s.expect("RCPT TO:<nobody@b.test>")
		s.expect("RCPT TO:<carol@b.test>")
		s.expect("DATA")
		s.send("250 2.1.0 Ok", "250 2.1.5 Ok", "550-5.1.1 No such", "550 5.1.1 user here", "250 2.1.5 Ok", "354 Go ahead")
		if d := s.data(); d != "Hello\r\n" {
			s.failf("data %q", d)
		}
		s.send("250 2.0.0 Queued as X")
		s.expect("QUIT")
		s.send("221 2.0.0 Bye")
	})
	c := mustDial(t, addr, nil)
	env := envelope("bob@b.test", "nobody@b.test", "carol@b.test")
	env.Size = 12
	res, err := send(t, c, env, "Hello\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resultsString(res), "0:250 2.0.0 end of DATA|1:550 5.1.1 RCPT TO|2:250 2.0.0 end of DATA"; got != want {
		t.Errorf("results %s, want %s", got, want)
	}
	if res[1].Text != "No such user here" || res[0].Text != "Queued as X" {
		t.Errorf("texts %q, %q", res[1].Text, res[0].Text)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

func TestClientNoPipelining(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.greet("8BITMIME")
		s.expect("MAIL FROM:<alice@a.test> BODY=8BITMIME")
		s.quiet(100 * time.Millisecond)
		s.send("250 ok")
		s.expect("RCPT TO:<bob@b.test>")
		s.quiet(100 * time.Millisecond)
		s.send("550 no")
		// No recipient: no DATA; the next transaction starts with RSET.
		s.expect("RSET")
		s.send("250 ok")
		s.expect("MAIL FROM:<alice@a.test>")
		s.send("250 ok")
		s.expect("RCPT TO:<bob@b.test>")
		s.send("250 ok")
		s.expect("DATA")
		s.quiet(100 * time.Millisecond)
		s.send("354 go")
		if d := s.data(); d != "x\r\n" {
			s.failf("data %q", d)
		}
		s.send("250 5.0.0 fine") // not a 2.x.x code: no enhanced code anyway
	})
	c := mustDial(t, addr, nil)
	env := envelope("bob@b.test")
	env.Body8Bit = true
	res, err := send(t, c, env, "x")
	if err != nil || resultsString(res) != "0:550  RCPT TO" || res[0].Text != "no" {
		t.Fatalf("first Send: %s %q, %v", resultsString(res), res[0].Text, err)
	}
	res, err = send(t, c, envelope("bob@b.test"), "x")
	if err != nil || resultsString(res) != "0:250  end of DATA" || res[0].Text != "5.0.0 fine" {
		t.Fatalf("second Send: %s %q, %v", resultsString(res), res[0].Text, err)
	}
}

func TestClientHELOFallback(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.send("220 old.test SMTP")
		s.expect("EHLO client.test")
		s.send("500 5.5.1 Command unrecognized")
		s.expect("HELO client.test")
		s.send("250 old.test")
		// No extensions: no parameters, and one command at a time.
		s.expect("MAIL FROM:<alice@a.test>")
		s.quiet(50 * time.Millisecond)
		s.send("250 ok")
		s.expect("RCPT TO:<bob@b.test>")
		s.send("250 ok")
		s.expect("DATA")
		s.send("354 go")
		s.data()
		s.send("250 2.0.0 ok")
	})
	c := mustDial(t, addr, nil)
	if len(c.Extensions()) != 0 || c.ServerName() != "old.test" {
		t.Errorf("extensions %v name %q", c.Extensions(), c.ServerName())
	}
	env := &Envelope{From: "alice@a.test", Size: 5, Body8Bit: true, Ret: "FULL", EnvID: "x",
		Rcpts: []Rcpt{{Addr: "bob@b.test", Notify: []string{"NEVER"}, ORcpt: "rfc822;bob@b.test"}}}
	res, err := send(t, c, env, "x\r\n")
	if err != nil || resultsString(res) != "0:250  end of DATA" || res[0].Text != "2.0.0 ok" {
		t.Fatalf("Send: %s %q, %v", resultsString(res), res[0].Text, err)
	}
}

func TestClientHelloRefused(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.send("220 busy.test ESMTP")
		s.expect("EHLO client.test")
		s.send("450 4.7.1 slow down")
	})
	var re *ReplyError
	if _, err := dial(t, addr, nil); !errors.As(err, &re) || re.Stage != "EHLO" || re.Code != 450 || re.Enhanced != "4.7.1" || re.Text != "slow down" {
		t.Errorf("Dial: %v", err)
	}
	addr = fakeServer(t, func(s *script) {
		s.send("220 busy.test ESMTP")
		s.expect("EHLO client.test")
		s.send("502 5.5.2 no")
		s.expect("HELO client.test")
		s.send("550 5.7.1 not you")
	})
	if _, err := dial(t, addr, nil); !errors.As(err, &re) || re.Stage != "HELO" || re.Code != 550 || re.Enhanced != "5.7.1" {
		t.Errorf("Dial: %v", err)
	}
	// Nobody listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	if _, err := dial(t, addr, nil); err == nil || errors.As(err, &re) {
		t.Errorf("Dial to a closed port: %v", err)
	}
}

func TestClientGreetingRefused(t *testing.T) {
	for _, tc := range []struct {
		greeting []string
		code     int
		enh      string
		text     string
		temp     bool
		msg      string
	}{
		{[]string{"421 4.3.2 busy, try later"}, 421, "4.3.2", "busy, try later", true, "421 4.3.2 busy, try later"},
		{[]string{"554-5.7.1 no mail", "554 5.7.1 from you"}, 554, "5.7.1", "no mail from you", false, "554 5.7.1 no mail from you"},
		{[]string{"554 go away"}, 554, "", "go away", false, "554 go away"},
	} {
		addr := fakeServer(t, func(s *script) {
			s.send(tc.greeting...)
			if tc.code != 421 { // after a 421 the server hangs up
				s.expect("QUIT")
			}
		})
		c, err := dial(t, addr, nil)
		var re *ReplyError
		if c != nil || !errors.As(err, &re) {
			t.Fatalf("Dial: %v", err)
		}
		if re.Stage != "greeting" || re.Code != tc.code || re.Enhanced != tc.enh || re.Text != tc.text || re.Temporary() != tc.temp {
			t.Errorf("%+v", re)
		}
		if want := "host mx.test[127.0.0.1] refused to talk to me: " + tc.msg; err.Error() != want {
			t.Errorf("Error() = %q, want %q", err.Error(), want)
		}
	}
}

func TestReplyErrorString(t *testing.T) {
	e := &ReplyError{Stage: "RCPT TO", Code: 450, Enhanced: "4.2.0", Text: "greylisted", Host: "mx.example.org[192.0.2.1]"}
	if got := e.Error(); got != "host mx.example.org[192.0.2.1] said: 450 4.2.0 greylisted (in reply to RCPT TO command)" {
		t.Errorf("%q", got)
	}
	if !e.Temporary() {
		t.Error("450 not temporary")
	}
	e = &ReplyError{Stage: "EHLO", Code: 500}
	if got := e.Error(); got != "host said: 500 (in reply to EHLO command)" {
		t.Errorf("%q", got)
	}
}

func TestClientDataRefused(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.greet("PIPELINING", "ENHANCEDSTATUSCODES")
		s.expect("MAIL FROM:<alice@a.test>")
		s.expect("RCPT TO:<a@b.test>")
		s.expect("RCPT TO:<b@b.test>")
		s.expect("DATA")
		s.send("250 2.1.0 ok", "250 2.1.5 ok", "250 2.1.5 ok", "452 4.3.1 Insufficient system storage")
		// The next transaction: RSET goes in the pipeline.
		s.expect("RSET")
		s.expect("MAIL FROM:<alice@a.test>")
		s.expect("RCPT TO:<a@b.test>")
		s.expect("DATA")
		s.send("250 2.0.0 ok", "250 2.1.0 ok", "250 2.1.5 ok", "354 go")
		s.data()
		s.send("250 2.0.0 ok")
		s.expect("RSET")
		s.send("250 2.0.0 ok")
	})
	c := mustDial(t, addr, nil)
	res, err := send(t, c, envelope("a@b.test", "b@b.test"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resultsString(res), "0:452 4.3.1 DATA|1:452 4.3.1 DATA"; got != want || res[0].Text != "Insufficient system storage" {
		t.Errorf("results %s %q, want %s", got, res[0].Text, want)
	}
	res, err = send(t, c, envelope("a@b.test"), "x")
	if err != nil || resultsString(res) != "0:250 2.0.0 end of DATA" {
		t.Fatalf("second Send: %s, %v", resultsString(res), err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
}

func TestClientNoRecipientAccepted(t *testing.T) {
	// Our server answers the pipelined DATA with 554; the body is not
	// sent and the connection goes on.
	h := &fakeHandler{}
	c := mustDial(t, ourServer(t, nil, h), nil)
	res, err := send(t, c, envelope("reject@b.test", "reject@c.test"), "never sent\r\n")
	if err != nil || resultsString(res) != "0:550 5.1.1 RCPT TO|1:550 5.1.1 RCPT TO" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	res, err = send(t, c, envelope("ok@b.test"), "sent\r\n")
	if err != nil || resultsString(res) != "0:250 2.0.0 end of DATA" {
		t.Fatalf("second Send: %s, %v", resultsString(res), err)
	}
	if body, _, _ := h.sink(t, 0).state(); body != "sent\r\n" {
		t.Errorf("sink %q", body)
	}

	// A refused MAIL is every recipient's result.
	res, err = send(t, c, &Envelope{From: "reject@a.test", Rcpts: []Rcpt{{Addr: "x@b.test"}, {Addr: "y@b.test"}}}, "x")
	if err != nil || resultsString(res) != "0:550 5.1.1 MAIL FROM|1:550 5.1.1 MAIL FROM" {
		t.Fatalf("refused MAIL: %s, %v", resultsString(res), err)
	}

	// A server that takes DATA anyway gets a lone dot (RFC 2920 3.1).
	addr := fakeServer(t, func(s *script) {
		s.greet("PIPELINING")
		s.expect("MAIL FROM:<alice@a.test>")
		s.expect("RCPT TO:<a@b.test>")
		s.expect("DATA")
		s.send("250 ok", "550 no", "354 go")
		if d := s.data(); d != "" {
			s.failf("data %q", d)
		}
		s.send("554 no valid recipients")
		s.expect("QUIT")
		s.send("221 bye")
	})
	c = mustDial(t, addr, nil)
	res, err = send(t, c, envelope("a@b.test"), "secret\r\n")
	if err != nil || resultsString(res) != "0:550  RCPT TO" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

func TestClientSizeLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSize = 1000
	h := &fakeHandler{}
	c := mustDial(t, ourServer(t, cfg, h), nil)
	if c.Extensions()["SIZE"] != "1000" {
		t.Errorf("SIZE %q", c.Extensions()["SIZE"])
	}
	env := envelope("a@b.test", "c@d.test")
	env.Size = 5000
	res, err := send(t, c, env, strings.Repeat("x", 5000))
	if err != nil || resultsString(res) != "0:552 5.3.4  local|1:552 5.3.4  local" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	if !strings.Contains(res[0].Text, "message size 5000 exceeds size limit 1000 of server mx.test[127.0.0.1]") {
		t.Errorf("text %q", res[0].Text)
	}
	env.Size = 500
	res, err = send(t, c, env, strings.Repeat("y", 498))
	if err != nil || resultsString(res) != "0:250 2.0.0 end of DATA|1:250 2.0.0 end of DATA" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.mparams) != 1 || h.mparams[0].Size != 500 {
		t.Errorf("server saw MAIL %+v", h.mparams)
	}
}

func TestClientSMTPUTF8(t *testing.T) {
	cfg := testConfig()
	cfg.SMTPUTF8 = false
	h := &fakeHandler{}
	c := mustDial(t, ourServer(t, cfg, h), nil)
	env := envelope("bob@b.test")
	env.SMTPUTF8 = true
	res, err := send(t, c, env, "x")
	if !errors.Is(err, ErrNoSMTPUTF8) || resultsString(res) != "0:553 5.6.7  local" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	// A non-ASCII address needs it too. The connection is still good.
	res, err = send(t, c, envelope("jörg@b.test"), "x")
	if !errors.Is(err, ErrNoSMTPUTF8) || resultsString(res) != "0:553 5.6.7  local" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	res, err = send(t, c, envelope("bob@b.test"), "x")
	if err != nil || res[0].Code != 250 {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}

	// A server with SMTPUTF8 gets the parameter.
	h = &fakeHandler{}
	c = mustDial(t, ourServer(t, nil, h), nil)
	env = &Envelope{From: "用户@例子.广告", Rcpts: []Rcpt{{Addr: "jörg@bücher.test", ORcpt: "rfc822;jörg@bücher.test"}}, EnvID: "ü"}
	res, err = send(t, c, env, "Subject: ü\r\n")
	if err != nil || res[0].Code != 250 {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.mparams[0].SMTPUTF8 || h.mparams[0].EnvID != "ü" || h.rparams[0].ORcpt != "rfc822;jörg@bücher.test" || h.rcpts[0].String() != "jörg@bücher.test" {
		t.Errorf("server saw %+v %+v %v", h.mparams, h.rparams, h.rcpts)
	}
}

func TestClientBadEnvelope(t *testing.T) {
	h := &fakeHandler{}
	c := mustDial(t, ourServer(t, nil, h), nil)
	if res, err := send(t, c, envelope(), "x"); err == nil || res != nil {
		t.Errorf("no recipients: %v %v", res, err)
	}
	if res, err := send(t, c, &Envelope{From: "a@b.test>\r\nRSET", Rcpts: []Rcpt{{Addr: "x@y.test"}}}, "x"); err == nil || res != nil {
		t.Errorf("bad sender: %v %v", res, err)
	}
	if _, err := c.Send(context.Background(), envelope("x@y.test"), nil); err == nil {
		t.Error("nil message accepted")
	}
	res, err := send(t, c, envelope("x@y.test\r\nRCPT TO:<evil@y.test>", "", "ok@y.test"), "x")
	if err != nil || resultsString(res) != "0:501 5.1.3  local|1:501 5.1.3  local|2:250 2.0.0 end of DATA" {
		t.Fatalf("Send: %s, %v", resultsString(res), err)
	}
	h.mu.Lock()
	if len(h.rcpts) != 1 || h.rcpts[0].String() != "ok@y.test" {
		t.Errorf("server saw %v", h.rcpts)
	}
	h.mu.Unlock()
	// The null sender is fine.
	if res, err := send(t, c, &Envelope{Rcpts: []Rcpt{{Addr: "x@y.test"}}}, "x"); err != nil || res[0].Code != 250 {
		t.Errorf("null sender: %s %v", resultsString(res), err)
	}
}

func TestClientSTARTTLS(t *testing.T) {
	tlsCfg := testConfig()
	tlsCfg.TLS = serverTLS(t)
	h := &fakeHandler{}
	addr := ourServer(t, tlsCfg, h)
	plainAddr := ourServer(t, nil, &fakeHandler{})
	_, pool := testCertificate(t)

	for _, tc := range []struct {
		name     string
		addr     string
		policy   TLSPolicy
		tls      *tls.Config
		wantTLS  bool
		verified bool
		err      error
	}{
		{"may", addr, TLSMay, nil, true, false, nil},
		{"may without TLS", plainAddr, TLSMay, nil, false, false, nil},
		{"none", addr, TLSNone, nil, false, false, nil},
		{"encrypt", addr, TLSEncrypt, &tls.Config{ServerName: "wrong.test"}, true, false, nil},
		{"encrypt without TLS", plainAddr, TLSEncrypt, nil, false, false, ErrTLSRequired},
		{"verify", addr, TLSVerify, &tls.Config{ServerName: "mx.test", RootCAs: pool}, true, true, nil},
		{"verify wrong name", addr, TLSVerify, &tls.Config{ServerName: "other.test", RootCAs: pool}, false, false, ErrTLSFailed},
		{"verify unknown CA", addr, TLSVerify, &tls.Config{ServerName: "mx.test", InsecureSkipVerify: true}, false, false, ErrTLSFailed},
		{"verify without TLS", plainAddr, TLSVerify, &tls.Config{ServerName: "mx.test", RootCAs: pool}, false, false, ErrTLSRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig()
			cfg.TLSPolicy, cfg.TLS = tc.policy, tc.tls
			c, err := dial(t, tc.addr, cfg)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || c != nil {
					t.Fatalf("Dial: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			st := c.TLSState()
			if (st != nil) != tc.wantTLS {
				t.Fatalf("TLS state %v", st)
			}
			if st != nil && (len(st.VerifiedChains) > 0) != tc.verified {
				t.Errorf("verified chains: %d", len(st.VerifiedChains))
			}
			if _, ok := c.Extensions()["STARTTLS"]; ok && tc.wantTLS {
				t.Errorf("extensions after TLS: %v", c.Extensions())
			}
			res, err := send(t, c, envelope("bob@b.test"), "over TLS\r\n")
			if err != nil || res[0].Code != 250 {
				t.Errorf("Send: %s %v", resultsString(res), err)
			}
			if err := c.Quit(); err != nil {
				t.Error(err)
			}
		})
	}
	if _, err := dial(t, addr, &ClientConfig{TLSPolicy: TLSVerify}); err == nil || !strings.Contains(err.Error(), "ServerName") {
		t.Errorf("verify without ServerName: %v", err)
	}
}

func TestClientSTARTTLSRefused(t *testing.T) {
	for _, policy := range []TLSPolicy{TLSMay, TLSEncrypt} {
		addr := fakeServer(t, func(s *script) {
			s.greet("STARTTLS")
			s.expect("STARTTLS")
			s.send("454 4.7.0 TLS not available due to local problem")
			if policy == TLSMay {
				s.expect("QUIT")
				s.send("221 bye")
			}
		})
		cfg := clientConfig()
		cfg.TLSPolicy = policy
		c, err := dial(t, addr, cfg)
		if policy == TLSMay {
			if err != nil || c.TLSState() != nil {
				t.Fatalf("may: %v", err)
			}
			if err := c.Quit(); err != nil {
				t.Error(err)
			}
			continue
		}
		var re *ReplyError
		if !errors.Is(err, ErrTLSRequired) || !errors.As(err, &re) || re.Code != 454 || re.Stage != "STARTTLS" {
			t.Errorf("encrypt: %v", err)
		}
	}

	// Cleartext after the 220 could be a man in the middle's.
	addr := fakeServer(t, func(s *script) {
		s.greet("STARTTLS")
		s.expect("STARTTLS")
		s.send("220 2.0.0 Ready", "250 injected")
	})
	cfg := clientConfig()
	cfg.TLSPolicy = TLSMay
	if _, err := dial(t, addr, cfg); !errors.Is(err, ErrTLSFailed) {
		t.Errorf("injection: %v", err)
	}
}

func TestClientAuth(t *testing.T) {
	scfg := tlsConfig(t) // AUTH only over TLS
	fa := &fakeAuth{}
	scfg.Auth = fa.check
	addr := ourServer(t, scfg, &fakeHandler{})

	cfg := clientConfig()
	cfg.TLSPolicy = TLSEncrypt
	cfg.Auth = &ClientAuth{User: "alice", Password: "secret"}
	c := mustDial(t, addr, cfg)
	if seen := fa.seen(); len(seen) != 1 || seen[0] != "/alice/secret" {
		t.Errorf("auth saw %v", seen)
	}
	if res, err := send(t, c, envelope("bob@b.test"), "x"); err != nil || res[0].Code != 250 {
		t.Errorf("Send: %s %v", resultsString(res), err)
	}

	cfg.Auth = &ClientAuth{User: "alice", Password: "wrong"}
	_, err := dial(t, addr, cfg)
	var re *ReplyError
	if !errors.As(err, &re) || re.Stage != "AUTH" || re.Code != 535 || re.Enhanced != "5.7.8" {
		t.Errorf("wrong password: %v", err)
	}

	// Not over a connection without TLS ...
	cfg.TLSPolicy = TLSNone
	cfg.Auth = &ClientAuth{User: "alice", Password: "secret"}
	if _, err := dial(t, addr, cfg); !errors.Is(err, ErrAuthUnavailable) {
		t.Errorf("without TLS: %v", err)
	}
	// ... unless allowed, and the server agrees.
	scfg2, fa2 := authConfig()
	cfg.Auth.AllowPlainAuth = true
	mustDial(t, ourServer(t, scfg2, &fakeHandler{}), cfg)
	if seen := fa2.seen(); len(seen) != 1 || seen[0] != "/alice/secret" {
		t.Errorf("auth saw %v", seen)
	}
	// A server without AUTH.
	if _, err := dial(t, ourServer(t, nil, &fakeHandler{}), cfg); !errors.Is(err, ErrAuthUnavailable) {
		t.Errorf("no AUTH offered: %v", err)
	}
	if _, err := dial(t, addr, &ClientConfig{Auth: &ClientAuth{User: "a\x00b"}}); err == nil {
		t.Error("NUL in user name accepted")
	}
}

func TestClientAuthLogin(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.greet("AUTH=LOGIN", "ENHANCEDSTATUSCODES")
		s.expect("AUTH LOGIN")
		s.send("334 VXNlcm5hbWU6")
		s.expect(base64.StdEncoding.EncodeToString([]byte("alice")))
		s.send("334 UGFzc3dvcmQ6")
		s.expect(base64.StdEncoding.EncodeToString([]byte("pä ss")))
		s.send("235 2.7.0 Authentication successful")
		s.expect("QUIT")
		s.send("221 bye")
	})
	cfg := clientConfig()
	cfg.Auth = &ClientAuth{User: "alice", Password: "pä ss", AllowPlainAuth: true}
	c := mustDial(t, addr, cfg)
	if err := c.Quit(); err != nil {
		t.Error(err)
	}

	// A challenge too many is cancelled.
	addr = fakeServer(t, func(s *script) {
		s.greet("AUTH PLAIN")
		s.expect("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw")))
		s.send("334 more?")
		s.expect("*")
		s.send("501 5.0.0 Authentication aborted")
	})
	cfg.Auth.Password = "pw"
	var re *ReplyError
	if _, err := dial(t, addr, cfg); !errors.As(err, &re) || re.Code != 501 {
		t.Errorf("extra challenge: %v", err)
	}
}

func TestClientLMTP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lmtp")
	fakeServerOn(t, "unix", path, func(s *script) {
		s.send("220 store.test LMTP")
		s.expect("LHLO client.test")
		s.send("250-store.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 8BITMIME")
		s.expect("MAIL FROM:<alice@a.test>")
		s.expect("RCPT TO:<a@store.test>")
		s.expect("RCPT TO:<b@store.test>")
		s.expect("RCPT TO:<c@store.test>")
		s.expect("DATA")
		s.send("250 2.1.0 ok", "250 2.1.5 ok", "550 5.1.1 no such user", "250 2.1.5 ok", "354 go")
		s.data()
		s.send("250 2.0.0 <a@store.test> delivered", "452 4.2.2 <c@store.test> mailbox full")
		s.expect("QUIT")
		s.send("221 bye")
	})
	cfg := clientConfig()
	cfg.LMTP = true
	ctx := context.Background()
	c, err := Dial(ctx, "unix", path, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Send(ctx, envelope("a@store.test", "b@store.test", "c@store.test"), strings.NewReader("hi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resultsString(res), "0:250 2.0.0 end of DATA|1:550 5.1.1 RCPT TO|2:452 4.2.2 end of DATA"; got != want {
		t.Errorf("results %s, want %s", got, want)
	}
	if res[2].Text != "<c@store.test> mailbox full" {
		t.Errorf("text %q", res[2].Text)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}

	// LHLO refused: no HELO for LMTP.
	addr := fakeServer(t, func(s *script) {
		s.send("220 store.test LMTP")
		s.expect("LHLO client.test")
		s.send("500 5.5.1 what?")
	})
	var re *ReplyError
	if _, err := dial(t, addr, cfg); !errors.As(err, &re) || re.Stage != "LHLO" {
		t.Errorf("LHLO refused: %v", err)
	}
}

func TestClientTimeouts(t *testing.T) {
	// A server that never greets.
	addr := fakeServer(t, func(s *script) {
		time.Sleep(700 * time.Millisecond)
	})
	cfg := clientConfig()
	cfg.Greeting = 200 * time.Millisecond
	start := time.Now()
	if _, err := dial(t, addr, cfg); !errors.Is(err, ErrTimeout) || time.Since(start) > 3*time.Second {
		t.Errorf("greeting: %v after %v", err, time.Since(start))
	}

	// A server that never answers the end of data.
	addr = fakeServer(t, func(s *script) {
		s.greet("PIPELINING")
		s.expect("MAIL FROM:<alice@a.test>")
		s.expect("RCPT TO:<a@b.test>")
		s.expect("RCPT TO:<b@b.test>")
		s.expect("DATA")
		s.send("250 ok", "550 no", "250 ok", "354 go")
		s.data()
		time.Sleep(700 * time.Millisecond)
	})
	cfg = clientConfig()
	cfg.DataDone = 200 * time.Millisecond
	c := mustDial(t, addr, cfg)
	res, err := send(t, c, envelope("a@b.test", "b@b.test"), "x")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Send: %v", err)
	}
	if got := resultsString(res); got != "0:550  RCPT TO|1:451 4.4.2  local" {
		t.Errorf("results %s", got)
	}
	if want := "conversation with mx.test[127.0.0.1] timed out while sending end of data -- message may be sent more than once"; !strings.Contains(res[1].Text, want) {
		t.Errorf("text %q", res[1].Text)
	}
	// The connection is unusable now.
	if res, err := send(t, c, envelope("a@b.test"), "x"); !errors.Is(err, ErrTimeout) || res[0].Code != 451 {
		t.Errorf("Send after timeout: %s %v", resultsString(res), err)
	}
}

func TestClientCancel(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.greet()
		s.expect("MAIL FROM:<alice@a.test>")
		time.Sleep(700 * time.Millisecond)
	})
	c := mustDial(t, addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res, err := c.Send(ctx, envelope("a@b.test"), strings.NewReader("x"))
	if !errors.Is(err, context.Canceled) || time.Since(start) > 3*time.Second || res[0].Code != 451 {
		t.Errorf("Send: %s %v after %v", resultsString(res), err, time.Since(start))
	}

	// A context deadline cuts the stage's timeout short.
	addr = fakeServer(t, func(s *script) { time.Sleep(700 * time.Millisecond) })
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := Dial(ctx, "tcp", addr, nil, clientConfig()); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("Dial: %v after %v", err, time.Since(start))
	}
}

func TestClientFlood(t *testing.T) {
	flood := func(first, chunk string) string {
		return fakeServer(t, func(s *script) {
			if _, err := s.conn.Write([]byte(first)); err != nil {
				return
			}
			b := []byte(strings.Repeat(chunk, 4096/len(chunk)+1))
			s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, err := s.conn.Write(b); err != nil {
					return
				}
			}
		})
	}
	for name, addr := range map[string]string{
		"endless line":  flood("220 ", "a"),
		"endless reply": flood("", "220-hello\r\n"),
	} {
		start := time.Now()
		_, err := dial(t, addr, nil)
		if !errors.Is(err, ErrBadReply) || time.Since(start) > 3*time.Second {
			t.Errorf("%s: %v after %v", name, err, time.Since(start))
		}
	}
}

func TestClient421(t *testing.T) {
	addr := fakeServer(t, func(s *script) {
		s.greet("PIPELINING", "ENHANCEDSTATUSCODES")
		s.expect("MAIL FROM:<alice@a.test>")
		s.expect("RCPT TO:<a@b.test>")
		s.expect("RCPT TO:<b@b.test>")
		s.expect("RCPT TO:<c@b.test>")
		s.expect("DATA")
		s.send("250 2.1.0 ok", "550 5.1.1 unknown", "421 4.3.2 shutting down")
	})
	c := mustDial(t, addr, nil)
	res, err := send(t, c, envelope("a@b.test", "b@b.test", "c@b.test"), "x")
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 421 || re.Stage != "RCPT TO" {
		t.Fatalf("Send: %v", err)
	}
	if got, want := resultsString(res), "0:550 5.1.1 RCPT TO|1:421 4.3.2 RCPT TO|2:421 4.3.2 RCPT TO"; got != want {
		t.Errorf("results %s, want %s", got, want)
	}
	if err := c.Reset(); !errors.As(err, &re) {
		t.Errorf("Reset after 421: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("Quit after 421: %v", err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, bytes.Repeat([]byte("line\r\n"), len(p)/6+1)[:min(len(p), r.n)])
	r.n -= n
	return n, nil
}

func TestClientMessageReadError(t *testing.T) {
	h := &fakeHandler{}
	c := mustDial(t, ourServer(t, nil, h), nil)
	res, err := c.Send(context.Background(), envelope("a@b.test", "reject@b.test"), &failingReader{n: 100 << 10})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Send: %v", err)
	}
	if got := resultsString(res); got != "0:451 4.3.0  local|1:550 5.1.1 RCPT TO" {
		t.Errorf("results %s", got)
	}
	// The server never commits a truncated message.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, committed, aborted := h.sink(t, 0).state()
		if committed {
			t.Fatal("truncated message committed")
		}
		if aborted != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sink neither committed nor aborted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientManyRecipientsPipelined(t *testing.T) {
	// A pipeline far longer than the socket buffers, to a server that
	// answers each command as it reads it: a client that wrote it all
	// before reading would wait for the server, which would wait for
	// the client.
	const n = 20000
	long := strings.Repeat("x", 100)
	addr := fakeServer(t, func(s *script) {
		tc := s.conn.(*net.TCPConn)
		tc.SetReadBuffer(64 << 10)
		tc.SetWriteBuffer(64 << 10)
		s.greet("PIPELINING")
		for {
			switch l := s.line(); {
			case l == "DATA":
				s.send("354 go")
				s.data()
				s.send("250 ok")
				return
			case strings.HasPrefix(l, "RCPT") || strings.HasPrefix(l, "MAIL"):
				s.send("250 " + long)
			default:
				s.failf("unexpected %q", l)
			}
		}
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	c, err := NewClient(conn, clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	env := envelope()
	for i := 0; i < n; i++ {
		env.Rcpts = append(env.Rcpts, Rcpt{Addr: long[:50] + strconv.Itoa(i) + "@" + long[:50] + ".test"})
	}
	res, err := send(t, c, env, "x")
	if err != nil || len(res) != n || res[n-1].Code != 250 {
		t.Fatalf("Send: %v %d", err, len(res))
	}
}

func TestReadClientReply(t *testing.T) {
	for _, tc := range []struct {
		in       string
		enh      bool
		code     int
		enhanced string
		lines    []string
		err      error
	}{
		{"250 ok\r\n", false, 250, "", []string{"ok"}, nil},
		{"250-a\r\n250-b\n250 c\r\n", false, 250, "", []string{"a", "b", "c"}, nil},
		{"250\r\n", false, 250, "", []string{""}, nil},
		{"250 2.1.0 ok\r\n", true, 250, "2.1.0", []string{"ok"}, nil},
		{"250 2.1.0 ok\r\n", false, 250, "", []string{"2.1.0 ok"}, nil},
		{"550-5.1.1 a\r\n550 5.1.1 b\r\n", true, 550, "5.1.1", []string{"a", "b"}, nil},
		{"550 4.1.1 x\r\n", true, 550, "", []string{"4.1.1 x"}, nil},
		{"550 5.1.1\r\n", true, 550, "5.1.1", []string{""}, nil},
		{"550 5.1 x\r\n", true, 550, "", []string{"5.1 x"}, nil},
		{"250 a\x00b\x1b\tc \xff\xfeü\u0085\r\n", false, 250, "", []string{"a?b? c ??ü?"}, nil},
		{"250 a\rb\r\n", false, 250, "", []string{"a?b"}, nil},
		{"25\r\n", false, 0, "", nil, ErrBadReply},
		{"250x\r\n", false, 0, "", nil, ErrBadReply},
		{"2500\r\n", false, 0, "", nil, ErrBadReply},
		{"150 x\r\n", false, 0, "", nil, ErrBadReply},
		{"260 x\r\n", false, 0, "", nil, ErrBadReply},
		{"abc\r\n", false, 0, "", nil, ErrBadReply},
		{"250-a\r\n251 b\r\n", false, 0, "", nil, ErrBadReply},
		{"250 " + strings.Repeat("a", MaxClientReplyLine) + "\r\n", false, 0, "", nil, ErrBadReply},
		{strings.Repeat("250-a\r\n", MaxClientReplyLines) + "250 b\r\n", false, 0, "", nil, ErrBadReply},
		{"250-a\r\n", false, 0, "", nil, io.ErrUnexpectedEOF},
		{"250 a", false, 0, "", nil, io.ErrUnexpectedEOF},
		{"", false, 0, "", nil, io.EOF},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), MaxClientReplyLine)
		r, err := readClientReply(br, tc.enh)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: err %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || r.code != tc.code || r.enhanced != tc.enhanced || !reflect.DeepEqual(r.lines, tc.lines) {
			t.Errorf("%q: %+v %v", tc.in, r, err)
		}
	}
	// The longest line that is allowed.
	in := "250 " + strings.Repeat("a", MaxClientReplyLine-6) + "\r\n"
	if _, err := readClientReply(bufio.NewReaderSize(strings.NewReader(in), MaxClientReplyLine), false); err != nil {
		t.Errorf("line of %d octets: %v", len(in), err)
	}
}

func TestParseExtensions(t *testing.T) {
	got := parseExtensions([]string{"PIPELINING", "size 1000", "AUTH=LOGIN", "auth  PLAIN LOGIN ", "8BITMIME", "bad!kw", "-x", ""})
	want := map[string]string{"PIPELINING": "", "SIZE": "1000", "AUTH": "PLAIN LOGIN", "8BITMIME": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%v", got)
	}
	got = parseExtensions([]string{"AUTH=LOGIN PLAIN"})
	if got["AUTH"] != "LOGIN PLAIN" {
		t.Errorf("%v", got)
	}
}

func TestXtextEncode(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		utf8OK  bool
		ok      bool
	}{
		{"a+b=c d", "a+2Bb+3Dc+20d", false, true},
		{"jörg", "", false, false},
		{"jörg", "jörg", true, true},
		{"a\r\nb", "", true, false},
		{"\xff", "", true, false},
	} {
		out, ok := encodeXtext(tc.in, tc.utf8OK)
		if out != tc.out || ok != tc.ok {
			t.Errorf("%q: %q %v", tc.in, out, ok)
			continue
		}
		if ok {
			if dec, ok := decodeXtext(out, tc.utf8OK); !ok || dec != tc.in {
				t.Errorf("%q: decodes to %q %v", tc.in, dec, ok)
			}
		}
	}
}

// normalized is what the server must get for content: every CRLF, bare
// CR and bare LF a CRLF, and a last line ended.
func normalized(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

// stuff runs content through a dotWriter in pieces of size n.
func dotStuff(content string, n int) string {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	d := newDotWriter(bw)
	for i := 0; i < len(content); i += n {
		d.Write([]byte(content[i:min(i+n, len(content))]))
	}
	d.finish()
	bw.Flush()
	return b.String()
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct{ in, wire string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{"..\r\n", "...\r\n.\r\n"},
		{"a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\n.\nb\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r.\r\n", "a\r\n..\r\n.\r\n"},                       // bare CR, then a dot line
		{"a\r\r\n.", "a\r\n\r\n..\r\n.\r\n"},                   // CR CR LF
		{"\r\n.\r\n", "\r\n..\r\n.\r\n"},                       // a dot line after an empty line
		{"x\n\r.\r", "x\r\n\r\n..\r\n.\r\n"},                   // LF CR: two line ends
		{".a\r\n..b", "..a\r\n...b\r\n.\r\n"},                  // every leading dot
		{"a.b\r\n c.\r\n", "a.b\r\n c.\r\n.\r\n"},              // dots elsewhere stay
		{"\r", "\r\n.\r\n"},                                    // a lone CR is a line end
		{"\n", "\r\n.\r\n"},                                    // so is a lone LF
		{"x\r\n\r\n", "x\r\n\r\n.\r\n"},                        // an empty last line
		{"a\r\n.\r", "a\r\n..\r\n.\r\n"},                       // smuggling attempt: "\r\n.\r"
		{"a\n.\r\nMAIL FROM", "a\r\n..\r\nMAIL FROM\r\n.\r\n"}, // and "\n.\r\n"
	} {
		for _, n := range []int{1, 2, 3, 1 << 20} {
			if got := dotStuff(tc.in, n); got != tc.wire {
				t.Errorf("%q in pieces of %d: %q, want %q", tc.in, n, got, tc.wire)
			}
		}
	}
}

// FuzzDotWriter checks that the server's reader gets back exactly the
// normalized content, whatever it holds and however it is cut: no line
// escapes stuffing and nothing is lost.
func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{"", ".", "a\r\n.\r\nb", "\r.\r", "\n.\n", "..\r\n\r\n.", "x\r\r\n.\r"} {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, content string, cut uint8) {
		if len(content) > 4096 {
			return
		}
		wire := dotStuff(content, int(cut)+1)
		dr := NewDataReader(bufio.NewReader(strings.NewReader(wire+"after")), 1<<20, 0)
		var out bytes.Buffer
		res, err := dr.Copy(&out)
		if err != nil || !res.OK() {
			t.Fatalf("%q: wire %q read as %+v, %v", content, wire, res, err)
		}
		if out.String() != normalized(content) {
			t.Fatalf("%q: got %q, want %q", content, out.String(), normalized(content))
		}
		if rest, _ := io.ReadAll(dr.r); string(rest) != "after" {
			t.Fatalf("%q: end of data at the wrong place, left %q", content, rest)
		}
	})
}

// fuzzConn is a connection whose peer says the fuzzer's bytes and then
// hangs up, and swallows whatever the client writes.
type fuzzConn struct {
	r *bytes.Reader
}

func (c *fuzzConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 25} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzClientReplies feeds arbitrary server bytes to a whole client
// conversation: it must never panic or hang, and must always give one
// result per recipient.
func FuzzClientReplies(f *testing.F) {
	ok := "220 fake.test ESMTP\r\n250-fake.test\r\n250-PIPELINING\r\n250-SIZE 100\r\n250-DSN\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n"
	for _, s := range []string{
		ok + "235 ok\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n250 2.0.0 ok\r\n250 ok\r\n221 bye\r\n",
		ok + "235 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 a\r\n452 b\r\n550 c\r\n",
		"220 x\r\n500 no\r\n250 x\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
		"220 x\r\n250-x\r\n250 STARTTLS\r\n220 go\r\n\x16\x03\x03\x00\x10garbage",
		"220 x\r\n250-x\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n",
		"554 5.7.1 go away\r\n",
		"220-x\r\n221 y\r\n",
		"220 x\r\n250 x\r\n421 bye\r\n",
		ok + "235 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 weird\r\n",
	} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(7), []byte(s))
	}
	f.Fuzz(func(t *testing.T, flags uint8, in []byte) {
		cfg := clientConfig()
		cfg.LMTP = flags&1 != 0
		if flags&2 != 0 {
			cfg.TLSPolicy = TLSMay
		}
		if flags&4 != 0 {
			cfg.Auth = &ClientAuth{User: "u", Password: "p", AllowPlainAuth: true}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := NewClient(&fuzzConn{r: bytes.NewReader(in)}, cfg)
			if err != nil {
				return
			}
			_ = c.Extensions()
			env := &Envelope{From: "a@b.test", Size: 10, SMTPUTF8: flags&8 != 0, Ret: "FULL", EnvID: "x",
				Rcpts: []Rcpt{{Addr: "c@d.test", Notify: []string{"FAILURE"}, ORcpt: "rfc822;c@d.test"}, {Addr: "e@d.test"}, {Addr: "f@d.test"}}}
			for i := 0; i < 2; i++ {
				res, _ := c.Send(context.Background(), env, strings.NewReader("Subject: x\r\n\r\n.\r\nbody\n"))
				if len(res) != 3 {
					t.Errorf("%d results", len(res))
				}
				for _, r := range res {
					if r.Code < 200 || r.Code > 599 {
						t.Errorf("result code %d", r.Code)
					}
				}
			}
			_ = c.Reset()
			_ = c.Quit()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("client hangs on %q", in)
		}
	})
}
