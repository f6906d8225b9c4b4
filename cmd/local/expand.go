package main

// Expansion of local users: aliases, ~/.forward and :include: files, and
// the destinations they list. See the file comment of main.go for the
// rules; the privilege of each command and file is the expansion's
// account (the alias table's owner, the .forward's user, the include
// file's owner; default_privs for root).

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"postern/internal/address"
	"postern/internal/log"
	"postern/internal/passwd"
	"postern/internal/privsep"
	"postern/internal/route"
)

// maxForwardFile bounds a .forward or :include: file.
const maxForwardFile = 1 << 20

// expansion is the state of one branch of a recipient's expansion.
type expansion struct {
	orig   address.Address // the recipient qmgr asked for (logs)
	sender string          // envelope sender from here on (owner-X may replace it)
	chain  map[string]bool // aliases, .forward and include files on this path
	class  string          // source of the destinations: alias, forward, include
	acct   *account        // who runs commands and writes files; nil: nobody may
	fwdFor string          // the user whose .forward is being expanded
}

// with returns a copy of e for a nested expansion through key.
func (e *expansion) with(key string) *expansion {
	n := *e
	n.chain = make(map[string]bool, len(e.chain)+1)
	for k := range e.chain {
		n.chain[k] = true
	}
	n.chain[key] = true
	return &n
}

// account is the user a command runs as and a file is written as.
type account struct {
	uid, gid    int
	name, home  string
	shell       string
	groups      []int
	problem     string // why there is no usable account (then uid is -1)
	defaultPriv bool
}

// accountFor gives the account of uid for commands and files: that user,
// or default_privs for root, an unknown uid or -1.
func (l *local) accountFor(uid int) *account {
	if uid > 0 {
		if u, ok := l.users.UserByUID(uid); ok {
			if l.isMailOwner(u.UID) {
				return &account{uid: -1, problem: "the file's owner " + u.Name + " is mail_owner; commands and files never run as it"}
			}
			return l.fromUser(u, false)
		}
	}
	u, ok := l.users.User(l.defaultPrivs)
	if !ok {
		return &account{uid: -1, problem: "default_privs user " + l.defaultPrivs + " does not exist"}
	}
	if u.UID == 0 {
		return &account{uid: -1, problem: "default_privs user " + l.defaultPrivs + " has uid 0"}
	}
	if l.isMailOwner(u.UID) {
		return &account{uid: -1, problem: "default_privs user " + l.defaultPrivs + " is mail_owner"}
	}
	return l.fromUser(u, true)
}

// isMailOwner says whether uid is mail_owner's, under the privilege
// separation: a command or file delivery as mail_owner could read and
// forge every queue file. (Run by an ordinary user, everything is that
// user anyway.)
func (l *local) isMailOwner(uid int) bool {
	return privsep.CanSwitch() && uid == l.ownerUID
}

func (l *local) fromUser(u passwd.User, def bool) *account {
	return &account{uid: u.UID, gid: u.GID, name: u.Name, home: u.Home, shell: u.Shell, groups: l.users.GroupsOf(u.Name), defaultPriv: def}
}

// domainOf gives the domain to put on an unqualified address.
func (dl *delivery) domainOf(a address.Address) string {
	if a.Domain != "" {
		return a.Domain
	}
	return dl.l.route.MyHostname()
}

func (dl *delivery) localUser(e *expansion, a address.Address, depth int) status {
	if dl.looped[strings.ToLower(a.String())] {
		return dl.fail(e, a, bounced("5.4.6", "mail forwarding loop for "+a.String()))
	}
	user := strings.ToLower(a.Local)
	if targets, owner, ok := dl.l.route.AliasOwner(user); ok {
		key := "alias:" + user
		if base, _ := address.SplitExtension(user, dl.l.delim); base != "" && !dl.l.route.HasAlias(user) {
			key = "alias:" + base
		}
		if e.chain[key] {
			return dl.fail(e, a, bounced("5.4.6", "mail forwarding loop for "+a.String()))
		}
		ne := e.with(key)
		ne.class = "alias"
		ne.acct = dl.l.accountFor(owner)
		ne.fwdFor = ""
		if dl.l.ownerSpecial {
			name := strings.TrimPrefix(key, "alias:")
			if !strings.HasPrefix(name, "owner-") && dl.l.route.HasAlias("owner-"+name) {
				// Postfix's owner_request_special: errors about list
				// mail go to the list's owner, not the poster.
				ne.sender = "owner-" + name + "@" + dl.domainOf(a)
			}
		}
		st := sent("alias expanded")
		for _, t := range targets {
			st = worse(st, dl.target(ne, a, user, t, depth))
		}
		return st
	}
	if user == "postmaster" {
		user = "root"
	}
	mb, err := dl.l.route.LocalMailbox(user)
	if err != nil {
		return dl.fail(e, a, bounced("5.1.1", "unknown user: \""+user+"\""))
	}
	return dl.userMailbox(e, a, mb, depth)
}

// userMailbox delivers to a system user: through ~/.forward if there is
// one, else into the mailbox.
func (dl *delivery) userMailbox(e *expansion, a address.Address, mb route.Mailbox, depth int) status {
	u, ok := dl.l.users.User(mb.User)
	if !ok || e.fwdFor == mb.User {
		return dl.mailbox(e, a, mb)
	}
	targets, _, st := dl.readForward(u, a)
	if st != nil {
		return dl.fail(e, a, *st)
	}
	if len(targets) == 0 {
		return dl.mailbox(e, a, mb)
	}
	key := "forward:" + u.Name
	if e.chain[key] {
		return dl.fail(e, a, bounced("5.4.6", "mail forwarding loop for "+a.String()))
	}
	ne := e.with(key)
	ne.class = "forward"
	ne.acct = dl.l.accountFor(u.UID) // default_privs for root's .forward
	ne.fwdFor = u.Name
	res := sent("forwarded")
	for _, t := range targets {
		res = worse(res, dl.target(ne, a, u.Name, t, depth))
	}
	return res
}

// target delivers to one destination of an alias, .forward or include
// file; name is the alias or user being expanded.
func (dl *delivery) target(e *expansion, a address.Address, name, t string, depth int) status {
	kind, op, err := route.Target(t)
	if err != nil {
		return dl.fail(e, a, bounced("5.3.0", e.class+" "+name+": "+err.Error()))
	}
	switch kind {
	case route.KindCommand:
		if !dl.l.allowCmd[e.class] {
			return dl.fail(e, a, bounced("5.7.1", "mail to command is restricted (allow_mail_to_commands does not list "+e.class+")"))
		}
		return dl.command(e, a, op)
	case route.KindFile:
		if !dl.l.allowFile[e.class] {
			return dl.fail(e, a, bounced("5.7.1", "mail to file is restricted (allow_mail_to_files does not list "+e.class+")"))
		}
		return dl.file(e, a, op)
	case route.KindInclude:
		return dl.include(e, a, op, depth)
	case route.KindSelf:
		mb, err := dl.l.route.LocalMailbox(op)
		if err != nil {
			return dl.fail(e, a, bounced("5.1.1", "unknown user: \""+op+"\""))
		}
		ta := address.Address{Local: op, Domain: dl.domainOf(a)}
		ne := *e
		ne.fwdFor = mb.User // no further forwarding
		return dl.mailbox(&ne, ta, mb)
	}
	var ta address.Address
	if strings.Contains(op, "@") {
		p, err := address.Parse(op, true)
		if err != nil {
			return dl.fail(e, a, bounced("5.1.3", e.class+" "+name+": bad address "+op))
		}
		ta = p
	} else {
		ta = address.Address{Local: op, Domain: dl.domainOf(a)}
	}
	switch dl.l.route.Classify(ta) {
	case route.Remote:
		dl.fwd = append(dl.fwd, forward{sender: e.sender, via: a, to: ta, orig: e.orig})
		return sent("forwarded")
	case route.Local:
		local := strings.ToLower(ta.Local)
		if base, _ := address.SplitExtension(local, dl.l.delim); base != "" {
			local = base
		}
		// A user's own name in an alias of that name, or in the user's
		// own .forward, means the mailbox (Postfix's self-reference).
		if local == name || e.fwdFor != "" && local == e.fwdFor {
			mb, err := dl.l.route.LocalMailbox(local)
			if err != nil {
				return dl.fail(e, ta, bounced("5.1.1", "unknown user: \""+local+"\""))
			}
			ne := *e
			ne.fwdFor = mb.User
			return dl.mailbox(&ne, ta, mb)
		}
	}
	return dl.resolve(e, ta, depth+1)
}

// readForward reads the user's .forward (forward_path) as the user. It
// returns the destinations and the file's path; nothing when there is no
// file or it is ignored as insecure; a status to return when the file
// cannot be read.
func (dl *delivery) readForward(u passwd.User, a address.Address) ([]string, string, *status) {
	_, ext := address.SplitExtension(a.Local, dl.l.delim)
	for _, pattern := range dl.l.forwardPath {
		path, ok := dl.l.expandForwardPath(pattern, u, a, ext)
		if !ok {
			continue
		}
		var data []byte
		var insecure string
		err := privsep.AsUser(u.UID, u.GID, func() error {
			var err error
			data, insecure, err = readOwned(path, u.Home, u.UID)
			return err
		})
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if insecure != "" {
			log.Warnf("%s: ignoring insecure .forward file %s of user %s (%s)", dl.id, path, u.Name, insecure)
			continue
		}
		if err != nil {
			st := deferred("4.3.0", "cannot read forward file "+path+": "+err.Error())
			return nil, path, &st
		}
		targets, err := route.ParseForward(data)
		if err != nil {
			log.Warnf("%s: ignoring .forward file %s of user %s: %v", dl.id, path, u.Name, err)
			continue
		}
		if len(targets) > 0 {
			return targets, path, nil
		}
	}
	return nil, "", nil
}

// expandForwardPath expands one forward_path entry for a user; false
// skips it (an unknown $name, or $extension without an extension).
func (l *local) expandForwardPath(pattern string, u passwd.User, a address.Address, ext string) (string, bool) {
	vars := map[string]string{
		"home": u.Home, "user": u.Name, "extension": ext, "recipient_delimiter": l.delim,
		"local": strings.ToLower(a.Local), "domain": strings.ToLower(a.Domain), "shell": u.Shell,
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		var name string
		if i+1 < len(pattern) && pattern[i+1] == '{' {
			end := strings.IndexByte(pattern[i:], '}')
			if end < 0 {
				return "", false
			}
			name = pattern[i+2 : i+end]
			i += end
		} else {
			j := i + 1
			for j < len(pattern) && (pattern[j] == '_' || pattern[j] >= 'a' && pattern[j] <= 'z') {
				j++
			}
			name = pattern[i+1 : j]
			i = j - 1
		}
		v, ok := vars[name]
		if !ok || v == "" && (name == "extension" || name == "recipient_delimiter") {
			return "", false
		}
		b.WriteString(v)
	}
	p := b.String()
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") {
		return "", false
	}
	return p, true
}

// readOwned reads a .forward: the home directory and the file must be
// owned by uid or root and writable by nobody else, and the file must be
// a regular file reached without a symlink. It runs as the user. insecure
// says why a file that exists is not used.
func readOwned(path, home string, uid int) (data []byte, insecure string, err error) {
	var st unix.Stat_t
	if err := unix.Stat(home, &st); err == nil {
		if why := badOwner(st, uid); why != "" {
			return nil, "home directory " + home + " " + why, nil
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, "a symbolic link", nil
		}
		return nil, "", err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, "not a regular file", nil
	}
	if why := badOwner(st, uid); why != "" {
		return nil, why, nil
	}
	data, err = readFD(fd, path)
	return data, "", err
}

// badOwner says what is wrong with a file a user's mail depends on.
func badOwner(st unix.Stat_t, uid int) string {
	switch {
	case int(st.Uid) != uid && st.Uid != 0:
		return fmt.Sprintf("owned by uid %d, not the user or root", st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Sprintf("group or world writable, mode %04o", st.Mode&0o7777)
	}
	return ""
}

// readFD reads a whole small file, at most maxForwardFile bytes.
func readFD(fd int, path string) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32*1024)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
			if len(out) > maxForwardFile {
				return nil, fmt.Errorf("%s: larger than %d bytes", path, maxForwardFile)
			}
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

// include expands an :include: file: read with the privilege of the
// expansion that names it; its commands and files then run as the
// file's owner (default_privs for root).
func (dl *delivery) include(e *expansion, a address.Address, path string, depth int) status {
	key := "include:" + path
	if e.chain[key] {
		return dl.fail(e, a, bounced("5.4.6", "mail forwarding loop for "+a.String()+" (:include:"+path+")"))
	}
	reader := e.acct
	if reader == nil || reader.uid < 0 {
		return dl.fail(e, a, deferred("4.3.5", ":include:"+path+": "+reader.why()))
	}
	var data []byte
	var owner int
	err := privsep.AsUser(reader.uid, reader.gid, func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return errors.New("not a regular file")
		}
		if st.Mode&0o002 != 0 {
			return fmt.Errorf("world writable (mode %04o)", st.Mode&0o7777)
		}
		owner = int(st.Uid)
		data, err = readFD(fd, path)
		return err
	})
	if err != nil {
		st := deferred("4.3.0", "cannot use :include: file "+path+" as user "+reader.name+": "+err.Error())
		if errors.Is(err, unix.ENOENT) {
			st = bounced("5.3.0", ":include: file "+path+" does not exist")
		}
		return dl.fail(e, a, st)
	}
	targets, err := route.ParseForward(data)
	if err != nil {
		return dl.fail(e, a, bounced("5.3.0", ":include:"+path+": "+err.Error()))
	}
	ne := e.with(key)
	ne.class = "include"
	ne.acct = dl.l.accountFor(owner)
	res := sent("include expanded")
	for _, t := range targets {
		res = worse(res, dl.target(ne, a, strings.ToLower(a.Local), t, depth+1))
	}
	if len(targets) == 0 {
		return dl.fail(e, a, bounced("5.3.0", ":include: file "+path+" lists no destination"))
	}
	return res
}

func (acct *account) why() string {
	if acct == nil {
		return "no account to run as"
	}
	return acct.problem
}
