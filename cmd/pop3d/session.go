package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/log"
	"postern/internal/maildir"
	"postern/internal/pop3"
	"postern/internal/postlogin"
)

// Defaults of settings the session reads, for a configuration that does
// not know them.
const (
	defaultIdle    = 10 * time.Minute
	maxBadCommands = 20
)

// runSession serves one logged-in client and returns the exit status.
func runSession(s *postlogin.Session) int {
	idle := defaultIdle
	if s.Config != nil && s.Config.Get("pop3d_idle_timeout") != "" {
		idle = s.Config.Duration("pop3d_idle_timeout")
	}
	return serve(sessionConfig{
		Conn: s.Conn, User: s.User, Mail: s.Mail, ClientAddr: s.ClientAddr, Idle: idle,
	})
}

// sessionConfig is what serve needs; tests make one without postlogin.
type sessionConfig struct {
	Conn       net.Conn
	User       string
	Mail       string // Maildir root, absolute
	ClientAddr string
	Idle       time.Duration // 0: no limit
}

// session is the TRANSACTION state of one client.
type session struct {
	cfg       sessionConfig
	r         *pop3.Reader
	w         *pop3.Writer
	folder    *maildir.Folder
	msgs      []maildir.Message // the snapshot taken at login
	deleted   []bool
	retrieved []bool
	bad       int
	buf       []byte // RETR's read buffer, kept for the session

	// Statistics for the log line at the end.
	topN, retrN, delN     int
	topBytes, retrBytes   int64
	delBytes, mailboxSize int64
}

// idleConn arms the idle deadline before every read and write, so a
// client that neither sends a command nor takes a RETR's data is cut off
// after idle.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(p)
}

func (c idleConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Write(p)
}

// serve opens the mailbox, writes the first line, and runs the commands
// until QUIT or the end of the connection.
func serve(cfg sessionConfig) int {
	defer cfg.Conn.Close()
	conn := idleConn{Conn: cfg.Conn, idle: cfg.Idle}
	s := &session{cfg: cfg, r: pop3.NewReader(conn), w: pop3.NewWriter(conn)}
	rip := cfg.ClientAddr
	if h, _, err := net.SplitHostPort(rip); err == nil {
		rip = h
	}
	who := fmt.Sprintf("user=<%s> rip=%s", log.Clean(cfg.User), log.Clean(rip))

	store, err := maildir.OpenStore(cfg.Mail, true)
	if err == nil {
		s.folder, err = store.Open("INBOX")
	}
	if err != nil {
		log.Errorf("%s: open mailbox %s: %v", who, cfg.Mail, err)
		s.w.Err(pop3.CodeSysTemp, "Mailbox could not be opened, try again later.")
		s.w.Flush()
		return 1
	}
	defer s.folder.Close()
	// POP3 never shows an internal date: Sync need not stat every file
	// for one.
	s.folder.LazyDates()
	unlock, err := s.folder.LockSession()
	if errors.Is(err, maildir.ErrInUse) {
		log.Infof("mailbox in use %s", who)
		s.w.Err(pop3.CodeInUse, "Mailbox is locked by another POP3 session.")
		s.w.Flush()
		return 0
	}
	if err != nil {
		log.Errorf("%s: lock mailbox %s: %v", who, cfg.Mail, err)
		s.w.Err(pop3.CodeSysTemp, "Mailbox could not be locked, try again later.")
		s.w.Flush()
		return 1
	}
	defer unlock()
	// Like Dovecot, POP3 access moves new mail to cur/: it has been seen
	// by a client (though not read: that is the S flag RETR gives).
	s.msgs, err = s.folder.Sync(true)
	if err != nil {
		log.Errorf("%s: read mailbox %s: %v", who, cfg.Mail, err)
		s.w.Err(pop3.CodeSysTemp, "Mailbox could not be read, try again later.")
		s.w.Flush()
		return 1
	}
	if err := s.folder.Renumbered(); err != nil {
		// Clients will download everything again (new UIDLs): say why.
		log.Warnf("%s: %v", who, err)
	}
	s.deleted = make([]bool, len(s.msgs))
	s.retrieved = make([]bool, len(s.msgs))
	for _, m := range s.msgs {
		s.mailboxSize += m.Size
	}
	s.w.OK("Logged in.")
	if err := s.w.Flush(); err != nil {
		return 0
	}

	reason, status := s.loop()
	log.Infof("disconnected %s reason=%q top=%d/%d retr=%d/%d del=%d/%d size=%d",
		who, reason, s.topN, s.topBytes, s.retrN, s.retrBytes, s.delN, len(s.msgs), s.mailboxSize)
	return status
}

// loop reads and runs commands. It returns why the session ended, for
// the log, and the exit status.
func (s *session) loop() (reason string, status int) {
	for {
		line, err := s.r.ReadLine()
		switch {
		case errors.Is(err, pop3.ErrLineTooLong):
			s.w.Err("", "line too long")
			s.w.Flush()
			return "line too long", 0
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.w.Err("", "Disconnected for inactivity.")
			s.w.Flush()
			return "idle timeout", 0
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			return "connection closed", 0
		case err != nil:
			return "read: " + err.Error(), 0
		}
		done, err := s.command(line)
		if err != nil {
			// A write failed or a message could not be read in the
			// middle of a reply: the stream is beyond repair.
			return err.Error(), 0
		}
		if done != "" {
			s.w.Flush()
			return done, 0
		}
		if s.r.Buffered() == 0 {
			if err := s.w.Flush(); err != nil {
				return "write: " + err.Error(), 0
			}
		}
	}
}

// command runs one command line. done, when not empty, ends the session
// (QUIT, too many bad commands); err is a broken connection.
func (s *session) command(line string) (done string, err error) {
	c, perr := pop3.ParseCommand(line)
	if perr != nil {
		return s.badCommand("Invalid command.")
	}
	w := s.w
	switch c.Name {
	case "QUIT":
		if len(c.Args) != 0 {
			return s.badCommand("QUIT takes no argument.")
		}
		return s.update(), nil
	case "NOOP":
		return "", w.OK("")
	case "CAPA":
		return "", w.WriteCapa(pop3.Capa{})
	case "STAT":
		n, size := 0, int64(0)
		for i, m := range s.msgs {
			if !s.deleted[i] {
				n++
				size += m.Size
			}
		}
		return "", w.OK(fmt.Sprintf("%d %d", n, size))
	case "LIST", "UIDL":
		return s.list(c)
	case "RETR":
		if len(c.Args) != 1 {
			return s.badCommand("RETR needs a message number.")
		}
		i, ok := s.message(c.Args[0])
		if !ok {
			return "", nil
		}
		n, err := s.send(i, -1)
		if n >= 0 {
			s.retrieved[i] = true
			s.retrN++
			s.retrBytes += n
		}
		return "", err
	case "TOP":
		if len(c.Args) != 2 {
			return s.badCommand("TOP needs a message number and a line count.")
		}
		i, ok := s.message(c.Args[0])
		if !ok {
			return "", nil
		}
		lines, ok := pop3.ParseNumber(c.Args[1], 1<<31-1)
		if !ok {
			return s.badCommand("Invalid line count.")
		}
		n, err := s.send(i, lines)
		if n >= 0 {
			s.topN++
			s.topBytes += n
		}
		return "", err
	case "DELE":
		if len(c.Args) != 1 {
			return s.badCommand("DELE needs a message number.")
		}
		i, ok := s.message(c.Args[0])
		if !ok {
			return "", nil
		}
		s.deleted[i] = true
		return "", w.OK("Marked to be deleted.")
	case "RSET":
		for i := range s.deleted {
			s.deleted[i] = false
		}
		return "", w.OK("")
	case "USER", "PASS", "AUTH", "APOP":
		return s.badCommand("Already logged in.")
	case "STLS":
		return s.badCommand("STLS is only allowed before login.")
	}
	return s.badCommand("Unknown command.")
}

// badCommand answers -ERR text and counts it; too many end the session.
func (s *session) badCommand(text string) (string, error) {
	s.bad++
	if s.bad >= maxBadCommands {
		s.w.Err("", "Too many bad commands.")
		return "too many bad commands", nil
	}
	return "", s.w.Err("", text)
}

// message resolves a message number argument. It answers -ERR itself
// when the number is bad or the message is marked deleted.
func (s *session) message(arg string) (int, bool) {
	n, ok := pop3.ParseNumber(arg, len(s.msgs))
	if !ok || n == 0 {
		s.bad++
		s.w.Err("", "There is no such message.")
		return 0, false
	}
	if s.deleted[n-1] {
		s.w.Err("", "Message is deleted.")
		return 0, false
	}
	return n - 1, true
}

// list runs LIST and UIDL, with or without a message number.
func (s *session) list(c pop3.Command) (string, error) {
	item := func(i int) string {
		m := s.msgs[i]
		if c.Name == "UIDL" {
			return strconv.Itoa(i+1) + " " + pop3.UIDL(m.UID, s.folder.UIDValidity())
		}
		return strconv.Itoa(i+1) + " " + strconv.FormatInt(m.Size, 10)
	}
	switch len(c.Args) {
	case 0:
		s.w.OK("")
		for i := range s.msgs {
			if !s.deleted[i] {
				s.w.Line(item(i))
			}
		}
		return "", s.w.Line(".")
	case 1:
		i, ok := s.message(c.Args[0])
		if !ok {
			return "", nil
		}
		return "", s.w.OK(item(i))
	}
	return s.badCommand(c.Name + " takes at most one message number.")
}

// send writes message i for RETR (lines < 0) or TOP. It returns the
// octets sent from the message, or -1 when it answered -ERR. An error is
// a broken stream: the client got a partial message and must not take it
// for a whole one, so the session ends without "." (the client sees a
// dropped connection, and nothing is deleted).
func (s *session) send(i, lines int) (int64, error) {
	m := s.msgs[i]
	if lines < 0 {
		if fd, ok := s.openRaw(m); ok {
			return s.retr(i, rawFile(fd))
		}
	}
	f, err := s.folder.Open(m)
	if err != nil {
		if errors.Is(err, maildir.ErrNoMessage) {
			s.w.Err("", "Message was removed by another session.")
		} else {
			log.Errorf("user=<%s>: open %s: %v", log.Clean(s.cfg.User), m.Name, err)
			s.w.Err(pop3.CodeSysTemp, "Message could not be read.")
		}
		return -1, nil
	}
	if lines < 0 {
		return s.retr(i, f)
	}
	defer f.Close()
	s.w.OK("")
	d := s.w.Multi()
	cw := &countWriter{w: d}
	src := maildir.NewCRLFReader(bufio.NewReaderSize(f, 64<<10))
	if err = pop3.CopyTop(cw, src, lines); err != nil {
		if cw.werr == nil {
			log.Errorf("user=<%s>: read %s: %v", log.Clean(s.cfg.User), m.Name, err)
		}
		return -1, fmt.Errorf("sending message %d: %w", i+1, err)
	}
	return cw.n, d.Close()
}

// openRaw opens message m's file under the name the snapshot has for it,
// with a bare open(2): RETR of a large mailbox opens thousands of files,
// and os.Open adds four fcntl and an epoll_ctl to each (it tries to make
// the file pollable). ok is false when the file is not there under that
// name (its flags changed since login): Folder.Open finds it again.
func (s *session) openRaw(m maildir.Message) (fd int, ok bool) {
	if m.Name == "" {
		return -1, false
	}
	for {
		// O_NONBLOCK: a FIFO put in the Maildir must not hang the
		// session in open; on a regular file it changes nothing.
		fd, err := unix.Open(s.folder.Dir()+"/"+m.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err == nil
	}
}

// rawFile reads a descriptor openRaw opened; Close closes it.
type rawFile int

func (f rawFile) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Close closes the descriptor.
func (f rawFile) Close() error { return unix.Close(int(f)) }

// retr sends message i for RETR from f, which it closes: one pass from
// the file into the reply buffer, no allocation per message. It returns
// what send does.
func (s *session) retr(i int, f io.ReadCloser) (int64, error) {
	defer f.Close()
	m := s.msgs[i]
	s.w.OK(strconv.FormatInt(m.Size, 10) + " octets")
	if s.buf == nil {
		s.buf = make([]byte, 64<<10)
	}
	n, rerr, werr := s.w.WriteMessage(f, s.buf)
	if rerr != nil {
		log.Errorf("user=<%s>: read %s: %v", log.Clean(s.cfg.User), m.Name, rerr)
		return -1, fmt.Errorf("sending message %d: %w", i+1, rerr)
	}
	if werr != nil {
		return -1, fmt.Errorf("sending message %d: %w", i+1, werr)
	}
	return n, nil
}

// countWriter counts what passes and remembers whether writing failed
// (the client) rather than reading (the file).
type countWriter struct {
	w    io.Writer
	n    int64
	werr error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// update is the UPDATE state (RFC 1939 6): remove what DELE marked, give
// retrieved messages the Seen flag, answer QUIT. It returns the log reason.
func (s *session) update() string {
	// The flags as they are now: an IMAP client may have changed them
	// since login, and Seen must be added to those, not to the old ones.
	current := map[uint32]maildir.Message{}
	if now, err := s.folder.Sync(false); err == nil {
		for _, m := range now {
			current[m.UID] = m
		}
	} else {
		log.Warnf("user=<%s>: re-read mailbox: %v", log.Clean(s.cfg.User), err)
	}
	failed := 0
	for i, m := range s.msgs {
		if c, ok := current[m.UID]; ok {
			m = c
		}
		switch {
		case s.deleted[i]:
			if err := s.folder.Expunge(m); err != nil {
				log.Errorf("user=<%s>: remove %s: %v", log.Clean(s.cfg.User), m.Name, err)
				failed++
				continue
			}
			s.delN++
			s.delBytes += m.Size
		case s.retrieved[i] && !strings.ContainsRune(m.Flags, 'S'):
			if _, err := s.folder.SetFlags(m, m.Flags+"S"); err != nil && !errors.Is(err, maildir.ErrNoMessage) {
				log.Warnf("user=<%s>: set Seen on %s: %v", log.Clean(s.cfg.User), m.Name, err)
			}
		}
	}
	if failed > 0 {
		s.w.Err(pop3.CodeSysTemp, fmt.Sprintf("%d messages could not be deleted.", failed))
		return "logged out, delete failed"
	}
	if s.delN > 0 {
		s.w.OK("Logging out, messages deleted.")
	} else {
		s.w.OK("Logging out.")
	}
	return "logged out"
}
