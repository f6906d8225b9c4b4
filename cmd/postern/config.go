package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"postern/internal/auth"
	"postern/internal/config"
	"postern/internal/passwd"
	"postern/internal/queue"
	"postern/internal/route"
)

func cmdInit(dir string, args []string) error {
	if len(args) > 0 {
		return usageError("init takes no arguments")
	}
	created, err := config.WriteDefaults(dir)
	if err != nil {
		return err
	}
	for _, f := range created {
		fmt.Printf("wrote %s\n", f)
	}
	if len(created) == 0 {
		fmt.Printf("%s already has postern.conf and services.conf; nothing written\n", dir)
	}
	return nil
}

func cmdConfig(dir string, args []string) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	nondef := fs.Bool("n", false, "only settings that differ from their defaults")
	edit := fs.Bool("e", false, "edit: arguments are name=value")
	if err := fs.Parse(args); err != nil {
		return usageError("bad arguments")
	}
	if *edit {
		if fs.NArg() == 0 {
			return usageError("-e needs name=value arguments")
		}
		return config.Edit(dir, fs.Args())
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	return cfg.Print(os.Stdout, *nondef, fs.Args())
}

// cmdCheck validates everything master needs, and says what is wrong as
// file:line or by setting name. It reports all problems, not the first.
func cmdCheck(dir string, args []string) error {
	if len(args) > 0 {
		return usageError("check takes no arguments")
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	var probs []string
	add := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }
	root := os.Geteuid() == 0

	owner := cfg.Get("mail_owner")
	if root {
		if u, err := user.Lookup(owner); err != nil {
			add("mail_owner: user %q does not exist", owner)
		} else if u.Uid == "0" {
			add("mail_owner: user %q has uid 0", owner)
		}
		if _, err := user.LookupGroup(cfg.Get("setgid_group")); err != nil {
			add("setgid_group: group %q does not exist", cfg.Get("setgid_group"))
		}
	}
	dd := cfg.Get("daemon_directory")
	for _, s := range cfg.Services() {
		p := filepath.Join(dd, s.Command)
		if fi, err := os.Stat(p); err != nil {
			add("%s:%d: service %s: command %s: %v", s.File, s.Line, s.Name, p, err)
		} else if fi.Mode()&0o111 == 0 {
			add("%s:%d: service %s: %s is not executable", s.File, s.Line, s.Name, p)
		}
		if _, err := s.ListenAddr(cfg); err != nil {
			add("%s:%d: service %s: %v", s.File, s.Line, s.Name, err)
		}
	}
	users, err := passwd.Load("/etc/passwd", "/etc/group")
	if err != nil {
		add("%v", err)
	} else if _, err := route.New(cfg, users); err != nil {
		add("%v", err)
	}
	if files := cfg.List("auth_passwd_file"); len(files) > 0 {
		if _, err := auth.Load(files...); err != nil {
			add("auth_passwd_file: %v", err)
		}
		if _, ok := cfg.Service("auth", "unix"); !ok {
			add("auth_passwd_file is set but services.conf has no 'auth unix y - n - - auth' line: logins and virtual user lookups would fail")
		}
	}
	// Every smtpd service, with its -o overrides: TLS keys that load, and
	// AUTH only with a credential database.
	for _, s := range cfg.Services() {
		if s.Command != "smtpd" {
			continue
		}
		sc, err := cfg.ForService(s)
		if err != nil {
			add("%v", err)
			continue
		}
		certs, keys := sc.List("smtpd_tls_cert_file"), sc.List("smtpd_tls_key_file")
		if len(certs) != len(keys) {
			add("%s:%d: service %s: smtpd_tls_cert_file and smtpd_tls_key_file name %d and %d files", s.File, s.Line, s.Name, len(certs), len(keys))
		} else {
			for i := range certs {
				if _, err := tls.LoadX509KeyPair(certs[i], keys[i]); err != nil {
					add("%s:%d: service %s: smtpd_tls_cert_file %s / smtpd_tls_key_file %s: %v", s.File, s.Line, s.Name, certs[i], keys[i], err)
				}
			}
		}
		if len(certs) == 0 && (sc.Get("smtpd_tls_security_level") == "encrypt" || sc.Bool("smtpd_tls_wrappermode")) {
			add("%s:%d: service %s: TLS is required (encrypt or wrapper mode) but smtpd_tls_cert_file is empty", s.File, s.Line, s.Name)
		}
		if sc.Bool("smtpd_sasl_auth_enable") && len(sc.List("auth_passwd_file")) == 0 {
			add("%s:%d: service %s: smtpd_sasl_auth_enable = yes needs auth_passwd_file", s.File, s.Line, s.Name)
		}
	}
	if b := cfg.Get("virtual_mailbox_base"); b != "" {
		if fi, err := os.Stat(b); err != nil || !fi.IsDir() {
			add("virtual_mailbox_base: %s is not a directory", b)
		}
	}
	spool := cfg.Get("queue_directory")
	if !filepath.IsAbs(spool) {
		add("queue_directory: %q is not an absolute path", spool)
	} else if _, err := os.Stat(spool); errors.Is(err, os.ErrNotExist) {
		fmt.Printf("note: queue_directory %s does not exist yet; master creates it\n", spool)
	} else if root {
		probs = append(probs, checkSpool(spool, owner, cfg.Get("setgid_group"))...)
	}
	if len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintln(os.Stderr, p)
		}
		return fmt.Errorf("%d problem(s) found", len(probs))
	}
	fmt.Println("configuration, spool and tables are fine")
	return nil
}

func checkSpool(spool, owner, group string) []string {
	var probs []string
	u, err := user.Lookup(owner)
	if err != nil {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	pgid, _ := strconv.Atoi(u.Gid)
	sgid := -1
	if g, err := user.LookupGroup(group); err == nil {
		sgid, _ = strconv.Atoi(g.Gid)
	}
	for _, d := range queue.Dirs {
		p := filepath.Join(spool, d.Name)
		fi, err := os.Lstat(p)
		if err != nil {
			probs = append(probs, fmt.Sprintf("queue_directory: %s: %v (master creates it)", p, err))
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		wu, wg := uid, pgid
		switch d.Owner {
		case "root":
			wu, wg = 0, 0
		case "owner:setgid":
			wg = sgid
		}
		if int(st.Uid) != wu || int(st.Gid) != wg {
			probs = append(probs, fmt.Sprintf("queue_directory: %s is owned by %d:%d, want %d:%d (master repairs it)", p, st.Uid, st.Gid, wu, wg))
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSticky | os.ModeSetgid); got != d.Mode&(os.ModePerm|os.ModeSticky|os.ModeSetgid) {
			probs = append(probs, fmt.Sprintf("queue_directory: %s has mode %v, want %v (master repairs it)", p, got, d.Mode))
		}
	}
	return probs
}
