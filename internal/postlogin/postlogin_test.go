package postlogin

import (
	"bufio"
	"context"
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
