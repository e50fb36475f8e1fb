// Package locks grants named leases (locks) with fencing tokens to holders
// (the server's connections). Service is what the server's protocol
// adapter talks to; this package has the in-memory implementation for one
// node (NewMemory), package etcdlocks the one for a cluster sharing etcd.
// Importing this package does not link etcd.
//
// Both implementations behave alike to holders, and both run the one
// shared suite in package locktest: grants, renewals and releases, fencing
// tokens strictly increasing (across restarts too), LOCK_LOST on expiry,
// FIFO waiting with a bound, release by the same user, the per-holder
// limit, and the denial reasons.
package locks

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// Holder is one party that requests, holds and releases locks: a
// connection. Holders are compared with ==, so implementations are
// pointers (or other comparable values with identity).
type Holder interface {
	// ID names the holder in logs (the connection id).
	ID() uint64
	// User is the authenticated user, "" without authentication. A lock
	// may be released by any holder with the same non-empty user.
	User() string
	// Send queues m for the holder. It must not block: services call it
	// with their own mutex held.
	Send(m wire.Message)
}

// Service grants leases on names. Every request is answered with Send on
// its holder: LOCK_GRANTED, or LOCK_RELEASED with Success false and a
// reason; releases with LOCK_RELEASED; a holder whose lock ends without its
// release (expiry, release by the same user elsewhere, a lost etcd lease)
// gets LOCK_LOST.
type Service interface {
	// Acquire grants, renews (same token, new lease), queues (r.Wait > 0)
	// or denies r. Invalid requests are denied with invalid_name or
	// invalid_ttl (see Params).
	Acquire(h Holder, r wire.LockRequest)
	// Release frees r.Name if h (or a holder of h's user) holds it with
	// token r.FencingToken; otherwise it answers not_holder.
	Release(h Holder, r wire.LockRelease)
	// Disconnect drops h's queued requests, then frees every lock it holds
	// (h is gone: nothing is sent to it).
	Disconnect(h Holder)
	// Close stops the service (server shutdown, after every holder has
	// disconnected). Calls after the first do nothing.
	Close()

	// Info describes the lock on name (an operator's view; Held false
	// when nobody holds it). name must be valid (wire.ValidName).
	Info(ctx context.Context, name string) (Info, error)
	// List describes the locks held or waited for whose names start with
	// prefix, in name order, at most limit of them; more reports whether
	// there were others.
	List(ctx context.Context, prefix string, limit int) (infos []Info, more bool, err error)
	// Revoke frees name whoever holds it (an operator's force-release):
	// the holder gets LOCK_LOST with reason revoked and the next waiter
	// gets the lock, as on a release. It returns the lock as it was, and
	// ErrNotHeld when nobody held it.
	Revoke(ctx context.Context, name string) (Info, error)
	// Fence reports whether token is the fencing token of the current
	// holder of name, and the current holder's token (0 when nobody holds
	// it). In a cluster the answer comes from the shared lock table, not
	// from a node's cache.
	Fence(ctx context.Context, name string, token uint64) (current bool, holderToken uint64, err error)
}

// ErrNotHeld is Revoke's error when nobody holds the lock.
var ErrNotHeld = errors.New("locks: not held")

// Info is an operator's view of one lock.
type Info struct {
	Name string
	// Held is false when nobody holds the lock; the fields below but
	// Waiters are then zero.
	Held         bool
	FencingToken uint64
	Holder       HolderInfo
	// ExpiresIn is the time left on the holder's lease; Expiry false
	// when the answering node does not know it (in a cluster, a lock held
	// through another node).
	ExpiresIn time.Duration
	Expiry    bool
	// Waiters is the number of queued requests.
	Waiters int
}

// HolderInfo names a holder.
type HolderInfo struct {
	// Conn is Holder.ID on the node holding the lock; 0 when the
	// answering node does not know it (held through another node).
	Conn uint64
	// User is Holder.User ("" without authentication).
	User string
	// Node names the cluster node the lock is held through ("" on a
	// single node).
	Node string
}

// Backend opens a Service with the server's options: Config.Locks of
// package server. Memory and etcdlocks.Backend make one.
type Backend func(Options) (Service, error)

// Options are what every implementation takes from the server. The zero
// value of each field is replaced by its default (SetDefaults).
type Options struct {
	// DefaultTTL is the lease of a request without ttl (30 s).
	DefaultTTL time.Duration
	// MaxTTL is the longest lease and the longest wait (1 h).
	MaxTTL time.Duration
	// MaxLocks is the most locks one holder may hold or wait for (1024).
	// More is denied with reason too_many.
	MaxLocks int
	// Logger receives the service's logs (slog.Default()).
	Logger *slog.Logger
}

// SetDefaults fills in zero fields and checks the rest.
func (o *Options) SetDefaults() error {
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = 30 * time.Second
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = time.Hour
	}
	if o.DefaultTTL > o.MaxTTL {
		return errors.New("locks: default lock ttl exceeds the maximum")
	}
	if o.MaxLocks <= 0 {
		o.MaxLocks = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Params validates r and returns its lease, or the reason to deny it.
func Params(r wire.LockRequest, o Options) (ttl time.Duration, reason string) {
	if err := wire.ValidName(r.Name); err != nil {
		return 0, wire.ReasonInvalidName
	}
	ttl = o.DefaultTTL
	if r.TTL != nil {
		if *r.TTL == 0 || *r.TTL > uint64(o.MaxTTL/time.Millisecond) {
			return 0, wire.ReasonInvalidTTL
		}
		ttl = time.Duration(*r.TTL) * time.Millisecond
	}
	if r.Wait > uint64(o.MaxTTL/time.Millisecond) {
		return 0, wire.ReasonInvalidTTL
	}
	return ttl, ""
}

// Deny is the denial of r with reason.
func Deny(r wire.LockRequest, reason string) wire.LockReleased {
	return wire.LockReleased{RequestID: r.RequestID, Name: r.Name, Reason: reason}
}

// InvalidRelease is the answer to a release of an invalid name, or nil.
func InvalidRelease(r wire.LockRelease) *wire.LockReleased {
	if err := wire.ValidName(r.Name); err != nil {
		return &wire.LockReleased{RequestID: r.RequestID, Name: r.Name, Reason: wire.ReasonInvalidName}
	}
	return nil
}

// Granted is the grant of r with token and lease ttl.
func Granted(r wire.LockRequest, token uint64, ttl time.Duration) wire.LockGranted {
	return wire.LockGranted{RequestID: r.RequestID, Name: r.Name, FencingToken: token, TTL: uint64(ttl / time.Millisecond)}
}

// SameUser reports whether a lock held by holder may be released through
// h: the same holder, or the same non-empty user.
func SameUser(h, holder Holder) bool {
	if h == holder {
		return true
	}
	u := h.User()
	return u != "" && u == holder.User()
}

// Fencing reserves durable blocks of fencing tokens: storage.Store
// implements it.
type Fencing interface {
	ReserveFencing(ctx context.Context, n uint64) (first uint64, err error)
}
