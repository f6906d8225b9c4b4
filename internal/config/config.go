// Package config loads Postern's configuration directory (default
// /etc/postern): postern.conf, the settings, as Postfix's main.cf;
// services.conf, the daemons that master runs, as Postfix's master.cf; and
// the plain text lookup tables that settings name.
//
// postern.conf holds "name = value" lines. A line whose first non-blank
// character is # is a comment (a # later in a line is part of the value,
// as in Postfix); a line that begins with white space continues the one
// before, joined with one space. $name, ${name} and $(name) expand another
// setting, recursively; $$ is a literal $. Every setting is in one table
// (settings.go) that gives its kind, default and documentation; the table
// drives the defaults, the checks, `postern config`, the commented default
// file and postern.conf(5).
//
// Limits and failure modes. Everything is checked at load, so that a
// daemon never meets a bad value later: an unknown setting (with a
// suggestion when a known name is close), a setting given twice, a value
// that does not fit its kind, an expansion of an unknown setting, an
// expansion loop, or an expansion longer than 64 KiB is an error that names
// file:line and the setting. Load reports every problem it finds, not just
// the first, as *Errors. A configuration file over 4 MiB, a lookup table
// over 64 MiB, or a line over 64 KiB (alone, or joined with its
// continuation lines) is an error. Lookup tables are read whole into memory
// when asked for (Config.Maps, LoadTable); Load itself checks only the
// syntax of a map list, not that its files exist. Host names in
// inet_interfaces and services.conf addresses are not resolved: only IP
// addresses (and localhost) are accepted there, so that loading never
// waits on DNS. Unlike Postfix, ${name?value} and ${name:value}
// conditionals are not supported, and a setting given twice is an error
// rather than last-one-wins.
//
// A *Config is immutable once loaded and safe for concurrent use; the
// accessors never panic, and return zero values for unknown names.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File names inside the configuration directory.
const (
	MainFile     = "postern.conf"
	ServicesFile = "services.conf"
)

// Config is a loaded and checked configuration.
type Config struct {
	// Dir is the configuration directory, made absolute; relative table
	// paths are relative to it.
	Dir string

	file     string            // path of postern.conf, for messages
	set      map[string]value  // settings given explicitly
	raw      map[string]string // value before expansion, set or default
	val      map[string]string // value after expansion
	services []Service
}

// value is a setting as written, with where it was written.
type value struct {
	raw  string
	file string
	line int
}

// Load reads postern.conf and services.conf from dir. A file that cannot be
// read is a plain error; a configuration that does not parse or check is a
// *Errors with every problem found.
func Load(dir string) (*Config, error) {
	dir = absDir(dir)
	mainPath := filepath.Join(dir, MainFile)
	main, err := readLimited(mainPath, maxConfFile)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	svcPath := filepath.Join(dir, ServicesFile)
	svc, err := readLimited(svcPath, maxConfFile)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(dir, mainPath, main, svcPath, svc)
}

// Parse builds a configuration from the contents of postern.conf and
// services.conf, as Load does from files; dir is the configuration
// directory that relative paths and $config_directory refer to. A nil
// services argument means no services. It is meant for tests and for
// checking a configuration before it is written.
func Parse(dir string, posternConf, servicesConf []byte) (*Config, error) {
	dir = absDir(dir)
	if len(posternConf) > maxConfFile || len(servicesConf) > maxConfFile {
		return nil, fmt.Errorf("config: %w (limit %d bytes)", errTooBig, maxConfFile)
	}
	return parse(dir, filepath.Join(dir, MainFile), posternConf, filepath.Join(dir, ServicesFile), servicesConf)
}

func parse(dir, mainPath string, main []byte, svcPath string, svc []byte) (*Config, error) {
	c := &Config{Dir: dir, file: mainPath}
	set, errs := parseMain(main, mainPath)
	c.set = set
	errs = append(errs, c.resolve()...)
	services, serrs := parseServices(svc, svcPath, c, len(errs) == 0)
	c.services = services
	errs = append(errs, serrs...)
	if len(errs) > 0 {
		return nil, errs.asError()
	}
	return c, nil
}

// parseMain parses the name = value lines of postern.conf.
func parseMain(data []byte, file string) (map[string]value, Errors) {
	lines, errs := logicalLines(data, file)
	set := make(map[string]value)
	for _, l := range lines {
		if errs.full(file) {
			break
		}
		eq := strings.IndexByte(l.text, '=')
		if eq < 0 {
			errs.add(file, l.line, "", "missing '=' (expected name = value)")
			continue
		}
		name := strings.TrimSpace(l.text[:eq])
		v := strings.TrimSpace(l.text[eq+1:])
		if name == "" {
			errs.add(file, l.line, "", "missing setting name before '='")
			continue
		}
		if _, ok := byName[name]; !ok {
			errs = append(errs, unknownSetting(file, l.line, "", name))
			continue
		}
		if prev, ok := set[name]; ok {
			errs.add(file, l.line, name, "set again (first set at line %d)", prev.line)
			continue
		}
		set[name] = value{raw: v, file: file, line: l.line}
	}
	return set, errs
}

// unknownSetting reports an unknown name; prefix ("-o ") says where it was
// given.
func unknownSetting(file string, line int, prefix, name string) error {
	msg := "unknown setting"
	if s := suggest(name); s != "" {
		msg += "; did you mean " + s + "?"
	}
	return &LineError{File: file, Line: line, Setting: prefix + truncate(name), Err: errors.New(msg)}
}

// errFailed marks a setting whose expansion failed; the failure has already
// been reported where it happened.
var errFailed = errors.New("expansion failed")

// resolve computes the raw and expanded value of every setting and checks
// them.
func (c *Config) resolve() Errors {
	var errs Errors
	c.raw = make(map[string]string, len(table))
	c.val = make(map[string]string, len(table))
	const (
		busy = 1
		done = 2
	)
	state := make(map[string]int, len(table))
	failed := make(map[string]bool)
	var stack []string

	var get func(name string) (string, error)
	get = func(name string) (string, error) {
		switch state[name] {
		case done:
			if failed[name] {
				return "", errFailed
			}
			return c.val[name], nil
		case busy:
			i := len(stack) - 1
			for i > 0 && stack[i] != name {
				i--
			}
			chain := append(append([]string(nil), stack[i:]...), name)
			top := stack[len(stack)-1]
			file, line := c.where(top)
			errs = append(errs, &LineError{File: file, Line: line, Setting: top,
				Err: fmt.Errorf("expansion loop: %s", strings.Join(chain, " -> "))})
			return "", errFailed
		}
		p := byName[name]
		state[name] = busy
		stack = append(stack, name)
		defer func() {
			stack = stack[:len(stack)-1]
			state[name] = done
		}()
		var raw string
		if v, ok := c.set[name]; ok {
			raw = v.raw
		} else if p.def != nil {
			d, err := p.def(c, get)
			if err != nil {
				failed[name] = true
				return "", errFailed
			}
			raw = d
		} else {
			raw = p.Default
		}
		c.raw[name] = raw
		if p.noExpand {
			// The program that reads it expands it, per message.
			c.val[name] = raw
			return raw, nil
		}
		v, err := expand(raw, get)
		if err != nil {
			failed[name] = true
			if err != errFailed {
				file, line := c.where(name)
				errs = append(errs, &LineError{File: file, Line: line, Setting: name, Err: err})
			}
			return "", errFailed
		}
		c.val[name] = v
		return v, nil
	}
	for i := range table {
		get(table[i].Name)
	}

	var defErrs Errors
	for i := range table {
		p := &table[i]
		if failed[p.Name] {
			continue
		}
		if err := checkValue(p, c.val[p.Name]); err != nil {
			file, line := c.where(p.Name)
			if _, ok := c.set[p.Name]; ok {
				errs = append(errs, &LineError{File: file, Line: line, Setting: p.Name, Err: err})
			} else {
				defErrs = append(defErrs, &LineError{File: file, Setting: p.Name,
					Err: fmt.Errorf("default value %q: %w; set %s in %s", truncate(c.raw[p.Name]), err, p.Name, MainFile)})
			}
		}
	}
	// A default that is bad only because of another setting's value
	// (mydomain from a bad myhostname) would repeat that setting's
	// error; report defaults only when nothing else explains them.
	if len(errs) == 0 {
		errs = defErrs
	}
	if len(errs) == 0 {
		lo, hi := c.Duration("minimal_backoff_time"), c.Duration("maximal_backoff_time")
		if hi < lo {
			name := "maximal_backoff_time"
			if !c.IsSet(name) {
				name = "minimal_backoff_time"
			}
			file, line := c.where(name)
			errs.add(file, line, name, "maximal_backoff_time (%s) is less than minimal_backoff_time (%s)", hi, lo)
		}
	}
	return errs
}

// where returns the location of a setting for messages: where it was set,
// or postern.conf without a line for a default.
func (c *Config) where(name string) (string, int) {
	if v, ok := c.set[name]; ok {
		return v.file, v.line
	}
	return c.file, 0
}

// expand replaces $name, ${name} and $(name) in s with get(name), and $$
// with $.
func expand(s string, get func(string) (string, error)) (string, error) {
	if strings.IndexByte(s, '$') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		i++
		if i == len(s) {
			return "", errors.New("$ at the end of the value (write $$ for a literal $)")
		}
		var name string
		switch s[i] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '{', '(':
			closer := byte('}')
			if s[i] == '(' {
				closer = ')'
			}
			end := strings.IndexByte(s[i:], closer)
			if end < 0 {
				return "", fmt.Errorf("missing %c after $%c", closer, s[i])
			}
			name = s[i+1 : i+end]
			i += end + 1
			if strings.ContainsAny(name, "?:") {
				return "", fmt.Errorf("$%c%s%c: conditional expansion is not supported", s[i-end-1], truncate(name), closer)
			}
			if name == "" || !isName(name) {
				return "", fmt.Errorf("%q is not a setting name", truncate(name))
			}
		default:
			j := i
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			if j == i {
				return "", fmt.Errorf("$ followed by %q (write $$ for a literal $)", s[i])
			}
			name = s[i:j]
			i = j
		}
		if _, ok := byName[name]; !ok {
			msg := fmt.Sprintf("$%s: unknown setting", truncate(name))
			if sg := suggest(name); sg != "" {
				msg += "; did you mean $" + sg + "?"
			}
			return "", errors.New(msg)
		}
		v, err := get(name)
		if err != nil {
			return "", err
		}
		if b.Len()+len(v) > maxValue {
			return "", fmt.Errorf("value longer than %d bytes after expansion", maxValue)
		}
		b.WriteString(v)
	}
	if b.Len() > maxValue {
		return "", fmt.Errorf("value longer than %d bytes after expansion", maxValue)
	}
	return b.String(), nil
}

func isNameByte(c byte) bool { return isAlnum(c) || c == '_' }

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// WithOverrides returns a copy of c with opts applied as if they were set
// in postern.conf, as services.conf -o options and command-line -o options
// are; everything is checked again. The error is a *Errors.
func (c *Config) WithOverrides(opts map[string]string) (*Config, error) {
	n, errs := c.withOverrides(opts, "-o", 0)
	return n, errs.asError()
}

// ForService returns the configuration that service s runs with: c with
// its -o options applied.
func (c *Config) ForService(s Service) (*Config, error) {
	n, errs := c.withOverrides(s.Options, s.File, s.Line)
	return n, errs.asError()
}

func (c *Config) withOverrides(opts map[string]string, file string, line int) (*Config, Errors) {
	if c == nil {
		return nil, Errors{errors.New("config: nil configuration")}
	}
	n := &Config{Dir: c.Dir, file: c.file, services: c.services}
	n.set = make(map[string]value, len(c.set)+len(opts))
	for k, v := range c.set {
		n.set[k] = v
	}
	var errs Errors
	for _, name := range sortedKeys(opts) {
		if _, ok := byName[name]; !ok {
			errs = append(errs, unknownSetting(file, line, "-o ", name))
			continue
		}
		n.set[name] = value{raw: strings.TrimSpace(opts[name]), file: file, line: line}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if errs = n.resolve(); len(errs) > 0 {
		return nil, errs
	}
	return n, nil
}

// Get returns the expanded value of a setting: its value in postern.conf or
// from -o, else its default. An unknown name gives "".
func (c *Config) Get(name string) string {
	if c == nil {
		return ""
	}
	return c.val[name]
}

// Raw returns a setting's value before $name expansion, as `postern config`
// prints it. An unknown name gives "".
func (c *Config) Raw(name string) string {
	if c == nil {
		return ""
	}
	return c.raw[name]
}

// Int returns a count or size setting; 0 for an unknown or non-numeric one.
func (c *Config) Int(name string) int64 {
	n, err := parseCount(c.Get(name), 0, 0)
	if err != nil {
		return 0
	}
	return n
}

// Bool returns a yes/no setting; false for an unknown or non-boolean one.
func (c *Config) Bool(name string) bool {
	b, _ := parseBool(c.Get(name))
	return b
}

// Duration returns a time setting; 0 for an unknown or non-time one.
func (c *Config) Duration(name string) time.Duration {
	d, err := parseDuration(c.Get(name), 0, 0)
	if err != nil {
		return 0
	}
	return d
}

// List returns a list setting split at commas and white space; nil for an
// empty or unknown one.
func (c *Config) List(name string) []string {
	l, _ := splitList(c.Get(name))
	return l
}

// Networks returns a network list setting (mynetworks) parsed; nil for an
// unknown one or one that is not a list of networks.
func (c *Config) Networks(name string) NetList {
	n, _ := parseNetworks(c.Get(name))
	return n
}

// Interfaces returns the addresses of inet_interfaces; nil means all.
func (c *Config) Interfaces() []netip.Addr {
	a, _ := parseInterfaces(c.Get("inet_interfaces"))
	return a
}

// IsSet reports whether a setting was given explicitly, in postern.conf or
// as an -o option.
func (c *Config) IsSet(name string) bool {
	if c == nil {
		return false
	}
	_, ok := c.set[name]
	return ok
}

// Source returns where a setting was given: the file (or "-o" for an option
// given to WithOverrides) and line; "" and 0 for a default.
func (c *Config) Source(name string) (file string, line int) {
	if c == nil {
		return "", 0
	}
	v, ok := c.set[name]
	if !ok {
		return "", 0
	}
	return v.file, v.line
}

// Services returns the services of services.conf in file order.
func (c *Config) Services() []Service {
	if c == nil {
		return nil
	}
	out := make([]Service, len(c.services))
	for i, s := range c.services {
		out[i] = s.clone()
	}
	return out
}

// Service returns the service of that name and type, if there is one.
func (c *Config) Service(name, typ string) (Service, bool) {
	if c == nil {
		return Service{}, false
	}
	for _, s := range c.services {
		if s.Name == name && s.Type == typ {
			return s.clone(), true
		}
	}
	return Service{}, false
}

// Default returns the default value of a setting before expansion; for
// myhostname and mydomain, the value computed for this host.
func Default(name string) string {
	p, ok := byName[name]
	if !ok {
		return ""
	}
	if p.def == nil {
		return p.Default
	}
	c, err := Parse("/etc/postern", nil, nil)
	if err != nil {
		return p.Default
	}
	return c.raw[name]
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
