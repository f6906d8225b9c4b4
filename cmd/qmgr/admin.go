package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/queue"
)

// Administrative requests on public/qmgr (postern queue hold, release,
// requeue, delete): op=hold|release|requeue|delete, queue_id=ID. qmgr is
// the one that moves queue files, so the command asks it whenever it
// runs. A message qmgr is delivering now (in active/) is not touched
// behind the delivery's back: the operation is recorded and applied when
// the attempt finishes (answer pending=yes). Otherwise it is applied at
// once (done=yes, from=the directory it was in). Errors: status=error,
// reason=text, notfound=yes when the ID is in no queue.
//
// Only root and qmgr's own user (mail_owner) may ask: public/ is open to
// the postdrop group, so the peer's uid (SO_PEERCRED) is checked.

// pendingOp is an administrator's operation waiting for a delivery.
type pendingOp struct {
	op  string
	uid uint32
}

// adminOps are the requests handleAdmin accepts, with the verb of their
// log line.
var adminOps = map[string]string{"hold": "held", "release": "released", "requeue": "requeued", "delete": "deleted"}

// peerUID returns the uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// handleAdmin answers one administrative request from uid.
func (q *qmgr) handleAdmin(c *ipc.Conn, m *ipc.Msg, uc *net.UnixConn) {
	op := m.Get("op")
	id := queue.ID(m.Get("queue_id"))
	uid, err := peerUID(uc)
	if err != nil {
		log.Warnf("%s request: peer credentials: %v", op, err)
		c.Send(ipc.NewMsg("status", "error", "reason", "cannot tell who is asking"))
		return
	}
	if uid != 0 && int(uid) != os.Getuid() {
		log.Warnf("%s request from uid=%d refused: only root and the mail owner may change the queue", op, uid)
		c.Send(ipc.NewMsg("status", "error", "reason", "permission denied: only root and the mail owner may change the queue"))
		return
	}
	if !queue.ValidID(string(id)) {
		log.Warnf("%s request from uid=%d: bad queue id %.40q", op, uid, id)
		c.Send(ipc.NewMsg("status", "error", "reason", "bad queue ID"))
		return
	}
	resp, again := q.adminOp(op, id, uid)
	c.Send(resp)
	if again {
		q.enqueue(id)
	}
}

// adminOp applies op to id under q.mu, so that it cannot cross
// process()'s move into active/; again says the message is back in
// incoming/ and wants a delivery attempt.
func (q *qmgr) adminOp(op string, id queue.ID, uid uint32) (resp *ipc.Msg, again bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running[id] {
		if op == "release" {
			return ipc.NewMsg("status", "error", "reason", "message is being delivered, not on hold"), false
		}
		q.pending[id] = pendingOp{op, uid}
		log.Infof("%s: %s requested by uid=%d; applied when the delivery under way finishes", id, op, uid)
		return ipc.NewMsg("status", "ok", "pending", "yes", "from", queue.Active), false
	}
	a := queue.Admin{Spool: "."}
	now := time.Now()
	var from string
	var err error
	switch op {
	case "hold":
		from, err = a.Hold(id)
		if err == nil && from == queue.Hold {
			return ipc.NewMsg("status", "ok", "done", "yes", "from", from), false
		}
	case "release":
		from = queue.Hold
		err = a.Release(id, now)
		if err == nil {
			// Released means "try now": straight on to incoming/.
			if merr := queue.Move(".", id, queue.Deferred, queue.Incoming); merr == nil {
				again = true
			}
		}
	case "requeue":
		from, err = a.Requeue(id, now)
		again = err == nil
	case "delete":
		from, err = a.Delete(id)
	}
	if err != nil {
		resp = ipc.NewMsg("status", "error", "reason", err.Error())
		switch {
		case errors.Is(err, queue.ErrNotFound):
			resp.Add("notfound", "yes")
		case errors.Is(err, queue.ErrNotHeld), errors.Is(err, queue.ErrActive):
			// The administrator's mistake or a leftover in active/:
			// the answer says so; nothing is wrong with the queue.
		default:
			log.Warnf("%s: %s by uid=%d failed: %v", id, op, uid, err)
		}
		return resp, false
	}
	log.Infof("%s: %s by uid=%d (from %s/)", id, adminOps[op], uid, from)
	return ipc.NewMsg("status", "ok", "done", "yes", "from", from), again
}

// leaveActive ends a delivery attempt that left recipients to try: the
// file moves from active/ to deferred/, or, when an administrator asked
// meanwhile, to hold/, incoming/ (again is then true) or away. Called
// with the schedule already recorded and synced.
func (q *qmgr) leaveActive(id queue.ID, qf *queue.File) (again bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pending[id]
	delete(q.pending, id)
	delete(q.running, id)
	if !ok {
		if err := queue.Move(".", id, queue.Active, queue.Deferred); err != nil {
			log.Errorf("%s: move to deferred: %v", id, err)
		}
		return false
	}
	var err error
	switch p.op {
	case "hold":
		err = queue.MoveSync(".", id, queue.Active, queue.Hold)
	case "delete":
		if err = os.Remove(queue.Path(".", queue.Active, id)); err != nil {
			err = fmt.Errorf("remove: %w", err)
		}
	case "requeue":
		if err = qf.SetSchedule(qf.Envelope().Attempts, time.Now()); err == nil {
			err = qf.Sync()
		}
		if err == nil {
			err = queue.MoveSync(".", id, queue.Active, queue.Incoming)
			again = err == nil
		}
	}
	if err != nil {
		log.Errorf("%s: %s by uid=%d failed: %v; moving it to deferred/", id, p.op, p.uid, err)
		if err := queue.Move(".", id, queue.Active, queue.Deferred); err != nil {
			log.Errorf("%s: move to deferred: %v", id, err)
		}
		return false
	}
	log.Infof("%s: %s by uid=%d (after the delivery under way)", id, adminOps[p.op], p.uid)
	return again
}

// clearActive forgets id's delivery (and any operation that waited for
// it) once process() returns.
func (q *qmgr) clearActive(id queue.ID, why string) {
	q.mu.Lock()
	p, ok := q.pending[id]
	delete(q.pending, id)
	delete(q.running, id)
	q.mu.Unlock()
	if ok {
		log.Infof("%s: %s by uid=%d not applied: %s", id, p.op, p.uid, why)
	}
}
