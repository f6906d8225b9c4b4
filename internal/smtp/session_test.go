package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	netsmtp "net/smtp"
	"strings"
	"testing"
	"time"
)

func TestBasicSession(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSize = 10240000
	h := &fakeHandler{commit: &Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued as 9A3F0C12B4"}}
	c := startSession(t, cfg, h)
	c.expect("220 mx.test ESMTP Postern")
	ehlo := c.cmd("EHLO client.test", "250-mx.test")
	want := "250-mx.test\n250-PIPELINING\n250-SIZE 10240000\n250-8BITMIME\n250-ENHANCEDSTATUSCODES\n250-SMTPUTF8\n250 DSN"
	if ehlo != want {
		t.Errorf("EHLO reply\n%s\nwant\n%s", ehlo, want)
	}
	c.cmd("MAIL FROM:<alice@Example.ORG> BODY=8BITMIME SIZE=100", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<bob@here.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<postmaster>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: hi\r\n\r\nHello\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as 9A3F0C12B4")
	c.cmd("NOOP", "250 2.0.0 Ok")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("VRFY bob", "252 2.5.2 ")
	c.cmd("EXPN list", "502 5.5.1 ")
	c.cmd("HELP", "214 2.0.0 ")
	c.cmd("QUIT", "221 2.0.0 Bye")
	if err := c.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.closed()
	body, committed, aborted := h.sink(t, 0).state()
	if body != "Subject: hi\r\n\r\nHello\r\n" || !committed || aborted != "" {
		t.Errorf("sink: %q committed=%v aborted=%q", body, committed, aborted)
	}
	if h.froms[0].String() != "alice@example.org" || h.mparams[0].Body != "8BITMIME" || h.mparams[0].Size != 100 {
		t.Errorf("mail: %v %+v", h.froms, h.mparams)
	}
	if h.rcpts[1].Local != "postmaster" || h.rcpts[1].Domain != "" {
		t.Errorf("bare postmaster: %#v", h.rcpts[1])
	}
	stats := c.srv.Stats()
	if stats != "ehlo=1 mail=1 rcpt=2 data=1 rset=1 noop=1 vrfy=1 expn=0/1 help=1 quit=1 commands=10/11" {
		t.Errorf("stats %q", stats)
	}
	if !c.logs.has("connect from unknown[pipe]") || !c.logs.has("disconnect from unknown[pipe] ehlo=1") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestEHLOWithoutOptions(t *testing.T) {
	cfg := testConfig()
	cfg.SMTPUTF8, cfg.DSN = false, false
	c := startSession(t, cfg, nil)
	c.expect("220 ")
	ehlo := c.cmd("EHLO client.test", "250-mx.test")
	for _, no := range []string{"DSN", "SMTPUTF8", "CHUNKING", "STARTTLS"} {
		if strings.Contains(ehlo, no) {
			t.Errorf("EHLO advertises %s:\n%s", no, ehlo)
		}
	}
	if !strings.Contains(ehlo, "250-SIZE\n") {
		t.Errorf("SIZE without limit not advertised bare:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<a@b.test> SMTPUTF8", "555 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> RET=FULL", "555 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> ENVID=x", "555 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> XFOO=1", "555 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test> NOTIFY=NEVER", "555 5.5.4 ")
	c.cmd("RCPT TO:<c@d.test> ORCPT=rfc822;c@d.test", "555 5.5.4 ")
	c.cmd("BDAT 10 LAST", "502 5.5.1 ")
	c.cmd("STARTTLS", "502 5.5.1 ")
}

func TestHELOSession(t *testing.T) {
	c := startSession(t, nil, nil)
	c.expect("220 ")
	c.cmd("HELO client.test", "250 mx.test")
	c.cmd("MAIL FROM:<a@b.test> SIZE=10", "555 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test>", "250 2.1.0")
	c.cmd("RCPT TO:<c@d.test>", "250 2.1.5")
	c.cmd("QUIT", "221 ")
	c.wait()
	if !c.logs.has("helo=1 mail=1/2 rcpt=1 quit=1 commands=4/5") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

// The examples of RFC 2920 section 3: replies to a pipelined group go out
// together, once the server has consumed the group.
func TestPipeliningRFC2920(t *testing.T) {
	h := &fakeHandler{commit: &Reply{Code: 250, Text: "message sent"}}
	c := startSession(t, nil, h)
	c.ehlo()
	nw := len(c.srvc.Writes())
	c.send("MAIL FROM:<mrose@dbc.mtview.ca.us>\r\nRCPT TO:<ned@innosoft.com>\r\nRCPT TO:<dan@innosoft.com>\r\nRCPT TO:<kvc@innosoft.com>\r\nDATA\r\n")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("250 2.1.5")
	c.expect("250 2.1.5")
	c.expect("354 ")
	w := c.srvc.Writes()[nw:]
	if len(w) != 1 {
		t.Errorf("replies to the group came in %d writes: %q", len(w), w)
	}
	nw += len(w)
	c.send("Date: Thu, 21 May 1998 05:33:29 -0700\r\nFrom: Marshall Rose\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	c.expect("250 2.0.0 message sent")
	c.expect("221 2.0.0 Bye")
	c.wait()
	if w := c.srvc.Writes()[nw:]; len(w) != 1 {
		t.Errorf("replies to end of data and QUIT came in %d writes: %q", len(w), w)
	}

	// The second example: one recipient refused inside the group.
	h = &fakeHandler{}
	c = startSession(t, nil, h)
	c.ehlo()
	c.send("MAIL FROM:<mrose@dbc.mtview.ca.us>\r\nRCPT TO:<reject@innosoft.com>\r\nRCPT TO:<dan@innosoft.com>\r\nRCPT TO:<kvc@innosoft.com>\r\nDATA\r\n")
	c.expect("250 2.1.0")
	c.expect("550 5.1.1 User unknown")
	c.expect("250 2.1.5")
	c.expect("250 2.1.5")
	c.expect("354 ")
	c.send("body\r\n.\r\nQUIT\r\n")
	c.expect("250 2.0.0 Ok")
	c.expect("221 ")
	if !c.logs.has("NOQUEUE: reject: RCPT from unknown[pipe]: 550 5.1.1 User unknown; from=<mrose@dbc.mtview.ca.us> to=<reject@innosoft.com> proto=ESMTP helo=<client.test>") {
		t.Errorf("logs:\n%s", c.logs)
	}

	// Every recipient refused: DATA fails, and the message text the
	// client then sends must not be taken as a message.
	h = &fakeHandler{}
	c = startSession(t, nil, h)
	c.ehlo()
	c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<reject@innosoft.com>\r\nRCPT TO:<reject@x.test>\r\nDATA\r\nRSET\r\n")
	c.expect("250 2.1.0")
	c.expect("550 ")
	c.expect("550 ")
	c.expect("554 5.5.1 Error: no valid recipients")
	c.expect("250 2.0.0")
	if len(h.sinks) != 0 {
		t.Error("a sink was opened without recipients")
	}
}

func TestSequenceErrors(t *testing.T) {
	c := startSession(t, nil, nil)
	c.expect("220 ")
	c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO client.test", "250-")
	c.cmd("RCPT TO:<c@d.test>", "503 5.5.1 Error: need MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need MAIL command")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 Error: nested MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command")
	c.cmd("RCPT TO:<>", "501 5.1.3 ")
	c.cmd("RCPT TO:c@d.test", "501 5.5.2 ")
	c.cmd("RCPT TO:<c@d.test", "501 5.5.2 ")
	c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<postmaster>", "501 5.1.7 ")
	c.cmd("MAIL FROM:<>", "250 ")
	// A new EHLO resets the transaction.
	c.cmd("EHLO client.test", "250-")
	c.cmd("RCPT TO:<c@d.test>", "503 5.5.1 ")
	c.cmd("DATA extra", "501 5.5.4 ")
	c.cmd("RSET extra", "501 5.5.4 ")
	c.cmd("QUIT now", "501 5.5.4 ")
	c.cmd("EHLO", "501 5.5.2 ")
	c.cmd("VRFY", "501 5.5.4 ")
	c.cmd("FROB", "500 5.5.1 Error: command not recognized")
	c.cmd("", "500 5.5.2 ")
}

func TestHelloRefused(t *testing.T) {
	h := &fakeHandler{helloRej: &Reply{Code: 550, Enhanced: "5.7.1", Text: "<bad>: Helo command rejected"}}
	c := startSession(t, nil, h)
	c.expect("220 ")
	c.cmd("EHLO bad", "550 5.7.1 <bad>: Helo command rejected")
	c.cmd("MAIL FROM:<a@b.test>", "503 5.5.1 ")
}

func TestHandlerReplies(t *testing.T) {
	c := startSession(t, nil, nil)
	c.ehlo()
	c.cmd("MAIL FROM:<accept@b.test>", "250 2.1.0 Sender fine")
	c.cmd("RCPT TO:<tempfail@d.test>", "451 4.3.0 Try later")
	c.cmd("RCPT TO:<weird@d.test>", "451 4.3.0 Error: internal error")
	c.cmd("RCPT TO:<close@d.test>", "421 4.7.0 Go away")
	if err := c.wait(); err != nil {
		t.Errorf("Serve after handler 421: %v", err)
	}
	c.closed()
}

func TestDataRefusedAndWriteError(t *testing.T) {
	h := &fakeHandler{dataRej: &Reply{Code: 451, Enhanced: "4.3.0", Text: "cleanup unavailable"}}
	c := startSession(t, nil, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "451 4.3.0 cleanup unavailable")
	h.mu.Lock()
	h.dataRej = nil
	h.failW = true
	h.mu.Unlock()
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("451 4.3.0 Error: queue file write error")
	_, committed, aborted := h.sink(t, 0).state()
	if committed || !strings.Contains(aborted, "disk full") {
		t.Errorf("sink committed=%v aborted=%q", committed, aborted)
	}
	c.cmd("NOOP", "250 ")
}

func TestSizeLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSize = 1000
	h := &fakeHandler{}
	c := startSession(t, cfg, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test> SIZE=1001", "552 5.3.4 ")
	c.cmd("MAIL FROM:<a@b.test> SIZE=99999999999999999999", "552 5.3.4 ")
	c.cmd("MAIL FROM:<a@b.test> SIZE=999999999999999999999", "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> SIZE=-1", "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> SIZE=1000", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	// 1001 octets of content: 13 lines of 77 octets.
	line := strings.Repeat("x", 75) + "\r\n"
	c.send(strings.Repeat(line, 13) + ".\r\n")
	c.expect("552 5.3.4 ")
	body, committed, aborted := h.sink(t, 0).state()
	if committed || aborted != "message too large" || len(body) > 1000 {
		t.Errorf("sink %d octets committed=%v aborted=%q", len(body), committed, aborted)
	}
	// Exactly at the limit passes; the session is still in step.
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(strings.Repeat(line, 12) + strings.Repeat("y", 74) + "\r\n.\r\n")
	c.expect("250 2.0.0 Ok")
	if body, committed, _ := h.sink(t, 1).state(); !committed || len(body) != 1000 {
		t.Errorf("second message %d octets, committed=%v", len(body), committed)
	}
}

func TestUTF8Addresses(t *testing.T) {
	h := &fakeHandler{}
	c := startSession(t, nil, h)
	c.ehlo()
	c.cmd("MAIL FROM:<用户@例子.广告>", "553 5.6.7 ")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<jörg@bücher.test>", "553 5.6.7 ")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<用户@例子.广告> SMTPUTF8 BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<jörg@Bücher.TEST>", "250 ")
	c.cmd("MAIL FROM:<a@b.test> SMTPUTF8=yes", "503 5.5.1")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<a@b.test> SMTPUTF8=yes", "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test\xff>", "500 5.5.2 ")
	if len(h.froms) != 2 || h.froms[1].Local != "用户" || !h.mparams[1].SMTPUTF8 {
		t.Errorf("mail: %#v %#v", h.froms, h.mparams)
	}
	if len(h.rcpts) != 1 || h.rcpts[0].String() != "jörg@bücher.test" {
		t.Errorf("rcpt: %#v", h.rcpts)
	}
	if !c.logs.has("reject: MAIL from unknown[pipe]: 553 5.6.7") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestDSNParams(t *testing.T) {
	h := &fakeHandler{}
	c := startSession(t, nil, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test> RET=hdrs ENVID=QQ+2B314159", "250 ")
	c.cmd("RCPT TO:<c@d.test> NOTIFY=success,delay ORCPT=rfc822;c+40d.test", "250 ")
	c.cmd("RCPT TO:<e@d.test> NOTIFY=NEVER", "250 ")
	c.cmd("RCPT TO:<e@d.test> NOTIFY=NEVER,DELAY", "501 5.5.4 ")
	c.cmd("RCPT TO:<e@d.test> NOTIFY=BOGUS", "501 5.5.4 ")
	c.cmd("RCPT TO:<e@d.test> ORCPT=rfc822;a+0D+0Ab", "501 5.5.4 ")
	c.cmd("RCPT TO:<e@d.test> ORCPT=rfc822", "501 5.5.4 ")
	c.cmd("RCPT TO:<e@d.test> NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 ")
	c.cmd("RCPT TO:<e@d.test> NOTIFY=", "501 5.5.4 ")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<a@b.test> RET=ALL", "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> ENVID=a+2", "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> ENVID="+strings.Repeat("x", 101), "501 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME", "501 5.5.4 ")
	mp := h.mparams[0]
	if mp.Ret != "HDRS" || mp.EnvID != "QQ+314159" {
		t.Errorf("mail params %+v", mp)
	}
	rp := h.rparams[0]
	if strings.Join(rp.Notify, ",") != "SUCCESS,DELAY" || rp.ORcpt != "rfc822;c@d.test" {
		t.Errorf("rcpt params %+v", rp)
	}
	if strings.Join(h.rparams[1].Notify, ",") != "NEVER" {
		t.Errorf("rcpt params %+v", h.rparams[1])
	}
}

func TestRecipientLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRecipients = 2
	cfg.HardErrorLimit = 3
	h := &fakeHandler{}
	c := startSession(t, cfg, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<reject@d.test>", "550 ")
	c.cmd("RCPT TO:<c1@d.test>", "250 ")
	c.cmd("RCPT TO:<c2@d.test>", "250 ")
	// Over the limit: 452 4.5.3, which is not counted as an error.
	for i := 0; i < 5; i++ {
		c.cmd("RCPT TO:<c3@d.test>", "452 4.5.3 ")
	}
	c.cmd("DATA", "354 ")
	c.send(".\r\n")
	c.expect("250 ")
	if len(h.rcpts) != 3 {
		t.Errorf("handler saw %d recipients", len(h.rcpts))
	}
	// The limit is per transaction.
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c1@d.test>", "250 ")
}

func TestLongLines(t *testing.T) {
	h := &fakeHandler{}
	c := startSession(t, nil, h)
	c.ehlo()
	// 512 octets with CRLF is the limit for ordinary commands.
	c.cmd("NOOP "+strings.Repeat("x", 505), "250 ")
	c.cmd("NOOP "+strings.Repeat("x", 506), "500 5.5.2 Error: line too long")
	c.cmd("HELO "+strings.Repeat("x", 600), "500 5.5.2 Error: line too long")
	// MAIL and RCPT may be longer, up to 2048.
	var many strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&many, " X%d=%d", i, i)
	}
	c.cmd("MAIL FROM:<a@b.test>"+many.String(), "501 5.5.4 Error: too many parameters")
	c.cmd("MAIL FROM:<a@b.test> "+strings.Repeat("X", 2020), "555 5.5.4 ")
	c.cmd("MAIL FROM:<a@b.test> "+strings.Repeat("X", 2030), "500 5.5.2 Error: line too long")
	// Longer than the read buffer: discarded to the LF, still in step.
	c.cmd("NOOP "+strings.Repeat("y", 10000), "500 5.5.2 Error: line too long")
	c.cmd("NOOP", "250 ")
	// A path over 256 octets.
	c.cmd("MAIL FROM:<"+strings.Repeat("a", 60)+"@"+strings.Repeat("abcdefghi.", 20)+"test>", "501 5.1.7 ")
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	// A DATA line over LineLimit (2048 by default).
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\n" + strings.Repeat("z", 2047) + "\r\nmore\r\n.\r\n")
	c.expect("554 5.6.0 Error: line too long")
	if _, committed, aborted := h.sink(t, 0).state(); committed || aborted != "line too long" {
		t.Errorf("sink committed=%v aborted=%q", committed, aborted)
	}
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(strings.Repeat("z", 2046) + "\r\n.\r\n")
	c.expect("250 2.0.0 ")
	if body, _, _ := h.sink(t, 1).state(); len(body) != 2048 {
		t.Errorf("a line at the limit: sink got %d octets", len(body))
	}
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(strings.Repeat("w", 100000) + "\r\n.\r\n")
	c.expect("554 5.6.0 Error: line too long")
	c.cmd("NOOP", "250 ")
}

func TestNUL(t *testing.T) {
	c := startSession(t, nil, nil)
	c.ehlo()
	c.cmd("NOOP\x00", "500 5.5.2 ")
	c.cmd("MAIL FROM:<a\x00b@c.test>", "500 5.5.2 ")
	c.cmd("MAIL FROM:<ab@c.test>\x00", "500 5.5.2 ")
	c.cmd("\x00", "500 5.5.2 ")
	c.cmd("NO\rOP", "500 5.5.2 ")
	c.cmd("NOOP\r\r", "500 5.5.2 ")
	c.cmd("MAIL FROM:<ab@c.test>", "250 ")
	// Bare LF ends a command.
	c.send("RCPT TO:<d@e.test>\n")
	c.expect("250 ")
}

func TestErrorLimits(t *testing.T) {
	cfg := testConfig()
	cfg.SoftErrorLimit = 1
	cfg.HardErrorLimit = 4
	cfg.ErrorSleep = 100 * time.Millisecond
	c := startSession(t, cfg, nil)
	c.ehlo()
	start := time.Now()
	c.cmd("FOO", "500 5.5.1 ")
	c.cmd("BAR", "500 5.5.1 ")
	c.cmd("BAZ", "500 5.5.1 ")
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("3 errors over soft limit 1 took only %v", el)
	}
	c.cmd("QUX", "500 5.5.1 ")
	c.expect("421 4.7.0 mx.test Error: too many errors")
	err := c.wait()
	if !errors.Is(err, ErrTooManyErrors) {
		t.Errorf("Serve: %v", err)
	}
	c.closed()
	if !c.logs.has("too many errors after UNKNOWN from unknown[pipe]") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestNonSMTPClient(t *testing.T) {
	for _, first := range []string{"GET / HTTP/1.1", "POST /x HTTP/1.0", "CONNECT mx.test:25 HTTP/1.0", "Host: mx.test"} {
		c := startSession(t, nil, nil)
		c.expect("220 ")
		c.cmd(first, "221 2.7.0 ")
		if err := c.wait(); err != nil {
			t.Errorf("%q: Serve: %v", first, err)
		}
		c.closed()
		if !c.logs.has("warning: non-SMTP command from unknown[pipe]") {
			t.Errorf("logs:\n%s", c.logs)
		}
	}
}

func TestTimeouts(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 150 * time.Millisecond
	c := startSession(t, cfg, nil)
	c.ehlo()
	c.send("NOOP") // never finished
	c.expect("421 4.4.2 mx.test Error: timeout exceeded")
	if err := c.wait(); !errors.Is(err, ErrTimeout) {
		t.Errorf("Serve: %v", err)
	}
	if !c.logs.has("timeout after EHLO from unknown[pipe]") {
		t.Errorf("logs:\n%s", c.logs)
	}

	// In DATA: the sink is aborted.
	h := &fakeHandler{}
	c = startSession(t, cfg, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nhalf a li")
	c.expect("421 4.4.2 ")
	if err := c.wait(); !errors.Is(err, ErrTimeout) {
		t.Errorf("Serve: %v", err)
	}
	if _, committed, aborted := h.sink(t, 0).state(); committed || aborted != "timeout" {
		t.Errorf("sink committed=%v aborted=%q", committed, aborted)
	}
	if !c.logs.has("timeout after DATA from") {
		t.Errorf("logs:\n%s", c.logs)
	}

	// The session budget: a client that is never idle for long still
	// gets cut off.
	cfg = testConfig()
	cfg.Timeout = 2 * time.Second
	cfg.SessionTimeout = 600 * time.Millisecond
	c = startSession(t, cfg, nil)
	c.ehlo()
	start := time.Now()
	for {
		c.send("NOOP\r\n")
		r := c.reply()
		if strings.HasPrefix(r, "421 4.4.2 ") {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("session budget not enforced")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.wait(); !errors.Is(err, ErrTimeout) {
		t.Errorf("Serve: %v", err)
	}
	if !c.logs.has("session time limit exceeded after NOOP") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestCancel(t *testing.T) {
	c := startSession(t, nil, nil)
	c.ehlo()
	c.cancel()
	c.expect("421 4.3.2 mx.test Service shutting down")
	if err := c.wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve: %v", err)
	}

	h := &fakeHandler{}
	c = startSession(t, nil, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n")
	time.Sleep(50 * time.Millisecond)
	c.cancel()
	c.expect("421 4.3.2 ")
	c.wait()
	if _, committed, aborted := h.sink(t, 0).state(); committed || aborted != "shutdown" {
		t.Errorf("sink committed=%v aborted=%q", committed, aborted)
	}
}

func TestLostConnection(t *testing.T) {
	h := &fakeHandler{}
	c := startSession(t, nil, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n")
	time.Sleep(50 * time.Millisecond)
	c.conn.Close()
	if err := c.wait(); !errors.Is(err, ErrLostConnection) {
		t.Errorf("Serve: %v", err)
	}
	if _, committed, aborted := h.sink(t, 0).state(); committed || aborted != "lost connection" {
		t.Errorf("sink committed=%v aborted=%q", committed, aborted)
	}
	if !c.logs.has("lost connection after DATA from unknown[pipe]") || !c.logs.has("data=0/1") {
		t.Errorf("logs:\n%s", c.logs)
	}
	if h.resets == 0 {
		t.Error("handler not reset at the end")
	}
}

// Every way a client could try to end DATA early, or hide a second
// transaction inside the first (SMTP smuggling), must be refused: the
// message is rejected with 554 5.6.0, the session stays in step with the
// real CRLF.CRLF, and no second MAIL reaches the handler.
func TestSmuggling(t *testing.T) {
	variants := []string{
		"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\r.\r\n", "\n.\r", "\r.\n",
		"\r\n.\r\r\n", "\r\n\n.\r\n", "\r\n.\n\r\n",
		"\r\n\x00.\r\n", "\n..\n", "\r\n.\x00\r\n",
	}
	for _, v := range variants {
		h := &fakeHandler{}
		c := startSession(t, nil, h)
		c.ehlo()
		c.cmd("MAIL FROM:<a@b.test>", "250 ")
		c.cmd("RCPT TO:<c@d.test>", "250 ")
		c.cmd("DATA", "354 ")
		c.send("Subject: x\r\n\r\nhello" + v + "MAIL FROM:<evil@b.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n")
		r := c.reply()
		bad := strings.ContainsAny(strings.ReplaceAll(v, "\r\n", ""), "\r\n")
		if bad && r != "554 5.6.0 Error: bare <CR> or <LF> not allowed" {
			t.Errorf("variant %q: reply %q", v, r)
		}
		c.cmd("NOOP", "250 ")
		h.mu.Lock()
		nmail := len(h.froms)
		h.mu.Unlock()
		if nmail != 1 {
			t.Errorf("variant %q: %d MAIL commands reached the handler", v, nmail)
		}
		body, committed, aborted := h.sink(t, 0).state()
		if bad && (committed || aborted != "bare CR or LF") {
			t.Errorf("variant %q: committed=%v aborted=%q", v, committed, aborted)
		}
		if bad && (strings.Contains(body, "MAIL FROM") || strings.Contains(body, "\n.")) {
			t.Errorf("variant %q: sink got %q", v, body)
		}
		if !bad && (!committed || !strings.Contains(body, "Subject: smuggled")) {
			t.Errorf("variant %q: one whole message expected: committed=%v %q", v, committed, body)
		}
	}
}

func TestBareInBody(t *testing.T) {
	for _, body := range []string{"a\nb\r\n", "a\rb\r\n", "a\r\r\n", "\n", "\r", "Subject: x\r\n\r\nend\r"} {
		h := &fakeHandler{}
		c := startSession(t, nil, h)
		c.ehlo()
		c.cmd("MAIL FROM:<a@b.test>", "250 ")
		c.cmd("RCPT TO:<c@d.test>", "250 ")
		c.cmd("DATA", "354 ")
		c.send(body + "\r\n.\r\n")
		c.expect("554 5.6.0 ")
		c.cmd("NOOP", "250 ")
		if !c.logs.has("bare <CR> or <LF>") {
			t.Errorf("%q: logs:\n%s", body, c.logs)
		}
	}
}

func TestDotStuffing(t *testing.T) {
	msg := "Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nmid.dle\r\n. \r\n\r\n.\r\nend\r\n"
	h := &fakeHandler{}
	c := startSession(t, nil, h)
	c.ehlo()
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(stuff(msg) + ".\r\n")
	c.expect("250 ")
	if body, _, _ := h.sink(t, 0).state(); body != msg {
		t.Errorf("round trip:\n got %q\nwant %q", body, msg)
	}
	// An empty message is a message.
	c.cmd("MAIL FROM:<a@b.test>", "250 ")
	c.cmd("RCPT TO:<c@d.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(".\r\n")
	c.expect("250 ")
	if body, committed, _ := h.sink(t, 1).state(); body != "" || !committed {
		t.Errorf("empty message: %q %v", body, committed)
	}
}

// stuff dot-stuffs CRLF text as a client does.
func stuff(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	return b.String()
}

func TestImproperPipelining(t *testing.T) {
	c := startSession(t, nil, nil)
	c.ehlo()
	c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	c.expect("250 ")
	if !c.logs.has("improper command pipelining after DATA from unknown[pipe]") {
		t.Errorf("logs:\n%s", c.logs)
	}
}

func TestSetClientName(t *testing.T) {
	cfg := testConfig()
	logs := &logRec{}
	cfg.Logf = logs.logf
	h := &fakeHandler{}
	cli, srv := net.Pipe()
	s := NewSession(srv, cfg, h)
	s.SetClientName("mx.example.org\n")
	cli.Close()
	s.Serve(context.Background())
	if !logs.has("connect from mx.example.org?[pipe]") {
		t.Errorf("logs:\n%s", logs)
	}
}

// A real client over TCP: Go's net/smtp, with a message of a few MB.
func TestNetSMTPClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	h := &fakeHandler{}
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- NewSession(conn, testConfig(), h).Serve(context.Background())
	}()
	c, err := netsmtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("PIPELINING"); !ok {
		t.Error("no PIPELINING")
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
	var msg strings.Builder
	msg.WriteString("Subject: big\r\n\r\n")
	for i := 0; msg.Len() < 4<<20; i++ {
		fmt.Fprintf(&msg, ".line %d %s\r\n", i, strings.Repeat("x", i%900))
	}
	if _, err := io.WriteString(w, msg.String()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	body, committed, _ := h.sink(t, 0).state()
	if !committed || body != msg.String() {
		t.Errorf("committed=%v, got %d octets, want %d", committed, len(body), msg.Len())
	}
}
