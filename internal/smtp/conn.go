package smtp

import (
	"errors"
	"net"
	"sync"
	"time"
)

// errCanceled is what reads and writes return once the session's context
// is done.
var errCanceled = errors.New("session canceled")

// connIO is the session's view of the connection: every read carries the
// current line's deadline, every write a fresh write deadline, and pending
// replies are flushed before a read would block (RFC 2920: replies to a
// pipelined group go out together, when the server needs more input).
type connIO struct {
	conn    net.Conn
	timeout time.Duration
	end     time.Time    // the session's time budget runs out
	flush   func() error // sends buffered replies

	mu           sync.Mutex
	canceled     bool
	readDeadline time.Time
}

// armRead starts the clock for one line of input.
func (c *connIO) armRead() {
	d := time.Now().Add(c.timeout)
	if d.After(c.end) {
		d = c.end
	}
	c.mu.Lock()
	c.readDeadline = d
	c.mu.Unlock()
}

func (c *connIO) Read(p []byte) (int, error) {
	if c.flush != nil {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	// The lock orders this deadline against cancel's: either cancel
	// sees our deadline and overrides it, or we see canceled.
	c.mu.Lock()
	if c.canceled {
		c.mu.Unlock()
		return 0, errCanceled
	}
	err := c.conn.SetReadDeadline(c.readDeadline)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.conn.Read(p)
}

func (c *connIO) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.canceled {
		c.mu.Unlock()
		return 0, errCanceled
	}
	err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.conn.Write(p)
}

// cancel interrupts a blocked read or write and makes every later one
// fail, except farewell's.
func (c *connIO) cancel() {
	c.mu.Lock()
	c.canceled = true
	past := time.Unix(1, 0)
	_ = c.conn.SetDeadline(past) // a closed conn is already interrupted
	c.mu.Unlock()
}

// farewellTimeout bounds the last reply of a session that is being cut
// off, so that a client that does not read cannot hold it.
const farewellTimeout = 10 * time.Second

// farewell writes b directly, bypassing cancellation: the 421 that goes
// with a shutdown, a timeout or too many errors.
func (c *connIO) farewell(b []byte) error {
	t := c.timeout
	if t > farewellTimeout {
		t = farewellTimeout
	}
	c.mu.Lock()
	err := c.conn.SetWriteDeadline(time.Now().Add(t))
	c.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = c.conn.Write(b)
	return err
}
