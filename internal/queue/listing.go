package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// ListDirs are the directories a queue listing shows, in order, with the
// mark mailq puts after the queue ID: '*' for a message being delivered,
// '!' for one on hold.
var ListDirs = []struct{ Name, Mark string }{
	{Incoming, ""}, {Active, "*"}, {Deferred, ""}, {Hold, "!"},
}

// ListOptions shape WriteListing's output.
type ListOptions struct {
	// JSON writes one JSON object per message and line (as postqueue -j)
	// instead of mailq's table.
	JSON bool
	// Filter, when not nil, decides which messages are shown (showq: a
	// user not in authorised_mailq_users sees only their own).
	Filter func(*Envelope) bool
	// MaxBytes caps the output (0: no cap). Messages that do not fit are
	// counted, and a last line "-- N more messages not shown" says so.
	MaxBytes int
	// Warn is told about a queue file that cannot be read (nil: ignored).
	Warn func(dir string, id ID, err error)
}

// ListEntry is one message of `postern queue list -j`.
type ListEntry struct {
	QueueName   string          `json:"queue_name"`
	QueueID     string          `json:"queue_id"`
	ArrivalTime int64           `json:"arrival_time"`
	MessageSize int64           `json:"message_size"`
	Sender      string          `json:"sender"`
	Recipients  []ListRecipient `json:"recipients"`
	Attempts    int             `json:"attempts"`
	NextAttempt int64           `json:"next_attempt,omitempty"`
}

// ListRecipient is one recipient of a ListEntry.
type ListRecipient struct {
	Address string `json:"address"`
	Status  string `json:"status"`
}

// StatusWord names a recipient status byte as listings show it.
func StatusWord(s byte) string {
	switch s {
	case StatusDelivered:
		return "delivered"
	case StatusFailed:
		return "failed"
	case StatusWarned:
		return "delayed"
	}
	return "pending"
}

// WriteListing writes the queue listing of spool to w: mailq's table
// (Postfix's layout: ID with its mark, size, arrival, sender, then the
// recipients still to deliver, a blank line; "-- N Request(s)." or "Mail
// queue is empty" at the end), or with o.JSON one object per line. Both
// `postern queue list` and showq (mailq) use it, so the two agree byte
// for byte. A message that moves on while the listing runs may be missed
// or shown twice; an unreadable file is skipped (o.Warn).
func WriteListing(w io.Writer, spool string, o ListOptions) error {
	var out bytes.Buffer
	written, shown, more := 0, 0, 0
	// emit writes one message's entry unless the cap says no; the
	// trailer always goes out.
	emit := func(entry []byte) error {
		if o.MaxBytes > 0 && written+len(entry) > o.MaxBytes {
			more++
			return nil
		}
		shown++
		written += len(entry)
		_, err := w.Write(entry)
		return err
	}
	if !o.JSON {
		hdr := fmt.Sprintf("%-20s %8s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
		written += len(hdr)
		if _, err := io.WriteString(w, hdr); err != nil {
			return err
		}
	}
	for _, qd := range ListDirs {
		ids, err := List(spool, qd.Name)
		if err != nil {
			return err
		}
		for _, id := range ids {
			env, err := readEnvelope(Path(spool, qd.Name, id))
			if errors.Is(err, fs.ErrNotExist) {
				continue // delivered or moved meanwhile
			}
			if err != nil {
				if o.Warn != nil {
					o.Warn(qd.Name, id, err)
				}
				continue
			}
			if o.Filter != nil && !o.Filter(env) {
				continue
			}
			out.Reset()
			if o.JSON {
				e := ListEntry{QueueName: qd.Name, QueueID: string(id), ArrivalTime: env.Arrival.Unix(), MessageSize: env.Size, Sender: env.Sender, Attempts: env.Attempts}
				if !env.NextAttempt.IsZero() {
					e.NextAttempt = env.NextAttempt.Unix()
				}
				for _, r := range env.Recipients {
					e.Recipients = append(e.Recipients, ListRecipient{r.Addr, StatusWord(r.Status)})
				}
				b, err := json.Marshal(e)
				if err != nil {
					return fmt.Errorf("queue %s: %w", id, err)
				}
				out.Write(b)
				out.WriteByte('\n')
			} else {
				sender := env.Sender
				if sender == "" {
					sender = "MAILER-DAEMON"
				}
				fmt.Fprintf(&out, "%-20s %8d %-20s %s\n", string(id)+qd.Mark, env.Size, env.Arrival.Format("Mon Jan _2 15:04:05"), sender)
				for _, r := range env.Recipients {
					if r.Status == StatusDelivered || r.Status == StatusFailed {
						continue
					}
					fmt.Fprintf(&out, "%51s %s\n", "", r.Addr)
				}
				out.WriteByte('\n')
			}
			if err := emit(out.Bytes()); err != nil {
				return err
			}
		}
	}
	var err error
	if !o.JSON {
		if shown+more == 0 {
			_, err = fmt.Fprintln(w, "Mail queue is empty")
		} else {
			_, err = fmt.Fprintf(w, "-- %d Request(s).\n", shown+more)
		}
	}
	if more > 0 && err == nil {
		_, err = fmt.Fprintf(w, "-- %d more messages not shown\n", more)
	}
	return err
}

// readEnvelope opens and parses the queue file at path (read only, no
// symlinks, no blocking on a FIFO someone put there).
func readEnvelope(path string) (*Envelope, error) {
	if path == "" {
		return nil, errors.New("invalid queue file name")
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	qf, err := Open(f)
	if err != nil {
		return nil, err
	}
	return qf.Envelope(), nil
}
