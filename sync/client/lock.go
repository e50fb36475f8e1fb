package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// Lock is the handle of one named distributed lock. A lease is held by the
// connection that acquired it: it ends when released, when it expires
// (LOCK_LOST) or when the connection drops.
type Lock struct {
	c    *Client
	name string

	mu    sync.Mutex
	held  bool
	token uint64
	cn    *connection // connection holding the lease
	keep  *keeper     // renews the lease (KeepAlive); nil when none
	subs  []*lostSub
	seq   uint64
}

// keeper is the goroutine that renews a lease acquired with KeepAlive.
type keeper struct {
	stop chan struct{} // closed by halt
	done chan struct{} // closed when the goroutine has returned
	once sync.Once
}

func (k *keeper) halt() { k.once.Do(func() { close(k.stop) }) }

type lostSub struct {
	id uint64
	fn func(reason string)
}

// Reasons passed to OnLost callbacks.
const (
	// LostExpired: the lease ran out (LOCK_LOST from the server).
	LostExpired = wire.ReasonExpired
	// LostDisconnected: the connection holding the lease dropped; the
	// server frees a connection's locks when it closes.
	LostDisconnected = "disconnected"
	// LostReleased: the lock's user released it through another
	// connection (LOCK_LOST "released").
	LostReleased = wire.ReasonReleased
	// LostRevoked: an operator freed the lock through the server's admin
	// API (LOCK_LOST "revoked").
	LostRevoked = wire.ReasonRevoked
	// LostUnavailable: in cluster mode, the server node lost its etcd
	// lease, and with it the locks granted through it (LOCK_LOST
	// "unavailable").
	LostUnavailable = wire.ReasonUnavailable
	// LostForbidden: a KeepAlive renewal was denied because the token's
	// permissions no longer allow the lock (docs/auth.md); the client gave
	// the lease back.
	LostForbidden = wire.ReasonForbidden
)

// LockOption modifies one Acquire.
type LockOption func(*lockOptions)

type lockOptions struct {
	wait      time.Duration
	keepAlive bool
}

// WithWait lets the server queue the request behind the current holder for
// up to d; requests are granted in arrival order.
func WithWait(d time.Duration) LockOption {
	return func(o *lockOptions) { o.wait = d }
}

// KeepAlive renews the lease every third of its TTL (the holder's
// LOCK_REQUEST, which keeps the fencing token) until Unlock, so work may
// outlast the TTL while the process runs. The TTL still bounds a holder
// that stalls or loses its connection: the server frees the lock one TTL
// after the last renewal it received. When the lease ends anyway, OnLost
// says why: LostExpired (a renewal came too late, or renewals were
// refused for rate limiting or unavailability until the lease ran out),
// LostForbidden (the token no longer allows the lock), LostDisconnected.
// Each Acquire's options apply: an Acquire by the holder without
// KeepAlive stops the renewals.
func KeepAlive() LockOption {
	return func(o *lockOptions) { o.keepAlive = true }
}

// lockReply is the server's answer to a LOCK_REQUEST or LOCK_RELEASE, or
// the connection's failure.
type lockReply struct {
	granted bool   // LOCK_GRANTED
	token   uint64 // its fencing token
	ttl     uint64 // its lease in ms (0 from servers without the extension)
	success bool   // LOCK_RELEASED.success
	reason  string // LOCK_RELEASED.reason
	err     error  // the connection dropped
}

// pendingReq is a lock request awaiting its reply.
type pendingReq struct {
	ch        chan lockReply // buffered; receives exactly one reply
	lock      *Lock          // set for acquisitions
	abandoned bool           // the caller gave up; release a late grant
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.name }

// Acquire requests the lease for ttl (rounded up to whole milliseconds;
// ttl 0 asks for the server's default). It waits for the connection to be
// ready, until ctx ends. It returns (true, nil) when granted — again by a
// holder, which renews the lease and keeps the fencing token —,
// (false, nil) when another client holds the lock (at once, or after a
// WithWait wait ran out), and an error otherwise: a *LockError for other
// denials (errors.Is matches ErrInvalidTTL, ErrRateLimited...), ErrDisconnected if the
// connection dropped before the reply, ctx's error, or ErrClosed. A grant
// that arrives after ctx ended is released at once.
func (l *Lock) Acquire(ctx context.Context, ttl time.Duration, opts ...LockOption) (bool, error) {
	if ttl < 0 {
		return false, fmt.Errorf("%w: %v", ErrInvalidTTL, ttl)
	}
	var o lockOptions
	for _, f := range opts {
		f(&o)
	}
	cn, err := l.c.waitConn(ctx)
	if err != nil {
		return false, err
	}
	req := wire.LockRequest{RequestID: newID(), Name: l.name, Wait: ceilMillis(o.wait)}
	if ttl > 0 {
		ms := ceilMillis(ttl)
		req.TTL = &ms
	}
	p := &pendingReq{ch: make(chan lockReply, 1), lock: l}
	if !cn.addPending(req.RequestID, p) {
		return false, ErrDisconnected
	}
	done := func(r lockReply) (bool, error) {
		ok, err := l.acquired(r)
		if ok {
			lease := time.Duration(r.ttl) * time.Millisecond
			if lease <= 0 {
				lease = ttl // a server without the granted ttl
			}
			l.setKeeper(cn, r.token, lease, o.keepAlive)
		}
		return ok, err
	}
	if err := cn.send(ctx, req); err != nil {
		if cn.removePending(req.RequestID) {
			return false, err
		}
		return done(<-p.ch)
	}
	select {
	case r := <-p.ch:
		return done(r)
	case <-ctx.Done():
		if cn.abandon(req.RequestID) {
			return false, ctx.Err()
		}
		return done(<-p.ch)
	case <-l.c.done:
		cn.abandon(req.RequestID)
		return false, ErrClosed
	}
}

func (l *Lock) acquired(r lockReply) (bool, error) {
	switch {
	case r.err != nil:
		return false, r.err
	case r.granted:
		return true, nil
	case r.reason == wire.ReasonBusy, r.reason == wire.ReasonTimeout:
		return false, nil
	}
	return false, &LockError{Name: l.name, Reason: r.reason}
}

// Unlock releases the lease. It is a no-op if the lock is not held. The
// handle stops holding at once whatever the server answers; a refusal
// (the server no longer counts this client as the holder) is a *LockError
// matching ErrNotHolder. If the connection drops first, the server has
// freed the lock anyway and Unlock returns nil.
func (l *Lock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	if !l.held {
		l.mu.Unlock()
		return nil
	}
	token, cn, k := l.token, l.cn, l.keep
	l.held, l.token, l.cn, l.keep = false, 0, nil, nil
	l.mu.Unlock()
	if k != nil {
		// A renewal in flight is answered before the release is sent, so
		// the keeper never renews after it.
		k.halt()
		select {
		case <-k.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	id := newID()
	p := &pendingReq{ch: make(chan lockReply, 1)}
	if !cn.addPending(id, p) {
		return nil
	}
	if err := cn.send(ctx, wire.LockRelease{RequestID: id, Name: l.name, FencingToken: token}); err != nil {
		if cn.removePending(id) && err != ErrDisconnected {
			return err
		}
		return nil
	}
	var r lockReply
	select {
	case r = <-p.ch:
	case <-ctx.Done():
		if cn.abandon(id) {
			return ctx.Err()
		}
		r = <-p.ch
	}
	switch {
	case r.err != nil, r.success:
		return nil
	}
	return &LockError{Name: l.name, Reason: r.reason}
}

// IsLocked reports whether this handle holds the lease, as far as the
// client knows: it turns false on Unlock, on LOCK_LOST and when the
// connection drops.
func (l *Lock) IsLocked() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

// FencingToken returns the fencing token of the current lease, or 0 when
// the lock is not held. Tokens strictly increase across holders; pass it
// to fenced resources with every write.
func (l *Lock) FencingToken() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held {
		return 0
	}
	return l.token
}

// OnLost registers fn to be called when a held lease ends without Unlock,
// with LostExpired (or another reason the server gives) or
// LostDisconnected. It returns a function that unregisters fn.
func (l *Lock) OnLost(fn func(reason string)) (unsubscribe func()) {
	l.mu.Lock()
	l.seq++
	id := l.seq
	l.subs = append(l.subs[:len(l.subs):len(l.subs)], &lostSub{id, fn})
	l.mu.Unlock()
	return unsubscriber(&l.mu, func() {
		l.subs = without(l.subs, func(s *lostSub) bool { return s.id == id })
	})
}

// lose ends the lease held on cn (with token, if non-zero) and fires
// OnLost.
func (l *Lock) lose(cn *connection, token uint64, reason string) {
	l.mu.Lock()
	if !l.held || l.cn != cn || (token != 0 && l.token != token) {
		l.mu.Unlock()
		return
	}
	l.held, l.token, l.cn = false, 0, nil
	if l.keep != nil {
		l.keep.halt()
		l.keep = nil
	}
	subs := l.subs
	l.mu.Unlock()
	for _, s := range subs {
		s.fn(reason)
	}
}

// setKeeper starts renewing the lease held on cn with token (every third
// of lease) when on, after stopping the renewals of an earlier Acquire.
func (l *Lock) setKeeper(cn *connection, token uint64, lease time.Duration, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keep != nil {
		l.keep.halt()
		l.keep = nil
	}
	if !on || !l.held || l.cn != cn || l.token != token {
		return
	}
	if lease <= 0 {
		lease = 30 * time.Second // the server's default when ttl was 0
	}
	k := &keeper{stop: make(chan struct{}), done: make(chan struct{})}
	l.keep = k
	go l.keepAlive(k, cn, token, lease)
}

// keeps reports whether k still renews the lease held on cn with token.
func (l *Lock) keeps(k *keeper, cn *connection, token uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keep == k && l.held && l.cn == cn && l.token == token
}

// keepAlive renews the lease until k is halted or the lease ends. A
// renewal is the holder's LOCK_REQUEST with the same ttl; the server
// answers it with the same token while the lease lasts. A grant with
// another token means the lease ended before the renewal arrived (the
// LOCK_LOST came first): that new grant is given back.
func (l *Lock) keepAlive(k *keeper, cn *connection, token uint64, lease time.Duration) {
	defer close(k.done)
	period := max(lease/3, time.Millisecond)
	ms := ceilMillis(lease)
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-cn.ctx.Done():
			return // the connection's end reports LostDisconnected
		case <-t.C:
		}
		if !l.keeps(k, cn, token) {
			return
		}
		id := newID()
		p := &pendingReq{ch: make(chan lockReply, 1)} // no lock: the reply does not change the handle
		if !cn.addPending(id, p) {
			return
		}
		if err := cn.send(cn.ctx, wire.LockRequest{RequestID: id, Name: l.name, TTL: &ms}); err != nil {
			cn.removePending(id)
			return
		}
		r := <-p.ch // always comes: the reply, or failPending when cn ends
		switch {
		case r.err != nil:
			return
		case r.granted && r.token == token:
			t.Reset(period)
			continue
		case r.granted:
			if !l.holding(cn, r.token) {
				_ = cn.send(cn.ctx, wire.LockRelease{RequestID: newID(), Name: l.name, FencingToken: r.token})
			}
			l.lose(cn, token, LostExpired)
			return
		case r.reason == wire.ReasonRateLimited || r.reason == wire.ReasonUnavailable:
			// Passing: the next renewal may get through before the lease
			// ends; if none does, the server's LOCK_LOST reports it.
			l.c.log.Warn("client: lease renewal refused; retrying", "lock", l.name, "reason", r.reason)
			t.Reset(period)
			continue
		}
		// Refused for good. The lease may still run on the server: give it
		// back, so nobody waits for a holder that stopped renewing.
		_ = cn.send(cn.ctx, wire.LockRelease{RequestID: newID(), Name: l.name, FencingToken: token})
		reason := r.reason
		if reason != wire.ReasonForbidden {
			reason = LostExpired // busy, timeout, not_holder: the lease had ended
		}
		l.lose(cn, token, reason)
		return
	}
}

// holding reports whether the handle holds the lease with token on cn.
func (l *Lock) holding(cn *connection, token uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held && l.cn == cn && l.token == token
}

func (l *Lock) connLost(cn *connection) { l.lose(cn, 0, LostDisconnected) }

func (c *Client) onLockLost(cn *connection, m wire.LockLost) {
	c.mu.Lock()
	l := c.locks[m.Name]
	c.mu.Unlock()
	if l == nil {
		return
	}
	reason := m.Reason
	if reason == "" {
		reason = LostExpired
	}
	l.lose(cn, m.FencingToken, reason)
}

// addPending registers a request; false if cn is already dead.
func (cn *connection) addPending(id string, p *pendingReq) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.dead {
		return false
	}
	cn.pending[id] = p
	return true
}

// removePending forgets a request that was never sent; false if its reply
// (or the connection's failure) was already delivered.
func (cn *connection) removePending(id string) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if _, ok := cn.pending[id]; !ok {
		return false
	}
	delete(cn.pending, id)
	return true
}

// abandon marks a request whose caller gave up; false if its reply was
// already delivered.
func (cn *connection) abandon(id string) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	p, ok := cn.pending[id]
	if ok {
		p.abandoned = true
	}
	return ok
}

// onLockReply routes a LOCK_GRANTED or LOCK_RELEASED by requestId. A grant
// updates the lock's state here, in the reader, so that a LOCK_LOST read
// right after it finds the lease.
func (cn *connection) onLockReply(id string, r lockReply) {
	cn.mu.Lock()
	p, ok := cn.pending[id]
	if !ok {
		cn.mu.Unlock()
		cn.c.log.Debug("client: lock reply without request", "requestId", id)
		return
	}
	delete(cn.pending, id)
	if p.abandoned {
		cn.mu.Unlock()
		if r.granted && p.lock != nil {
			p.lock.releaseAbandoned(cn, r.token)
		}
		return
	}
	if r.granted && p.lock != nil {
		l := p.lock
		l.mu.Lock()
		l.held, l.token, l.cn = true, r.token, cn
		l.mu.Unlock()
	}
	p.ch <- r
	cn.mu.Unlock()
}

// releaseAbandoned gives back a lease granted to a request whose caller
// gave up, unless the handle holds that very lease (a renewal).
func (l *Lock) releaseAbandoned(cn *connection, token uint64) {
	l.mu.Lock()
	mine := l.held && l.cn == cn && l.token == token
	l.mu.Unlock()
	if mine {
		return
	}
	_ = cn.send(cn.c.ctx, wire.LockRelease{RequestID: newID(), Name: l.name, FencingToken: token})
}

// failPending fails every request of a dead connection.
func (cn *connection) failPending() {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	for id, p := range cn.pending {
		if !p.abandoned {
			p.ch <- lockReply{err: ErrDisconnected}
		}
		delete(cn.pending, id)
	}
}

func ceilMillis(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Millisecond - 1) / time.Millisecond)
}
