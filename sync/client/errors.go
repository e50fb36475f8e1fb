package client

import (
	"errors"
	"fmt"

	"github.com/topgun-go/topgun/sync/wire"
)

// Sentinel errors. Use errors.Is; returned errors may wrap them.
var (
	// ErrClosed: the client has been closed.
	ErrClosed = errors.New("client: closed")
	// ErrNotStarted: the call needs Start to have succeeded.
	ErrNotStarted = errors.New("client: not started")
	// ErrNotReady: the connection is not ready.
	ErrNotReady = errors.New("client: not ready")
	// ErrDisconnected: the connection dropped while a request was pending.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrInvalidName: a counter or lock name breaks the naming rule (see
	// ValidName).
	ErrInvalidName = errors.New("client: invalid name")
	// ErrAuthFailed: the server rejected the token (AUTH_FAIL).
	ErrAuthFailed = errors.New("client: authentication failed")
	// ErrAuthRequired: the server asked for a token and none is configured.
	ErrAuthRequired = errors.New("client: server requires authentication")
	// ErrHandshakeTimeout: the server did not complete the handshake
	// within Options.ConnectTimeout.
	ErrHandshakeTimeout = errors.New("client: handshake timed out")
	// ErrOffline: the client was taken offline with SetOnline(false).
	ErrOffline = errors.New("client: offline (SetOnline(false))")
	// ErrHeartbeat: no PONG within Options.PingTimeout.
	ErrHeartbeat = errors.New("client: heartbeat timed out")

	// Lock denials (matched by a *LockError through errors.Is).

	// ErrInvalidTTL: the server refused the lease duration.
	ErrInvalidTTL = errors.New("client: invalid lock ttl")
	// ErrNotHolder: the server says this client does not hold the lock.
	ErrNotHolder = errors.New("client: not the lock holder")
	// ErrRateLimited: the server refused the request for rate limiting.
	ErrRateLimited = errors.New("client: rate limited")
	// ErrUnavailable: the server could not grant a lease right now.
	ErrUnavailable = errors.New("client: lock service unavailable")
)

// LockError is a lock request or release the server denied, with the
// reason it gave (wire.Reason*). It matches the sentinel of its reason
// with errors.Is, e.g. errors.Is(err, ErrNotHolder).
type LockError struct {
	Name   string // lock name
	Reason string // server's reason; "" if it gave none
}

func (e *LockError) Error() string {
	r := e.Reason
	if r == "" {
		r = "denied"
	}
	return fmt.Sprintf("client: lock %q: %s", e.Name, r)
}

// Is matches the sentinel error of e.Reason.
func (e *LockError) Is(target error) bool {
	switch e.Reason {
	case wire.ReasonInvalidName:
		return target == ErrInvalidName
	case wire.ReasonInvalidTTL:
		return target == ErrInvalidTTL
	case wire.ReasonNotHolder:
		return target == ErrNotHolder
	case wire.ReasonRateLimited:
		return target == ErrRateLimited
	case wire.ReasonUnavailable:
		return target == ErrUnavailable
	}
	return false
}

// AuthError is an AUTH_FAIL from the server; it matches ErrAuthFailed.
type AuthError struct {
	Message string // the server's error text
}

func (e *AuthError) Error() string { return "client: authentication failed: " + e.Message }

// Is matches ErrAuthFailed.
func (e *AuthError) Is(target error) bool { return target == ErrAuthFailed }
