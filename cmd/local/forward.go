package main

// Forwarding to other hosts: local cannot send mail itself, so the
// addresses an alias or .forward sends to another host are submitted as a
// new message through private/cleanup (as smtpd and qmgr's bounces do),
// with the envelope sender of the expansion, the original message and a
// Delivered-To line that names the address that forwarded it (the next
// arrival here of that address is then a loop).

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"postern/internal/address"
	"postern/internal/ipc"
	"postern/internal/log"
)

// forward is one remote address reached by an expansion.
type forward struct {
	sender string
	via    address.Address // the local address whose expansion named it
	to     address.Address
	orig   address.Address
}

// forwardAll submits the collected remote addresses of the current
// recipient, one message per envelope sender and forwarding address, and
// logs each. Its status is the worst of the submissions.
func (dl *delivery) forwardAll() status {
	type group struct {
		sender string
		via    address.Address
	}
	var order []group
	byGroup := map[group][]forward{}
	for _, f := range dl.fwd {
		g := group{f.sender, f.via}
		key := strings.ToLower(f.to.String())
		dup := false
		for _, o := range byGroup[g] {
			if strings.ToLower(o.to.String()) == key {
				dup = true
			}
		}
		if dup {
			continue
		}
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], f)
	}
	dl.fwd = nil
	res := sent("forwarded")
	for _, g := range order {
		fs := byGroup[g]
		var rcpts []string
		for _, f := range fs {
			rcpts = append(rcpts, f.to.String())
		}
		id, err := dl.submit(g.sender, g.via, rcpts)
		var st status
		if err != nil {
			st = deferred("4.3.0", "cannot forward to "+strings.Join(rcpts, ", ")+": "+err.Error())
		} else {
			st = sent("forwarded as " + id)
		}
		for _, f := range fs {
			dl.log(f.orig, f.to, st)
		}
		res = worse(res, st)
	}
	return res
}

// submit hands a copy of the message to cleanup and returns its new
// queue ID.
func (dl *delivery) submit(sender string, via address.Address, rcpts []string) (string, error) {
	c, err := dl.l.dialPrivate(filepath.Join(dl.l.queueDir, "private", "cleanup"))
	if err != nil {
		return "", fmt.Errorf("cleanup: %w", err)
	}
	defer c.Close()
	env := dl.qf.Envelope()
	m := ipc.NewMsg("op", "submit", "sender", sender, "protocol", "local", "helo", "", "client_addr", "")
	for _, r := range rcpts {
		m.Add("rcpt", r)
	}
	if env.SMTPUTF8 {
		m.Add("smtputf8", "yes")
	}
	if env.Body != "" {
		m.Add("body", env.Body)
	}
	if env.Ret != "" {
		m.Add("ret", env.Ret)
	}
	if env.EnvID != "" {
		m.Add("envid", env.EnvID)
	}
	if err := c.Send(m); err != nil {
		return "", fmt.Errorf("cleanup: %w", err)
	}
	resp, _, err := c.Recv(dl.l.timeout)
	if err != nil {
		return "", fmt.Errorf("cleanup: %w", err)
	}
	if resp.Get("status") != "ok" {
		return "", fmt.Errorf("cleanup refused: %s %s", resp.Get("dsn"), resp.Get("reason"))
	}
	w := c.StreamWriter()
	msg := dl.qf.Message()
	if _, err := io.WriteString(w, "Delivered-To: "+via.String()+"\r\n"); err != nil {
		c.AbortStream()
		return "", fmt.Errorf("cleanup: %w", err)
	}
	if _, err := io.Copy(w, io.NewSectionReader(msg, 0, msg.Size())); err != nil {
		c.AbortStream()
		return "", fmt.Errorf("copy message: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("cleanup: %w", err)
	}
	resp, _, err = c.Recv(dl.l.timeout)
	if err != nil {
		return "", fmt.Errorf("cleanup: %w", err)
	}
	if resp.Get("status") != "ok" {
		return "", fmt.Errorf("cleanup refused the message: %s %s", resp.Get("dsn"), resp.Get("reason"))
	}
	return log.Clean(resp.Get("queue_id")), nil
}
