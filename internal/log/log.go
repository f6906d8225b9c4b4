// Package log is how a daemon says what happened: one line per event on
// its standard error, in the shape DESIGN.md §8 gives (the queue ID first
// where there is one). The master reads every daemon's standard error,
// prefixes program name and pid, and sends the line to syslog, a file or
// its own standard error (see Sink).
//
// Severity is the line's prefix, as Postfix writes it: "warning: ",
// "error: ", "fatal: ", "panic: "; anything else is informational. A line
// is capped at MaxLine bytes and never contains a newline, so a peer that
// puts control characters into something we log cannot forge a log line.
package log

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// MaxLine is the longest line written; longer ones are truncated.
const MaxLine = 4096

var mu sync.Mutex

// out is where lines go; tests replace it.
var out = os.Stderr

// Infof logs an informational line.
func Infof(format string, args ...any) { write("", format, args...) }

// Warnf logs a warning: something is wrong but the work goes on.
func Warnf(format string, args ...any) { write("warning: ", format, args...) }

// Errorf logs an error that made an operation fail.
func Errorf(format string, args ...any) { write("error: ", format, args...) }

// Fatalf logs why the process cannot go on and exits with status 1.
func Fatalf(format string, args ...any) {
	write("fatal: ", format, args...)
	os.Exit(1)
}

func write(prefix, format string, args ...any) {
	line := prefix + Clean(fmt.Sprintf(format, args...))
	if len(line) > MaxLine {
		line = line[:MaxLine]
	}
	mu.Lock()
	out.WriteString(line + "\n")
	mu.Unlock()
}

// Clean replaces control characters (and so newlines) with '?' so that
// text taken from a peer cannot break the one-line-per-event rule.
func Clean(s string) string {
	if strings.IndexFunc(s, isCtl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isCtl(r) {
			return '?'
		}
		return r
	}, s)
}

func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }
