package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"postern/internal/config"
	"postern/internal/ipc"
	"postern/internal/queue"
)

func cmdQueue(dir string, args []string) error {
	if len(args) == 0 {
		return usageError("queue needs a subcommand: list, cat, flush, hold, release, requeue, delete")
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	spool := cfg.Get("queue_directory")
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("list", flag.ContinueOnError)
		js := fs.Bool("j", false, "JSON")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError("queue list [-j]")
		}
		return queueList(os.Stdout, spool, *js)
	case "cat":
		if len(args) < 2 {
			return usageError("queue cat ID...")
		}
		for _, id := range args[1:] {
			if err := queueCat(os.Stdout, spool, id); err != nil {
				return err
			}
		}
		return nil
	case "flush":
		if len(args) > 2 {
			return usageError("queue flush [DOMAIN]")
		}
		req := ipc.NewMsg("op", "flush")
		if len(args) == 2 {
			req.Add("domain", args[1])
		}
		c, err := ipc.Dial(filepath.Join(spool, "public", "qmgr"), 5*time.Second)
		if err != nil {
			return fmt.Errorf("cannot reach qmgr (is postern running?): %w", err)
		}
		defer c.Close()
		if err := c.Send(req); err != nil {
			return err
		}
		if _, _, err := c.Recv(10 * time.Second); err != nil {
			return fmt.Errorf("qmgr did not answer: %w", err)
		}
		fmt.Println("postern: queue flush requested")
		return nil
	case "hold", "release", "requeue", "delete":
		return queueAdmin(cfg, args[0], args[1:], os.Stdin, os.Stdout)
	}
	return usageError("unknown queue subcommand " + args[0])
}

func queueList(w io.Writer, spool string, js bool) error {
	return queue.WriteListing(w, spool, queue.ListOptions{
		JSON: js,
		Warn: func(dir string, id queue.ID, err error) {
			fmt.Fprintf(os.Stderr, "postern queue list: %s/%s: %v\n", dir, id, err)
		},
	})
}

func queueCat(w io.Writer, spool, id string) error {
	if !queue.ValidID(id) {
		return fmt.Errorf("%q is not a queue ID", id)
	}
	for _, dir := range []string{queue.Incoming, queue.Active, queue.Deferred, queue.Hold, queue.Corrupt} {
		f, err := os.Open(queue.Path(spool, dir, queue.ID(id)))
		if err != nil {
			continue
		}
		defer f.Close()
		qf, err := queue.Open(f)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", dir, id, err)
		}
		env := qf.Envelope()
		fmt.Fprintf(w, "*** ENVELOPE RECORDS %s/%s ***\n", dir, id)
		fmt.Fprintf(w, "arrival_time: %s\n", env.Arrival.Format(time.RFC1123Z))
		fmt.Fprintf(w, "message_size: %d\n", env.Size)
		fmt.Fprintf(w, "sender: %s\n", env.Sender)
		fmt.Fprintf(w, "client: %s[%s] helo=%s protocol=%s\n", env.ClientName, env.ClientAddr, env.Helo, env.Protocol)
		if env.SASLUser != "" {
			fmt.Fprintf(w, "sasl_username: %s\n", env.SASLUser)
		}
		fmt.Fprintf(w, "body: %s smtputf8: %v ret: %s envid: %s\n", env.Body, env.SMTPUTF8, env.Ret, env.EnvID)
		fmt.Fprintf(w, "attempts: %d", env.Attempts)
		if !env.NextAttempt.IsZero() {
			fmt.Fprintf(w, " next: %s", env.NextAttempt.Format(time.RFC1123Z))
		}
		fmt.Fprintln(w)
		for _, r := range env.Recipients {
			fmt.Fprintf(w, "recipient: %s (%s)", r.Addr, queue.StatusWord(r.Status))
			if r.ORcpt != "" {
				fmt.Fprintf(w, " orcpt=%s", r.ORcpt)
			}
			if r.Notify != "" {
				fmt.Fprintf(w, " notify=%s", r.Notify)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "*** MESSAGE CONTENTS %s/%s ***\n", dir, id)
		if _, err := io.Copy(w, qf.Message()); err != nil {
			return err
		}
		fmt.Fprintf(w, "*** END OF MESSAGE %s/%s ***\n", dir, id)
		return nil
	}
	return fmt.Errorf("%s: no such message in the queue", id)
}
