package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/maildrop"
	"postern/internal/queue"
	"postern/internal/service"
)

// inSpool makes a spool with maildrop/ in a temp dir and works in it, as
// the chrooted daemon does.
func inSpool(t *testing.T) *pickup {
	t.Helper()
	d := t.TempDir()
	if err := os.Mkdir(filepath.Join(d, queue.Maildrop), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(d)
	return &pickup{myorigin: "host.example", timeout: time.Second, wake: make(chan struct{}, 1), d: &service.Daemon{}}
}

func dropFile(t *testing.T, env *maildrop.Envelope, msg string, mode os.FileMode) string {
	t.Helper()
	var b bytes.Buffer
	if env != nil {
		if err := maildrop.Write(&b, env); err != nil {
			t.Fatal(err)
		}
	}
	b.WriteString(msg)
	name := string(queue.NewID())
	p := filepath.Join(queue.Maildrop, name)
	if err := os.WriteFile(p, b.Bytes(), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	return name
}

func exists(name string) bool {
	_, err := os.Lstat(filepath.Join(queue.Maildrop, name))
	return err == nil
}

func TestEnvelope(t *testing.T) {
	p := inSpool(t)
	env := &maildrop.Envelope{Arrival: time.Now(), UID: 7, Login: "alice", Sender: "alice", Extract: true, Notify: "NEVER",
		Recipients: []string{"bob", "Bob@host.example"}}
	name := dropFile(t, env, "To: carol@example.org, bob\nBcc: Dave <dave@example.org>\nCc: <<bad\n\nTo: body@example.org\n", 0o744)
	f, err := os.Open(filepath.Join(queue.Maildrop, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr bytes.Buffer
	maildrop.Write(&hdr, env)
	m, rj, err := p.envelope(name, env, f, int64(hdr.Len()))
	if m == nil || rj != nil || err != nil {
		t.Fatal(rj, err)
	}
	got := strings.Join(m.All("rcpt"), " ")
	if got != "bob@host.example carol@example.org dave@example.org" {
		t.Errorf("recipients %q", got)
	}
	if m.Get("sender") != "alice@host.example" || m.Get("uid") != "7" || m.Get("origin") != "local" || m.Get("extract_recipients") != "y" || m.All("notify")[0] != "NEVER" {
		t.Errorf("request %v", m.Names())
	}
	// Nobody to send to.
	env2 := &maildrop.Envelope{Arrival: time.Now(), Sender: "", SenderSet: true, Extract: true}
	name2 := dropFile(t, env2, "Subject: x\n\n", 0o744)
	f2, _ := os.Open(filepath.Join(queue.Maildrop, name2))
	defer f2.Close()
	hdr.Reset()
	maildrop.Write(&hdr, env2)
	if m, rj, _ := p.envelope(name2, env2, f2, int64(hdr.Len())); m != nil || rj == nil || rj.reason != "no recipient addresses found in message header" {
		t.Errorf("no recipients accepted: %v %+v", m, rj)
	}
	// A sender that is not an address: rejected, with the recipients for
	// the report.
	env3 := &maildrop.Envelope{Arrival: time.Now(), Login: "alice", Sender: "a b@@c", SenderSet: true, Recipients: []string{"bob"}}
	name3 := dropFile(t, env3, "Subject: x\n\n", 0o744)
	f3, _ := os.Open(filepath.Join(queue.Maildrop, name3))
	defer f3.Close()
	hdr.Reset()
	maildrop.Write(&hdr, env3)
	if m, rj, _ := p.envelope(name3, env3, f3, int64(hdr.Len())); m != nil || rj == nil || !rj.bad || rj.status != "5.1.7" || len(rj.rcpts) != 1 || rj.rcpts[0] != "bob@host.example" {
		t.Errorf("bad sender: %v %+v", m, rj)
	}
	if to, proto := p.bounceTo(env3, &rejection{from: env3.Sender, bad: true}); to != "alice@host.example" || proto != "bounce" {
		t.Errorf("bad sender's bounce to %q %q", to, proto)
	}
}

func TestProcessAside(t *testing.T) {
	p := inSpool(t)
	garbage := dropFile(t, nil, "garbage\n", 0o744)
	wrongUID := dropFile(t, &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid() + 1, Sender: "a", Recipients: []string{"b"}}, "x", 0o744)
	incomplete := dropFile(t, &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Sender: "a", Recipients: []string{"b"}}, "x", 0o600)
	stale := dropFile(t, &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Sender: "a", Recipients: []string{"b"}}, "x", 0o600)
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(filepath.Join(queue.Maildrop, stale), old, old)
	link := string(queue.NewID())
	os.Symlink("/etc/passwd", filepath.Join(queue.Maildrop, link))
	good := dropFile(t, &maildrop.Envelope{Arrival: time.Now(), UID: os.Getuid(), Sender: "a", Recipients: []string{"b"}}, "x", 0o744)

	for _, n := range []string{garbage, wrongUID, incomplete, stale, link} {
		if !p.process(n) {
			t.Errorf("%s: stopped the scan", n)
		}
	}
	for _, n := range []string{garbage, wrongUID, link} {
		if exists(n) || !exists(n+".corrupt") {
			t.Errorf("%s not moved aside", n)
		}
	}
	if !exists(incomplete) {
		t.Error("incomplete file touched")
	}
	if exists(stale) {
		t.Error("stale incomplete file kept")
	}
	// No cleanup listening: the scan stops and the file stays.
	if p.process(good) || !exists(good) {
		t.Error("good file without cleanup")
	}
}
