package log

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sink is the master's side: it writes lines that daemons produced,
// tagged with their program name and pid, to syslog (facility mail), to a
// file (maillog_file) or to a stream (start-fg).
//
// Lines for a file or stream are written by group: a Write that finds no
// write in progress writes its line and then whatever other daemons'
// lines arrived meanwhile, in one system call each time; a Write that
// finds one in progress only queues its line. Nothing waits for a timer,
// so a line reaches the file as soon as the write before it is done,
// and under load (seven lines per message from four daemons) master does
// a fraction of the writes and wake-ups. At most maxPending bytes are
// queued; beyond that a Write waits (a stalled log file slows the
// daemons' log pipes rather than growing master without bound).
type Sink struct {
	mu       sync.Mutex
	hostname string
	w        io.Writer // file or stream; nil when logging to syslog
	file     *os.File
	sys      net.Conn
	path     string

	pending []byte     // (mu) lines queued for w
	spare   []byte     // (mu) the buffer the writer last drained
	writing bool       // (mu) a Write is draining pending
	done    *sync.Cond // (mu) signalled when writing ends or pending drains
}

// maxPending bounds the bytes queued behind a write in progress.
const maxPending = 1 << 20

// NewStreamSink writes timestamped lines to w.
func NewStreamSink(w io.Writer) *Sink {
	h, _ := os.Hostname()
	return newSink(&Sink{w: w, hostname: shortHost(h)})
}

func newSink(s *Sink) *Sink {
	s.done = sync.NewCond(&s.mu)
	return s
}

// NewFileSink appends to the file at path (maillog_file), creating it 0640.
func NewFileSink(path string) (*Sink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("maillog_file %s: %w", path, err)
	}
	h, _ := os.Hostname()
	return newSink(&Sink{w: f, file: f, path: path, hostname: shortHost(h)}), nil
}

// NewSyslogSink sends to the local syslog daemon through /dev/log.
func NewSyslogSink() (*Sink, error) {
	c, err := net.Dial("unixgram", "/dev/log")
	if err != nil {
		return nil, fmt.Errorf("syslog /dev/log: %w", err)
	}
	return newSink(&Sink{sys: c}), nil
}

// Write logs one line for program[pid].
func (s *Sink) Write(program string, pid int, line string) {
	line = Clean(line)
	sev := 6 // info
	switch {
	case strings.HasPrefix(line, "warning: "):
		sev = 4
	case strings.HasPrefix(line, "error: "):
		sev = 3
	case strings.HasPrefix(line, "fatal: "), strings.HasPrefix(line, "panic: "):
		sev = 2
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sys != nil {
		// RFC 3164 framing, facility mail (2).
		msg := fmt.Sprintf("<%d>%s %s[%d]: %s", 2*8+sev, now.Format(time.Stamp), program, pid, line)
		_, err := s.sys.Write([]byte(msg))
		if err != nil {
			// syslogd restarted: its socket is new.
			if c, derr := net.Dial("unixgram", "/dev/log"); derr == nil {
				s.sys.Close()
				s.sys = c
				_, err = s.sys.Write([]byte(msg))
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s %s[%d]: %s\n", now.Format(time.Stamp), program, pid, line)
		}
		return
	}
	for s.writing && len(s.pending) >= maxPending {
		s.done.Wait()
	}
	b := now.AppendFormat(s.pending, time.Stamp)
	b = append(b, ' ')
	b = append(b, s.hostname...)
	b = append(b, ' ')
	b = append(b, program...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, "]: "...)
	b = append(b, line...)
	s.pending = append(b, '\n')
	if s.writing {
		return // the Write in progress takes it
	}
	s.writing = true
	for len(s.pending) > 0 {
		out, w := s.pending, s.w
		s.pending = s.spare[:0]
		s.mu.Unlock()
		w.Write(out)
		s.mu.Lock()
		if cap(out) <= 4*maxPending {
			s.spare = out
		} else {
			s.spare = nil
		}
		s.done.Broadcast()
	}
	s.writing = false
	s.done.Broadcast()
}

// idle waits (s.mu held) until no Write is writing.
func (s *Sink) idle() {
	for s.writing {
		s.done.Wait()
	}
}

// Reopen reopens a file sink (after log rotation); other sinks ignore it.
func (s *Sink) Reopen() error {
	if s.file == nil {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("maillog_file %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.idle() // lines queued before the reopen go to the old file
	old := s.file
	s.file, s.w = f, f
	s.mu.Unlock()
	return old.Close()
}

// Close releases the sink.
func (s *Sink) Close() error {
	if s.sys != nil {
		return s.sys.Close()
	}
	if s.file != nil {
		s.mu.Lock()
		s.idle()
		s.mu.Unlock()
		return s.file.Close()
	}
	return nil
}

func shortHost(h string) string {
	if i := strings.IndexByte(h, '.'); i > 0 {
		return h[:i]
	}
	if h == "" {
		return "localhost"
	}
	return h
}
