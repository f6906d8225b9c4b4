// The connection imapserver sees. imapserver (v2.0.0-beta.8) has fixed
// timeouts, a fixed 50 KiB command limit that it reports as NO [SERVERBUG],
// answers malformed arguments (a mailbox name that is not modified UTF-7, a
// bad number set) with NO [SERVERBUG], and after refusing a
// non-synchronising literal it parses the literal's bytes as commands.
// Rather than fork it, sessionConn sits between it and the client and
// understands just enough IMAP framing (lines and literals) to fix that:
//
//   - read deadlines: the idle wait before a command and the IDLE wait use
//     imapd_idle_timeout; on expiry the client gets "* BYE Autologout";
//   - command lines: at most maxLine bytes outside literals; a longer first
//     line is swallowed and answered "<tag> BAD [TOOBIG]"; a longer
//     continuation line closes the session;
//   - literals: a non-synchronising literal larger than the command allows
//     (maxLit for APPEND, 4096 bytes for any other command, imapserver's
//     limit) is answered BAD [TOOBIG] plus BYE, and the session ends;
//   - responses: a tagged "NO [SERVERBUG] Internal server error" can only
//     come from imapserver's own argument decoding (our Session never
//     returns that text), so it becomes "BAD [CLIENTBUG] Invalid arguments".
//
// It also counts bytes for the disconnect log line, remembers why the
// session ended, and batches output: imapserver flushes after every
// response line, which for a FETCH of 10,000 messages is 10,000 write
// system calls; during FETCH, SEARCH and STORE (commands that never wait
// for the client once read) untagged lines are held, up to outBatch
// bytes, and sent with the tagged reply (or after batchDelay at most).
package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// imapserver's own limit on the non-literal bytes of one command
// (maxCommandSize, 50 KiB); ours must stay below it so that the library
// never reports it as a server bug.
const libMaxCommand = 50 * 1024

// bufferedLiteralMax is the largest literal imapserver accepts outside
// APPEND (it buffers those in memory).
const bufferedLiteralMax = 4096

// Read deadlines imapserver asks for: the idle wait is 35 minutes, the
// rest of a command 30 seconds, an APPEND literal 5 minutes.
const libIdleTimeout = 35 * time.Minute

// serverBugLine is the text imapserver writes for an error it did not
// expect. Our Session reports its own failures with other words.
var serverBugLine = []byte(" NO [SERVERBUG] Internal server error\r\n")

type sessionConn struct {
	net.Conn
	idle    time.Duration // read deadline while waiting for a command
	maxLine int           // non-literal bytes of one command
	maxLit  int64         // largest APPEND literal

	closeOnce sync.Once
	closed    chan struct{}

	mu     sync.Mutex // guards everything below that both sides touch
	in     int64
	out    int64
	reason string
	dead   bool // the session is ending: drop reads and writes

	// read side, only touched by the reader (imapserver's goroutine)
	rbuf     []byte // bytes read from the client, not handed out yet
	back     []byte // rbuf's allocation, reused once rbuf is empty
	approved int    // bytes at the front of rbuf that may be handed out
	litLeft  int64  // literal bytes still to hand out unchecked
	// after the approved bytes are out: a literal of this size follows
	// (afterLit >= 0), synchronising or not.
	afterLit  int64
	afterSync bool
	inCmd     bool // the last line ended in a literal: same command goes on
	cmdLen    int  // non-literal bytes of the current command so far
	cmdTag    string
	cmdName   string
	// a synchronising literal was announced: did the server answer "+"?
	syncWait  bool
	syncSize  int64
	wroteSeen bool // set by Write: the server wrote since syncWait began
	contSeen  bool // ... and it was a continuation request

	// write side, guarded by wmu
	wmu     sync.Mutex
	oLine   bool   // in the middle of an output line
	oTagged bool   // the current output line is held (a tagged status)
	oHold   []byte // held tagged line
	oTail   []byte // last bytes of the current untagged line
	oLit    int64  // literal bytes still to pass
	obuf    []byte
	oFlush  bool   // filterOut passed a tagged line or a continuation request
	pend    []byte // output held back (see the file comment)
	timer   *time.Timer

	bulk bool // (mu) the command being run is one whose output is batched
}

// Output batching limits: bytes held, and the longest they are held.
const (
	outBatch   = 64 << 10
	batchDelay = 20 * time.Millisecond
)

// batched are the commands whose untagged output is held back.
var batched = map[string]bool{"FETCH": true, "SEARCH": true, "STORE": true}

func newSessionConn(c net.Conn, idle time.Duration, maxLine int, maxLit int64) *sessionConn {
	if maxLine <= 0 || maxLine > libMaxCommand-1024 {
		maxLine = libMaxCommand - 1024
	}
	return &sessionConn{
		Conn:     c,
		idle:     idle,
		maxLine:  maxLine,
		maxLit:   maxLit,
		closed:   make(chan struct{}),
		afterLit: -1,
	}
}

// SetReadDeadline replaces imapserver's idle wait (35 minutes, fixed)
// with imapd_idle_timeout; its shorter in-command deadlines stay.
func (c *sessionConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && time.Until(t) > libIdleTimeout-time.Minute && c.idle > 0 {
		t = time.Now().Add(c.idle)
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is not used by imapserver; keep the read side consistent.
func (c *sessionConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// Close closes the client connection once and tells serveOne.
func (c *sessionConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		// Send what is held back (a BYE, say), unless a write is stuck:
		// then closing is what unblocks it.
		if c.wmu.TryLock() {
			if c.timer != nil {
				c.timer.Stop()
			}
			c.writeLocked(nil)
			c.wmu.Unlock()
		}
		err = c.Conn.Close()
		close(c.closed)
	})
	return err
}

func (c *sessionConn) setReason(r string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = r
	}
	c.mu.Unlock()
}

// stats returns the byte counts and why the session ended.
func (c *sessionConn) stats() (in, out int64, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in, c.out, c.reason
}

// errEnded is what Read returns once we ended the session ourselves;
// imapserver does not log net.ErrClosed.
var errEnded = net.ErrClosed

// fill reads more from the client into rbuf.
func (c *sessionConn) fill() error {
	if len(c.rbuf) == 0 && c.back != nil {
		c.rbuf = c.back[:0] // all handed out: reuse the buffer from its start
	}
	if cap(c.rbuf)-len(c.rbuf) < 4096 {
		// make room, keeping what is not handed out yet (at most a
		// command line, which maxLine bounds)
		nb := make([]byte, len(c.rbuf), len(c.rbuf)+16384)
		copy(nb, c.rbuf)
		c.rbuf = nb
		c.back = nb
	}
	n, err := c.Conn.Read(c.rbuf[len(c.rbuf):cap(c.rbuf)])
	c.rbuf = c.rbuf[:len(c.rbuf)+n]
	c.mu.Lock()
	c.in += int64(n)
	c.mu.Unlock()
	if n > 0 || err == nil {
		return nil
	}
	// Errors are final: imapserver reads again after one (bufio forgets
	// it), and must not wait another timeout or get a second BYE.
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		c.setReason("autologout")
		c.bye("Autologout; idle for too long")
	case errors.Is(err, io.EOF):
		c.setReason("connection closed")
	default:
		c.setReason("read error: " + err.Error())
	}
	return err
}

// consume drops n bytes from the front of rbuf.
func (c *sessionConn) consume(n int) {
	c.rbuf = c.rbuf[n:]
}

// Read hands imapserver the client's bytes, a whole checked command line
// (or a literal) at a time.
func (c *sessionConn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		dead := c.dead
		c.mu.Unlock()
		if dead {
			return 0, errEnded
		}
		if c.approved > 0 {
			n := min(len(p), c.approved)
			copy(p, c.rbuf[:n])
			c.consume(n)
			c.approved -= n
			if c.approved == 0 && c.afterLit >= 0 {
				if c.afterSync {
					c.mu.Lock()
					c.syncWait, c.syncSize = true, c.afterLit
					c.wroteSeen, c.contSeen = false, false
					c.mu.Unlock()
				} else {
					c.litLeft = c.afterLit
				}
				c.afterLit = -1
			}
			return n, nil
		}
		if c.syncWait {
			if c.resolveSync() && len(p) >= 2 {
				return copy(p, "\r\n"), nil
			}
			continue
		}
		if c.litLeft > 0 {
			if len(c.rbuf) == 0 {
				if err := c.fill(); err != nil {
					return 0, err
				}
				continue
			}
			n := int(min(int64(len(p)), int64(len(c.rbuf)), c.litLeft))
			copy(p, c.rbuf[:n])
			c.consume(n)
			c.litLeft -= int64(n)
			return n, nil
		}
		i := bytes.IndexByte(c.rbuf, '\n')
		if i < 0 {
			if c.cmdLen+len(c.rbuf) > c.maxLine {
				if err := c.tooLong(); err != nil {
					return 0, err
				}
				continue
			}
			if err := c.fill(); err != nil {
				return 0, err
			}
			continue
		}
		line := c.rbuf[:i+1]
		if c.cmdLen+len(line) > c.maxLine {
			if err := c.tooLong(); err != nil {
				return 0, err
			}
			continue
		}
		if !c.inCmd {
			text := bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(text)) == 0 {
				c.consume(len(line)) // an empty line is no command
				continue
			}
			idleDone := c.cmdName == "IDLE" && bytes.EqualFold(text, []byte("DONE"))
			c.cmdTag, c.cmdName = commandWords(line)
			if !idleDone && !wellFormed(text) {
				// imapserver would drop the connection on these
				c.consume(len(line))
				if _, nonSync, ok := literalMarker(line); ok && nonSync {
					c.setReason("malformed command")
					c.fatal(c.cmdTag, "[CLIENTBUG] Malformed command")
					return 0, errEnded
				}
				c.cmdName = ""
				c.writeRaw([]byte(c.cmdTag + " BAD [CLIENTBUG] Malformed command: expected tag, command name and arguments\r\n"))
				continue
			}
			if c.cmdName == "LOGOUT" {
				c.setReason("logout")
			}
		}
		c.cmdLen += len(line)
		if size, nonSync, ok := literalMarker(line); ok {
			limit := int64(bufferedLiteralMax)
			if c.cmdName == "APPEND" {
				limit = c.maxLit
			}
			if nonSync && size > limit {
				c.setReason("literal too big")
				c.fatal(c.cmdTag, "[TOOBIG] Literal too big")
				return 0, errEnded
			}
			c.inCmd = true
			c.afterLit, c.afterSync = size, !nonSync
		} else {
			c.inCmd, c.cmdLen = false, 0
			c.mu.Lock()
			c.bulk = batched[c.cmdName]
			c.mu.Unlock()
		}
		c.approved = len(line)
	}
}

// resolveSync decides whether a synchronising literal follows: only if
// imapserver answered the literal's line with a continuation request. It
// always writes (and flushes) "+" before it reads an accepted literal, so
// a read with nothing written means it refused the literal and is
// skipping the rest of the command line: give it an empty line end so it
// answers, and take the client's next line as a new command.
func (c *sessionConn) resolveSync() (inject bool) {
	c.mu.Lock()
	seen, cont, size := c.wroteSeen, c.contSeen, c.syncSize
	c.syncWait = false
	c.mu.Unlock()
	if seen && cont {
		c.litLeft = size
		return false
	}
	c.inCmd, c.cmdLen = false, 0
	return !seen
}

// tooLong handles a command line over maxLine. A first line is skipped
// and answered BAD; anything else ends the session.
func (c *sessionConn) tooLong() error {
	tag, _ := commandWords(c.rbuf)
	if c.inCmd {
		c.setReason("command too long")
		c.fatal(c.cmdTag, "[TOOBIG] Command line too long")
		return errEnded
	}
	// Swallow through the end of the line.
	var tail []byte
	for {
		if i := bytes.IndexByte(c.rbuf, '\n'); i >= 0 {
			tail = append(tail[:0], c.rbuf[max(0, i-31):i+1]...)
			c.consume(i + 1)
			break
		}
		if len(c.rbuf) > 0 {
			tail = append(tail[:0], c.rbuf[max(0, len(c.rbuf)-32):]...)
		}
		c.rbuf = c.rbuf[:0]
		if err := c.fill(); err != nil {
			return err
		}
	}
	if _, nonSync, ok := literalMarker(tail); ok && nonSync {
		c.setReason("command too long")
		c.fatal(tag, "[TOOBIG] Command line too long")
		return errEnded
	}
	c.cmdLen, c.inCmd = 0, false
	c.writeRaw([]byte(tag + " BAD [TOOBIG] Command line too long\r\n"))
	return nil
}

// fatal answers the command BAD, says BYE and ends the session.
func (c *sessionConn) fatal(tag, text string) {
	c.writeRaw([]byte(tag + " BAD " + text + "\r\n* BYE " + text + "\r\n"))
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

// bye tells the client the session ends, if no response is half written.
func (c *sessionConn) bye(text string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.oLine || c.oLit > 0 {
		return
	}
	c.writeLocked([]byte("* BYE " + text + "\r\n"))
}

// writeRaw writes our own complete response lines.
func (c *sessionConn) writeRaw(p []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeLocked(p)
}

func (c *sessionConn) writeLocked(p []byte) error {
	if len(c.pend) > 0 {
		// what was held goes first, in the same write
		c.pend = append(c.pend, p...)
		p = c.pend
		c.pend = c.pend[:0]
		if len(p) > 2*outBatch {
			defer func() { c.pend = nil }() // do not keep a large buffer
		}
	}
	if len(p) == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(time.Minute))
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out += int64(n)
	c.mu.Unlock()
	return err
}

// Write passes imapserver's output on, rewriting the one line described
// in the file comment, and notes continuation requests for Read.
func (c *sessionConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	dead := c.dead
	if c.syncWait && !c.wroteSeen && len(p) > 0 {
		c.wroteSeen = true
		c.contSeen = p[0] == '+'
	}
	c.mu.Unlock()
	if dead {
		return len(p), nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.oFlush = false
	out := c.filterOut(p)
	if len(out) == 0 {
		return len(p), nil
	}
	c.mu.Lock()
	bulk := c.bulk
	if c.oFlush {
		c.bulk = false // the command is done (or waits for the client)
	}
	c.mu.Unlock()
	if bulk && !c.oFlush && len(c.pend)+len(out) <= outBatch {
		c.pend = append(c.pend, out...)
		if c.timer == nil {
			c.timer = time.AfterFunc(batchDelay, c.flushPending)
		} else {
			c.timer.Reset(batchDelay)
		}
		return len(p), nil
	}
	if err := c.writeLocked(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushPending sends held output: the safety net for output that no
// tagged line follows soon.
func (c *sessionConn) flushPending() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.pend) > 0 {
		c.writeLocked(nil)
	}
}

// filterOut runs the output state machine over p and returns what to send.
func (c *sessionConn) filterOut(p []byte) []byte {
	out := c.obuf[:0]
	for len(p) > 0 {
		if c.oLit > 0 {
			n := int(min(int64(len(p)), c.oLit))
			out = append(out, p[:n]...)
			p = p[n:]
			c.oLit -= int64(n)
			continue
		}
		if !c.oLine {
			c.oLine = true
			c.oTagged = p[0] != '*' && p[0] != '+'
			c.oHold = c.oHold[:0]
			c.oTail = c.oTail[:0]
			if p[0] == '+' {
				c.oFlush = true
			}
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		if c.oTagged {
			c.oHold = append(c.oHold, chunk...)
			if i < 0 {
				if len(c.oHold) > 4096 { // not a status line we rewrite
					out = append(out, c.oHold...)
					c.oHold = c.oHold[:0]
					c.oTagged = false
				}
				continue
			}
			out = append(out, rewriteTagged(c.oHold)...)
			c.oLine = false
			c.oFlush = true
			continue
		}
		out = append(out, chunk...)
		c.oTail = append(c.oTail, chunk...)
		if len(c.oTail) > 32 {
			c.oTail = append(c.oTail[:0], c.oTail[len(c.oTail)-32:]...)
		}
		if i >= 0 {
			if size, _, ok := literalMarker(c.oTail); ok {
				// The line goes on after the literal: what follows
				// it (")" and more) is not the start of a new one.
				c.oLit = size
				c.oTail = c.oTail[:0]
			} else {
				c.oLine = false
			}
		}
	}
	c.obuf = out[:0]
	return out
}

// rewriteTagged turns imapserver's "NO [SERVERBUG] Internal server error"
// into a client error (see the file comment).
func rewriteTagged(line []byte) []byte {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !bytes.Equal(line[sp:], serverBugLine) {
		return line
	}
	return append(append([]byte(nil), line[:sp]...),
		" BAD [CLIENTBUG] Invalid arguments (mailbox name not in modified UTF-7, bad number set or search key)\r\n"...)
}

// commandWords returns the tag and the upper-case command name of a
// command line ("UID FETCH" counts as FETCH's family: its second word).
func commandWords(line []byte) (tag, name string) {
	line = bytes.TrimRight(line, "\r\n")
	f := bytes.Fields(line)
	tag = "*"
	if len(f) > 0 && len(f[0]) <= 64 && validTag(f[0]) {
		tag = string(f[0])
	}
	if len(f) > 1 && len(f[1]) <= 32 {
		name = string(bytes.ToUpper(f[1]))
		if name == "UID" && len(f) > 2 && len(f[2]) <= 32 {
			name = string(bytes.ToUpper(f[2]))
		}
	}
	return tag, name
}

// validTag accepts RFC 9051's tag: atom characters but "+".
func validTag(t []byte) bool {
	for _, b := range t {
		if !isAtomChar(b) || b == '+' {
			return false
		}
	}
	return len(t) > 0
}

func isAtomChar(b byte) bool {
	return b > ' ' && b < 0x7f && bytes.IndexByte([]byte(`(){%*"\]`), b) < 0
}

// wellFormed checks what imapserver needs to answer a command at all:
// "tag SP name" and, after UID, "SP name".
func wellFormed(line []byte) bool {
	tag, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || !validTag(tag) {
		return false
	}
	name, rest, more := bytes.Cut(rest, []byte(" "))
	if len(name) == 0 || !allAtom(name) {
		return false
	}
	if bytes.EqualFold(name, []byte("UID")) {
		if !more {
			return false
		}
		sub, _, _ := bytes.Cut(rest, []byte(" "))
		return len(sub) > 0 && allAtom(sub)
	}
	return true
}

func allAtom(b []byte) bool {
	for _, c := range b {
		if !isAtomChar(c) {
			return false
		}
	}
	return true
}

// literalMarker parses a literal announcement at the end of line:
// "{N}", "{N+}" or the literal8 forms "~{N}", "~{N+}", before CRLF.
func literalMarker(line []byte) (size int64, nonSync, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	num := line[open+1 : len(line)-1]
	if len(num) > 0 && num[len(num)-1] == '+' {
		nonSync = true
		num = num[:len(num)-1]
	}
	if len(num) == 0 || len(num) > 12 {
		// More than 12 digits: larger than any limit; report it as huge
		// so the caller refuses it.
		if len(num) > 12 && allDigits(num) {
			return 1 << 50, nonSync, true
		}
		return 0, false, false
	}
	if !allDigits(num) {
		return 0, false, false
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return 0, false, false
	}
	return n, nonSync, true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// oneListener hands imapserver our single connection, then blocks until
// that connection is closed.
type oneListener struct {
	conn *sessionConn
	once sync.Once
	done chan struct{}
}

func (l *oneListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	select {
	case <-l.conn.closed:
	case <-l.done:
	}
	return nil, net.ErrClosed
}

func (l *oneListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneListener) Addr() net.Addr { return l.conn.LocalAddr() }
