package client

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/wire"
)

// Counter is the handle of one replicated PN-Counter. Reads and writes act
// on the local replica and return at once; the client persists and syncs
// them in the background.
type Counter struct {
	c    *Client
	name string
	node string // this replica's node id

	mu sync.Mutex
	st *crdt.Counter
	// Own entries. The local replica's own slot is always
	//   max(saved + pending, persisted, conf) + unapplied
	// (see raiseOwnLocked), so increments made by another writer sharing
	// the node id and store (another tab) show up after the next Apply or
	// Reload, and a delta being stored is never counted twice: each term
	// is a lower bound of the node's true total.
	//
	// persistedP/N: own totals the store reported (Apply or load). Syncs
	// send these, never more, so the server never holds own entries above
	// the store.
	persistedP, persistedN int64
	// savedP/N: own totals this client's own Apply calls returned (or the
	// store held at load). Unlike persistedP/N they never include what
	// another writer stored, so savedP + pendingP never counts the delta
	// being stored now twice, however its commit and a Reload or a
	// server confirmation interleave.
	savedP, savedN int64
	// pendingP/N: own deltas taken by the worker and not yet applied;
	// pendingUnbased: they were handed to the store as unbased.
	pendingP, pendingN int64
	pendingUnbased     bool
	// baseKnown: the replica knows its own entries of the counter on the
	// server: the store had a based record of it (store.OwnDelta), an
	// Apply reported one, or the server's full state (COUNTER_RESPONSE)
	// arrived. Until then own writes are relative: they go to the store as
	// unbased deltas and are never sent, since an absolute own entry below
	// the server's would be merged away (see "Unknown base" in the package
	// doc).
	baseKnown bool
	// knowGen is the store generation at which the base became known
	// (store.OwnDelta.Gen): a based record read or written then, or the
	// generation seen before the COUNTER_REQUEST whose reply gave it.
	// reqGen is that of the outstanding request (reqPending), and
	// rerequest asks the worker to send one (the store refused a stale
	// base).
	knowGen    uint64
	reqGen     uint64
	reqPending bool
	rerequest  bool
	// loaded is closed once the stored state has been read (OpenCounter
	// reads it in the background).
	loaded     chan struct{}
	loadedOnce sync.Once
	// ubP/N: the unbased amounts the store holds for the counter, as last
	// read or reported (including another tab's).
	ubP, ubN int64
	// unappliedP/N: own deltas not yet taken by the worker.
	unappliedP, unappliedN int64
	// remote: other nodes' entries merged since the last persistence round.
	remote crdt.State
	// confP/N: the highest own entries the server has reported back;
	// ackStoredP/N: what the store holds of them (under ackKey).
	confP, confN           int64
	ackStoredP, ackStoredN int64
	confCh                 chan struct{} // closed and replaced when confP/N rise
	// sentP/N: own entries last sent on sentOn. A round syncs when the
	// persisted entries exceed them (values, not flags, so a write racing
	// with a round is never skipped), or when force asks for a resend.
	sentP, sentN int64
	sentOn       *connection
	force        bool
	version      uint64 // bumped on every value change; starts at 1
	subs         []*subscriber[int64]
	// released: Close was called and the handle not used since; once
	// synced, the connection unsubscribes (see Client.round).
	released bool
	// compact is set once the counter holds a compact view's aggregate of
	// the other nodes (the wire.RestNode entry): other nodes' entries are
	// then folded into it (foldLocked), so st holds at most own + rest.
	compact bool
	// syncedNow is Synced() as last reported to OnSynced callbacks;
	// syncVer is bumped whenever it changes.
	syncedNow bool
	syncVer   uint64
	syncSubs  []*subscriber[bool]
}

// flushRetry is how long Flush waits for a confirmation before it sends
// again.
const flushRetry = 2 * time.Second

// subscriber is one Subscribe (T int64) or OnSynced (T bool) callback.
type subscriber[T any] struct {
	fn      func(T)
	removed atomic.Bool
	seen    atomic.Uint64 // highest version delivered
}

// notify calls every subscriber with v, the value at version ver, unless
// it was removed or already got ver or a newer version (calls may race:
// this keeps each subscriber's values in order).
func notify[T any](subs []*subscriber[T], ver uint64, v T) {
	for _, s := range subs {
		if s.removed.Load() {
			continue
		}
		for {
			old := s.seen.Load()
			if old >= ver {
				break
			}
			if s.seen.CompareAndSwap(old, ver) {
				s.fn(v)
				break
			}
		}
	}
}

func (c *Client) newCounter(name string, st *crdt.Counter) *Counter {
	return &Counter{c: c, name: name, st: st, confCh: make(chan struct{}), loaded: make(chan struct{}),
		version: 1, syncVer: 1, syncedNow: true}
}

// markLoaded closes cnt.loaded once.
func (cnt *Counter) markLoaded() { cnt.loadedOnce.Do(func() { close(cnt.loaded) }) }

// Loaded returns a channel closed once the counter's stored state has been
// read: at once for handles from Client.Counter, after the store read for
// handles from Client.OpenCounter. Until then Get reports only what is
// known (local writes, server states that arrived).
func (cnt *Counter) Loaded() <-chan struct{} { return cnt.loaded }

// change is what a mutation of a counter must tell its subscribers, taken
// under cnt.mu and delivered (fire) after it is released.
type change struct {
	subs     []*subscriber[int64]
	ver      uint64
	v        int64
	syncSubs []*subscriber[bool]
	syncVer  uint64
	synced   bool
}

// changedLocked records a mutation: valueChanged bumps the version for
// value subscribers, and a change of Synced() is recorded for OnSynced
// callbacks. cnt.mu held.
func (cnt *Counter) changedLocked(valueChanged bool) change {
	var ch change
	if valueChanged {
		cnt.version++
		ch.subs, ch.ver, ch.v = cnt.subs, cnt.version, cnt.st.Value()
	}
	if s := cnt.syncedLocked(); s != cnt.syncedNow {
		cnt.syncedNow = s
		cnt.syncVer++
		ch.syncSubs, ch.syncVer, ch.synced = cnt.syncSubs, cnt.syncVer, s
	}
	return ch
}

// fire delivers ch; callers hold no lock.
func (ch change) fire() {
	notify(ch.subs, ch.ver, ch.v)
	notify(ch.syncSubs, ch.syncVer, ch.synced)
}

// Name returns the counter's name.
func (cnt *Counter) Name() string { return cnt.name }

// Get returns the current local value.
func (cnt *Counter) Get() int64 {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	return cnt.st.Value()
}

// Increment adds 1 and returns the new value (the unchanged value if that
// would leave the safe range or the client is closed; use AddAndGet to see
// the error).
func (cnt *Counter) Increment() int64 {
	v, _ := cnt.AddAndGet(1)
	return v
}

// Decrement subtracts 1 and returns the new value, like Increment.
func (cnt *Counter) Decrement() int64 {
	v, _ := cnt.AddAndGet(-1)
	return v
}

// AddAndGet adds delta and returns the new value. If the result, or this
// replica's own entry, would leave the JavaScript safe-integer range it
// returns the unchanged value and an error wrapping crdt.ErrOutOfRange,
// and changes nothing. After Close it returns ErrClosed.
func (cnt *Counter) AddAndGet(delta int64) (int64, error) {
	if cnt.c.closed.Load() {
		return cnt.Get(), ErrClosed
	}
	if delta == 0 {
		return cnt.Get(), nil
	}
	cnt.mu.Lock()
	v, err := cnt.st.Add(cnt.node, delta)
	if err != nil {
		cnt.mu.Unlock()
		return v, fmt.Errorf("client: counter %q: %w", cnt.name, err)
	}
	cnt.released = false
	if delta > 0 {
		cnt.unappliedP += delta
	} else {
		cnt.unappliedN -= delta
	}
	ch := cnt.changedLocked(true)
	cnt.mu.Unlock()
	cnt.c.markDirty(cnt, false)
	ch.fire()
	return v, nil
}

// raiseOwnLocked raises the replica's own slot to what the store, the
// server and local writes together account for, and reports whether the
// value changed. cnt.mu held.
func (cnt *Counter) raiseOwnLocked() bool {
	// Pending deltas count on the side of the store they went to: added
	// to the saved own slot, or to the unbased slot. Relative (unbased)
	// amounts are a lower bound of the own entries whatever the base; the
	// replica never adds them to a base itself (the store does, in the
	// Apply that rebases them, whose total then arrives as saved).
	sp, sn, up, un := cnt.pendingP, cnt.pendingN, int64(0), int64(0)
	if cnt.pendingUnbased {
		sp, sn, up, un = 0, 0, cnt.pendingP, cnt.pendingN
	}
	want := crdt.State{
		P: map[string]int64{cnt.node: max(cnt.savedP+sp, cnt.persistedP, cnt.confP, cnt.ubP+up) + cnt.unappliedP},
		N: map[string]int64{cnt.node: max(cnt.savedN+sn, cnt.persistedN, cnt.confN, cnt.ubN+un) + cnt.unappliedN},
	}
	before := cnt.st.Value()
	if _, err := cnt.st.Merge(want); err != nil {
		cnt.c.log.Warn("client: own entries out of range", "counter", cnt.name, "err", err)
		return false
	}
	return cnt.st.Value() != before
}

// Subscribe calls fn at once with the current value, then with the new
// value after every local or remote change. Local changes call fn
// synchronously in the writing goroutine; remote ones from the
// connection's goroutine, so fn may run concurrently with itself and must
// not block for long. fn never receives a value older than one it already
// received. It returns a function that unregisters fn (a call already
// under way may still complete).
func (cnt *Counter) Subscribe(fn func(int64)) (unsubscribe func()) {
	cnt.Acquire()
	s := &subscriber[int64]{fn: fn}
	cnt.mu.Lock()
	ver, v := cnt.version, cnt.st.Value()
	s.seen.Store(ver - 1) // version starts at 1
	cnt.subs = append(cnt.subs[:len(cnt.subs):len(cnt.subs)], s)
	cnt.mu.Unlock()
	notify([]*subscriber[int64]{s}, ver, v) // unless a newer value got there first
	return unsubscriber(&cnt.mu, func() {
		s.removed.Store(true)
		cnt.subs = without(cnt.subs, func(x *subscriber[int64]) bool { return x == s })
	})
}

// OnSynced calls fn with the new Synced() value whenever it changes: false
// after a local write the server has not confirmed, true once it has
// confirmed every local write. It calls fn at once with the current
// value. Calls come from the writing goroutine or the connection's, like
// Subscribe's, and never deliver an older state after a newer one. It
// returns a function that unregisters fn.
func (cnt *Counter) OnSynced(fn func(synced bool)) (unsubscribe func()) {
	cnt.Acquire()
	s := &subscriber[bool]{fn: fn}
	cnt.mu.Lock()
	ver, synced := cnt.syncVer, cnt.syncedNow
	s.seen.Store(ver - 1) // syncVer starts at 1
	cnt.syncSubs = append(cnt.syncSubs[:len(cnt.syncSubs):len(cnt.syncSubs)], s)
	cnt.mu.Unlock()
	notify([]*subscriber[bool]{s}, ver, synced) // unless a newer state got there first
	return unsubscriber(&cnt.mu, func() {
		s.removed.Store(true)
		cnt.syncSubs = without(cnt.syncSubs, func(x *subscriber[bool]) bool { return x == s })
	})
}

// Synced reports whether the server has confirmed every local write of
// this replica to the counter.
func (cnt *Counter) Synced() bool {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	return cnt.syncedLocked()
}

func (cnt *Counter) syncedLocked() bool {
	p, n := cnt.st.Entry(cnt.node)
	if cnt.ubP != 0 || cnt.ubN != 0 || (cnt.pendingUnbased && (cnt.pendingP != 0 || cnt.pendingN != 0)) {
		return false // relative writes not yet on top of the base
	}
	return cnt.confP >= p && cnt.confN >= n
}

// Flush persists and sends local writes now, without waiting for the sync
// debounce, and waits until the server has confirmed them (Synced), ctx
// ends or the client is closed. Offline, it waits for the connection.
func (cnt *Counter) Flush(ctx context.Context) error {
	cnt.Acquire()
	kick := true
	retry := time.NewTimer(flushRetry)
	defer retry.Stop()
	for {
		cnt.mu.Lock()
		if cnt.syncedLocked() {
			cnt.mu.Unlock()
			return nil
		}
		ch := cnt.confCh
		if kick {
			cnt.force = true
		}
		cnt.mu.Unlock()
		if kick {
			cnt.c.markDirty(cnt, true)
			kick = false
		}
		select {
		case <-ch:
		case <-retry.C:
			// A reply can be lost without the connection dropping (the
			// server answered ERROR 429 or 500): send again.
			kick = true
			retry.Reset(flushRetry)
		case <-ctx.Done():
			return ctx.Err()
		case <-cnt.c.done:
			return ErrClosed
		}
	}
}

// takePersist hands the worker what the store lacks: local deltas, the
// server's own totals as floors, other nodes' entries.
//
// A counter whose base is known always gets an own delta, with the own
// entries it knows of as floors: its record, if the store evicted it
// meanwhile, comes back based and whole. One whose base is unknown hands
// over only its writes, as an unbased delta; other nodes' entries wait
// in memory until the base is known.
func (cnt *Counter) takePersist() persistSnap {
	select {
	case <-cnt.loaded:
	default:
		// Its record is being read (the round waited until its context
		// ended): writes wait in memory, so that the stored value and
		// they add up exactly when it arrives (the read marks the
		// counter dirty again).
		return persistSnap{cnt: cnt}
	}
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	s := persistSnap{cnt: cnt, dp: cnt.unappliedP, dn: cnt.unappliedN, compact: cnt.compact}
	cnt.unappliedP, cnt.unappliedN = 0, 0
	cnt.pendingP += s.dp
	cnt.pendingN += s.dn
	if !cnt.baseKnown {
		s.unbased = true
		cnt.pendingUnbased = true
		s.hasOwn = s.dp != 0 || s.dn != 0
		return s
	}
	cnt.pendingUnbased = false
	s.hasOwn = true
	s.gen = cnt.knowGen
	s.floorP, s.floorN = max(cnt.confP, cnt.persistedP), max(cnt.confN, cnt.persistedN)
	if cnt.confP > cnt.ackStoredP || cnt.confN > cnt.ackStoredN {
		s.ackP, s.ackN = cnt.confP, cnt.confN
	}
	s.remote, cnt.remote = cnt.remote, crdt.State{}
	if s.ackP > 0 || s.ackN > 0 {
		crdt.RaiseInto(&s.remote, entries(ackKey, s.ackP, s.ackN))
	}
	return s
}

// own reports whether s carries an own delta for the store.
func (s persistSnap) own() bool { return s.hasOwn }

// persisted records a successful Apply of s, whose own slots the store
// reported as t (zero if s had no own delta), and returns what changed
// (another writer's increments may have arrived).
func (cnt *Counter) persisted(s persistSnap, t store.OwnTotal) change {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	cnt.pendingP -= s.dp
	cnt.pendingN -= s.dn
	if s.own() && t.Unbased {
		// The store keeps them relative: it has no based record, and
		// this replica's base, if it had one, may be stale (the record
		// was evicted since): learn it again from the server.
		cnt.ubP, cnt.ubN = t.UP, t.UN
		if !s.unbased && cnt.baseKnown {
			cnt.baseKnown = false
			cnt.rerequest = true
		}
		return cnt.changedLocked(cnt.raiseOwnLocked())
	}
	if s.own() {
		// A based total: it includes every unbased amount the store moved.
		cnt.ubP, cnt.ubN = 0, 0
		cnt.knowGen = max(cnt.knowGen, t.Gen)
		if !cnt.baseKnown {
			cnt.setBaseKnownLocked()
		}
	}
	cnt.persistedP = max(cnt.persistedP, t.P)
	cnt.persistedN = max(cnt.persistedN, t.N)
	cnt.savedP = max(cnt.savedP, t.P)
	cnt.savedN = max(cnt.savedN, t.N)
	cnt.ackStoredP = max(cnt.ackStoredP, s.ackP)
	cnt.ackStoredN = max(cnt.ackStoredN, s.ackN)
	return cnt.changedLocked(cnt.raiseOwnLocked())
}

// restorePersist undoes takePersist after a failed Apply.
func (cnt *Counter) restorePersist(s persistSnap) {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	cnt.pendingP -= s.dp
	cnt.pendingN -= s.dn
	cnt.unappliedP += s.dp
	cnt.unappliedN += s.dn
	rem, _ := splitPseudo(s.remote) // the next round stores the ack again
	crdt.RaiseInto(&cnt.remote, rem)
}

// setBaseKnownLocked records that the own entries are known now, and wakes
// Flush, which waits for the based round. cnt.mu held.
func (cnt *Counter) setBaseKnownLocked() {
	cnt.baseKnown = true
	close(cnt.confCh)
	cnt.confCh = make(chan struct{})
}

// ownPersisted returns this replica's persisted entries as a state.
func (cnt *Counter) ownPersistedLocked() crdt.State {
	return entries(cnt.node, cnt.persistedP, cnt.persistedN)
}

// subscribeMessage is the frame that subscribes cn to the counter:
// COUNTER_SYNC with the persisted own entries (the reply carries the full
// merged state), or COUNTER_REQUEST if there are none.
func (cnt *Counter) subscribeMessage(cn *connection) wire.Message {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	cnt.sentOn, cnt.sentP, cnt.sentN, cnt.force = cn, cnt.persistedP, cnt.persistedN, false
	own := cnt.ownPersistedLocked()
	if !cnt.baseKnown {
		// Nothing of the own entries is sent: the sync after the base
		// sends them (the server may lack them: a lagging node).
		cnt.sentP, cnt.sentN = 0, 0
		cnt.requestLocked()
		return wire.CounterRequest{Name: cnt.name}
	}
	if own.Len() == 0 {
		return wire.CounterRequest{Name: cnt.name}
	}
	return wire.CounterSync{Name: cnt.name, State: own}
}

// requestLocked notes a COUNTER_REQUEST about to be sent while the base is
// unknown: its reply's own entries will be the base, valid from the store
// generation seen now (the oldest of the requests outstanding). cnt.mu
// held.
func (cnt *Counter) requestLocked() {
	g := cnt.c.seenGen.Load()
	if !cnt.reqPending || g < cnt.reqGen {
		cnt.reqGen = g
	}
	cnt.reqPending = true
	cnt.rerequest = false
}

// takeRerequest reports whether the worker must send a COUNTER_REQUEST
// (the store refused a stale base), noting it as sent.
func (cnt *Counter) takeRerequest() bool {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	if !cnt.rerequest || cnt.baseKnown {
		return false
	}
	cnt.sentP, cnt.sentN = 0, 0 // the sync after the base sends them
	cnt.requestLocked()
	return true
}

// sendSync sends the persisted own entries on cn if they are ahead of what
// was last sent there, or if Flush forces a resend.
func (cnt *Counter) sendSync(cn *connection) {
	cnt.mu.Lock()
	if !cnt.force && cnt.sentOn == cn && cnt.persistedP <= cnt.sentP && cnt.persistedN <= cnt.sentN {
		cnt.mu.Unlock()
		return
	}
	cnt.sentOn, cnt.sentP, cnt.sentN, cnt.force = cn, cnt.persistedP, cnt.persistedN, false
	own := cnt.ownPersistedLocked()
	based := cnt.baseKnown
	cnt.mu.Unlock()
	if own.Len() == 0 || !based {
		return
	}
	_ = cn.send(cnt.c.ctx, wire.CounterSync{Name: cnt.name, State: own})
}

// merge folds a state from the server (COUNTER_RESPONSE or _UPDATE) into
// the replica. full is set for a COUNTER_RESPONSE: the server's whole
// state (or view), whose own entries, absent meaning zero, are the base.
func (cnt *Counter) merge(s crdt.State, full bool) {
	cnt.mu.Lock()
	cnt.confirmLocked(s.P[cnt.node], s.N[cnt.node])
	based := false
	if full && !cnt.baseKnown && cnt.reqPending {
		cnt.setBaseKnownLocked()
		cnt.knowGen = cnt.reqGen
		cnt.reqPending = false
		based = true
	}
	before := cnt.st.Value()
	// Own entries are not merged as such: the server's own totals are
	// floors (conf), folded in by raiseOwnLocked and sent to the store as
	// floors, so local deltas are never counted twice.
	others := crdt.State{P: s.P, N: s.N}
	if _, ok := s.P[cnt.node]; ok {
		others.P = maps.Clone(s.P)
		delete(others.P, cnt.node)
	}
	if _, ok := s.N[cnt.node]; ok {
		others.N = maps.Clone(s.N)
		delete(others.N, cnt.node)
	}
	changed, err := cnt.st.Merge(others)
	if err != nil {
		cnt.mu.Unlock()
		cnt.c.log.Warn("client: dropping counter state from server", "counter", cnt.name, "err", err)
		return
	}
	crdt.RaiseInto(&cnt.remote, changed)
	if isView(s) {
		cnt.compact = true
	}
	cnt.foldLocked()
	cnt.raiseOwnLocked()
	dirty := based || changed.Len() > 0 || cnt.confP > cnt.ackStoredP || cnt.confN > cnt.ackStoredN ||
		(cnt.released && cnt.syncedLocked()) // its unsubscription waited for this
	if dirty {
		// Queued before cnt.mu is released: a Flush woken by the
		// confirmation above checks Synced under cnt.mu, and Close's
		// Persist right after it must find the confirmation to store
		// (else the next Start resends an unused counter).
		cnt.c.markDirty(cnt, false)
	}
	ch := cnt.changedLocked(cnt.st.Value() != before)
	cnt.mu.Unlock()
	ch.fire()
}

// Own returns this replica's own entries (p, n) of the counter: the
// magnitudes that an AddAndGet must keep within 2^53-1.
func (cnt *Counter) Own() (p, n int64) {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	return cnt.st.Entry(cnt.node)
}

// reload folds a state read back from the store (written there by another
// writer sharing it, such as another browser tab) into the replica: own
// totals as stored totals, other nodes' entries by max. It returns what
// changed, and whether the persisted own entries are now ahead of what was
// last sent (another writer's increments this client should deliver).
func (cnt *Counter) reload(st crdt.State, based bool, gen uint64) (ch change, ahead bool) {
	s, ps := splitPseudo(st)
	ackP, ackN := ps.P[ackKey], ps.N[ackKey]
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	// The store's unbased amounts now (moved to the own slot by another
	// writer's based delta if gone: the record is based then).
	cnt.ubP, cnt.ubN = ps.P[store.UnbasedNode], ps.N[store.UnbasedNode]
	if based {
		cnt.knowGen = max(cnt.knowGen, gen)
		if !cnt.baseKnown {
			cnt.setBaseKnownLocked()
			ahead = true // the based round and the sync it allows
		}
	}
	cnt.ackStoredP, cnt.ackStoredN = max(cnt.ackStoredP, ackP), max(cnt.ackStoredN, ackN)
	cnt.confirmLocked(ackP, ackN) // another tab's connection got the confirmation
	before := cnt.st.Value()
	cnt.persistedP = max(cnt.persistedP, s.P[cnt.node])
	cnt.persistedN = max(cnt.persistedN, s.N[cnt.node])
	others := crdt.State{P: maps.Clone(s.P), N: maps.Clone(s.N)}
	delete(others.P, cnt.node)
	delete(others.N, cnt.node)
	if _, err := cnt.st.Merge(others); err != nil {
		cnt.c.log.Warn("client: dropping stored counter state", "counter", cnt.name, "err", err)
	}
	if isView(s) {
		cnt.compact = true
	}
	cnt.foldLocked()
	cnt.raiseOwnLocked()
	ahead = ahead || cnt.persistedP > cnt.sentP || cnt.persistedN > cnt.sentN
	return cnt.changedLocked(cnt.st.Value() != before), ahead
}

// confirmLocked raises the server's confirmation of the own entries to
// (p, n) and wakes Flush if it rose. cnt.mu held.
func (cnt *Counter) confirmLocked(p, n int64) {
	if p <= cnt.confP && n <= cnt.confN {
		return
	}
	cnt.confP, cnt.confN = max(cnt.confP, p), max(cnt.confN, n)
	close(cnt.confCh)
	cnt.confCh = make(chan struct{})
}

// entries returns a state holding node's positive entries p and n (zero
// entries are left out, as stores and the wire do).
func entries(node string, p, n int64) crdt.State {
	s := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	if p > 0 {
		s.P[node] = p
	}
	if n > 0 {
		s.N[node] = n
	}
	return s
}

// isView reports whether s is (or holds) a compact view: it has the
// aggregate entry of the other nodes.
func isView(s crdt.State) bool {
	_, p := s.P[wire.RestNode]
	_, n := s.N[wire.RestNode]
	return p || n
}

// foldLocked keeps a compact counter at O(1): entries of individual other
// nodes (from a full state of a server without compact views, or stored
// before this client had them) fold into the aggregate by per-side max,
// which is a lower bound of the truth as both are, so nothing is counted
// twice. The folded aggregate goes to the store with the other remote
// changes. cnt.mu held.
func (cnt *Counter) foldLocked() {
	if !cnt.compact {
		return
	}
	ownP, ownN := cnt.st.Entry(cnt.node)
	restP, restN := cnt.st.Entry(wire.RestNode)
	if cnt.st.Len() <= btoi(ownP > 0)+btoi(ownN > 0)+btoi(restP > 0)+btoi(restN > 0) {
		return // nothing but own and rest
	}
	s := cnt.st.State()
	var op, on int64
	for k, v := range s.P {
		if k != cnt.node && k != wire.RestNode {
			op += v
		}
	}
	for k, v := range s.N {
		if k != cnt.node && k != wire.RestNode {
			on += v
		}
	}
	rest := entries(wire.RestNode, max(restP, op), max(restN, on))
	folded := entries(cnt.node, ownP, ownN)
	folded.Raise(rest)
	st, err := crdt.FromState(folded)
	if err != nil {
		cnt.c.log.Warn("client: folding counter entries", "counter", cnt.name, "err", err)
		return
	}
	cnt.st = st
	// The other nodes' entries pending for the store are replaced by the
	// aggregate.
	cnt.remote = rest
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Close releases the handle: the client stops receiving the counter's
// remote changes (the server forgets this connection's subscription) once
// every local write is confirmed, and, while released, the counter costs
// nothing on reconnect. Writes are never dropped: unconfirmed ones are
// still delivered first. Get then returns the last known value, which may
// fall behind. Using the handle again (AddAndGet, Subscribe, OnSynced,
// Flush, or Client.Counter with its name) takes it back: it subscribes
// again and catches up. Close is idempotent.
func (cnt *Counter) Close() {
	cnt.mu.Lock()
	if cnt.released {
		cnt.mu.Unlock()
		return
	}
	cnt.released = true
	cnt.mu.Unlock()
	cnt.c.markDirty(cnt, true)
}

// Acquire takes a handle released by Close back, as using it does:
// it subscribes again and catches up.
func (cnt *Counter) Acquire() {
	cnt.mu.Lock()
	was := cnt.released
	cnt.released = false
	cnt.mu.Unlock()
	if was {
		cnt.c.markDirty(cnt, true) // the worker subscribes it again
	}
}

// idle reports whether the counter is released and has nothing left to
// deliver: the connection need not be subscribed.
func (cnt *Counter) idle() bool {
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	return cnt.released && cnt.syncedLocked()
}

// ackKey is where a store keeps the server's confirmation of this
// replica's own entries: a pseudo-node entry on each side (not a valid node
// id, never sent, merged by max like every entry), so that after a restart
// the client knows which counters have nothing to deliver.
const ackKey = store.AckNode

// splitPseudo returns s without the store's bookkeeping entries (ackKey
// and store.UnbasedNode), and those entries.
func splitPseudo(s crdt.State) (clean, pseudo crdt.State) {
	pseudo = crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	found := false
	for _, k := range []string{ackKey, store.UnbasedNode} {
		if v, ok := s.P[k]; ok {
			pseudo.P[k], found = v, true
		}
		if v, ok := s.N[k]; ok {
			pseudo.N[k], found = v, true
		}
	}
	if !found {
		return s, pseudo
	}
	clean = s.Clone()
	for _, k := range []string{ackKey, store.UnbasedNode} {
		delete(clean.P, k)
		delete(clean.N, k)
	}
	return clean, pseudo
}
