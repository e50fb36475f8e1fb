//go:build unix

package server

import (
	"errors"
	"syscall"
)

// tryWrite writes b to the non-blocking socket fd once, and returns how
// much it took: 0 with no error when its buffer is full.
func tryWrite(fd uintptr, b []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), b)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return 0, nil
		case err != nil:
			return 0, err
		}
		return n, nil
	}
}
