//go:build js && wasm

package idb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall/js"
	"time"

	indexeddb "github.com/hack-pad/go-indexeddb/idb"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
)

// DefaultName is the database Open uses when given an empty name.
const DefaultName = "topgun-go"

const (
	schemaVersion = 3
	metaStore     = "meta"
	// boundedStore: [replica, counter name] -> bounded counter record
	// {min, p, n, t}; replica "" is the Store's own (store.BoundedStore),
	// others are Replica views (one per tab identity).
	boundedStore = "bounded"
	// replicasStore: replica id -> {u: ms since epoch of its last claim}:
	// the pool of bounded-replica identities of this profile.
	replicasStore = "replicas"
	countersStore = "counters"
	// pendingStore: counter name -> 1 for every pending record
	// (store.Record.Pending): the index Pending reads.
	pendingStore = "pending"
	// indexStore: counter name -> {o: own node, b: based, u: recency};
	// its index byUse orders names by recency for Evict.
	indexStore = "index"
	byUse      = "byUse"
	nodeIDKey  = "nodeId"
	// layoutKey in meta is 2 once every record is in the index stores
	// (Open migrates a database of version 1).
	layoutKey = "layout"
	// genKey in meta: the eviction generation (store.OwnDelta.Gen).
	genKey = "gen"
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

	umu   sync.Mutex
	lastU float64 // the last recency given out
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
	s := &Store{name: name, db: r.db, ch: ch, listeners: map[*listener]struct{}{}}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("idb: open %q: migrate: %w", name, err)
	}
	return s, nil
}

// migrate indexes the records of a database created at version 1 (whose
// upgrade added the empty index stores): each is taken as written by the
// stored node id, marked pending by that rule, and given recency 0. It
// runs once; meta[layout] records that it did.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.Transaction(indexeddb.TransactionReadWrite, metaStore, countersStore, indexStore, pendingStore)
	if err != nil {
		return err
	}
	ms, _ := tx.ObjectStore(metaStore)
	cs, _ := tx.ObjectStore(countersStore)
	is, _ := tx.ObjectStore(indexStore)
	ps, err := tx.ObjectStore(pendingStore)
	if err != nil {
		abort(tx)
		return err
	}
	meta, err := getEach(ctx, ms, []string{layoutKey, nodeIDKey})
	if err != nil {
		abort(tx)
		return err
	}
	if meta[0].Type() == js.TypeNumber && meta[0].Int() == 2 {
		return nil // the transaction commits (no writes) by itself
	}
	own := ""
	if meta[1].Type() == js.TypeString {
		own = meta[1].String()
	}
	kreq, err := cs.GetAllKeys()
	if err != nil {
		abort(tx)
		return err
	}
	keys, err := stringKeys(ctx, kreq)
	if err != nil {
		abort(tx)
		return err
	}
	vals, err := getEach(ctx, cs, keys)
	if err != nil {
		abort(tx)
		return err
	}
	for i, name := range keys {
		st, _, err := decodeState(vals[i])
		if err != nil {
			abort(tx)
			return fmt.Errorf("counter %q: %w", name, err)
		}
		// Earlier releases wrote the own entries with every write.
		r := &store.Record{State: st, Own: own, Based: true}
		if err := putIndex(is, ps, name, r, 0); err != nil {
			abort(tx)
			return err
		}
	}
	if _, err := ms.PutKey(js.ValueOf(layoutKey), js.ValueOf(2)); err != nil {
		abort(tx)
		return err
	}
	return tx.Await(context.WithoutCancel(ctx))
}

// stringKeys awaits a GetAllKeys request of string keys.
func stringKeys(ctx context.Context, req *indexeddb.ArrayRequest) ([]string, error) {
	vals, err := req.Await(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(vals))
	for i, v := range vals {
		if v.Type() != js.TypeString {
			return nil, fmt.Errorf("corrupt record: key is a %s", v.Type())
		}
		keys[i] = v.String()
	}
	return keys, nil
}

// putIndex issues the index writes of record r of counter name: its own
// node and recency u, and its pending mark.
func putIndex(is, ps *indexeddb.ObjectStore, name string, r *store.Record, u float64) (err error) {
	defer catch(&err)
	ix := jsObject.New()
	ix.Set("o", r.Own)
	ix.Set("b", r.Based)
	ix.Set("u", u)
	if _, err := is.PutKey(js.ValueOf(name), ix); err != nil {
		return err
	}
	if r.Pending() {
		_, err = ps.PutKey(js.ValueOf(name), js.ValueOf(1))
	} else {
		_, err = ps.Delete(js.ValueOf(name))
	}
	return err
}

// nextU returns a recency above every one this Store gave out: the clock
// in microseconds, so that tabs order roughly by time.
func (s *Store) nextU() float64 {
	s.umu.Lock()
	defer s.umu.Unlock()
	u := float64(time.Now().UnixMicro())
	if u <= s.lastU {
		u = s.lastU + 1
	}
	s.lastU = u
	return u
}

// upgrade creates the object stores that a database lacks: all of them in
// a new database; bounded and replicas in one of version 1 or 2, whose
// records stay as they are.
func upgrade(db *indexeddb.Database, oldVersion, newVersion uint) error {
	have, err := db.ObjectStoreNames()
	if err != nil {
		return err
	}
	for _, name := range []string{metaStore, countersStore, pendingStore, indexStore, boundedStore, replicasStore} {
		if !slices.Contains(have, name) {
			os, err := db.CreateObjectStore(name, indexeddb.ObjectStoreOptions{})
			if err != nil {
				return err
			}
			if name == indexStore {
				if _, err := os.CreateIndex(byUse, js.ValueOf("u"), indexeddb.IndexOptions{}); err != nil {
					return err
				}
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

// Load implements store.Store: one readonly transaction reading the named
// records.
func (s *Store) Load(ctx context.Context, names []string) (store.Snapshot, error) {
	if err := s.acquire(); err != nil {
		return store.Snapshot{}, err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadOnly, metaStore, countersStore, indexStore)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("idb: load: %w", err)
	}
	out, err := readSnapshot(ctx, tx, names)
	if err != nil {
		abort(tx)
		return store.Snapshot{}, fmt.Errorf("idb: load: %w", err)
	}
	return out, nil
}

// readSnapshot reads the generation and the records of names (missing
// ones left out) in tx, which covers meta, counters and index.
func readSnapshot(ctx context.Context, tx *indexeddb.Transaction, names []string) (store.Snapshot, error) {
	out := store.Snapshot{States: map[string]crdt.State{}, Based: map[string]bool{}}
	ms, _ := tx.ObjectStore(metaStore)
	cs, _ := tx.ObjectStore(countersStore)
	is, err := tx.ObjectStore(indexStore)
	if err != nil {
		return out, err
	}
	meta, err := getEach(ctx, ms, []string{genKey})
	if err != nil {
		return out, err
	}
	out.Gen = genOf(meta[0])
	if len(names) == 0 {
		return out, nil
	}
	vals, err := getEach(ctx, cs, names)
	if err != nil {
		return out, err
	}
	ixs, err := getEach(ctx, is, names)
	if err != nil {
		return out, err
	}
	for i, name := range names {
		st, ok, err := decodeState(vals[i])
		if err != nil {
			return out, fmt.Errorf("counter %q: %w", name, err)
		}
		if ok {
			out.States[name] = st
			if _, based := indexOf(ixs[i]); based {
				out.Based[name] = true
			}
		}
	}
	return out, nil
}

// genOf reads meta[gen] (undefined: 0).
func genOf(v js.Value) uint64 {
	if v.Type() == js.TypeNumber && v.Float() > 0 {
		return uint64(v.Float())
	}
	return 0
}

// indexOf reads an index entry's own node and based flag.
func indexOf(v js.Value) (own string, based bool) {
	if v.Type() != js.TypeObject {
		return "", false
	}
	if o := v.Get("o"); o.Type() == js.TypeString {
		own = o.String()
	}
	return own, v.Get("b").Type() == js.TypeBoolean && v.Get("b").Bool()
}

// Pending implements store.Store: the keys of the pending store, then
// those records, in one readonly transaction.
func (s *Store) Pending(ctx context.Context) (store.Snapshot, error) {
	if err := s.acquire(); err != nil {
		return store.Snapshot{}, err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadOnly, pendingStore, metaStore, countersStore, indexStore)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("idb: pending: %w", err)
	}
	ps, err := tx.ObjectStore(pendingStore)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("idb: pending: %w", err)
	}
	req, err := ps.GetAllKeys()
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("idb: pending: %w", err)
	}
	keys, err := stringKeys(ctx, req)
	if err != nil {
		abort(tx)
		return store.Snapshot{}, fmt.Errorf("idb: pending: %w", err)
	}
	out, err := readSnapshot(ctx, tx, keys)
	if err != nil {
		abort(tx)
		return store.Snapshot{}, fmt.Errorf("idb: pending: %w", err)
	}
	return out, nil
}

// writeTx opens a read-write transaction over every object store that a
// write touches (counters, index, pending, meta) and returns it with them.
func (s *Store) writeTx() (tx *indexeddb.Transaction, meta, counters, index, pending *indexeddb.ObjectStore, err error) {
	tx, err = s.db.Transaction(indexeddb.TransactionReadWrite, countersStore, indexStore, pendingStore, metaStore)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	meta, _ = tx.ObjectStore(metaStore)
	counters, _ = tx.ObjectStore(countersStore)
	index, _ = tx.ObjectStore(indexStore)
	if pending, err = tx.ObjectStore(pendingStore); err != nil {
		abort(tx)
		return nil, nil, nil, nil, nil, err
	}
	return tx, meta, counters, index, pending, nil
}

// Evict implements store.Store: one readwrite transaction counts the
// records, reads the names in recency order from the byUse index and the
// pending names, and deletes the oldest that may go.
func (s *Store) Evict(ctx context.Context, max int, keep func(string) bool) ([]string, error) {
	if max < 0 {
		return nil, fmt.Errorf("idb: %w: Evict max %d", store.ErrInvalid, max)
	}
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	tx, ms, cs, is, ps, err := s.writeTx()
	if err != nil {
		return nil, fmt.Errorf("idb: evict: %w", err)
	}
	fail := func(err error) ([]string, error) {
		abort(tx)
		return nil, fmt.Errorf("idb: evict: %w", err)
	}
	creq, err := cs.Count()
	if err != nil {
		return fail(err)
	}
	n, err := creq.Await(ctx)
	if err != nil {
		return fail(err)
	}
	excess := int(n) - max
	if excess <= 0 {
		return nil, nil // the transaction commits (no writes) by itself
	}
	ix, err := is.Index(byUse)
	if err != nil {
		return fail(err)
	}
	ureq, err := ix.GetAllKeys()
	if err != nil {
		return fail(err)
	}
	preq, err := ps.GetAllKeys()
	if err != nil {
		return fail(err)
	}
	byAge, err := stringKeys(ctx, ureq)
	if err != nil {
		return fail(err)
	}
	pend, err := stringKeys(ctx, preq)
	if err != nil {
		return fail(err)
	}
	isPending := make(map[string]bool, len(pend))
	for _, k := range pend {
		isPending[k] = true
	}
	var out []string
	for _, name := range byAge {
		if len(out) == excess {
			break
		}
		if isPending[name] || (keep != nil && keep(name)) {
			continue
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, nil
	}
	meta, err := getEach(ctx, ms, []string{genKey})
	if err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	for _, name := range out {
		if _, err := cs.Delete(js.ValueOf(name)); err != nil {
			return fail(err)
		}
		if _, err := is.Delete(js.ValueOf(name)); err != nil {
			return fail(err)
		}
	}
	if _, err := ms.PutKey(js.ValueOf(genKey), js.ValueOf(float64(genOf(meta[0])+1))); err != nil {
		return fail(err)
	}
	if err := tx.Await(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("idb: evict: commit: %w", err)
	}
	return out, nil
}

// Apply implements store.Store: one readwrite transaction for the batch,
// with store.ApplyRecords.
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
	names := b.Names()
	tx, ms, cs, is, ps, err := s.writeTx()
	if err != nil {
		return nil, fmt.Errorf("idb: apply: %w", err)
	}
	// fail aborts the transaction: nothing of the batch persists.
	fail := func(err error) ([]store.OwnTotal, error) {
		abort(tx)
		return nil, err
	}
	meta, err := getEach(ctx, ms, []string{genKey})
	if err != nil {
		return fail(fmt.Errorf("idb: apply: read: %w", err))
	}
	vals, err := getEach(ctx, cs, names)
	if err != nil {
		return fail(fmt.Errorf("idb: apply: read: %w", err))
	}
	ixs, err := getEach(ctx, is, names)
	if err != nil {
		return fail(fmt.Errorf("idb: apply: read index: %w", err))
	}
	recs := make(map[string]*store.Record, len(names))
	for i, name := range names {
		st, ok, err := decodeState(vals[i])
		if err != nil {
			return fail(fmt.Errorf("idb: apply: counter %q: %w", name, err))
		}
		recs[name] = nil
		if ok {
			own, based := indexOf(ixs[i])
			recs[name] = &store.Record{State: st, Own: own, Based: based}
		}
	}
	existed := make(map[string]bool, len(names))
	for name, r := range recs {
		existed[name] = r != nil
	}
	totals, changed, err := store.ApplyRecords(b, recs, genOf(meta[0]))
	if err != nil {
		return fail(err) // before any write
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	touched := map[string]bool{}
	for _, name := range b.Touch {
		touched[name] = true
	}
	u := s.nextU()
	written := make([]string, 0, len(changed))
	for _, name := range names {
		r := recs[name]
		switch {
		case changed[name] && r == nil:
			if !existed[name] {
				continue
			}
			err = deleteAll(name, cs, is, ps)
		case changed[name]:
			var rec js.Value
			rec, err = encodeState(r.State)
			if err == nil {
				_, err = cs.PutKey(js.ValueOf(name), rec)
			}
			if err == nil {
				err = putIndex(is, ps, name, r, u)
			}
		case touched[name] && r != nil:
			if err := putIndex(is, ps, name, r, u); err != nil {
				return fail(fmt.Errorf("idb: apply: touch %q: %w", name, err))
			}
			continue
		default:
			continue
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

// deleteAll issues the deletes of counter name's record and index entries.
func deleteAll(name string, stores ...*indexeddb.ObjectStore) error {
	for _, os := range stores {
		if _, err := os.Delete(js.ValueOf(name)); err != nil {
			return err
		}
	}
	return nil
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
