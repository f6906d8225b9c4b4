package tests

// End-to-end tests of queue administration (postern queue hold, release,
// requeue, delete, list -j, status) and of the showq daemon on
// public/showq. Mail for remote.example waits in deferred/: the harness's
// DNS answers SERVFAIL for it, and minimal_backoff_time (300 s) keeps qmgr
// from retrying on its own during a test, so every new delivery attempt
// seen here was caused by the command under test.

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postern/internal/ipc"
)

var queueAdminBuild sync.Once

// queueAdminStart builds showq into binDir when the harness has not (the
// default services.conf runs it) and starts an instance.
func queueAdminStart(t *testing.T) *Instance {
	t.Helper()
	queueAdminBuild.Do(func() {
		for _, prog := range []string{"showq", "pickup"} {
			if _, err := os.Stat(filepath.Join(binDir, prog)); err == nil {
				continue
			}
			if _, err := os.Stat(filepath.Join("..", "cmd", prog)); err != nil {
				continue // not written yet
			}
			cmd := exec.Command("go", "build", "-trimpath", "-o", binDir+"/", "../cmd/"+prog)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build %s: %v\n%s", prog, err, out)
			}
		}
	})
	return Start(t, Options{})
}

// queueAdminDeferred sends a message to user@remote.example and waits
// until it waits in deferred/ after its first attempt.
func queueAdminDeferred(t *testing.T, in *Instance, token string) string {
	t.Helper()
	id, err := opsSend(in.Addr, "sender@example.org", []string{"user@remote.example"}, "Subject: "+token+"\r\n\r\nbody of "+token+"\r\n")
	if err != nil || id == "" {
		t.Fatalf("send: %q %v", id, err)
	}
	if !opsWaitFile(filepath.Join(in.Spool, "deferred", id), true, 15*time.Second) {
		t.Fatalf("%s not in deferred/ after 15 s:\n%s", id, in.Log())
	}
	return id
}

// queueAdminAttempts counts the delivery attempts logged for id.
func queueAdminAttempts(in *Instance, id string) int {
	return len(opsLogLines(in, id+": to=<user@remote.example>", "status="))
}

// queueAdminWhere lists the queue directories that hold id.
func queueAdminWhere(in *Instance, id string) []string {
	var in2 []string
	for _, d := range []string{"incoming", "active", "deferred", "hold", "corrupt", "tmp"} {
		if _, err := os.Lstat(filepath.Join(in.Spool, d, id)); err == nil {
			in2 = append(in2, d)
		}
	}
	return in2
}

// queueAdminWaitIn waits until id is in dir (and only there).
func queueAdminWaitIn(t *testing.T, in *Instance, id, dir string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(25 * time.Millisecond) {
		w := queueAdminWhere(in, id)
		if len(w) == 1 && w[0] == dir {
			return
		}
		if len(w) > 1 {
			t.Fatalf("%s is in %v at once", id, w)
		}
		if time.Now().After(end) {
			t.Fatalf("%s is in %v, not %s/, after %s", id, w, dir, d)
		}
	}
}

func queueAdminRun(t *testing.T, in *Instance, args ...string) string {
	t.Helper()
	out, err := in.Postern(append([]string{"queue"}, args...)...)
	if err != nil {
		t.Fatalf("postern queue %v: %v\n%s", args, err, out)
	}
	return out
}

// TestQueueAdmin: hold keeps a message out of a flush, release and
// requeue send it through delivery again at once, delete removes one
// message, every deferred message, or ALL; IDs may come on stdin; list
// shows hold with "!" and -j parses; status counts the queues.
func TestQueueAdmin(t *testing.T) {
	in := queueAdminStart(t)
	a := queueAdminDeferred(t, in, "alpha")

	// list -j: the expected fields.
	js := opsQueueJSON(t, in)
	if len(js) != 1 || js[0].QueueID != a || js[0].QueueName != "deferred" || js[0].Sender != "sender@example.org" ||
		len(js[0].Recipients) != 1 || js[0].Recipients[0].Address != "user@remote.example" || js[0].Attempts != 1 ||
		js[0].NextAttempt <= js[0].ArrivalTime || js[0].MessageSize <= 0 {
		t.Fatalf("list -j: %+v", js)
	}
	var raw map[string]any
	out := queueAdminRun(t, in, "list", "-j")
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &raw); err != nil {
		t.Fatalf("list -j: %v\n%s", err, out)
	}
	for _, k := range []string{"queue_name", "queue_id", "arrival_time", "message_size", "sender", "recipients", "attempts", "next_attempt"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("list -j lacks %q: %s", k, out)
		}
	}

	// hold: into hold/, shown with "!", not retried by a flush.
	out = queueAdminRun(t, in, "hold", a)
	if !strings.Contains(out, a+": held") {
		t.Errorf("hold output:\n%s", out)
	}
	queueAdminWaitIn(t, in, a, "hold", 5*time.Second)
	if l := opsWaitLogLines(in, 1, 5*time.Second, a+": held by uid="+strconv.Itoa(os.Getuid())); len(l) == 0 {
		t.Errorf("no log line %q", a+": held by uid=")
	}
	if out := queueAdminRun(t, in, "list"); !regexp.MustCompile(`(?m)^` + a + `!\s+\d+ `).MatchString(out) {
		t.Errorf("list does not mark the held message with '!':\n%s", out)
	}
	if out := queueAdminRun(t, in, "hold", a); !strings.Contains(out, "already on hold") {
		t.Errorf("second hold:\n%s", out)
	}
	n := queueAdminAttempts(in, a)
	queueAdminRun(t, in, "flush")
	time.Sleep(1500 * time.Millisecond)
	if queueAdminAttempts(in, a) != n {
		t.Errorf("a held message was retried by a flush")
	}
	queueAdminWaitIn(t, in, a, "hold", time.Second)

	// release: retried at once, and back to deferred/ (still failing).
	out = queueAdminRun(t, in, "release", a)
	if !strings.Contains(out, a+": released") {
		t.Errorf("release output:\n%s", out)
	}
	if l := opsWaitLogLines(in, n+1, 10*time.Second, a+": to=<user@remote.example>", "status="); len(l) != n+1 {
		t.Fatalf("no delivery attempt after release (%d lines, want %d)", len(l), n+1)
	}
	queueAdminWaitIn(t, in, a, "deferred", 10*time.Second)
	if out, err := in.Postern("queue", "release", a); err == nil || !strings.Contains(out, "not on hold") {
		t.Errorf("release of a deferred message: %v\n%s", err, out)
	}

	// requeue: another attempt at once, attempt count goes on.
	out = queueAdminRun(t, in, "requeue", a)
	if !strings.Contains(out, a+": requeued") {
		t.Errorf("requeue output:\n%s", out)
	}
	if l := opsWaitLogLines(in, n+2, 10*time.Second, a+": to=<user@remote.example>", "status="); len(l) != n+2 {
		t.Fatalf("no delivery attempt after requeue")
	}
	queueAdminWaitIn(t, in, a, "deferred", 10*time.Second)
	if js := opsQueueJSON(t, in); len(js) != 1 || js[0].Attempts != 3 {
		t.Errorf("after release and requeue: %+v, want 3 attempts", js)
	}
	if opsWaitLogLines(in, 1, 5*time.Second, a+": requeued by uid=") == nil {
		t.Errorf("no requeued log line")
	}

	// delete ID, then "deferred", then ALL (IDs from stdin too).
	b := queueAdminDeferred(t, in, "bravo")
	c := queueAdminDeferred(t, in, "charlie")
	out = queueAdminRun(t, in, "delete", b)
	if !strings.Contains(out, b+": deleted") {
		t.Errorf("delete output:\n%s", out)
	}
	if w := queueAdminWhere(in, b); len(w) != 0 {
		t.Errorf("%s still in %v after delete", b, w)
	}
	if opsWaitLogLines(in, 1, 5*time.Second, b+": deleted by uid=") == nil {
		t.Errorf("no deleted log line")
	}
	if out, err := in.Postern("queue", "delete", b); err == nil || !strings.Contains(out, "no such message") {
		t.Errorf("delete of a deleted message: %v\n%s", err, out)
	}
	if out, err := in.Postern("queue", "delete", "../../etc/passwd"); err == nil || !strings.Contains(out, "not a queue ID") {
		t.Errorf("delete of a bad ID: %v\n%s", err, out)
	}
	// Hold c first: "deferred" must leave hold/ alone.
	cmd := exec.Command(filepath.Join(binDir, "postern"), "-c", in.Etc, "queue", "hold", "-")
	cmd.Stdin = strings.NewReader(c + "\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), c+": held") {
		t.Fatalf("hold - (stdin): %v\n%s", err, out)
	}
	queueAdminWaitIn(t, in, c, "hold", 5*time.Second)
	out = queueAdminRun(t, in, "delete", "deferred")
	if !strings.Contains(out, a+": deleted") || strings.Contains(out, c) {
		t.Errorf("delete deferred:\n%s", out)
	}
	queueAdminWaitIn(t, in, c, "hold", time.Second)
	if w := queueAdminWhere(in, a); len(w) != 0 {
		t.Errorf("%s still in %v after delete deferred", a, w)
	}
	// status counts.
	out, _ = in.Postern("status")
	if !strings.Contains(out, "queue: 0 incoming, 0 active, 0 deferred, 1 hold") {
		t.Errorf("status:\n%s", out)
	}
	queueAdminRun(t, in, "delete", "ALL")
	if !opsWaitQueueEmpty(t, in, 5*time.Second) {
		t.Errorf("queue not empty after delete ALL:\n%s", queueAdminRun(t, in, "list"))
	}
	if out := queueAdminRun(t, in, "list"); !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("list after delete ALL:\n%s", out)
	}
	for _, l := range opsLogLines(in, "postern/qmgr", "error: ") {
		t.Errorf("qmgr error: %s", l)
	}
}

// TestQueueAdminStopped: with Postern stopped, the command moves the
// files itself, and what it did holds when Postern starts again.
func TestQueueAdminStopped(t *testing.T) {
	in := queueAdminStart(t)
	a := queueAdminDeferred(t, in, "stopped-a")
	b := queueAdminDeferred(t, in, "stopped-b")
	// Kill, not Stop: Stop removes the instance's directory.
	in.Kill()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := ipc.Dial(filepath.Join(in.Spool, "public", "qmgr"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(end) {
			t.Fatal("qmgr still answers 10 s after master was killed")
		}
	}
	out := queueAdminRun(t, in, "hold", a)
	if !strings.Contains(out, a+": held") {
		t.Errorf("hold while stopped:\n%s", out)
	}
	out = queueAdminRun(t, in, "requeue", b)
	if !strings.Contains(out, b+": requeued") {
		t.Errorf("requeue while stopped:\n%s", out)
	}
	if w := queueAdminWhere(in, b); len(w) != 1 || w[0] != "incoming" {
		t.Errorf("%s in %v after requeue, want incoming", b, w)
	}
	in.Restart()
	// b is tried at start; a stays on hold.
	if opsWaitLogLines(in, 2, 10*time.Second, b+": to=<user@remote.example>", "status=") == nil {
		t.Errorf("requeued message not tried after the start")
	}
	queueAdminWaitIn(t, in, a, "hold", 2*time.Second)
}

// TestQueueAdminPermission: only root and mail_owner may change the
// queue: the command refuses others, and so does qmgr when a member of
// postdrop (who can reach public/qmgr) asks directly.
func TestQueueAdminPermission(t *testing.T) {
	if !isRoot() {
		t.Fatal("this test needs root (CI runs as root)")
	}
	in := queueAdminStart(t)
	a := queueAdminDeferred(t, in, "perm")
	uid, gid := lookupIDs(t, "posterntest")
	cmd := exec.Command(filepath.Join(binDir, "postern"), "-c", in.Etc, "queue", "delete", a)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	if opsExitCode(err) != 1 || !strings.Contains(string(out), "permission denied") {
		t.Errorf("delete as posterntest: %v\n%s", err, out)
	}
	resp := queueAdminAsUser(t, filepath.Join(in.Spool, "public", "qmgr"), ipc.NewMsg("op", "delete", "queue_id", a))
	if resp.Get("status") != "error" || !strings.Contains(resp.Get("reason"), "permission denied") {
		t.Errorf("qmgr answered a delete from posterntest: %s %q", resp.Get("status"), resp.Get("reason"))
	}
	if w := queueAdminWhere(in, a); len(w) != 1 || w[0] != "deferred" {
		t.Errorf("%s in %v after refused deletes", a, w)
	}
	if opsWaitLogLines(in, 1, 5*time.Second, "postern/qmgr", "delete request from uid="+strconv.Itoa(uid)+" refused") == nil {
		t.Errorf("qmgr did not log the refusal")
	}
}

// queueAdminAsUser sends one ipc request to the socket at path as the
// user posterntest with group postdrop (what postern-drop, setgid
// postdrop, has), through python3 so that the peer's uid really is
// posterntest's, and returns the answer.
func queueAdminAsUser(t *testing.T, path string, req *ipc.Msg) *ipc.Msg {
	t.Helper()
	uid, _ := lookupIDs(t, "posterntest")
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	payload, err := ipc.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	const script = `
import socket, struct, sys
p = bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(struct.pack(">I", len(p)) + p)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("eof")
        b += c
    return b
n = struct.unpack(">I", read(4))[0]
sys.stdout.write(read(n).hex())
`
	cmd := exec.Command("/usr/bin/python3", "-c", script, path, hex.EncodeToString(payload))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 as posterntest:postdrop on %s: %v\n%s", path, err, stderr.String())
	}
	b, err := hex.DecodeString(string(out))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ipc.Decode(b)
	if err != nil {
		t.Fatalf("answer from %s: %v", path, err)
	}
	return m
}

// TestShowq: the showq daemon on public/showq gives the listing `postern
// queue list` prints, byte for byte, in text and JSON, to root and (with
// the default authorised_mailq_users, static:anyone) to a local user who
// can only reach the socket through the postdrop group. That a user not
// in authorised_mailq_users sees only their own mail is tested in
// cmd/showq (it needs queue files with a submitter's uid).
func TestShowq(t *testing.T) {
	in := queueAdminStart(t)
	a := queueAdminDeferred(t, in, "showq-a")
	queueAdminRun(t, in, "hold", a) // a stable listing: nothing moves on hold
	queueAdminWaitIn(t, in, a, "hold", 5*time.Second)
	sock := filepath.Join(in.Spool, "public", "showq")
	if !opsWaitFile(sock, true, 5*time.Second) {
		t.Fatalf("no %s:\n%s", sock, in.Log())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("public/showq mode: %v %v", fi.Mode(), err)
	}
	for _, format := range []string{"text", "json"} {
		c, err := ipc.Dial(sock, 5*time.Second)
		if err != nil {
			t.Fatalf("dial showq: %v", err)
		}
		if err := c.Send(ipc.NewMsg("op", "list", "format", format)); err != nil {
			t.Fatal(err)
		}
		resp, _, err := c.Recv(10 * time.Second)
		c.Close()
		if err != nil {
			t.Fatalf("showq answer: %v", err)
		}
		args := []string{"list"}
		if format == "json" {
			args = append(args, "-j")
		}
		want := queueAdminRun(t, in, args...)
		if resp.Get("status") != "ok" || resp.Get("output") != want {
			t.Errorf("showq %s: %s %q\npostern queue %v: %q", format, resp.Get("status"), resp.Get("output"), args, want)
		}
		if !strings.Contains(resp.Get("output"), a) {
			t.Errorf("showq %s lacks %s", format, a)
		}
	}
	// Bad request: an error answer and a log line.
	c, err := ipc.Dial(sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(ipc.NewMsg("op", "flush"))
	resp, _, err := c.Recv(10 * time.Second)
	c.Close()
	if err != nil || resp.Get("status") != "error" {
		t.Errorf("bad request: %v %v", resp.Get("status"), err)
	}
	if opsWaitLogLines(in, 1, 5*time.Second, "postern/showq", "unknown op") == nil {
		t.Errorf("no log line for the bad request")
	}
	if !isRoot() {
		return
	}
	// A local user through the postdrop group.
	resp = queueAdminAsUser(t, sock, ipc.NewMsg("op", "list"))
	if resp.Get("status") != "ok" || !strings.Contains(resp.Get("output"), a+"!") {
		t.Errorf("showq for posterntest: %s %q %q", resp.Get("status"), resp.Get("output"), resp.Get("reason"))
	}
	// The socket is the only way: the queue itself is closed to the user.
	uid, gid := lookupIDs(t, "posterntest")
	cmd := exec.Command(filepath.Join(binDir, "postern"), "-c", in.Etc, "queue", "list")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("postern queue list as posterntest read the spool:\n%s", out)
	}
}

// TestQueueAdminActive: an operation on a message that qmgr is delivering
// waits until the attempt ends; nothing moves the file behind the
// delivery's back. The DNS server stalls slow.example for 3 s (and then
// fails it), so each attempt keeps the message in active/ that long.
func TestQueueAdminActive(t *testing.T) {
	in := queueAdminStart(t)
	in.DNS.Fail("slow.example", 2)
	in.DNS.Delay("slow.example", 3*time.Second)
	id, err := opsSend(in.Addr, "sender@example.org", []string{"user@slow.example"}, "Subject: slow\r\n\r\nslow\r\n")
	if err != nil || id == "" {
		t.Fatalf("send: %q %v", id, err)
	}
	queueAdminWaitIn(t, in, id, "active", 5*time.Second)
	out := queueAdminRun(t, in, "hold", id)
	if !strings.Contains(out, id+": being delivered; held when the delivery under way finishes") {
		t.Errorf("hold of an active message:\n%s", out)
	}
	if out, err := in.Postern("queue", "release", id); err == nil || !strings.Contains(out, "not on hold") {
		t.Errorf("release of an active message: %v\n%s", err, out)
	}
	if w := queueAdminWhere(in, id); len(w) != 1 || w[0] != "active" {
		t.Fatalf("%s moved to %v while being delivered", id, w)
	}
	queueAdminWaitIn(t, in, id, "hold", 30*time.Second)
	if opsWaitLogLines(in, 1, 5*time.Second, id+": held by uid=", "after the delivery under way") == nil {
		t.Errorf("no held-after-delivery log line:\n%s", in.Log())
	}
	if n := queueAdminAttemptsTo(in, id, "user@slow.example"); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}

	// requeue: straight into a new attempt; delete it during that one.
	queueAdminRun(t, in, "requeue", id)
	queueAdminWaitIn(t, in, id, "active", 5*time.Second)
	out = queueAdminRun(t, in, "delete", id)
	if !strings.Contains(out, "being delivered") {
		t.Errorf("delete of an active message:\n%s", out)
	}
	if !opsWaitFile(filepath.Join(in.Spool, "active", id), false, 30*time.Second) {
		t.Fatalf("%s still in active/ 30 s later", id)
	}
	time.Sleep(200 * time.Millisecond)
	if w := queueAdminWhere(in, id); len(w) != 0 {
		t.Errorf("%s in %v after a delete during its delivery", id, w)
	}
	if opsWaitLogLines(in, 1, 5*time.Second, id+": deleted by uid=", "after the delivery under way") == nil {
		t.Errorf("no deleted-after-delivery log line")
	}
	if n := queueAdminAttemptsTo(in, id, "user@slow.example"); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	for _, l := range opsLogLines(in, "postern/qmgr", "error: ") {
		t.Errorf("qmgr error: %s", l)
	}
}

// queueAdminAttemptsTo counts the delivery attempts logged for id to rcpt.
func queueAdminAttemptsTo(in *Instance, id, rcpt string) int {
	return len(opsLogLines(in, id+": to=<"+rcpt+">", "status="))
}
