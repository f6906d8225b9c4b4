package smtp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		want Command
		code int // 0: no error
	}{
		{"EHLO client.test\r\n", Command{Verb: "EHLO", Arg: "client.test"}, 0},
		{"ehlo [192.0.2.1]\n", Command{Verb: "EHLO", Arg: "[192.0.2.1]"}, 0},
		{"HELO  some  name \r\n", Command{Verb: "HELO", Arg: "some  name"}, 0},
		{"EHLO\r\n", Command{Verb: "EHLO"}, 501},
		{"MAIL FROM:<a@b.test>\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 0},
		{"mail from: <a@b.test>\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 0},
		{"MAIL FROM:<>\r\n", Command{Verb: "MAIL"}, 0},
		{"MAIL FROM:<a@b.test> SIZE=10 body=8bitmime SMTPUTF8 \r\n", Command{Verb: "MAIL", Path: "a@b.test",
			Params: []Param{{"SIZE", "10"}, {"BODY", "8bitmime"}, {"SMTPUTF8", ""}}}, 0},
		{`MAIL FROM:<"a> b"@c.test> X=1`, Command{Verb: "MAIL", Path: `"a> b"@c.test`, Params: []Param{{"X", "1"}}}, 0},
		{`MAIL FROM:<"a\"> b"@c.test>`, Command{Verb: "MAIL", Path: `"a\"> b"@c.test`}, 0},
		{"MAIL FROM:a@b.test\r\n", Command{Verb: "MAIL"}, 501},
		{"MAIL FROM:<a@b.test\r\n", Command{Verb: "MAIL"}, 501},
		{"MAIL FROM:<<a@b.test>\r\n", Command{Verb: "MAIL"}, 501},
		{"MAIL FROM:<a@b.test>X=1\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 501},
		{"MAIL FROM:<a@b.test> X==1\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 501},
		{"MAIL FROM:<a@b.test> X=\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 501},
		{"MAIL FROM:<a@b.test> -X=1\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 501},
		{"MAIL FROM:<a@b.test> X_Y=1\r\n", Command{Verb: "MAIL", Path: "a@b.test"}, 501},
		{"MAIL FROM:<a@b.test> X=1 x=2\r\n", Command{Verb: "MAIL", Path: "a@b.test", Params: []Param{{"X", "1"}}}, 501},
		{"MAIL TO:<a@b.test>\r\n", Command{Verb: "MAIL"}, 501},
		{"MAIL\r\n", Command{Verb: "MAIL"}, 501},
		{"RCPT TO:<postmaster>\r\n", Command{Verb: "RCPT", Path: "postmaster"}, 0},
		{"RCPT TO:<c@d.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d.test\r\n", Command{Verb: "RCPT", Path: "c@d.test",
			Params: []Param{{"NOTIFY", "SUCCESS,FAILURE"}, {"ORCPT", "rfc822;c+40d.test"}}}, 0},
		{"RCPT FROM:<c@d.test>\r\n", Command{Verb: "RCPT"}, 501},
		{"DATA\r\n", Command{Verb: "DATA"}, 0},
		{"DATA \r\n", Command{Verb: "DATA"}, 0},
		{"DATA x\r\n", Command{Verb: "DATA"}, 501},
		{"QUIT\r\n", Command{Verb: "QUIT"}, 0},
		{"NOOP anything goes\r\n", Command{Verb: "NOOP", Arg: "anything goes"}, 0},
		{"VRFY bob\r\n", Command{Verb: "VRFY", Arg: "bob"}, 0},
		{"VRFY\r\n", Command{Verb: "VRFY"}, 501},
		{"HELP\r\n", Command{Verb: "HELP"}, 0},
		{"STARTTLS\r\n", Command{Verb: "STARTTLS"}, 0},
		{"starttls \r\n", Command{Verb: "STARTTLS"}, 0},
		{"STARTTLS now\r\n", Command{Verb: "STARTTLS"}, 501},
		{"AUTH plain\r\n", Command{Verb: "AUTH", Arg: "PLAIN"}, 0},
		{"AUTH LOGIN  dXNlcg== \r\n", Command{Verb: "AUTH", Arg: "LOGIN", Response: "dXNlcg=="}, 0},
		{"AUTH PLAIN =\r\n", Command{Verb: "AUTH", Arg: "PLAIN", Response: "="}, 0},
		{"AUTH X-OAUTH_2\r\n", Command{Verb: "AUTH", Arg: "X-OAUTH_2"}, 0},
		{"AUTH\r\n", Command{Verb: "AUTH"}, 501},
		{"AUTH PLAIN a b\r\n", Command{Verb: "AUTH"}, 501},
		{"AUTH PL/AIN\r\n", Command{Verb: "AUTH"}, 501},
		{"AUTH " + strings.Repeat("A", 21) + "\r\n", Command{Verb: "AUTH"}, 501},
		{"BDAT 100 LAST\r\n", Command{Verb: "BDAT"}, 502},
		{"XYZZY\r\n", Command{Verb: "XYZZY"}, 500},
		{"\r\n", Command{}, 500},
		{"NOOP\x00\r\n", Command{Verb: "NOOP\x00"}, 500},
		{"NOOP x\ry\r\n", Command{Verb: "NOOP"}, 500},
		{"NOOP\r\r\n", Command{Verb: "NOOP\r"}, 500},
		{"NOOP \xff\r\n", Command{Verb: "NOOP"}, 500},
		{"NO-OP\r\n", Command{Verb: "NO-OP"}, 500},
		{"Host: x\r\n", Command{Verb: "HOST:"}, 500},
		{"MAIL FROM:<a@b.test> " + strings.Repeat("x", MaxPathLine), Command{}, 500},
	}
	for _, tt := range tests {
		got, err := ParseCommand([]byte(tt.line))
		code := 0
		if err != nil {
			var r *Reply
			if !errors.As(err, &r) {
				t.Errorf("%q: error %v is not a *Reply", tt.line, err)
				continue
			}
			code = r.Code
		}
		if code != tt.code {
			t.Errorf("%q: code %d (%v), want %d", tt.line, code, err, tt.code)
		}
		if tt.code == 0 && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %#v, want %#v", tt.line, got, tt.want)
		}
		if got.Verb != tt.want.Verb {
			t.Errorf("%q: verb %q, want %q", tt.line, got.Verb, tt.want.Verb)
		}
	}
}

func TestReplyFormat(t *testing.T) {
	tests := []struct {
		r       Reply
		enh, u8 bool
		want    string
	}{
		{Reply{250, "2.1.0", "Ok"}, true, false, "250 2.1.0 Ok\r\n"},
		{Reply{250, "", "Ok"}, true, false, "250 2.0.0 Ok\r\n"},
		{Reply{550, "4.1.1", "bad class"}, true, false, "550 5.0.0 bad class\r\n"},
		{Reply{550, "5.1.1000", "bad detail"}, true, false, "550 5.0.0 bad detail\r\n"},
		{Reply{550, "5.1.1", "a\nb\nc"}, true, false, "550-5.1.1 a\r\n550-5.1.1 b\r\n550 5.1.1 c\r\n"},
		{Reply{220, "", "mx ESMTP\nsecond"}, false, false, "220-mx ESMTP\r\n220 second\r\n"},
		{Reply{550, "5.1.1", "bad\r\x00\x7fté"}, true, false, "550 5.1.1 bad???t?\r\n"},
		{Reply{550, "5.1.1", "<jörg@x>"}, true, true, "550 5.1.1 <jörg@x>\r\n"},
		{Reply{550, "5.1.1", "\xff\u0085"}, true, true, "550 5.1.1 ??\r\n"},
		{Reply{250, "2.0.0", ""}, true, false, "250 2.0.0\r\n"},
	}
	for _, tt := range tests {
		got := string(appendReply(nil, &tt.r, tt.enh, tt.u8))
		if got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.r, got, tt.want)
		}
	}
	if e := (&Reply{Code: 550, Text: "x"}).Error(); e != "550 5.0.0 x" {
		t.Errorf("Error() = %q", e)
	}
	long := string(appendReply(nil, &Reply{Code: 550, Enhanced: "5.1.1", Text: strings.Repeat("é", 600)}, true, true))
	if len(long) > maxReplyLine || !strings.HasSuffix(long, "é\r\n") {
		t.Errorf("long reply line: %d octets, ends %q", len(long), long[len(long)-6:])
	}
	many := string(appendReply(nil, &Reply{Code: 250, Text: strings.Repeat("x\n", 100)}, true, false))
	if n := strings.Count(many, "\r\n"); n != maxReplyLines {
		t.Errorf("%d reply lines", n)
	}
}

func TestXtext(t *testing.T) {
	tests := []struct {
		in   string
		u8   bool
		want string
		ok   bool
	}{
		{"abc", false, "abc", true},
		{"a+2Bb", false, "a+b", true},
		{"a+2bb", false, "a+b", true},
		{"a+20b", false, "a b", true},
		{"a+0D+0A", false, "", false},
		{"a+00", false, "", false},
		{"a+FF", false, "", false},
		{"a+2", false, "", false},
		{"a+", false, "", false},
		{"a+GG", false, "", false},
		{"jörg", false, "", false},
		{"jörg", true, "jörg", true},
		{"\xff", true, "", false},
	}
	for _, tt := range tests {
		got, ok := decodeXtext(tt.in, tt.u8)
		if got != tt.want || ok != tt.ok {
			t.Errorf("decodeXtext(%q, %v) = %q, %v", tt.in, tt.u8, got, ok)
		}
	}
}

// FuzzParseCommand checks that no line makes the parser (or the parameter
// checks behind it) panic, and that accepted commands are well formed.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"EHLO x\r\n", "MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME SMTPUTF8\r\n",
		"RCPT TO:<c@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+40d.test\r\n", `MAIL FROM:<"a\"b>"@c> RET=HDRS ENVID=a+2Bb`,
		"DATA\r\n", "QUIT\n", "NOOP\x00", "GET / HTTP/1.1\r\n", "RCPT TO:<@a,@b:c@d>\r\n", "MAIL FROM:<> SIZE=99999999999999999999",
		"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "AUTH LOGIN =\r\n", "STARTTLS\r\n"} {
		f.Add([]byte(s))
	}
	s := &Session{cfg: (&ServerConfig{SMTPUTF8: true, DSN: true, MaxSize: 1000}).withDefaults(), extended: true}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			var r *Reply
			if !errors.As(err, &r) || r.Code < 500 || r.Code > 555 {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if !isAlpha(cmd.Verb) {
			t.Fatalf("verb %q accepted", cmd.Verb)
		}
		if len(cmd.Params) > maxParams {
			t.Fatalf("%d params", len(cmd.Params))
		}
		for _, p := range cmd.Params {
			if p.Keyword == "" || strings.ContainsAny(p.Keyword+p.Value, " =\r\n\x00") {
				t.Fatalf("bad param %#v", p)
			}
		}
		if cmd.Verb == "AUTH" && (cmd.Arg == "" || len(cmd.Arg) > maxMechanism || strings.ContainsAny(cmd.Arg+cmd.Response, " \t")) {
			t.Fatalf("bad AUTH %#v", cmd)
		}
		if strings.ContainsAny(cmd.Arg+cmd.Path+cmd.Response, "\r\n\x00") {
			t.Fatalf("control characters in %#v", cmd)
		}
		mp, _ := s.mailParams(cmd.Params)
		s.mp = mp
		rp, _ := s.rcptParams(cmd.Params)
		if strings.ContainsAny(mp.EnvID+rp.ORcpt, "\r\n\x00") {
			t.Fatalf("control characters in %#v %#v", mp, rp)
		}
	})
}
