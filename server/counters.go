package server

import (
	"context"
	"sync"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// storeTimeout bounds one storage call made on a client's behalf.
const storeTimeout = 30 * time.Second

// counterHub holds the counters clients have touched, loaded lazily from
// the store, and their subscribers.
type counterHub struct {
	s  *Server
	mu sync.Mutex
	m  map[string]*counterEntry

	ownersMu sync.RWMutex
	owners   map[string]string // node id → user, cache of Store.ClaimNode
}

type counterEntry struct {
	name    string
	loaded  chan struct{}
	loadErr error

	mu       sync.Mutex
	ctr      crdt.Counter
	subs     map[*conn]struct{}
	inflight map[*persistOp]struct{}
	dirty    bool // a write failed: the next write stores the whole state
}

// persistOp is one MergeCounter call. Replies that report state wait for
// every op in flight when they were built, so nothing is acknowledged
// before it is durable.
type persistOp struct {
	done chan struct{}
	err  error
}

func newCounterHub(s *Server) *counterHub {
	return &counterHub{s: s, m: make(map[string]*counterEntry), owners: make(map[string]string)}
}

// get returns the entry for name, loading it from the store once.
func (h *counterHub) get(name string) (*counterEntry, error) {
	h.mu.Lock()
	e, ok := h.m[name]
	if !ok {
		e = &counterEntry{
			name:     name,
			loaded:   make(chan struct{}),
			subs:     make(map[*conn]struct{}),
			inflight: make(map[*persistOp]struct{}),
		}
		h.m[name] = e
	}
	h.mu.Unlock()
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		st, err := h.s.cfg.Store.LoadCounter(ctx, name)
		cancel()
		if err == nil {
			_, err = e.ctr.Merge(st)
		}
		if err != nil {
			e.loadErr = err
			h.mu.Lock()
			delete(h.m, name) // let a later call retry
			h.mu.Unlock()
		}
		close(e.loaded)
	}
	<-e.loaded
	return e, e.loadErr
}

// request answers COUNTER_REQUEST: subscribe and send the full state.
func (h *counterHub) request(c *conn, name string) {
	if err := wire.ValidName(name); err != nil {
		c.sendError(400, "COUNTER_REQUEST: %v", err)
		return
	}
	e, err := h.get(name)
	if err != nil {
		c.log.Error("load counter", "name", name, "err", err)
		c.sendError(500, "counter %q could not be loaded; retry", name)
		return
	}
	e.mu.Lock()
	e.subs[c] = struct{}{}
	c.subs[name] = e
	st := e.ctr.State()
	wait := e.snapshot()
	e.mu.Unlock()
	h.reply(c, name, wait, wire.CounterResponse{Name: name, State: st})
}

// sync answers COUNTER_SYNC: check ownership, merge, persist, then reply to
// the sender and forward the changed entries to the other subscribers.
func (h *counterHub) sync(c *conn, m wire.CounterSync) {
	if err := wire.ValidName(m.Name); err != nil {
		c.sendError(400, "COUNTER_SYNC: %v", err)
		return
	}
	e, err := h.get(m.Name)
	if err != nil {
		c.log.Error("load counter", "name", m.Name, "err", err)
		c.sendError(500, "counter %q could not be loaded; retry", m.Name)
		return
	}
	e.mu.Lock()
	if !h.s.cfg.NoAuth {
		if node, err := h.checkOwners(c, e, m.State); err != nil {
			e.mu.Unlock()
			c.log.Error("claim node", "node", node, "err", err)
			c.sendError(500, "COUNTER_SYNC %q: node ownership could not be recorded; retry", m.Name)
			return
		} else if node != "" {
			e.mu.Unlock()
			c.sendError(403, "COUNTER_SYNC %q: node %q belongs to another user; use your own node id", m.Name, node)
			return
		}
	}
	changed, err := e.ctr.Merge(m.State)
	if err != nil {
		e.mu.Unlock()
		c.sendError(400, "COUNTER_SYNC %q: %v", m.Name, err)
		return
	}
	_, subscribed := e.subs[c]
	e.subs[c] = struct{}{}
	c.subs[m.Name] = e

	// A new subscriber gets the whole state; a subscriber only needs the
	// merged values of what it sent (everything else reaches it as
	// updates), which keeps steady-state replies O(1).
	var reply crdt.State
	if !subscribed {
		reply = e.ctr.State()
	} else {
		reply = crdt.State{P: make(map[string]int64, len(m.State.P)), N: make(map[string]int64, len(m.State.N))}
		for k := range m.State.P {
			reply.P[k], _ = e.ctr.Entry(k)
		}
		for k := range m.State.N {
			_, reply.N[k] = e.ctr.Entry(k)
		}
	}
	var op *persistOp
	var toStore crdt.State
	var others []*conn
	if changed.Len() > 0 || e.dirty {
		op = &persistOp{done: make(chan struct{})}
		e.inflight[op] = struct{}{}
		toStore = changed
		if e.dirty {
			toStore, e.dirty = e.ctr.State(), false
		}
		if changed.Len() > 0 {
			others = make([]*conn, 0, len(e.subs))
			for o := range e.subs {
				if o != c {
					others = append(others, o)
				}
			}
		}
	}
	wait := e.snapshot()
	e.mu.Unlock()

	if op == nil {
		h.reply(c, m.Name, wait, wire.CounterUpdate{Name: m.Name, State: reply})
		return
	}
	// The write starts at once and on its own, outside the per-connection
	// reply limit: replies wait for other connections' writes, so a write
	// that queued behind replies could deadlock two busy connections.
	h.s.wg.Add(1)
	go func() {
		defer h.s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		err := h.s.cfg.Store.MergeCounter(ctx, m.Name, toStore)
		cancel()
		e.mu.Lock()
		delete(e.inflight, op)
		if err != nil {
			e.dirty = true
			c.log.Error("persist counter", "name", m.Name, "err", err)
		}
		e.mu.Unlock()
		op.err = err
		close(op.done)
	}()
	c.async(func() {
		h.deliver(c, m.Name, wait, wire.CounterUpdate{Name: m.Name, State: reply}, others, changed)
	})
}

// snapshot returns the ops in flight; e.mu must be held.
func (e *counterEntry) snapshot() []*persistOp {
	if len(e.inflight) == 0 {
		return nil
	}
	ops := make([]*persistOp, 0, len(e.inflight))
	for op := range e.inflight {
		ops = append(ops, op)
	}
	return ops
}

// reply sends msg to c once the ops in wait are durable, without blocking
// the reader when there is something to wait for.
func (h *counterHub) reply(c *conn, name string, wait []*persistOp, msg wire.Message) {
	if len(wait) == 0 {
		c.send(msg)
		return
	}
	c.async(func() { h.deliver(c, name, wait, msg, nil, crdt.State{}) })
}

// deliver waits for the ops, then replies and forwards. If any write
// failed, the sender gets ERROR 500 instead of an acknowledgement and
// keeps its state to resend; nothing unpersisted is forwarded.
func (h *counterHub) deliver(c *conn, name string, wait []*persistOp, msg wire.Message, others []*conn, changed crdt.State) {
	for _, op := range wait {
		<-op.done
		if op.err != nil {
			c.sendError(500, "counter %q could not be persisted; retry", name)
			return
		}
	}
	c.send(msg)
	for _, o := range others {
		o.pushUpdate(name, changed)
	}
}

// checkOwners returns the first node whose entries s would raise and that
// belongs to another user, claiming unowned nodes for c.user. e.mu held.
func (h *counterHub) checkOwners(c *conn, e *counterEntry, s crdt.State) (string, error) {
	check := func(node string) (string, error) {
		h.ownersMu.RLock()
		owner, ok := h.owners[node]
		h.ownersMu.RUnlock()
		if !ok {
			ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
			var err error
			owner, err = h.s.cfg.Store.ClaimNode(ctx, node, c.user)
			cancel()
			if err != nil {
				return node, err
			}
			h.ownersMu.Lock()
			h.owners[node] = owner
			h.ownersMu.Unlock()
		}
		if owner != c.user {
			return node, nil
		}
		return "", nil
	}
	for node, v := range s.P {
		if p, _ := e.ctr.Entry(node); v > p {
			if bad, err := check(node); err != nil || bad != "" {
				return bad, err
			}
		}
	}
	for node, v := range s.N {
		if _, n := e.ctr.Entry(node); v > n {
			if bad, err := check(node); err != nil || bad != "" {
				return bad, err
			}
		}
	}
	return "", nil
}

// unsubscribeAll drops c from every counter it subscribed to.
func (h *counterHub) unsubscribeAll(c *conn) {
	for _, e := range c.subs {
		e.mu.Lock()
		delete(e.subs, c)
		e.mu.Unlock()
	}
	clear(c.subs)
}
