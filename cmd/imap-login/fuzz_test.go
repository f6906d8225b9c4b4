package main

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzSession runs the not-authenticated state on the fuzzer's bytes:
// it must never panic or hang. There is no acceptor (a login gets NO
// [UNAVAILABLE]) and no certificate (STARTTLS gets BAD).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"a CAPABILITY\r\nb NOOP\r\nc LOGOUT\r\n",
		"a LOGIN {4}\r\ndemo {2+}\r\npw\r\n",
		"a AUTHENTICATE PLAIN\r\nAGRlbW8AcHc=\r\n",
		"a AUTHENTICATE LOGIN\r\nZGVtbw==\r\n*\r\n",
		"a AUTHENTICATE PLAIN =\r\nb ID (\"name\" \"x\")\r\n",
		"a STARTTLS\r\nb SELECT INBOX\r\n",
		"a LOGIN x\"y {5+}\r\nb NOOP\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &server{
			timeout: 2 * time.Second, failureLimit: 3, relayIdle: time.Second,
			maxLine: 1024, sock: "/nonexistent/imapd",
		}
		client, srv := net.Pipe()
		done := make(chan struct{})
		go func() {
			s.handle(context.Background(), srv)
			close(done)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the session did not end on end of input")
		}
	})
}
