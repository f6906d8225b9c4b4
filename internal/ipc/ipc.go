// Package ipc is the protocol spoken on every Unix socket between Postern
// daemons (DESIGN.md §6).
//
// A request or reply is a frame: a 4-byte big-endian payload length, then
// the payload, a list of attributes, each a 2-byte name length, the name
// ([a-z0-9_], at most MaxNameLen bytes), a 4-byte value length and the
// value (any bytes). Names may repeat and order is kept. File descriptors
// may travel with a frame (SCM_RIGHTS). After a frame, when the
// application protocol says so, a byte stream may follow as chunks: a
// 4-byte length and that many bytes; length 0 ends the stream and
// 0xFFFFFFFF means the sender gave up (the reader sees ErrAborted).
//
// Limits. A frame payload over the Conn's limit (DefaultMaxFrame unless
// the caller gives another) is refused by both Send and Recv, before any
// of it is buffered. A stream is limited by the caller of StreamReader.
// At most DefaultMaxFiles descriptors (or what SetMaxFiles says) are
// accepted per frame, and as many sent; further ones are closed on
// arrival. Received descriptors are
// close-on-exec. No read waits longer than the caller's deadline or the
// per-call timeout.
//
// Failure modes. A frame over the limit, a truncated frame and an invalid
// attribute name are errors; such an error is sticky, every later Recv
// returns it, because the byte stream can no longer be parsed: the caller
// logs it and closes the connection. A read timeout or an EOF between
// frames is not sticky. A write error is sticky, since the peer may have
// seen half a frame. Recv returns io.EOF, unwrapped, when the peer closed
// the connection between frames; a close inside a frame or stream gives
// io.ErrUnexpectedEOF. Nothing here panics on any input.
//
// Descriptor matching. The sender writes a frame's descriptors with the
// 4-byte length header alone (one sendmsg), then the payload. Linux never
// lets one recvmsg on a stream socket read past the skb that carried
// descriptors, so the descriptors of a frame arrive in the read that ends
// inside that frame's header. The reader numbers the bytes of the
// connection and gives each batch of descriptors to the frame in which the
// read that carried it ended. Buffering ahead therefore never loses or
// misplaces a descriptor; one that arrives with stream data, or beyond
// the per-frame limit, is closed.
//
// Concurrency. One goroutine may send (Send, the stream writer) while
// another receives (Recv, the stream reader); Close may be called at any
// time and unblocks both.
package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// DefaultMaxFrame is the payload limit used when NewConn is given 0.
	DefaultMaxFrame = 1 << 20
	// DefaultMaxFiles is the number of descriptors accepted per frame
	// until SetMaxFiles says otherwise.
	DefaultMaxFiles = 8
	// ChunkSize is the largest chunk the stream writer sends.
	ChunkSize = 64 << 10

	maxFrameCap  = 1 << 30 // larger limits are clamped: no sane frame is near this
	maxKernelFds = 253     // SCM_MAX_FD in Linux
	readBufSize  = 64 << 10
	abortMarker  = 0xFFFFFFFF
	directRead   = 4 << 10 // stream reads at least this big bypass the buffer
)

var (
	// ErrAborted is returned by a stream reader when the sender aborted
	// the stream (AbortStream).
	ErrAborted = errors.New("ipc: stream aborted by sender")
	// ErrTooLarge is wrapped by errors about a frame or stream over its
	// limit.
	ErrTooLarge = errors.New("ipc: too large")

	errStreamDone = errors.New("ipc: stream already closed")
)

// msgReader is what the reader needs from the socket; a fake stands in
// for it in the fuzz test.
type msgReader interface {
	ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)
	SetReadDeadline(t time.Time) error
}

// fdBatch is the descriptors received by one recvmsg, tagged with the
// connection offset just past the last byte that recvmsg returned.
type fdBatch struct {
	end   int64
	files []*os.File
}

// Conn is one end of a daemon-to-daemon connection.
type Conn struct {
	uc       *net.UnixConn
	rd       msgReader
	maxFrame int

	maxFiles atomic.Int32 // read by Send without rmu

	rmu   sync.Mutex
	buf   []byte // unread data is buf[r:w]
	r, w  int
	off   int64 // connection offset of buf[w]: bytes read so far
	oob   []byte
	pend  []fdBatch
	npend int
	rerr  error // sticky protocol error
	sin   *streamReader

	wmu  sync.Mutex
	werr error
	sout *streamWriter
	wbuf []byte
}

// NewConn wraps c. maxFrame is the largest payload sent or received;
// 0 or less means DefaultMaxFrame.
func NewConn(c *net.UnixConn, maxFrame int) *Conn {
	cn := &Conn{uc: c}
	if c != nil {
		cn.rd = c
	}
	cn.init(maxFrame)
	return cn
}

func (c *Conn) init(maxFrame int) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	c.maxFrame = min(maxFrame, maxFrameCap)
	c.setMaxFiles(DefaultMaxFiles)
}

// Dial connects to the Unix socket at path within timeout (0: no limit
// other than the kernel's) and returns a Conn with DefaultMaxFrame.
func Dial(path string, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("ipc: dial %s: %w", path, err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("ipc: dial %s: not a unix connection", path)
	}
	return NewConn(uc, 0), nil
}

// SetMaxFiles sets how many descriptors one received frame may carry
// (0 to 253). Descriptors beyond it are closed as they arrive.
func (c *Conn) SetMaxFiles(n int) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.setMaxFiles(n)
}

func (c *Conn) setMaxFiles(n int) {
	n = max(0, min(n, maxKernelFds))
	c.maxFiles.Store(int32(n))
	c.oob = nil
	if n > 0 {
		c.oob = make([]byte, unix.CmsgSpace(4*n))
	}
}

// UnixConn returns the underlying connection, e.g. for SO_PEERCRED. Reading
// or writing it directly breaks the framing.
func (c *Conn) UnixConn() *net.UnixConn { return c.uc }

// SetDeadline sets the read and write deadlines of the connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.uc.SetDeadline(t) }

// SetReadDeadline sets the deadline used by reads whose timeout is 0.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of Send and the stream writer.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// Close closes the connection and any received descriptors not yet handed
// to the caller.
func (c *Conn) Close() error {
	var err error
	if c.uc != nil {
		err = c.uc.Close()
	}
	c.rmu.Lock()
	for _, b := range c.pend {
		closeFiles(b.files)
	}
	c.pend, c.npend = nil, 0
	c.rmu.Unlock()
	return err
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// ---- reading ----

// consumed returns the connection offset of the first unread byte.
func (c *Conn) consumed() int64 { return c.off - int64(c.w-c.r) }

// readMsg does one recvmsg into p and files away the descriptors that
// came with it. It returns io.EOF at end of stream.
func (c *Conn) readMsg(p []byte) (int, error) {
	n, oobn, _, _, err := c.rd.ReadMsgUnix(p, c.oob)
	if n < 0 || n > len(p) {
		n = 0
	}
	c.off += int64(n)
	if oobn > 0 && oobn <= len(c.oob) {
		c.takeFiles(c.oob[:oobn], n)
	}
	if n == 0 && err == nil || errors.Is(err, io.EOF) {
		// net wraps EOF in an *OpError; the callers tell a clean end
		// from a truncated frame by comparing with io.EOF.
		err = io.EOF
	}
	return n, err
}

// takeFiles wraps received descriptors in *os.File and queues them for
// the frame they belong to, closing those over the pending limit.
func (c *Conn) takeFiles(oob []byte, n int) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			// Go's ReadMsgUnix asks for MSG_CMSG_CLOEXEC; this makes
			// sure even if a fake or future path did not.
			unix.CloseOnExec(fd)
			// Two frames' worth may legitimately wait here (the one
			// being read and the next header); more is a peer
			// stuffing descriptors.
			if n == 0 || c.npend+len(files) >= 2*int(c.maxFiles.Load()) {
				unix.Close(fd)
				continue
			}
			files = append(files, os.NewFile(uintptr(fd), "ipc-fd"))
		}
	}
	if len(files) > 0 {
		c.pend = append(c.pend, fdBatch{end: c.off, files: files})
		c.npend += len(files)
	}
}

// claim takes the descriptors of the frame occupying offsets [p, q):
// those of reads that ended inside it. Older batches are closed.
func (c *Conn) claim(p, q int64) []*os.File {
	var files []*os.File
	limit := int(c.maxFiles.Load())
	keep := c.pend[:0]
	for _, b := range c.pend {
		switch {
		case b.end <= p:
			closeFiles(b.files)
			c.npend -= len(b.files)
		case b.end <= q:
			c.npend -= len(b.files)
			for _, f := range b.files {
				if len(files) < limit {
					files = append(files, f)
				} else {
					f.Close()
				}
			}
		default:
			keep = append(keep, b)
		}
	}
	clear(c.pend[len(keep):])
	c.pend = keep
	return files
}

// dropStale closes descriptors of reads that ended at or before off:
// they came with stream data, which carries none.
func (c *Conn) dropStale(off int64) {
	if len(c.pend) > 0 && c.pend[0].end <= off {
		c.claim(off, off)
	}
}

// need makes at least n bytes (n <= 4+maxFrame) available in buf[r:w].
func (c *Conn) need(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	if len(c.buf) < n {
		size := max(n, min(2*len(c.buf), 4+c.maxFrame), readBufSize)
		nb := make([]byte, size)
		c.w = copy(nb, c.buf[c.r:c.w])
		c.r = 0
		c.buf = nb
	} else if len(c.buf)-c.r < n || c.r > 0 && len(c.buf)-c.w < directRead {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	for c.w-c.r < n {
		k, err := c.readMsg(c.buf[c.w:])
		c.w += k
		if err != nil {
			if c.w-c.r >= n {
				return nil
			}
			if err == io.EOF && c.w > c.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (c *Conn) setTimeout(d time.Duration) {
	if d > 0 {
		c.rd.SetReadDeadline(time.Now().Add(d))
	}
}

// Recv reads one frame and the descriptors that came with it; the caller
// owns the files. timeout > 0 bounds the whole call; 0 leaves the
// deadline set with SetReadDeadline. io.EOF means the peer closed the
// connection cleanly between frames.
func (c *Conn) Recv(timeout time.Duration) (*Msg, []*os.File, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return nil, nil, c.rerr
	}
	if c.rd == nil {
		return nil, nil, errors.New("ipc: no connection")
	}
	if c.sin != nil {
		return nil, nil, errors.New("ipc: Recv before the previous stream was read to its end")
	}
	c.setTimeout(timeout)
	if err := c.need(4); err != nil {
		if err == io.EOF {
			return nil, nil, io.EOF
		}
		return nil, nil, fmt.Errorf("ipc: reading frame header: %w", err)
	}
	size := binary.BigEndian.Uint32(c.buf[c.r:])
	if uint64(size) > uint64(c.maxFrame) {
		c.rerr = fmt.Errorf("ipc: frame of %d bytes over the limit of %d: %w", size, c.maxFrame, ErrTooLarge)
		return nil, nil, c.rerr
	}
	n := 4 + int(size)
	if err := c.need(n); err != nil {
		return nil, nil, fmt.Errorf("ipc: reading frame of %d bytes: %w", size, err)
	}
	p := c.consumed()
	files := c.claim(p, p+int64(n))
	m, err := Decode(c.buf[c.r+4 : c.r+n])
	c.r += n
	if c.r == c.w && len(c.buf) > 4*readBufSize {
		// Give back the memory of an exceptionally large frame.
		c.buf, c.r, c.w = nil, 0, 0
	}
	if err != nil {
		closeFiles(files)
		c.rerr = err
		return nil, nil, err
	}
	return m, files, nil
}

// streamReader reads the chunked stream that follows a frame.
type streamReader struct {
	c       *Conn
	limit   int64
	timeout time.Duration
	total   int64 // data bytes delivered so far
	left    int64 // data bytes left in the current chunk
	over    bool  // the limit was hit: Read fails, DiscardStream may skip
	err     error // terminal: io.EOF, ErrAborted or a setup error
}

// StreamReader returns a reader of the chunked stream that follows the
// last frame. It returns io.EOF at the end marker and ErrAborted if the
// sender aborted. Once more than limit bytes would be delivered (limit <=
// 0: no limit) it returns an error wrapping ErrTooLarge; the caller then
// either closes the connection or calls DiscardStream to stay in step
// with the peer. timeout > 0 bounds each Read; 0 leaves the deadline set
// with SetReadDeadline. Until the stream is read to its end, Recv fails.
func (c *Conn) StreamReader(limit int64, timeout time.Duration) io.Reader {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	s := &streamReader{c: c, limit: limit, timeout: timeout}
	switch {
	case c.rerr != nil:
		s.err = c.rerr
	case c.rd == nil:
		s.err = errors.New("ipc: no connection")
	case c.sin != nil:
		s.err = errors.New("ipc: a stream is already being read")
	default:
		c.sin = s
	}
	return s
}

// Read implements io.Reader.
func (s *streamReader) Read(p []byte) (int, error) {
	c := s.c
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.over {
		return 0, s.tooLarge()
	}
	c.setTimeout(s.timeout)
	for s.left == 0 {
		if err := s.header(true); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := s.data(p)
	if n > 0 {
		return n, nil
	}
	return 0, err
}

func (s *streamReader) tooLarge() error {
	return fmt.Errorf("ipc: stream over the limit of %d bytes: %w", s.limit, ErrTooLarge)
}

// header reads the next chunk header.
func (s *streamReader) header(checkLimit bool) error {
	c := s.c
	if err := c.need(4); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("ipc: reading stream chunk header: %w", err)
	}
	n := binary.BigEndian.Uint32(c.buf[c.r:])
	c.r += 4
	c.dropStale(c.consumed())
	switch n {
	case 0:
		s.finish(io.EOF)
		return io.EOF
	case abortMarker:
		s.finish(ErrAborted)
		return ErrAborted
	}
	s.left = int64(n)
	if checkLimit && s.limit > 0 && s.total+s.left > s.limit {
		s.over = true
		return s.tooLarge()
	}
	return nil
}

func (s *streamReader) finish(err error) {
	s.err = err
	s.left = 0
	if s.c.sin == s {
		s.c.sin = nil
	}
}

// data returns bytes of the current chunk, at most one recvmsg's worth.
func (s *streamReader) data(p []byte) (int, error) {
	c := s.c
	want := int(min(int64(len(p)), s.left))
	var n int
	var err error
	switch {
	case c.w > c.r:
		n = copy(p[:want], c.buf[c.r:c.w])
		c.r += n
	case want >= directRead:
		// The read cannot cross into the next chunk header, so
		// whatever descriptors come with it are stray.
		n, err = c.readMsg(p[:want])
	default:
		if err = c.need(1); err == nil {
			n = copy(p[:want], c.buf[c.r:c.w])
			c.r += n
		}
	}
	s.left -= int64(n)
	s.total += int64(n)
	c.dropStale(c.consumed())
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		err = fmt.Errorf("ipc: reading stream: %w", err)
	}
	return n, err
}

// DiscardStream reads and drops the rest of the stream being read, e.g.
// after ErrTooLarge, so that the connection stays usable for the reply.
// It returns nil at the end marker, ErrAborted if the sender aborted, and
// nil at once if no stream is being read. timeout > 0 bounds each read.
func (c *Conn) DiscardStream(timeout time.Duration) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	s := c.sin
	if s == nil {
		return nil
	}
	for {
		c.setTimeout(timeout)
		if s.left == 0 {
			switch err := s.header(false); err {
			case nil:
				continue
			case io.EOF:
				return nil
			default:
				return err
			}
		}
		if c.w == c.r {
			if err := c.need(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("ipc: discarding stream: %w", err)
			}
		}
		k := int(min(int64(c.w-c.r), s.left))
		c.r += k
		s.left -= int64(k)
		c.dropStale(c.consumed())
	}
}

// ---- writing ----

// Send writes m as one frame, with files attached to its first bytes.
// The files stay open on the sender's side. A frame over the Conn's limit
// or more than MaxFiles files is refused before anything is written.
func (c *Conn) Send(m *Msg, files ...*os.File) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.uc == nil {
		return errors.New("ipc: no connection")
	}
	if c.sout != nil {
		return errors.New("ipc: Send while a stream is open")
	}
	if limit := int(c.maxFiles.Load()); len(files) > limit {
		return fmt.Errorf("ipc: %d files in one frame, at most %d", len(files), limit)
	}
	n, err := payloadLen(m)
	if err != nil {
		return err
	}
	if n > c.maxFrame {
		return fmt.Errorf("ipc: frame of %d bytes over the limit of %d: %w", n, c.maxFrame, ErrTooLarge)
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+n), uint32(n))
	frame = appendPayload(frame, m)
	if len(files) == 0 {
		_, err = c.uc.Write(frame)
	} else {
		err = withFds(files, func(fds []int) error {
			k, _, err := c.uc.WriteMsgUnix(frame[:4], unix.UnixRights(fds...), nil)
			if err != nil {
				return err
			}
			_, err = c.uc.Write(frame[k:])
			return err
		})
	}
	if err != nil {
		c.werr = fmt.Errorf("ipc: send: %w", err)
		return c.werr
	}
	return nil
}

// withFds calls fn with the descriptors of files, holding each file's
// descriptor through its SyscallConn so that a concurrent Close cannot
// reuse the number under us, and without the blocking-mode switch of
// (*os.File).Fd.
func withFds(files []*os.File, fn func(fds []int) error) error {
	fds := make([]int, 0, len(files))
	var rec func(i int) error
	rec = func(i int) error {
		if i == len(files) {
			return fn(fds)
		}
		if files[i] == nil {
			return fmt.Errorf("ipc: file %d is nil", i)
		}
		rc, err := files[i].SyscallConn()
		if err != nil {
			return fmt.Errorf("ipc: file %s: %w", files[i].Name(), err)
		}
		var ferr error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, int(fd))
			ferr = rec(i + 1)
		}); err != nil {
			return fmt.Errorf("ipc: file %s: %w", files[i].Name(), err)
		}
		return ferr
	}
	return rec(0)
}

// streamWriter buffers stream data into chunks of up to ChunkSize.
type streamWriter struct {
	c       *Conn
	err     error // set when the writer is finished
	aborted bool
	hdr     [4]byte
}

// StreamWriter starts the chunked stream that follows the last frame.
// Writes are buffered into chunks of up to ChunkSize bytes; Close sends
// the rest and the end marker. Until then, Send fails.
func (c *Conn) StreamWriter() io.WriteCloser {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w := &streamWriter{c: c}
	switch {
	case c.uc == nil:
		w.err = errors.New("ipc: no connection")
	case c.sout != nil:
		w.err = errors.New("ipc: a stream is already open")
	default:
		c.sout = w
		if c.wbuf == nil {
			c.wbuf = make([]byte, 0, ChunkSize)
		}
		c.wbuf = c.wbuf[:0]
	}
	return w
}

// Write implements io.Writer.
func (w *streamWriter) Write(p []byte) (int, error) {
	c := w.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	done := 0
	for len(p) > 0 {
		if len(c.wbuf) == 0 && len(p) >= ChunkSize {
			if err := w.chunks(p[:ChunkSize]); err != nil {
				return done, err
			}
			p = p[ChunkSize:]
			done += ChunkSize
			continue
		}
		k := min(ChunkSize-len(c.wbuf), len(p))
		c.wbuf = append(c.wbuf, p[:k]...)
		p = p[k:]
		done += k
		if len(c.wbuf) == ChunkSize {
			if err := w.chunks(c.wbuf); err != nil {
				return done, err
			}
			c.wbuf = c.wbuf[:0]
		}
	}
	return done, nil
}

func (w *streamWriter) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.c.werr != nil {
		return w.c.werr
	}
	return nil
}

// chunks writes data as one chunk and, with end, the end marker, in one
// writev.
func (w *streamWriter) chunks(data []byte, end ...byte) error {
	c := w.c
	binary.BigEndian.PutUint32(w.hdr[:], uint32(len(data)))
	bufs := net.Buffers{w.hdr[:], data}
	if len(end) > 0 {
		bufs = append(bufs, end)
	}
	if _, err := bufs.WriteTo(c.uc); err != nil {
		c.werr = fmt.Errorf("ipc: stream write: %w", err)
		return c.werr
	}
	return nil
}

// Close sends buffered data and the end marker. After AbortStream it
// returns ErrAborted; a second Close returns nil.
func (w *streamWriter) Close() error {
	c := w.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if w.aborted {
		return ErrAborted
	}
	if w.err == errStreamDone {
		return nil
	}
	if err := w.usable(); err != nil {
		return err
	}
	w.err = errStreamDone
	c.sout = nil
	endMark := []byte{0, 0, 0, 0}
	var err error
	if len(c.wbuf) > 0 {
		err = w.chunks(c.wbuf, endMark...)
	} else {
		_, err = c.uc.Write(endMark)
		if err != nil {
			c.werr = fmt.Errorf("ipc: stream write: %w", err)
			err = c.werr
		}
	}
	c.wbuf = c.wbuf[:0]
	return err
}

// AbortStream ends the open stream with the abort marker; buffered data
// is dropped. The reader sees ErrAborted.
func (c *Conn) AbortStream() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w := c.sout
	if w == nil {
		return errors.New("ipc: AbortStream without an open stream")
	}
	if c.werr != nil {
		return c.werr
	}
	w.err, w.aborted = ErrAborted, true
	c.sout = nil
	c.wbuf = c.wbuf[:0]
	if _, err := c.uc.Write([]byte{0xFF, 0xFF, 0xFF, 0xFF}); err != nil {
		c.werr = fmt.Errorf("ipc: stream abort: %w", err)
		return c.werr
	}
	return nil
}
