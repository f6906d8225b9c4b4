package postlogin

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"postern/internal/config"
	"postern/internal/log"
	"postern/internal/privsep"
)

// IsSession reports whether this process was started by an acceptor as a
// session (and not by master as the service).
func IsSession() bool {
	return os.Getenv(envSession) == "1" && len(os.Args) > 1 && os.Args[1] == "-session"
}

// Session is a logged-in user's session, as the acceptor started it.
type Session struct {
	Conn       net.Conn // from the login front end: the plaintext protocol stream
	User       string   // canonical login name
	Mail       string   // Maildir root (INBOX), absolute, ends in "/"
	Home       string
	UID, GID   int
	ClientAddr string
	LocalAddr  string
	TLS        bool
	Config     *config.Config // the running configuration, with the service's -o options
	// Handoff: Conn is the client's own connection (postlogin.Handoff),
	// not a stream from the login front end.
	Handoff bool
	// Tag, on an IMAP handoff, is the tag of the client's login command,
	// which the session answers (the tagged OK, in place of the PREAUTH
	// greeting a relayed session sends); "" otherwise.
	Tag string
}

// StartSession picks up what the acceptor handed over: the stream, the
// configuration and the user. It refuses to run as root or with any
// capability, and sets no_new_privs.
func StartSession(program string) (*Session, error) {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.Bool("session", false, "run as a session")
	name := fs.String("n", program, "service name")
	typ := fs.String("t", "unix", "service type")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, fmt.Errorf("%s: bad arguments: %w", program, err)
	}
	if os.Geteuid() == 0 || os.Getuid() == 0 {
		return nil, fmt.Errorf("%s: a session never runs as root", program)
	}
	if err := privsep.NoNewPrivs(); err != nil {
		return nil, err
	}
	// Fail closed: a session that cannot show it holds no capability
	// does not run (it is not chrooted; /proc is there).
	st, err := privsep.ReadStatus("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", program, err)
	}
	if st.CapEff != 0 || st.CapPrm != 0 {
		return nil, fmt.Errorf("%s: a session must hold no capability (CapEff %x, CapPrm %x)", program, st.CapEff, st.CapPrm)
	}
	// Without the descriptor (not started by an acceptor) a read would
	// fail at once and end the session: only a real one is watched.
	if lf := os.NewFile(sessionLifeFD, "lifeline"); lf != nil {
		if _, err := lf.Stat(); err == nil {
			go lifeline(program, lf)
		}
	}
	cf := os.NewFile(sessionConfigFD, "config")
	if cf == nil {
		return nil, errors.New("no configuration descriptor")
	}
	snap, err := io.ReadAll(io.LimitReader(io.NewSectionReader(cf, 0, 64<<20), 64<<20))
	cf.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: configuration snapshot: %w", program, err)
	}
	cfg, err := config.FromSnapshot(os.Getenv(envConfDir), snap)
	if err != nil {
		return nil, fmt.Errorf("%s: configuration: %w", program, err)
	}
	for _, s := range cfg.Services() {
		if s.Name == *name && s.Type == *typ && len(s.Options) > 0 {
			if cfg, err = cfg.WithOverrides(s.Options); err != nil {
				return nil, fmt.Errorf("%s: service %s: %w", program, s.Name, err)
			}
			break
		}
	}
	sf := os.NewFile(sessionConnFD, "stream")
	if sf == nil {
		return nil, errors.New("no stream descriptor")
	}
	conn, err := net.FileConn(sf)
	sf.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: stream: %w", program, err)
	}
	p, handoff := os.LookupEnv(envPending)
	if handoff {
		// The client's own connection (Handoff): what it pipelined
		// behind its login comes first.
		b, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(b) > maxPending {
			conn.Close()
			return nil, fmt.Errorf("%s: bad pipelined input from the acceptor", program)
		}
		if len(b) > 0 {
			conn = &pendingConn{Conn: conn, pending: b}
		}
	}
	s := &Session{
		Conn:       conn,
		User:       os.Getenv(envUser),
		Mail:       os.Getenv(envMail),
		Home:       os.Getenv(envHome),
		UID:        os.Getuid(),
		GID:        os.Getgid(),
		ClientAddr: os.Getenv(envClient),
		LocalAddr:  os.Getenv(envLocal),
		TLS:        os.Getenv(envTLS) == "yes",
		Config:     cfg,
		Handoff:    handoff,
		Tag:        os.Getenv(envTag),
	}
	if s.User == "" || !filepath.IsAbs(s.Mail) || !strings.HasSuffix(s.Mail, "/") {
		conn.Close()
		return nil, fmt.Errorf("%s: bad session environment (user %q, mail %q)", program, s.User, s.Mail)
	}
	os.Clearenv()
	return s, nil
}

// pendingConn is a handed-off client connection whose first octets were
// read by the login front end already.
type pendingConn struct {
	net.Conn
	pending []byte
}

func (c *pendingConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// lifeline ends the session when the acceptor that started it is gone
// (postern stop, or the acceptor killed): the pipe's only write end was
// the acceptor's, so a read returns EOF then. A POP3 session that ends
// this way has not entered UPDATE: nothing is deleted.
func lifeline(program string, f *os.File) {
	var b [1]byte
	f.Read(b[:])
	log.Infof("%s: the session service stopped; ending the session", program)
	os.Exit(0)
}
