package postlogin

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/ipc"
)

// fakeAcceptor answers one login request on a Unix socket as the acceptor
// would: ok with a greeting written on the handed stream, or a failure.
func fakeAcceptor(t *testing.T, ok bool) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pop3d")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		uc, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer uc.Close()
		c := ipc.NewConn(uc, maxFrame)
		req, files, err := c.Recv(5 * time.Second)
		if err != nil || len(files) != 1 {
			t.Errorf("request: %v, %d files", err, len(files))
			return
		}
		if req.Get("user") != "demo" || req.Get("password") != "pw" || req.Get("tls") != "yes" {
			t.Errorf("request fields: %v %v %v", req.Get("user"), req.Get("password"), req.Get("tls"))
		}
		if !ok {
			c.Send(ipc.NewMsg("status", "fail", "code", CodeAuth, "reason", "Authentication failed"))
			files[0].Close()
			return
		}
		stream, err := net.FileConn(files[0])
		files[0].Close()
		if err != nil {
			t.Error(err)
			return
		}
		c.Send(ipc.NewMsg("status", "ok", "user", "demo"))
		go func() {
			defer stream.Close()
			stream.Write([]byte("+OK Logged in.\r\n"))
			br := bufio.NewReader(stream)
			line, _ := br.ReadString('\n')
			stream.Write([]byte("echo " + line))
		}()
	}()
	return sock
}

func TestLoginAndRelay(t *testing.T) {
	sock := fakeAcceptor(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	session, res, err := Login(ctx, sock, Request{Service: "pop3", User: "demo", Password: "pw", Mech: "USER", TLS: true})
	if err != nil || !res.OK || res.User != "demo" {
		t.Fatalf("Login: %v %+v", err, res)
	}
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Relay(server, session, 5*time.Second) }()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(client)
	if l, _ := br.ReadString('\n'); l != "+OK Logged in.\r\n" {
		t.Fatalf("first line %q", l)
	}
	client.Write([]byte("STAT\r\n"))
	if l, _ := br.ReadString('\n'); l != "echo STAT\r\n" {
		t.Fatalf("relayed %q", l)
	}
	// The session closes its end: Relay ends and closes the client.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not end when the session closed")
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("client still open after the relay ended")
	}
}

func TestLoginFailure(t *testing.T) {
	sock := fakeAcceptor(t, false)
	session, res, err := Login(context.Background(), sock, Request{Service: "pop3", User: "demo", Password: "pw", TLS: true})
	if err != nil || res.OK || res.Temp || res.Code != CodeAuth || session != nil {
		t.Fatalf("Login: %v %+v %v", err, res, session)
	}
}

func TestLoginNoAcceptor(t *testing.T) {
	_, res, err := Login(context.Background(), filepath.Join(t.TempDir(), "none"), Request{})
	if err == nil || !res.Temp || res.Code != CodeTemp {
		t.Fatalf("Login without acceptor: %v %+v", err, res)
	}
}

func TestRelayIdle(t *testing.T) {
	a, b := net.Pipe()
	c, d := net.Pipe()
	defer a.Close()
	defer d.Close()
	start := time.Now()
	err := Relay(b, c, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("Relay: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("idle relay took %s to end", time.Since(start))
	}
}

// handoffAcceptor takes one handed-off client as the acceptor and session
// would: it checks the request, answers ok, greets the client on its own
// connection and echoes the first line, read through what the client
// pipelined first.
func handoffAcceptor(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pop3d")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		uc, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer uc.Close()
		c := ipc.NewConn(uc, maxFrame)
		req, files, err := c.Recv(5 * time.Second)
		if err != nil || len(files) != 1 {
			t.Errorf("request: %v, %d files", err, len(files))
			return
		}
		if req.Get("stream") != "client" || req.Get("tls") != "no" {
			t.Errorf("request: stream %q tls %q", req.Get("stream"), req.Get("tls"))
		}
		conn, err := net.FileConn(files[0])
		files[0].Close()
		if err != nil {
			t.Error(err)
			return
		}
		c.Send(ipc.NewMsg("status", "ok", "user", "demo"))
		var client net.Conn = conn
		if p := req.Get("pending"); p != "" {
			client = &pendingConn{Conn: conn, pending: []byte(p)}
		}
		go func() {
			defer client.Close()
			client.Write([]byte("+OK Logged in.\r\n"))
			br := bufio.NewReader(client)
			line, _ := br.ReadString('\n')
			client.Write([]byte("echo " + line))
		}()
	}()
	return sock
}

func TestHandoff(t *testing.T) {
	sock := handoffAcceptor(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if !CanHandoff(server) {
		t.Fatalf("CanHandoff(%T) = false", server)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A TLS login is never handed off.
	if _, err := Handoff(ctx, sock, Request{TLS: true}, server, nil); err == nil {
		t.Fatal("Handoff of a TLS client succeeded")
	}
	res, err := Handoff(ctx, sock, Request{Service: "pop3", User: "demo", Password: "pw"}, server, []byte("STAT\r\n"))
	if err != nil || !res.OK || res.User != "demo" {
		t.Fatalf("Handoff: %v %+v", err, res)
	}
	// The login front end is done with the client.
	server.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(client)
	if l, _ := br.ReadString('\n'); l != "+OK Logged in.\r\n" {
		t.Fatalf("first line %q", l)
	}
	if l, _ := br.ReadString('\n'); l != "echo STAT\r\n" {
		t.Fatalf("pipelined command: %q", l)
	}
	// The session ends: the client sees the connection close, no other
	// process holds it open.
	if l, err := br.ReadString('\n'); err == nil {
		t.Fatalf("client still open after the session ended: %q", l)
	}
}

func TestHandoffRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "pop3d")
	al, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	go func() {
		uc, err := al.AcceptUnix()
		if err != nil {
			return
		}
		defer uc.Close()
		c := ipc.NewConn(uc, maxFrame)
		_, files, err := c.Recv(5 * time.Second)
		for _, f := range files {
			f.Close()
		}
		if err == nil {
			c.Send(ipc.NewMsg("status", "fail", "code", CodeAuth, "reason", "Authentication failed"))
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	// A refusal leaves the client to the login front end.
	res, err := Handoff(context.Background(), sock, Request{User: "demo", Password: "pw"}, server, nil)
	if err != nil || res.OK || res.Code != CodeAuth {
		t.Fatalf("Handoff: %v %+v", err, res)
	}
	server.Write([]byte("-ERR no\r\n"))
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if l, _ := bufio.NewReader(client).ReadString('\n'); l != "-ERR no\r\n" {
		t.Fatalf("client after a refusal: %q", l)
	}
	if _, err := Handoff(context.Background(), sock, Request{}, server, make([]byte, maxPending+1)); err == nil {
		t.Fatal("Handoff took more pipelined input than maxPending")
	}
}

func TestPendingConn(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &pendingConn{Conn: a, pending: []byte("ab")}
	go b.Write([]byte("cd"))
	buf := make([]byte, 1)
	var got []byte
	for len(got) < 4 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "abcd" {
		t.Fatalf("read %q", got)
	}
}

// TestMemFileSealed: the configuration memfd that all sessions share
// cannot be changed by any of them.
func TestMemFileSealed(t *testing.T) {
	f, err := memFile([]byte("a = b\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("c"), 0); err == nil {
		t.Error("wrote to the sealed snapshot")
	}
	if err := f.Truncate(0); err == nil {
		t.Error("truncated the sealed snapshot")
	}
	b := make([]byte, 6)
	if n, _ := f.ReadAt(b, 0); string(b[:n]) != "a = b\n" {
		t.Errorf("snapshot reads %q", b[:n])
	}
}

// FuzzValidTag: a tag the acceptor passes to a session (which writes it
// to the client) can never split or end a line.
func FuzzValidTag(f *testing.F) {
	for _, s := range []string{"a1", "", "x\r\n* BYE", strings.Repeat("t", 65), "\x00", "A.b-c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		if validTag(tag) && (len(tag) > 64 || strings.ContainsAny(tag, "\r\n \x00\x7f")) {
			t.Fatalf("validTag(%q) = true", tag)
		}
	})
}

// TestHandoffNoAnswer: an acceptor that took the request but never
// answered may have started a session on the client: Handoff says so.
func TestHandoffNoAnswer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "pop3d")
	al, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	go func() {
		uc, err := al.AcceptUnix()
		if err != nil {
			return
		}
		c := ipc.NewConn(uc, maxFrame)
		_, files, _ := c.Recv(5 * time.Second)
		for _, f := range files {
			f.Close()
		}
		uc.Close()
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Handoff(ctx, sock, Request{User: "demo"}, server, nil); !errors.Is(err, ErrMaybeHandedOff) {
		t.Fatalf("Handoff without an answer: %v", err)
	}
	// Nobody listening at all: the client was never given away.
	if _, err := Handoff(ctx, filepath.Join(t.TempDir(), "none"), Request{User: "demo"}, server, nil); err == nil || errors.Is(err, ErrMaybeHandedOff) {
		t.Fatalf("Handoff without an acceptor: %v", err)
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{"+OK Logged in.\r\nrest": "+OK Logged in.", "-ERR [IN-USE] x\n": "-ERR [IN-USE] x"} {
		got, err := FirstLine(strings.NewReader(in), 1024)
		if err != nil || got != want {
			t.Errorf("FirstLine(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := FirstLine(strings.NewReader(strings.Repeat("a", 2000)), 1024); err == nil {
		t.Error("an endless first line was accepted")
	}
	if _, err := FirstLine(strings.NewReader("+OK"), 1024); err == nil {
		t.Error("a first line without end was accepted")
	}
}
