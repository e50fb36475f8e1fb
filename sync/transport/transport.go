package transport

import (
	"context"
	"errors"

	"github.com/topgun-go/topgun/sync/wire"
)

// ReadLimit is the largest message Dial's connections accept: the
// protocol's 2 MiB frame cap plus headroom, so an oversized frame reaches
// the decoder (which drops it) instead of killing the connection. A larger
// message ends the connection: Read returns an error and later Reads fail.
const ReadLimit = wire.MaxFrameSize + 64<<10

// Conn is one established connection carrying binary frames. Read is called
// by one goroutine at a time; Write may be called concurrently with Read
// (the engine serialises its own writes). Close may be called at any time,
// more than once, from any goroutine, and makes pending Read and Write calls
// return.
type Conn interface {
	// Read returns the next binary frame. Cancelling ctx may close the
	// connection.
	Read(ctx context.Context) ([]byte, error)
	// Write sends one binary frame.
	Write(ctx context.Context, frame []byte) error
	// Close closes the connection.
	Close() error
}

// Dialer opens a connection to url (ws:// or wss://).
type Dialer func(ctx context.Context, url string) (Conn, error)

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("transport: connection closed")
