//go:build js && wasm

package idb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall/js"

	indexeddb "github.com/hack-pad/go-indexeddb/idb"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
)

// DefaultName is the database Open uses when given an empty name.
const DefaultName = "topgun-go"

const (
	schemaVersion = 1
	metaStore     = "meta"
	countersStore = "counters"
	nodeIDKey     = "nodeId"
	// channelPrefix + database name is the BroadcastChannel of notices.
	channelPrefix = "topgun-go:"
)

// ErrUnavailable: the browser has no usable IndexedDB.
var ErrUnavailable = errors.New("idb: IndexedDB is unavailable; use the in-memory store (store.NewMemory in Go, MemoryAdapter in JS)")

// Store is a store.Store kept in IndexedDB. It is safe for concurrent use.
type Store struct {
	name string
	db   *indexeddb.Database
	ch   js.Value // BroadcastChannel, or undefined without one

	// mu is held shared by every operation and exclusively by Close, so
	// Close waits for operations in flight.
	mu     sync.RWMutex
	closed bool

	lmu       sync.Mutex
	listeners map[*listener]struct{}
}

var _ store.Store = (*Store)(nil)

// testHookPut, when set by a test, runs after the i-th write of an Apply;
// an error makes Apply fail there (and abort its transaction).
var testHookPut func(i int) error

// Open opens (creating it if needed) the IndexedDB database name, or
// DefaultName when name is empty. Where IndexedDB is unavailable it returns
// an error wrapping ErrUnavailable.
func Open(ctx context.Context, name string) (*Store, error) {
	factory, err := globalIndexedDB()
	return open(ctx, name, factory, err)
}

func globalIndexedDB() (v js.Value, err error) {
	defer catch(&err)
	return js.Global().Get("indexedDB"), nil
}

func open(ctx context.Context, name string, factory js.Value, factoryErr error) (*Store, error) {
	if name == "" {
		name = DefaultName
	}
	if factoryErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, factoryErr)
	}
	if factory.Type() != js.TypeObject {
		return nil, fmt.Errorf("%w: globalThis.indexedDB is %s", ErrUnavailable, factory.Type())
	}
	f, err := indexeddb.WrapFactory(factory)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// The upgrade listener lives as long as its context: it must outlive a
	// cancelled ctx, or a database could be created without its stores.
	reqCtx, reqDone := context.WithCancel(context.Background())
	req, err := f.Open(reqCtx, name, schemaVersion, upgrade)
	if err != nil {
		reqDone()
		return nil, openError(name, err)
	}
	type result struct {
		db  *indexeddb.Database
		err error
	}
	done := make(chan result, 1)
	go func() {
		db, err := req.Await(reqCtx)
		reqDone()
		done <- result{db, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil {
				_ = r.db.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, openError(name, r.err)
	}
	ch, err := newChannel(channelPrefix + name)
	if err != nil {
		_ = r.db.Close()
		return nil, fmt.Errorf("idb: open %q: BroadcastChannel: %w", name, err)
	}
	return &Store{name: name, db: r.db, ch: ch, listeners: map[*listener]struct{}{}}, nil
}

// upgrade creates the object stores of a new database.
func upgrade(db *indexeddb.Database, oldVersion, newVersion uint) error {
	have, err := db.ObjectStoreNames()
	if err != nil {
		return err
	}
	for _, name := range []string{metaStore, countersStore} {
		if !slices.Contains(have, name) {
			if _, err := db.CreateObjectStore(name, indexeddb.ObjectStoreOptions{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// openError wraps a failed open; the errors that mean "storage is denied
// here" (Firefox private mode, sandboxed frames) also wrap ErrUnavailable.
func openError(name string, err error) error {
	for _, n := range []string{"InvalidStateError", "SecurityError", "UnknownError"} {
		if errors.Is(err, indexeddb.NewDOMException(n)) {
			return fmt.Errorf("%w: open %q: %w", ErrUnavailable, name, err)
		}
	}
	return fmt.Errorf("idb: open %q: %w", name, err)
}

// acquire takes the shared lock unless the store is closed.
func (s *Store) acquire() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

// NodeID implements store.Store. Reading and creating the id happen in one
// readwrite transaction, so concurrent callers in every tab of the profile
// get the same id. newID runs inside the transaction and must not block.
func (s *Store) NodeID(ctx context.Context, newID func() string) (string, error) {
	if err := s.acquire(); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadWrite, metaStore)
	if err != nil {
		return "", fmt.Errorf("idb: node id: %w", err)
	}
	os, err := tx.ObjectStore(metaStore)
	if err != nil {
		abort(tx)
		return "", fmt.Errorf("idb: node id: %w", err)
	}
	vals, err := getEach(ctx, os, []string{nodeIDKey})
	if err != nil {
		abort(tx)
		return "", fmt.Errorf("idb: node id: read: %w", err)
	}
	switch v := vals[0]; {
	case v.Type() == js.TypeString && v.String() != "":
		return v.String(), nil // the transaction commits (no writes) by itself
	case !v.IsUndefined():
		abort(tx)
		return "", fmt.Errorf("idb: node id: corrupt record (%s)", v.Type())
	}
	id := newID()
	if id == "" {
		abort(tx)
		return "", fmt.Errorf("%w: empty node id", store.ErrInvalid)
	}
	if _, err := os.PutKey(js.ValueOf(nodeIDKey), js.ValueOf(id)); err != nil {
		abort(tx)
		return "", fmt.Errorf("idb: node id: write: %w", err)
	}
	if err := tx.Await(context.WithoutCancel(ctx)); err != nil {
		return "", fmt.Errorf("idb: node id: commit: %w", err)
	}
	return id, nil
}

// LoadCounters implements store.Store. A corrupt record fails the whole
// load.
func (s *Store) LoadCounters(ctx context.Context) (map[string]crdt.State, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadOnly, countersStore)
	if err != nil {
		return nil, fmt.Errorf("idb: load: %w", err)
	}
	os, err := tx.ObjectStore(countersStore)
	if err != nil {
		return nil, fmt.Errorf("idb: load: %w", err)
	}
	req, err := os.OpenCursor(indexeddb.CursorNext)
	if err != nil {
		return nil, fmt.Errorf("idb: load: %w", err)
	}
	out := map[string]crdt.State{}
	// The callback runs inside the cursor's success event: it only decodes.
	err = req.Iter(ctx, func(c *indexeddb.CursorWithValue) error {
		k, err := c.Key()
		if err != nil {
			return err
		}
		if k.Type() != js.TypeString {
			return fmt.Errorf("corrupt record: key is a %s", k.Type())
		}
		v, err := c.Value()
		if err != nil {
			return err
		}
		st, _, err := decodeState(v)
		if err != nil {
			return fmt.Errorf("counter %q: %w", k.String(), err)
		}
		out[k.String()] = st
		return nil
	})
	if err == nil {
		// go-indexeddb returns nil when its context is cancelled.
		err = ctx.Err()
	}
	if err != nil {
		abort(tx)
		return nil, fmt.Errorf("idb: load: %w", err)
	}
	return out, nil
}

// Apply implements store.Store: one readwrite transaction for the batch.
func (s *Store) Apply(ctx context.Context, b store.Batch) ([]store.OwnTotal, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if b.Empty() {
		return []store.OwnTotal{}, nil
	}
	names := make([]string, 0, len(b.Remote)+len(b.Own))
	for name := range b.Remote {
		names = append(names, name)
	}
	for _, d := range b.Own {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)

	tx, err := s.db.Transaction(indexeddb.TransactionReadWrite, countersStore)
	if err != nil {
		return nil, fmt.Errorf("idb: apply: %w", err)
	}
	os, err := tx.ObjectStore(countersStore)
	if err != nil {
		abort(tx)
		return nil, fmt.Errorf("idb: apply: %w", err)
	}
	// fail aborts the transaction: nothing of the batch persists.
	fail := func(err error) ([]store.OwnTotal, error) {
		abort(tx)
		return nil, err
	}
	vals, err := getEach(ctx, os, names)
	if err != nil {
		return fail(fmt.Errorf("idb: apply: read: %w", err))
	}
	states := make(map[string]crdt.State, len(names))
	for i, name := range names {
		st, _, err := decodeState(vals[i])
		if err != nil {
			return fail(fmt.Errorf("idb: apply: counter %q: %w", name, err))
		}
		states[name] = st
	}

	changed := map[string]bool{}
	for name, r := range b.Remote {
		st := states[name]
		for k, v := range r.P {
			if v > st.P[k] {
				st.P[k] = v
				changed[name] = true
			}
		}
		for k, v := range r.N {
			if v > st.N[k] {
				st.N[k] = v
				changed[name] = true
			}
		}
	}
	totals := make([]store.OwnTotal, len(b.Own))
	for i, d := range b.Own {
		st := states[d.Name]
		p, n := st.P[d.Node], st.N[d.Node]
		t, err := store.ApplyOwn(p, n, d)
		if err != nil {
			return fail(err) // before any write
		}
		if t.P != p || t.N != n {
			changed[d.Name] = true
		}
		if t.P > 0 {
			st.P[d.Node] = t.P
		}
		if t.N > 0 {
			st.N[d.Node] = t.N
		}
		totals[i] = t
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if len(changed) == 0 {
		return totals, nil // nothing to write; the transaction just ends
	}

	written := make([]string, 0, len(changed))
	for _, name := range names {
		if !changed[name] {
			continue
		}
		rec, err := encodeState(states[name])
		if err == nil {
			_, err = os.PutKey(js.ValueOf(name), rec)
		}
		if err == nil && testHookPut != nil {
			err = testHookPut(len(written))
		}
		if err != nil {
			return fail(fmt.Errorf("idb: apply: write %q: %w", name, err))
		}
		written = append(written, name)
	}
	// The writes are issued: wait for the outcome whatever ctx does.
	if err := tx.Await(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("idb: apply: commit: %w", err)
	}
	s.post(written)
	return totals, nil
}

// Close implements store.Store. It waits for operations in flight, closes
// the database connection and the BroadcastChannel, and releases every
// OnChange listener.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	s.lmu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.lmu.Unlock()
	for _, l := range ls {
		l.release()
	}
	var errs []error
	if !s.ch.IsUndefined() {
		if err := closeChannel(s.ch); err != nil {
			errs = append(errs, fmt.Errorf("idb: close channel: %w", err))
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("idb: close %q: %w", s.name, err))
	}
	return errors.Join(errs...)
}

// getEach issues a get for every key at once, then waits for all results
// (undefined for a missing key). On error the caller aborts the
// transaction.
//
// Requests of a transaction complete in order, so it listens to the last
// one only and then reads every result: one Go callback per call instead
// of one per key (a JS-to-Go callback costs far more than an IndexedDB
// read). A failed earlier request aborts the transaction, which fails the
// last one too.
func getEach(ctx context.Context, os *indexeddb.ObjectStore, keys []string) ([]js.Value, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	reqs := make([]*indexeddb.Request, len(keys))
	for i, k := range keys {
		req, err := os.Get(js.ValueOf(k))
		if err != nil {
			return nil, fmt.Errorf("get %q: %w", k, err)
		}
		reqs[i] = req
	}
	last := reqs[len(reqs)-1]
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // releases the listeners if ctx ends first
	done := make(chan error, 1)
	// The callbacks run inside the request's events: they never block.
	send := func(err error) {
		select {
		case done <- err:
		default:
		}
	}
	err := last.Listen(lctx, func() { send(nil) }, func() {
		err := last.Err()
		if err == nil {
			err = errors.New("request failed")
		}
		send(err)
	})
	if err != nil {
		return nil, err
	}
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := make([]js.Value, len(keys))
	for i, req := range reqs {
		v, err := req.Result()
		if err != nil {
			return nil, fmt.Errorf("get %q: %w", keys[i], err)
		}
		out[i] = v
	}
	return out, nil
}

// abort rolls back tx; an error (the transaction already finished) leaves
// nothing to do.
func abort(tx *indexeddb.Transaction) { _ = tx.Abort() }

// catch turns a panic of syscall/js (a JS exception, or a call on the wrong
// type) into an error in *err. Other panics propagate.
func catch(err *error) {
	switch r := recover().(type) {
	case nil:
	case js.Error:
		*err = fmt.Errorf("idb: %w", r)
	case error:
		*err = fmt.Errorf("idb: %w", r)
	default:
		panic(r)
	}
}
