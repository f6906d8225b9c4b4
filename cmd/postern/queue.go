package main

import (
	"encoding/json"
	"errors"
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

// queueDirs are the directories a message can wait in, with the mark mailq
// gives each.
var queueDirs = []struct{ name, mark string }{
	{"incoming", ""}, {"active", "*"}, {"deferred", ""}, {"hold", "!"},
}

func cmdQueue(dir string, args []string) error {
	if len(args) == 0 {
		return usageError("queue needs a subcommand: list, cat, flush")
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
	}
	return usageError("unknown queue subcommand " + args[0])
}

type listEntry struct {
	QueueName   string     `json:"queue_name"`
	QueueID     string     `json:"queue_id"`
	ArrivalTime int64      `json:"arrival_time"`
	MessageSize int64      `json:"message_size"`
	Sender      string     `json:"sender"`
	Recipients  []listRcpt `json:"recipients"`
	Attempts    int        `json:"attempts"`
	NextAttempt int64      `json:"next_attempt,omitempty"`
}

type listRcpt struct {
	Address string `json:"address"`
	Status  string `json:"status"`
}

func queueList(w io.Writer, spool string, js bool) error {
	n := 0
	if !js {
		fmt.Fprintf(w, "%-20s %8s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
	}
	for _, qd := range queueDirs {
		ids, err := queue.List(spool, qd.name)
		if err != nil {
			return err
		}
		for _, id := range ids {
			f, err := os.Open(queue.Path(spool, qd.name, id))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // delivered meanwhile
				}
				return err
			}
			qf, err := queue.Open(f)
			if err != nil {
				f.Close()
				fmt.Fprintf(os.Stderr, "postern queue list: %s/%s: %v\n", qd.name, id, err)
				continue
			}
			env := qf.Envelope()
			f.Close()
			n++
			if js {
				e := listEntry{QueueName: qd.name, QueueID: string(id), ArrivalTime: env.Arrival.Unix(), MessageSize: env.Size, Sender: env.Sender, Attempts: env.Attempts}
				if !env.NextAttempt.IsZero() {
					e.NextAttempt = env.NextAttempt.Unix()
				}
				for _, r := range env.Recipients {
					e.Recipients = append(e.Recipients, listRcpt{r.Addr, statusWord(r.Status)})
				}
				b, _ := json.Marshal(e)
				fmt.Fprintf(w, "%s\n", b)
				continue
			}
			fmt.Fprintf(w, "%-20s %8d %-20s %s\n", string(id)+qd.mark, env.Size, env.Arrival.Format("Mon Jan _2 15:04:05"), orNull(env.Sender))
			for _, r := range env.Recipients {
				if r.Status == 'D' || r.Status == 'F' {
					continue
				}
				fmt.Fprintf(w, "%51s %s\n", "", r.Addr)
			}
			fmt.Fprintln(w)
		}
	}
	if !js {
		if n == 0 {
			fmt.Fprintln(w, "Mail queue is empty")
		} else {
			fmt.Fprintf(w, "-- %d Request(s).\n", n)
		}
	}
	return nil
}

func orNull(s string) string {
	if s == "" {
		return "MAILER-DAEMON"
	}
	return s
}

func statusWord(s byte) string {
	switch s {
	case 'D':
		return "delivered"
	case 'F':
		return "failed"
	case 'W':
		return "delayed"
	}
	return "pending"
}

func queueCat(w io.Writer, spool, id string) error {
	if !queue.ValidID(id) {
		return fmt.Errorf("%q is not a queue ID", id)
	}
	for _, qd := range append(queueDirs, struct{ name, mark string }{"corrupt", ""}) {
		f, err := os.Open(queue.Path(spool, qd.name, queue.ID(id)))
		if err != nil {
			continue
		}
		defer f.Close()
		qf, err := queue.Open(f)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", qd.name, id, err)
		}
		env := qf.Envelope()
		fmt.Fprintf(w, "*** ENVELOPE RECORDS %s/%s ***\n", qd.name, id)
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
			fmt.Fprintf(w, "recipient: %s (%s)", r.Addr, statusWord(r.Status))
			if r.ORcpt != "" {
				fmt.Fprintf(w, " orcpt=%s", r.ORcpt)
			}
			if r.Notify != "" {
				fmt.Fprintf(w, " notify=%s", r.Notify)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "*** MESSAGE CONTENTS %s/%s ***\n", qd.name, id)
		if _, err := io.Copy(w, qf.Message()); err != nil {
			return err
		}
		fmt.Fprintf(w, "*** END OF MESSAGE %s/%s ***\n", qd.name, id)
		return nil
	}
	return fmt.Errorf("%s: no such message in the queue", id)
}
