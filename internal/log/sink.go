package log

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Sink is the master's side: it writes lines that daemons produced,
// tagged with their program name and pid, to syslog (facility mail), to a
// file (maillog_file) or to a stream (start-fg).
type Sink struct {
	mu       sync.Mutex
	hostname string
	w        io.Writer // file or stream; nil when logging to syslog
	file     *os.File
	sys      net.Conn
	path     string
}

// NewStreamSink writes timestamped lines to w.
func NewStreamSink(w io.Writer) *Sink {
	h, _ := os.Hostname()
	return &Sink{w: w, hostname: shortHost(h)}
}

// NewFileSink appends to the file at path (maillog_file), creating it 0640.
func NewFileSink(path string) (*Sink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("maillog_file %s: %w", path, err)
	}
	h, _ := os.Hostname()
	return &Sink{w: f, file: f, path: path, hostname: shortHost(h)}, nil
}

// NewSyslogSink sends to the local syslog daemon through /dev/log.
func NewSyslogSink() (*Sink, error) {
	c, err := net.Dial("unixgram", "/dev/log")
	if err != nil {
		return nil, fmt.Errorf("syslog /dev/log: %w", err)
	}
	return &Sink{sys: c}, nil
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
	fmt.Fprintf(s.w, "%s %s %s[%d]: %s\n", now.Format(time.Stamp), s.hostname, program, pid, line)
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
