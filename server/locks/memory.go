package locks

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

const (
	// fenceBlock is how many fencing tokens one durable reservation covers.
	// Tokens skipped by a crash are never reused, so tokens stay strictly
	// increasing across restarts at the cost of one fsync per block.
	fenceBlock = 1024
	// fenceTimeout bounds one durable reservation.
	fenceTimeout = 30 * time.Second
)

// memory grants leases on names on one node. One mutex guards everything:
// lock operations are short and in memory, except the occasional durable
// reservation of a fencing block.
type memory struct {
	fencing Fencing
	opts    Options

	mu      sync.Mutex
	locks   map[string]*entry
	held    map[Holder]map[string]*entry // names each holder holds
	waiting map[Holder]int               // requests each holder has queued
	next    uint64                       // next fencing token
	limit   uint64                       // first token not reserved
}

type entry struct {
	name     string
	holder   Holder // nil when free
	token    uint64
	timer    *time.Timer
	gen      uint64    // lease generation: bumped by each grant and renewal
	deadline time.Time // end of the current lease
	queue    []*waiter
}

type waiter struct {
	h     Holder
	req   wire.LockRequest
	ttl   time.Duration
	timer *time.Timer
	done  bool
}

// NewMemory returns the lock service of a single node. Fencing tokens are
// reserved from f in durable blocks, so they keep increasing across
// restarts on the same f.
func NewMemory(f Fencing, opts Options) (Service, error) {
	if err := opts.SetDefaults(); err != nil {
		return nil, err
	}
	return &memory{
		fencing: f,
		opts:    opts,
		locks:   make(map[string]*entry),
		held:    make(map[Holder]map[string]*entry),
		waiting: make(map[Holder]int),
	}, nil
}

// Memory is the Backend of NewMemory on f.
func Memory(f Fencing) Backend {
	return func(o Options) (Service, error) { return NewMemory(f, o) }
}

// fence returns the next fencing token, reserving a block durably when the
// current one is used up. m.mu held.
func (m *memory) fence() (uint64, error) {
	if m.next == 0 || m.next >= m.limit {
		ctx, cancel := context.WithTimeout(context.Background(), fenceTimeout)
		first, err := m.fencing.ReserveFencing(ctx, fenceBlock)
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

func (m *memory) Acquire(h Holder, r wire.LockRequest) {
	ttl, reason := Params(r, m.opts)
	if reason != "" {
		h.Send(Deny(r, reason))
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.locks[r.Name]
	if e == nil {
		e = &entry{name: r.Name}
		m.locks[r.Name] = e
	}
	switch {
	case e.holder == h: // renewal: same token, lease extended to ttl
		m.expireAfter(e, ttl)
		h.Send(Granted(r, e.token, ttl))
	case len(m.held[h])+m.waiting[h] >= m.opts.MaxLocks:
		h.Send(Deny(r, wire.ReasonTooMany))
		m.gc(e)
	case e.holder == nil && len(e.queue) == 0:
		if !m.grant(e, h, r, ttl) {
			m.gc(e)
		}
	case r.Wait == 0:
		h.Send(Deny(r, wire.ReasonBusy))
	default:
		w := &waiter{h: h, req: r, ttl: ttl}
		w.timer = time.AfterFunc(time.Duration(r.Wait)*time.Millisecond, func() { m.waitExpired(e, w) })
		e.queue = append(e.queue, w)
		m.waiting[h]++
	}
}

// unwait counts one queued request of h as done. m.mu held.
func (m *memory) unwait(h Holder) {
	if m.waiting[h]--; m.waiting[h] <= 0 {
		delete(m.waiting, h)
	}
}

// grant makes h the holder of e with a fresh token. m.mu held.
func (m *memory) grant(e *entry, h Holder, r wire.LockRequest, ttl time.Duration) bool {
	token, err := m.fence()
	if err != nil {
		m.opts.Logger.Error("reserve fencing tokens", "conn", h.ID(), "err", err)
		h.Send(Deny(r, wire.ReasonUnavailable))
		return false
	}
	e.holder, e.token = h, token
	m.expireAfter(e, ttl)
	if m.held[h] == nil {
		m.held[h] = make(map[string]*entry)
	}
	m.held[h][e.name] = e
	h.Send(Granted(r, token, ttl))
	return true
}

// expireAfter (re)starts e's lease: it ends after ttl unless renewed
// or released first. m.mu held.
func (m *memory) expireAfter(e *entry, ttl time.Duration) {
	if e.timer != nil {
		e.timer.Stop()
	}
	e.gen++
	e.deadline = time.Now().Add(ttl)
	gen := e.gen
	e.timer = time.AfterFunc(ttl, func() { m.expire(e, gen) })
}

// expire ends lease generation gen of e. A timer that fired while a
// renewal held m.mu finds a newer generation and does nothing: comparing
// the token alone would end the renewed lease, which keeps the token,
// right after granting it.
func (m *memory) expire(e *entry, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.holder == nil || e.gen != gen {
		return // released, renewed or granted again meanwhile
	}
	holder, token := e.holder, e.token
	m.free(e)
	holder.Send(wire.LockLost{Name: e.name, FencingToken: token, Reason: wire.ReasonExpired})
	m.handOff(e)
}

// free clears e's holder. m.mu held.
func (m *memory) free(e *entry) {
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

// handOff grants e to the first waiter, or forgets e when nobody holds or
// waits for it. m.mu held.
func (m *memory) handOff(e *entry) {
	for e.holder == nil && len(e.queue) > 0 {
		w := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		w.timer.Stop()
		w.done = true
		m.unwait(w.h)
		m.grant(e, w.h, w.req, w.ttl)
	}
	m.gc(e)
}

func (m *memory) gc(e *entry) {
	if e.holder == nil && len(e.queue) == 0 && m.locks[e.name] == e {
		delete(m.locks, e.name)
	}
}

func (m *memory) waitExpired(e *entry, w *waiter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	m.unwait(w.h)
	for i, x := range e.queue {
		if x == w {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			break
		}
	}
	w.h.Send(Deny(w.req, wire.ReasonTimeout))
	m.gc(e)
}

func (m *memory) Release(h Holder, r wire.LockRelease) {
	if d := InvalidRelease(r); d != nil {
		h.Send(*d)
		return
	}
	out := wire.LockReleased{RequestID: r.RequestID, Name: r.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.locks[r.Name]
	if e == nil || e.holder == nil || e.token != r.FencingToken || !SameUser(h, e.holder) {
		out.Reason = wire.ReasonNotHolder
		h.Send(out)
		return
	}
	holder := e.holder
	m.free(e)
	out.Success = true
	h.Send(out)
	if holder != h { // released by the same user through another holder
		holder.Send(wire.LockLost{Name: e.name, FencingToken: r.FencingToken, Reason: wire.ReasonReleased})
	}
	m.handOff(e)
}

// Disconnect drops h's queued requests, then frees every lock it holds
// (in that order, so no lock is handed to h on its way out).
func (m *memory) Disconnect(h Holder) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.waiting[h] > 0 {
		for _, e := range m.locks {
			kept := e.queue[:0]
			for _, w := range e.queue {
				if w.h == h {
					w.timer.Stop()
					w.done = true
					m.unwait(h)
					continue
				}
				kept = append(kept, w)
			}
			clear(e.queue[len(kept):])
			e.queue = kept
			m.gc(e)
		}
	}
	for _, e := range m.held[h] {
		m.free(e)
		m.handOff(e)
	}
}

// info describes e. m.mu held.
func (m *memory) info(e *entry, now time.Time) Info {
	in := Info{Name: e.name, Waiters: len(e.queue)}
	if e.holder != nil {
		in.Held, in.FencingToken, in.Expiry = true, e.token, true
		in.Holder = HolderInfo{Conn: e.holder.ID(), User: e.holder.User()}
		in.ExpiresIn = max(e.deadline.Sub(now), 0)
	}
	return in
}

// Info implements Service.
func (m *memory) Info(_ context.Context, name string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.locks[name]; e != nil {
		return m.info(e, time.Now()), nil
	}
	return Info{Name: name}, nil
}

// List implements Service.
func (m *memory) List(_ context.Context, prefix string, limit int) ([]Info, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var out []Info
	for name, e := range m.locks {
		if strings.HasPrefix(name, prefix) {
			out = append(out, m.info(e, now))
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	if len(out) > limit {
		return out[:limit:limit], true, nil
	}
	return out, false, nil
}

// Revoke implements Service.
func (m *memory) Revoke(_ context.Context, name string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.locks[name]
	if e == nil || e.holder == nil {
		return Info{Name: name}, ErrNotHeld
	}
	in := m.info(e, time.Now())
	holder := e.holder
	m.free(e)
	holder.Send(wire.LockLost{Name: name, FencingToken: in.FencingToken, Reason: wire.ReasonRevoked})
	m.handOff(e)
	return in, nil
}

// Fence implements Service.
func (m *memory) Fence(_ context.Context, name string, token uint64) (bool, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.locks[name]
	if e == nil || e.holder == nil {
		return false, 0, nil
	}
	return e.token == token, e.token, nil
}

// Close stops every timer.
func (m *memory) Close() {
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
