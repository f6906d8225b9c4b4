// Command qmgr owns the queue (DESIGN.md §3, §4). It takes committed
// messages from incoming/ (on a trigger from cleanup, and by scanning),
// moves each into active/, hands its recipients to the delivery service
// of their transport (local now; smtp when remote delivery exists) with
// the queue file's descriptor, and applies the results: a delivered
// recipient is marked done in the file, a message with nothing left to do
// is removed, and one with recipients that failed temporarily goes to
// deferred/ with its next attempt time (exponential backoff between
// minimal_backoff_time and maximal_backoff_time), where the timer finds it
// again every queue_run_delay.
//
// Privilege: mail_owner, chrooted into the queue directory, no
// capabilities.
//
// Limits and failure modes:
//   - at start, crash recovery (queue.Recover): active/ goes back to
//     incoming/, tmp/ is emptied, unreadable files go to corrupt/;
//   - at most qmgrActiveLimit messages are in active/ at once, the rest
//     wait in incoming/ (memory stays bounded whatever the queue size);
//   - at most local_destination_concurrency_limit deliveries run at once
//     per transport;
//   - a transport whose service is not in services.conf, or that does not
//     answer, defers its recipients ("mail transport unavailable"): the
//     message waits, it is never dropped;
//   - a delivery agent's answer is checked: a recipient it does not
//     answer for is deferred;
//   - administrators' hold, release, requeue and delete requests on
//     public/qmgr (admin.go) are taken from root and mail_owner only
//     (SO_PEERCRED); one on a message being delivered waits until the
//     attempt ends, so no file is moved behind a delivery's back.
package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"postern/internal/address"
	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/passwd"
	"postern/internal/queue"
	"postern/internal/route"
	"postern/internal/service"
)

const qmgrActiveLimit = 10000

type qmgr struct {
	cfg        *config.Config
	route      *route.Resolver
	transports map[string]*transport
	minBackoff time.Duration
	maxBackoff time.Duration
	runDelay   time.Duration
	timeout    time.Duration

	work   chan queue.ID // messages to take into active/
	active chan struct{} // semaphore: messages in active/
	mu     sync.Mutex
	busy   map[queue.ID]bool
	// running: messages process() moved into active/ and is delivering;
	// pending: administrators' operations waiting for those deliveries
	// (admin.go). Both under mu, which also covers the move into
	// active/, so an operation sees a message either before it or as
	// running.
	running map[queue.ID]bool
	pending map[queue.ID]pendingOp

	d        *service.Daemon
	inflight sync.WaitGroup // process() calls under way

	destMu         sync.Mutex
	dests          map[destKey]*destination
	initConc       int
	maxConc        int
	rcptLimit      int
	maxLifetime    time.Duration
	bounceLifetime time.Duration
	delayWarning   time.Duration
	hostname       string
	maxSize        int64
}

// transport is a delivery service and its concurrency window.
type transport struct {
	name string
	sem  chan struct{}
	mu   sync.Mutex
	idle []*ipc.Conn
}

func main() {
	d := service.Init("qmgr")
	d.LimitProcs()
	cfg := d.Config
	users, err := passwd.Load("/etc/passwd", "/etc/group")
	if err != nil {
		d.Fatalf("%v", err)
	}
	rt, err := route.New(cfg, users)
	if err != nil {
		d.Fatalf("%v", err)
	}
	q := &qmgr{
		cfg: cfg, route: rt,
		transports: map[string]*transport{},
		minBackoff: cfg.Duration("minimal_backoff_time"),
		maxBackoff: cfg.Duration("maximal_backoff_time"),
		runDelay:   cfg.Duration("queue_run_delay"),
		timeout:    cfg.Duration("ipc_timeout"),
		work:       make(chan queue.ID, qmgrActiveLimit),
		active:     make(chan struct{}, qmgrActiveLimit),
		busy:       map[queue.ID]bool{},
		running:    map[queue.ID]bool{},
		pending:    map[queue.ID]pendingOp{},
		d:          d,

		dests:          map[destKey]*destination{},
		initConc:       int(cfg.Int("initial_destination_concurrency")),
		maxConc:        int(cfg.Int("default_destination_concurrency_limit")),
		rcptLimit:      int(cfg.Int("smtp_destination_recipient_limit")),
		maxLifetime:    cfg.Duration("maximal_queue_lifetime"),
		bounceLifetime: cfg.Duration("bounce_queue_lifetime"),
		delayWarning:   cfg.Duration("delay_warning_time"),
		hostname:       cfg.Get("myhostname"),
		maxSize:        cfg.Int("message_size_limit"),
	}
	conc := int(cfg.Int("local_destination_concurrency_limit"))
	if conc <= 0 {
		conc = 20
	}
	for _, s := range cfg.Services() {
		if s.Type == "unix" && s.Private {
			q.transports[s.Name] = &transport{name: s.Name, sem: make(chan struct{}, conc)}
		}
	}
	d.Drop()
	if err := queue.Recover(".", log.Infof); err != nil {
		d.Fatalf("recovery: %v", err)
	}
	go q.dispatch()
	go q.timer()
	q.scan("incoming")
	q.scanDue()
	d.Serve(0, q.handleTrigger)
	// Draining: no new work is dispatched; let the deliveries under way
	// finish so that their results are recorded (a reload must not start
	// a second qmgr while this one still moves files).
	q.inflight.Wait()
}

// handleTrigger reads requests on public/qmgr: "new" (cleanup committed a
// file), "scan", "flush" (postern queue flush), and the administrator's
// "hold", "release", "requeue" and "delete" (admin.go).
func (q *qmgr) handleTrigger(ctx context.Context, nc net.Conn) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return
	}
	c := ipc.NewConn(uc, 64<<10)
	defer c.Close()
	for {
		m, files, err := q.d.Next(c, 0)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Warnf("trigger: %v", err)
			}
			return
		}
		switch m.Get("op") {
		case "new":
			id := queue.ID(m.Get("queue_id"))
			if !queue.ValidID(string(id)) {
				log.Warnf("trigger: bad queue id %q", id)
				return
			}
			q.enqueue(id)
		case "scan":
			go q.scan("incoming")
		case "flush":
			domain := strings.ToLower(strings.TrimSuffix(m.Get("domain"), "."))
			if strings.ContainsAny(domain, "/ \x00") || len(domain) > 255 {
				log.Warnf("flush: bad domain %q", domain)
				c.Send(ipc.NewMsg("status", "error", "reason", "bad domain"))
				continue
			}
			go q.flush(domain)
			c.Send(ipc.NewMsg("status", "ok"))
		case "hold", "release", "requeue", "delete":
			q.handleAdmin(c, m, uc)
		default:
			log.Warnf("trigger: unknown request %q", m.Get("op"))
			return
		}
	}
}

func (q *qmgr) enqueue(id queue.ID) {
	q.mu.Lock()
	if q.busy[id] {
		q.mu.Unlock()
		return
	}
	q.busy[id] = true
	q.mu.Unlock()
	select {
	case q.work <- id:
	default:
		// The active queue is full; the file stays in incoming/ and the
		// next scan finds it.
		q.done(id)
	}
}

func (q *qmgr) done(id queue.ID) {
	q.mu.Lock()
	delete(q.busy, id)
	q.mu.Unlock()
}

func (q *qmgr) scan(dir string) {
	ids, err := queue.List(".", dir)
	if err != nil {
		log.Errorf("scan %s: %v", dir, err)
		return
	}
	for _, id := range ids {
		q.enqueue(id)
	}
}

func (q *qmgr) scanDue() {
	ids, err := queue.Due(".", time.Now())
	if err != nil {
		log.Errorf("scan deferred: %v", err)
		return
	}
	for _, id := range ids {
		if err := queue.Move(".", id, "deferred", "incoming"); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				log.Errorf("%s: move to incoming: %v", id, err)
			}
			continue
		}
		q.enqueue(id)
	}
}

// flush retries deferred mail now: all of it, or only messages with a
// pending recipient in domain. A flush also lifts the suspension of the
// destinations it concerns.
func (q *qmgr) flush(domain string) {
	q.destMu.Lock()
	for k, d := range q.dests {
		if domain == "" || strings.EqualFold(k.nexthop, domain) {
			d.mu.Lock()
			d.until, d.failures = time.Time{}, 0
			d.mu.Unlock()
		}
	}
	q.destMu.Unlock()
	ids, err := queue.List(".", "deferred")
	if err != nil {
		log.Errorf("flush: %v", err)
		return
	}
	for _, id := range ids {
		if domain != "" && !q.hasDomain(id, domain) {
			continue
		}
		if err := queue.Move(".", id, "deferred", "incoming"); err == nil {
			q.enqueue(id)
		}
	}
	q.scan("incoming")
}

// hasDomain reports whether a deferred message has a recipient still to
// deliver in domain.
func (q *qmgr) hasDomain(id queue.ID, domain string) bool {
	f, err := os.Open(queue.Path(".", "deferred", id))
	if err != nil {
		return false
	}
	defer f.Close()
	qf, err := queue.Open(f)
	if err != nil {
		return false
	}
	for _, r := range qf.Envelope().Recipients {
		if r.Status != queue.StatusPending && r.Status != queue.StatusWarned {
			continue
		}
		if i := strings.LastIndexByte(r.Addr, '@'); i >= 0 && strings.EqualFold(strings.TrimSuffix(r.Addr[i+1:], "."), domain) {
			return true
		}
	}
	return false
}

func (q *qmgr) timer() {
	t := time.NewTicker(q.runDelay)
	defer t.Stop()
	for {
		select {
		case <-q.d.Draining():
			return
		case <-t.C:
			q.scanDue()
			q.scan("incoming")
			queue.SweepTmp(".", log.Infof)
		}
	}
}

func (q *qmgr) dispatch() {
	for {
		select {
		case <-q.d.Draining():
			return
		case id := <-q.work:
			select {
			case q.active <- struct{}{}:
			case <-q.d.Draining():
				return
			}
			select {
			case <-q.d.Draining():
				return
			default:
			}
			q.inflight.Add(1)
			go func() {
				defer q.inflight.Done()
				defer func() { <-q.active }()
				again := q.process(id)
				q.done(id)
				if again {
					// An administrator's requeue during the attempt.
					q.enqueue(id)
				}
			}()
		}
	}
}

// process runs one delivery attempt of one message. It returns true when
// the message is back in incoming/ for another attempt at once (an
// administrator's requeue during this one).
func (q *qmgr) process(id queue.ID) (again bool) {
	q.mu.Lock()
	err := queue.Move(".", id, "incoming", "active")
	if err == nil {
		q.running[id] = true
	}
	q.mu.Unlock()
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Errorf("%s: move to active: %v", id, err)
		}
		return false
	}
	// leaveActive normally clears this; every other way out leaves the
	// file where no administrator's operation can follow it.
	defer q.clearActive(id, "the delivery attempt ended early")
	path := queue.Path(".", "active", id)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		log.Errorf("%s: open: %v", id, err)
		return false
	}
	qf, err := queue.Open(f)
	if err != nil {
		f.Close()
		log.Warnf("%s: unreadable queue file, moved to corrupt/: %v", id, err)
		queue.Move(".", id, "active", "corrupt")
		return false
	}
	defer f.Close()
	env := qf.Envelope()
	pending := 0
	for _, r := range env.Recipients {
		if r.Status == '-' || r.Status == 'W' {
			pending++
		}
	}
	log.Infof("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", id, env.Sender, env.Size, pending)

	// Group the pending recipients by destination: transport and next hop.
	groups := map[destKey][]int{}
	var order []destKey
	for i, r := range env.Recipients {
		if r.Status != '-' && r.Status != 'W' {
			continue
		}
		k := destKey{"smtp", ""}
		if a, err := address.Parse(r.Addr, true); err == nil {
			k.transport, k.nexthop = q.route.Route(a)
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	results := make([]result, len(env.Recipients))
	var wg sync.WaitGroup
	for _, k := range order {
		for _, chunk := range q.chunks(k, groups[k]) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.deliver(id, qf, f, k, chunk, results)
			}()
		}
	}
	wg.Wait()

	left := q.settle(id, qf, groups, results)
	if left == 0 {
		// Everything is done: removing the file is the durable mark.
		// Recycled rather than unlinked (see queue.Recycle: inode
		// allocation on ext4 without a journal).
		if err := queue.Recycle(".", queue.Active, id, f); err != nil {
			log.Errorf("%s: remove: %v", id, err)
			return false
		}
		log.Infof("%s: removed", id)
		q.clearActive(id, "every recipient is done")
		return false
	}
	attempts := env.Attempts + 1
	next := time.Now().Add(q.backoff(attempts))
	if err := qf.SetSchedule(attempts, next); err != nil {
		log.Errorf("%s: update schedule: %v", id, err)
	}
	// Done marks and the schedule must be on disk before the file moves
	// on (DESIGN.md §3, invariant 3).
	if err := qf.Sync(); err != nil {
		log.Errorf("%s: sync: %v", id, err)
	}
	// SetSchedule also set the file's mtime to the next attempt: that is
	// what queue.Due looks at.
	return q.leaveActive(id, qf)
}

func pendingIndexes(groups map[destKey][]int) []int {
	var out []int
	for _, l := range groups {
		out = append(out, l...)
	}
	sort.Ints(out)
	return out
}

// backoff is the wait before attempt n+1: doubling from
// minimal_backoff_time, never more than maximal_backoff_time.
func (q *qmgr) backoff(attempts int) time.Duration {
	d := q.minBackoff
	for i := 1; i < attempts && d < q.maxBackoff; i++ {
		d *= 2
	}
	if d > q.maxBackoff {
		d = q.maxBackoff
	}
	return d
}

type result struct {
	status, dsn, reason string
}

// deliver hands the recipients idx of one message to transport tr and
// records the answers in results.
func (q *qmgr) deliver(id queue.ID, qf *queue.File, f *os.File, k destKey, idx []int, results []result) {
	env := qf.Envelope()
	tr := k.transport
	finish := func(status, dsn, reason string) {
		word := map[string]string{"sent": "sent", "bounce": "bounced", "defer": "deferred"}[status]
		for _, i := range idx {
			results[i] = result{status, dsn, reason}
			log.Infof("%s: to=<%s>, relay=none, delay=%.2f, dsn=%s, status=%s (%s)",
				id, env.Recipients[i].Addr, time.Since(env.Arrival).Seconds(), dsn, word, reason)
		}
	}
	switch tr {
	case "error":
		// transport_maps said so: a permanent failure with its text.
		finish("bounce", "5.0.0", orText(k.nexthop, "mail for this destination is refused"))
		return
	case "discard":
		finish("sent", "2.0.0", "discarded")
		return
	}
	t := q.transports[tr]
	if t == nil {
		finish("defer", "4.3.0", "mail transport unavailable")
		return
	}
	d := q.destination(k)
	if why, suspended := d.suspended(); suspended {
		finish("defer", "4.4.1", "delivery temporarily suspended: "+why)
		return
	}
	d.acquire()
	ok := false
	lastReason := ""
	defer func() { d.release(ok, lastReason) }()
	t.sem <- struct{}{}
	defer func() { <-t.sem }()

	req := ipc.NewMsg("op", "deliver", "queue_id", string(id), "sender", env.Sender, "nexthop", k.nexthop)
	req.AddInt("arrival", env.Arrival.UnixNano())
	req.Add("ret", env.Ret)
	req.Add("envid", env.EnvID)
	if env.SMTPUTF8 {
		req.Add("smtputf8", "yes")
	}
	req.Add("body", env.Body)
	for _, i := range idx {
		r := env.Recipients[i]
		req.AddInt("rcpt_index", int64(i))
		req.Add("rcpt", r.Addr)
		req.Add("orcpt", r.ORcpt)
		req.Add("notify", r.Notify)
	}
	c, reused, err := t.get()
	if err == nil {
		err = c.Send(req, f)
		if err != nil && reused {
			// A pooled connection the agent closed meanwhile: one retry.
			c.Close()
			c, err = t.dial()
			if err == nil {
				err = c.Send(req, f)
			}
		}
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		log.Warnf("%s: connect to %s: %v", id, tr, err)
		finish("defer", "4.3.0", "mail transport unavailable")
		return
	}
	resp, files, err := c.Recv(q.timeout)
	for _, x := range files {
		x.Close()
	}
	if err != nil {
		c.Close()
		log.Warnf("%s: no answer from %s: %v", id, tr, err)
		finish("defer", "4.3.0", "delivery agent "+tr+" did not answer")
		return
	}
	t.put(c)
	got := map[int]bool{}
	ix, st, dsn, why := resp.All("rcpt_index"), resp.All("status"), resp.All("dsn"), resp.All("reason")
	for k := range ix {
		i, err := strconv.Atoi(ix[k])
		if err != nil || k >= len(st) || !contains(idx, i) {
			continue
		}
		r := result{status: st[k]}
		if k < len(dsn) {
			r.dsn = dsn[k]
		}
		if k < len(why) {
			r.reason = why[k]
		}
		if r.status != "sent" && r.status != "bounce" {
			r.status = "defer"
		}
		results[i] = r
		got[i] = true
	}
	var missing []int
	for _, i := range idx {
		if !got[i] {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		log.Warnf("%s: %s did not answer for %d recipient(s); deferring them", id, tr, len(missing))
		for _, i := range missing {
			results[i] = result{"defer", "4.3.0", "delivery status unknown"}
		}
	}
	// The destination works if anything got through or was refused for
	// good; only a round of nothing but deferrals counts against it.
	for _, i := range idx {
		if results[i].status != "defer" {
			ok = true
		} else if lastReason == "" {
			lastReason = results[i].reason
		}
	}
}

func orText(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func contains(l []int, x int) bool {
	for _, y := range l {
		if y == x {
			return true
		}
	}
	return false
}

func (t *transport) dial() (*ipc.Conn, error) {
	return ipc.Dial(filepath.Join("private", t.name), 10*time.Second)
}

func (t *transport) get() (*ipc.Conn, bool, error) {
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	c, err := t.dial()
	return c, false, err
}

func (t *transport) put(c *ipc.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle) >= cap(t.sem) {
		c.Close()
		return
	}
	t.idle = append(t.idle, c)
}
