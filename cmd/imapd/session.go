// The IMAP session: imapserver.Session over internal/maildir, the
// authenticated-state commands (mailbox management, LIST, STATUS, APPEND)
// and the glue to run exactly one connection. Selected-state commands are
// in mailbox.go, FETCH in fetch.go, SEARCH in search.go.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postern/internal/config"
	"postern/internal/log"
	"postern/internal/maildir"
	"postern/internal/postlogin"
)

// settings of one session, read from the configuration once.
type settings struct {
	idle        time.Duration
	maxLine     int
	appendLimit int64
	maxLiteral  int64
}

// readSettings reads the imapd_* settings, with the defaults imapd(8)
// documents when a setting is not in the table (yet) or is 0.
func readSettings(cfg *config.Config) settings {
	s := settings{
		idle:        cfg.Duration("imapd_idle_timeout"),
		maxLine:     int(cfg.Int("imapd_max_line_length")),
		appendLimit: cfg.Int("imapd_append_limit"),
		maxLiteral:  cfg.Int("imapd_max_literal_size"),
	}
	if s.idle <= 0 {
		s.idle = 30 * time.Minute
	}
	if s.maxLine <= 0 {
		s.maxLine = 65536
	}
	if s.appendLimit <= 0 {
		s.appendLimit = cfg.Int("message_size_limit")
	}
	if s.appendLimit <= 0 {
		s.appendLimit = 10240000
	}
	// APPENDLIMIT is a 32-bit number in imapserver.
	s.appendLimit = min(s.appendLimit, math.MaxUint32)
	if s.maxLiteral <= 0 {
		s.maxLiteral = s.appendLimit
	}
	// An APPEND literal is bounded by both; advertise what is accepted.
	s.appendLimit = min(s.appendLimit, s.maxLiteral)
	return s
}

// capabilities is what the session advertises. imapserver adds IDLE,
// ENABLE, UNSELECT, LITERAL-, SASL-IR and APPENDLIMIT=n (SessionAppendLimit)
// itself.
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapIMAP4rev2:    {},
	imap.CapUIDPlus:      {},
	imap.CapMove:         {},
	imap.CapNamespace:    {},
	imap.CapLiteralPlus:  {},
	imap.CapSpecialUse:   {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapESearch:      {},
	imap.CapSearchRes:    {},
	imap.CapStatusSize:   {},
	imap.CapBinary:       {},
	imap.CapChildren:     {},
}

// session implements imapserver.SessionIMAP4rev2 and SessionAppendLimit.
type session struct {
	user  string // "user=<name> rip=address", for log lines
	store *maildir.Store
	set   settings
	conn  *imapserver.Conn
	sel   *selected // nil when no mailbox is selected
	// last SEARCH result saved with RETURN (SAVE), as UIDs
	searchRes imap.UIDSet
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

// runSession serves the logged-in client on s.Conn and returns the exit
// status.
func runSession(s *postlogin.Session) int {
	set := readSettings(s.Config)
	rip := s.ClientAddr
	if h, _, err := net.SplitHostPort(rip); err == nil {
		rip = h
	}
	who := fmt.Sprintf("user=<%s> rip=%s", log.Clean(s.User), log.Clean(rip))
	store, err := maildir.OpenStore(s.Mail, true)
	if err != nil {
		log.Errorf("%s: mailbox %s: %v", who, s.Mail, err)
		if s.Handoff && s.Tag != "" {
			// The client's LOGIN is ours to answer.
			fmt.Fprintf(s.Conn, "%s NO [UNAVAILABLE] Mailbox not available\r\n", s.Tag)
		}
		fmt.Fprintf(s.Conn, "* BYE [UNAVAILABLE] Mailbox not available\r\n")
		s.Conn.Close()
		return 1
	}
	if err := store.EnsureSpecial(); err != nil {
		log.Warnf("%s: creating special folders: %v", who, err)
	}
	conn := s.Conn
	if s.Handoff && s.Tag != "" {
		// The client's own connection: its LOGIN is answered here.
		conn = &loginReply{Conn: conn, tag: s.Tag}
	}
	in, out, reason := serve(conn, who, store, set)
	log.Infof("disconnected %s in=%d out=%d reason=%q", who, in, out, reason)
	return 0
}

// serve runs imapserver on the one connection until it ends; who names
// the user in log lines.
func serve(nc net.Conn, who string, store *maildir.Store, set settings) (in, out int64, reason string) {
	sc := newSessionConn(nc, set.idle, set.maxLine, set.maxLiteral)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			sess := &session{user: who, store: store, set: set, conn: c}
			return sess, &imapserver.GreetingData{PreAuth: true}, nil
		},
		Caps:         capabilities,
		Logger:       libLogger{who: who},
		InsecureAuth: true, // the client is authenticated already
	})
	ln := &oneListener{conn: sc, done: make(chan struct{})}
	if err := srv.Serve(ln); err != nil {
		log.Warnf("%s: %v", who, err)
	}
	sc.Close()
	in, out, reason = sc.stats()
	if reason == "" {
		reason = "connection closed"
	}
	return in, out, reason
}

// libLogger passes imapserver's complaints to our log, minus the read
// errors every disconnect produces (the disconnect line says why). What
// it reports about a command is mostly a client's malformed arguments:
// informational, not a warning.
type libLogger struct{ who string }

func (l libLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch {
	case strings.HasPrefix(msg, "failed to read command"):
	case strings.HasPrefix(msg, "handling "):
		log.Infof("%s: %s", l.who, msg)
	default:
		log.Warnf("%s: %s", l.who, msg)
	}
}

// AppendLimit is the APPENDLIMIT capability.
func (s *session) AppendLimit() uint32 { return uint32(s.set.appendLimit) }

func (s *session) Close() error {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	return nil
}

// Login is never called: the session starts authenticated (PREAUTH).
func (s *session) Login(username, password string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Already logged in"}
}

func (s *session) rev2() bool {
	return s.conn != nil && s.conn.EnabledCaps().Has(imap.CapIMAP4rev2)
}

// imapErr turns a store error into the response a client can act on, and
// logs what is the server's fault.
func (s *session) imapErr(op string, err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, maildir.ErrBadName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, maildir.ErrNoFolder):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, maildir.ErrExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, maildir.ErrInUse):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Mailbox is in use, try again"}
	case errors.Is(err, maildir.ErrTooBig):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	case errors.Is(err, maildir.ErrLockTimeout):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Mailbox is locked, try again"}
	case errors.Is(err, maildir.ErrNoMessage):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeExpungeIssued, Text: "Message was expunged"}
	}
	log.Errorf("%s: %s: %v", s.user, op, err)
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: op + " failed, the server log says why"}
}

// mailboxName checks a client's mailbox name (UTF-8, "/" delimited) and
// drops a trailing delimiter, which RFC 9051 allows on CREATE.
func mailboxName(name string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	if name == "" {
		return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Empty mailbox name"}
	}
	return name, nil
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	name, err := mailboxName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return s.imapErr("CREATE", maildir.ErrExists)
	}
	return s.imapErr("CREATE", s.store.Create(name))
}

func (s *session) Delete(name string) error {
	name, err := mailboxName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX cannot be deleted"}
	}
	if s.sel != nil && s.sel.name == name {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Mailbox is selected; close it first"}
	}
	if err := s.store.Delete(name); err != nil {
		return s.imapErr("DELETE", err)
	}
	_ = s.store.Subscribe(name, false) // a missing subscription is fine
	return nil
}

func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	oldName, err := mailboxName(oldName)
	if err != nil {
		return err
	}
	newName, err = mailboxName(newName)
	if err != nil {
		return err
	}
	if newName == "INBOX" {
		return s.imapErr("RENAME", maildir.ErrExists)
	}
	return s.imapErr("RENAME", s.store.Rename(oldName, newName))
}

func (s *session) Subscribe(name string) error {
	name, err := mailboxName(name)
	if err != nil {
		return err
	}
	return s.imapErr("SUBSCRIBE", s.store.Subscribe(name, true))
}

func (s *session) Unsubscribe(name string) error {
	name, err := mailboxName(name)
	if err != nil {
		return err
	}
	return s.imapErr("UNSUBSCRIBE", s.store.Subscribe(name, false))
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

// List answers LIST and LSUB, with LIST-EXTENDED selection and return
// options, SPECIAL-USE attributes and LIST-STATUS.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/', Mailbox: ""})
	}
	folders, err := s.store.Folders()
	if err != nil {
		return s.imapErr("LIST", err)
	}
	subs, err := s.store.Subscriptions()
	if err != nil {
		return s.imapErr("LIST", err)
	}
	subscribed := make(map[string]bool, len(subs))
	for _, n := range subs {
		if strings.EqualFold(n, "INBOX") {
			n = "INBOX"
		}
		subscribed[n] = true
	}
	exists := make(map[string]bool, len(folders))
	for _, f := range folders {
		exists[f] = true
	}
	// A level with children but no directory of its own (Dovecot makes
	// "a/b" without "a") is listed \Noselect \HasChildren, as RFC 3501
	// §6.3.8 asks, so that clients can reach the children.
	parents := map[string]bool{}
	for _, f := range folders {
		for i := strings.IndexByte(f, '/'); i >= 0; {
			if p := f[:i]; !exists[p] && !parents[p] {
				parents[p] = true
			}
			j := strings.IndexByte(f[i+1:], '/')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	names := append([]string(nil), folders...)
	for p := range parents {
		names = append(names, p)
	}
	if len(parents) > 0 && len(names) > 1 {
		sort.Strings(names[1:])
	}
	if options.SelectSubscribed {
		// subscribed names that no longer exist are listed \NonExistent
		for _, n := range subs {
			if !exists[n] && !parents[n] && n != "INBOX" {
				names = append(names, n)
			}
		}
		sort.Strings(names[1:])
	}
	match := func(name string) bool {
		for _, p := range patterns {
			if imapserver.MatchList(name, '/', ref, p) {
				return true
			}
		}
		return false
	}
	hasChildren := func(name string) bool {
		prefix := name + "/"
		for _, f := range folders {
			if strings.HasPrefix(f, prefix) {
				return true
			}
		}
		return false
	}
	subscribedChild := func(name string) bool {
		prefix := name + "/"
		for n := range subscribed {
			if strings.HasPrefix(n, prefix) {
				return true
			}
		}
		return false
	}
	for _, name := range names {
		if !match(name) {
			continue
		}
		data := &imap.ListData{Delim: '/', Mailbox: name}
		if options.SelectSubscribed && !subscribed[name] {
			if !(options.SelectRecursiveMatch && subscribedChild(name)) {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		use := maildir.SpecialUse(name)
		if options.SelectSpecialUse && use == "" {
			continue
		}
		if parents[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren)
		} else if !exists[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		} else if hasChildren(name) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if subscribed[name] && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if use != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(use))
		}
		if options.ReturnStatus != nil && exists[name] {
			st, err := s.status(name, options.ReturnStatus)
			if err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	name, err := mailboxName(name)
	if err != nil {
		return nil, err
	}
	st, err := s.status(name, options)
	return st, s.imapErr("STATUS", err)
}

// status counts a mailbox. For the selected mailbox the folder is synced
// like any other: counts are the mailbox's, not the client's view.
func (s *session) status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	f, err := s.store.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	msgs, err := f.Sync(false)
	if err != nil {
		return nil, err
	}
	data := &imap.StatusData{Mailbox: name}
	var unseen, deleted, recent uint32
	var size int64
	for _, m := range msgs {
		if !strings.ContainsRune(m.Flags, 'S') {
			unseen++
		}
		if strings.ContainsRune(m.Flags, 'T') {
			deleted++
		}
		if strings.HasPrefix(m.Name, "new/") {
			recent++
		}
		size += m.Size
	}
	n := uint32(len(msgs))
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(f.UIDNext())
	}
	if options.UIDValidity {
		data.UIDValidity = f.UIDValidity()
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.NumRecent {
		data.NumRecent = &recent
	}
	if options.AppendLimit {
		l := uint32(s.set.appendLimit)
		data.AppendLimit = &l
	}
	return data, nil
}

// Append stores a message, streamed from the client's literal to disk.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	name, err := mailboxName(name)
	if err != nil {
		return nil, err
	}
	if r.Size() > s.set.appendLimit {
		return nil, s.imapErr("APPEND", maildir.ErrTooBig)
	}
	f, err := s.store.Open(name)
	if errors.Is(err, maildir.ErrNoFolder) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	} else if err != nil {
		return nil, s.imapErr("APPEND", err)
	}
	defer f.Close()
	letters, err := flagLetters(f, options.Flags, true)
	if err != nil {
		return nil, s.imapErr("APPEND", err)
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	uid, err := f.Append(r, letters, date, s.set.appendLimit)
	if err != nil {
		return nil, s.imapErr("APPEND", err)
	}
	if s.sel != nil && s.sel.f.Dir() == f.Dir() {
		s.sel.reloadKeywords()
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: f.UIDValidity()}, nil
}

// Select opens a mailbox; SELECT moves new mail to cur/ (\Recent for this
// session), EXAMINE does not touch the mailbox.
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	name, err := mailboxName(name)
	if err != nil {
		return nil, err
	}
	sel, err := openSelected(s, name, options.ReadOnly)
	if err != nil {
		return nil, s.imapErr("SELECT", err)
	}
	s.sel = sel
	s.searchRes = nil
	return sel.selectData(), nil
}

func (s *session) Unselect() error {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	s.searchRes = nil
	return nil
}

// flagLetters turns IMAP flags into Maildir info letters; keywords get
// letters from the folder's dovecot-keywords (created when create is
// true, else unknown keywords are dropped). \Recent cannot be set.
func flagLetters(f *maildir.Folder, flags []imap.Flag, create bool) (string, error) {
	var b []byte
	for _, fl := range flags {
		if c, ok := systemLetter(fl); ok {
			b = append(b, c)
			continue
		}
		if strings.HasPrefix(string(fl), `\`) {
			continue // \Recent or an unknown system flag
		}
		c, err := f.KeywordLetter(string(fl), create)
		switch {
		case err == nil:
		case !create || errors.Is(err, maildir.ErrNoKeyword):
			continue
		case errors.Is(err, maildir.ErrBadName):
			return "", &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Invalid keyword " + string(fl)}
		case errors.Is(err, maildir.ErrTooManyKeywords):
			return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "No more keywords can be created in this mailbox"}
		default:
			return "", err
		}
		if c != 0 {
			b = append(b, c)
		}
	}
	return sortLetters(string(b)), nil
}

func systemLetter(fl imap.Flag) (byte, bool) {
	switch strings.ToLower(string(fl)) {
	case `\seen`:
		return 'S', true
	case `\answered`:
		return 'R', true
	case `\flagged`:
		return 'F', true
	case `\deleted`:
		return 'T', true
	case `\draft`:
		return 'D', true
	}
	return 0, false
}

func letterFlag(c byte) imap.Flag {
	switch c {
	case 'S':
		return imap.FlagSeen
	case 'R':
		return imap.FlagAnswered
	case 'F':
		return imap.FlagFlagged
	case 'T':
		return imap.FlagDeleted
	case 'D':
		return imap.FlagDraft
	}
	return ""
}

// sortLetters sorts and deduplicates info letters (ASCII order, as
// Maildir wants).
func sortLetters(s string) string {
	var seen [128]bool
	for i := 0; i < len(s); i++ {
		if s[i] < 128 {
			seen[s[i]] = true
		}
	}
	b := make([]byte, 0, len(s))
	for c := 0; c < 128; c++ {
		if seen[c] {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

// loginReply turns the session's PREAUTH greeting into the answer to the
// client's LOGIN ("tag OK [CAPABILITY ...] Logged in") when imap-login
// handed the client's connection over instead of relaying it; everything
// after the first line passes unchanged.
type loginReply struct {
	net.Conn
	tag  string
	buf  []byte
	done bool
}

func (c *loginReply) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	i := bytes.Index(c.buf, []byte("\r\n"))
	if i < 0 {
		if len(c.buf) > 64<<10 {
			return 0, errors.New("session greeting too long")
		}
		return len(p), nil
	}
	c.done = true
	out := []byte(c.tag + " OK Logged in\r\n")
	first := string(c.buf[:i])
	if rest, ok := strings.CutPrefix(first, "* PREAUTH [CAPABILITY "); ok {
		if caps, _, ok := strings.Cut(rest, "]"); ok {
			out = []byte(c.tag + " OK [CAPABILITY " + caps + "] Logged in\r\n")
		}
	}
	out = append(out, c.buf[i+2:]...)
	c.buf = nil
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
