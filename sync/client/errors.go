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
	// ErrConnect: the server could not be reached (the dial failed).
	ErrConnect = errors.New("client: cannot connect")
	// ErrToken: Options.TokenFunc failed.
	ErrToken = errors.New("client: token function failed")
	// ErrStorage: the local Store failed to persist writes; the client
	// keeps them in memory and retries.
	ErrStorage = errors.New("client: local store failed")
	// ErrServer: the server answered a frame with ERROR (matched by a
	// *ServerError).
	ErrServer = errors.New("client: server error")
	// ErrUndelivered: Close ended its grace period with local writes the
	// server has not confirmed (matched by an *UndeliveredError).
	ErrUndelivered = errors.New("client: writes not delivered")

	// Lock denials (matched by a *LockError through errors.Is).

	// ErrInvalidTTL: the server refused the lease duration.
	ErrInvalidTTL = errors.New("client: invalid lock ttl")
	// ErrNotHolder: the server says this client does not hold the lock.
	ErrNotHolder = errors.New("client: not the lock holder")
	// ErrRateLimited: the server refused the request for rate limiting.
	ErrRateLimited = errors.New("client: rate limited")
	// ErrUnavailable: the server could not grant a lease right now.
	ErrUnavailable = errors.New("client: lock service unavailable")
	// ErrTooManyLocks: the connection already holds or waits for as many
	// locks as the server allows (its --max-locks).
	ErrTooManyLocks = errors.New("client: too many locks on this connection")
	// ErrForbidden: the token's per-name permissions (its topgun claim,
	// docs/auth.md) do not allow the request: a lock denied "forbidden"
	// (a *LockError), or a counter frame answered with ERROR 403 (a
	// *ServerError, reported through OnError).
	ErrForbidden = errors.New("client: forbidden by the token's permissions")
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
	case wire.ReasonTooMany:
		return target == ErrTooManyLocks
	case wire.ReasonForbidden:
		return target == ErrForbidden
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

// ServerError is an ERROR frame from the server (a refused or failed
// request: 400 malformed, 403 not allowed, 429 rate limited, 500 storage
// failure...). It matches ErrServer.
type ServerError struct {
	Code    int
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("client: server error %d: %s", e.Code, e.Message)
}

// Is matches ErrServer, and ErrForbidden for code 403 (a counter the
// token does not allow, or a node id of another user).
func (e *ServerError) Is(target error) bool {
	return target == ErrServer || (target == ErrForbidden && e.Code == 403)
}

// UndeliveredError is what Close returns when its grace period ended with
// local writes the server had not confirmed. It matches ErrUndelivered.
type UndeliveredError struct {
	// Counters with unconfirmed writes, sorted.
	Counters []string
	// Kept reports whether they are in a Store the client did not create
	// (Options.Store), which sends them on its next Start; false means the
	// default in-memory store, so they are lost.
	Kept bool
	// Cause is why they could not be delivered (the last connection
	// error, or the context's error when the grace period ran out).
	Cause error
}

func (e *UndeliveredError) Error() string {
	where := "kept in the store, sent on the next Start"
	if !e.Kept {
		where = "lost: the client has no durable store (Options.Store)"
	}
	msg := fmt.Sprintf("client: writes to %d counter(s) not delivered at Close (%s)", len(e.Counters), where)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Is matches ErrUndelivered.
func (e *UndeliveredError) Is(target error) bool { return target == ErrUndelivered }

// Unwrap returns the cause.
func (e *UndeliveredError) Unwrap() error { return e.Cause }
