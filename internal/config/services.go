package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Service types.
const (
	TypeInet = "inet"
	TypeUnix = "unix"
	TypePass = "pass"
)

// Service is one line of services.conf, with its defaults applied.
type Service struct {
	// Name is the service name as written: for an inet service a port, a
	// port name, host:port or [ipv6]:port; otherwise the socket name.
	Name string
	// Type is inet, unix or pass.
	Type string
	// Private is true for a socket in private/ (reachable by the mail
	// system only), false for public/. Always false for inet.
	Private bool
	// Unpriv is true when the daemon runs as mail_owner, false as root.
	Unpriv bool
	// Chroot is true when the daemon runs chrooted to queue_directory.
	Chroot bool
	// Wakeup is how often, in seconds, master triggers the service; 0 never.
	Wakeup int
	// MaxProc is the most processes of the service; 0 means no limit.
	MaxProc int
	// Command is the program's name in daemon_directory; it has no /.
	Command string
	// Args are the command's arguments, without the -o options.
	Args []string
	// Options are the -o name=value settings, unexpanded, which override
	// postern.conf for this service (see Config.ForService).
	Options map[string]string
	// File and Line say where the service was defined.
	File string
	Line int
}

func (s Service) clone() Service {
	s.Args = append([]string(nil), s.Args...)
	if s.Options != nil {
		o := make(map[string]string, len(s.Options))
		for k, v := range s.Options {
			o[k] = v
		}
		s.Options = o
	}
	return s
}

// portNames resolves the port names an inet service may use, so that no
// /etc/services is needed (nor present in a chroot).
var portNames = map[string]int{
	"smtp":        25,
	"submission":  587,
	"submissions": 465,
	"smtps":       465,
	"pop3":        110,
	"pop3s":       995,
	"imap":        143,
	"imaps":       993,
}

// PortNames returns the built-in table of port names.
func PortNames() map[string]int {
	m := make(map[string]int, len(portNames))
	for k, v := range portNames {
		m[k] = v
	}
	return m
}

// inetAddr is a parsed inet service name; host "" means inet_interfaces.
type inetAddr struct {
	host string // IP address, or "localhost"
	port int
}

func parsePort(p string) (int, error) {
	if n, ok := portNames[strings.ToLower(p)]; ok {
		return n, nil
	}
	n, err := parseCount(p, 1, 65535)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number (1-65535) or a known port name", truncate(p))
	}
	return int(n), nil
}

// parseInetName parses an inet service name: port, name, host:port or
// [ipv6]:port.
func parseInetName(name string) (inetAddr, error) {
	if !strings.Contains(name, ":") {
		port, err := parsePort(name)
		return inetAddr{port: port}, err
	}
	host, port, err := net.SplitHostPort(name)
	if err != nil {
		return inetAddr{}, fmt.Errorf("%q is not host:port or [ipv6]:port", truncate(name))
	}
	n, err := parsePort(port)
	if err != nil {
		return inetAddr{}, err
	}
	if strings.EqualFold(host, "localhost") {
		return inetAddr{host: "localhost", port: n}, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return inetAddr{}, fmt.Errorf("%q: the host must be an IP address or localhost", truncate(name))
	}
	if a.Is6() && !a.Is4In6() && !strings.HasPrefix(name, "[") {
		return inetAddr{}, fmt.Errorf("%q: write an IPv6 address in brackets", truncate(name))
	}
	return inetAddr{host: a.Unmap().String(), port: n}, nil
}

// LoginPrefix starts the name of a unix service whose socket is in the
// spool's login/ directory (login/pop3d, login/imapd): the one directory
// the login front ends can reach from their chroot.
const LoginPrefix = "login/"

// checkSocketName accepts a name for a socket in private/ or public/.
func checkSocketName(name string) error {
	if name == "" || len(name) > 64 || name == "." || name == ".." || name[0] == '-' {
		return fmt.Errorf("%q is not a valid socket name", truncate(name))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return fmt.Errorf("%q is not a valid socket name (letters, digits, _ - . only)", truncate(name))
		}
	}
	return nil
}

// maxServices bounds services.conf; the checks for collisions between
// services grow with its square.
const maxServices = 1000

// maxSunPath is the room for a socket path in sockaddr_un, less the NUL.
const maxSunPath = 107

// ListenAddr returns where the service listens. For inet, "host:port"
// addresses for net.Listen("tcp", ...), from the service name and
// inet_interfaces (":port" means every address). For unix and pass, the
// socket path relative to queue_directory: "private/NAME" or "public/NAME".
func (s Service) ListenAddr(c *Config) ([]string, error) {
	switch s.Type {
	case TypeInet:
		a, err := parseInetName(s.Name)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		port := strconv.Itoa(a.port)
		var hosts []netip.Addr
		switch a.host {
		case "":
			hosts = c.Interfaces()
			if hosts == nil {
				return []string{":" + port}, nil
			}
		case "localhost":
			hosts = loopbacks
		default:
			return []string{net.JoinHostPort(a.host, port)}, nil
		}
		out := make([]string, len(hosts))
		for i, h := range hosts {
			out[i] = net.JoinHostPort(h.String(), port)
		}
		return out, nil
	case TypeUnix, TypePass:
		if rest, ok := strings.CutPrefix(s.Name, LoginPrefix); ok {
			// A session service that the chrooted login front ends
			// reach: its socket lives in the spool's login/ directory.
			if err := checkSocketName(rest); err != nil {
				return nil, fmt.Errorf("service %s: %w", s.Name, err)
			}
			return []string{s.Name}, nil
		}
		if err := checkSocketName(s.Name); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		if s.Private {
			return []string{"private/" + s.Name}, nil
		}
		return []string{"public/" + s.Name}, nil
	}
	return nil, fmt.Errorf("service %s: unknown type %q", s.Name, s.Type)
}

// parseServices parses services.conf. The -o options are checked against
// base only when checkOptions is set (base itself is good).
func parseServices(data []byte, file string, base *Config, checkOptions bool) ([]Service, Errors) {
	lines, errs := logicalLines(data, file)
	var out []Service
	// Where each socket name and each inet port was first used, to
	// find services that would collide when master binds them.
	sockets := make(map[string]int)
	type inetAt struct {
		addr inetAddr
		line int
	}
	ports := make(map[int][]inetAt)
	for _, l := range lines {
		if errs.full(file) {
			break
		}
		if len(out) == maxServices {
			errs.add(file, l.line, "", "more than %d services", maxServices)
			break
		}
		s, err := parseServiceLine(l.text, file, l.line, base)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.Type == TypeInet {
			addr, _ := parseInetName(s.Name)
			dup := false
			for _, p := range ports[addr.port] {
				if hostsOverlap(listenHosts(p.addr, base), listenHosts(addr, base)) {
					errs.add(file, l.line, s.Name, "inet service listens on the same port %d as the one at line %d", addr.port, p.line)
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			ports[addr.port] = append(ports[addr.port], inetAt{addr, l.line})
		} else {
			if at, ok := sockets[s.Name]; ok {
				errs.add(file, l.line, s.Name, "service name already used at line %d (unix and pass services share one socket name space)", at)
				continue
			}
			sockets[s.Name] = l.line
		}
		if checkOptions && len(s.Options) > 0 {
			if _, oerrs := base.withOverrides(s.Options, file, l.line); len(oerrs) > 0 {
				for _, e := range oerrs {
					var le *LineError
					if errors.As(e, &le) && le.File == file && le.Line == l.line {
						errs = append(errs, e)
					} else {
						errs.add(file, l.line, s.Name, "with its -o options: %w", e)
					}
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out, errs
}

// listenHosts returns the addresses an inet service binds; nil means all.
func listenHosts(a inetAddr, c *Config) []netip.Addr {
	switch a.host {
	case "":
		return c.Interfaces()
	case "localhost":
		return loopbacks
	}
	h, _ := netip.ParseAddr(a.host)
	return []netip.Addr{h}
}

// hostsOverlap reports whether two bind address lists (nil = all) share an
// address, so that the second bind would fail.
func hostsOverlap(a, b []netip.Addr) bool {
	if a == nil || b == nil {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// parseServiceLine parses one entry: service type private unpriv chroot
// wakeup maxproc command [args...].
func parseServiceLine(text, file string, line int, base *Config) (Service, error) {
	fail := func(setting, format string, args ...any) (Service, error) {
		return Service{}, &LineError{File: file, Line: line, Setting: setting, Err: fmt.Errorf(format, args...)}
	}
	f, err := splitFields(text)
	if err != nil {
		return fail("", "%v", err)
	}
	if len(f) < 8 {
		return fail("", "%d fields; expected service type private unpriv chroot wakeup maxproc command [args...]", len(f))
	}
	s := Service{Name: f[0], Type: f[1], File: file, Line: line}
	switch s.Type {
	case TypeInet:
		if _, err := parseInetName(s.Name); err != nil {
			return fail(truncate(s.Name), "%v", err)
		}
	case TypeUnix, TypePass:
		if err := checkSocketName(strings.TrimPrefix(s.Name, LoginPrefix)); err != nil {
			return fail("", "%v", err)
		}
	default:
		return fail(truncate(s.Name), "type %q is not inet, unix or pass", truncate(s.Type))
	}
	yn := func(col, v string, def bool) (bool, error) {
		switch v {
		case "-":
			return def, nil
		case "y":
			return true, nil
		case "n":
			return false, nil
		}
		return false, fmt.Errorf("%s column is %q; expected y, n or -", col, truncate(v))
	}
	if s.Private, err = yn("private", f[2], s.Type != TypeInet); err != nil {
		return fail(s.Name, "%v", err)
	}
	if s.Type == TypeInet && s.Private {
		return fail(s.Name, "an inet service cannot be private; write n or -")
	}
	if s.Unpriv, err = yn("unpriv", f[3], true); err != nil {
		return fail(s.Name, "%v", err)
	}
	if s.Chroot, err = yn("chroot", f[4], true); err != nil {
		return fail(s.Name, "%v", err)
	}
	num := func(col, v string, def int, hi int64) (int, error) {
		if v == "-" {
			return def, nil
		}
		n, err := parseCount(v, 0, hi)
		if err != nil {
			return 0, fmt.Errorf("%s column: %v", col, err)
		}
		return int(n), nil
	}
	if s.Wakeup, err = num("wakeup", f[5], 0, 100*day); err != nil {
		return fail(s.Name, "%v", err)
	}
	if s.MaxProc, err = num("maxproc", f[6], int(base.Int("default_process_limit")), 1<<20); err != nil {
		return fail(s.Name, "%v", err)
	}
	s.Command = f[7]
	if strings.Contains(s.Command, "/") || s.Command == "." || s.Command == ".." {
		return fail(s.Name, "command %q must be a program name in daemon_directory, without a /", truncate(s.Command))
	}
	if s.Type != TypeInet {
		if p := base.Get("queue_directory") + "/public/" + s.Name; len(p) > maxSunPath {
			return fail(s.Name, "socket path %s is longer than %d bytes", truncate(p), maxSunPath)
		}
	}
	for i := 8; i < len(f); i++ {
		a := f[i]
		var opt string
		switch {
		case a == "-o":
			if i+1 == len(f) {
				return fail(s.Name, "-o without name=value")
			}
			i++
			opt = f[i]
		case strings.HasPrefix(a, "-o") && strings.Contains(a, "="):
			opt = a[2:]
		default:
			s.Args = append(s.Args, a)
			continue
		}
		eq := strings.IndexByte(opt, '=')
		if eq < 0 {
			return fail(s.Name, "-o %q: expected name=value", truncate(opt))
		}
		name, v := strings.TrimSpace(opt[:eq]), strings.TrimSpace(opt[eq+1:])
		if _, ok := byName[name]; !ok {
			err := unknownSetting(file, line, "-o ", name)
			return Service{}, err
		}
		if s.Options == nil {
			s.Options = make(map[string]string)
		}
		if _, ok := s.Options[name]; ok {
			return fail(s.Name, "-o %s given twice", name)
		}
		s.Options[name] = v
	}
	return s, nil
}
