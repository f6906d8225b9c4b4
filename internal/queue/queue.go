// Package queue is Postern's durable mail queue: the spool directories,
// queue IDs, the queue file format, and the moves between directories
// (DESIGN.md §3).
//
// A message is one file, named by its queue ID, in exactly one of the
// queue directories. cleanup writes it in tmp/ and commits it into
// incoming/ (Create, Write, Commit); qmgr moves it between incoming/,
// active/, deferred/ and hold/ with rename(2) (Move); delivery agents read
// it through a descriptor (Open) and qmgr marks recipients done in place
// (SetStatus, Sync). A file whose every recipient is done goes to free/
// (Recycle), where Create finds it again for a new message: inodes are
// reused rather than freed and allocated again (pool.go says why).
//
// File format, version 1. Text envelope, then the message:
//
//	POSTERN-QUEUE 1
//	arrival 1700000000123456789          (Unix nanoseconds)
//	size 00000000000000004312            (message bytes; fixed width)
//	schedule 0000000003 00000000001700003600
//	                                     (attempts, next attempt in Unix
//	                                     seconds; fixed width)
//	sender alice@example.org
//	client_name mx.example.org
//	client_addr 192.0.2.7
//	helo mx.example.org
//	protocol ESMTP
//	sasl_username -
//	body 8BITMIME
//	smtputf8 no
//	ret FULL
//	envid -
//	uid 1000                             (optional: a local submitter)
//	rcpt - rfc822;bob@example.net SUCCESS,FAILURE bob@example.net
//	rcpt D - - carol@example.net
//	end-envelope
//	<the message, CRLF lines, as received>
//
// Each record is one line, a name, one space, the value(s), LF. A value
// is escaped so that any byte string survives: '%', bytes up to and
// including space, DEL, bytes that are not valid UTF-8 and runes that are
// not printable become %XX (upper-case hex); printable UTF-8 stays as it
// is, so a queue file can be read with less(1). The empty string is
// written "-", and a value that is exactly "-" is written "%2D". A rcpt
// record holds a status byte at a fixed place (offset 5 in the line: '-'
// pending, 'D' delivered, 'F' failed and bounced, 'W' still pending, delay
// warning sent), then ORCPT, NOTIFY and the address. The size and schedule
// records have fixed width so that they are rewritten in place with one
// pwrite; the reason of the last deferral is not kept in the file (qmgr
// logs it). The size record is written when the file is committed; the
// reader checks it against the file's length, so a truncated file is
// detected as corrupt.
//
// Limits. The reader refuses an envelope over MaxEnvelope bytes, more than
// MaxRecipients recipients, a record over MaxRecord bytes, an unknown or
// repeated record, a missing arrival, sender, size or schedule record, or
// no recipient, and says what and at which line; the writer refuses what
// the reader would refuse, so that cleanup never commits a file qmgr cannot
// read. Messages themselves are not limited here (cleanup enforces
// message_size_limit).
//
// Durability. Commit returns only after the file's data is on disk
// (fdatasync), the file is renamed into incoming/, and an fsync of
// incoming/ that began after that rename has completed; concurrent commits
// share one directory fsync (group commit). Moves do not fsync (Recover
// repairs whatever a crash leaves), except MoveSync. Status and schedule
// updates are pwrites that reach the disk at Sync (fdatasync); callers
// batch them. An error from Commit means the message must be treated as
// not accepted; it may nevertheless have reached incoming/ (a later
// duplicate delivery, never a loss).
//
// Moves never replace an existing file (renameat2 RENAME_NOREPLACE, or a
// check before rename on file systems without it), so that an ID clash
// cannot silently destroy a message.
//
// Writers hold a flock on their tmp/ file until Commit or Abort, so that
// Recover, run while cleanup is still accepting mail, removes only the
// leftovers of dead writers.
//
// Queue IDs are 18 upper-case hex digits: 13 of the Unix time in
// microseconds and 5 of a per-process sequence seeded at random. They sort
// by arrival time and are strictly increasing within one process even if
// the clock steps back. Two processes collide only if they draw the same
// microsecond and the same sequence number (odds of 2^-20 then); O_EXCL in
// tmp/ and the no-replace rename into incoming/ refuse the second while the
// first is still in either place, and the caller retries with a new ID. A
// clash with a file already moved on to active/ or deferred/ is not
// detected. The 13 digits last until the year 2112.
package queue

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"sync"
	"time"
)

// Names of the spool directories.
const (
	Maildrop = "maildrop"
	Tmp      = "tmp"
	Incoming = "incoming"
	Active   = "active"
	Deferred = "deferred"
	Hold     = "hold"
	Corrupt  = "corrupt"
	Private  = "private"
	Public   = "public"
	PID      = "pid"
	// Empty is the chroot of daemons that need nothing on disk at all
	// (smtp): root's, mode 0555, and kept empty.
	Empty = "empty"
	// Login is the chroot of the login front ends (pop3-login,
	// imap-login): root's, mode 0755, holding only the sockets of the
	// session services they hand authenticated clients to (login/pop3d,
	// login/imapd). As Dovecot's login directory: a login process reaches
	// nothing else.
	Login = "login"
)

// Owner kinds of the spool directories.
const (
	// OwnerMail is the mail system's unprivileged user and its group.
	OwnerMail = "owner"
	// OwnerMailSetgid is that user, with the group of the setgid
	// submission program (postdrop).
	OwnerMailSetgid = "owner:setgid"
	// OwnerRoot is root.
	OwnerRoot = "root"
)

// Dir describes one spool directory as master must create it.
type Dir struct {
	Name  string
	Mode  os.FileMode // permissions, with os.ModeSticky for maildrop/
	Owner string      // OwnerMail, OwnerMailSetgid or OwnerRoot
}

// Dirs lists every spool directory with its mode and owner (DESIGN.md §3).
var Dirs = []Dir{
	{Name: Maildrop, Mode: os.ModeSticky | 0o730, Owner: OwnerMailSetgid},
	{Name: Tmp, Mode: 0o700, Owner: OwnerMail},
	{Name: Incoming, Mode: 0o700, Owner: OwnerMail},
	{Name: Active, Mode: 0o700, Owner: OwnerMail},
	{Name: Deferred, Mode: 0o700, Owner: OwnerMail},
	{Name: Hold, Mode: 0o700, Owner: OwnerMail},
	{Name: Corrupt, Mode: 0o700, Owner: OwnerMail},
	{Name: Free, Mode: 0o700, Owner: OwnerMail},
	{Name: Private, Mode: 0o700, Owner: OwnerMail},
	{Name: Public, Mode: 0o710, Owner: OwnerMailSetgid},
	{Name: PID, Mode: 0o700, Owner: OwnerRoot},
	{Name: Empty, Mode: 0o555, Owner: OwnerRoot},
	{Name: Login, Mode: 0o755, Owner: OwnerRoot},
}

// UnixMode returns the mode as chmod(2) wants it, e.g. 01730.
func (d Dir) UnixMode() uint32 {
	m := uint32(d.Mode.Perm())
	if d.Mode&os.ModeSticky != 0 {
		m |= 0o1000
	}
	if d.Mode&os.ModeSetgid != 0 {
		m |= 0o2000
	}
	if d.Mode&os.ModeSetuid != 0 {
		m |= 0o4000
	}
	return m
}

// moveDirs are the directories Move and MoveSync accept.
var moveDirs = map[string]bool{Incoming: true, Active: true, Deferred: true, Hold: true, Corrupt: true}

// listDirs are the directories List and Path accept: those that hold
// files named by queue ID.
var listDirs = map[string]bool{Maildrop: true, Tmp: true, Incoming: true, Active: true, Deferred: true, Hold: true, Corrupt: true}

// ID is a queue ID; see the package comment.
type ID string

// IDLen is the length of a queue ID.
const IDLen = 18

const (
	tsDigits  = 13
	seqDigits = 5
	seqMask   = 1<<(4*seqDigits) - 1
)

var idGen struct {
	sync.Mutex
	ts  int64
	seq uint32
}

func init() {
	var b [4]byte
	rand.Read(b[:])
	idGen.seq = binary.BigEndian.Uint32(b[:]) & seqMask
}

// NewID returns a fresh queue ID, greater than every ID this process
// returned before.
func NewID() ID {
	now := time.Now().UnixMicro()
	idGen.Lock()
	ts, seq := now, (idGen.seq+1)&seqMask
	if ts < idGen.ts || ts == idGen.ts && seq <= idGen.seq {
		// Same microsecond with the sequence wrapped, or the clock
		// stepped back: stay just above the last ID.
		ts, seq = idGen.ts, idGen.seq+1
		if seq > seqMask {
			ts, seq = ts+1, 0
		}
	}
	idGen.ts, idGen.seq = ts, seq
	idGen.Unlock()
	return formatID(ts, seq)
}

func formatID(ts int64, seq uint32) ID {
	const hex = "0123456789ABCDEF"
	var b [IDLen]byte
	for i := tsDigits - 1; i >= 0; i-- {
		b[i] = hex[ts&15]
		ts >>= 4
	}
	for i := IDLen - 1; i >= tsDigits; i-- {
		b[i] = hex[seq&15]
		seq >>= 4
	}
	return ID(b[:])
}

// ValidID reports whether s is a well-formed queue ID: exactly IDLen
// characters of [0-9A-F]. Every ID from a peer or a directory listing
// goes through it before it becomes part of a path.
func ValidID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Time returns the arrival time encoded in a valid ID, to the microsecond.
func (id ID) Time() (time.Time, bool) {
	if !ValidID(string(id)) {
		return time.Time{}, false
	}
	var us int64
	for i := 0; i < tsDigits; i++ {
		c := id[i]
		d := int64(c - '0')
		if c >= 'A' {
			d = int64(c-'A') + 10
		}
		us = us<<4 | d
	}
	return time.UnixMicro(us), true
}
