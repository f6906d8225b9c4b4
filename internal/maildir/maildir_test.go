package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"
)

var nameRE = regexp.MustCompile(`^([0-9]+)\.M([0-9]{1,6})P([0-9]+)Q([0-9]+)\.([^/:,]+),W=([0-9]+),S=([0-9]+)$`)

// readNew checks that name is a well-formed delivery in dir/new whose S=
// matches its size, and returns its content.
func readNew(t *testing.T, dir, name string) []byte {
	t.Helper()
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		t.Fatalf("name %q does not match %s", name, nameRE)
	}
	b, err := os.ReadFile(filepath.Join(dir, "new", name))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := strconv.Atoi(m[7]); s != len(b) {
		t.Fatalf("%s: S=%d but file has %d bytes", name, s, len(b))
	}
	if w, _ := strconv.Atoi(m[6]); w != len(crlfOf(b)) {
		t.Fatalf("%s: W=%d but CRLF form has %d bytes", name, w, len(crlfOf(b)))
	}
	return b
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s not empty: %v", dir, ents)
	}
}

func TestDeliverCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := &Delivery{Dir: dir + "/", Hostname: "mx.example.test", Create: true}
	prefix := []byte("Return-Path: <a@example.org>\nDelivered-To: bob@here.test\n")
	msg := "Subject: hi\r\n\r\nbody\r\nlone\rcr\r\r\nend\n\r"
	name, err := d.Deliver(prefix, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	got := readNew(t, dir, name)
	want := string(prefix) + "Subject: hi\n\nbody\nlone\rcr\r\nend\n\r"
	if string(got) != want {
		t.Fatalf("content\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(name, ".mx.example.test,W=") {
		t.Fatalf("host missing in %q", name)
	}
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		st, err := os.Lstat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsDir() || st.Mode().Perm()&^0o700 != 0 {
			t.Fatalf("%s: mode %v, want a directory with at most 0700", sub, st.Mode())
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "new", name))
	if st.Mode().Perm()&^0o600 != 0 {
		t.Fatalf("file mode %v, want at most 0600", st.Mode())
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))

	// A second delivery into the existing Maildir, without Create.
	d2 := &Delivery{Dir: dir, Hostname: "mx.example.test"}
	name2, err := d2.Deliver(nil, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if name2 == name {
		t.Fatal("same name twice")
	}
	if b := readNew(t, dir, name2); len(b) != 0 {
		t.Fatalf("empty message stored as %q", b)
	}
}

func TestDeliverMissing(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "Maildir")
	_, err := (&Delivery{Dir: dir}).Deliver(nil, strings.NewReader("x"))
	if err == nil || !errors.Is(err, unix.ENOENT) || !IsTemporary(err) {
		t.Fatalf("missing Maildir without Create: %v", err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatal("Maildir created without Create")
	}

	// Create makes Dir, not its parents.
	deep := filepath.Join(base, "no", "such", "Maildir")
	_, err = (&Delivery{Dir: deep, Create: true}).Deliver(nil, strings.NewReader("x"))
	var e *Error
	if !errors.As(err, &e) || e.Op != "mkdir" || e.Path != deep || !e.Temp {
		t.Fatalf("missing parent: %#v", err)
	}

	// Without Create, missing new/ is an error too, and nothing is left in tmp/.
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	_, err = (&Delivery{Dir: dir}).Deliver(nil, strings.NewReader("x"))
	if !errors.As(err, &e) || e.Path != dir+"/new" {
		t.Fatalf("missing new/: %v", err)
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))

	if _, err := (&Delivery{Dir: dir}).Deliver(nil, nil); err == nil || IsTemporary(err) {
		t.Fatalf("nil reader: %v", err)
	}
	if _, err := (*Delivery)(nil).Deliver(nil, strings.NewReader("")); err == nil {
		t.Fatal("nil Delivery accepted")
	}
	for _, bad := range []string{"", "Maildir", "./x"} {
		_, err := (&Delivery{Dir: bad, Create: true}).Deliver(nil, strings.NewReader("x"))
		if err == nil || IsTemporary(err) {
			t.Fatalf("Dir %q: %v", bad, err)
		}
	}
}

// TestLFAcrossBuffers feeds messages whose CRLFs straddle every read and
// buffer boundary.
func TestLFAcrossBuffers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := &Delivery{Dir: dir, Hostname: "h", Create: true}
	var big bytes.Buffer
	for big.Len() < 3*bufSize {
		big.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz\r\n\rx\r")
	}
	cases := map[string]io.Reader{
		"onebyte": iotest.OneByteReader(strings.NewReader("a\r\nb\rc\r\r\nd\r")),
		"halfbig": iotest.HalfReader(bytes.NewReader(big.Bytes())),
		"big":     bytes.NewReader(big.Bytes()),
		"dataerr": iotest.DataErrReader(bytes.NewReader(big.Bytes())),
	}
	want := map[string]string{
		"onebyte": "a\nb\rc\r\nd\r",
		"halfbig": strings.ReplaceAll(big.String(), "\r\n", "\n"),
		"big":     strings.ReplaceAll(big.String(), "\r\n", "\n"),
		"dataerr": strings.ReplaceAll(big.String(), "\r\n", "\n"),
	}
	for k, r := range cases {
		name, err := d.Deliver([]byte("X: y\n"), r)
		if err != nil {
			t.Fatal(k, err)
		}
		if got := string(readNew(t, dir, name)); got != "X: y\n"+want[k] {
			t.Fatalf("%s: content differs (len %d, want %d)", k, len(got), len("X: y\n")+len(want[k]))
		}
	}
}

func TestConcurrentUnique(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	const n = 1000
	names := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d := &Delivery{Dir: dir, Hostname: "h", Create: true}
			names[i], errs[i] = d.Deliver(nil, strings.NewReader(fmt.Sprintf("message %d\r\n", i)))
		})
	}
	wg.Wait()
	seen := make(map[string]bool, n)
	for i, name := range names {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[name] {
			t.Fatalf("duplicate name %s", name)
		}
		seen[name] = true
		if got, want := string(readNew(t, dir, name)), fmt.Sprintf("message %d\n", i); got != want {
			t.Fatalf("%s: %q, want %q", name, got, want)
		}
	}
	newNames, curNames, err := List(dir)
	if err != nil || len(newNames) != n || len(curNames) != 0 {
		t.Fatalf("List: %d new, %d cur, %v", len(newNames), len(curNames), err)
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))
}

func TestSymlinksRefused(t *testing.T) {
	for _, which := range []string{"Dir", "new", "tmp", "cur"} {
		t.Run(which, func(t *testing.T) {
			base := t.TempDir()
			real := filepath.Join(base, "real")
			for _, sub := range []string{"cur", "new", "tmp"} {
				os.MkdirAll(filepath.Join(real, sub), 0o700)
			}
			dir := filepath.Join(base, "Maildir")
			target := filepath.Join(base, "elsewhere")
			os.MkdirAll(target, 0o700)
			if which == "Dir" {
				os.Symlink(real, dir)
			} else {
				os.Rename(real, dir)
				os.Remove(filepath.Join(dir, which))
				os.Symlink(target, filepath.Join(dir, which))
			}
			for _, create := range []bool{false, true} {
				_, err := (&Delivery{Dir: dir, Create: create}).Deliver(nil, strings.NewReader("x"))
				if which == "cur" && !create {
					// cur/ is not touched by a delivery without Create.
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				if !errors.Is(err, ErrSymlink) || IsTemporary(err) || !strings.Contains(err.Error(), "is a symlink, refusing") {
					t.Fatalf("create=%v: %v", create, err)
				}
				t.Log(err)
			}
			assertEmpty(t, target)
			if which != "Dir" && which != "tmp" {
				assertEmpty(t, filepath.Join(dir, "tmp"))
			}
			if _, _, err := List(dir); which != "tmp" && !errors.Is(err, ErrSymlink) {
				t.Fatalf("List: %v", err)
			}
		})
	}
}

func TestNotADirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	os.WriteFile(dir, []byte("mbox"), 0o600)
	_, err := (&Delivery{Dir: dir, Create: true}).Deliver(nil, strings.NewReader("x"))
	if !errors.Is(err, unix.ENOTDIR) || IsTemporary(err) {
		t.Fatalf("regular file as Maildir: %v", err)
	}
}

// eachWay runs f once with unnamed files (O_TMPFILE) and once with named
// ones in tmp/, the way for kernels and file systems without them.
func eachWay(t *testing.T, f func(t *testing.T)) {
	t.Run("unnamed", f)
	t.Run("named", func(t *testing.T) {
		orig := unnamed
		unnamed = func() bool { return false }
		defer func() { unnamed = orig }()
		f(t)
	})
}

// TestENOSPCHook injects a full disk through the write hook.
func TestENOSPCHook(t *testing.T) { eachWay(t, testENOSPCHook) }

func testENOSPCHook(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	for _, errno := range []unix.Errno{unix.ENOSPC, unix.EDQUOT, unix.EIO, unix.EFBIG} {
		calls := 0
		write = func(fd int, p []byte) (int, error) {
			calls++
			if calls == 2 {
				return 0, errno
			}
			return unix.Write(fd, p)
		}
		_, err := (&Delivery{Dir: dir, Create: true}).Deliver([]byte("X: y\n"), strings.NewReader("body\r\n"))
		write = unix.Write
		var e *Error
		if !errors.As(err, &e) || e.Op != "write" || !strings.HasPrefix(e.Path, dir+"/tmp/") || !errors.Is(err, errno) {
			t.Fatalf("%v: got %v", errno, err)
		}
		if want := errno != unix.EFBIG; IsTemporary(err) != want {
			t.Fatalf("%v: IsTemporary = %v", errno, !want)
		}
		assertEmpty(t, filepath.Join(dir, "tmp"))
		assertEmpty(t, filepath.Join(dir, "new"))
	}
}

// TestENOSPCTmpfs fills a real 64 KiB tmpfs (root only).
func TestENOSPCTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "Maildir")
	d := &Delivery{Dir: dir, Create: true}
	if _, err := d.Deliver(nil, strings.NewReader("small\r\n")); err != nil {
		t.Fatal(err)
	}
	_, err := d.Deliver(nil, bytes.NewReader(bytes.Repeat([]byte("0123456789abcde\r\n"), 20000)))
	if !errors.Is(err, unix.ENOSPC) || !IsTemporary(err) {
		t.Fatalf("full tmpfs: %v", err)
	}
	t.Log(err)
	assertEmpty(t, filepath.Join(dir, "tmp"))
	if n, _, _ := List(dir); len(n) != 1 {
		t.Fatalf("new/ holds %v", n)
	}
}

func TestReaderError(t *testing.T) { eachWay(t, testReaderError) }

func testReaderError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	boom := errors.New("queue file unreadable")
	_, err := (&Delivery{Dir: dir, Create: true}).Deliver(nil, iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("abc"))))
	if err == nil || !IsTemporary(err) {
		t.Fatalf("reader timeout: %v", err)
	}
	_, err = (&Delivery{Dir: dir}).Deliver(nil, iotest.ErrReader(boom))
	if !errors.Is(err, boom) || !IsTemporary(err) {
		t.Fatalf("reader error: %v", err)
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))
	assertEmpty(t, filepath.Join(dir, "new"))
}

func TestRenameCollision(t *testing.T) {
	origUnnamed := unnamed
	unnamed = func() bool { return false }
	defer func() { unnamed = origUnnamed }()
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := &Delivery{Dir: dir, Hostname: "h", Create: true}
	first, err := d.Deliver(nil, strings.NewReader("one"))
	if err != nil {
		t.Fatal(err)
	}
	// The real rename refuses to replace.
	tmpfd, _ := unix.Open(dir+"/tmp", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	newfd, _ := unix.Open(dir+"/new", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	defer unix.Close(tmpfd)
	defer unix.Close(newfd)
	os.WriteFile(dir+"/tmp/x", []byte("two"), 0o600)
	if err := renameNoReplace(tmpfd, "x", newfd, first); err != unix.EEXIST {
		t.Fatalf("rename over %s: %v", first, err)
	}
	os.Remove(dir + "/tmp/x")

	// A collision in new/ picks another name and keeps the old file.
	orig := renameNoReplace
	defer func() { renameNoReplace = orig }()
	calls := 0
	renameNoReplace = func(a int, b string, c int, e string) error {
		calls++
		if calls == 1 {
			return unix.EEXIST
		}
		return orig(a, b, c, e)
	}
	second, err := d.Deliver(nil, strings.NewReader("two"))
	if err != nil || calls != 2 || second == first {
		t.Fatalf("collision: %q %v calls=%d", second, err, calls)
	}
	if string(readNew(t, dir, first)) != "one" || string(readNew(t, dir, second)) != "two" {
		t.Fatal("contents mixed up")
	}
	assertEmpty(t, dir+"/tmp")
}

func TestLinkCollision(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := &Delivery{Dir: dir, Hostname: "h", Create: true}
	first, err := d.Deliver(nil, strings.NewReader("one"))
	if err != nil {
		t.Fatal(err)
	}
	// A name taken in new/ is never replaced: the next one is tried, and
	// the unnamed file ends up under exactly one name.
	orig := linkNew
	defer func() { linkNew = orig }()
	var tried []string
	linkNew = func(src string, newfd int, name string) error {
		tried = append(tried, name)
		if len(tried) == 1 {
			return orig(src, newfd, first)
		}
		return orig(src, newfd, name)
	}
	second, err := d.Deliver(nil, strings.NewReader("two"))
	if err != nil || len(tried) != 2 || second != tried[1] || second == first {
		t.Fatalf("collision: %q %v tried %q", second, err, tried)
	}
	if string(readNew(t, dir, first)) != "one" || string(readNew(t, dir, second)) != "two" {
		t.Fatal("contents mixed up")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "new", second), &st); err != nil || st.Nlink != 1 {
		t.Fatalf("%s: %v, %d links", second, err, st.Nlink)
	}
	assertEmpty(t, dir+"/tmp")

	// Another error stops the delivery; the file is gone with its fd.
	linkNew = func(string, int, string) error { return unix.EMLINK }
	_, err = d.Deliver(nil, strings.NewReader("three"))
	var e *Error
	if !errors.As(err, &e) || e.Op != "link" || !errors.Is(err, unix.EMLINK) {
		t.Fatalf("link error: %v", err)
	}
	assertEmpty(t, dir+"/tmp")
	if n, _, _ := List(dir); len(n) != 2 {
		t.Fatalf("new/ holds %v", n)
	}
}

// spyReader lists tmp/ once the writer has begun to read the message.
type spyReader struct {
	r     io.Reader
	tmp   string
	names []string
	err   error
	seen  bool
}

func (s *spyReader) Read(p []byte) (int, error) {
	if !s.seen {
		s.seen = true
		s.names, s.err = filepath.Glob(s.tmp + "/*")
	}
	return s.r.Read(p)
}

// TestUnnamedInvisible: while a message is written, tmp/ shows nothing
// with unnamed files, and the named file otherwise.
func TestUnnamedInvisible(t *testing.T) {
	for _, named := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "Maildir")
		if named {
			orig := unnamed
			unnamed = func() bool { return false }
			defer func() { unnamed = orig }()
		}
		spy := &spyReader{r: strings.NewReader("Subject: x\r\n\r\nbody\r\n"), tmp: dir + "/tmp"}
		name, err := (&Delivery{Dir: dir, Create: true}).Deliver([]byte("X: y\n"), spy)
		if err != nil || spy.err != nil {
			t.Fatal(err, spy.err)
		}
		want := 0
		if named {
			want = 1
		}
		if len(spy.names) != want {
			t.Fatalf("named=%v: tmp/ held %q during the write", named, spy.names)
		}
		if got := string(readNew(t, dir, name)); got != "X: y\nSubject: x\n\nbody\n" {
			t.Fatalf("content %q", got)
		}
		assertEmpty(t, dir+"/tmp")
	}
}

func TestList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := &Delivery{Dir: dir, Create: true}
	var names []string
	for i := range 3 {
		n, err := d.Deliver(nil, strings.NewReader(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	os.Rename(dir+"/new/"+names[1], dir+"/cur/"+names[1]+":2,S")
	os.WriteFile(dir+"/new/.hidden", nil, 0o600)
	os.Mkdir(dir+"/cur/sub", 0o700)
	newNames, curNames, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(newNames) != 2 || newNames[0] > newNames[1] || len(curNames) != 1 || curNames[0] != names[1]+":2,S" {
		t.Fatalf("List: new %v cur %v", newNames, curNames)
	}
	if _, _, err := List(dir + "/nope"); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("List missing: %v", err)
	}
	if _, _, err := List("rel"); err == nil {
		t.Fatal("List relative path")
	}
}

func TestSanitizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.test":  "mx.example.test",
		"a/b:c,d":          `a\057b\072c\054d`,
		"sp ace\x00\xff\\": `sp\040ace\000\377\134`,
	} {
		if got := sanitizeHost(in); got != want {
			t.Errorf("sanitizeHost(%q) = %q, want %q", in, got, want)
		}
	}
	long := sanitizeHost(strings.Repeat("/", 300))
	if len(long) > maxHostLen || len(long)%4 != 0 {
		t.Errorf("long host: %d bytes", len(long))
	}
	if sanitizeHost("") == "" {
		t.Error("empty host stays empty")
	}
}

func TestIsTemporary(t *testing.T) {
	for errno, want := range map[unix.Errno]bool{
		unix.ENOSPC: true, unix.EDQUOT: true, unix.EACCES: true, unix.EIO: true,
		unix.EROFS: true, unix.ENOENT: true, unix.EMFILE: true,
		unix.ELOOP: false, unix.ENOTDIR: false, unix.EFBIG: false, unix.ENAMETOOLONG: false,
	} {
		err := fmt.Errorf("local: %w", newError("write", "/x", errno))
		if IsTemporary(err) != want {
			t.Errorf("%v: IsTemporary = %v", errno, !want)
		}
	}
	if IsTemporary(nil) {
		t.Error("nil is temporary")
	}
	if !IsTemporary(errors.New("other")) {
		t.Error("a foreign error must count as temporary")
	}
}

func BenchmarkDeliver4K(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "Maildir")
	d := &Delivery{Dir: dir, Hostname: "bench", Create: true}
	msg := bytes.Repeat([]byte("0123456789012345678901234567890123456789012345678901234567890123456789\r\n"), 4096/72)
	prefix := []byte("Return-Path: <a@example.org>\nDelivered-To: b@example.test\n")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Deliver(prefix, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// chunkReader returns its data in pieces of the given sizes.
type chunkReader struct {
	data  []byte
	sizes []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = int(c.sizes[0]) + 1
		c.sizes = c.sizes[1:]
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzLFConvert checks the streaming CRLF -> LF conversion against the
// obvious whole-buffer one, for every way of cutting the input into reads.
func FuzzLFConvert(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\r\r\nd\r"), []byte{0, 1, 2})
	f.Add([]byte("\r\n\r\n.\r\n"), []byte{0})
	f.Add([]byte("\r"), []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		var c lfConverter
		var out []byte
		r := &chunkReader{data: data, sizes: sizes}
		buf := make([]byte, 64)
		for {
			n, err := r.Read(buf)
			before := len(out)
			out = c.convert(out, buf[:n])
			if len(out)-before > n+1 {
				t.Fatalf("chunk of %d grew to %d", n, len(out)-before)
			}
			if err != nil {
				break
			}
		}
		out = c.flush(out)
		if want := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")); !bytes.Equal(out, want) {
			t.Fatalf("convert(%q) = %q, want %q", data, out, want)
		}
	})
}

// FuzzSanitizeHost checks that any host name gives a safe name component.
func FuzzSanitizeHost(f *testing.F) {
	f.Add("mx.example.test")
	f.Add("a/b:c,d\\")
	f.Fuzz(func(t *testing.T, h string) {
		if h == "" {
			return // means os.Hostname()
		}
		s := sanitizeHost(h)
		if len(s) > maxHostLen || strings.ContainsAny(s, "/:,\x00") {
			t.Fatalf("sanitizeHost(%q) = %q", h, s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] >= 0x7f {
				t.Fatalf("sanitizeHost(%q) = %q: byte %#x", h, s, s[i])
			}
		}
	})
}

// TestDeliverUnsynced: the message is in new/ (not in tmp/) once
// DeliverUnsynced returns, Sync and Close can follow on another goroutine,
// and Undo takes the message back out of new/.
func TestDeliverUnsynced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	d := &Delivery{Dir: dir, Hostname: "h", Create: true}
	p, err := d.DeliverUnsynced([]byte("X: 1\n"), strings.NewReader("body\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readNew(t, dir, p.Name)); got != "X: 1\nbody\n" {
		t.Fatalf("content %q", got)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("tmp/ holds %d files", len(tmp))
	}
	done := make(chan error)
	go func() {
		defer p.Close()
		done <- p.Sync()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Close() // a second Close is harmless

	q, err := d.DeliverUnsynced(nil, strings.NewReader("two\n"))
	if err != nil {
		t.Fatal(err)
	}
	q.Undo()
	q.Close()
	if _, err := os.Stat(filepath.Join(dir, "new", q.Name)); !os.IsNotExist(err) {
		t.Fatalf("after Undo: %v", err)
	}
	if news, _ := os.ReadDir(filepath.Join(dir, "new")); len(news) != 1 {
		t.Fatalf("new/ holds %d files, want 1", len(news))
	}
}
