package server

import (
	"context"
	"sync"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

const (
	// fenceBlock is how many fencing tokens one durable reservation covers.
	// Tokens skipped by a crash are never reused, so tokens stay strictly
	// increasing across restarts at the cost of one fsync per block.
	fenceBlock = 1024
)

// lockService grants leases on names: lockManager on one node, etcdLocks
// across the nodes of a cluster. Both behave alike to clients.
type lockService interface {
	acquire(c *conn, r wire.LockRequest, ttl time.Duration) // r is valid
	release(c *conn, r wire.LockRelease)                    // r.Name is valid
	disconnect(c *conn)                                     // c's reader is done: drop its requests, free its locks
	close()                                                 // server shutdown, after every connection is gone
}

// acquireLock answers LOCK_REQUEST: invalid requests are denied here,
// valid ones go to the lock service.
func (s *Server) acquireLock(c *conn, r wire.LockRequest) {
	ttl, reason := s.lockParams(r)
	if reason != "" {
		c.send(deny(r, reason))
		return
	}
	s.locks.acquire(c, r, ttl)
}

// releaseLock answers LOCK_RELEASE.
func (s *Server) releaseLock(c *conn, r wire.LockRelease) {
	if err := wire.ValidName(r.Name); err != nil {
		c.send(wire.LockReleased{RequestID: r.RequestID, Name: r.Name, Reason: wire.ReasonInvalidName})
		return
	}
	s.locks.release(c, r)
}

// lockParams validates r and returns its lease, or the reason to deny it.
func (s *Server) lockParams(r wire.LockRequest) (ttl time.Duration, reason string) {
	if err := wire.ValidName(r.Name); err != nil {
		return 0, wire.ReasonInvalidName
	}
	ttl = s.cfg.DefaultLockTTL
	if r.TTL != nil {
		if *r.TTL == 0 || *r.TTL > uint64(s.cfg.MaxLockTTL/time.Millisecond) {
			return 0, wire.ReasonInvalidTTL
		}
		ttl = time.Duration(*r.TTL) * time.Millisecond
	}
	if r.Wait > uint64(s.cfg.MaxLockTTL/time.Millisecond) {
		return 0, wire.ReasonInvalidTTL
	}
	return ttl, ""
}

// lockManager grants leases on names. One mutex guards everything: lock
// operations are short and in memory, except the occasional durable
// reservation of a fencing block.
type lockManager struct {
	s     *Server
	mu    sync.Mutex
	locks map[string]*lockEntry
	held  map[*conn]map[string]*lockEntry // names each connection holds
	next  uint64                          // next fencing token
	limit uint64                          // first token not reserved
}

type lockEntry struct {
	name   string
	holder *conn // nil when free
	token  uint64
	timer  *time.Timer
	queue  []*lockWaiter
}

type lockWaiter struct {
	c     *conn
	req   wire.LockRequest
	ttl   time.Duration
	timer *time.Timer
	done  bool
}

func newLockManager(s *Server) *lockManager {
	return &lockManager{s: s, locks: make(map[string]*lockEntry), held: make(map[*conn]map[string]*lockEntry)}
}

func deny(r wire.LockRequest, reason string) wire.LockReleased {
	return wire.LockReleased{RequestID: r.RequestID, Name: r.Name, Reason: reason}
}

// fence returns the next fencing token, reserving a block durably when the
// current one is used up. m.mu held.
func (m *lockManager) fence() (uint64, error) {
	if m.next == 0 || m.next >= m.limit {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		first, err := m.s.cfg.Store.ReserveFencing(ctx, fenceBlock)
		cancel()
		if err != nil {
			return 0, err
		}
		m.next, m.limit = first, first+fenceBlock
	}
	t := m.next
	m.next++
	return t, nil
}

// acquire grants, queues or denies a valid LOCK_REQUEST.
func (m *lockManager) acquire(c *conn, r wire.LockRequest, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.locks[r.Name]
	if e == nil {
		e = &lockEntry{name: r.Name}
		m.locks[r.Name] = e
	}
	switch {
	case e.holder == c: // renewal: same token, lease extended to ttl
		e.timer.Stop()
		e.timer = m.expireAfter(e, ttl)
		c.send(wire.LockGranted{RequestID: r.RequestID, Name: r.Name, FencingToken: e.token, TTL: uint64(ttl / time.Millisecond)})
	case len(m.held[c])+c.waiting >= m.s.cfg.MaxLocks:
		c.send(deny(r, wire.ReasonTooMany))
		m.gc(e)
	case e.holder == nil && len(e.queue) == 0:
		if !m.grant(e, c, r, ttl) {
			m.gc(e)
		}
	case r.Wait == 0:
		c.send(deny(r, wire.ReasonBusy))
	default:
		w := &lockWaiter{c: c, req: r, ttl: ttl}
		w.timer = time.AfterFunc(time.Duration(r.Wait)*time.Millisecond, func() { m.waitExpired(e, w) })
		e.queue = append(e.queue, w)
		c.waiting++
	}
}

// grant makes c the holder of e with a fresh token. m.mu held.
func (m *lockManager) grant(e *lockEntry, c *conn, r wire.LockRequest, ttl time.Duration) bool {
	token, err := m.fence()
	if err != nil {
		c.log.Error("reserve fencing tokens", "err", err)
		c.send(deny(r, wire.ReasonUnavailable))
		return false
	}
	e.holder, e.token = c, token
	e.timer = m.expireAfter(e, ttl)
	if m.held[c] == nil {
		m.held[c] = make(map[string]*lockEntry)
	}
	m.held[c][e.name] = e
	c.send(wire.LockGranted{RequestID: r.RequestID, Name: r.Name, FencingToken: token, TTL: uint64(ttl / time.Millisecond)})
	return true
}

func (m *lockManager) expireAfter(e *lockEntry, ttl time.Duration) *time.Timer {
	token := e.token
	return time.AfterFunc(ttl, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if e.holder == nil || e.token != token {
			return // released or renewed-and-replaced meanwhile
		}
		holder := e.holder
		m.free(e)
		holder.send(wire.LockLost{Name: e.name, FencingToken: token, Reason: wire.ReasonExpired})
		m.handOff(e)
	})
}

// free clears e's holder. m.mu held.
func (m *lockManager) free(e *lockEntry) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	if h := m.held[e.holder]; h != nil {
		delete(h, e.name)
		if len(h) == 0 {
			delete(m.held, e.holder)
		}
	}
	e.holder = nil
}

// handOff grants e to the first live waiter, or forgets e when nobody
// holds or waits for it. m.mu held.
func (m *lockManager) handOff(e *lockEntry) {
	for e.holder == nil && len(e.queue) > 0 {
		w := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		w.timer.Stop()
		w.done = true
		w.c.waiting--
		if w.c.ctx.Err() != nil {
			continue
		}
		m.grant(e, w.c, w.req, w.ttl)
	}
	m.gc(e)
}

func (m *lockManager) gc(e *lockEntry) {
	if e.holder == nil && len(e.queue) == 0 && m.locks[e.name] == e {
		delete(m.locks, e.name)
	}
}

func (m *lockManager) waitExpired(e *lockEntry, w *lockWaiter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	w.c.waiting--
	for i, x := range e.queue {
		if x == w {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			break
		}
	}
	w.c.send(deny(w.req, wire.ReasonTimeout))
	m.gc(e)
}

// release answers LOCK_RELEASE: only the holder (same connection, or same
// user in JWT mode) with the current token succeeds.
func (m *lockManager) release(c *conn, r wire.LockRelease) {
	out := wire.LockReleased{RequestID: r.RequestID, Name: r.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.locks[r.Name]
	if e == nil || e.holder == nil || e.token != r.FencingToken || !m.sameHolder(c, e.holder) {
		out.Reason = wire.ReasonNotHolder
		c.send(out)
		return
	}
	holder := e.holder
	m.free(e)
	out.Success = true
	c.send(out)
	if holder != c { // released by the same user through another connection
		holder.send(wire.LockLost{Name: e.name, FencingToken: r.FencingToken, Reason: wire.ReasonReleased})
	}
	m.handOff(e)
}

func (m *lockManager) sameHolder(c, holder *conn) bool {
	if c == holder {
		return true
	}
	return !m.s.cfg.NoAuth && c.user != "" && c.user == holder.user
}

// disconnect drops c's queued requests, then frees every lock it holds
// (in that order, so no lock is handed to c on its way out).
func (m *lockManager) disconnect(c *conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.waiting > 0 {
		for _, e := range m.locks {
			kept := e.queue[:0]
			for _, w := range e.queue {
				if w.c == c {
					w.timer.Stop()
					w.done = true
					c.waiting--
					continue
				}
				kept = append(kept, w)
			}
			clear(e.queue[len(kept):])
			e.queue = kept
			m.gc(e)
		}
	}
	for _, e := range m.held[c] {
		m.free(e)
		m.handOff(e)
	}
}

// close stops every timer (server shutdown).
func (m *lockManager) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.locks {
		if e.timer != nil {
			e.timer.Stop()
		}
		for _, w := range e.queue {
			w.timer.Stop()
		}
	}
}
