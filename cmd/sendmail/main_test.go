package main

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func noenv(string) string { return "" }

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want options
	}{
		{"sendmail", []string{"-t", "-i"}, options{mode: modeDeliver, extract: true, ignoreDots: true}},
		{"sendmail", []string{"-ti", "-oi", "bob"}, options{mode: modeDeliver, extract: true, ignoreDots: true, recipients: []string{"bob"}}},
		{"sendmail", []string{"-falice@x", "-F", "Alice L", "--", "-bob"}, options{mode: modeDeliver, sender: "alice@x", senderSet: true, fullName: "Alice L", nameSet: true, recipients: []string{"-bob"}}},
		{"sendmail", []string{"-r", "<>", "-N", "never", "-R", "hdrs", "-V", "id1", "a@b, Carol <c@d>"}, options{mode: modeDeliver, sender: "", senderSet: true, notify: "never", ret: "hdrs", envid: "id1", recipients: []string{"a@b", "c@d"}}},
		{"sendmail", []string{"-bs"}, options{mode: modeSMTP}},
		{"sendmail", []string{"-bp"}, options{mode: modePrint}},
		{"sendmail", []string{"-q"}, options{mode: modeFlush}},
		{"sendmail", []string{"-q30m"}, options{mode: modeFlush, warnings: []string{"-q30m: only a flush of the whole queue is supported"}}},
		{"sendmail", []string{"-odb", "-oem", "-B8BITMIME", "x"}, options{mode: modeDeliver, recipients: []string{"x"}, warnings: []string{"-odb ignored", "-oem ignored"}}},
		{"mailq", nil, options{mode: modePrint}},
		{"newaliases", nil, options{mode: modeAliases}},
		{"sendmail", []string{"-bi"}, options{mode: modeAliases}},
		{"sendmail", []string{"-I"}, options{mode: modeAliases}},
	} {
		o, err := parseArgs(c.name, c.args, noenv)
		if err != nil {
			t.Errorf("%s %q: %v", c.name, c.args, err)
			continue
		}
		o.getenv = nil
		if !reflect.DeepEqual(*o, c.want) {
			t.Errorf("%s %q:\n got %+v\nwant %+v", c.name, c.args, *o, c.want)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, args := range [][]string{
		{},             // no recipients, no -t
		{"-f"},         // missing value
		{"-k", "bob"},  // unknown option
		{"-bd"},        // daemon mode
		{"-bv", "bob"}, // verify mode
		{"-bp", "bob"}, // mailq with arguments
	} {
		_, err := parseArgs("sendmail", args, noenv)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exUsage {
			t.Errorf("%q: %v, want EX_USAGE", args, err)
		}
	}
}

func TestDotReader(t *testing.T) {
	for in, want := range map[string]string{
		"a\n.\nb\n":     "a\n",
		"a\r\n.\r\nb":   "a\r\n",
		"a\n..\nb\n":    "a\n..\nb\n",
		"a.\n.":         "a.\n",
		"x" + ".\n":     "x.\n",
		".\n":           "",
		"no end":        "no end",
		"a\n. \nrest\n": "a\n. \nrest\n",
	} {
		got, err := io.ReadAll(newDotReader(strings.NewReader(in)))
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	long := strings.Repeat("y", 100000) + "\n.\n"
	got, _ := io.ReadAll(newDotReader(strings.NewReader(long)))
	if len(got) != 100001 {
		t.Errorf("long line: %d bytes", len(got))
	}
}

func TestReadHeader(t *testing.T) {
	r := strings.NewReader("To: a@b\nSubject: x\n\nbody\n")
	h, err := readHeader(r)
	if err != nil || string(h) != "To: a@b\nSubject: x\n\n" {
		t.Fatalf("%q %v", h, err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "body\n" || !hasRecipients(h) {
		t.Errorf("rest %q", rest)
	}
	if hasRecipients([]byte("Subject: none\n\n")) {
		t.Error("recipients in a header without any")
	}
}

func TestCRLFReader(t *testing.T) {
	got, _ := io.ReadAll(&crlfReader{r: strings.NewReader("a\nb\r\nc\n")})
	if !bytes.Equal(got, []byte("a\r\nb\r\nc\r\n")) {
		t.Errorf("%q", got)
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("-t\x00-i\x00-fme\x00bob")
	f.Add("-bs\x00--\x00x")
	f.Fuzz(func(t *testing.T, s string) {
		parseArgs("sendmail", strings.Split(s, "\x00"), noenv)
	})
}
