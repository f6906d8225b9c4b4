package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"postern/internal/auth"
)

// cmdPasswd is `postern passwd [-s SCHEME] [user]`: it hashes a password
// for a passwd-file (auth_passwd_file). The password is read from the
// terminal with echo off, twice, when standard input is a terminal, and
// otherwise as one line of standard input; never from the arguments,
// which every user on the host can see in ps. It prints {SCHEME}hash, or
// user:{SCHEME}hash when a user is named, ready to append to the file.
// The configuration directory is not needed.
func cmdPasswd(dir string, args []string) error {
	return hashPassword(args, os.Stdin, os.Stdout, os.Stderr)
}

func hashPassword(args []string, in *os.File, out, prompt io.Writer) error {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	scheme := fs.String("s", auth.DefaultScheme, "hash scheme")
	if err := fs.Parse(args); err != nil {
		return usageError("usage: postern passwd [-s SCHEME] [user]")
	}
	if fs.NArg() > 1 {
		return usageError("usage: postern passwd [-s SCHEME] [user]")
	}
	s, err := auth.CanonicalScheme(*scheme)
	if err != nil {
		return usageError(err.Error())
	}
	user := ""
	if fs.NArg() == 1 {
		user = fs.Arg(0)
		if _, err := auth.CanonicalUser(user); err != nil {
			return usageError(err.Error())
		}
	}
	pw, err := readPassword(in, prompt)
	if err != nil {
		return err
	}
	h, err := auth.Hash(s, pw)
	if err != nil {
		return err
	}
	if user != "" {
		h = user + ":" + h
	}
	_, err = fmt.Fprintln(out, h)
	return err
}

// readPassword reads the password from a terminal (twice, echo off) or
// one line from anything else.
func readPassword(in *os.File, prompt io.Writer) (string, error) {
	// The limit counts the line end: one byte more is a too-long password.
	br := bufio.NewReaderSize(in, auth.MaxPasswordLen+2)
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		pw, err := readLine(br)
		if err != nil {
			return "", fmt.Errorf("standard input: %w", err)
		}
		return pw, nil
	}
	restore, err := echoOff(fd, old)
	if err != nil {
		return "", err
	}
	defer restore()
	fmt.Fprint(prompt, "Password: ")
	pw, err := readLine(br)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	fmt.Fprint(prompt, "Retype password: ")
	again, err := readLine(br)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	if pw != again {
		return "", errors.New("the passwords do not match")
	}
	return pw, nil
}

// echoOff turns off the terminal's echo and returns what turns it back
// on; an interrupt in between restores the terminal before it exits, so
// that the shell is not left blind.
func echoOff(fd int, old *unix.Termios) (func(), error) {
	t := *old
	t.Lflag &^= unix.ECHO | unix.ECHOE | unix.ECHOK
	t.Lflag |= unix.ICANON
	// TCSETSF: type-ahead from before the prompt, typed with echo on,
	// is dropped rather than taken as the password.
	if err := unix.IoctlSetTermios(fd, unix.TCSETSF, &t); err != nil {
		return nil, fmt.Errorf("terminal: turn off echo: %w", err)
	}
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		select {
		case <-sig:
			unix.IoctlSetTermios(fd, unix.TCSETS, old)
			fmt.Fprintln(os.Stderr)
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		unix.IoctlSetTermios(fd, unix.TCSETS, old)
	}, nil
}

// readLine returns one line without its end (LF or CRLF). End of input
// after some bytes ends the line too. Empty and over-long passwords are
// errors.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return "", fmt.Errorf("password longer than %d bytes", auth.MaxPasswordLen)
	case err == io.EOF && len(line) == 0:
		return "", errors.New("no password: end of input")
	case err != nil && err != io.EOF:
		return "", err
	}
	s := strings.TrimSuffix(string(line), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", errors.New("empty password")
	}
	if len(s) > auth.MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", auth.MaxPasswordLen)
	}
	return s, nil
}
