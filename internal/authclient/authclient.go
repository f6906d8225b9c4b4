// Package authclient asks the auth daemon (private/auth) to check a login
// or to look up a user, for smtpd, local and the login front ends. It
// never sees a password hash: auth alone reads the credential files.
//
// Each call uses a connection of its own, bounded by Timeout; the answer
// is validated (numeric ids, absolute paths) because no daemon trusts
// another's bytes blindly.
package authclient

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"postern/internal/ipc"
)

// User is what auth knows about a mailbox user.
type User struct {
	Name     string // canonical login name
	UID, GID int    // -1 when the credential database does not say
	Home     string
	Mail     string // mailbox location (a Maildir path ending in /)
}

// Client reaches the auth daemon.
type Client struct {
	// Dial opens a connection to auth; by default ipc.Dial(Path).
	Dial    func() (*ipc.Conn, error)
	Path    string
	Timeout time.Duration
}

// ErrTempFail is a temporary refusal (rate limit, auth unavailable).
var ErrTempFail = errors.New("authentication temporarily unavailable")

func (c *Client) conn() (*ipc.Conn, error) {
	if c.Dial != nil {
		return c.Dial()
	}
	return ipc.Dial(c.Path, c.timeout())
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 30 * time.Second
}

func (c *Client) call(req *ipc.Msg) (*ipc.Msg, error) {
	conn, err := c.conn()
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer conn.Close()
	if err := conn.Send(req); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	resp, files, err := conn.Recv(c.timeout())
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return resp, nil
}

// Login checks a password. ok false with a nil error is a wrong user or
// password; ErrTempFail is a temporary refusal.
func (c *Client) Login(service, user, password, clientAddr string) (User, bool, string, error) {
	resp, err := c.call(ipc.NewMsg("op", "login", "service", service, "user", user, "password", password, "client_addr", clientAddr))
	if err != nil {
		return User{}, false, "", fmt.Errorf("%w: %v", ErrTempFail, err)
	}
	switch resp.Get("status") {
	case "ok":
		u, err := parseUser(resp)
		if err != nil {
			return User{}, false, "", fmt.Errorf("%w: %v", ErrTempFail, err)
		}
		return u, true, "", nil
	case "fail":
		return User{}, false, resp.Get("reason"), nil
	}
	return User{}, false, resp.Get("reason"), fmt.Errorf("%w: %s", ErrTempFail, resp.Get("reason"))
}

// Lookup finds a user without a password check.
func (c *Client) Lookup(user string) (User, bool, error) {
	resp, err := c.call(ipc.NewMsg("op", "lookup", "user", user))
	if err != nil {
		return User{}, false, err
	}
	switch resp.Get("status") {
	case "ok":
		u, err := parseUser(resp)
		return u, err == nil, err
	case "nouser":
		return User{}, false, nil
	}
	return User{}, false, fmt.Errorf("auth: lookup %s: %s %s", user, resp.Get("status"), resp.Get("reason"))
}

func parseUser(m *ipc.Msg) (User, error) {
	u := User{Name: m.Get("user"), Home: m.Get("home"), Mail: m.Get("mail")}
	var err error
	// An empty id means the passwd-file left it out: -1, and the caller
	// falls back to virtual_uid_maps / virtual_gid_maps.
	u.UID, u.GID = -1, -1
	if s := m.Get("uid"); s != "" {
		if u.UID, err = strconv.Atoi(s); err != nil || u.UID < 0 {
			return User{}, fmt.Errorf("auth: bad uid %q for %s", s, u.Name)
		}
	}
	if s := m.Get("gid"); s != "" {
		if u.GID, err = strconv.Atoi(s); err != nil || u.GID < 0 {
			return User{}, fmt.Errorf("auth: bad gid %q for %s", s, u.Name)
		}
	}
	for _, p := range []string{u.Home, u.Mail} {
		if p != "" && (!filepath.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..")) {
			return User{}, fmt.Errorf("auth: bad path %q for %s", p, u.Name)
		}
	}
	return u, nil
}
