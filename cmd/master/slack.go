package main

// Timer slack. Linux lets a thread's timers expire up to its timer slack
// late (50 µs by default), so that wake-ups can be merged. The Go runtime
// has a monitor thread (sysmon) that sleeps 20 µs at a time whenever the
// process has just made a blocking system call, which in a mail daemon is
// all the time: cleanup's fdatasync, local's fsync, a write to a socket.
// With the default slack each busy daemon's sysmon woke a few thousand
// times a second, 20 of the ~50 context switches a message cost across
// the daemons, each a timer interrupt and a trip through the scheduler
// (a VM exit or two on a virtual machine). Nothing in a mail system needs
// its timers more precise than a millisecond: SMTP timeouts are minutes,
// the queue's are seconds, and sysmon's other jobs (taking a processor
// from a thread stuck in a system call, preempting a goroutine that runs
// for 10 ms) do not suffer from a wake-up a millisecond late.
//
// The slack is inherited by every thread a thread creates and kept across
// execve(2), so the spawner thread sets it once and every daemon starts
// with it, sysmon included (the runtime starts sysmon before any code of
// the daemon could set it). master's own threads exist already when it
// starts; it sets theirs through /proc/TID/timerslack_ns, which
// for another thread of the process needs CAP_SYS_NICE: as root it does,
// as an ordinary user master keeps the default slack (a cost of master's
// own, the daemons are not affected).

import (
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// timerSlack is the timer slack of master and of every daemon.
const timerSlack = time.Millisecond

// setThreadSlack sets the calling thread's timer slack; the caller has
// locked its goroutine to the thread.
func setThreadSlack() error {
	return unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(timerSlack.Nanoseconds()), 0, 0, 0)
}

// setProcessSlack sets the timer slack of every thread of master that it
// may change, and reports how many it could not.
func setProcessSlack() (failed int) {
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return -1
	}
	v := []byte(strconv.FormatInt(timerSlack.Nanoseconds(), 10))
	for _, t := range tids {
		if os.WriteFile(filepath.Join("/proc", t.Name(), "timerslack_ns"), v, 0) != nil {
			failed++
		}
	}
	return failed
}
