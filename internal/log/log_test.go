package log

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"plain text, ünïcødé ok":    "plain text, ünïcødé ok",
		"a\nb":                      "a?b",
		"a\r\nb":                    "a??b",
		"tab\there":                 "tab?here",
		"nul\x00esc\x1b[31mdel\x7f": "nul?esc?[31mdel?",
		"\n\n":                      "??",
		"x\x1fy\x20z":               "x?y z",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(Clean(in), "\r\n") {
			t.Errorf("Clean(%q) keeps a line break", in)
		}
	}
}

// capture sends the package's output to a file for the length of the test
// and returns a function that reads what was written.
func capture(t *testing.T) func() string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	old := out
	out = f
	t.Cleanup(func() {
		out = old
		f.Close()
	})
	return func() string {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

func TestWrite(t *testing.T) {
	read := capture(t)
	Infof("connect from %s", "unknown[192.0.2.1]")
	Warnf("bad line %q", "x")
	Errorf("queue %s: %v", "ABC", "disk full")
	Infof("forged %s", "x\nwarning: fake line")
	want := "connect from unknown[192.0.2.1]\n" +
		"warning: bad line \"x\"\n" +
		"error: queue ABC: disk full\n" +
		"forged x?warning: fake line\n"
	if got := read(); got != want {
		t.Errorf("output:\n%q\nwant:\n%q", got, want)
	}
}

func TestWriteMaxLine(t *testing.T) {
	read := capture(t)
	Warnf("%s", strings.Repeat("x", 3*MaxLine))
	Infof("%s", strings.Repeat("y", MaxLine))
	Infof("%s", strings.Repeat("z", MaxLine-1))
	lines := strings.Split(read(), "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("got %d lines, want 3 and a final newline", len(lines)-1)
	}
	for i, l := range lines[:3] {
		if len(l) > MaxLine {
			t.Errorf("line %d is %d bytes, over MaxLine %d", i, len(l), MaxLine)
		}
	}
	if want := "warning: " + strings.Repeat("x", MaxLine-len("warning: ")); lines[0] != want {
		t.Errorf("long warning not cut at MaxLine: %d bytes, prefix %q", len(lines[0]), lines[0][:12])
	}
	if len(lines[1]) != MaxLine || len(lines[2]) != MaxLine-1 {
		t.Errorf("lines of MaxLine and MaxLine-1 bytes came out as %d and %d", len(lines[1]), len(lines[2]))
	}
}

// sinkLine is the shape of a Sink line: "MMM dd hh:mm:ss host prog[pid]: text".
var sinkLine = regexp.MustCompile(`^([A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d) (\S+) (\S+)\[(\d+)\]: (.*)$`)

// checkLines checks that text is the lines want (the "prog[pid]: text"
// part), each with a valid timestamp and the host name.
func checkLines(t *testing.T, text string, want []string) {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("output %q does not end in a newline", text)
	}
	got := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if text == "" {
		got = nil
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %q, want %d", len(got), got, len(want))
	}
	h, _ := os.Hostname()
	host := shortHost(h)
	for i, l := range got {
		m := sinkLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %q is not \"MMM dd hh:mm:ss host program[pid]: text\"", l)
			continue
		}
		ts, err := time.Parse(time.Stamp, m[1])
		if err != nil {
			t.Errorf("line %q: timestamp: %v", l, err)
		} else if now := time.Now(); ts.Month() != now.Month() && ts.Month() != now.Add(-time.Hour).Month() {
			t.Errorf("line %q: month is not this month", l)
		}
		if m[2] != host {
			t.Errorf("line %q: host %q, want %q", l, m[2], host)
		}
		if rest := m[3] + "[" + m[4] + "]: " + m[5]; rest != want[i] {
			t.Errorf("line %d: %q, want %q", i, rest, want[i])
		}
	}
}

func TestStreamSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewStreamSink(&buf)
	s.Write("postern/smtpd", 4242, "connect from unknown[192.0.2.1]")
	s.Write("postern/local", 7, "warning: forged\nfatal: line\r")
	s.Write("postern/master", 1, "")
	checkLines(t, buf.String(), []string{
		"postern/smtpd[4242]: connect from unknown[192.0.2.1]",
		"postern/local[7]: warning: forged?fatal: line?",
		"postern/master[1]: ",
	})
	if err := s.Reopen(); err != nil {
		t.Errorf("Reopen of a stream sink: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close of a stream sink: %v", err)
	}
}

func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maillog")
	// An existing file is appended to, not truncated.
	if err := os.WriteFile(path, []byte("old line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write("postern/qmgr", 10, "A1B2C3: from=<a@example.org>, size=10, nrcpt=1 (queue active)")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "old line\n") {
		t.Fatalf("file sink truncated the file: %q", got)
	}
	checkLines(t, strings.TrimPrefix(string(got), "old line\n"), []string{
		"postern/qmgr[10]: A1B2C3: from=<a@example.org>, size=10, nrcpt=1 (queue active)",
	})

	// Log rotation: the file is renamed away, Reopen creates a new one
	// and later lines go there.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	s.Write("postern/qmgr", 10, "before reopen")
	if err := s.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	s.Write("postern/qmgr", 10, "after reopen")
	old, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(old), "postern/qmgr[10]: before reopen\n") || strings.Contains(string(old), "after reopen") {
		t.Errorf("rotated file: %q", old)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Reopen did not create the file: %v", err)
	}
	checkLines(t, string(cur), []string{"postern/qmgr[10]: after reopen"})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&^0o640 != 0 {
		t.Errorf("new log file mode %v, want at most 0640", st.Mode().Perm())
	}
}

func TestFileSinkErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewFileSink(filepath.Join(dir, "no", "such", "dir", "maillog")); err == nil || !strings.Contains(err.Error(), "maillog_file") {
		t.Errorf("NewFileSink in a missing directory: %v", err)
	}
	// Reopen fails when the file can no longer be created; the sink keeps
	// writing to the old one.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "maillog")
	s, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Rename(sub, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err == nil {
		t.Error("Reopen into a missing directory succeeded")
	}
	s.Write("postern/master", 1, "still here")
	b, err := os.ReadFile(filepath.Join(dir, "moved", "maillog"))
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, string(b), []string{"postern/master[1]: still here"})
}

func TestShortHost(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com": "mail",
		"mail":             "mail",
		"":                 "localhost",
		".weird":           ".weird",
	} {
		if got := shortHost(in); got != want {
			t.Errorf("shortHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// slowWriter records each Write and takes a while over it, as a busy
// disk would.
type slowWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

// Lines written at once by many daemons all arrive, whole, each daemon's
// in its order, in fewer writes than lines.
func TestSinkGroupsConcurrentLines(t *testing.T) {
	w := &slowWriter{}
	s := NewStreamSink(w)
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				s.Write("postern/smtpd", 100+g, fmt.Sprintf("line %d", i))
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	s.idle()
	s.mu.Unlock()
	next := make(map[int]int)
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(w.buf.String(), "\n"), "\n") {
		var pid, i int
		k := strings.Index(l, "postern/smtpd[")
		if k < 0 {
			t.Fatalf("mangled line %q", l)
		}
		if _, err := fmt.Sscanf(l[k:], "postern/smtpd[%d]: line %d", &pid, &i); err != nil {
			t.Fatalf("mangled line %q: %v", l, err)
		}
		if i != next[pid] {
			t.Fatalf("pid %d: line %d after %d", pid, i, next[pid]-1)
		}
		next[pid]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("%d lines arrived, want %d", n, writers*lines)
	}
	if w.writes >= n {
		t.Errorf("%d writes for %d lines: nothing was grouped", w.writes, n)
	}
	t.Logf("%d lines in %d writes", n, w.writes)
}
