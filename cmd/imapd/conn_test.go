package main

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"
)

// countConn records each Write reaching the socket.
type countConn struct {
	net.Conn
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countConn) SetWriteDeadline(time.Time) error { return nil }

// A bulk FETCH of bodies is sent in one write with its tagged reply: the
// ")" after each literal continues the untagged line, it is not a tagged
// line that would flush the batch.
func TestBulkOutputWithLiterals(t *testing.T) {
	cc := &countConn{}
	c := newSessionConn(cc, time.Minute, 8192, 1<<20)
	c.bulk = true
	var want bytes.Buffer
	for i := 1; i <= 10; i++ {
		line := fmt.Sprintf("* %d FETCH (UID %d BODY[] {5}\r\nhello)\r\n", i, i)
		want.WriteString(line)
		// imapserver writes the line, the literal and the rest apart
		for _, part := range []string{line[:len(line)-8], "hello", ")\r\n"} {
			if _, err := c.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(cc.writes) != 0 {
		t.Fatalf("untagged output sent before the tagged reply in %d writes", len(cc.writes))
	}
	tagged := "A1 OK FETCH completed\r\n"
	want.WriteString(tagged)
	c.Write([]byte(tagged))
	if len(cc.writes) != 1 || !bytes.Equal(cc.writes[0], want.Bytes()) {
		t.Fatalf("got %d writes %q, want one %q", len(cc.writes), cc.writes, want.Bytes())
	}
	// A literal whose contents look like a tagged NO is passed unchanged.
	cc.writes = nil
	c.bulk = true
	body := "A1 NO [SERVERBUG] Internal server error\r\n"
	out := fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)\r\nA2 OK done\r\n", len(body), body)
	c.Write([]byte(out))
	if len(cc.writes) != 1 || string(cc.writes[0]) != out {
		t.Fatalf("got %q, want %q", cc.writes, out)
	}
}
