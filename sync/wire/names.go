package wire

import (
	"errors"
	"fmt"

	"github.com/topgun-go/topgun/crdt"
)

// MaxNameLen is the longest counter or lock name, in bytes.
const MaxNameLen = 256

// ErrInvalidName is wrapped by ValidName's errors.
var ErrInvalidName = errors.New("wire: invalid name")

// ErrInvalidNode is wrapped by ValidNode's errors.
var ErrInvalidNode = errors.New("wire: invalid node id")

// ValidNode checks a node id (a key of a counter state's p or n map) by
// the rule of names: 1-256 bytes of A-Z a-z 0-9 _ - . : /. RestNode and
// anything else outside the rule are refused.
func ValidNode(node string) error {
	if err := ValidName(node); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidNode, truncate(node), err)
	}
	return nil
}

// ValidNodes checks every node id of a state with ValidNode.
func ValidNodes(s crdt.State) error {
	for node := range s.P {
		if err := ValidNode(node); err != nil {
			return err
		}
	}
	for node := range s.N {
		if err := ValidNode(node); err != nil {
			return err
		}
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// ValidName checks a counter or lock name: 1–256 bytes, each one of A-Z
// a-z 0-9 _ - . : /.
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
