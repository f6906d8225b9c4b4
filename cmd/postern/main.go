// Command postern is the administrator's tool: it writes and edits the
// configuration, checks the whole setup, starts and stops the master, and
// looks into the queue.
//
//	postern [-c DIR] init | config [-n] [-e name=value...] [name...] | check
//	postern [-c DIR] start | start-fg | stop | reload | status
//	postern [-c DIR] queue list [-j] | cat ID... | flush [DOMAIN]
//	postern [-c DIR] queue hold|release|requeue|delete ID...|-|ALL|QUEUE
//	postern [-c DIR] passwd [-s SCHEME] [user]
//	postern [-c DIR] tls new-server-cert [-o DIR] [-days N] [name...]
//
// Exit status: 0 success, 1 the operation failed (the message says why),
// 2 bad usage, 3 (status only) the master is not running.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"postern/internal/config"
)

const usage = `usage: postern [-c DIR] COMMAND [ARGS]

commands:
  init                       write a default postern.conf and services.conf into DIR
  config [-n] [name...]      print settings (-n: only those set in postern.conf)
  config -e name=value...    edit postern.conf in place
  check                      validate configuration, spool, users and tables
  start                      start the master in the background
  start-fg                   run the master in the foreground (systemd, tests)
  stop                       stop the master and every daemon
  reload                     re-read the configuration (refused if it does not load)
  status                     say whether the master runs; count the queue
  queue list [-j]            list the queue (-j: one JSON object per message)
  queue cat ID...            show queue files: envelope and message
  queue flush [DOMAIN]       retry deferred mail now (all, or for DOMAIN)
  queue hold ID...           put on hold (ID... may be -: IDs on stdin, ALL,
                             or a queue name: incoming, active, deferred, hold)
  queue release ID...        take off hold and retry now
  queue requeue ID...        retry now, every pending recipient
  queue delete ID...         remove from the queue, without a bounce
  passwd [-s SCHEME] [user]  hash a password (read from the terminal or stdin)
                             for auth_passwd_file
  tls new-server-cert [-o DIR] [-days N] [name...]
                             make a self-signed certificate and key for smtpd
`

func main() {
	fs := flag.NewFlagSet("postern", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	dir := fs.String("c", defaultConfigDir(), "configuration directory")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	args := fs.Args()
	if len(args) == 0 {
		fs.Usage()
		os.Exit(2)
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "init":
		err = cmdInit(*dir, rest)
	case "config":
		err = cmdConfig(*dir, rest)
	case "check":
		err = cmdCheck(*dir, rest)
	case "start":
		err = cmdStart(*dir, false)
	case "start-fg":
		err = cmdStart(*dir, true)
	case "stop":
		err = cmdStop(*dir)
	case "reload":
		err = cmdReload(*dir)
	case "status":
		err = cmdStatus(*dir)
	case "queue":
		err = cmdQueue(*dir, rest)
	case "tls":
		err = cmdTLS(*dir, rest)
	case "passwd":
		err = cmdPasswd(*dir, rest)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "postern: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		if u, ok := err.(usageError); ok {
			fmt.Fprintf(os.Stderr, "postern %s: %s\n", cmd, string(u))
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "postern %s: %s\n", cmd, strings.TrimRight(err.Error(), "\n"))
		os.Exit(1)
	}
}

// usageError is a mistake on the command line (exit 2).
type usageError string

func (u usageError) Error() string { return string(u) }

func defaultConfigDir() string {
	if d := os.Getenv("POSTERN_CONFIG_DIR"); d != "" {
		return d
	}
	return config.DefaultConfigDirectory
}
