package tests

// Interoperability with a real peer (issue 3): Debian's postfix, run as a
// private instance in a temporary directory (postfix -c DIR, its own
// main.cf, master.cf, queue, data directory and log file, no chroot), on
// 127.0.0.81 port 25 only. /etc/postfix and any Postfix the machine runs
// are not touched. Postfix is final destination for the virtual domain
// postfix.test (Maildirs of its own) and relays everything else to
// Postern through relayhost = [127.0.0.1]:<Postern's port>.
//
// Needs root (Postfix's master runs as root) and /usr/sbin/postfix
// (Debian's postfix package: make deps). Without them the tests skip and
// say why; with CI set in the environment a missing postfix fails them.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postfixIP is the loopback address of the Postfix peer.
const postfixIP = "127.0.0.81"

// postfixPeer is a running private Postfix instance.
type postfixPeer struct {
	t     *testing.T
	dir   string
	etc   string
	spool string
	vmail string
	log   string
}

// startPostfix configures and starts Postfix on postfixIP:25, relaying to
// relayhost, and stops it when the test ends.
func startPostfix(t *testing.T, relayhost string) *postfixPeer {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("/usr/sbin/postfix is missing: CI must install Debian's postfix (make deps)")
		}
		t.Skipf("Debian's postfix is not installed (/usr/sbin/postfix: %v): apt-get install postfix, or make deps", err)
	}
	if !isRoot() {
		t.Skip("the Postfix peer needs root: its master runs as root and its daemons as the user postfix")
	}
	ensureUsers(t)
	pfUID, pfGID := lookupIDs(t, "postfix")
	vUID, vGID := lookupIDs(t, "vmail")
	remoteAssertFree(t, postfixIP+":25")

	dir, err := os.MkdirTemp("", "postern-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	p := &postfixPeer{t: t, dir: dir, etc: filepath.Join(dir, "etc"), spool: filepath.Join(dir, "spool"),
		vmail: filepath.Join(dir, "vmail"), log: filepath.Join(dir, "maillog")}
	for _, d := range []string{p.etc, p.spool, p.vmail} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(data, pfUID, pfGID)
	os.Chown(p.vmail, vUID, vGID)

	cert, key := postfixCert(t, p.etc, "mx.postfix.test")
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		master, err = os.ReadFile("/etc/postfix/master.cf")
		if err != nil {
			t.Fatalf("no master.cf to start from: %v", err)
		}
	}
	// The smtp service on 127.0.0.81:25 alone, as a master.cf host:port:
	// inet_interfaces cannot name it, since Postfix wants those to be
	// addresses of an interface, and lo only has 127.0.0.1.
	ms := string(master)
	ms = strings.Replace(ms, "\nsmtp      inet", "\n"+postfixIP+":25 inet", 1)
	if !strings.Contains(ms, "\n"+postfixIP+":25 inet") {
		t.Fatalf("master.cf has no \"smtp      inet\" line to rewrite:\n%s", master)
	}
	p.write("master.cf", ms)
	p.write("vmailbox", "alice@postfix.test alice/\n")
	p.write("main.cf", strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + p.spool,
		"data_directory = " + data,
		"myhostname = mx.postfix.test",
		"mydomain = postfix.test",
		"myorigin = $myhostname",
		"mydestination =",
		"inet_interfaces = loopback-only",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
		"relayhost = " + relayhost,
		"smtp_host_lookup = native",
		"virtual_mailbox_domains = postfix.test",
		"virtual_mailbox_base = " + p.vmail,
		"virtual_mailbox_maps = texthash:" + filepath.Join(p.etc, "vmailbox"),
		fmt.Sprintf("virtual_uid_maps = static:%d", vUID),
		fmt.Sprintf("virtual_gid_maps = static:%d", vGID),
		"virtual_minimum_uid = 1",
		"alias_maps =",
		"alias_database =",
		"biff = no",
		"smtpd_tls_cert_file = " + cert,
		"smtpd_tls_key_file = " + key,
		"smtpd_tls_security_level = may",
		"smtp_tls_security_level = may",
		"maillog_file = " + p.log,
		"maillog_file_prefixes = " + dir,
		// Retry soon, so that a failure shows within the test's time.
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 2s",
		"queue_run_delay = 1s",
		"",
	}, "\n"))
	// No chroot: a chrooted daemon would need copies of /etc files in the
	// queue directory (Debian's configure-instance.sh).
	p.run("postconf", "-c", p.etc, "-F", "*/*/chroot = n")
	p.run("postfix", "-c", p.etc, "check")
	p.run("postfix", "-c", p.etc, "start")
	t.Cleanup(p.stop)
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", postfixIP+":25", time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(end) {
			t.Fatalf("postfix did not open %s:25 in 20 s:\n%s", postfixIP, p.Log())
		}
	}
	return p
}

func (p *postfixPeer) write(name, content string) {
	p.t.Helper()
	if err := os.WriteFile(filepath.Join(p.etc, name), []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *postfixPeer) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("%v: %v\n%s\n%s\n(postfix logs what it dislikes in its configuration to syslog, /dev/log)", args, err, out, p.Log())
	}
	return string(out)
}

// Log is Postfix's log so far.
func (p *postfixPeer) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// WaitLog waits until Postfix's log contains s.
func (p *postfixPeer) WaitLog(s string, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(p.Log(), s) {
			return true
		}
	}
	return false
}

// stop stops Postfix (postfix stop, then SIGKILL to its master if it
// lingers) and removes its directory unless the test failed.
func (p *postfixPeer) stop() {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(p.spool, "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	exec.Command("postfix", "-c", p.etc, "stop").Run()
	if pid > 0 && !postfixWaitOrKill(pid, 15*time.Second) {
		p.t.Errorf("postfix master %d did not stop in 15 s; killed", pid)
	}
	if p.t.Failed() {
		p.t.Logf("postfix log:\n%s", p.Log())
		return
	}
	os.RemoveAll(p.dir)
}

// postfixWaitOrKill waits for pid to exit, and kills it with SIGKILL when
// it has not after d.
func postfixWaitOrKill(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return false
}

// maildirFiles lists the files in a Maildir's new/.
func (p *postfixPeer) maildirFiles(user string) []string {
	return Messages(filepath.Join(p.vmail, user))
}

// TestInteropToPostfix: Postern delivers to Postfix found by MX; Postfix
// takes it (over STARTTLS, which it offers) and stores it in a Maildir
// of its own, intact.
func TestInteropToPostfix(t *testing.T) {
	in := Start(t, Options{})
	pf := startPostfix(t, fmt.Sprintf("[127.0.0.1]:%d", in.Port))
	in.DNS.MX("postfix.test", 10, "mx.postfix.test")
	in.DNS.A("mx.postfix.test", postfixIP)
	body := "hello Postfix\r\n.a line with a leading dot\r\n..two dots\r\nlast line\r\n"
	msg := "From: <demo@example.test>\r\nTo: <alice@postfix.test>\r\nSubject: interop postern-to-postfix\r\nMessage-ID: <interop-1@example.test>\r\n\r\n" + body
	remoteSubmit(t, in, "demo@example.test", []string{"alice@postfix.test"}, msg)
	l := remoteWaitStatus(t, in, "alice@postfix.test", "sent", 30*time.Second)
	if !strings.Contains(l, "relay=mx.postfix.test["+postfixIP+"]:25") || !strings.Contains(l, "queued as") {
		t.Errorf("Postern's log line: %s", l)
	}
	if !strings.Contains(in.Log(), "TLS connection established to mx.postfix.test["+postfixIP+"]:25") {
		t.Errorf("no TLS with Postfix, which offers STARTTLS")
	}
	var files []string
	for end := time.Now().Add(20 * time.Second); len(files) == 0 && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		files = pf.maildirFiles("alice")
	}
	if len(files) != 1 {
		t.Fatalf("Postfix's Maildir holds %d messages, want 1", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, "Return-Path: <demo@example.test>\n") {
		t.Errorf("Postfix's copy does not start with the envelope sender:\n%.300s", got)
	}
	if !strings.Contains(got, "Subject: interop postern-to-postfix\n") || !strings.HasSuffix(got, strings.ReplaceAll(body, "\r\n", "\n")) {
		t.Errorf("Postfix's copy differs from what was sent:\n%s", got)
	}
	if !strings.Contains(got, "from mx.postern.test") {
		t.Errorf("Postfix's Received header does not name Postern's HELO:\n%.600s", got)
	}
	if !pf.WaitLog("to=<alice@postfix.test>, relay=virtual", 5*time.Second) {
		t.Errorf("no delivery line in Postfix's log")
	}
	waitQueueEmpty(t, in, 10*time.Second)
}

// TestInteropFromPostfix: Postfix relays to Postern (relayhost); the
// mail lands in demo@example.test's Maildir, intact.
func TestInteropFromPostfix(t *testing.T) {
	in := Start(t, Options{})
	pf := startPostfix(t, fmt.Sprintf("[127.0.0.1]:%d", in.Port))
	body := "hello Postern\r\n.a line with a leading dot\r\nlast line\r\n"
	msg := "From: <bob@postfix.test>\r\nTo: <demo@example.test>\r\nSubject: interop postfix-to-postern\r\nMessage-ID: <interop-2@postfix.test>\r\n\r\n" + body
	if _, err := remoteTrySubmit(postfixIP+":25", "bob@postfix.test", []string{"demo@example.test"}, msg); err != nil {
		t.Fatalf("Postfix refused the message: %v\n%s", err, pf.Log())
	}
	files := WaitMessages(t, in.Maildir("demo"), 1, 30*time.Second)
	if len(files) != 1 {
		t.Fatalf("demo@example.test's Maildir holds %d messages, want 1\npostfix log:\n%s", len(files), pf.Log())
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, "Return-Path: <bob@postfix.test>\n") {
		t.Errorf("the copy does not start with the envelope sender:\n%.300s", got)
	}
	if !strings.Contains(got, "Subject: interop postfix-to-postern\n") || !strings.HasSuffix(got, strings.ReplaceAll(body, "\r\n", "\n")) {
		t.Errorf("the copy differs from what was sent:\n%s", got)
	}
	// Postern's Received header names Postfix's HELO; Postfix's own
	// Received is below it.
	if !strings.Contains(got, "from mx.postfix.test") || !strings.Contains(got, "by mx.postfix.test (Postfix)") {
		t.Errorf("Received headers do not show the way through Postfix:\n%.800s", got)
	}
	if !pf.WaitLog(fmt.Sprintf("to=<demo@example.test>, relay=127.0.0.1[127.0.0.1]:%d", in.Port), 5*time.Second) ||
		!strings.Contains(pf.Log(), "status=sent") {
		t.Errorf("no status=sent line for the relay in Postfix's log")
	}
	if !in.WaitLog("to=<demo@example.test>, relay=local", 5*time.Second) {
		t.Errorf("no local delivery line in Postern's log")
	}
}

// postfixCert writes a self-signed certificate and its key for name into
// dir (cert.pem, key.pem, the key mode 0600) and returns their paths.
func postfixCert(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var cb, kp bytes.Buffer
	pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&kp, &pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cf, cb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, kp.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf
}
