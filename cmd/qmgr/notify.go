package main

import (
	"fmt"
	"strings"
	"time"

	"postern/internal/dsn"
	"postern/internal/ipc"
	"postern/internal/log"
	"postern/internal/queue"
)

type notifyKind int

const (
	kindFailure notifyKind = iota
	kindDelay
	kindSuccess
)

// notify queues a delivery status notification (RFC 3464) about the
// recipients idx of message id to its sender, through cleanup, from the
// null sender. It never bounces a bounce: a failed bounce goes to the
// postmaster once (a double bounce), and a failed double bounce is
// dropped with a log line. Recipients whose NOTIFY does not ask for this
// kind are skipped. It returns nil when there is nothing to send.
func (q *qmgr) notify(id queue.ID, qf *queue.File, kind notifyKind, idx []int, results []result) error {
	env := qf.Envelope()
	want := map[notifyKind]string{kindFailure: "FAILURE", kindDelay: "DELAY", kindSuccess: "SUCCESS"}[kind]
	r := &dsn.Report{
		ReportingMTA: q.hostname,
		QueueID:      string(id),
		EnvID:        env.EnvID,
		Sender:       env.Sender,
		ArrivalDate:  env.Arrival,
		Postmaster:   "MAILER-DAEMON@" + q.hostname,
		Ret:          env.Ret,
		OriginalSize: env.Size,
		MaxOriginal:  q.maxSize / 2,
		Original8Bit: env.Body == "8BITMIME",
		SMTPUTF8:     env.SMTPUTF8,
	}
	switch kind {
	case kindFailure:
		r.Kind = dsn.Failure
	case kindDelay:
		r.Kind = dsn.Delay
	case kindSuccess:
		r.Kind = dsn.Success
	}
	protocol := "bounce"
	if env.Sender == "" {
		if kind != kindFailure {
			return nil // nobody to tell
		}
		if env.Protocol == "double-bounce" {
			log.Warnf("%s: undeliverable postmaster notification discarded", id)
			return nil
		}
		// A bounce that cannot be delivered: the postmaster gets it.
		r.To = "postmaster@" + q.hostname
		protocol = "double-bounce"
	}
	now := time.Now()
	for _, i := range idx {
		rc := env.Recipients[i]
		if env.Sender != "" && !wants(rc.Notify, want) {
			continue
		}
		res := results[i]
		d := dsn.Recipient{
			Addr:        rc.Addr,
			ORcpt:       rc.ORcpt,
			Status:      res.dsn,
			Diagnostic:  res.reason,
			Reason:      res.reason,
			LastAttempt: now,
		}
		if _, said, ok := strings.Cut(res.reason, " said: "); ok {
			// The remote server's reply: "smtp; 550 5.1.1 ..." (RFC 3464).
			said, _, _ = strings.Cut(said, " (in reply to ")
			d.Diagnostic = "smtp; " + said
		}
		if strings.HasPrefix(res.reason, "host ") {
			// "host mx.example.org[192.0.2.1] said: 550 ..." from smtp.
			if f := strings.Fields(res.reason); len(f) > 1 {
				d.RemoteMTA = strings.SplitN(f[1], "[", 2)[0]
			}
		}
		if kind == kindDelay {
			d.WillRetryUntil = env.Arrival.Add(q.maxLifetime)
		}
		r.Recipients = append(r.Recipients, d)
	}
	if len(r.Recipients) == 0 {
		return nil
	}
	rcpt := env.Sender
	if r.To != "" {
		rcpt = r.To
	}
	c, err := ipc.Dial("private/cleanup", 10*time.Second)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer c.Close()
	m := ipc.NewMsg("op", "submit", "sender", "", "rcpt", rcpt, "protocol", protocol, "helo", "", "client_addr", "")
	if r.International() {
		m.Add("smtputf8", "yes")
	}
	if r.EightBit() {
		m.Add("body", "8BITMIME")
	}
	if err := c.Send(m); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	resp, _, err := c.Recv(q.timeout)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if resp.Get("status") != "ok" {
		return fmt.Errorf("cleanup refused: %s", resp.Get("reason"))
	}
	w := c.StreamWriter()
	if err := dsn.Write(w, r, qf.Message()); err != nil {
		c.AbortStream()
		return fmt.Errorf("write report: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	resp, _, err = c.Recv(q.timeout)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if resp.Get("status") != "ok" {
		return fmt.Errorf("cleanup refused the report: %s", resp.Get("reason"))
	}
	what := map[notifyKind]string{kindFailure: "non-delivery", kindDelay: "delay", kindSuccess: "delivery"}[kind]
	if r.To != "" {
		what = "postmaster non-delivery"
	}
	log.Infof("%s: sender %s notification: %s", id, what, resp.Get("queue_id"))
	return nil
}
