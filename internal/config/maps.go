package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Map types.
const (
	MapTexthash = "texthash"
	MapHash     = "hash"
	MapStatic   = "static"
)

// MapRef is one entry of a map list setting: a table type and its name (a
// path for texthash and hash, the value for static).
type MapRef struct {
	Type string
	Name string

	table *Table // loaded table, nil for static or before loading
}

// String returns the entry as written in postern.conf.
func (m MapRef) String() string {
	if m.Type == MapStatic && strings.ContainsAny(m.Name, " \t,{}") {
		return m.Type + ":{" + m.Name + "}"
	}
	return m.Type + ":" + m.Name
}

// Table returns the loaded table; nil for static.
func (m MapRef) Table() *Table { return m.table }

// Maps is a parsed and loaded map list setting, searched in order.
type Maps []MapRef

// parseMapList parses a map list value without loading anything. Relative
// paths are made relative to dir when dir is not empty.
func parseMapList(v, dir string, aliases bool) (Maps, error) {
	entries, err := splitList(v)
	if err != nil {
		return nil, err
	}
	var out Maps
	for _, e := range entries {
		if strings.HasPrefix(e, "/") {
			out = append(out, MapRef{Type: MapTexthash, Name: filepath.Clean(e)})
			continue
		}
		i := strings.IndexByte(e, ':')
		if i < 0 {
			return nil, fmt.Errorf("%q is not a type:name table or a /path", truncate(e))
		}
		typ, name := e[:i], unbrace(e[i+1:])
		switch typ {
		case MapTexthash, MapHash:
			if name == "" {
				return nil, fmt.Errorf("%q: missing path", truncate(e))
			}
			if !filepath.IsAbs(name) && dir != "" {
				name = filepath.Join(dir, name)
			}
			out = append(out, MapRef{Type: typ, Name: filepath.Clean(name)})
		case MapStatic:
			out = append(out, MapRef{Type: typ, Name: name})
		default:
			return nil, fmt.Errorf("%q: unsupported table type %q (supported: texthash, hash, static)", truncate(e), truncate(typ))
		}
	}
	return out, nil
}

// Maps parses a map list setting and loads every table in it; relative
// paths are relative to the configuration directory. alias_maps tables are
// read in aliases(5) format, the others as plain tables.
func (c *Config) Maps(name string) (Maps, error) {
	p, ok := byName[name]
	if !ok || p.Kind != KindMaps {
		return nil, fmt.Errorf("config: %s is not a map list setting", name)
	}
	m, err := parseMapList(c.Get(name), c.Dir, p.aliases)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	for i := range m {
		if m[i].Type == MapStatic {
			continue
		}
		t, err := loadTable(m[i].Name, p.aliases)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", name, err)
		}
		m[i].table = t
	}
	return m, nil
}

// CheckMaps loads every table named by a map list or domain list setting
// and reports every problem, as `postern check` and newaliases need.
func (c *Config) CheckMaps() error {
	var errs Errors
	for i := range table {
		p := &table[i]
		var err error
		switch {
		case p.Kind == KindMaps:
			_, err = c.Maps(p.Name)
		case p.check != nil && isDomainList(p):
			_, err = c.Domains(p.Name)
		default:
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs.asError()
}

// Lookup searches the tables in order and returns the first hit; a static
// entry always hits.
func (m Maps) Lookup(key string) (string, bool) {
	for _, r := range m {
		if r.Type == MapStatic {
			return r.Name, true
		}
		if v, ok := r.table.Lookup(key); ok {
			return v, true
		}
	}
	return "", false
}

// LookupList is Lookup with the value split into a list (see
// Table.LookupList); a static entry gives its value as one item.
func (m Maps) LookupList(key string) ([]string, bool) {
	for _, r := range m {
		if r.Type == MapStatic {
			return []string{r.Name}, true
		}
		if v, ok := r.table.LookupList(key); ok {
			return v, true
		}
	}
	return nil, false
}

// DomainList is a parsed domain list setting (mydestination,
// virtual_mailbox_domains).
type DomainList struct {
	names map[string]bool
	maps  Maps
}

func isDomainList(p *param) bool {
	return p.Name == "mydestination" || p.Name == "virtual_mailbox_domains" || p.Name == "relay_domains"
}

// Domains parses a domain list setting: domain names, type:name tables
// whose keys are domains, and /path files that list domains separated by
// white space or commas (with # comments). The files and tables are read
// now.
func (c *Config) Domains(name string) (*DomainList, error) {
	p, ok := byName[name]
	if !ok || !isDomainList(p) {
		return nil, fmt.Errorf("config: %s is not a domain list setting", name)
	}
	entries, err := splitList(c.Get(name))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	d := &DomainList{names: make(map[string]bool)}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e, "/"):
			if err := d.addFile(e); err != nil {
				return nil, fmt.Errorf("config: %s: %w", name, err)
			}
		case strings.Contains(e, ":"):
			m, err := parseMapList(e, c.Dir, false)
			if err != nil {
				return nil, fmt.Errorf("config: %s: %w", name, err)
			}
			for i := range m {
				if m[i].Type != MapStatic {
					if m[i].table, err = LoadTable(m[i].Name); err != nil {
						return nil, fmt.Errorf("config: %s: %w", name, err)
					}
				}
			}
			d.maps = append(d.maps, m...)
		default:
			d.names[normDomain(e)] = true
		}
	}
	return d, nil
}

// addFile reads a file of domain names.
func (d *DomainList) addFile(path string) error {
	data, err := readLimited(path, maxTableFile)
	if err != nil {
		return err
	}
	lines, errs := logicalLines(data, path)
	for _, l := range lines {
		words, err := splitList(l.text)
		if err != nil {
			errs.add(path, l.line, "", "%v", err)
			continue
		}
		for _, w := range words {
			if !validDomain(w) {
				errs.add(path, l.line, "", "%q is not a domain name", truncate(w))
				continue
			}
			d.names[normDomain(w)] = true
		}
	}
	return errs.asError()
}

func normDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// Match reports whether domain is in the list, exactly and without case;
// subdomains do not match.
func (d *DomainList) Match(domain string) bool {
	if d == nil {
		return false
	}
	k := normDomain(domain)
	if k == "" {
		return false
	}
	if d.names[k] {
		return true
	}
	_, ok := d.maps.Lookup(k)
	return ok
}

// Empty reports whether the list names no domain and no table.
func (d *DomainList) Empty() bool {
	return d == nil || len(d.names) == 0 && len(d.maps) == 0
}

// Names lists every domain the list names: literal names, the domains of
// /path files, and the keys of its tables.
func (d *DomainList) Names() []string {
	if d == nil {
		return nil
	}
	var out []string
	for n := range d.names {
		out = append(out, n)
	}
	for _, m := range d.maps {
		if t := m.Table(); t != nil {
			out = append(out, t.Keys()...)
		}
	}
	sort.Strings(out)
	return out
}
