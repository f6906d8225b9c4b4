package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/auth"
)

// stdinFile returns a file that reads content, like a redirected stdin.
func stdinFile(t *testing.T, content string) *os.File {
	t.Helper()
	name := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestPasswdFromStdin(t *testing.T) {
	tests := []struct {
		args   []string
		input  string
		prefix string
		pw     string
	}{
		{nil, "s3cret pass\n", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$", "s3cret pass"},
		{[]string{"-s", "blf-crypt"}, "s3cret\r\n", "{BLF-CRYPT}$2b$10$", "s3cret"},
		{[]string{"-s", "SHA512-CRYPT", "alice@example.org"}, "no newline", "alice@example.org:{SHA512-CRYPT}$6$rounds=200000$", "no newline"},
		{[]string{"bob"}, "first\nsecond\n", "bob:{ARGON2ID}", "first"},
	}
	for _, tt := range tests {
		var out, prompt bytes.Buffer
		if err := hashPassword(tt.args, stdinFile(t, tt.input), &out, &prompt); err != nil {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		line := strings.TrimSuffix(out.String(), "\n")
		if !strings.HasPrefix(line, tt.prefix) || strings.Contains(line, "\n") {
			t.Errorf("%v: printed %q, want prefix %q", tt.args, out.String(), tt.prefix)
			continue
		}
		if prompt.Len() != 0 {
			t.Errorf("%v: prompted %q without a terminal", tt.args, prompt.String())
		}
		field := line
		if i := strings.Index(line, ":{"); i >= 0 {
			field = line[i+1:]
		}
		if ok, err := auth.Verify(field, tt.pw); !ok || err != nil {
			t.Errorf("%v: %s does not verify %q: %v", tt.args, field, tt.pw, err)
		}
	}
}

func TestPasswdErrors(t *testing.T) {
	tests := []struct {
		args  []string
		input string
		usage bool
		want  string
	}{
		{[]string{"-s", "PLAIN"}, "x\n", true, "unknown scheme"},
		{[]string{"-x"}, "x\n", true, "usage"},
		{[]string{"a", "b"}, "x\n", true, "usage"},
		{[]string{"bad:user"}, "x\n", true, "colon"},
		{nil, "", false, "end of input"},
		{nil, "\n", false, "empty password"},
		{nil, strings.Repeat("x", auth.MaxPasswordLen+1) + "\n", false, "longer than"},
		{nil, strings.Repeat("x", 10000), false, "longer than"},
		{[]string{"-s", "BLF-CRYPT"}, strings.Repeat("x", 100) + "\n", false, "72 bytes"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := hashPassword(tt.args, stdinFile(t, tt.input), &out, &out)
		var u usageError
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.As(err, &u) != tt.usage {
			t.Errorf("%v with %.20q: %v (usage error: %v), want %q", tt.args, tt.input, err, errors.As(err, &u), tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q", tt.args, out.String())
		}
	}
}

// openPTY returns the master and the slave of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// expect reads the terminal's output until it holds want.
func expect(t *testing.T, master *os.File, seen *bytes.Buffer, want string) {
	t.Helper()
	buf := make([]byte, 256)
	master.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(seen.String(), want) {
		n, err := master.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("waiting for %q, got %q: %v", want, seen.String(), err)
		}
	}
}

func TestPasswdFromTerminal(t *testing.T) {
	for _, c := range []struct {
		second string
		ok     bool
	}{{"tty-secret", true}, {"tty-secreT", false}} {
		master, slave := openPTY(t)
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() { done <- hashPassword([]string{"-s", "BLF-CRYPT", "carol"}, slave, &out, slave) }()
		var seen bytes.Buffer
		expect(t, master, &seen, "Password: ")
		master.Write([]byte("tty-secret\n"))
		expect(t, master, &seen, "Retype password: ")
		master.Write([]byte(c.second + "\n"))
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("postern passwd did not finish")
		}
		// Drain what is left of the prompts' output.
		master.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		rest := make([]byte, 256)
		n, _ := master.Read(rest)
		seen.Write(rest[:n])
		if strings.Contains(seen.String(), "tty-secre") {
			t.Errorf("the password was echoed: %q", seen.String())
		}
		if !c.ok {
			if err == nil || !strings.Contains(err.Error(), "do not match") {
				t.Errorf("mismatch: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		field := strings.TrimPrefix(strings.TrimSpace(out.String()), "carol:")
		if ok, err := auth.Verify(field, "tty-secret"); !ok || err != nil {
			t.Errorf("printed %q: %v", out.String(), err)
		}
		// Echo is on again afterwards.
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil || tio.Lflag&unix.ECHO == 0 {
			t.Errorf("echo not restored: %v", err)
		}
	}
}
