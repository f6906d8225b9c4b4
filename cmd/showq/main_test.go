package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postern/internal/ipc"
	"postern/internal/queue"
)

func lookupTest(name string) (uint32, bool) {
	switch name {
	case "alice":
		return 1000, true
	case "bob":
		return 1001, true
	}
	return 0, false
}

func TestParsePolicy(t *testing.T) {
	for _, c := range []struct {
		list    []string
		allowed []uint32
		denied  []uint32
		warns   int
	}{
		{nil, []uint32{0, 1000, 4242}, nil, 0},
		{[]string{"static:anyone"}, []uint32{0, 1000, 4242}, nil, 0},
		{[]string{"alice", "4242"}, []uint32{0, 1000, 4242}, []uint32{1001, 65534}, 0},
		{[]string{"nobody-here", "99999999999", "bob"}, []uint32{0, 1001}, []uint32{1000}, 2},
		{[]string{"root"}, []uint32{0}, []uint32{1000}, 1},
	} {
		p, warn := parsePolicy(c.list, lookupTest)
		if len(warn) != c.warns {
			t.Errorf("%v: warnings %q, want %d", c.list, warn, c.warns)
		}
		for _, u := range c.allowed {
			if !p.allowed(u) {
				t.Errorf("%v: uid %d denied", c.list, u)
			}
		}
		for _, u := range c.denied {
			if p.allowed(u) {
				t.Errorf("%v: uid %d allowed", c.list, u)
			}
		}
	}
}

// testSpool makes a spool with one network message and one message from
// each of uid 1000 and 1001.
func testSpool(t testing.TB) (spool string, ids map[string]queue.ID) {
	spool = t.TempDir()
	for _, d := range queue.Dirs {
		os.Mkdir(filepath.Join(spool, d.Name), 0o700)
	}
	ids = map[string]queue.ID{}
	for _, uid := range []string{"", "1000", "1001"} {
		env := &queue.Envelope{Sender: "s" + uid + "@example.org", Arrival: time.Now(), UID: uid,
			Recipients: []queue.Recipient{{Addr: "r" + uid + "@example.net"}}}
		id := queue.NewID()
		w, err := queue.Create(spool, id, env)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: x\r\n\r\nhi\r\n"))
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		ids[uid] = id
	}
	return spool, ids
}

func TestAnswer(t *testing.T) {
	spool, ids := testSpool(t)
	p, _ := parsePolicy([]string{"alice"}, lookupTest)

	// alice (1000) is authorised: everything, in the same bytes as
	// postern queue list writes.
	resp := answer(ipc.NewMsg("op", "list"), 1000, p, spool)
	var want strings.Builder
	queue.WriteListing(&want, spool, queue.ListOptions{})
	if resp.Get("status") != "ok" || resp.Get("output") != want.String() {
		t.Fatalf("authorised listing: %s %q\nwant %q", resp.Get("status"), resp.Get("output"), want.String())
	}
	// bob (1001) is not: only his own message.
	out := answer(ipc.NewMsg("op", "list", "format", "text"), 1001, p, spool).Get("output")
	if !strings.Contains(out, string(ids["1001"])) || strings.Contains(out, string(ids["1000"])) || strings.Contains(out, string(ids[""])) {
		t.Errorf("bob's listing:\n%s", out)
	}
	// Someone with no message: an empty queue.
	out = answer(ipc.NewMsg("op", "list", "format", "json"), 4242, p, spool).Get("output")
	if out != "" {
		t.Errorf("uid 4242's JSON listing: %q", out)
	}
	out = answer(ipc.NewMsg("op", "list"), 4242, p, spool).Get("output")
	if !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("uid 4242's listing: %q", out)
	}
	// JSON for bob: one line, his.
	out = answer(ipc.NewMsg("op", "list", "format", "json"), 1001, p, spool).Get("output")
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"queue_id":"`+string(ids["1001"])+`"`) {
		t.Errorf("bob's JSON: %q", out)
	}
	// Root sees everything even when the list names nobody else.
	if out := answer(ipc.NewMsg("op", "list"), 0, p, spool).Get("output"); !strings.Contains(out, "-- 3 Request(s).") {
		t.Errorf("root's listing:\n%s", out)
	}
	for _, bad := range []*ipc.Msg{ipc.NewMsg(), ipc.NewMsg("op", "delete"), ipc.NewMsg("op", "list", "format", "xml")} {
		if r := answer(bad, 0, p, spool); r.Get("status") != "error" || r.Get("reason") == "" {
			t.Errorf("bad request %v: %v %q", bad.Names(), r.Get("status"), r.Get("reason"))
		}
	}
}

func FuzzRequest(f *testing.F) {
	spool, _ := testSpool(f)
	p, _ := parsePolicy([]string{"alice"}, lookupTest)
	for _, m := range []*ipc.Msg{ipc.NewMsg("op", "list"), ipc.NewMsg("op", "list", "format", "json"), ipc.NewMsg("op", "x\x00")} {
		b, _ := ipc.Encode(m)
		f.Add(b, uint32(1001))
	}
	f.Fuzz(func(t *testing.T, payload []byte, uid uint32) {
		m, err := ipc.Decode(payload)
		if err != nil {
			return
		}
		r := answer(m, uid, p, spool)
		switch r.Get("status") {
		case "ok":
			if m.Get("op") != "list" {
				t.Fatalf("op %q answered ok", m.Get("op"))
			}
		case "error":
		default:
			t.Fatalf("status %q", r.Get("status"))
		}
	})
}
