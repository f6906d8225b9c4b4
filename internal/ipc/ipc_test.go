package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testTimeout = 5 * time.Second

// socketpair returns two connected *net.UnixConn.
func socketpair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := mk(fds[0]), mk(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func pair(t testing.TB, maxFrame int) (*Conn, *Conn) {
	a, b := socketpair(t)
	ca, cb := NewConn(a, maxFrame), NewConn(b, maxFrame)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// openFds counts this process's open descriptors.
func openFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// tempFile returns an open file holding content.
func tempFile(t testing.TB, content string) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "fd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(t testing.TB, f *os.File) string {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return string(b)
}

func TestSendRecv(t *testing.T) {
	a, b := pair(t, 0)
	bin := "\x00\r\n\xff"
	if err := a.Send(NewMsg("request", "x", "rcpt", "1", "rcpt", bin)); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(NewMsg()); err != nil {
		t.Fatal(err)
	}
	m, files, err := b.Recv(testTimeout)
	if err != nil || len(files) != 0 {
		t.Fatalf("Recv: %v, %d files", err, len(files))
	}
	if m.Get("request") != "x" || len(m.All("rcpt")) != 2 || m.All("rcpt")[1] != bin {
		t.Errorf("got %v", m.attrs)
	}
	m, _, err = b.Recv(testTimeout)
	if err != nil || m.Len() != 0 {
		t.Fatalf("empty frame: %v %v", m, err)
	}
	a.Close()
	if _, _, err := b.Recv(testTimeout); err != io.EOF {
		t.Errorf("after peer close: %v, want io.EOF", err)
	}
}

func TestFdPassing(t *testing.T) {
	a, b := pair(t, 0)
	f := tempFile(t, "queue file contents")
	if err := a.Send(NewMsg("queue_id", "ABC"), f); err != nil {
		t.Fatal(err)
	}
	m, files, err := b.Recv(testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if m.Get("queue_id") != "ABC" || len(files) != 1 {
		t.Fatalf("got %v with %d files", m.attrs, len(files))
	}
	defer files[0].Close()
	if got := readAll(t, files[0]); got != "queue file contents" {
		t.Errorf("content through passed fd: %q", got)
	}
	flags, err := unix.FcntlInt(files[0].Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received fd not close-on-exec: flags %#x, %v", flags, err)
	}
	var st1, st2 unix.Stat_t
	unix.Fstat(int(f.Fd()), &st1)
	unix.Fstat(int(files[0].Fd()), &st2)
	if st1.Ino != st2.Ino || st1.Dev != st2.Dev {
		t.Error("received fd is another file")
	}
}

// TestFdMatching sends a mix of frames with and without descriptors,
// large and small, with streams between them, all before the receiver
// reads anything, and checks that each frame gets exactly its own.
func TestFdMatching(t *testing.T) {
	a, b := pair(t, 0)
	const n = 40
	files := make([]*os.File, n)
	for i := range files {
		files[i] = tempFile(t, "file "+strconv.Itoa(i))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	nfd := make([]int, n)
	sizes := make([]int, n)
	streams := make([]int, n)
	for i := range n {
		nfd[i] = rng.IntN(4) // 0..3 fds
		sizes[i] = []int{0, 10, 5000, 300000}[rng.IntN(4)]
		if rng.IntN(3) == 0 {
			streams[i] = rng.IntN(200000)
		} else {
			streams[i] = -1
		}
	}
	before := openFds(t)
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			var fs []*os.File
			for k := range nfd[i] {
				fs = append(fs, files[(i+k)%n])
			}
			m := NewMsg("i", strconv.Itoa(i), "pad", string(make([]byte, sizes[i])))
			if err := a.Send(m, fs...); err != nil {
				errc <- err
				return
			}
			if streams[i] >= 0 {
				w := a.StreamWriter()
				if _, err := w.Write(bytes.Repeat([]byte{byte(i)}, streams[i])); err != nil {
					errc <- err
					return
				}
				if err := w.Close(); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	// Let the sender fill the socket buffer so reads coalesce.
	time.Sleep(50 * time.Millisecond)
	for i := range n {
		m, fs, err := b.Recv(testTimeout)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got, _ := m.Int("i"); int(got) != i {
			t.Fatalf("frame %d: got frame %d", i, got)
		}
		if len(m.Get("pad")) != sizes[i] {
			t.Fatalf("frame %d: pad %d", i, len(m.Get("pad")))
		}
		if len(fs) != nfd[i] {
			t.Fatalf("frame %d: %d files, want %d", i, len(fs), nfd[i])
		}
		for k, f := range fs {
			want := "file " + strconv.Itoa((i+k)%n)
			if got := readAll(t, f); got != want {
				t.Errorf("frame %d file %d: %q, want %q", i, k, got, want)
			}
			f.Close()
		}
		if streams[i] >= 0 {
			data, err := io.ReadAll(b.StreamReader(0, testTimeout))
			if err != nil {
				t.Fatalf("frame %d stream: %v", i, err)
			}
			if len(data) != streams[i] || len(data) > 0 && (data[0] != byte(i) || data[len(data)-1] != byte(i)) {
				t.Fatalf("frame %d: stream of %d bytes, want %d", i, len(data), streams[i])
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if after := openFds(t); after != before {
		t.Errorf("open fds %d before, %d after: leak", before, after)
	}
}

func TestExtraFdsClosed(t *testing.T) {
	a, b := pair(t, 0)
	b.SetMaxFiles(2)
	a.SetMaxFiles(5)
	var fs []*os.File
	for i := range 5 {
		fs = append(fs, tempFile(t, strconv.Itoa(i)))
	}
	before := openFds(t)
	if err := a.Send(NewMsg("x", "y"), fs...); err != nil {
		t.Fatal(err)
	}
	_, got, err := b.Recv(testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d files, want 2", len(got))
	}
	for i, f := range got {
		if s := readAll(t, f); s != strconv.Itoa(i) {
			t.Errorf("file %d holds %q", i, s)
		}
		f.Close()
	}
	if after := openFds(t); after != before {
		t.Errorf("open fds %d before, %d after: extra fds not closed", before, after)
	}
	a.SetMaxFiles(DefaultMaxFiles)
	if err := a.Send(NewMsg(), make([]*os.File, DefaultMaxFiles+1)...); err == nil {
		t.Error("Send accepted more files than the limit")
	}
	if err := a.Send(NewMsg(), nil); err == nil {
		t.Error("Send accepted a nil file")
	}
}

// TestStrayFdInStream: descriptors a peer attaches to stream data are
// closed, and the next frame still gets its own.
func TestStrayFdInStream(t *testing.T) {
	ua, ub := socketpair(t)
	b := NewConn(ub, 0)
	f := tempFile(t, "good")
	stray := tempFile(t, "stray")
	before := openFds(t)

	a := NewConn(ua, 0)
	if err := a.Send(NewMsg("n", "1")); err != nil {
		t.Fatal(err)
	}
	chunk := binary.BigEndian.AppendUint32(nil, 3)
	chunk = append(chunk, "abc"...)
	if _, _, err := ua.WriteMsgUnix(chunk, unix.UnixRights(int(stray.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	ua.Write([]byte{0, 0, 0, 0})
	if err := a.Send(NewMsg("n", "2"), f); err != nil {
		t.Fatal(err)
	}

	if _, fs, err := b.Recv(testTimeout); err != nil || len(fs) != 0 {
		t.Fatalf("frame 1: %v, %d files", err, len(fs))
	}
	data, err := io.ReadAll(b.StreamReader(10, testTimeout))
	if err != nil || string(data) != "abc" {
		t.Fatalf("stream %q, %v", data, err)
	}
	m, fs, err := b.Recv(testTimeout)
	if err != nil || m.Get("n") != "2" || len(fs) != 1 {
		t.Fatalf("frame 2: %v, %v, %d files", m, err, len(fs))
	}
	if readAll(t, fs[0]) != "good" {
		t.Error("frame 2 got the stray descriptor")
	}
	fs[0].Close()
	if after := openFds(t); after != before {
		t.Errorf("open fds %d before, %d after: stray fd not closed", before, after)
	}
}

func TestStream(t *testing.T) {
	a, b := pair(t, 0)
	data := make([]byte, 1<<20+12345)
	rand.NewChaCha8([32]byte{3, 4}).Read(data)
	errc := make(chan error, 1)
	go func() {
		if err := a.Send(NewMsg("request", "data")); err != nil {
			errc <- err
			return
		}
		w := a.StreamWriter()
		p := data
		for i := 0; len(p) > 0; i++ {
			k := min(len(p), []int{1, 100, 70000, 65536, 3}[i%5])
			if _, err := w.Write(p[:k]); err != nil {
				errc <- err
				return
			}
			p = p[k:]
		}
		if err := w.Close(); err != nil {
			errc <- err
			return
		}
		if err := a.Send(a2m("after")); err != nil {
			errc <- err
			return
		}
		errc <- nil
	}()
	if _, _, err := b.Recv(testTimeout); err != nil {
		t.Fatal(err)
	}
	r := b.StreamReader(int64(len(data)), testTimeout)
	if _, _, err := b.Recv(testTimeout); err == nil {
		t.Error("Recv in the middle of a stream succeeded")
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("stream: got %d bytes, want %d, equal prefix? %v", len(got), len(data), bytes.HasPrefix(data, got))
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read after end: %d %v", n, err)
	}
	m, _, err := b.Recv(testTimeout)
	if err != nil || m.Get("x") != "after" {
		t.Fatalf("frame after stream: %v %v", m, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// An empty stream.
	a.StreamWriter().Close()
	if got, err := io.ReadAll(b.StreamReader(0, testTimeout)); err != nil || len(got) != 0 {
		t.Errorf("empty stream: %q %v", got, err)
	}
}

func a2m(v string) *Msg { return NewMsg("x", v) }

func TestStreamAbort(t *testing.T) {
	a, b := pair(t, 0)
	go func() {
		w := a.StreamWriter()
		w.Write(make([]byte, 100000))
		a.AbortStream()
		if err := w.Close(); err != ErrAborted {
			t.Errorf("Close after abort: %v", err)
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Error("Write after abort succeeded")
		}
		a.Send(a2m("next"))
	}()
	got, err := io.ReadAll(b.StreamReader(0, testTimeout))
	if err != ErrAborted {
		t.Fatalf("got %v, want ErrAborted", err)
	}
	if len(got) > 100000 {
		t.Errorf("read %d bytes", len(got))
	}
	m, _, err := b.Recv(testTimeout)
	if err != nil || m.Get("x") != "next" {
		t.Fatalf("frame after abort: %v %v", m, err)
	}
	if err := a.AbortStream(); err == nil {
		t.Error("AbortStream without stream succeeded")
	}
}

func TestStreamTooLarge(t *testing.T) {
	a, b := pair(t, 0)
	go func() {
		w := a.StreamWriter()
		w.Write(make([]byte, 5000))
		w.Write(make([]byte, 100000))
		w.Close()
		a.Send(a2m("after"))
	}()
	_, err := io.ReadAll(b.StreamReader(1000, testTimeout))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if err := b.DiscardStream(testTimeout); err != nil {
		t.Fatalf("DiscardStream: %v", err)
	}
	m, _, err := b.Recv(testTimeout)
	if err != nil || m.Get("x") != "after" {
		t.Fatalf("frame after discarded stream: %v %v", m, err)
	}
	// The limit is exact: a stream of exactly limit bytes passes.
	go func() {
		w := a.StreamWriter()
		w.Write(make([]byte, 1000))
		w.Close()
	}()
	if got, err := io.ReadAll(b.StreamReader(1000, testTimeout)); err != nil || len(got) != 1000 {
		t.Errorf("stream at the limit: %d bytes, %v", len(got), err)
	}
}

func TestFrameTooLarge(t *testing.T) {
	ua, ub := socketpair(t)
	a, b := NewConn(ua, 1000), NewConn(ub, 100)
	if err := a.Send(NewMsg("v", string(make([]byte, 200)))); err != nil {
		t.Fatal(err)
	}
	_, _, err := b.Recv(testTimeout)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if _, _, err2 := b.Recv(testTimeout); err2 != err {
		t.Errorf("error not sticky: %v", err2)
	}
	if err := b.Send(NewMsg("v", string(make([]byte, 200)))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Send over the limit: %v", err)
	}
	// A header announcing 4 GiB must fail at once, not allocate.
	ua2, ub2 := socketpair(t)
	ua2.Write([]byte{0xff, 0xff, 0xff, 0xff})
	if _, _, err := NewConn(ub2, 0).Recv(testTimeout); !errors.Is(err, ErrTooLarge) {
		t.Errorf("4 GiB header: %v", err)
	}
}

func TestTruncatedFrame(t *testing.T) {
	ua, ub := socketpair(t)
	ua.Write([]byte{0, 0, 0, 100, 0, 1, 'a'})
	ua.Close()
	_, _, err := NewConn(ub, 0).Recv(testTimeout)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
	}
	ua, ub = socketpair(t)
	ua.Write([]byte{0, 0})
	ua.Close()
	if _, _, err := NewConn(ub, 0).Recv(testTimeout); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("half header: got %v", err)
	}
	// A stream cut short.
	ua, ub = socketpair(t)
	ua.Write([]byte{0, 0, 0, 10, 'a', 'b'})
	ua.Close()
	if _, err := io.ReadAll(NewConn(ub, 0).StreamReader(0, testTimeout)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut stream: got %v", err)
	}
}

func TestBadFrame(t *testing.T) {
	ua, ub := socketpair(t)
	ua.Write([]byte{0, 0, 0, 7, 0, 1, 'A', 0, 0, 0, 0})
	b := NewConn(ub, 0)
	if _, _, err := b.Recv(testTimeout); err == nil {
		t.Fatal("bad name accepted")
	}
	if _, _, err := b.Recv(testTimeout); err == nil {
		t.Fatal("error not sticky")
	}
}

func TestDeadline(t *testing.T) {
	a, b := pair(t, 0)
	start := time.Now()
	_, _, err := b.Recv(50 * time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Recv took %v", d)
	}
	// Half a frame, then a timeout; the rest arrives later and the frame
	// is read whole.
	p, _ := Encode(a2m("late"))
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	frame = append(frame, p...)
	a.uc.Write(frame[:5])
	if _, _, err := b.Recv(30 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("half frame: %v", err)
	}
	a.uc.Write(frame[5:])
	m, _, err := b.Recv(testTimeout)
	if err != nil || m.Get("x") != "late" {
		t.Fatalf("after timeout: %v %v", m, err)
	}
	// The caller's own deadline applies with timeout 0.
	b.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, _, err := b.Recv(0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("caller deadline: %v", err)
	}
	b.SetReadDeadline(time.Time{})
	// Stream reads time out per Read.
	a.uc.Write([]byte{0, 0, 0, 10, 'a'})
	r := b.StreamReader(0, 30*time.Millisecond)
	buf := make([]byte, 10)
	if n, err := r.Read(buf); n != 1 || err != nil {
		t.Fatalf("first stream read: %d %v", n, err)
	}
	if _, err := r.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stream read: %v", err)
	}
	if err := b.DiscardStream(30 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("DiscardStream: %v", err)
	}
}

func TestDial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		uc, err := l.AcceptUnix()
		if err != nil {
			return
		}
		c := NewConn(uc, 0)
		defer c.Close()
		m, _, err := c.Recv(testTimeout)
		if err != nil {
			return
		}
		c.Send(NewMsg("echo", m.Get("ping")))
	}()
	c, err := Dial(path, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(NewMsg("ping", "hello")); err != nil {
		t.Fatal(err)
	}
	m, _, err := c.Recv(testTimeout)
	if err != nil || m.Get("echo") != "hello" {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := Dial(filepath.Join(t.TempDir(), "none"), time.Second); err == nil {
		t.Error("Dial of a missing socket succeeded")
	}
}

// TestConcurrentSendRecv: one goroutine sends while another receives on
// the same Conn, and Close unblocks a pending Recv.
func TestConcurrentSendRecv(t *testing.T) {
	a, b := pair(t, 0)
	const n = 200
	done := make(chan error, 2)
	go func() { // echo
		for {
			m, _, err := b.Recv(testTimeout)
			if err != nil {
				done <- nil
				return
			}
			b.Send(m)
		}
	}()
	go func() {
		for i := range n {
			if err := a.Send(NewMsg("i", strconv.Itoa(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range n {
		m, _, err := a.Recv(testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if m.Get("i") != strconv.Itoa(i) {
			t.Fatalf("got %s want %d", m.Get("i"), i)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Close()
	}()
	if _, _, err := a.Recv(testTimeout); err == nil {
		t.Error("Recv on closed conn succeeded")
	}
	<-done
}

// fakeSock feeds the reader wire bytes in pieces, with descriptors
// attached to some reads.
type fakeSock struct {
	data   []byte
	sizes  []byte
	fdMask uint64
	reads  int
	fdFile *os.File
}

func (f *fakeSock) ReadMsgUnix(b, oob []byte) (int, int, int, *net.UnixAddr, error) {
	if len(f.data) == 0 {
		return 0, 0, 0, nil, io.EOF
	}
	n := 1
	if len(f.sizes) > 0 {
		n = int(f.sizes[f.reads%len(f.sizes)])*37 + 1
	}
	n = min(n, len(b), len(f.data))
	copy(b, f.data[:n])
	f.data = f.data[n:]
	oobn := 0
	if f.fdMask&(1<<(f.reads%64)) != 0 && len(oob) > 0 {
		// Duplicate one descriptor per read, as the kernel would install
		// a new one.
		var fds []int
		for range 1 + f.reads%3 {
			fd, err := unix.Dup(int(f.fdFile.Fd()))
			if err == nil {
				fds = append(fds, fd)
			}
		}
		rights := unix.UnixRights(fds...)
		if len(rights) <= len(oob) {
			oobn = copy(oob, rights)
		} else {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
	f.reads++
	return n, oobn, 0, nil, nil
}

func (f *fakeSock) SetReadDeadline(time.Time) error { return nil }

// FuzzConn drives Recv, StreamReader and DiscardStream over arbitrary
// wire bytes delivered in arbitrary pieces with descriptors attached at
// arbitrary reads: no panic, no unbounded memory, no leaked descriptor.
func FuzzConn(f *testing.F) {
	frame := func(m *Msg) []byte {
		p, _ := Encode(m)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
	}
	var seed []byte
	seed = append(seed, frame(NewMsg("a", "b"))...)
	seed = append(seed, 0, 0, 0, 3, 'x', 'y', 'z', 0, 0, 0, 0)
	seed = append(seed, frame(NewMsg("rcpt", "1", "rcpt", "2"))...)
	seed = append(seed, 0, 0, 0, 2, 'x', 'y', 0xff, 0xff, 0xff, 0xff)
	f.Add(uint64(0), uint8(2), []byte{1, 7, 200}, seed)
	f.Add(uint64(5), uint8(0x55), []byte{0}, seed)
	f.Add(uint64(1), uint8(0xff), []byte{255}, []byte{0, 0, 0, 200, 0, 1, 'a'})
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		f.Fatal(err)
	}
	defer devnull.Close()
	before := openFds(f)
	f.Fuzz(func(t *testing.T, fdMask uint64, ops uint8, sizes, wire []byte) {
		c := &Conn{rd: &fakeSock{data: wire, sizes: sizes, fdMask: fdMask, fdFile: devnull}}
		c.init(4096)
		c.setMaxFiles(2)
		buf := make([]byte, 100)
		for i := range 40 {
			if ops&(1<<(i%8)) == 0 {
				m, fs, err := c.Recv(0)
				if len(fs) > 2 {
					t.Fatalf("%d files in one frame", len(fs))
				}
				closeFiles(fs)
				if err != nil {
					break
				}
				if _, err := Encode(m); err != nil {
					t.Fatalf("received message does not encode: %v", err)
				}
				continue
			}
			r := c.StreamReader(int64(i*50), 0)
			total := 0
			var err error
			for err == nil {
				var n int
				n, err = r.Read(buf)
				total += n
			}
			if i > 0 && total > i*50 {
				t.Fatalf("stream gave %d bytes over limit %d", total, i*50)
			}
			if errors.Is(err, ErrTooLarge) {
				err = c.DiscardStream(0)
			} else if err == io.EOF || err == ErrAborted {
				err = nil
			}
			if err != nil {
				break
			}
		}
		if len(c.buf) > 4096+4+readBufSize {
			t.Fatalf("buffer grew to %d", len(c.buf))
		}
		c.Close()
		if after := openFds(t); after != before {
			t.Fatalf("open fds %d before, %d after", before, after)
		}
	})
}

func BenchmarkSendRecv(b *testing.B) {
	x, y := pair(b, 0)
	m := NewMsg("request", "deliver", "queue_id", "0123456789ABCDEF01", "rcpt", "user@example.org")
	go func() {
		for {
			if _, _, err := y.Recv(testTimeout); err != nil {
				return
			}
		}
	}()
	for b.Loop() {
		if err := x.Send(m); err != nil {
			b.Fatal(err)
		}
	}
	x.Close()
}
