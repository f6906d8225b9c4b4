package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"postern/internal/config"
)

// newaliases is -bi: Postern reads alias files as they are (no database
// to build), so this checks that every table of alias_maps parses and
// counts its aliases; as root it then asks a running master to reload,
// so that the daemons read the new tables.
func (o *options) newaliases(stdout, stderr io.Writer) error {
	dir := o.configDir
	if dir == "" {
		dir = config.DefaultConfigDirectory
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return fail(exConfig, "%v", err)
	}
	maps, err := cfg.Maps("alias_maps")
	if err != nil {
		return fail(exConfig, "%v", err)
	}
	for _, m := range maps {
		if t := m.Table(); t != nil {
			fmt.Fprintf(stdout, "%s: %d aliases\n", t.Path(), t.Len())
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	// The postern command sits beside sendmail (sbindir).
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	postern := filepath.Join(filepath.Dir(exe), "postern")
	status := exec.Command(postern, "-c", dir, "status")
	if status.Run() != nil {
		// Not running (or not found): the tables are read at start.
		return nil
	}
	cmd := exec.Command(postern, "-c", dir, "reload")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(stderr, "%s: warning: postern reload: %v; run it to use the new aliases\n", prog, err)
	}
	return nil
}
