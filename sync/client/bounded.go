package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/wire"
)

// ErrBoundMismatch: a bounded counter was opened with another bound than
// the one it has (locally or on the server, whose first request fixed it).
var ErrBoundMismatch = errors.New("client: bounded counter has another bound")

// ErrNoBoundedStore: the client's store cannot keep bounded counters
// (it does not implement store.BoundedStore).
var ErrNoBoundedStore = errors.New("client: the store keeps no bounded counters")

// boundedStoreTimeout bounds one local store call of a bounded counter.
const boundedStoreTimeout = 10 * time.Second

// BoundedCounter is the handle of one bounded counter (docs/bounded-counters.md):
// a counter whose value never goes below its bound Min, in any replica,
// even while replicas decrement offline. A replica may take away only
// rights it holds (Available): rights come from the server, the broker,
// on request (RequestRights). Increments hand their new rights to the
// broker, so stock added anywhere becomes available to everyone.
//
// Every change is applied to the local replica and stored in the local
// store before the method returns, then sent to the server if connected;
// on reconnect the replica's own row is sent again. Methods are safe for
// concurrent use.
type BoundedCounter struct {
	c    *Client
	bs   store.BoundedStore
	name string
	node string
	min  int64

	mu      sync.Mutex
	st      *crdt.Bounded
	conf    crdt.BState // own row as the server last reported it
	version uint64
	subs    []*subscriber[int64]
	closed  bool

	// stored is the own row as last stored (loaded, or saved): what a
	// resync may send. Changes of TryDecrementLater are in st before they
	// are stored, and must never reach the server before the store.
	stored crdt.BState
	// The write-behind of TryDecrementLater: dirty while st has changes
	// not handed to the writer, writing while the writer runs; flushes
	// wait for both to end.
	dirty, writing bool
	flushes        []chan error
}

var reqSeq atomic.Uint64

// BoundedCounter returns the handle of bounded counter name with lower
// bound min, loading its local replica from the store. The client must be
// started and its store must implement store.BoundedStore. A counter that
// has another bound (stored locally, or fixed on the server by its first
// request: the server then answers ERROR 409 and the handle stays
// unsynced) gives ErrBoundMismatch.
func (c *Client) BoundedCounter(name string, min int64) (*BoundedCounter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if min < -crdt.MaxSafe || min > crdt.MaxSafe {
		return nil, fmt.Errorf("client: bound %d outside ±(2^53-1)", min)
	}
	bs, ok := c.store.(store.BoundedStore)
	if !ok {
		return nil, ErrNoBoundedStore
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if !c.started {
		c.mu.Unlock()
		return nil, ErrNotStarted
	}
	if b, ok := c.bounded[name]; ok {
		c.mu.Unlock()
		if b.min != min {
			return nil, fmt.Errorf("%w: %q has bound %d", ErrBoundMismatch, name, b.min)
		}
		return b, nil
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(c.ctx, boundedStoreTimeout)
	stored, ok, err := bs.LoadBounded(ctx, name)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if ok && stored.Min != min {
		return nil, fmt.Errorf("%w: %q has bound %d", ErrBoundMismatch, name, stored.Min)
	}
	st, _ := crdt.NewBounded(min)
	if ok {
		if _, err := st.Merge(stored); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	b := &BoundedCounter{c: c, bs: bs, name: name, node: c.nodeID, min: min, st: st, version: 1}
	b.stored = ownRow(st.State(), b.node)

	c.mu.Lock()
	if other, ok := c.bounded[name]; ok { // a concurrent call won
		c.mu.Unlock()
		if other.min != min {
			return nil, fmt.Errorf("%w: %q has bound %d", ErrBoundMismatch, name, other.min)
		}
		return other, nil
	}
	c.bounded[name] = b
	cn := c.conn
	c.mu.Unlock()
	if cn != nil && cn.views.Load() {
		b.resync(cn)
	}
	return b, nil
}

// Name returns the counter's name.
func (b *BoundedCounter) Name() string { return b.name }

// Min returns the bound.
func (b *BoundedCounter) Min() int64 { return b.min }

// Get returns the value as this replica knows it: never below Min.
func (b *BoundedCounter) Get() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.Value()
}

// Available returns the rights this replica holds: how much TryDecrement
// may take away here, online or offline.
func (b *BoundedCounter) Available() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.Rights(b.node)
}

// Increment adds n > 0 and hands the n new rights to the broker (in one
// step of this replica's own row), so every replica can ask for them.
func (b *BoundedCounter) Increment(n int64) error { return b.change(b.restock(n)) }

// restock is the change of Increment(n): n more, their rights handed to
// the broker in the same step.
func (b *BoundedCounter) restock(n int64) func(*crdt.Bounded) error {
	return func(st *crdt.Bounded) error {
		if _, err := st.Increment(b.node, n); err != nil {
			return err
		}
		return st.Transfer(b.node, wire.BrokerNode, n)
	}
}

// TryDecrement takes n > 0 away if this replica holds at least n rights,
// and reports whether it did. It needs no connection: offline it spends
// the rights held here and fails cleanly once they run out. The decrement
// is in the local store when it returns true. If the store fails, it
// returns false and the rights stay spent (the counter undercounts rather
// than ever overselling).
func (b *BoundedCounter) TryDecrement(n int64) bool {
	return b.change(func(st *crdt.Bounded) error {
		_, err := st.Decrement(b.node, n)
		return err
	}) == nil
}

// ReturnRights hands n of this replica's rights back to the broker, for
// other replicas to ask for.
func (b *BoundedCounter) ReturnRights(n int64) error {
	return b.change(func(st *crdt.Bounded) error { return st.Transfer(b.node, wire.BrokerNode, n) })
}

// change applies fn to the replica, stores it and sends the own row.
func (b *BoundedCounter) change(fn func(*crdt.Bounded) error) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if err := fn(b.st); err != nil {
		b.mu.Unlock()
		return err
	}
	snap := b.st.State()
	ch := b.changedLocked()
	b.mu.Unlock()
	ch.fire()
	if err := b.save(snap); err != nil {
		return err
	}
	if cn := b.c.readyConn(); cn != nil && cn.views.Load() {
		_ = cn.send(b.c.ctx, wire.BCounterSync{Name: b.name, State: ownRow(snap, b.node)})
	}
	return nil
}

func (b *BoundedCounter) save(s crdt.BState) error {
	ctx, cancel := context.WithTimeout(b.c.ctx, boundedStoreTimeout)
	defer cancel()
	if err := b.bs.SaveBounded(ctx, b.name, s); err != nil {
		b.c.report(fmt.Errorf("%w: bounded counter %q: %w", ErrStorage, b.name, err))
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	b.mu.Lock()
	b.stored = mergeRow(b.stored, ownRow(s, b.node))
	b.mu.Unlock()
	return nil
}

// TryDecrementLater is TryDecrement without waiting for the store, for
// callers that cannot block (the browser's synchronous tryDecrement): it
// takes n > 0 away in memory if this replica holds n rights and reports
// whether it did; a background writer stores the change and only then
// sends it, so the server never sees a decrement the store lacks. A crash
// before the write loses the decrement: it never left this replica, so
// its rights are unspent again after the restart, never spent twice. Use
// Flush to know the decrements are stored (before acknowledging a sale
// where losing it in a crash matters). Subscribers are called as for
// TryDecrement.
func (b *BoundedCounter) TryDecrementLater(n int64) bool {
	return b.changeLater(func(st *crdt.Bounded) error {
		_, err := st.Decrement(b.node, n)
		return err
	})
}

// IncrementLater is Increment through the write-behind of
// TryDecrementLater (a crash before the write loses the increment, which
// never left this replica). It fails only for a bad n or a closed handle.
func (b *BoundedCounter) IncrementLater(n int64) error { return b.changeErrLater(b.restock(n)) }

// ReturnRightsLater is ReturnRights through the write-behind of
// TryDecrementLater.
func (b *BoundedCounter) ReturnRightsLater(n int64) error {
	return b.changeErrLater(func(st *crdt.Bounded) error { return st.Transfer(b.node, wire.BrokerNode, n) })
}

func (b *BoundedCounter) changeLater(fn func(*crdt.Bounded) error) bool {
	return b.changeErrLater(fn) == nil
}

// changeErrLater applies fn in memory and hands the replica to the
// write-behind.
func (b *BoundedCounter) changeErrLater(fn func(*crdt.Bounded) error) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if err := fn(b.st); err != nil {
		b.mu.Unlock()
		return err
	}
	ch := b.changedLocked()
	b.dirty = true
	start := !b.writing
	b.writing = true
	b.mu.Unlock()
	ch.fire()
	if start {
		go b.writeBehind()
	}
	return nil
}

// writeBehind stores, then sends, the replica until nothing is dirty,
// then wakes the flushes waiting.
func (b *BoundedCounter) writeBehind() {
	var err error
	for {
		b.mu.Lock()
		if !b.dirty {
			b.writing = false
			fl := b.flushes
			b.flushes = nil
			b.mu.Unlock()
			for _, f := range fl {
				f <- err
			}
			return
		}
		b.dirty = false
		snap := b.st.State()
		closed := b.closed
		b.mu.Unlock()
		if err = b.save(snap); err != nil {
			// The decrements stay in memory (and spent); the next change or
			// flush stores them with the rest.
			continue
		}
		if cn := b.c.readyConn(); !closed && cn != nil && cn.views.Load() {
			_ = cn.send(b.c.ctx, wire.BCounterSync{Name: b.name, State: ownRow(snap, b.node)})
		}
	}
}

// Flush returns once every change made through the write-behind
// (TryDecrementLater, IncrementLater, ReturnRightsLater) before it is in
// the local store (or the store failed: ErrStorage).
func (b *BoundedCounter) Flush(ctx context.Context) error {
	b.mu.Lock()
	if !b.dirty && !b.writing {
		b.mu.Unlock()
		return nil
	}
	ch := make(chan error, 1)
	b.flushes = append(b.flushes, ch)
	b.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// changedLocked bumps the version and returns the notification. b.mu held.
func (b *BoundedCounter) changedLocked() change {
	b.version++
	return change{subs: b.subs, ver: b.version, v: b.st.Value()}
}

// ownRow is node's own entries of s: what a sync sends.
func ownRow(s crdt.BState, node string) crdt.BState {
	r := crdt.BState{Min: s.Min, P: map[string]int64{}, N: map[string]int64{}, T: map[string]map[string]int64{}}
	if v := s.P[node]; v > 0 {
		r.P[node] = v
	}
	if v := s.N[node]; v > 0 {
		r.N[node] = v
	}
	if row := s.T[node]; len(row) > 0 {
		r.T[node] = row
	}
	return r
}

func rowEmpty(r crdt.BState) bool { return len(r.P) == 0 && len(r.N) == 0 && len(r.T) == 0 }

// Synced reports whether the server has confirmed this replica's own row
// (every increment, decrement and returned right made here).
func (b *BoundedCounter) Synced() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.syncedLocked()
}

func (b *BoundedCounter) syncedLocked() bool {
	own := ownRow(b.st.State(), b.node)
	if own.P[b.node] > b.conf.P[b.node] || own.N[b.node] > b.conf.N[b.node] {
		return false
	}
	for to, v := range own.T[b.node] {
		if v > b.conf.T[b.node][to] {
			return false
		}
	}
	return true
}

// Subscribe calls fn with the value after every change of the replica
// (local or from the server; a change of Available or Synced alone calls
// it too),
// until the returned function is called.
func (b *BoundedCounter) Subscribe(fn func(int64)) (unsubscribe func()) {
	s := &subscriber[int64]{fn: fn}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	return func() {
		s.removed.Store(true)
		b.mu.Lock()
		for i, x := range b.subs {
			if x == s {
				b.subs = append(b.subs[:i:i], b.subs[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
	}
}

// RequestRights asks the broker for n rights and returns how many it
// granted (0..n; at most the server's --bounded-grant-max per request,
// never more than the broker holds). It needs a ready connection
// (ErrNotReady otherwise). If the connection drops before the answer,
// it returns ErrDisconnected: rights granted meanwhile are not lost, they
// arrive with the next view (Available shows them).
func (b *BoundedCounter) RequestRights(ctx context.Context, n int64) (int64, error) {
	if n <= 0 || n > crdt.MaxSafe {
		return 0, fmt.Errorf("client: request of %d rights", n)
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	cn := b.c.readyConn()
	if cn == nil || !cn.views.Load() {
		return 0, ErrNotReady
	}
	id := "b" + strconv.FormatUint(reqSeq.Add(1), 10)
	ch := make(chan wire.BCounterGrant, 1)
	cn.mu.Lock()
	if cn.dead {
		cn.mu.Unlock()
		return 0, ErrDisconnected
	}
	cn.grants[id] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.grants, id)
		cn.mu.Unlock()
	}()
	if err := cn.send(ctx, wire.BCounterRights{RequestID: id, Name: b.name, Amount: n}); err != nil {
		return 0, err
	}
	select {
	case g := <-ch:
		return g.Granted, nil
	case <-cn.ctx.Done():
		return 0, ErrDisconnected
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close releases the handle: it stops getting updates. What it changed is
// in the local store already; rights it holds stay held by this replica
// (open the counter again to use them, or ReturnRights before Close).
// Own changes the server has not confirmed are sent when the counter is
// opened again on a connection.
func (b *BoundedCounter) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	c := b.c
	c.mu.Lock()
	if c.bounded[b.name] == b {
		delete(c.bounded, b.name)
	}
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		_ = cn.send(c.ctx, wire.BCounterUnsubscribe{Name: b.name})
	}
	return nil
}

// resync subscribes the counter on cn: its own row as stored if it has
// one (offline changes reach the server; changes not stored yet follow
// from the writer), else a request with the bound.
func (b *BoundedCounter) resync(cn *connection) {
	b.mu.Lock()
	own := b.stored
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return
	}
	if rowEmpty(own) {
		_ = cn.send(b.c.ctx, wire.BCounterRequest{Name: b.name, Min: b.min})
		return
	}
	_ = cn.send(b.c.ctx, wire.BCounterSync{Name: b.name, State: own})
}

// merge takes a view from the server: merged by max, stored, notified.
func (b *BoundedCounter) merge(view crdt.BState) {
	b.mu.Lock()
	if view.Min != b.min {
		b.mu.Unlock()
		b.c.log.Warn("client: bounded counter view with another bound", "counter", b.name, "min", view.Min)
		return
	}
	changed, err := b.st.Merge(view)
	if err != nil {
		b.mu.Unlock()
		b.c.log.Warn("client: dropping bounded counter view", "counter", b.name, "err", err)
		return
	}
	was := b.syncedLocked()
	b.conf = mergeRow(b.conf, ownRow(view, b.node))
	var ch change
	if changed || was != b.syncedLocked() {
		ch = b.changedLocked()
	}
	snap := b.st.State()
	b.mu.Unlock()
	ch.fire()
	if changed {
		_ = b.save(snap)
	}
}

// mergeRow is the per-entry max of two own rows.
func mergeRow(a, r crdt.BState) crdt.BState {
	out := crdt.BState{Min: r.Min, P: map[string]int64{}, N: map[string]int64{}, T: map[string]map[string]int64{}}
	for _, s := range []crdt.BState{a, r} {
		for k, v := range s.P {
			out.P[k] = max(out.P[k], v)
		}
		for k, v := range s.N {
			out.N[k] = max(out.N[k], v)
		}
		for from, row := range s.T {
			if out.T[from] == nil {
				out.T[from] = map[string]int64{}
			}
			for to, v := range row {
				out.T[from][to] = max(out.T[from][to], v)
			}
		}
	}
	return out
}

// onBounded routes a view to its handle.
func (c *Client) onBounded(name string, view crdt.BState) {
	c.mu.Lock()
	b := c.bounded[name]
	c.mu.Unlock()
	if b == nil {
		c.log.Debug("client: view of an unknown bounded counter", "counter", name)
		return
	}
	b.merge(view)
}

// onGrant merges a grant's view, then wakes its RequestRights.
func (cn *connection) onGrant(g wire.BCounterGrant) {
	cn.c.onBounded(g.Name, g.State)
	cn.mu.Lock()
	ch := cn.grants[g.RequestID]
	cn.mu.Unlock()
	if ch != nil {
		select {
		case ch <- g:
		default:
		}
	}
}

// resyncBounded subscribes every bounded counter on a new connection.
func (c *Client) resyncBounded(cn *connection) {
	c.mu.Lock()
	list := make([]*BoundedCounter, 0, len(c.bounded))
	for _, b := range c.bounded {
		list = append(list, b)
	}
	c.mu.Unlock()
	for _, b := range list {
		b.resync(cn)
	}
}
