//go:build js && wasm

package idb

import (
	"context"
	"fmt"
	"syscall/js"
	"time"

	indexeddb "github.com/hack-pad/go-indexeddb/idb"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
)

var _ store.BoundedStore = (*Store)(nil)
var _ store.BoundedStore = (*Replica)(nil)

// uint8Array is the page's Uint8Array: a bounded record is stored as the
// bytes of crdt's binary form (store.MergeBounded), written by the
// write-behind path only, never on a hot path.
var uint8Array = js.Global().Get("Uint8Array")

// LoadBounded implements store.BoundedStore for the Store's own replica
// (key ["", name]).
func (s *Store) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	return s.loadBounded(ctx, "", name)
}

// SaveBounded implements store.BoundedStore for the Store's own replica.
func (s *Store) SaveBounded(ctx context.Context, name string, st crdt.BState) error {
	return s.saveBounded(ctx, "", name, st)
}

// Replica is the bounded-counter store of one bounded-replica identity of
// the profile (a browser tab's, see docs/bounded-counters.md): its records
// are apart from the Store's own and from every other replica's. It is
// valid as long as its Store is open.
type Replica struct {
	s  *Store
	id string
}

// Replica returns the bounded store of replica id (non-empty).
func (s *Store) Replica(id string) (*Replica, error) {
	if id == "" {
		return nil, fmt.Errorf("idb: %w: empty replica id", store.ErrInvalid)
	}
	return &Replica{s: s, id: id}, nil
}

// ID returns the replica's id.
func (r *Replica) ID() string { return r.id }

// LoadBounded implements store.BoundedStore.
func (r *Replica) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	return r.s.loadBounded(ctx, r.id, name)
}

// SaveBounded implements store.BoundedStore.
func (r *Replica) SaveBounded(ctx context.Context, name string, st crdt.BState) error {
	return r.s.saveBounded(ctx, r.id, name, st)
}

// Claim records the replica in the profile's pool (replicas store) with
// the time of this claim. Who may use the identity is decided by its
// holder (a Web Lock in the JS client), not here.
func (r *Replica) Claim(ctx context.Context) error {
	if err := r.s.acquire(); err != nil {
		return err
	}
	defer r.s.mu.RUnlock()
	tx, err := r.s.db.Transaction(indexeddb.TransactionReadWrite, replicasStore)
	if err != nil {
		return fmt.Errorf("idb: claim replica: %w", err)
	}
	os, err := tx.ObjectStore(replicasStore)
	if err != nil {
		abort(tx)
		return fmt.Errorf("idb: claim replica: %w", err)
	}
	rec := jsObject.New()
	rec.Set("u", float64(time.Now().UnixMilli()))
	if _, err := os.PutKey(js.ValueOf(r.id), rec); err != nil {
		abort(tx)
		return fmt.Errorf("idb: claim replica: %w", err)
	}
	if err := tx.Await(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("idb: claim replica: commit: %w", err)
	}
	return nil
}

// Replicas lists the pool: every replica id ever claimed in this profile.
func (s *Store) Replicas(ctx context.Context) ([]string, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadOnly, replicasStore)
	if err != nil {
		return nil, fmt.Errorf("idb: replicas: %w", err)
	}
	os, err := tx.ObjectStore(replicasStore)
	if err != nil {
		return nil, fmt.Errorf("idb: replicas: %w", err)
	}
	req, err := os.GetAllKeys()
	if err != nil {
		return nil, fmt.Errorf("idb: replicas: %w", err)
	}
	ids, err := stringKeys(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("idb: replicas: %w", err)
	}
	return ids, nil
}

func boundedKey(replica, name string) js.Value {
	return js.ValueOf([]any{replica, name})
}

func (s *Store) loadBounded(ctx context.Context, replica, name string) (crdt.BState, bool, error) {
	if err := s.acquire(); err != nil {
		return crdt.BState{}, false, err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadOnly, boundedStore)
	if err != nil {
		return crdt.BState{}, false, fmt.Errorf("idb: load bounded: %w", err)
	}
	os, err := tx.ObjectStore(boundedStore)
	if err != nil {
		return crdt.BState{}, false, fmt.Errorf("idb: load bounded: %w", err)
	}
	v, err := getKey(ctx, os, boundedKey(replica, name))
	if err != nil {
		abort(tx)
		return crdt.BState{}, false, fmt.Errorf("idb: load bounded %q: %w", name, err)
	}
	if v.IsUndefined() {
		return crdt.BState{}, false, nil
	}
	st, err := decodeBounded(v)
	if err != nil {
		return crdt.BState{}, false, fmt.Errorf("idb: bounded counter %q: %w", name, err)
	}
	return st, true, nil
}

// saveBounded merges st into the record in one readwrite transaction
// (store.MergeBounded), writing only when something grew.
func (s *Store) saveBounded(ctx context.Context, replica, name string, st crdt.BState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	tx, err := s.db.Transaction(indexeddb.TransactionReadWrite, boundedStore)
	if err != nil {
		return fmt.Errorf("idb: save bounded: %w", err)
	}
	os, err := tx.ObjectStore(boundedStore)
	if err != nil {
		abort(tx)
		return fmt.Errorf("idb: save bounded: %w", err)
	}
	key := boundedKey(replica, name)
	v, err := getKey(ctx, os, key)
	if err != nil {
		abort(tx)
		return fmt.Errorf("idb: save bounded %q: %w", name, err)
	}
	var cur []byte
	if !v.IsUndefined() {
		if cur, err = recordBytes(v); err != nil {
			abort(tx)
			return fmt.Errorf("idb: bounded counter %q: %w", name, err)
		}
	}
	out, changed, err := store.MergeBounded(name, cur, st)
	if err != nil {
		abort(tx)
		return err
	}
	if !changed {
		return nil // the transaction commits (no writes) by itself
	}
	rec, err := bytesValue(out)
	if err == nil {
		_, err = os.PutKey(key, rec)
	}
	if err != nil {
		abort(tx)
		return fmt.Errorf("idb: save bounded %q: %w", name, err)
	}
	if err := tx.Await(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("idb: save bounded %q: commit: %w", name, err)
	}
	return nil
}

// getKey reads one key (undefined when missing) in os's transaction.
func getKey(ctx context.Context, os *indexeddb.ObjectStore, key js.Value) (v js.Value, err error) {
	defer catch(&err)
	req, err := os.Get(key)
	if err != nil {
		return js.Value{}, err
	}
	return req.Await(ctx)
}

// recordBytes returns the bytes of a stored bounded record.
func recordBytes(v js.Value) (b []byte, err error) {
	defer catch(&err)
	if v.Type() != js.TypeObject || !v.InstanceOf(uint8Array) {
		return nil, fmt.Errorf("%w: record is not a Uint8Array", crdt.ErrCorrupt)
	}
	b = make([]byte, v.Length())
	js.CopyBytesToGo(b, v)
	return b, nil
}

// bytesValue returns b as a Uint8Array to store.
func bytesValue(b []byte) (v js.Value, err error) {
	defer catch(&err)
	v = uint8Array.New(len(b))
	js.CopyBytesToJS(v, b)
	return v, nil
}

// decodeBounded reads a bounded record, checking it like every store
// (store.DecodeBounded).
func decodeBounded(v js.Value) (crdt.BState, error) {
	b, err := recordBytes(v)
	if err != nil {
		return crdt.BState{}, err
	}
	return store.DecodeBounded(b)
}
