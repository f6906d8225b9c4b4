package auth

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time            { return c.t }
func (c *clock) add(d time.Duration)       { c.t = c.t.Add(d) }
func newClock() *clock                     { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func fail(l *Limiter, keys ...string) bool { return attempt(l, true, keys...) }

func attempt(l *Limiter, failed bool, keys ...string) bool {
	ok, _ := l.Begin(keys...)
	if ok {
		l.End(failed, keys...)
	}
	return ok
}

func TestLimiterBlocksAfterLimit(t *testing.T) {
	c := newClock()
	l := NewLimiter(3, time.Minute, 100, c.now)
	for i := range 3 {
		if !fail(l, "ip:a", "user:u") {
			t.Fatalf("attempt %d refused", i+1)
		}
		c.add(time.Second)
	}
	if ok, by := l.Begin("ip:a", "user:v"); ok || by != "ip:a" {
		t.Fatalf("4th attempt from the client: %v %q", ok, by)
	}
	if ok, by := l.Begin("ip:b", "user:u"); ok || by != "user:u" {
		t.Fatalf("4th attempt for the user: %v %q", ok, by)
	}
	if !l.Blocked("ip:a") || !l.Blocked("user:u") || l.Blocked("ip:b") {
		t.Fatal("Blocked disagrees")
	}
	// Blocked for a window from the third failure, not from the first,
	// and refused attempts do not extend it.
	c.add(time.Minute - 2*time.Second) // 1 s before the block ends
	if fail(l, "ip:a") {
		t.Fatal("attempt before the block ended")
	}
	c.add(time.Second)
	if !fail(l, "ip:a") {
		t.Fatal("attempt after the block ended refused")
	}
	// The old failures are forgotten: two more fit.
	for i := range 2 {
		if !fail(l, "ip:a") {
			t.Fatalf("fresh window: attempt %d refused", i+2)
		}
	}
	if fail(l, "ip:a") {
		t.Fatal("limit not applied again")
	}
}

func TestLimiterWindowExpires(t *testing.T) {
	c := newClock()
	l := NewLimiter(3, time.Minute, 100, c.now)
	fail(l, "k")
	fail(l, "k")
	c.add(time.Minute)
	// The window that began at the first failure is over.
	fail(l, "k")
	fail(l, "k")
	if l.Blocked("k") {
		t.Fatal("failures of an old window counted")
	}
	fail(l, "k")
	if !l.Blocked("k") {
		t.Fatal("three failures in the window did not block")
	}
}

func TestLimiterSuccessAndReset(t *testing.T) {
	c := newClock()
	l := NewLimiter(2, time.Minute, 100, c.now)
	fail(l, "user:u")
	attempt(l, false, "user:u")
	l.Reset("user:u")
	fail(l, "user:u")
	if l.Blocked("user:u") {
		t.Fatal("Reset did not forget the earlier failure")
	}
	fail(l, "user:u")
	if !l.Blocked("user:u") {
		t.Fatal("not blocked")
	}
	l.Reset("user:u")
	if !l.Blocked("user:u") {
		t.Fatal("Reset lifted a block")
	}
	// Successes alone leave nothing behind.
	l2 := NewLimiter(2, time.Minute, 100, c.now)
	for range 10 {
		attempt(l2, false, "ip:x")
	}
	if l2.Len() != 0 {
		t.Fatalf("Len = %d after successes", l2.Len())
	}
}

func TestLimiterCountsAttemptsInFlight(t *testing.T) {
	c := newClock()
	l := NewLimiter(3, time.Minute, 100, c.now)
	for i := range 3 {
		if ok, _ := l.Begin("user:u"); !ok {
			t.Fatalf("parallel attempt %d refused", i+1)
		}
	}
	if ok, _ := l.Begin("user:u"); ok {
		t.Fatal("a 4th parallel attempt was let through")
	}
	l.End(false, "user:u")
	if ok, _ := l.Begin("user:u"); !ok {
		t.Fatal("a finished attempt still counts")
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	c := newClock()
	l := NewLimiter(2, time.Minute, 10, c.now)
	for i := range 100 {
		fail(l, fmt.Sprintf("ip:%d", i))
		if l.Len() > 10 {
			t.Fatalf("Len = %d > 10", l.Len())
		}
	}
	// Ten blocked keys fill the table: a new key is refused (closed),
	// and the blocked ones stay blocked.
	l = NewLimiter(1, time.Minute, 10, c.now)
	for i := range 10 {
		fail(l, fmt.Sprintf("ip:%d", i))
	}
	if ok, by := l.Begin("ip:new"); ok || by != "" {
		t.Fatalf("new key in a table full of blocks: %v %q", ok, by)
	}
	for i := range 10 {
		if !l.Blocked(fmt.Sprintf("ip:%d", i)) {
			t.Fatalf("ip:%d evicted", i)
		}
	}
	// Once the blocks expire, the table makes room again.
	c.add(time.Minute)
	if ok, _ := l.Begin("ip:new"); !ok {
		t.Fatal("expired entries not reclaimed")
	}
	l.End(false, "ip:new")
	if l.Len() > 10 {
		t.Fatalf("Len = %d", l.Len())
	}
}

func TestLimiterEndWithoutBegin(t *testing.T) {
	l := NewLimiter(1, time.Minute, 10, nil)
	l.End(true, "never")
	if l.Blocked("never") || l.Len() != 0 {
		t.Fatal("End without Begin recorded something")
	}
}
