package client

import (
	"fmt"

	"github.com/topgun-go/topgun/sync/wire"
)

// MaxNameLen is the longest counter or lock name, in bytes.
const MaxNameLen = wire.MaxNameLen

// ValidName reports whether name is a valid counter or lock name: 1 to
// MaxNameLen bytes, each one of A-Z a-z 0-9 _ - . : / (the server's rule
// for lock names, applied to counters too so every name works for both;
// see wire.ValidName).
func ValidName(name string) bool { return wire.ValidName(name) == nil }

// checkName returns an error wrapping ErrInvalidName that says why.
func checkName(name string) error {
	if err := wire.ValidName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	return nil
}
