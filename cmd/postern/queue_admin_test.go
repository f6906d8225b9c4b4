package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"postern/internal/config"
	"postern/internal/queue"
)

// adminSpool makes a spool with one message in each of incoming/,
// deferred/ and hold/.
func adminSpool(t testing.TB) (string, map[string]queue.ID) {
	spool := t.TempDir()
	for _, d := range queue.Dirs {
		os.Mkdir(filepath.Join(spool, d.Name), 0o700)
	}
	ids := map[string]queue.ID{}
	for _, dir := range []string{queue.Incoming, queue.Deferred, queue.Hold} {
		id := queue.NewID()
		w, err := queue.Create(spool, id, &queue.Envelope{Sender: "a@b", Arrival: time.Now(), Recipients: []queue.Recipient{{Addr: "c@d"}}})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("m"))
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if dir != queue.Incoming {
			if err := queue.Move(spool, id, queue.Incoming, dir); err != nil {
				t.Fatal(err)
			}
		}
		ids[dir] = id
	}
	return spool, ids
}

func idList(l []adminID) []queue.ID {
	var out []queue.ID
	for _, x := range l {
		out = append(out, x.id)
	}
	return out
}

func TestAdminIDs(t *testing.T) {
	spool, ids := adminSpool(t)
	in, def, hold := ids[queue.Incoming], ids[queue.Deferred], ids[queue.Hold]
	for _, c := range []struct {
		op    string
		args  []string
		stdin string
		want  []queue.ID
		bad   []string
	}{
		{"delete", []string{string(def)}, "", []queue.ID{def}, nil},
		{"delete", []string{"ALL"}, "", []queue.ID{in, def, hold}, nil},
		{"hold", []string{"ALL"}, "", []queue.ID{in, def}, nil},
		{"release", []string{"ALL"}, "", []queue.ID{hold}, nil},
		{"delete", []string{"deferred"}, "", []queue.ID{def}, nil},
		{"delete", []string{"-"}, string(hold) + "\n  " + string(in) + " " + string(hold) + "\n", []queue.ID{hold, in}, nil},
		{"delete", []string{string(in), "../x", "all", string(in)}, "", []queue.ID{in}, []string{"../x", "all"}},
	} {
		got, bad, err := adminIDs(spool, c.op, c.args, strings.NewReader(c.stdin))
		if err != nil {
			t.Errorf("%s %v: %v", c.op, c.args, err)
			continue
		}
		if !slices.Equal(idList(got), c.want) || !slices.Equal(bad, c.bad) {
			t.Errorf("%s %v: %v bad %q, want %v bad %q", c.op, c.args, idList(got), bad, c.want, c.bad)
		}
		for _, x := range got {
			if x.named == (c.args[0] == "ALL" || c.args[0] == "deferred") {
				t.Errorf("%s %v: %s named=%v", c.op, c.args, x.id, x.named)
			}
		}
	}
	// A word longer than 4 KiB on stdin is an error, not a truncation.
	if _, _, err := adminIDs(spool, "delete", []string{"-"}, strings.NewReader(strings.Repeat("A", 5000))); err == nil {
		t.Error("a 5000-byte word on stdin was accepted")
	}
}

// TestQueueAdminOffline runs the command's own path (no qmgr, no master):
// the files move, active/ counts as incoming/, and the output says so.
func TestQueueAdminOffline(t *testing.T) {
	spool, ids := adminSpool(t)
	cfg, err := config.Parse(t.TempDir(), []byte("queue_directory = "+spool+"\nmaillog_file = "+filepath.Join(spool, "log")+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	act := ids[queue.Incoming]
	if err := queue.Move(spool, act, queue.Incoming, queue.Active); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := queueAdmin(cfg, "hold", []string{"ALL"}, nil, &out); err != nil {
		t.Fatalf("hold ALL: %v\n%s", err, out.String())
	}
	for _, id := range []queue.ID{act, ids[queue.Deferred], ids[queue.Hold]} {
		if _, err := os.Stat(queue.Path(spool, queue.Hold, id)); err != nil {
			t.Errorf("%s not in hold/: %v", id, err)
		}
	}
	if !strings.Contains(out.String(), string(act)+": held (was in active/)") || !strings.Contains(out.String(), "postern: held: 2 message(s)") {
		t.Errorf("output:\n%s", out.String())
	}
	log, _ := os.ReadFile(filepath.Join(spool, "log"))
	if !strings.Contains(string(log), "postern/queue[") || !strings.Contains(string(log), string(act)+": held by uid=") {
		t.Errorf("log:\n%s", log)
	}
	out.Reset()
	if err := queueAdmin(cfg, "delete", []string{string(act), "0123456789ABCDEF01"}, nil, &out); err == nil {
		t.Errorf("delete of a missing ID succeeded:\n%s", out.String())
	}
	if _, err := os.Stat(queue.Path(spool, queue.Hold, act)); err == nil {
		t.Errorf("%s not deleted", act)
	}
}

func FuzzAdminIDs(f *testing.F) {
	spool, ids := adminSpool(f)
	f.Add(string(ids[queue.Hold]) + "\n" + string(ids[queue.Deferred]))
	f.Add("ALL deferred hold x\x00y")
	f.Fuzz(func(t *testing.T, stdin string) {
		got, bad, err := adminIDs(spool, "delete", []string{"-"}, strings.NewReader(stdin))
		if err != nil {
			return
		}
		for _, x := range got {
			if !queue.ValidID(string(x.id)) {
				t.Fatalf("invalid ID %q passed", x.id)
			}
		}
		if len(bad) > 100 {
			t.Fatalf("%d bad words kept", len(bad))
		}
	})
}
