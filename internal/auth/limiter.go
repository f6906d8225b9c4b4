package auth

import (
	"container/list"
	"sync"
	"time"
)

// Limiter counts failed logins per key (a client address, a user name)
// within a window. Once a key has limit failures inside the window it is
// blocked for a whole window from that failure: Begin refuses it, so no
// password is checked for it until the block ends.
//
// Attempts in flight count against the limit too, so a burst of parallel
// attempts cannot all be checked before the first failure is recorded.
//
// Memory is bounded: at most maxEntries keys are tracked. Entries with
// nothing to remember are dropped as they are met; when the table is
// full, the least recently used entry that is neither blocked nor in
// flight makes room; if none can be found (the table is full of blocked
// keys, a large attack), Begin refuses new keys until some expire:
// failing closed, since failing open would hand out free guesses.
type Limiter struct {
	limit      int
	window     time.Duration
	maxEntries int
	now        func() time.Time

	mu  sync.Mutex
	m   map[string]*list.Element // of *entry
	lru list.List                // front: most recently used
}

type entry struct {
	key          string
	start        time.Time // first failure of the current window
	fails        int
	pending      int       // attempts between Begin and End
	blockedUntil time.Time // zero: not blocked
}

// evictScan bounds the entries looked at to make room, so that Begin
// stays cheap however full the table is.
const evictScan = 64

// NewLimiter returns a limiter; now == nil means time.Now. limit < 1 is
// taken as 1, maxEntries < 1 as 1.
func NewLimiter(limit int, window time.Duration, maxEntries int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{limit: max(limit, 1), window: window, maxEntries: max(maxEntries, 1), now: now, m: map[string]*list.Element{}}
	l.lru.Init()
	return l
}

// refresh forgets what the window or the block has outlived.
func (l *Limiter) refresh(e *entry, now time.Time) {
	if !e.blockedUntil.IsZero() {
		if now.Before(e.blockedUntil) {
			return
		}
		e.blockedUntil, e.fails = time.Time{}, 0
	}
	if e.fails > 0 && now.Sub(e.start) >= l.window {
		e.fails = 0
	}
}

// idle reports whether the entry remembers nothing.
func (l *Limiter) idle(e *entry, now time.Time) bool {
	l.refresh(e, now)
	return e.pending == 0 && e.fails == 0 && e.blockedUntil.IsZero()
}

// Begin asks whether an attempt involving all keys may be checked. If
// so, each key has one more attempt in flight until End. If not, it
// returns the key that refused ("" when the table is full).
func (l *Limiter) Begin(keys ...string) (ok bool, refusedBy string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now, 2)
	for _, k := range keys {
		el, found := l.m[k]
		if !found {
			continue
		}
		e := el.Value.(*entry)
		l.refresh(e, now)
		if !e.blockedUntil.IsZero() || e.fails+e.pending >= l.limit {
			return false, k
		}
	}
	var missing int
	for _, k := range keys {
		if _, found := l.m[k]; !found {
			missing++
		}
	}
	if len(l.m)+missing > l.maxEntries && !l.makeRoom(now, len(l.m)+missing-l.maxEntries) {
		return false, ""
	}
	for _, k := range keys {
		el, found := l.m[k]
		if !found {
			el = l.lru.PushFront(&entry{key: k})
			l.m[k] = el
		}
		l.lru.MoveToFront(el)
		el.Value.(*entry).pending++
	}
	return true, ""
}

// End records the outcome of an attempt that Begin let through, with the
// same keys.
func (l *Limiter) End(failed bool, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		el, found := l.m[k]
		if !found {
			continue // not from Begin; nothing to undo
		}
		e := el.Value.(*entry)
		if e.pending > 0 {
			e.pending--
		}
		l.refresh(e, now)
		if failed && e.blockedUntil.IsZero() {
			if e.fails == 0 {
				e.start = now
			}
			e.fails++
			if e.fails >= l.limit {
				e.blockedUntil = now.Add(l.window)
			}
		}
		l.lru.MoveToFront(el)
		if l.idle(e, now) {
			l.remove(el)
		}
	}
}

// Reset forgets the failures of key (a user who just logged in), unless
// it is blocked.
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, found := l.m[key]; found {
		e := el.Value.(*entry)
		l.refresh(e, l.now())
		if e.blockedUntil.IsZero() {
			e.fails = 0
			if e.pending == 0 {
				l.remove(el)
			}
		}
	}
}

// Blocked reports whether key is refused now.
func (l *Limiter) Blocked(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, found := l.m[key]
	if !found {
		return false
	}
	e := el.Value.(*entry)
	l.refresh(e, l.now())
	return !e.blockedUntil.IsZero()
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func (l *Limiter) remove(el *list.Element) {
	delete(l.m, el.Value.(*entry).key)
	l.lru.Remove(el)
}

// sweep drops up to n idle entries from the least recently used end.
func (l *Limiter) sweep(now time.Time, n int) {
	for el := l.lru.Back(); el != nil && n > 0; n-- {
		prev := el.Prev()
		if !l.idle(el.Value.(*entry), now) {
			return
		}
		l.remove(el)
		el = prev
	}
}

// makeRoom frees need entries: idle ones first, then the least recently
// used that are neither blocked nor in flight, looking at no more than
// evictScan entries.
func (l *Limiter) makeRoom(now time.Time, need int) bool {
	seen := 0
	for el := l.lru.Back(); el != nil && need > 0 && seen < evictScan; seen++ {
		prev := el.Prev()
		e := el.Value.(*entry)
		l.refresh(e, now)
		if e.pending == 0 && e.blockedUntil.IsZero() {
			l.remove(el)
			need--
		}
		el = prev
	}
	return need <= 0
}
