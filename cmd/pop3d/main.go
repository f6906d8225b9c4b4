// Command pop3d is Postern's POP3 server behind the login front end
// (DESIGN.md §2, §4). It has two modes:
//
//   - acceptor: master runs it as the service login/pop3d; pop3-login
//     sends it a login request, it checks the password with auth, finds
//     the mailbox and execs this same binary as a session under the
//     mailbox owner's uid (package postlogin does all of that);
//   - session (this file and session.go): the exec'd child. It opens the
//     owner's Maildir INBOX, takes the POP3 session lock, writes its first
//     line ("+OK Logged in." or "-ERR [IN-USE] ..."), and then serves the
//     TRANSACTION state (RFC 1939: STAT, LIST, RETR, DELE, NOOP, RSET,
//     TOP, UIDL, CAPA, QUIT). It talks to a plaintext client on the
//     client's own connection, which pop3-login handed over, and to a TLS
//     client through the stream pop3-login relays (decrypted).
//
// Privilege: the session runs as the mailbox owner (the system user, or
// the virtual-mail uid) with no capability; postlogin.StartSession refuses
// to run it as root. It reads and writes only that owner's Maildir.
//
// Limits and failure modes:
//   - a command line is at most pop3.MaxLine octets ("-ERR line too long"
//     and the session ends); 20 bad or unknown commands end it too;
//   - pop3d_idle_timeout (default 10m) without a command, or without the
//     client taking data, ends the session;
//   - the message list is a snapshot taken at login (POP3 numbers never
//     change in a session); mail arriving later is seen by the next
//     session. A message removed meanwhile by another client (IMAP)
//     answers "-ERR" to RETR/TOP;
//   - only QUIT enters the UPDATE state: messages marked with DELE are
//     removed and retrieved ones get the Seen flag. A connection that ends
//     any other way (drop, timeout, line too long) changes nothing;
//   - a second POP3 session on the same mailbox gets "-ERR [IN-USE]" and
//     ends (exit status 0): the lock is the store's flock, which a dead
//     session releases;
//   - RETR reads a message once, in 64 KiB pieces, converting LF to CRLF
//     and dot-stuffing in the same pass into the reply buffer, which goes
//     out in one write when the client has no further command pipelined.
package main

import (
	"os"

	"postern/internal/log"
	"postern/internal/postlogin"
	"postern/internal/service"
)

func main() {
	if postlogin.IsSession() {
		s, err := postlogin.StartSession("pop3d")
		if err != nil {
			log.Fatalf("pop3d session: %v", err)
		}
		os.Exit(runSession(s))
	}
	d := service.Init("pop3d")
	postlogin.ServeAcceptor(d)
}
