package wire

import (
	"errors"
	"fmt"
)

// Limits of the protocol (docs/protocol.md, "Decoding rules").
const (
	// MaxFrameSize is the largest frame Decode accepts (2 MiB).
	MaxFrameSize = 2 << 20
	// MaxDepth is the deepest container nesting Decode accepts; the
	// top-level map is depth 1.
	MaxDepth = 256
	// MaxBatchItems is the most messages one BATCH may carry.
	MaxBatchItems = 8192
)

// Sentinel errors, matched with errors.Is.
var (
	ErrFrameTooLarge = errors.New("wire: frame larger than 2 MiB")
	ErrTooDeep       = errors.New("wire: nesting deeper than 256")
	ErrMalformed     = errors.New("wire: malformed MessagePack")
	ErrUnknownType   = errors.New("wire: unknown message type")
	ErrInvalidField  = errors.New("wire: invalid field")
	ErrBatchTooLarge = errors.New("wire: batch has more than 8192 items")
)

// DecodeError says why a frame could not be decoded. It wraps one of the
// sentinel errors and, where they could be read, carries the message type
// and the requestId and name of the frame, so a server can still answer
// the request it was meant to be.
type DecodeError struct {
	Type      string // "" if the type could not be read
	Field     string // offending field, e.g. "payload.ttl"; "" if none
	RequestID string
	Name      string
	Err       error

	seen uint32 // required fields seen while decoding
}

func (e *DecodeError) Error() string {
	switch {
	case e.Type != "" && e.Field != "":
		return fmt.Sprintf("%s.%s: %v", e.Type, e.Field, e.Err)
	case e.Type != "":
		return fmt.Sprintf("%s: %v", e.Type, e.Err)
	case e.Field != "":
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	default:
		return e.Err.Error()
	}
}

func (e *DecodeError) Unwrap() error { return e.Err }

// AsDecodeError returns the *DecodeError in err's chain, if any.
func AsDecodeError(err error) (*DecodeError, bool) {
	var de *DecodeError
	ok := errors.As(err, &de)
	return de, ok
}
