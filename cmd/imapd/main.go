// Command imapd serves IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) on a
// user's Maildir (DESIGN.md §4). It has two modes:
//
//   - acceptor (the service login/imapd, run by master): receives login
//     requests from imap-login, has auth check the password, finds the
//     mailbox and execs this program again as a session for the mailbox's
//     owner. All of that is internal/postlogin.ServeAcceptor.
//   - session (postlogin.IsSession): serves exactly one logged-in client on
//     the stream imap-login relays, with github.com/emersion/go-imap/v2's
//     imapserver carrying the protocol and internal/maildir holding the
//     mail (UIDs in dovecot-uidlist, flags in file names, so that Dovecot,
//     mutt and pop3d agree with us).
//
// Privilege: a session runs as the mailbox's owner (a system user or the
// virtual-mail uid) with no capability and no_new_privs; it reads and
// writes only that owner's Maildir. It refuses to run as root
// (postlogin.StartSession checks).
//
// Limits and failure modes (settings, see imapd(8)):
//   - imapd_idle_timeout (30m, RFC 9051's minimum): an authenticated client
//     silent for that long, IDLE included, gets "* BYE Autologout";
//   - imapd_max_line_length: a longer command line is answered BAD and
//     skipped (a continuation line after a literal closes the session);
//   - imapd_append_limit / imapd_max_literal_size: APPEND larger than that
//     is refused with [TOOBIG] before a byte of it is read; a
//     non-synchronising literal over the limit closes the session, since
//     its bytes cannot be told apart from commands;
//   - a message that vanishes under us (expunged by another session) is
//     skipped with NO [EXPUNGEISSUED]; a changed UIDVALIDITY (a corrupt
//     uid list renumbered) ends the session with BYE, as Dovecot does;
//   - store errors are answered NO with a log line, never a crash.
//
// Each session ends with one log line:
// "imapd: disconnected user=U in=N out=N reason=R".
package main

import (
	"os"

	"postern/internal/log"
	"postern/internal/postlogin"
	"postern/internal/service"
)

func main() {
	if postlogin.IsSession() {
		s, err := postlogin.StartSession("imapd")
		if err != nil {
			log.Fatalf("session start: %v", err)
		}
		os.Exit(runSession(s))
	}
	d := service.Init("imapd")
	postlogin.ServeAcceptor(d)
}
