package imapwire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func newReader(in string, lim Limits) (*Reader, *bytes.Buffer) {
	var out bytes.Buffer
	return NewReader(strings.NewReader(in), &out, lim), &out
}

func TestReadCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		cont int // "+ Ready" lines expected
	}{
		{in: "a1 CAPABILITY\r\n", want: Command{Tag: "a1", Name: "CAPABILITY"}},
		{in: "x noop\n", want: Command{Tag: "x", Name: "NOOP"}},
		{in: "A001 LOGIN demo secret\r\n", want: Command{Tag: "A001", Name: "LOGIN", Args: []Arg{{Kind: Atom, Value: "demo"}, {Kind: Atom, Value: "secret"}}}},
		{in: `t LOGIN "de\"mo" "a b\\c"` + "\r\n", want: Command{Tag: "t", Name: "LOGIN", Args: []Arg{{Kind: Quoted, Value: `de"mo`}, {Kind: Quoted, Value: `a b\c`}}}},
		{in: "t LOGIN \"\" \"ünï\"\r\n", want: Command{Tag: "t", Name: "LOGIN", Args: []Arg{{Kind: Quoted}, {Kind: Quoted, Value: "ünï"}}}},
		{in: "t LOGIN {4}\r\ndemo {3}\r\na\"b\r\n", cont: 2, want: Command{Tag: "t", Name: "LOGIN", Args: []Arg{{Kind: Literal, Value: "demo"}, {Kind: Literal, Value: `a"b`}}}},
		{in: "t LOGIN {4+}\r\ndemo {0+}\r\n\r\n", want: Command{Tag: "t", Name: "LOGIN", Args: []Arg{{Kind: Literal, Value: "demo"}, {Kind: Literal}}}},
		{in: "t LOGIN {2}\r\n\r\n x\r\n", cont: 1, want: Command{Tag: "t", Name: "LOGIN", Args: []Arg{{Kind: Literal, Value: "\r\n"}, {Kind: Atom, Value: "x"}}}},
		{in: "t AUTHENTICATE PLAIN AGRlbW8Ac2VjcmV0\r\n", want: Command{Tag: "t", Name: "AUTHENTICATE", Args: []Arg{{Kind: Atom, Value: "PLAIN"}, {Kind: Atom, Value: "AGRlbW8Ac2VjcmV0"}}}},
		{in: "t AUTHENTICATE PLAIN =\r\n", want: Command{Tag: "t", Name: "AUTHENTICATE", Args: []Arg{{Kind: Atom, Value: "PLAIN"}, {Kind: Atom, Value: "="}}}},
		{in: "t ID (\"name\" \"mutt\" \"version\" NIL)\r\n", want: Command{Tag: "t", Name: "ID", Args: []Arg{{Kind: List, List: []Arg{{Kind: Quoted, Value: "name"}, {Kind: Quoted, Value: "mutt"}, {Kind: Quoted, Value: "version"}, {Kind: Atom, Value: "NIL"}}}}}},
		{in: "t ID ()\r\n", want: Command{Tag: "t", Name: "ID", Args: []Arg{{Kind: List}}}},
		{in: "t ID ((a) ({1+}\r\nx))\r\n", want: Command{Tag: "t", Name: "ID", Args: []Arg{{Kind: List, List: []Arg{{Kind: List, List: []Arg{{Kind: Atom, Value: "a"}}}, {Kind: List, List: []Arg{{Kind: Literal, Value: "x"}}}}}}}},
		{in: "t] X a]b\r\n", want: Command{Tag: "t]", Name: "X", Args: []Arg{{Kind: Atom, Value: "a]b"}}}},
	} {
		r, out := newReader(tc.in, Limits{})
		got, err := r.ReadCommand()
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q:\n got %#v\nwant %#v", tc.in, *got, tc.want)
		}
		if n := strings.Count(out.String(), "+ Ready\r\n"); n != tc.cont || out.Len() != n*len("+ Ready\r\n") {
			t.Errorf("%q: continuation output %q, want %d \"+ Ready\"", tc.in, out.String(), tc.cont)
		}
		if _, err := r.ReadCommand(); err != io.EOF {
			t.Errorf("%q: after the command: %v, want EOF", tc.in, err)
		}
	}
}

// TestBad checks refused commands: the reply, and that the next command
// is read from its start (or, when fatal, that the error says so).
func TestBad(t *testing.T) {
	for _, tc := range []struct {
		in    string
		reply string
		fatal bool
	}{
		{in: "\r\n", reply: "* BAD Empty command line"},
		{in: "+x NOOP\r\n", reply: "* BAD Missing or invalid tag"},
		{in: "a*b NOOP\r\n", reply: "* BAD Invalid tag"},
		{in: "tag\r\n", reply: "tag BAD Missing command"},
		{in: "tag \r\n", reply: "tag BAD Missing or invalid command name"},
		{in: "tag (NOOP)\r\n", reply: "tag BAD Missing or invalid command name"},
		{in: "tag LOGIN  x\r\n", reply: "tag BAD Invalid argument"},
		{in: "tag LOGIN x \r\n", reply: "tag BAD Missing argument"},
		{in: "tag LOGIN \"x\r\n", reply: "tag BAD Unterminated quoted string"},
		{in: "tag LOGIN \"x\\y\"\r\n", reply: "tag BAD Invalid escape in quoted string"},
		{in: "tag LOGIN \"x\ry\"\r\n", reply: "tag BAD Control character in quoted string"},
		{in: "tag LOGIN \"\xff\"\r\n", reply: "tag BAD Quoted string is not valid UTF-8"},
		{in: "tag LOGIN x\xffy\r\n", reply: "tag BAD Invalid characters in command LOGIN"},
		{in: "tag LOGIN x\"y\r\n", reply: "tag BAD Invalid characters in command LOGIN"},
		{in: "tag LOGIN {3} x\r\n", reply: "tag BAD Invalid literal"},
		{in: "tag LOGIN {x}\r\n", reply: "tag BAD Invalid literal size"},
		{in: "tag LOGIN {99999999999}\r\n", reply: "tag BAD Invalid literal size"},
		{in: "tag LOGIN {99999999999+}\r\n", reply: "tag BAD [TOOBIG] Literal too large", fatal: true},
		{in: "tag LOGIN {9000}\r\n", reply: "tag BAD [TOOBIG] Literal too large"},
		{in: "tag LOGIN {9000+}\r\n", reply: "tag BAD [TOOBIG] Literal too large", fatal: true},
		{in: "tag LOGIN {2+}\r\na\x00 x\r\n", reply: "tag BAD NUL in literal"},
		{in: "tag ID (a\r\n", reply: "tag BAD Unterminated list"},
		{in: "tag ID (a b)c\r\n", reply: "tag BAD Invalid characters in command ID"},
		{in: "tag ID (a  b)\r\n", reply: "tag BAD Invalid argument"},
		{in: "tag ID (a\"b)\r\n", reply: "tag BAD Invalid characters in list"},
		{in: "tag ID " + strings.Repeat("(", 20) + "\r\n", reply: "tag BAD Lists nested too deep"},
		{in: "tag X" + strings.Repeat(" a", 200) + "\r\n", reply: "tag BAD Too many arguments"},
		{in: strings.Repeat("t", 65) + " NOOP\r\n", reply: "* BAD Tag too long"},
		// An error before a non-synchronising literal: the literal and
		// the rest of the command are skipped, not read as commands.
		{in: "tag LOGIN \"x {5+}\r\nb NOOP\r\n", reply: "tag BAD Unterminated quoted string"},
		{in: "tag LOGIN x\"y {5+}\r\nb NOOP {3+}\r\nz\r\n\r\n", reply: "tag BAD Invalid characters in command LOGIN"},
		// Before a synchronising one: no "+ Ready", so no octets follow.
		{in: "tag LOGIN x\"y {5}\r\n", reply: "tag BAD Invalid characters in command LOGIN"},
	} {
		r, out := newReader(tc.in+"next NOOP\r\n", Limits{MaxLiteral: 8192})
		_, err := r.ReadCommand()
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: error %v, want an *Error", tc.in, err)
			continue
		}
		if e.Reply() != tc.reply || e.Fatal != tc.fatal {
			t.Errorf("%q: %q fatal=%v, want %q fatal=%v", tc.in, e.Reply(), e.Fatal, tc.reply, tc.fatal)
		}
		if strings.Contains(out.String(), "+ Ready") {
			t.Errorf("%q: a continuation request was sent", tc.in)
		}
		if e.Fatal {
			continue
		}
		c, err := r.ReadCommand()
		if err != nil || c.Tag != "next" || c.Name != "NOOP" {
			t.Errorf("%q: the next command: %+v, %v", tc.in, c, err)
		}
	}
}

func TestLimits(t *testing.T) {
	// Line limit: counts line ends, and every line of a command.
	r, _ := newReader("a "+strings.Repeat("x", 20)+"\r\n", Limits{MaxLine: 10})
	_, err := r.ReadCommand()
	var e *Error
	if !errors.As(err, &e) || !e.Fatal || e.Reply() != "a BAD [TOOBIG] Command line too long" {
		t.Errorf("over-long line: %v", err)
	}
	r, _ = newReader("a NOOP x\r\n", Limits{MaxLine: 10})
	if c, err := r.ReadCommand(); err != nil || c.Name != "NOOP" {
		t.Errorf("line of exactly MaxLine: %v", err)
	}
	r, _ = newReader("a X {1+}\r\nx yyy\r\n", Limits{MaxLine: 15})
	if _, err := r.ReadCommand(); !errors.As(err, &e) || !e.Fatal {
		t.Errorf("second line over the command's budget: %v", err)
	}
	r, _ = newReader(strings.Repeat("x", 100), Limits{MaxLine: 10})
	if _, err := r.ReadCommand(); !errors.As(err, &e) || !e.Fatal || e.Tag != "" {
		t.Errorf("over-long line without a tag: %v", err)
	}
	// Literal limit: all the command's literals together.
	r, out := newReader("a X {3}\r\nabc {2}\r\nde\r\n", Limits{MaxLiteral: 4})
	if _, err := r.ReadCommand(); !errors.As(err, &e) || e.Fatal || e.Code != "TOOBIG" {
		t.Errorf("literals over the limit together: %v", err)
	}
	if out.String() != "+ Ready\r\n" {
		t.Errorf("continuations %q, want one", out.String())
	}
	r, _ = newReader("a X {4}\r\nabcd\r\n", Limits{MaxLiteral: 4})
	if c, err := r.ReadCommand(); err != nil || c.Args[0].Value != "abcd" {
		t.Errorf("literal of exactly MaxLiteral: %v", err)
	}
}

func TestStreamErrors(t *testing.T) {
	for _, in := range []string{"a NOOP", "a LOGIN {5}\r\nab", "a LOGIN {2}\r\nab", "a LOGIN {2+}\r\nab x"} {
		r, _ := newReader(in, Limits{})
		if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
			t.Errorf("%q: %v, want unexpected EOF", in, err)
		}
	}
	r, _ := newReader("", Limits{})
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Errorf("empty input: %v, want EOF", err)
	}
}

func TestReadLine(t *testing.T) {
	r, _ := newReader("AGRlbW8Ac2VjcmV0\r\n*\nrest", Limits{MaxLine: 20})
	for _, want := range []string{"AGRlbW8Ac2VjcmV0", "*"} {
		if l, err := r.ReadLine(); err != nil || l != want {
			t.Errorf("ReadLine = %q, %v; want %q", l, err, want)
		}
	}
	if r.Buffered() != 4 {
		t.Errorf("Buffered = %d, want 4", r.Buffered())
	}
	b, _ := io.ReadAll(r)
	if string(b) != "rest" {
		t.Errorf("Read after the lines: %q", b)
	}
	r, _ = newReader(strings.Repeat("A", 30)+"\r\n", Limits{MaxLine: 20})
	var e *Error
	if _, err := r.ReadLine(); !errors.As(err, &e) || !e.Fatal {
		t.Errorf("over-long response line: %v", err)
	}
}
