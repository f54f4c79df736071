//go:build unix

package diag

import (
	"errors"
	"os"
	"syscall"
)

// kmsgFile reads with raw syscalls on a non-blocking descriptor. An *os.File would
// hand /dev/kmsg to Go's poller, and a read at the end of the log would then
// park until the kernel logs something new instead of returning.
type kmsgFile struct{ fd int }

func openKmsg(path string) (kmsgSource, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &kmsgFile{fd: fd}, nil
}

func (k *kmsgFile) read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(k.fd, p)
		switch {
		case err == nil:
			return n, nil // n == 0: end of a plain file
		case errors.Is(err, syscall.EAGAIN):
			return 0, nil // end of the kernel log, for now
		case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EINTR):
			// EPIPE: records were overwritten before we read them; the next read
			// continues with the oldest one left.
			continue
		default:
			return 0, err
		}
	}
}

func (k *kmsgFile) close() error { return syscall.Close(k.fd) }
