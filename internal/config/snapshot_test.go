package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSnapshotOutlivesFileEdits(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, MainFile), []byte("myhostname = mx.example.org\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ServicesFile), []byte(DefaultServices), 0o644)
	c, snap, err := LoadSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A broken edit on disk does not touch what the snapshot says.
	os.WriteFile(filepath.Join(dir, MainFile), []byte("no_such_setting = 1\n"), 0o644)
	c2, err := FromSnapshot(dir, snap)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Get("myhostname") != "mx.example.org" || c.Get("myhostname") != c2.Get("myhostname") || len(c2.Services()) != len(c.Services()) {
		t.Fatalf("snapshot differs: %q %d", c2.Get("myhostname"), len(c2.Services()))
	}
	for _, bad := range [][]byte{nil, []byte("POSTERN-CONFIG 1\n"), []byte("POSTERN-CONFIG 1\n5 5\nabc"), append([]byte("POSTERN-CONFIG 1\n-1 2\n"), snap...)} {
		if _, err := FromSnapshot(dir, bad); err == nil {
			t.Errorf("FromSnapshot(%q) accepted", bad)
		}
	}
}

func FuzzFromSnapshot(f *testing.F) {
	f.Add([]byte("POSTERN-CONFIG 1\n0 0\n"))
	f.Add([]byte("POSTERN-CONFIG 1\n20 0\nmyhostname = a.b.c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		FromSnapshot("/etc/postern", b)
	})
}
