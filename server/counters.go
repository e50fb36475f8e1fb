package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

// refreshTimeout bounds the store read of counterHub.refresh, and
// refreshPause is how long refreshes are skipped after one failed.
const (
	refreshTimeout = 2 * time.Second
	refreshPause   = 5 * time.Second
)

// counterHub holds the counters clients have touched, loaded lazily from
// the store, and their subscribers. It sees connections only as
// subscribers (peer.go).
//
// Durability works per counter by group commit: every merge that changes
// the state gets the next sequence number and its changed entries join the
// counter's pending delta; one writer at a time stores the pending delta
// (bbolt's db.Batch further shares one fsync among the writers of all
// counters). A reply that reports state built at sequence s is queued until
// the counter's durable sequence reaches s, so nothing is acknowledged,
// or forwarded to other subscribers, before it is stored. Writes are in
// order, so waiting is a queue ordered by sequence, not a set of futures.
//
// An entry lives while it has subscribers or unfinished writes; then it is
// evicted (dead) and a later request loads it again. With a store shared by
// several nodes (storage.CounterWatcher) a live entry also watches the
// store, and changes made through other nodes are merged in and forwarded
// to its subscribers.
type counterHub struct {
	s       *Server
	watcher storage.CounterWatcher // nil unless the store is shared
	ctx     context.Context        // ends at close: stops the watches
	cancel  context.CancelFunc
	mu      sync.Mutex
	m       map[string]*counterEntry

	ownersMu sync.RWMutex
	owners   map[string]string // node id → user, cache of Store.ClaimNodes

	refreshOff atomic.Int64 // unix nanos until which refresh is skipped
}

type counterEntry struct {
	name    string
	loaded  chan struct{}
	loadErr error
	stop    context.CancelFunc // ends the store watch, if any

	mu      sync.Mutex
	ctr     crdt.Counter
	subs    map[subscriber]struct{}
	seq     uint64     // sequence of the last change merged
	durable uint64     // every change ≤ durable is stored
	pending crdt.State // changes not yet handed to the writer
	from    subscriber // sole contributor of pending, nil if several
	dur     durView    // the durable totals, for compact views
	writing bool       // a writer goroutine is running
	waiters []counterReply
	dead    bool // evicted: look the name up again
}

// counterReply is a reply waiting for durability.
type counterReply struct {
	seq uint64
	c   subscriber
	msg wire.Message
}

func newCounterHub(s *Server) *counterHub {
	h := &counterHub{s: s, m: make(map[string]*counterEntry), owners: make(map[string]string)}
	h.watcher, _ = s.cfg.Store.(storage.CounterWatcher)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// close stops the store watches (server shutdown).
func (h *counterHub) close() { h.cancel() }

func emptyState() crdt.State {
	return crdt.State{P: map[string]int64{}, N: map[string]int64{}}
}

// get returns the entry for name, loading it from the store once.
func (h *counterHub) get(name string) (*counterEntry, error) {
	h.mu.Lock()
	e, ok := h.m[name]
	if !ok {
		e = &counterEntry{
			name:    name,
			loaded:  make(chan struct{}),
			subs:    make(map[subscriber]struct{}),
			pending: emptyState(),
		}
		h.m[name] = e
	}
	h.mu.Unlock()
	if !ok {
		st, err := h.load(e)
		if err == nil {
			e.mu.Lock()
			_, err = e.ctr.Merge(st)
			e.dur.sumP, e.dur.sumN = e.ctr.Sums() // loaded: all stored
			e.mu.Unlock()
		}
		if err != nil {
			if e.stop != nil {
				e.stop()
			}
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

// load reads e's stored state, and with a shared store starts watching it.
func (h *counterHub) load(e *counterEntry) (crdt.State, error) {
	if h.watcher == nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.StoreTimeout)
		defer cancel()
		return h.s.cfg.Store.LoadCounter(ctx, e.name)
	}
	ctx, stop := context.WithCancel(h.ctx)
	e.stop = stop
	var once sync.Once
	t := time.AfterFunc(h.s.cfg.StoreTimeout, func() { once.Do(stop) }) // bounds the load only
	st, err := h.watcher.WatchCounter(ctx, e.name, func(d crdt.State) { h.remote(e, d) })
	if !t.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	return st, err
}

// remote merges changes stored through other nodes and forwards what
// changed to the subscribers.
func (h *counterHub) remote(e *counterEntry, d crdt.State) {
	e.mu.Lock()
	delta := emptyState()
	e.noteLocked(d)
	n, err := e.ctr.MergeInto(d, &delta)
	if err == nil {
		e.storedLocked(d) // it comes from the store: it is durable
	}
	if err != nil || n == 0 || e.dead {
		e.mu.Unlock()
		if err != nil {
			h.s.log.Warn("counter change from the store", "name", e.name, "err", err)
		}
		return
	}
	subs := make([]subscriber, 0, len(e.subs))
	for o := range e.subs {
		subs = append(subs, o)
	}
	e.mu.Unlock()
	for _, o := range subs {
		o.pushUpdate(e, delta)
	}
}

// refresh makes a counter that this node already holds in memory current
// with its store before a subscription is answered, when several nodes
// share the store: the watch that keeps it current may lag behind writes
// made through other nodes, and a client that has forgotten its own
// entries (evicted them from its store) takes the reply's entries of its
// node as the base of its next writes, which must not be too low. A
// counter not in memory is read from the store when it is loaded anyway.
// If the read fails, the reply is built from memory (a lower bound, as
// before) and the failure is logged; for refreshPause after a failure
// replies are built from memory without trying, so that an unreachable
// store costs one refreshTimeout per pause, not one per subscription.
func (h *counterHub) refresh(name string) {
	if h.watcher == nil || time.Now().UnixNano() < h.refreshOff.Load() {
		return
	}
	h.mu.Lock()
	e, ok := h.m[name]
	h.mu.Unlock()
	if !ok {
		return
	}
	<-e.loaded
	if e.loadErr != nil {
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, refreshTimeout)
	defer cancel()
	st, err := h.s.cfg.Store.LoadCounter(ctx, name)
	if err != nil {
		h.refreshOff.Store(time.Now().Add(refreshPause).UnixNano())
		h.s.log.Warn("counter read for a subscription failed; answering from memory", "name", name, "err", err,
			"pause", refreshPause)
		return
	}
	h.remote(e, st)
}

// lockLive returns the live entry for name, locked.
func (h *counterHub) lockLive(name string) (*counterEntry, error) {
	for {
		e, err := h.get(name)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		if !e.dead {
			return e, nil
		}
		e.mu.Unlock()
	}
}

// idleLocked marks e dead if nothing keeps it in memory and reports
// whether it did; the caller then calls forget without e.mu. e.mu held.
func (e *counterEntry) idleLocked() bool {
	if e.dead || len(e.subs) > 0 || e.writing || len(e.waiters) > 0 || e.pending.Len() > 0 {
		return false
	}
	e.dead = true
	return true
}

// forget removes a dead entry and stops its watch.
func (h *counterHub) forget(e *counterEntry) {
	h.mu.Lock()
	if h.m[e.name] == e {
		delete(h.m, e.name)
	}
	h.mu.Unlock()
	if e.stop != nil {
		e.stop()
	}
}

// subscribable reports whether c may subscribe to one more counter than
// it has, answering ERROR 413 if not. Reader goroutine.
func (h *counterHub) subscribable(c subscriber, typ, name string) bool {
	subs := c.subscriptions()
	if _, ok := subs[name]; ok || len(subs) < h.s.cfg.MaxSubscriptions {
		return true
	}
	sendError(c, 413, "%s %q: this connection already subscribes to %d counters, the limit (--max-subscriptions)",
		typ, name, h.s.cfg.MaxSubscriptions)
	return false
}

// request answers COUNTER_REQUEST: subscribe and send the full state.
func (h *counterHub) request(c subscriber, name string) {
	if err := wire.ValidName(name); err != nil {
		sendError(c, 400, "COUNTER_REQUEST: %v", err)
		return
	}
	if !h.subscribable(c, "COUNTER_REQUEST", name) {
		return
	}
	h.refresh(name)
	e, err := h.lockLive(name)
	if err != nil {
		h.s.log.Error("load counter", "conn", c.ID(), "name", name, "err", err)
		sendError(c, 500, "counter %q could not be loaded; retry", name)
		return
	}
	e.subs[c] = struct{}{}
	c.subscriptions()[name] = e
	var st crdt.State
	if node, ok := c.viewNode(); ok {
		st = e.liveViewLocked(node)
	} else {
		st = e.ctr.State()
	}
	h.replyLocked(e, c, wire.CounterResponse{Name: name, State: st})
	e.mu.Unlock()
}

// sync answers COUNTER_SYNC: check ownership, merge, then (once stored)
// reply to the sender and forward the changed entries to the other
// subscribers.
func (h *counterHub) sync(c subscriber, m wire.CounterSync) {
	if err := wire.ValidName(m.Name); err != nil {
		sendError(c, 400, "COUNTER_SYNC: %v", err)
		return
	}
	// Node ids are checked before anything is merged: a bad one (the "*"
	// of a compact view among them) is refused and the counter stays
	// healthy.
	if n := len(m.State.Nodes()); n > h.s.cfg.MaxSyncNodes {
		sendError(c, 413, "COUNTER_SYNC %q carries %d node ids, over the limit of %d (--max-sync-nodes): send your own node's entries",
			m.Name, n, h.s.cfg.MaxSyncNodes)
		return
	}
	if err := wire.ValidNodes(m.State); err != nil {
		sendError(c, 400, "COUNTER_SYNC %q: %v", m.Name, err)
		return
	}
	if !h.subscribable(c, "COUNTER_SYNC", m.Name) {
		return
	}
	e, err := h.lockLive(m.Name)
	if err != nil {
		h.s.log.Error("load counter", "conn", c.ID(), "name", m.Name, "err", err)
		sendError(c, 500, "counter %q could not be loaded; retry", m.Name)
		return
	}
	if !h.s.cfg.NoAuth {
		if e = h.checkOwners(c, e, m); e == nil {
			return
		}
	}
	defer e.mu.Unlock()
	// Changed entries go straight into the pending write.
	wasEmpty := e.pending.Len() == 0
	e.noteLocked(m.State)
	n, err := e.ctr.MergeInto(m.State, &e.pending)
	if err != nil {
		sendError(c, 400, "COUNTER_SYNC %q: %v", m.Name, err)
		return
	}
	h.s.metrics.merges.add(c.ID(), 1)
	_, subscribed := e.subs[c]
	e.subs[c] = struct{}{}
	c.subscriptions()[m.Name] = e

	// A new subscriber gets the whole state; a subscriber only needs the
	// merged values of what it sent (everything else reaches it as
	// updates), which keeps steady-state replies O(1).
	// The decoded state is ours and Merge kept none of it, so the reply
	// reuses its maps.
	var reply crdt.State
	if node, ok := c.viewNode(); ok {
		reply = e.liveViewLocked(node)
	} else if !subscribed {
		reply = e.ctr.State()
	} else {
		reply = m.State
		for k := range reply.P {
			reply.P[k], _ = e.ctr.Entry(k)
		}
		for k := range reply.N {
			_, reply.N[k] = e.ctr.Entry(k)
		}
	}
	if n > 0 {
		e.seq++
		if wasEmpty {
			e.from = c
		} else if e.from != c {
			e.from = nil
		}
		if !e.writing {
			h.startWriter(e)
		}
	}
	h.replyLocked(e, c, wire.CounterUpdate{Name: m.Name, State: reply})
}

// replyLocked sends msg now if everything it reports is stored, or queues
// it until then. e.mu held.
func (h *counterHub) replyLocked(e *counterEntry, c subscriber, msg wire.Message) {
	if e.durable >= e.seq {
		c.Send(msg)
		return
	}
	c.awaiting(1)
	e.waiters = append(e.waiters, counterReply{seq: e.seq, c: c, msg: msg})
	if !e.writing { // only after a failed write left changes pending
		h.startWriter(e)
	}
}

// startWriter starts the counter's writer. e.mu held, e.writing false.
func (h *counterHub) startWriter(e *counterEntry) {
	e.writing = true
	h.s.wg.Add(1)
	go h.write(e)
}

// write stores the counter's pending changes until none are left, then
// releases the replies they unblock and forwards the changes.
func (h *counterHub) write(e *counterEntry) {
	defer h.s.wg.Done()
	e.mu.Lock()
	for e.pending.Len() > 0 {
		batch, from, upto := e.pending, e.from, e.seq
		e.pending, e.from = emptyState(), nil
		merges := upto - e.durable
		e.mu.Unlock()
		h.s.metrics.storeMerges.Observe(float64(merges))

		ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.StoreTimeout)
		err := h.s.cfg.Store.MergeCounter(ctx, e.name, batch)
		cancel()

		e.mu.Lock()
		ready := e.takeWaiters(upto)
		var subs []subscriber
		if err != nil {
			// The changes go back to pending, to be stored and forwarded
			// by a later write. Replies that depend on them are refused,
			// so their senders keep their state and resend.
			h.s.log.Error("persist counter", "name", e.name, "err", err)
			e.pending.Raise(batch)
			e.from = nil
		} else {
			e.durable = upto
			e.storedLocked(batch)
			subs = make([]subscriber, 0, len(e.subs))
			for o := range e.subs {
				if o != from { // the sole contributor already has it
					subs = append(subs, o)
				}
			}
		}
		e.mu.Unlock()
		for _, r := range ready {
			if err != nil {
				sendError(r.c, 500, "counter %q could not be persisted; retry", e.name)
			} else {
				r.c.Send(r.msg)
			}
			r.c.awaiting(-1)
		}
		for _, o := range subs {
			o.pushUpdate(e, batch)
		}
		e.mu.Lock()
		if err != nil && len(e.waiters) == 0 {
			break // a failing store is retried per request, not in a spin
		}
	}
	e.writing = false
	idle := e.idleLocked()
	e.mu.Unlock()
	if idle {
		h.forget(e)
	}
}

// takeWaiters removes and returns the waiters with seq ≤ upto. e.mu held.
func (e *counterEntry) takeWaiters(upto uint64) []counterReply {
	n := 0
	for n < len(e.waiters) && e.waiters[n].seq <= upto {
		n++
	}
	ready := make([]counterReply, n)
	copy(ready, e.waiters)
	clear(e.waiters[:n])
	e.waiters = e.waiters[n:]
	return ready
}

// checkOwners makes sure that every node whose entries m would raise in
// e belongs to c's user (JWT mode). It returns the live entry of m.Name,
// locked, to merge m into, or nil after answering c with an error. e.mu is
// held on entry.
//
// Nodes not seen before are claimed for the user with one store batch
// (Store.ClaimNodes) made without e.mu, so a frame with many new node ids
// does not hold up other users' syncs of the counter. Entries only grow,
// so the nodes m raises once e.mu is taken again are among those it raised
// before: the loop ends after one claim unless the entry was reloaded
// meanwhile.
func (h *counterHub) checkOwners(c subscriber, e *counterEntry, m wire.CounterSync) *counterEntry {
	user := c.User()
	for {
		bad, unknown := h.ownersLocked(e, m.State, user)
		if bad != "" {
			e.mu.Unlock()
			sendError(c, 403, "COUNTER_SYNC %q: node %q belongs to another user; use your own node id", m.Name, bad)
			return nil
		}
		if len(unknown) == 0 {
			return e
		}
		e.mu.Unlock()
		if err := h.claim(unknown, user); err != nil {
			h.s.log.Error("claim nodes", "conn", c.ID(), "nodes", len(unknown), "err", err)
			sendError(c, 500, "COUNTER_SYNC %q: node ownership could not be recorded; retry", m.Name)
			return nil
		}
		var err error
		if e, err = h.lockLive(m.Name); err != nil {
			h.s.log.Error("load counter", "conn", c.ID(), "name", m.Name, "err", err)
			sendError(c, 500, "counter %q could not be loaded; retry", m.Name)
			return nil
		}
	}
}

// ownersLocked looks up the owners of the nodes whose entries s would
// raise in e: it returns a node owned by someone other than user, if any,
// else the nodes whose owner is not known yet. e.mu held.
func (h *counterHub) ownersLocked(e *counterEntry, s crdt.State, user string) (bad string, unknown []string) {
	var seen map[string]bool
	check := func(node string) bool {
		if seen[node] {
			return true
		}
		h.ownersMu.RLock()
		owner, ok := h.owners[node]
		h.ownersMu.RUnlock()
		switch {
		case !ok:
			if seen == nil {
				seen = make(map[string]bool)
			}
			seen[node] = true
			unknown = append(unknown, node)
		case owner != user:
			bad = node
			return false
		}
		return true
	}
	for node, v := range s.P {
		if p, _ := e.ctr.Entry(node); v > p && !check(node) {
			return bad, nil
		}
	}
	for node, v := range s.N {
		if _, n := e.ctr.Entry(node); v > n && !check(node) {
			return bad, nil
		}
	}
	return "", unknown
}

// claim binds the unbound nodes to user with one store batch and caches
// the owners of all of them.
func (h *counterHub) claim(nodes []string, user string) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.StoreTimeout)
	owners, err := h.s.cfg.Store.ClaimNodes(ctx, nodes, user)
	cancel()
	if err != nil {
		return err
	}
	h.ownersMu.Lock()
	for i, node := range nodes {
		h.owners[node] = owners[i]
	}
	h.ownersMu.Unlock()
	return nil
}

// unsubscribe answers COUNTER_UNSUBSCRIBE: c no longer gets the counter's
// updates, and the server forgets the counter if nothing else uses it.
// Unknown or unsubscribed names are ignored (the message is idempotent).
// Reader goroutine.
func (h *counterHub) unsubscribe(c subscriber, name string) {
	subs := c.subscriptions()
	e, ok := subs[name]
	if !ok {
		return
	}
	delete(subs, name)
	e.mu.Lock()
	delete(e.subs, c)
	idle := e.idleLocked()
	e.mu.Unlock()
	c.dropPending(e)
	if idle {
		h.forget(e)
	}
}

// unsubscribeAll drops c from every counter it subscribed to.
func (h *counterHub) unsubscribeAll(c subscriber) {
	subs := c.subscriptions()
	for _, e := range subs {
		e.mu.Lock()
		delete(e.subs, c)
		idle := e.idleLocked()
		e.mu.Unlock()
		if idle {
			h.forget(e)
		}
	}
	clear(subs)
}
