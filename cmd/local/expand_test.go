package main

import (
	"testing"

	"golang.org/x/sys/unix"

	"postern/internal/address"
	"postern/internal/passwd"
)

func TestExpandForwardPath(t *testing.T) {
	l := &local{delim: "+"}
	u := passwd.User{Name: "joe", UID: 1000, GID: 1000, Home: "/home/joe", Shell: "/bin/sh"}
	a := address.Address{Local: "Joe+Lists", Domain: "Example.ORG"}
	for _, tc := range []struct {
		pattern, ext, want string
		ok                 bool
	}{
		{"$home/.forward", "", "/home/joe/.forward", true},
		{"${home}/.forward${recipient_delimiter}${extension}", "lists", "/home/joe/.forward+lists", true},
		{"$home/.forward$recipient_delimiter$extension", "", "", false},
		{"/var/forward/$user", "", "/var/forward/joe", true},
		{"/var/forward/$domain/$local", "", "/var/forward/example.org/joe+lists", true},
		{"$home/$nosuch", "", "", false},
		{"relative/$user", "", "", false},
		{"${home", "", "", false},
	} {
		got, ok := l.expandForwardPath(tc.pattern, u, a, tc.ext)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%q ext %q = %q, %v; want %q, %v", tc.pattern, tc.ext, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBadOwner(t *testing.T) {
	for _, tc := range []struct {
		uid, mode uint32
		bad       bool
	}{
		{1000, 0o644, false},
		{0, 0o600, false},
		{1000, 0o664, true},
		{1000, 0o646, true},
		{1001, 0o644, true},
		{1000, 0o1755, false},
	} {
		st := unix.Stat_t{Uid: tc.uid, Mode: unix.S_IFREG | tc.mode}
		if got := badOwner(st, 1000) != ""; got != tc.bad {
			t.Errorf("uid %d mode %o: bad %v, want %v", tc.uid, tc.mode, got, tc.bad)
		}
	}
}
