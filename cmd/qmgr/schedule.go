package main

import (
	"strings"
	"sync"
	"time"

	"postern/internal/log"
	"postern/internal/queue"
)

// destKey is a destination: a transport and its next hop (a domain, a
// [host]:port, an LMTP socket), the unit of concurrency and throttling.
type destKey struct{ transport, nexthop string }

// destination is the concurrency window of one destination, as Postfix's
// qmgr keeps it: it starts at initial_destination_concurrency, grows by
// one for each delivery that gets through, up to
// default_destination_concurrency_limit, and halves after a round that
// only deferred. A destination that keeps failing (deadAfter rounds in a
// row) is suspended for minimal_backoff_time: its mail is deferred at once
// instead of hammering a dead host.
type destination struct {
	mu        sync.Mutex
	cond      *sync.Cond
	active    int
	waiting   int // goroutines in acquire's Wait
	wakeups   int // returns from that Wait (for the tests)
	limit     int
	max       int
	failures  int
	until     time.Time
	lastWhy   string
	suspendOn time.Duration
}

const deadAfter = 5

func (q *qmgr) destination(k destKey) *destination {
	q.destMu.Lock()
	defer q.destMu.Unlock()
	d := q.dests[k]
	if d == nil {
		d = &destination{limit: q.initConc, max: q.maxConc, suspendOn: q.minBackoff}
		if k.transport == "local" {
			// One window for all mailboxes (local_destination_concurrency_limit
			// is enforced by the transport's own semaphore).
			d.limit, d.max = q.maxConc, q.maxConc
		}
		d.cond = sync.NewCond(&d.mu)
		q.dests[k] = d
	}
	return d
}

func (d *destination) suspended() (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().Before(d.until) {
		return d.lastWhy, true
	}
	return "", false
}

func (d *destination) acquire() {
	d.mu.Lock()
	for d.active >= d.limit {
		d.waiting++
		d.cond.Wait()
		d.waiting--
		d.wakeups++
	}
	d.active++
	d.mu.Unlock()
}

func (d *destination) release(ok bool, why string) {
	d.mu.Lock()
	d.active--
	if ok {
		d.failures = 0
		if d.limit < d.max {
			d.limit++
		}
	} else {
		d.failures++
		d.lastWhy = why
		if d.limit > 1 {
			d.limit /= 2
		}
		if d.failures >= deadAfter {
			d.until = time.Now().Add(d.suspendOn)
			d.failures = 0
		}
	}
	// One waiter woken per free slot, not all of them: under a backlog
	// thousands of messages wait here, and waking every one of them on
	// every delivery cost qmgr more CPU than the deliveries did. The
	// Cond wakes the longest waiter first, so mail also leaves in the
	// order it came.
	for n := min(d.limit-d.active, d.waiting); n > 0; n-- {
		d.cond.Signal()
	}
	d.mu.Unlock()
}

// chunks splits a destination's recipients into requests of at most
// smtp_destination_recipient_limit for the SMTP and LMTP transports.
func (q *qmgr) chunks(k destKey, idx []int) [][]int {
	if k.transport != "smtp" && k.transport != "lmtp" || len(idx) <= q.rcptLimit {
		return [][]int{idx}
	}
	var out [][]int
	for len(idx) > 0 {
		n := min(q.rcptLimit, len(idx))
		out = append(out, idx[:n])
		idx = idx[n:]
	}
	return out
}

// settle applies one attempt's results to the queue file: delivered
// recipients are marked done, failed ones are reported to the sender (a
// recipient is marked failed only once its report is safely queued),
// deferred ones past their lifetime fail too, and deferred ones past
// delay_warning_time get one "still trying" notice. It returns how many
// recipients are left to try again.
func (q *qmgr) settle(id queue.ID, qf *queue.File, groups map[destKey][]int, results []result) int {
	env := qf.Envelope()
	age := time.Since(env.Arrival)
	lifetime := q.maxLifetime
	if env.Sender == "" {
		lifetime = q.bounceLifetime
	}
	var failed, delayed, succeeded, sent []int
	left := 0
	for _, i := range pendingIndexes(groups) {
		switch results[i].status {
		case "sent":
			sent = append(sent, i)
			if wants(env.Recipients[i].Notify, "SUCCESS") {
				succeeded = append(succeeded, i)
			}
		case "bounce":
			failed = append(failed, i)
		default:
			if age > lifetime {
				results[i].reason = "message expired after " + age.Round(time.Second).String() + " in the queue: " + results[i].reason
				if !strings.HasPrefix(results[i].dsn, "4.") && !strings.HasPrefix(results[i].dsn, "5.") {
					results[i].dsn = "4.4.7"
				}
				log.Infof("%s: to=<%s>, relay=none, delay=%.2f, dsn=%s, status=expired, returned to sender", id, env.Recipients[i].Addr, age.Seconds(), results[i].dsn)
				failed = append(failed, i)
				continue
			}
			left++
			if q.delayWarning > 0 && age > q.delayWarning && env.Recipients[i].Status == queue.StatusPending {
				delayed = append(delayed, i)
			}
		}
	}
	if left > 0 || len(failed) > 0 {
		// The done marks matter only to a file that stays; one whose
		// every recipient is done is removed without them (a pwrite
		// saved per message). A failure report below may still keep the
		// file, so they are written whenever there is one.
		for _, i := range sent {
			qf.SetStatus(i, queue.StatusDelivered)
		}
	}
	if len(failed) > 0 {
		if err := q.notify(id, qf, kindFailure, failed, results); err != nil {
			// No report queued: keep the recipients; the next attempt
			// tries again (and reports again if still failing).
			log.Errorf("%s: cannot queue the non-delivery report: %v; will retry", id, err)
			left += len(failed)
		} else {
			for _, i := range failed {
				qf.SetStatus(i, queue.StatusFailed)
			}
		}
	}
	if len(delayed) > 0 {
		if err := q.notify(id, qf, kindDelay, delayed, results); err != nil {
			log.Warnf("%s: cannot queue the delay notice: %v", id, err)
		} else {
			for _, i := range delayed {
				qf.SetStatus(i, queue.StatusWarned)
			}
		}
	}
	if len(succeeded) > 0 {
		if err := q.notify(id, qf, kindSuccess, succeeded, results); err != nil {
			log.Warnf("%s: cannot queue the delivery report: %v", id, err)
		}
	}
	return left
}

// wants reports whether a recipient's NOTIFY list (RFC 3461) asks for
// kind; an empty list means the default, FAILURE and DELAY.
func wants(notify, kind string) bool {
	if notify == "" {
		return kind != "SUCCESS"
	}
	for _, n := range strings.Split(strings.ToUpper(notify), ",") {
		if strings.TrimSpace(n) == kind {
			return true
		}
	}
	return false
}
