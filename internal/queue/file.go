package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Limits of the queue file reader (and writer).
const (
	MaxEnvelope   = 16 << 20 // bytes before the message
	MaxRecipients = 100000
	MaxRecord     = 32 << 10 // bytes of one record line, newline included
)

// Recipient status bytes.
const (
	StatusPending   = '-'
	StatusDelivered = 'D'
	StatusFailed    = 'F' // failed permanently; the bounce is queued
	StatusWarned    = 'W' // still pending; the delay warning was sent
)

// ValidStatus reports whether s is one of the recipient status bytes.
func ValidStatus(s byte) bool {
	return s == StatusPending || s == StatusDelivered || s == StatusFailed || s == StatusWarned
}

// Envelope is everything in a queue file but the message.
type Envelope struct {
	Arrival    time.Time // to the nanosecond
	Sender     string    // "" is the null sender
	ClientName string
	ClientAddr string
	Helo       string
	Protocol   string // SMTP, ESMTP, UTF8SMTP, local, …
	SASLUser   string
	Body       string // 7BIT, 8BITMIME or ""
	SMTPUTF8   bool
	Ret        string // DSN RET: FULL, HDRS or ""
	EnvID      string // DSN ENVID, as received
	Attempts   int
	// NextAttempt is kept to the second; the zero Time means none.
	NextAttempt time.Time
	Recipients  []Recipient
	// Size is the message size in bytes. The reader fills it in; the
	// writer ignores it and records what was written.
	Size int64
	// UID is the user ID, in decimal, of the local user who submitted
	// the message (sendmail through pickup), or "" for mail that did not
	// come from a local user. showq shows a user who is not in
	// authorised_mailq_users only the messages with that user's UID. It is
	// the optional uid record, written only when set.
	UID string
}

// Recipient is one envelope recipient.
type Recipient struct {
	Addr   string
	ORcpt  string // DSN ORCPT, as received ("rfc822;addr"), or ""
	Notify string // DSN NOTIFY, as received, or ""
	Status byte   // one of the Status bytes; 0 is written as pending
}

// FormatError is a queue file that cannot be parsed. Line is 1-based; 0
// means the file as a whole.
type FormatError struct {
	Name string
	Line int
	Msg  string
}

// Error implements error.
func (e *FormatError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("queue file %s: %s", e.Name, e.Msg)
	}
	return fmt.Sprintf("queue file %s line %d: %s", e.Name, e.Line, e.Msg)
}

const (
	magic               = "POSTERN-QUEUE 1"
	magicPrefix         = "POSTERN-QUEUE "
	endEnvelope         = "end-envelope"
	sizeWidth           = 20
	attemptsWidth       = 10
	nextWidth           = 20
	maxAttempts         = 9999999999
	statusCol     int64 = int64(len("rcpt "))
	scheduleCol   int64 = int64(len("schedule "))
)

// ---- escaping ----

// appendValue appends v escaped as described in the package comment.
func appendValue(b []byte, v string) []byte {
	if v == "" {
		return append(b, '-')
	}
	if v == "-" {
		return append(b, "%2D"...)
	}
	const hex = "0123456789ABCDEF"
	esc := func(b []byte, c byte) []byte { return append(b, '%', hex[c>>4], hex[c&15]) }
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || c == '%' {
				b = esc(b, c)
			} else {
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			for k := 0; k < n; k++ {
				b = esc(b, v[i+k])
			}
		} else {
			b = append(b, v[i:i+n]...)
		}
		i += n
	}
	return b
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// parseValue undoes appendValue.
func parseValue(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty field")
	}
	if s == "-" {
		return "", nil
	}
	if strings.IndexByte(s, '%') < 0 {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] == 0x7f {
				return "", fmt.Errorf("raw control byte %#02x", s[i])
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", errors.New("truncated % escape")
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("bad %% escape %q", s[i:i+3])
			}
			b = append(b, hi<<4|lo)
			i += 2
		case c <= ' ' || c == 0x7f:
			return "", fmt.Errorf("raw control byte %#02x", c)
		default:
			b = append(b, c)
		}
	}
	return string(b), nil
}

// digits parses exactly width decimal digits (width 0: 1 to 19 digits).
func digits(s string, width int) (int64, bool) {
	if width > 0 && len(s) != width || len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-uint64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return int64(n), true
}

// validUID reports whether s is a uid as the uid record holds it: 1 to 10
// decimal digits, no leading zero (so one uid has one spelling), at most
// 2^32-1.
func validUID(s string) bool {
	if len(s) == 0 || len(s) > 10 || len(s) > 1 && s[0] == '0' {
		return false
	}
	n, ok := digits(s, 0)
	return ok && n <= 1<<32-1
}

// ---- encoding ----

// encodeEnvelope returns the envelope part of a queue file, with a size
// record of zeros at the returned offset.
func encodeEnvelope(env *Envelope) ([]byte, int64, error) {
	if len(env.Recipients) == 0 {
		return nil, 0, errors.New("no recipients")
	}
	if len(env.Recipients) > MaxRecipients {
		return nil, 0, fmt.Errorf("%d recipients, at most %d", len(env.Recipients), MaxRecipients)
	}
	if env.Attempts < 0 || env.Attempts > maxAttempts {
		return nil, 0, fmt.Errorf("attempt count %d out of range", env.Attempts)
	}
	arrival := env.Arrival
	if arrival.IsZero() {
		arrival = time.Now()
	}
	if arrival.Before(time.Unix(0, 0)) || arrival.After(time.Unix(0, 1<<63-1)) {
		return nil, 0, fmt.Errorf("arrival time %v out of range", arrival)
	}
	b := make([]byte, 0, 512+len(env.Recipients)*64)
	b = append(b, magic+"\n"...)
	b = append(b, "arrival "...)
	b = strconv.AppendInt(b, arrival.UnixNano(), 10)
	b = append(b, "\nsize "...)
	sizeOff := int64(len(b))
	b = append(b, strings.Repeat("0", sizeWidth)+"\n"...)
	b = appendSchedule(append(b, "schedule "...), env.Attempts, env.NextAttempt)
	b = append(b, '\n')
	var err error
	record := func(name string, vals ...string) {
		start := len(b)
		b = append(b, name...)
		if name == "rcpt" {
			// The status byte is not a value: it is always one
			// byte, unescaped, at statusCol.
			b = append(b, ' ', vals[0][0])
			vals = vals[1:]
		}
		for _, v := range vals {
			b = appendValue(append(b, ' '), v)
		}
		b = append(b, '\n')
		if len(b)-start > MaxRecord && err == nil {
			err = fmt.Errorf("%s record of %d bytes, at most %d", name, len(b)-start, MaxRecord)
		}
	}
	record("sender", env.Sender)
	record("client_name", env.ClientName)
	record("client_addr", env.ClientAddr)
	record("helo", env.Helo)
	record("protocol", env.Protocol)
	record("sasl_username", env.SASLUser)
	record("body", env.Body)
	smtputf8 := "no"
	if env.SMTPUTF8 {
		smtputf8 = "yes"
	}
	record("smtputf8", smtputf8)
	record("ret", env.Ret)
	record("envid", env.EnvID)
	if env.UID != "" {
		if !validUID(env.UID) {
			return nil, 0, fmt.Errorf("bad uid %.20q", env.UID)
		}
		record("uid", env.UID)
	}
	for i, r := range env.Recipients {
		s := r.Status
		if s == 0 {
			s = StatusPending
		}
		if !ValidStatus(s) {
			return nil, 0, fmt.Errorf("recipient %d: bad status %q", i, s)
		}
		record("rcpt", string(s), r.ORcpt, r.Notify, r.Addr)
		if err != nil {
			return nil, 0, fmt.Errorf("recipient %d: %w", i, err)
		}
		if len(b) > MaxEnvelope {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	b = append(b, endEnvelope+"\n"...)
	if len(b) > MaxEnvelope {
		return nil, 0, fmt.Errorf("envelope over %d bytes", MaxEnvelope)
	}
	return b, sizeOff, nil
}

func appendSchedule(b []byte, attempts int, next time.Time) []byte {
	var n int64
	if !next.IsZero() {
		n = max(next.Unix(), 0)
	}
	b = append(b, fmt.Sprintf("%0*d %0*d", attemptsWidth, attempts, nextWidth, n)...)
	return b
}

// Buffers reused from one message to the next: at hundreds of messages a
// second a fresh 64 KiB writer per Create and 32 KiB reader per Open were
// most of what cleanup, qmgr and local allocated, and so most of their
// garbage collection.
var (
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, MaxRecord) }}
)

// ---- parsing ----

type layout struct {
	statusOff []int64
	schedOff  int64
	bodyOff   int64
}

// parse reads the envelope of the queue file r of the given size.
func parse(r io.ReaderAt, size int64, name string) (*Envelope, *layout, error) {
	ferr := func(line int, format string, args ...any) error {
		return &FormatError{Name: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(r, 0, min(size, MaxEnvelope)))
	// Nothing returned refers to br's buffer: every value is copied out
	// of the line (string(raw...)) before the next read.
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	env := &Envelope{}
	lay := &layout{}
	var off int64
	seen := map[string]bool{}
	// The records that hold one escaped value.
	text := map[string]*string{
		"sender": &env.Sender, "client_name": &env.ClientName, "client_addr": &env.ClientAddr,
		"helo": &env.Helo, "protocol": &env.Protocol, "sasl_username": &env.SASLUser,
		"body": &env.Body, "ret": &env.Ret, "envid": &env.EnvID,
	}
	for line := 1; ; line++ {
		raw, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, nil, ferr(line, "record longer than %d bytes", MaxRecord)
		}
		if err == io.EOF {
			if size > MaxEnvelope {
				return nil, nil, ferr(line, "no end-envelope in the first %d bytes", MaxEnvelope)
			}
			return nil, nil, ferr(line, "truncated: no end-envelope")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("queue file %s: %w", name, err)
		}
		lineOff := off
		off += int64(len(raw))
		s := string(raw[:len(raw)-1])
		if line == 1 {
			if s != magic {
				if strings.HasPrefix(s, magicPrefix) {
					return nil, nil, ferr(line, "unsupported version %.20q", s[len(magicPrefix):])
				}
				return nil, nil, ferr(line, "not a Postern queue file")
			}
			continue
		}
		if s == endEnvelope {
			lay.bodyOff = off
			break
		}
		rname, rest, ok := strings.Cut(s, " ")
		if !ok {
			return nil, nil, ferr(line, "record without value: %.40q", s)
		}
		if rname != "rcpt" {
			if seen[rname] {
				return nil, nil, ferr(line, "repeated %s record", rname)
			}
			seen[rname] = true
		}
		if dst := text[rname]; dst != nil {
			if *dst, err = parseValue(rest); err != nil {
				return nil, nil, ferr(line, "%s: %v", rname, err)
			}
			continue
		}
		switch rname {
		case "arrival":
			n, ok := digits(rest, 0)
			if !ok {
				return nil, nil, ferr(line, "bad arrival %.30q", rest)
			}
			env.Arrival = time.Unix(0, n)
		case "size":
			n, ok := digits(rest, sizeWidth)
			if !ok {
				return nil, nil, ferr(line, "bad size %.30q", rest)
			}
			env.Size = n
		case "schedule":
			a, nx, ok := strings.Cut(rest, " ")
			na, ok1 := digits(a, attemptsWidth)
			nn, ok2 := digits(nx, nextWidth)
			if !ok || !ok1 || !ok2 || na > maxAttempts {
				return nil, nil, ferr(line, "bad schedule %.40q", rest)
			}
			env.Attempts = int(na)
			env.NextAttempt = time.Time{}
			if nn != 0 {
				env.NextAttempt = time.Unix(nn, 0)
			}
			lay.schedOff = lineOff + scheduleCol
		case "uid":
			if !validUID(rest) {
				return nil, nil, ferr(line, "bad uid %.20q", rest)
			}
			env.UID = rest
		case "smtputf8":
			switch rest {
			case "yes":
				env.SMTPUTF8 = true
			case "no":
			default:
				return nil, nil, ferr(line, "bad smtputf8 %.20q", rest)
			}
		case "rcpt":
			if len(env.Recipients) >= MaxRecipients {
				return nil, nil, ferr(line, "more than %d recipients", MaxRecipients)
			}
			f := strings.Split(rest, " ")
			if len(f) != 4 || len(f[0]) != 1 || !ValidStatus(f[0][0]) {
				return nil, nil, ferr(line, "bad rcpt record")
			}
			var rc Recipient
			rc.Status = f[0][0]
			for i, dst := range []*string{&rc.ORcpt, &rc.Notify, &rc.Addr} {
				if *dst, err = parseValue(f[i+1]); err != nil {
					return nil, nil, ferr(line, "rcpt field %d: %v", i+2, err)
				}
			}
			env.Recipients = append(env.Recipients, rc)
			lay.statusOff = append(lay.statusOff, lineOff+statusCol)
		default:
			return nil, nil, ferr(line, "unknown record %.40q", rname)
		}
	}
	for _, req := range []string{"arrival", "size", "schedule", "sender"} {
		if !seen[req] {
			return nil, nil, ferr(0, "no %s record", req)
		}
	}
	if len(env.Recipients) == 0 {
		return nil, nil, ferr(0, "no recipients")
	}
	if actual := size - lay.bodyOff; actual != env.Size {
		return nil, nil, ferr(0, "size record says %d bytes, message has %d", env.Size, actual)
	}
	return env, lay, nil
}

// ---- reader ----

// File is an open queue file.
type File struct {
	f   *os.File
	env *Envelope
	lay *layout
}

// Open parses the envelope of the queue file f. It reads with pread only,
// so f's offset (shared with whoever passed the descriptor) is never
// used. The File uses f until Close; status and schedule updates need f
// open for writing. A malformed file gives a *FormatError.
func Open(f *os.File) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("queue file %s: %w", f.Name(), err)
	}
	if !st.Mode().IsRegular() {
		return nil, &FormatError{Name: f.Name(), Msg: "not a regular file"}
	}
	env, lay, err := parse(f, st.Size(), f.Name())
	if err != nil {
		return nil, err
	}
	return &File{f: f, env: env, lay: lay}, nil
}

// Envelope returns the parsed envelope; SetStatus and SetSchedule keep it
// current.
func (q *File) Envelope() *Envelope { return q.env }

// Message returns a reader of the message bytes.
func (q *File) Message() *io.SectionReader {
	return io.NewSectionReader(q.f, q.lay.bodyOff, q.env.Size)
}

// SetStatus sets the status of recipient i in place. It does not sync.
func (q *File) SetStatus(i int, s byte) error {
	if i < 0 || i >= len(q.env.Recipients) {
		return fmt.Errorf("queue file %s: no recipient %d", q.f.Name(), i)
	}
	if !ValidStatus(s) {
		return fmt.Errorf("queue file %s: bad status %q", q.f.Name(), s)
	}
	if _, err := q.f.WriteAt([]byte{s}, q.lay.statusOff[i]); err != nil {
		return fmt.Errorf("queue file %s: recipient %d status: %w", q.f.Name(), i, err)
	}
	q.env.Recipients[i].Status = s
	return nil
}

// SetSchedule records the attempt count and the next attempt time in
// place and, as Postfix does, sets the file's access and modification
// times to next, so that Due finds the file with a stat. A zero next
// leaves the times alone. It does not sync.
func (q *File) SetSchedule(attempts int, next time.Time) error {
	if attempts < 0 || attempts > maxAttempts {
		return fmt.Errorf("queue file %s: attempt count %d out of range", q.f.Name(), attempts)
	}
	b := appendSchedule(nil, attempts, next)
	if _, err := q.f.WriteAt(b, q.lay.schedOff); err != nil {
		return fmt.Errorf("queue file %s: schedule: %w", q.f.Name(), err)
	}
	q.env.Attempts = attempts
	q.env.NextAttempt = time.Time{}
	if !next.IsZero() {
		q.env.NextAttempt = time.Unix(max(next.Unix(), 0), 0)
		ts := [2]unix.Timespec{unix.NsecToTimespec(next.UnixNano()), unix.NsecToTimespec(next.UnixNano())}
		if err := control(q.f, func(fd int) error {
			// utimensat(fd, NULL, ...) sets the times of the open file
			// itself; futimes would go through /proc/self/fd, which a
			// chrooted qmgr does not have.
			_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
			if e != 0 {
				return e
			}
			return nil
		}); err != nil {
			return fmt.Errorf("queue file %s: set times: %w", q.f.Name(), err)
		}
	}
	return nil
}

// Sync makes the status and schedule updates durable (fdatasync).
func (q *File) Sync() error {
	if err := control(q.f, unix.Fdatasync); err != nil {
		return fmt.Errorf("queue file %s: fdatasync: %w", q.f.Name(), err)
	}
	return nil
}

// Close closes the underlying file.
func (q *File) Close() error { return q.f.Close() }

// control runs fn on f's descriptor, keeping it from being closed
// meanwhile.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// ---- writer ----

// Writer writes a new queue file in tmp/; only cleanup uses it.
type Writer struct {
	spool   string
	id      ID
	path    string
	f       *os.File
	bw      *bufio.Writer
	sizeOff int64
	body    int64 // offset of the message
	n       int64 // message bytes written
	old     int64 // size of the recycled file written over (pool.go)
	err     error // sticky write error
	done    bool
}

// Create starts the queue file tmp/ID (O_EXCL, mode 0600, or a recycled
// file from free/ renamed there without replacing anything, see pool.go)
// and writes the envelope. If the ID is taken the error wraps os.ErrExist
// and the caller retries with a new ID. A zero Arrival is written as the
// current time; env.Size is ignored.
func Create(spool string, id ID, env *Envelope) (*Writer, error) {
	if !ValidID(string(id)) {
		return nil, fmt.Errorf("queue: create: invalid queue ID %.40q", id)
	}
	if env == nil {
		return nil, fmt.Errorf("queue %s: create: no envelope", id)
	}
	head, sizeOff, err := encodeEnvelope(env)
	if err != nil {
		return nil, fmt.Errorf("queue %s: create: %w", id, err)
	}
	path := filepath.Join(spool, Tmp, string(id))
	// A recycled file (pool.go), locked already, when free/ has one.
	f, old, err := takeFree(spool, path)
	if err != nil {
		return nil, fmt.Errorf("queue %s: create: %w", id, err)
	}
	if f == nil {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("queue %s: create: %w", id, err)
		}
		// The lock tells Recover that a live writer owns the file.
		if err := control(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("queue %s: create: lock: %w", id, err)
		}
	}
	w := &Writer{spool: spool, id: id, path: path, f: f, sizeOff: sizeOff, body: int64(len(head)), old: old}
	w.bw = writerPool.Get().(*bufio.Writer)
	w.bw.Reset(f)
	if _, err := w.bw.Write(head); err != nil {
		w.Abort()
		return nil, fmt.Errorf("queue %s: create: %w", id, err)
	}
	return w, nil
}

// ID returns the queue ID of the file being written.
func (w *Writer) ID() ID { return w.id }

// Write appends message bytes. Errors are sticky and make Commit fail.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("queue %s: write after commit or abort", w.id)
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("queue %s: write: %w", w.id, err)
		return n, w.err
	}
	return n, nil
}

// Commit makes the message durable in incoming/: flush, record the size,
// fdatasync, rename tmp/ID to incoming/ID, and wait for an fsync of
// incoming/ that began after the rename. On an error before the rename
// the tmp file is removed. Only a nil return allows the 250.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("queue %s: commit after commit or abort", w.id)
	}
	fail := func(what string, err error) error {
		w.Abort()
		return fmt.Errorf("queue %s: commit: %s: %w", w.id, what, err)
	}
	if w.err != nil {
		return fail("earlier write", w.err)
	}
	err := w.bw.Flush()
	w.releaseBuf()
	if err != nil {
		return fail("write", err)
	}
	if _, err := w.f.WriteAt(fmt.Appendf(nil, "%0*d", sizeWidth, w.n), w.sizeOff); err != nil {
		return fail("size record", err)
	}
	if end := w.body + w.n; w.old > end {
		// What is left of the recycled file's old message.
		if err := w.f.Truncate(end); err != nil {
			return fail("truncate", err)
		}
	}
	if err := control(w.f, unix.Fdatasync); err != nil {
		return fail("fdatasync", err)
	}
	dst := filepath.Join(w.spool, Incoming, string(w.id))
	// Rename while still holding the lock: Recover must not take the
	// file for a leftover between our close and the rename.
	if err := renameNoReplace(w.path, dst); err != nil {
		return fail("rename", err)
	}
	w.done = true
	// The data is on disk already; an error from close says nothing more.
	w.f.Close()
	if err := syncDir(filepath.Join(w.spool, Incoming)); err != nil {
		return fmt.Errorf("queue %s: commit: fsync %s: %w", w.id, Incoming, err)
	}
	return nil
}

// releaseBuf returns the write buffer to the pool; every later use of
// the Writer finds done set (Commit's failures go through Abort) and
// never touches bw.
func (w *Writer) releaseBuf() {
	if w.bw != nil {
		w.bw.Reset(nil)
		writerPool.Put(w.bw)
		w.bw = nil
	}
}

// Abort removes the unfinished file. It does nothing after Commit.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.releaseBuf()
	w.f.Close()
	os.Remove(w.path)
}
