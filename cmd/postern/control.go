package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"postern/internal/config"
	"postern/internal/queue"
)

func masterPath(cfg *config.Config) string {
	return filepath.Join(cfg.Get("daemon_directory"), "master")
}

// cmdStart runs the master: in the foreground by exec (start-fg), or in a
// new session in the background, waiting until it says it is ready or
// fails (start).
func cmdStart(dir string, fg bool) error {
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	if pid, ok := running(cfg); ok {
		return fmt.Errorf("the master is already running (pid %d)", pid)
	}
	mp := masterPath(cfg)
	if fg {
		return syscall.Exec(mp, []string{"master", "-c", dir}, os.Environ())
	}
	cmd := exec.Command(mp, "-c", dir, "-d")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", mp, err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if ok {
			fmt.Printf("postern: started (pid %d)\n", cmd.Process.Pid)
			cmd.Process.Release()
			return nil
		}
		cmd.Wait()
		return fmt.Errorf("the master did not start:\n%s", stderr.String())
	// Longer than master's own limit for its daemons (30 s), so that a
	// slow start ends with master's message.
	case <-time.After(40 * time.Second):
		return errors.New("the master did not report ready within 40 s; see the mail log")
	}
}

// running reports the master's pid when one holds the queue lock.
func running(cfg *config.Config) (int, bool) {
	pidDir := filepath.Join(cfg.Get("queue_directory"), "pid")
	f, err := os.Open(filepath.Join(pidDir, "master.lock"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, false
	}
	b, _ := os.ReadFile(filepath.Join(pidDir, "master.pid"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, true
	}
	return pid, true
}

func cmdStop(dir string) error {
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	pid, ok := running(cfg)
	if !ok {
		return errors.New("the master is not running")
	}
	if pid == 0 {
		return errors.New("the master holds the lock but its pid file is unreadable")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal master pid %d: %w", pid, err)
	}
	limit := cfg.Duration("master_stop_timeout") + 10*time.Second
	for t := time.Now(); time.Since(t) < limit; time.Sleep(100 * time.Millisecond) {
		if _, ok := running(cfg); !ok {
			fmt.Println("postern: stopped")
			return nil
		}
	}
	return fmt.Errorf("the master (pid %d) did not stop within %s", pid, limit)
}

// cmdReload validates the configuration first, so that the administrator
// sees what is wrong here and not only in the log.
func cmdReload(dir string) error {
	cfg, err := config.Load(dir)
	if err != nil {
		return fmt.Errorf("configuration refused, the running one stays:\n%v", err)
	}
	pid, ok := running(cfg)
	if !ok || pid == 0 {
		return errors.New("the master is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal master pid %d: %w", pid, err)
	}
	fmt.Println("postern: reloading")
	return nil
}

func cmdStatus(dir string) error {
	cfg, err := config.Load(dir)
	if err != nil {
		return err
	}
	pid, ok := running(cfg)
	if !ok {
		fmt.Println("postern: the master is not running")
		printQueueCounts(cfg.Get("queue_directory"))
		os.Exit(3)
	}
	fmt.Printf("postern: the master is running (pid %d), queue %s\n", pid, cfg.Get("queue_directory"))
	printQueueCounts(cfg.Get("queue_directory"))
	return nil
}

// printQueueCounts says how many messages wait in each queue directory,
// when the spool can be read (root, mail_owner).
func printQueueCounts(spool string) {
	var parts []string
	for _, d := range queue.AdminDirs {
		ids, err := queue.List(spool, d)
		if err != nil {
			return
		}
		parts = append(parts, fmt.Sprintf("%d %s", len(ids), d))
	}
	fmt.Printf("queue: %s\n", strings.Join(parts, ", "))
}
