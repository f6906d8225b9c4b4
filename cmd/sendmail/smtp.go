package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"postern/internal/address"
	"postern/internal/config"
	"postern/internal/smtp"
)

// stdioConn is stdin and stdout as a net.Conn for the SMTP engine. It has
// no deadlines: the peer is the local user's own program.
type stdioConn struct {
	r io.Reader
	w io.Writer
}

func (c *stdioConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *stdioConn) Close() error                     { return nil }
func (c *stdioConn) LocalAddr() net.Addr              { return nil }
func (c *stdioConn) RemoteAddr() net.Addr             { return nil }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

// serveSMTP is -bs: one SMTP session on stdin/stdout, each message handed
// to postern-drop with its envelope. The sender is the client's MAIL
// FROM, recorded with the caller's uid as -f is.
func (o *options) serveSMTP(stdin io.Reader, stdout io.Writer) error {
	sc := smtp.ServerConfig{Hostname: "localhost", SMTPUTF8: true, ErrorSleep: -1}
	dir := o.configDir
	if dir == "" {
		dir = config.DefaultConfigDirectory
	}
	if cfg, err := config.Load(dir); err == nil {
		sc.Hostname = cfg.Get("myhostname")
		sc.MaxSize = cfg.Int("message_size_limit")
		sc.LineLimit = int(cfg.Int("line_length_limit"))
	}
	h := &bsHandler{o: o}
	sess := smtp.NewSession(&stdioConn{r: &crlfReader{r: stdin}, w: stdout}, &sc, h)
	err := sess.Serve(context.Background())
	h.Reset()
	if err != nil && !errors.Is(err, smtp.ErrLostConnection) {
		return fail(exSoftware, "%v", err)
	}
	return nil
}

type bsHandler struct {
	o     *options
	from  address.Address
	rcpts []string
}

func (h *bsHandler) Hello(string, bool) *smtp.Reply { return nil }

func (h *bsHandler) Mail(from address.Address, p smtp.MailParams) *smtp.Reply {
	h.from, h.rcpts = from, nil
	return nil
}

func (h *bsHandler) Rcpt(to address.Address, p smtp.RcptParams) *smtp.Reply {
	if len(h.rcpts) >= 10000 {
		return &smtp.Reply{Code: 452, Enhanced: "4.5.3", Text: "Error: too many recipients"}
	}
	h.rcpts = append(h.rcpts, to.String())
	return nil
}

func (h *bsHandler) Reset() { h.from, h.rcpts = address.Address{}, nil }

func (h *bsHandler) Data() (smtp.MessageSink, *smtp.Reply) {
	o := *h.o
	o.extract = false
	args := o.dropArgs(h.from.String(), true, h.rcpts)
	if o.configDir != "" {
		args = append([]string{"-c", o.configDir}, args...)
	}
	cmd := exec.Command(o.dropPath, args...)
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: " + err.Error()}
	}
	k := &bsSink{cmd: cmd, w: w}
	cmd.Stderr = &k.stderr
	if err := cmd.Start(); err != nil {
		return nil, &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: fmt.Sprintf("Error: cannot run %s: %v", o.dropPath, err)}
	}
	return k, nil
}

// bsSink streams one message into postern-drop.
type bsSink struct {
	cmd    *exec.Cmd
	w      io.WriteCloser
	stderr bytes.Buffer
	failed bool
}

func (k *bsSink) Write(p []byte) (int, error) {
	if !k.failed {
		if _, err := k.w.Write(p); err != nil {
			// postern-drop gave up; its exit status says why.
			k.failed = true
		}
	}
	return len(p), nil
}

func (k *bsSink) Commit() *smtp.Reply {
	k.w.Close()
	err := k.cmd.Wait()
	if err == nil {
		return &smtp.Reply{Code: 250, Enhanced: "2.0.0", Text: "Ok: queued"}
	}
	why := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(k.stderr.String()), "postern-drop: "))
	if why == "" {
		why = err.Error()
	}
	if i := strings.IndexByte(why, '\n'); i >= 0 {
		why = why[:i]
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() != 75 && ee.ExitCode() > 0 {
		return &smtp.Reply{Code: 554, Enhanced: "5.3.0", Text: "Error: " + why}
	}
	return &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: " + why}
}

func (k *bsSink) Abort(reason string) {
	// Kill before closing stdin, so that postern-drop cannot take the
	// truncated message as complete.
	k.cmd.Process.Signal(os.Interrupt)
	k.w.Close()
	k.cmd.Wait()
}
