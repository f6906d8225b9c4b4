package imapwire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzReadCommand reads commands from the fuzzer's bytes until the input
// ends or a fatal error: the reader must not panic, must respect its
// limits, and must return only what the grammar allows.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a1 CAPABILITY\r\n",
		"a LOGIN {4}\r\ndemo {6+}\r\nsecret\r\n",
		"a LOGIN \"de\\\"mo\" secret\r\nb LOGOUT\r\n",
		"a AUTHENTICATE PLAIN =\r\n",
		"a ID (\"name\" \"x\" \"version\" NIL)\r\n",
		"a LOGIN x\"y {5+}\r\nb NOOP\r\n",
		"a LOGIN {99999+}\r\n",
		"\r\n\n+ x\r\n",
		"a ID ((((((((((a))))))))))\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		lim := Limits{MaxLine: 200, MaxLiteral: 64, MaxArgs: 16}
		r := NewReader(bytes.NewReader(in), &out, lim)
		for i := 0; i < 1000; i++ {
			c, err := r.ReadCommand()
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					return
				}
				if rep := e.Reply(); strings.ContainsAny(rep, "\r\n") {
					t.Fatalf("reply %q breaks the line", rep)
				}
				if e.Fatal {
					return
				}
				continue
			}
			if c.Tag == "" || strings.ContainsAny(c.Tag, " +(){%*\"\\\r\n") {
				t.Fatalf("bad tag %q", c.Tag)
			}
			if c.Name == "" || c.Name != strings.ToUpper(c.Name) {
				t.Fatalf("bad name %q", c.Name)
			}
			n, lit := 0, 0
			var walk func([]Arg)
			walk = func(args []Arg) {
				for _, a := range args {
					n++
					switch a.Kind {
					case Literal:
						lit += len(a.Value)
					case Atom:
						if a.Value == "" {
							t.Fatalf("empty atom")
						}
					case List:
						walk(a.List)
					}
				}
			}
			walk(c.Args)
			if n > lim.MaxArgs || lit > lim.MaxLiteral {
				t.Fatalf("%d args, %d literal octets: over the limits", n, lit)
			}
		}
	})
}
