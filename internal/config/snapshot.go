package config

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
)

// A snapshot is the text of postern.conf and services.conf as master last
// loaded them successfully. Master hands it to every daemon it starts, so
// that a daemon restarted after a crash runs the configuration that is in
// force, not a file an administrator is halfway through editing (a reload
// that does not parse is refused; the old configuration stays in force
// for new processes too). Lookup tables are still read from their files.

const snapshotMagic = "POSTERN-CONFIG 1\n"

// LoadSnapshot loads the configuration directory like Load and also
// returns its snapshot.
func LoadSnapshot(dir string) (*Config, []byte, error) {
	dir = absDir(dir)
	main, err := readLimited(filepath.Join(dir, MainFile), maxConfFile)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	svc, err := readLimited(filepath.Join(dir, ServicesFile), maxConfFile)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(dir, filepath.Join(dir, MainFile), main, filepath.Join(dir, ServicesFile), svc)
	if err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	b.WriteString(snapshotMagic)
	fmt.Fprintf(&b, "%d %d\n", len(main), len(svc))
	b.Write(main)
	b.Write(svc)
	return c, b.Bytes(), nil
}

// FromSnapshot parses a snapshot made by LoadSnapshot.
func FromSnapshot(dir string, snap []byte) (*Config, error) {
	rest, ok := bytes.CutPrefix(snap, []byte(snapshotMagic))
	if !ok {
		return nil, fmt.Errorf("config: snapshot: bad header")
	}
	head, body, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("config: snapshot: bad header")
	}
	f := bytes.Fields(head)
	if len(f) != 2 {
		return nil, fmt.Errorf("config: snapshot: bad header")
	}
	n1, err1 := strconv.Atoi(string(f[0]))
	n2, err2 := strconv.Atoi(string(f[1]))
	if err1 != nil || err2 != nil || n1 < 0 || n2 < 0 || n1 > maxConfFile || n2 > maxConfFile || n1+n2 != len(body) {
		return nil, fmt.Errorf("config: snapshot: bad lengths")
	}
	return Parse(dir, body[:n1], body[n1:])
}
