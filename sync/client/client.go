package client

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/wire"
)

// maxNodeLen is the longest node id the server stores.
const maxNodeLen = 256

// finalPersistTimeout bounds the last persistence round run by Close.
const finalPersistTimeout = 5 * time.Second

// persistRetry is the delay before a failed Store.Apply is retried.
const persistRetry = time.Second

// Client is the engine: one connection to a server (one of its URLs at a
// time), the counters and locks used through it, and their local
// persistence. Its methods are safe for concurrent use.
type Client struct {
	opts     Options
	log      Logger
	store    store.Store
	ownStore bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
	closed atomic.Bool

	nodeID string   // set once by Start, read-only afterwards
	urls   []string // Options.URL then Options.URLs, without duplicates

	mu        sync.Mutex
	urlIdx    int // urls[urlIdx] is in use; only run changes it
	started   bool
	state     State
	stateCh   chan struct{} // closed and replaced on every state change
	lastErr   error
	stateSubs []stateSub
	errSubs   []errSub
	subSeq    uint64
	token     string // Options.Token, replaced by SetToken
	usedToken string // the token of the last attempt
	// stashedToken is a TokenFunc result holdForToken fetched for the
	// next attempt (hasStash set).
	stashedToken string
	hasStash     bool
	counters     map[string]*Counter
	locks        map[string]*Lock
	bounded      map[string]*BoundedCounter
	conn         *connection // the ready connection, or nil

	// dirty counters waiting for the persistence and sync worker
	dirtyMu sync.Mutex
	dirty   map[*Counter]struct{}
	armed   bool
	kick    chan struct{}

	persistCh chan persistReq // Persist asks the worker for a round

	// touched: names handles asked for since the last round (Batch.Touch);
	// written: names written since the last eviction; evictDue: run Evict
	// after the next round. Under dirtyMu.
	touched  map[string]struct{}
	written  map[string]struct{}
	evictDue bool

	// seenGen is the highest store generation seen (store.Snapshot.Gen,
	// store.OwnTotal.Gen).
	seenGen atomic.Uint64

	retry  chan struct{}              // RetryNow ends a reconnect wait
	paused atomic.Bool                // SetOnline(false)
	cur    atomic.Pointer[connection] // the connection being served, if any
	// authHeld is set while the client waits for a new token after the
	// server refused one (or asked for one it does not have).
	authHeld atomic.Bool
}

type stateSub struct {
	id uint64
	fn func(State)
}

type errSub struct {
	id uint64
	fn func(error)
}

// persistReq is one Persist call waiting for a worker round.
type persistReq struct {
	ctx  context.Context
	done chan error
}

// New returns a client for opts. It does no I/O; call Start.
func New(opts Options) (*Client, error) {
	urls, err := serverURLs(opts)
	if err != nil {
		return nil, err
	}
	if opts.NodeID != "" && len(opts.NodeID) > maxNodeLen {
		return nil, fmt.Errorf("client: node id longer than %d bytes", maxNodeLen)
	}
	opts.setDefaults()
	c := &Client{
		opts:      opts,
		log:       opts.Logger,
		urls:      urls,
		store:     opts.Store,
		stateCh:   make(chan struct{}),
		counters:  make(map[string]*Counter),
		locks:     make(map[string]*Lock),
		bounded:   make(map[string]*BoundedCounter),
		dirty:     make(map[*Counter]struct{}),
		touched:   make(map[string]struct{}),
		written:   make(map[string]struct{}),
		kick:      make(chan struct{}, 1),
		retry:     make(chan struct{}, 1),
		done:      make(chan struct{}),
		persistCh: make(chan persistReq),
		token:     opts.Token,
	}
	if c.store == nil {
		c.store = store.NewMemory()
		c.ownStore = true
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// serverURLs returns opts.URL followed by opts.URLs, each once.
func serverURLs(opts Options) ([]string, error) {
	urls := make([]string, 0, 1+len(opts.URLs))
	seen := make(map[string]bool, 1+len(opts.URLs))
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			urls = append(urls, u)
		}
	}
	if opts.URL != "" {
		add(opts.URL)
	}
	for i, u := range opts.URLs {
		if u == "" {
			return nil, fmt.Errorf("client: Options.URLs[%d] is empty", i)
		}
		add(u)
	}
	if len(urls) == 0 {
		return nil, errors.New("client: Options.URL is required")
	}
	return urls, nil
}

// Start loads the node id and the stored counters with pending writes
// (Store.Pending: writes the server has not confirmed), then starts
// connecting in the background. Other stored counters are read when a
// handle asks for them (Counter, OpenCounter). It does not wait for the
// network: counters work offline at once. Start may be called once.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed.Load():
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("client: already started")
	}
	c.mu.Unlock()

	node := c.opts.NodeID
	if node == "" {
		var err error
		node, err = c.store.NodeID(ctx, newID)
		if err != nil {
			return fmt.Errorf("client: node id: %w", err)
		}
		if node == "" || len(node) > maxNodeLen {
			return fmt.Errorf("client: stored node id of %d bytes is invalid", len(node))
		}
	}
	snap, err := c.store.Pending(ctx)
	if err != nil {
		return fmt.Errorf("client: load pending counters: %w", err)
	}
	c.noteGen(snap.Gen)
	loaded := make(map[string]*Counter, len(snap.States))
	for name, st := range snap.States {
		cnt, err := c.loadCounter(name, node, st, snap.Based[name], snap.Gen)
		if err != nil {
			return err
		}
		loaded[name] = cnt
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	if c.started {
		return errors.New("client: already started")
	}
	c.started = true
	c.nodeID = node
	for name, cnt := range loaded {
		cnt.node = node
		c.counters[name] = cnt
	}
	c.dirtyMu.Lock()
	c.evictDue = c.opts.MaxStoredCounters >= 0
	c.dirtyMu.Unlock()
	c.signal() // the first round evicts down to the cap
	c.wg.Add(2)
	go c.run()
	go c.worker()
	return nil
}

// loadCounter makes the handle of a counter read from the store. It starts
// released: until the app uses it, it costs nothing on the wire if the
// server confirmed all its writes (which the store remembers under ackKey),
// and it is delivered, then released, if not.
func (c *Client) loadCounter(name, node string, st crdt.State, based bool, gen uint64) (*Counter, error) {
	clean, ps := splitPseudo(st)
	ackP, ackN := ps.P[ackKey], ps.N[ackKey]
	cr, err := crdt.FromState(clean)
	if err != nil {
		return nil, fmt.Errorf("client: stored counter %q: %w", name, err)
	}
	cnt := c.newCounter(name, cr)
	cnt.node = node
	cnt.persistedP, cnt.persistedN = clean.P[node], clean.N[node]
	cnt.savedP, cnt.savedN = cnt.persistedP, cnt.persistedN
	cnt.confP, cnt.confN = ackP, ackN
	cnt.ackStoredP, cnt.ackStoredN = ackP, ackN
	cnt.ubP, cnt.ubN = ps.P[store.UnbasedNode], ps.N[store.UnbasedNode]
	cnt.baseKnown = based
	cnt.knowGen = gen
	cnt.compact = isView(clean)
	cnt.foldLocked()
	cnt.raiseOwnLocked()
	cnt.remote = crdt.State{} // stored already; a folded aggregate is not news
	cnt.released = true
	cnt.syncedNow = cnt.syncedLocked()
	cnt.markLoaded()
	return cnt, nil
}

// Close delivers what it can, then stops. It refuses new writes, persists
// every pending local change and, within Options.CloseTimeout, tries to
// deliver the writes the server has not confirmed: it connects at once if
// the client is between attempts, and waits for the server's confirmation
// (not when the client is offline on purpose, SetOnline(false), or waits
// for a new token after an authentication failure). Then it closes the
// connection and releases every goroutine.
//
// When writes remain unconfirmed Close returns an *UndeliveredError
// (errors.Is(err, ErrUndelivered)) naming their counters; they stay in the
// Store and the next Start with it sends them, unless the store is the
// default in-memory one. Held locks are freed by the server when the
// connection closes, and their OnLost callbacks fire with "disconnected".
// Pending calls return ErrClosed. Close closes the store only if the
// client created it. Calls after the first return nil at once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true) // no new writes, handles or lock requests
	started := c.started
	c.mu.Unlock()
	var undelivered error
	if started {
		undelivered = c.drain()
	}
	c.cancel()
	close(c.done)
	c.wg.Wait()
	var err error
	if c.ownStore {
		err = c.store.Close()
	}
	c.setState(Closed, nil)
	return errors.Join(undelivered, err)
}

// drain is Close's grace period: persist, then deliver within
// CloseTimeout. It returns an *UndeliveredError if writes remain.
func (c *Client) drain() error {
	grace := max(c.opts.CloseTimeout, 0)
	ctx, cancel := context.WithTimeout(context.Background(), grace+finalPersistTimeout)
	defer cancel()
	perr := c.Persist(ctx)
	if grace > 0 && !c.paused.Load() && !c.authHeld.Load() {
		if pending := c.unsynced(); len(pending) != 0 {
			dctx, dcancel := context.WithTimeout(context.Background(), grace)
			defer dcancel()
			c.RetryNow() // between attempts: try now, not after the backoff
			_ = flush(dctx, pending)
		}
	}
	left := c.unsynced()
	if len(left) == 0 {
		return nil
	}
	names := make([]string, len(left))
	for i, cnt := range left {
		names[i] = cnt.name
	}
	sort.Strings(names)
	cause := perr
	if cause == nil {
		cause = c.Err()
	}
	if cause == nil && c.paused.Load() {
		cause = ErrOffline
	}
	if cause == nil {
		cause = fmt.Errorf("no confirmation from the server within CloseTimeout (%v): %w", grace, context.DeadlineExceeded)
	}
	return &UndeliveredError{Counters: names, Kept: !c.ownStore && perr == nil, Cause: cause}
}

// unsynced returns the counters with writes the server has not confirmed.
func (c *Client) unsynced() []*Counter {
	c.mu.Lock()
	list := make([]*Counter, 0, len(c.counters))
	for _, cnt := range c.counters {
		list = append(list, cnt)
	}
	c.mu.Unlock()
	out := list[:0]
	for _, cnt := range list {
		if !cnt.Synced() {
			out = append(out, cnt)
		}
	}
	return out
}

// Persist writes every pending local change to the Store now, instead of
// after Options.SyncDelay, and returns once the store has it (an error
// wrapping ErrStorage if it failed: the writes stay pending and are
// retried). A program that must not lose a write if it is killed calls
// Persist before it acts on the write; delivery to the server still
// happens in the background (Flush waits for it).
func (c *Client) Persist(ctx context.Context) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return ErrNotStarted
	}
	r := persistReq{ctx: ctx, done: make(chan error, 1)}
	select {
	case c.persistCh <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush persists and sends every counter's local writes now and waits
// until the server has confirmed all of them (see Counter.Flush), ctx ends
// or the client is closed.
func (c *Client) Flush(ctx context.Context) error { return flush(ctx, c.unsynced()) }

// flush flushes each counter of list in turn, stopping at the first error.
func flush(ctx context.Context, list []*Counter) error {
	for _, cnt := range list {
		if err := cnt.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// NodeID returns this replica's node id ("" before Start).
func (c *Client) NodeID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeID
}

// URL returns the server URL in use: the one the client is connected or
// connecting to or, between attempts, the one it dials next. It changes
// only with more than one URL (Options.URLs), after an attempt failed or a
// connection was lost, and before the state becomes Offline.
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urls[c.urlIdx]
}

// nextURL moves to the next server URL, round-robin, and reports whether
// that is another URL than before.
func (c *Client) nextURL() bool {
	if len(c.urls) < 2 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.urlIdx = (c.urlIdx + 1) % len(c.urls)
	return true
}

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Err returns the error that ended the last connection attempt or
// connection (an *AuthError, ErrAuthRequired, a dial error...), or nil once
// a connection is ready.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// OnStateChange registers fn to be called with every new state, in order,
// from the client's connection goroutine (fn must not block for long). It
// returns a function that unregisters fn.
func (c *Client) OnStateChange(fn func(State)) (unsubscribe func()) {
	c.mu.Lock()
	c.subSeq++
	id := c.subSeq
	c.stateSubs = append(c.stateSubs, stateSub{id, fn})
	c.mu.Unlock()
	return unsubscriber(&c.mu, func() {
		c.stateSubs = without(c.stateSubs, func(s stateSub) bool { return s.id == id })
	})
}

// OnError registers fn to be called with every error the client reports,
// in order: each failed connection attempt or lost connection (as Err
// reports them: an *AuthError, ErrAuthRequired, ErrConnect, ErrToken,
// ErrHandshakeTimeout, ErrHeartbeat, ErrDisconnected), each failed
// persistence round (ErrStorage) and each ERROR frame from the server (a
// *ServerError). fn runs on one of the client's goroutines and must not
// block for long. It returns a function that unregisters fn.
func (c *Client) OnError(fn func(error)) (unsubscribe func()) {
	c.mu.Lock()
	c.subSeq++
	id := c.subSeq
	c.errSubs = append(c.errSubs, errSub{id, fn})
	c.mu.Unlock()
	return unsubscriber(&c.mu, func() {
		c.errSubs = without(c.errSubs, func(s errSub) bool { return s.id == id })
	})
}

// report hands err to the OnError callbacks.
func (c *Client) report(err error) {
	c.mu.Lock()
	subs := c.errSubs
	c.mu.Unlock()
	for _, s := range subs {
		s.fn(err)
	}
}

// SetToken replaces the JWT sent in AUTH (Options.Token) from the next
// connection attempt on, and, if the client was waiting for a new token
// after an authentication failure, connects at once. With a TokenFunc,
// TokenFunc still decides: call RetryNow to have it called again.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
	c.RetryNow()
}

// WaitReady blocks until the client is Ready, ctx ends (ctx.Err()) or the
// client is closed (ErrClosed).
func (c *Client) WaitReady(ctx context.Context) error {
	_, err := c.waitConn(ctx)
	return err
}

// waitConn returns the ready connection, waiting for one.
func (c *Client) waitConn(ctx context.Context) (*connection, error) {
	for {
		c.mu.Lock()
		if c.closed.Load() {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if !c.started {
			c.mu.Unlock()
			return nil, ErrNotStarted
		}
		if c.state == Ready && c.conn != nil {
			cn := c.conn
			c.mu.Unlock()
			return cn, nil
		}
		ch := c.stateCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		}
	}
}

// readyConn returns the ready connection or nil.
func (c *Client) readyConn() *connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	if err != nil || s == Ready {
		c.lastErr = err
	}
	if c.state == s || (c.state == Closed) {
		c.mu.Unlock()
		return
	}
	c.state = s
	close(c.stateCh)
	c.stateCh = make(chan struct{})
	subs := append([]stateSub(nil), c.stateSubs...)
	c.mu.Unlock()
	if err != nil {
		c.log.Debug("client: state", "state", s, "err", err)
	} else {
		c.log.Debug("client: state", "state", s)
	}
	for _, sub := range subs {
		sub.fn(s)
	}
}

// Counter returns the handle of counter name; every call with one name
// returns the same *Counter. On first use in this client it reads the
// counter's record from the store (Store.Load; an error wrapping
// ErrStorage if that fails), so Get is the stored value at once; a
// counter the store does not hold starts empty. The handle subscribes to
// the server's state at once when ready, otherwise on the next transition
// to ready.
func (c *Client) Counter(name string) (*Counter, error) {
	return c.counter(name, true)
}

// OpenCounter is Counter without waiting for the store: it returns at once
// and the stored state is read in the background (Loaded is closed then;
// subscribers get the loaded value as a change). Writes made before that
// are kept and counted on top of the stored value. The browser build uses
// it, as a JS call cannot wait for IndexedDB.
func (c *Client) OpenCounter(name string) (*Counter, error) {
	return c.counter(name, false)
}

func (c *Client) counter(name string, wait bool) (*Counter, error) {
	if err := checkName(name); err != nil {
		return nil, err
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
	cnt, ok := c.counters[name]
	if !ok {
		cnt = c.newCounter(name, crdt.New())
		cnt.node = c.nodeID
		c.counters[name] = cnt
	}
	c.mu.Unlock()
	c.dirtyMu.Lock()
	c.touched[name] = struct{}{}
	c.dirtyMu.Unlock()
	if ok {
		cnt.Acquire()
		if wait {
			select {
			case <-cnt.loaded:
			case <-c.done:
				return nil, ErrClosed
			}
		}
		return cnt, nil
	}
	if !wait {
		go func() {
			if err := c.loadInto(c.ctx, cnt); err != nil {
				c.log.Warn("client: loading counter failed", "counter", name, "err", err)
				c.report(err)
			}
		}()
		// The worker subscribes it on the ready connection, if any.
		c.markDirty(cnt, true)
		return cnt, nil
	}
	err := c.loadInto(c.ctx, cnt)
	c.markDirty(cnt, true)
	if err != nil {
		return nil, err
	}
	return cnt, nil
}

// loadInto reads cnt's record from the store and folds it in (as Reload
// does), then marks it loaded; writes made before that wait in memory
// (takePersist), so that the stored value and they add up exactly.
// Without a record the counter's base stays unknown until the server's
// state arrives. If the read fails the handle is marked loaded all the
// same (its base stays unknown, which is safe) and the error, wrapping
// ErrStorage, is returned.
func (c *Client) loadInto(ctx context.Context, cnt *Counter) error {
	defer func() {
		cnt.markLoaded()
		c.markDirty(cnt, true) // writes made meanwhile waited for this
	}()
	snap, err := c.store.Load(ctx, []string{cnt.name})
	if err != nil {
		return fmt.Errorf("client: load counter %q: %w: %w", cnt.name, ErrStorage, err)
	}
	c.noteGen(snap.Gen)
	st, ok := snap.States[cnt.name]
	if !ok {
		return nil
	}
	ch, _ := cnt.reload(st, snap.Based[cnt.name], snap.Gen)
	ch.fire()
	return nil
}

// Lock returns the handle of lock name; every call with one name returns
// the same *Lock.
func (c *Client) Lock(name string) (*Lock, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	l, ok := c.locks[name]
	if !ok {
		l = &Lock{c: c, name: name}
		c.locks[name] = l
	}
	return l, nil
}

// markDirty queues cnt for the worker: at once, or after SyncDelay
// (debounced: the first change arms the timer, later ones ride along).
func (c *Client) markDirty(cnt *Counter, now bool) {
	c.dirtyMu.Lock()
	c.dirty[cnt] = struct{}{}
	if now {
		c.dirtyMu.Unlock()
		c.signal()
		return
	}
	if !c.armed {
		c.armed = true
		time.AfterFunc(c.opts.SyncDelay, func() {
			c.dirtyMu.Lock()
			c.armed = false
			c.dirtyMu.Unlock()
			c.signal()
		})
	}
	c.dirtyMu.Unlock()
}

// Kick runs the persistence and sync worker now for every counter with
// pending writes, instead of after SyncDelay. The browser shim calls it
// once per tick, so a tab that dies loses at most the current tick.
func (c *Client) Kick() { c.signal() }

func (c *Client) signal() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// worker persists and syncs dirty counters, one Store.Apply per round.
func (c *Client) worker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			ctx, cancel := context.WithTimeout(context.Background(), finalPersistTimeout)
			_ = c.round(ctx, false)
			cancel()
			return
		case <-c.kick:
			_ = c.round(c.ctx, true)
		case r := <-c.persistCh:
			r.done <- c.round(r.ctx, true)
		}
	}
}

// persistSnap is one counter's share of a round's batch.
type persistSnap struct {
	cnt            *Counter
	hasOwn         bool   // an own delta goes to the store
	unbased        bool   // ... as an unbased one
	gen            uint64 // the generation of a based delta's knowledge
	compact        bool   // the record is folded (Batch.Fold)
	dp, dn         int64
	floorP, floorN int64
	ackP, ackN     int64 // the server's confirmations, stored under ackKey
	remote         crdt.State
}

// round persists every dirty counter in one batch and then, if send is
// set and a connection is ready, sends what the server has not seen. It
// returns the persistence error, if any (wrapping ErrStorage).
func (c *Client) round(ctx context.Context, send bool) error {
	c.dirtyMu.Lock()
	set := c.dirty
	c.dirty = make(map[*Counter]struct{})
	touched := c.touched
	c.touched = make(map[string]struct{})
	evict := c.evictDue
	c.dirtyMu.Unlock()
	if len(set) == 0 && !evict {
		if len(touched) != 0 { // they ride along with the next round
			c.dirtyMu.Lock()
			for name := range touched {
				c.touched[name] = struct{}{}
			}
			c.dirtyMu.Unlock()
		}
		return nil
	}
	var b store.Batch
	snaps := make([]persistSnap, 0, len(set))
	for cnt := range set {
		// A counter whose record is being read (OpenCounter) waits for
		// it: its writes are added to the stored value (see takePersist).
		select {
		case <-cnt.loaded:
		case <-ctx.Done():
		}
		s := cnt.takePersist()
		if !s.own() && s.remote.Len() == 0 {
			continue
		}
		if s.own() {
			b.Own = append(b.Own, store.OwnDelta{Name: cnt.name, Node: cnt.node, DP: s.dp, DN: s.dn,
				FloorP: s.floorP, FloorN: s.floorN, Unbased: s.unbased, Gen: s.gen})
		}
		if s.remote.Len() != 0 {
			if b.Remote == nil {
				b.Remote = make(map[string]crdt.State)
			}
			b.Remote[cnt.name] = s.remote
		}
		if s.compact && !s.unbased {
			b.Fold = append(b.Fold, cnt.name)
		}
		snaps = append(snaps, s)
	}
	if len(snaps) != 0 {
		for name := range touched {
			b.Touch = append(b.Touch, name)
		}
		sort.Strings(b.Touch)
	} else if len(touched) != 0 {
		c.dirtyMu.Lock()
		for name := range touched {
			c.touched[name] = struct{}{}
		}
		c.dirtyMu.Unlock()
	}
	if !b.Empty() {
		totals, err := c.store.Apply(ctx, b)
		if err != nil {
			// A round stopped by its caller (Close ends the background
			// loop's context; Close persists again) is not a failure of
			// the store: it is neither logged nor reported.
			if stopped := ctx.Err(); stopped == nil || !errors.Is(err, stopped) {
				err = fmt.Errorf("%w: %w", ErrStorage, err)
				c.log.Error("client: persisting counters failed; will retry", "err", err, "counters", len(snaps))
				c.report(err)
			}
			for _, s := range snaps {
				s.cnt.restorePersist(s)
			}
			c.dirtyMu.Lock()
			for cnt := range set {
				c.dirty[cnt] = struct{}{}
			}
			c.dirtyMu.Unlock()
			if send {
				time.AfterFunc(persistRetry, c.signal)
			}
			return err
		}
		i := 0
		for _, s := range snaps {
			var t store.OwnTotal
			if s.own() {
				t = totals[i]
				i++
				c.noteGen(t.Gen)
			}
			s.cnt.persisted(s, t).fire()
		}
		c.noteWritten(snaps)
	}
	c.maybeEvict(ctx)
	if !send {
		return nil
	}
	cn := c.readyConn()
	if cn == nil {
		return nil // the next transition to ready sends everything
	}
	// Send in name order, so frames are deterministic.
	list := make([]*Counter, 0, len(set))
	for cnt := range set {
		list = append(list, cnt)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	for _, cnt := range list {
		if cnt.idle() {
			cn.unsubscribe(cnt)
			continue
		}
		if !cn.subscribe(cnt) {
			if cnt.takeRerequest() {
				_ = cn.send(c.ctx, wire.CounterRequest{Name: cnt.name})
				continue
			}
			cnt.sendSync(cn)
		}
	}
	return nil
}

// noteGen raises seenGen to g.
func (c *Client) noteGen(g uint64) {
	for {
		old := c.seenGen.Load()
		if g <= old || c.seenGen.CompareAndSwap(old, g) {
			return
		}
	}
}

// noteWritten counts the names a round wrote, and makes the next round
// evict once they reach a tenth of Options.MaxStoredCounters (at least
// one): a store over its cap is brought back within a bounded number of
// writes, and Evict, which reads the recency index, runs rarely.
func (c *Client) noteWritten(snaps []persistSnap) {
	limit := c.opts.MaxStoredCounters
	if limit < 0 {
		return
	}
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	for _, s := range snaps {
		c.written[s.cnt.name] = struct{}{}
	}
	if len(c.written) >= max(limit/10, 1) {
		c.evictDue = true
		c.written = make(map[string]struct{})
	}
}

// maybeEvict runs Store.Evict if it is due: it deletes the least recently
// used records beyond Options.MaxStoredCounters that hold no pending write
// and whose counter has no handle in use (one not released with
// Counter.Close). A failure is logged and retried after the next writes.
func (c *Client) maybeEvict(ctx context.Context) {
	limit := c.opts.MaxStoredCounters
	c.dirtyMu.Lock()
	due := c.evictDue && limit >= 0
	c.evictDue = false
	c.dirtyMu.Unlock()
	if !due {
		return
	}
	c.mu.Lock()
	live := make(map[string]bool)
	for name, cnt := range c.counters {
		cnt.mu.Lock()
		if !cnt.released || !cnt.syncedLocked() {
			live[name] = true
		}
		cnt.mu.Unlock()
	}
	c.mu.Unlock()
	gone, err := c.store.Evict(ctx, limit, func(name string) bool { return live[name] })
	if err != nil {
		c.log.Warn("client: evicting stored counters failed", "err", err)
		return
	}
	if len(gone) == 0 {
		return
	}
	c.log.Debug("client: evicted stored counters", "count", len(gone))
	// A released handle keeps its state in memory; if it is used again its
	// record comes back (with floors), and the confirmation with it.
	c.mu.Lock()
	for _, name := range gone {
		if cnt := c.counters[name]; cnt != nil {
			cnt.mu.Lock()
			cnt.ackStoredP, cnt.ackStoredN = 0, 0
			cnt.mu.Unlock()
		}
	}
	c.mu.Unlock()
}

// newID returns a random 128-bit id (26 characters of base32). Ids need to
// be unique, not secret: math/rand/v2's generator is ChaCha8 seeded from the
// runtime's entropy (crypto.getRandomValues in browsers). crypto/rand would
// link the FIPS module and math/big into the browser build, about 100 KB
// brotli.
func newID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	var b [26]byte
	hi, lo := mrand.Uint64(), mrand.Uint64()
	for i := range b {
		b[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(b[:])
}

// backoff returns the delay before reconnect attempt n (0-based).
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff
	for i := 0; i < n && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return time.Duration(float64(d) * (0.5 + mrand.Float64()))
}

// failoverDelay returns the delay before the first attempt on the next URL
// after a ready connection was lost: short, since that server is not known
// to be down, but jittered, so that the clients of a node that died do not
// all reach the next node in the same instant.
func (c *Client) failoverDelay() time.Duration {
	return time.Duration(float64(c.opts.MinBackoff) * 0.5 * mrand.Float64())
}

// pendingState reports whether a stored state holds own writes of node
// the server has not confirmed (store.Record.Pending).
func pendingState(st crdt.State, node string) bool {
	r := store.Record{State: st, Own: node}
	return r.Pending()
}

// Reload reads the named counters back from the store and folds in what
// another writer sharing the store (another browser tab) has written;
// subscribers of counters whose value changed are notified. Own writes
// that arrive this way are delivered to the server by this client when it
// is connected, so one online tab delivers what an offline tab of the same
// profile wrote; counters this client had no handle for are loaded for
// that if they hold such writes (as Start loads them), and otherwise left
// in the store. It reads the named records only.
func (c *Client) Reload(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	c.mu.Lock()
	if c.closed.Load() || !c.started {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	snap, err := c.store.Load(ctx, names)
	if err != nil {
		return fmt.Errorf("client: reload counters: %w", err)
	}
	c.noteGen(snap.Gen)
	states := snap.States
	for _, name := range names {
		st, ok := states[name]
		if !ok || checkName(name) != nil {
			continue
		}
		c.mu.Lock()
		if c.closed.Load() {
			c.mu.Unlock()
			return nil
		}
		cnt, have := c.counters[name]
		if !have && !pendingState(st, c.nodeID) {
			c.mu.Unlock()
			continue // nothing to deliver: loaded when a handle asks
		}
		if !have {
			var err error
			if cnt, err = c.loadCounter(name, c.nodeID, st, snap.Based[name], snap.Gen); err != nil {
				c.mu.Unlock()
				c.log.Warn("client: dropping stored counter state", "counter", name, "err", err)
				continue
			}
			c.counters[name] = cnt
		}
		c.mu.Unlock()
		if !have {
			if !cnt.idle() {
				c.markDirty(cnt, true) // delivers another tab's writes
			}
			continue
		}
		n, ahead := cnt.reload(st, snap.Based[name], snap.Gen)
		n.fire()
		if ahead {
			c.markDirty(cnt, true)
		}
	}
	return nil
}
