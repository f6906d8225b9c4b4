package main

import (
	"sync"
	"testing"
	"time"
)

func newTestDestination(limit int) *destination {
	d := &destination{limit: limit, max: limit}
	d.cond = sync.NewCond(&d.mu)
	return d
}

func waitingIs(t *testing.T, d *destination, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		w := d.waiting
		d.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines waiting, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A backlog waiting for a destination is woken one message per free slot,
// in the order it arrived; waking all of it on every delivery made qmgr's
// CPU grow with the backlog.
func TestDestinationWakesOnePerSlot(t *testing.T) {
	const n = 200
	d := newTestDestination(1)
	d.acquire()
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.acquire()
			order <- i
			d.release(true, "")
		}()
		waitingIs(t, d, i+1)
	}
	d.release(true, "")
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waiters never all got through")
	}
	close(order)
	next := 0
	for i := range order {
		if i != next {
			t.Fatalf("message %d went out as number %d", i, next)
		}
		next++
	}
	if d.wakeups > 2*n {
		t.Errorf("%d wake-ups for %d waiters: woken more than once per slot", d.wakeups, n)
	}
	if d.active != 0 || d.waiting != 0 {
		t.Errorf("active %d, waiting %d after all released", d.active, d.waiting)
	}
}

// A window that grows lets as many waiters through as it has room for.
func TestDestinationGrowsWindow(t *testing.T) {
	d := newTestDestination(1)
	d.max = 3
	d.acquire()
	got := make(chan struct{}, 3)
	for range 3 {
		go func() { d.acquire(); got <- struct{}{} }()
	}
	waitingIs(t, d, 3)
	d.release(true, "") // active 0, limit 2: two go through
	for range 2 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter with room was not woken")
		}
	}
	select {
	case <-got:
		t.Fatal("three through a window of two")
	case <-time.After(50 * time.Millisecond):
	}
	d.release(true, "") // limit 3, active 1: the third goes through
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the third waiter was not woken")
	}
}
