package wire

import (
	"errors"
	"fmt"
)

// MaxNameLen is the longest counter or lock name, in bytes.
const MaxNameLen = 256

// ErrInvalidName is wrapped by ValidName's errors.
var ErrInvalidName = errors.New("wire: invalid name")

// ValidName checks a counter or lock name against PROTOCOL.md §4.2:
// 1–256 bytes, each one of A-Z a-z 0-9 _ - . : /.
func ValidName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("%w: must be 1-%d bytes, got %d", ErrInvalidName, MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '-', c == '.', c == ':', c == '/':
		default:
			return fmt.Errorf("%w: byte %d (%q) is not one of A-Z a-z 0-9 _ - . : /", ErrInvalidName, i, c)
		}
	}
	return nil
}
