// Command cleanup is the one writer of new queue files (DESIGN.md §4): it
// takes a message from smtpd, pickup and qmgr's bounces over
// private/cleanup, prepends the Received header, checks the hop count and
// the size limit, writes the queue file in tmp/, and commits it into
// incoming/ (fsync of the file, rename, fsync of the directory) before it
// says "ok". Then it tells qmgr about the new file.
//
// Local submissions (pickup: origin=local, uid, login, full_name,
// rewrite_headers=y) get "Received: by HOST (Postern, from userid N)",
// the submitting uid in the queue file (for mailq's per-user view), and
// the Message-ID, Date and From headers they lack, added at the end of
// the header section as Postfix does; From is "full_name <sender>".
//
// Privilege: mail_owner, chrooted into the queue directory, no
// capabilities. It writes only tmp/ and incoming/.
//
// Limits and failure modes:
//   - a request frame is at most 1 MiB and must name a sender and at
//     least one recipient, each a valid address, at most
//     smtpd_recipient_limit of them;
//   - the message is at most message_size_limit bytes, counted as stored;
//     more is refused with 5.3.4 and the file removed;
//   - more than hopcount_limit Received headers is a mail loop: 5.4.6;
//   - an aborted stream, a dead client or any write error removes the tmp
//     file: nothing half-written ever reaches incoming/;
//   - the trigger to qmgr is best effort: qmgr also scans incoming/.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/internal/address"
	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/queue"
	"postern/internal/service"
)

type cleanup struct {
	cfg      *config.Config
	hostname string
	maxSize  int64
	maxHops  int
	maxRcpt  int
	timeout  time.Duration
	trigger  chan queue.ID
	d        *service.Daemon
}

func main() {
	d := service.Init("cleanup")
	d.LimitProcs()
	c := &cleanup{
		cfg:      d.Config,
		hostname: d.Config.Get("myhostname"),
		maxSize:  d.Config.Int("message_size_limit"),
		maxHops:  int(d.Config.Int("hopcount_limit")),
		maxRcpt:  int(d.Config.Int("smtpd_recipient_limit")),
		timeout:  d.Config.Duration("ipc_timeout"),
		trigger:  make(chan queue.ID, 4096),
		d:        d,
	}
	d.Drop()
	go c.notifyQmgr(d.Context())
	d.Serve(d.Service.MaxProc, c.handle)
}

func (c *cleanup) handle(ctx context.Context, nc net.Conn) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return
	}
	conn := ipc.NewConn(uc, 1<<20)
	defer conn.Close()
	for {
		req, files, err := c.d.Next(conn, c.timeout)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Warnf("read request: %v", err)
			}
			return
		}
		if req.Get("op") != "submit" {
			log.Warnf("unknown request %q", req.Get("op"))
			return
		}
		if !c.submit(conn, req) {
			return
		}
	}
}

func refuse(conn *ipc.Conn, status, dsn, reason string) {
	conn.Send(ipc.NewMsg("status", status, "dsn", dsn, "reason", reason))
}

// submit handles one message; it reports whether the connection can be
// used for another.
func (c *cleanup) submit(conn *ipc.Conn, req *ipc.Msg) bool {
	env, err := c.envelope(req)
	if err != nil {
		log.Warnf("bad request: %v", err)
		refuse(conn, "perm", "5.5.4", err.Error())
		return false
	}
	var w *queue.Writer
	var id queue.ID
	for i := 0; i < 5; i++ {
		id = queue.NewID()
		w, err = queue.Create(".", id, env)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		log.Errorf("create queue file: %v", err)
		refuse(conn, "temp", "4.3.0", "Error: queue file write error")
		return false
	}
	if err := conn.Send(ipc.NewMsg("status", "ok", "queue_id", string(id))); err != nil {
		w.Abort()
		return false
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()

	// Received first; then the message as it comes, with a look at its
	// header section for hop counting and Message-ID logging.
	rcv := c.received(env, id, req.Get("tls"), req.Get("received_auth") == "yes")
	var add *additions
	if req.Get("origin") == "local" && req.Get("rewrite_headers") == "y" {
		add = &additions{hostname: c.hostname, id: id, env: env, fullName: req.Get("full_name")}
	}
	if _, err := w.Write([]byte(rcv)); err != nil {
		log.Errorf("%s: write: %v", id, err)
		refuse(conn, "temp", "4.3.0", "Error: queue file write error")
		return false
	}
	limit := c.maxSize + 1
	if c.maxSize <= 0 {
		limit = 1 << 62
	}
	body := conn.StreamReader(limit, c.timeout)
	hs := &headerScan{add: add}
	n, err := copyMessage(w, body, hs)
	switch {
	case errors.Is(err, ipc.ErrAborted):
		return true
	case errors.Is(err, ipc.ErrTooLarge) || c.maxSize > 0 && n > c.maxSize:
		drain(body)
		log.Infof("%s: reject: message size exceeds message_size_limit %d", id, c.maxSize)
		refuse(conn, "perm", "5.3.4", "Error: message file too big")
		return false
	case err != nil:
		log.Errorf("%s: receive message: %v", id, err)
		refuse(conn, "temp", "4.3.0", "Error: queue file write error")
		return false
	}
	if hs.received+1 > c.maxHops {
		log.Infof("%s: reject: too many Received headers (%d, hopcount_limit %d): mail forwarding loop", id, hs.received+1, c.maxHops)
		refuse(conn, "perm", "5.4.6", "Error: too many hops")
		return true
	}
	if hs.messageID == "" && add != nil {
		hs.messageID = add.messageID
	}
	if hs.messageID != "" {
		log.Infof("%s: message-id=%s", id, hs.messageID)
	}
	if err := w.Commit(); err != nil {
		log.Errorf("%s: commit: %v", id, err)
		refuse(conn, "temp", "4.3.0", "Error: queue file write error")
		return false
	}
	committed = true
	if err := conn.Send(ipc.NewMsg("status", "ok", "queue_id", string(id))); err != nil {
		// The client is gone: the message is queued anyway and will be
		// delivered; the client may send it again (at-least-once).
		log.Warnf("%s: queued, but the client did not get the answer: %v", id, err)
	}
	select {
	case c.trigger <- id:
	default:
	}
	return true
}

func drain(r io.Reader) { io.Copy(io.Discard, r) }

func (c *cleanup) envelope(req *ipc.Msg) (*queue.Envelope, error) {
	env := &queue.Envelope{
		Arrival:    time.Now(),
		ClientName: req.Get("client_name"),
		ClientAddr: req.Get("client_addr"),
		Helo:       req.Get("helo"),
		Protocol:   req.Get("protocol"),
		SASLUser:   req.Get("sasl_username"),
		Body:       req.Get("body"),
		SMTPUTF8:   req.Get("smtputf8") == "yes",
		Ret:        req.Get("ret"),
		EnvID:      req.Get("envid"),
	}
	if req.Get("origin") == "local" {
		uid := req.Get("uid")
		if u, err := strconv.ParseUint(uid, 10, 32); err != nil || u == 1<<32-1 {
			return nil, fmt.Errorf("local submission: bad uid %.20q", uid)
		}
		env.UID = uid
	}
	utf8 := env.SMTPUTF8
	sender := req.Get("sender")
	if sender != "" {
		a, err := address.Parse(sender, utf8)
		if err != nil {
			return nil, fmt.Errorf("sender %q: %w", sender, err)
		}
		env.Sender = a.String()
	}
	rcpts, orcpts, notify := req.All("rcpt"), req.All("orcpt"), req.All("notify")
	if len(rcpts) == 0 {
		return nil, errors.New("no recipients")
	}
	if c.maxRcpt > 0 && len(rcpts) > c.maxRcpt {
		return nil, fmt.Errorf("%d recipients, more than %d", len(rcpts), c.maxRcpt)
	}
	for i, r := range rcpts {
		a, err := address.Parse(r, utf8)
		if err != nil || a.Domain == "" {
			return nil, fmt.Errorf("recipient %q: bad address", r)
		}
		rc := queue.Recipient{Addr: a.String(), Status: '-'}
		if i < len(orcpts) {
			rc.ORcpt = orcpts[i]
		}
		if i < len(notify) {
			rc.Notify = notify[i]
		}
		env.Recipients = append(env.Recipients, rc)
	}
	return env, nil
}

// received builds the Received header (RFC 5321 4.4) from smtpd's facts.
func (c *cleanup) received(env *queue.Envelope, id queue.ID, tlsInfo string, withAuth bool) string {
	var b strings.Builder
	if env.ClientAddr == "" && env.UID != "" {
		// Submitted locally (sendmail, pickup), as Postfix says it.
		fmt.Fprintf(&b, "Received: by %s (%s, from userid %s)\r\n\tid %s; %s\r\n", c.hostname, c.cfg.Get("mail_name"), env.UID, id,
			env.Arrival.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
		return b.String()
	}
	if env.ClientAddr == "" {
		// Made here (a bounce): no client to name.
		fmt.Fprintf(&b, "Received: by %s (%s) id %s; %s\r\n", c.hostname, c.cfg.Get("mail_name"), id,
			env.Arrival.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
		return b.String()
	}
	helo := log.Clean(env.Helo)
	if helo == "" {
		helo = "unknown"
	}
	fmt.Fprintf(&b, "Received: from %s (%s [%s])\r\n", helo, orUnknown(env.ClientName), env.ClientAddr)
	if tlsInfo = log.Clean(tlsInfo); tlsInfo != "" && len(tlsInfo) < 200 {
		fmt.Fprintf(&b, "\t(using %s)\r\n", tlsInfo)
	}
	if u := log.Clean(env.SASLUser); withAuth && u != "" && len(u) < 256 {
		fmt.Fprintf(&b, "\t(Authenticated sender: %s)\r\n", u)
	}
	proto := env.Protocol
	if proto == "" {
		proto = "SMTP"
	}
	fmt.Fprintf(&b, "\tby %s (%s) with %s id %s", c.hostname, c.cfg.Get("mail_name"), proto, id)
	if len(env.Recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", env.Recipients[0].Addr)
	}
	fmt.Fprintf(&b, "; %s\r\n", env.Arrival.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// headerScan watches the header section go by: it counts Received
// headers and remembers the Message-ID. With add (a local submission) it
// also notes which of Message-ID, Date and From are there.
type headerScan struct {
	done      bool
	received  int
	messageID string
	lastWasID bool
	add       *additions
	// blankEnd: the header section ended at an empty line (not at a line
	// that is no header, nor at the end of the message).
	blankEnd bool
}

func (h *headerScan) line(l []byte) {
	if h.done {
		return
	}
	if len(l) <= 2 && bytes.Equal(bytes.TrimRight(l, "\r\n"), nil) {
		h.done, h.blankEnd = true, true
		return
	}
	if l[0] == ' ' || l[0] == '\t' {
		if h.lastWasID && h.messageID == "" {
			h.messageID = strings.TrimSpace(string(l))
		}
		return
	}
	h.lastWasID = false
	name, val, ok := bytes.Cut(l, []byte(":"))
	if !ok {
		// Not a header: the body started without a blank line.
		h.done = true
		return
	}
	lname := strings.ToLower(string(bytes.TrimSpace(name)))
	if h.add != nil {
		h.add.saw(lname)
	}
	switch lname {
	case "received":
		h.received++
	case "message-id":
		h.lastWasID = true
		h.messageID = log.Clean(strings.TrimSpace(string(val)))
		if len(h.messageID) > 256 {
			h.messageID = h.messageID[:256]
		}
	}
}

// readers hold copyMessage's 64 KiB buffers, reused from one message to
// the next rather than allocated for each.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// copyMessage copies the stream into the queue file line by line so the
// header section can be inspected without buffering the message.
func copyMessage(w io.Writer, r io.Reader, hs *headerScan) (int64, error) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	var n int64
	var last byte = '\n'
	put := func(s string) error {
		m, err := io.WriteString(w, s)
		n += int64(m)
		return err
	}
	for {
		l, err := br.ReadSlice('\n')
		if len(l) > 0 {
			if !hs.done {
				hs.line(l)
				if hs.done && hs.add != nil {
					// The header section ends here: the missing
					// headers go before this line, and a blank line
					// after them when the body began without one.
					extra := hs.add.headers()
					if !hs.blankEnd && extra != "" {
						extra += "\r\n"
					}
					if err := put(extra); err != nil {
						return n, err
					}
				}
			}
			last = l[len(l)-1]
			m, werr := w.Write(l)
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if !hs.done && hs.add != nil {
				// Only headers (or nothing at all): append them.
				extra := hs.add.headers()
				if last != '\n' && extra != "" {
					extra = "\r\n" + extra
				}
				return n, put(extra)
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// notifyQmgr tells qmgr about each committed file over public/qmgr. A
// lost trigger costs only latency: qmgr scans incoming/ on its own.
func (c *cleanup) notifyQmgr(ctx context.Context) {
	var conn *ipc.Conn
	for {
		var id queue.ID
		select {
		case id = <-c.trigger:
		case <-ctx.Done():
			return
		}
		if conn == nil {
			var err error
			conn, err = ipc.Dial("public/qmgr", 5*time.Second)
			if err != nil {
				log.Warnf("%s: cannot trigger qmgr: %v", id, err)
				continue
			}
		}
		if err := conn.Send(ipc.NewMsg("op", "new", "queue_id", string(id))); err != nil {
			conn.Close()
			conn = nil
		}
	}
}
