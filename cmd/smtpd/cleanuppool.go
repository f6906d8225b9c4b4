package main

// A pool of idle connections to cleanup. cleanup takes any number of
// messages over one connection, one after the other; dialing it for each
// message cost a socket, a connect, an accept and a goroutine on both
// sides per message. Only a connection whose last message ended with
// "ok" is kept (cleanup closes its end after most refusals), for at most
// poolIdle, and a pooled connection that turns out dead before any byte
// of a message was accepted is replaced by a fresh one once: cleanup
// creates no queue file before it answers the request, so the retry
// cannot leave a message behind.

import (
	"sync"
	"time"

	"postern/internal/ipc"
)

// poolMax bounds the idle connections kept; poolIdle how long one is
// kept (cleanup drops idle connections after ipc_timeout).
const (
	poolMax  = 32
	poolIdle = 5 * time.Second
)

type idleConn struct {
	c     *ipc.Conn
	since time.Time
}

var cleanupPool struct {
	sync.Mutex
	idle []idleConn
}

// dialCleanup returns a connection to private/cleanup and whether it
// was pooled (and so may have been closed by cleanup meanwhile).
func dialCleanup() (*ipc.Conn, bool, error) {
	now := time.Now()
	cleanupPool.Lock()
	for len(cleanupPool.idle) > 0 {
		n := len(cleanupPool.idle) - 1
		ic := cleanupPool.idle[n]
		cleanupPool.idle = cleanupPool.idle[:n]
		if now.Sub(ic.since) < poolIdle {
			cleanupPool.Unlock()
			return ic.c, true, nil
		}
		ic.c.Close()
	}
	cleanupPool.Unlock()
	c, err := ipc.Dial("private/cleanup", 10*time.Second)
	return c, false, err
}

// putCleanup keeps c for the next message, or closes it when the pool is
// full.
func putCleanup(c *ipc.Conn) {
	cleanupPool.Lock()
	defer cleanupPool.Unlock()
	if len(cleanupPool.idle) >= poolMax {
		c.Close()
		return
	}
	cleanupPool.idle = append(cleanupPool.idle, idleConn{c, time.Now()})
}
