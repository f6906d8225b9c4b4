package maildir

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Watch reports changes to new/ and cur/ (inotify: IN_CREATE,
// IN_MOVED_TO, IN_MOVED_FROM, IN_DELETE), coalesced: one value per burst,
// the channel buffered 1. The channel is closed when ctx ends (or the
// inotify descriptor fails). This is the one place the package starts a
// goroutine; it only reads events, so its thread's credentials do not
// matter.
func (f *Folder) Watch(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: inotify: %w", f.dir, err)
	}
	const mask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE
	for _, sub := range []string{"new", "cur"} {
		if _, err := unix.InotifyAddWatch(fd, f.dir+"/"+sub, mask|unix.IN_ONLYDIR); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("maildir %s/%s: inotify: %w", f.dir, sub, err)
		}
	}
	// A non-blocking descriptor in an *os.File goes through Go's poller:
	// Read waits without a thread, and Close wakes it.
	file := os.NewFile(uintptr(fd), "inotify:"+f.dir)
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		file.Close()
	}()
	go func() {
		defer close(ch)
		buf := make([]byte, 64*1024)
		for {
			n, err := file.Read(buf)
			if err != nil || n <= 0 {
				return
			}
			// A full buffer means one more value is pending at most.
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, nil
}
