package server

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

// boundedPeer is what the bounded-counter hub needs of a connection: an
// identity, a way to send it messages, its compact-view node id (bounded
// counters exist only for connections that negotiated compact views) and
// its own map of bounded subscriptions (reader goroutine only).
type boundedPeer interface {
	ID() uint64
	User() string
	Send(m wire.Message)
	viewNode() (string, bool)
	boundedSubs() map[string]*boundedEntry
}

var _ boundedPeer = (*conn)(nil)

func (c *conn) boundedSubs() map[string]*boundedEntry { return c.bsubs }

// boundedHub serves bounded counters (docs/bounded-counters.md). The
// server is the broker replica wire.BrokerNode of every bounded counter:
// it holds the rights no client holds and hands them out on request.
//
// It is simpler than counterHub on purpose: every change is one atomic
// read-modify-write of the whole state in the store
// (storage.BoundedStore.UpdateBounded: a compare-and-swap in etcd), made
// on the requesting connection's reader goroutine with the counter's
// entry locked, and answered once it returned, so nothing is acknowledged
// or granted before it is stored, and two server nodes never grant the
// same rights. The entry's in-memory state is only a cache for building
// views: every decision is taken on the stored state.
type boundedHub struct {
	s       *Server
	store   storage.BoundedStore   // nil: the store has no bounded counters
	watcher storage.BoundedWatcher // nil unless the store is shared
	ctx     context.Context
	cancel  context.CancelFunc

	mu sync.Mutex
	m  map[string]*boundedEntry
}

type boundedEntry struct {
	name string
	stop context.CancelFunc // ends the store watch, if any

	mu   sync.Mutex
	st   *crdt.Bounded // the newest stored state this node has seen; nil until loaded
	subs map[boundedPeer]struct{}
	dead bool // forgotten: look the name up again
}

func newBoundedHub(s *Server, st storage.Store) *boundedHub {
	h := &boundedHub{s: s, m: make(map[string]*boundedEntry)}
	if bs, ok := st.(storage.BoundedStore); ok {
		h.store = &timedBounded{bs, s.metrics}
	}
	h.watcher, _ = st.(storage.BoundedWatcher)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

func (h *boundedHub) close() { h.cancel() }

// errBoundedOp carries the ERROR code of a refused change out of an
// UpdateBounded function.
type errBoundedOp struct {
	code uint32
	msg  string
}

func (e *errBoundedOp) Error() string { return e.msg }

// live returns the live entry of name, locked.
func (h *boundedHub) live(name string) *boundedEntry {
	for {
		h.mu.Lock()
		e, ok := h.m[name]
		if !ok {
			e = &boundedEntry{name: name, subs: make(map[boundedPeer]struct{})}
			h.m[name] = e
			if h.watcher != nil {
				ctx, stop := context.WithCancel(h.ctx)
				e.stop = stop
				if err := h.watcher.WatchBounded(ctx, name, func(st crdt.BState) { h.remote(e, st) }); err != nil {
					h.s.log.Warn("bounded counter watch", "name", name, "err", err)
				}
			}
		}
		h.mu.Unlock()
		e.mu.Lock()
		if !e.dead {
			return e
		}
		e.mu.Unlock()
	}
}

// done unlocks e, forgetting it if nobody subscribes (an operation that
// failed before subscribing leaves nothing behind).
func (h *boundedHub) done(e *boundedEntry) {
	idle := len(e.subs) == 0 && !e.dead
	if idle {
		e.dead = true
	}
	e.mu.Unlock()
	if idle {
		h.forget(e)
	}
}

// forget removes a dead entry and stops its watch.
func (h *boundedHub) forget(e *boundedEntry) {
	h.mu.Lock()
	if h.m[e.name] == e {
		delete(h.m, e.name)
	}
	h.mu.Unlock()
	if e.stop != nil {
		e.stop()
	}
}

// remote takes a state stored through another node and sends the
// subscribers their new views if it changed anything.
func (h *boundedHub) remote(e *boundedEntry, st crdt.BState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead || e.st == nil {
		return
	}
	changed, err := e.st.Merge(st)
	if err != nil {
		h.s.log.Warn("bounded counter change from the store", "name", e.name, "err", err)
		return
	}
	if changed {
		h.fanoutLocked(e, nil)
	}
}

// check answers the common checks of every bounded frame and returns c's
// node id; ok is false after an ERROR was sent.
func (h *boundedHub) check(c boundedPeer, typ, name string) (node string, ok bool) {
	node, views := c.viewNode()
	if !views {
		sendError(c, 400, "%s %q: bounded counters need compact views: send views \"compact\" and a nodeId in AUTH or DEVICE_HELLO", typ, name)
		return "", false
	}
	if err := wire.ValidName(name); err != nil {
		sendError(c, 400, "%s: %v", typ, err)
		return "", false
	}
	if h.store == nil {
		sendError(c, 500, "%s %q: this server's store keeps no bounded counters", typ, name)
		return "", false
	}
	subs := c.boundedSubs()
	if _, ok := subs[name]; !ok && len(subs) >= h.s.cfg.MaxBounded {
		sendError(c, 413, "%s %q: this connection already uses %d bounded counters, the limit (--max-bounded)",
			typ, name, h.s.cfg.MaxBounded)
		return "", false
	}
	if !h.s.cfg.NoAuth {
		if err := h.own(node, c.User()); err != nil {
			var op *errBoundedOp
			if errors.As(err, &op) {
				sendError(c, op.code, "%s %q: %s", typ, name, op.msg)
			} else {
				h.s.log.Error("claim node", "conn", c.ID(), "node", node, "err", err)
				sendError(c, 500, "%s %q: node ownership could not be recorded; retry", typ, name)
			}
			return "", false
		}
	}
	return node, true
}

// own makes sure node belongs to user (JWT mode), claiming it if unbound,
// with the counters' ownership records: one node id, one user, whatever
// the counter kind.
func (h *boundedHub) own(node, user string) error {
	ch := h.s.counters
	ch.ownersMu.RLock()
	owner, ok := ch.owners[node]
	ch.ownersMu.RUnlock()
	if !ok {
		if err := ch.claim([]string{node}, user); err != nil {
			return err
		}
		ch.ownersMu.RLock()
		owner = ch.owners[node]
		ch.ownersMu.RUnlock()
	}
	if owner != user {
		return &errBoundedOp{403, "node " + node + " belongs to another user; use your own node id"}
	}
	return nil
}

// update runs fn on the stored state of e with the store's timeout and
// caches the result. e.mu held.
func (h *boundedHub) update(e *boundedEntry, fn func(cur crdt.BState, ok bool) (crdt.BState, bool, error)) (changed bool, err error) {
	ctx, cancel := context.WithTimeout(h.ctx, h.s.cfg.StoreTimeout)
	defer cancel()
	wrote := false
	st, err := h.store.UpdateBounded(ctx, e.name, func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		next, w, err := fn(cur, ok)
		wrote = w
		return next, w, err
	})
	if err != nil {
		return false, err
	}
	if e.st == nil || e.st.Min() != st.Min {
		b, err := crdt.BoundedFromState(st)
		if err != nil {
			return false, err
		}
		e.st = b
		return wrote, nil
	}
	c, err := e.st.Merge(st)
	return wrote || c, err
}

// fail answers an error of update.
func (h *boundedHub) fail(c boundedPeer, typ, name string, err error) {
	var op *errBoundedOp
	if errors.As(err, &op) {
		sendError(c, op.code, "%s %q: %s", typ, name, op.msg)
		return
	}
	h.s.log.Error("bounded counter store", "conn", c.ID(), "name", name, "err", err)
	sendError(c, 500, "%s %q: the bounded counter could not be stored or loaded; retry", typ, name)
}

// fixBound returns fn's part common to every change: create the counter
// with bound min if none is stored, refuse another bound with 409.
func fixBound(cur crdt.BState, ok bool, min int64) (*crdt.Bounded, error) {
	if !ok {
		b, err := crdt.NewBounded(min)
		if err != nil {
			return nil, &errBoundedOp{400, err.Error()}
		}
		return b, nil
	}
	if cur.Min != min {
		return nil, &errBoundedOp{409, "the counter's bound is " + itoa(cur.Min) + ", not " + itoa(min) +
			": the first request fixed it"}
	}
	b, err := crdt.BoundedFromState(cur)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// subscribeLocked adds c to e's subscribers. e.mu held.
func (h *boundedHub) subscribeLocked(e *boundedEntry, c boundedPeer) {
	e.subs[c] = struct{}{}
	c.boundedSubs()[e.name] = e
}

// request answers BCOUNTER_REQUEST: create the counter with its bound if
// new (the bound is then stored), subscribe, and send the view.
func (h *boundedHub) request(c boundedPeer, m wire.BCounterRequest) {
	node, ok := h.check(c, m.Type(), m.Name)
	if !ok {
		return
	}
	e := h.live(m.Name)
	defer h.done(e)
	if e.st == nil || e.st.Min() != m.Min || h.watcher != nil {
		// Unknown here, or a bound to check, or a shared store whose watch
		// may lag: read (and create) through the store.
		if _, err := h.update(e, func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
			b, err := fixBound(cur, ok, m.Min)
			if err != nil {
				return cur, false, err
			}
			return b.State(), !ok, nil
		}); err != nil {
			h.fail(c, m.Type(), m.Name, err)
			return
		}
	}
	h.subscribeLocked(e, c)
	c.Send(wire.BCounterUpdate{Name: m.Name, State: boundedView(e.st, node)})
}

// sync answers BCOUNTER_SYNC: merge the sender's own row (and only it:
// crdt.Bounded.MergeFrom refuses raising another node's entries and
// spending rights the sender does not hold), store, acknowledge with the
// sender's view, and send the other subscribers theirs.
func (h *boundedHub) sync(c boundedPeer, m wire.BCounterSync) {
	node, ok := h.check(c, m.Type(), m.Name)
	if !ok {
		return
	}
	if err := ownRowOnly(node, m.State); err != nil {
		sendError(c, 400, "%s %q: %v", m.Type(), m.Name, err)
		return
	}
	e := h.live(m.Name)
	defer h.done(e)
	changed, err := h.update(e, func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		b, err := fixBound(cur, ok, m.State.Min)
		if err != nil {
			return cur, false, err
		}
		ch, err := b.MergeFrom(node, m.State)
		switch {
		case errors.Is(err, crdt.ErrNoRights), errors.Is(err, crdt.ErrNotOwner):
			return cur, false, &errBoundedOp{403, err.Error()}
		case err != nil:
			return cur, false, &errBoundedOp{400, err.Error()}
		}
		return b.State(), ch || !ok, nil
	})
	if err != nil {
		h.fail(c, m.Type(), m.Name, err)
		return
	}
	h.subscribeLocked(e, c)
	c.Send(wire.BCounterUpdate{Name: m.Name, State: boundedView(e.st, node)})
	if changed {
		h.fanoutLocked(e, c)
	}
}

// rights answers BCOUNTER_RIGHTS: the broker transfers to the requester
// what it holds, at most the amount asked and --bounded-grant-max, stores
// the transfer, and only then answers BCOUNTER_GRANT (0 when it holds
// none).
func (h *boundedHub) rights(c boundedPeer, m wire.BCounterRights) {
	node, ok := h.check(c, m.Type(), m.Name)
	if !ok {
		return
	}
	if m.Amount <= 0 {
		sendError(c, 400, "%s %q: amount %d: ask for at least 1", m.Type(), m.Name, m.Amount)
		return
	}
	e := h.live(m.Name)
	defer h.done(e)
	var granted int64
	changed, err := h.update(e, func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		granted = 0
		if !ok {
			return cur, false, &errBoundedOp{404, "no such bounded counter: send BCOUNTER_REQUEST with its bound first"}
		}
		b, err := crdt.BoundedFromState(cur)
		if err != nil {
			return cur, false, err
		}
		g := min(m.Amount, h.s.cfg.BoundedGrantMax, b.Rights(wire.BrokerNode))
		if g <= 0 {
			return cur, false, nil
		}
		if err := b.Transfer(wire.BrokerNode, node, g); err != nil {
			return cur, false, err
		}
		granted = g
		return b.State(), true, nil
	})
	if err != nil {
		h.fail(c, m.Type(), m.Name, err)
		return
	}
	h.subscribeLocked(e, c)
	h.s.metrics.boundedGranted.Add(float64(granted))
	c.Send(wire.BCounterGrant{RequestID: m.RequestID, Name: m.Name, Granted: granted, State: boundedView(e.st, node)})
	if changed {
		h.fanoutLocked(e, c)
	}
}

// ownRowOnly checks that s carries entries of node only, and transfers
// from node to the broker only (rights travel through the broker, which
// keeps every view O(1): a client's rights are its own row plus the
// broker's transfers to it).
func ownRowOnly(node string, s crdt.BState) error {
	for k := range s.P {
		if k != node {
			return errors.New("send only your own node's entries (p[" + k + "])")
		}
	}
	for k := range s.N {
		if k != node {
			return errors.New("send only your own node's entries (n[" + k + "])")
		}
	}
	for from, row := range s.T {
		if from != node {
			return errors.New("send only your own node's transfers (t[" + from + "])")
		}
		for to := range row {
			if to != wire.BrokerNode {
				return errors.New("rights go back to the broker \"@\" only, not to " + to)
			}
		}
	}
	return nil
}

// fanoutLocked sends every subscriber but skip its view. e.mu held.
func (h *boundedHub) fanoutLocked(e *boundedEntry, skip boundedPeer) {
	for o := range e.subs {
		if o == skip {
			continue
		}
		node, _ := o.viewNode()
		o.Send(wire.BCounterUpdate{Name: e.name, State: boundedView(e.st, node)})
	}
}

// boundedView is node's view of b: node's own row, the broker's transfers
// to node, and every other node's p and n summed under wire.RestNode.
// Every entry of it only grows (sums of grow-only entries minus node's
// own, which other nodes cannot raise), so a client merges views by max.
// Its value is b's, and node's rights in it are node's rights in b.
func boundedView(b *crdt.Bounded, node string) crdt.BState {
	st := b.State()
	v := crdt.BState{Min: st.Min, P: map[string]int64{}, N: map[string]int64{}, T: map[string]map[string]int64{}}
	for _, side := range [2]struct{ src, dst map[string]int64 }{{st.P, v.P}, {st.N, v.N}} {
		var rest int64
		for k, x := range side.src {
			if k == node {
				if x > 0 {
					side.dst[k] = x
				}
				continue
			}
			rest += x
		}
		if rest > 0 {
			side.dst[wire.RestNode] = rest
		}
	}
	if row := st.T[node]; len(row) > 0 {
		v.T[node] = row
	}
	if x := st.T[wire.BrokerNode][node]; x > 0 {
		v.T[wire.BrokerNode] = map[string]int64{node: x}
	}
	return v
}

// unsubscribe answers BCOUNTER_UNSUBSCRIBE.
func (h *boundedHub) unsubscribe(c boundedPeer, name string) {
	subs := c.boundedSubs()
	e, ok := subs[name]
	if !ok {
		return
	}
	delete(subs, name)
	h.drop(e, c)
}

// unsubscribeAll drops c from every bounded counter (it disconnected).
func (h *boundedHub) unsubscribeAll(c boundedPeer) {
	subs := c.boundedSubs()
	for _, e := range subs {
		h.drop(e, c)
	}
	clear(subs)
}

// drop removes c from e and forgets e when nobody subscribes.
func (h *boundedHub) drop(e *boundedEntry, c boundedPeer) {
	e.mu.Lock()
	delete(e.subs, c)
	h.done(e)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// inspect reads the stored state of bounded counter name (ok false: none).
func (h *boundedHub) inspect(ctx context.Context, name string) (st crdt.BState, ok bool, err error) {
	if h.store == nil {
		return st, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.s.cfg.StoreTimeout)
	defer cancel()
	return h.store.LoadBounded(ctx, name)
}

// reclaim moves every right node holds in the stored state of name back
// to the broker, as if node had returned them, and sends the subscribers
// their new views (an operator's action for a replica gone for good:
// docs/bounded-counters.md). It returns how many moved (0: node held
// none) and the state after; ok is false when there is no such counter.
func (h *boundedHub) reclaim(name, node string) (moved int64, st crdt.BState, ok bool, err error) {
	if h.store == nil {
		return 0, st, false, nil
	}
	e := h.live(name)
	defer h.done(e)
	changed, err := h.update(e, func(cur crdt.BState, exists bool) (crdt.BState, bool, error) {
		moved, ok = 0, exists
		if !exists {
			return cur, false, nil
		}
		b, err := crdt.BoundedFromState(cur)
		if err != nil {
			return cur, false, err
		}
		r := b.Rights(node)
		if r <= 0 {
			return cur, false, nil
		}
		if err := b.Transfer(node, wire.BrokerNode, r); err != nil {
			return cur, false, err
		}
		moved = r
		return b.State(), true, nil
	})
	if err != nil || !ok {
		return 0, st, ok, err
	}
	if changed {
		h.fanoutLocked(e, nil)
	}
	return moved, e.st.State(), true, nil
}
