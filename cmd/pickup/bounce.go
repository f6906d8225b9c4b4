package main

// Bounces of local submissions that can never be queued. postern-drop
// exited 0 long ago, so the user learns of the refusal only by mail: an
// RFC 3464 report from the null sender, queued through cleanup exactly as
// qmgr queues its bounces (cmd/qmgr/notify.go).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"postern/internal/dsn"
	"postern/internal/ipc"
	"postern/internal/maildrop"
)

// maxReportRecipients caps the recipients a bounce lists one by one: a
// message refused for having too many would otherwise make a bounce as
// large as cleanup's limit.
const maxReportRecipients = 100

// bounceTo says who gets the bounce of a rejected submission: its
// envelope sender; the user (login@myorigin) when the sender the user
// gave is not an address; the postmaster, as a double bounce, when the
// sender is null or the uid has no login name.
func (p *pickup) bounceTo(env *maildrop.Envelope, rj *rejection) (to, protocol string) {
	switch {
	case !rj.bad && rj.from != "":
		return rj.from, "bounce"
	case rj.bad && env.Login != "":
		if a, err := p.qualify(env.Login); err == nil {
			return a, "bounce"
		}
	}
	return "postmaster@" + p.myhostname, "double-bounce"
}

// bounce queues the report about a rejected submission. status is ok
// (with the bounce's queue ID and recipient), perm (it can never be
// queued), temp or unreachable.
func (p *pickup) bounce(name string, env *maildrop.Envelope, f *os.File, msgStart int64, rj *rejection) (qid, to, status string, err error) {
	to, protocol := p.bounceTo(env, rj)
	r := &dsn.Report{
		Kind:         dsn.Failure,
		ReportingMTA: p.myhostname,
		QueueID:      name,
		EnvID:        env.EnvID,
		Sender:       to,
		ArrivalDate:  env.Arrival,
		Postmaster:   "MAILER-DAEMON@" + p.myhostname,
		Ret:          env.Ret,
		MaxOriginal:  p.maxSize / 2,
	}
	if protocol == "double-bounce" {
		r.Sender, r.To = rj.from, to
		if rj.bad {
			r.Sender = ""
		}
	}
	if rj.tooBig {
		// The message did not fit: neither would a bounce holding it.
		r.Ret = "HDRS"
	}
	// The original as the report will carry it: its size with CRLF line
	// ends (so that MaxOriginal compares what is copied) and whether it
	// holds 8-bit bytes (so that the report is declared 8bit).
	if _, err := f.Seek(msgStart, io.SeekStart); err != nil {
		return "", to, "temp", fmt.Errorf("maildrop/%s: %w", name, err)
	}
	var cw countWriter
	if _, err := maildrop.Canonicalize(&cw, f, false); err != nil {
		return "", to, "temp", fmt.Errorf("maildrop/%s: %w", name, err)
	}
	r.OriginalSize, r.Original8Bit = cw.n, cw.eightBit
	if _, err := f.Seek(msgStart, io.SeekStart); err != nil {
		return "", to, "temp", fmt.Errorf("maildrop/%s: %w", name, err)
	}
	now := time.Now()
	rcpts := rj.rcpts
	if len(rcpts) == 0 {
		// Nobody to name (sendmail -t found no address): Postfix's
		// placeholder, so that the report still says why.
		rcpts = []string{"unknown"}
	}
	if len(rcpts) > maxReportRecipients {
		rcpts = rcpts[:maxReportRecipients]
	}
	for _, a := range rcpts {
		r.Recipients = append(r.Recipients, dsn.Recipient{
			Addr:        a,
			Status:      rj.status,
			Diagnostic:  "X-Postern; " + rj.reason,
			Reason:      rj.reason,
			LastAttempt: now,
		})
	}
	m := ipc.NewMsg("op", "submit", "sender", "", "rcpt", to, "protocol", protocol, "helo", "", "client_addr", "")
	if r.International() {
		m.Add("smtputf8", "yes")
	}
	if r.EightBit() {
		m.Add("body", "8BITMIME")
	}
	rep := p.send(m, func(w io.Writer) error { return dsn.Write(w, r, f) })
	if rep.status != "ok" {
		if rep.status == "" {
			rep.status = "temp"
		}
		return "", to, rep.status, fmt.Errorf("cleanup: %s", orDefault(rep.reason, "refused"))
	}
	return rep.id, to, "ok", nil
}

// isReportRefusal reports whether dsn.Write refused the report itself, a
// refusal that no retry changes.
func isReportRefusal(err error) bool {
	for _, e := range []error{dsn.ErrNoRecipient, dsn.ErrNoReporting, dsn.ErrEmpty, dsn.ErrNoAddress} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// countWriter counts what is written to it and notes 8-bit bytes.
type countWriter struct {
	n        int64
	eightBit bool
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if !c.eightBit {
		for _, b := range p {
			if b >= 0x80 {
				c.eightBit = true
				break
			}
		}
	}
	return len(p), nil
}
