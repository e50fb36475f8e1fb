//go:build js && wasm

package idb

import (
	"context"
	"errors"
	"slices"
	"syscall/js"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/store/storetest"
)

func TestBoundedSuite(t *testing.T) {
	storetest.RunBounded(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		return s
	})
}

// replicaStore is a Store whose bounded methods are those of one Replica,
// so the shared suite runs against a replica view too.
type replicaStore struct {
	*Store
	r *Replica
}

func (s replicaStore) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	return s.r.LoadBounded(ctx, name)
}

func (s replicaStore) SaveBounded(ctx context.Context, name string, st crdt.BState) error {
	return s.r.SaveBounded(ctx, name, st)
}

func TestBoundedReplicaSuite(t *testing.T) {
	storetest.RunBounded(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		r, err := s.Replica("node:r1")
		if err != nil {
			t.Fatal(err)
		}
		return replicaStore{s, r}
	})
}

// TestBoundedReplicasApart: the Store's own record and each replica's are
// separate, in one database shared by two Stores (two tabs), and the pool
// lists the claimed replicas.
func TestBoundedReplicasApart(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	ctx := t.Context()
	r1, _ := a.Replica("me:r1")
	r2, _ := b.Replica("me:r2")
	if _, err := a.Replica(""); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Replica(\"\") = %v, want ErrInvalid", err)
	}
	save := func(bs store.BoundedStore, node string, n int64) {
		t.Helper()
		st := crdt.BState{Min: 0, P: map[string]int64{node: 10}, N: map[string]int64{node: n}}
		if err := bs.SaveBounded(ctx, "stock", st); err != nil {
			t.Fatal(err)
		}
	}
	save(a, "me", 1)
	save(r1, "me:r1", 2)
	save(r2, "me:r2", 3)
	for _, c := range []struct {
		bs   store.BoundedStore
		node string
		n    int64
	}{{b, "me", 1}, {mustReplica(t, b, "me:r1"), "me:r1", 2}, {mustReplica(t, a, "me:r2"), "me:r2", 3}} {
		got, ok, err := c.bs.LoadBounded(ctx, "stock")
		if err != nil || !ok || got.N[c.node] != c.n || len(got.N) != 1 {
			t.Fatalf("%s: LoadBounded = %+v, %v, %v; want only n[%s]=%d", c.node, got, ok, err, c.node, c.n)
		}
	}
	if err := r1.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Claim(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := a.Replicas(ctx)
	if err != nil || !slices.Equal(ids, []string{"me:r1", "me:r2"}) {
		t.Fatalf("Replicas = %v, %v", ids, err)
	}
	if _, ok, err := r1.LoadBounded(ctx, "none"); ok || err != nil {
		t.Fatal(err)
	}
	raw := rawGetKey(t, a, boundedStore, js.ValueOf([]any{"me:r1", "stock"}))
	rec, err := recordBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.DecodeBounded(rec)
	if err != nil || got.P["me:r1"] != 10 || got.N["me:r1"] != 2 || len(got.P) != 1 || len(got.N) != 1 {
		t.Fatalf("record %+v, %v; want r1's own row only", got, err)
	}
}

func mustReplica(t *testing.T, s *Store, id string) *Replica {
	t.Helper()
	r, err := s.Replica(id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rawGetKey(t *testing.T, s *Store, objectStore string, key js.Value) js.Value {
	t.Helper()
	tx, err := s.db.Transaction(0, objectStore)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.ObjectStore(objectStore)
	if err != nil {
		t.Fatal(err)
	}
	v, err := getKey(t.Context(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBoundedCorruptRecord: a record that is not a valid bounded state is
// an error, never used.
func TestBoundedCorruptRecord(t *testing.T) {
	s, _ := openTemp(t)
	tx, _ := s.db.Transaction(1, boundedStore)
	os, _ := tx.ObjectStore(boundedStore)
	// Not bytes at all, and bytes that are not a state.
	if _, err := os.PutKey(js.ValueOf([]any{"", "bad"}), js.Global().Get("JSON").Call("parse", `{"min":0,"p":{"x":-1}}`)); err != nil {
		t.Fatal(err)
	}
	junk, _ := bytesValue([]byte{1, 0, 9, 9})
	if _, err := os.PutKey(js.ValueOf([]any{"", "junk"}), junk); err != nil {
		t.Fatal(err)
	}
	if err := tx.Await(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bad", "junk"} {
		if _, _, err := s.LoadBounded(t.Context(), name); !errors.Is(err, crdt.ErrCorrupt) {
			t.Fatalf("LoadBounded of corrupt record %q: %v, want ErrCorrupt", name, err)
		}
		if err := s.SaveBounded(t.Context(), name, crdt.BState{Min: 0}); err == nil {
			t.Fatalf("SaveBounded over corrupt record %q succeeded", name)
		}
	}
}

// TestUpgradeVersion2 opens a database of the previous schema (version 2,
// no bounded stores): the upgrade adds them and keeps every counter.
func TestUpgradeVersion2(t *testing.T) {
	name := dbName(t)
	done := make(chan error, 1)
	var upgrade, success, failure js.Func
	upgrade = js.FuncOf(func(this js.Value, args []js.Value) any {
		db := args[0].Get("target").Get("result")
		for _, s := range []string{metaStore, countersStore, pendingStore} {
			db.Call("createObjectStore", s)
		}
		db.Call("createObjectStore", indexStore).Call("createIndex", byUse, "u")
		return nil
	})
	success = js.FuncOf(func(this js.Value, args []js.Value) any {
		db := args[0].Get("target").Get("result")
		tx := db.Call("transaction", js.ValueOf([]any{metaStore, countersStore, indexStore}), "readwrite")
		ms := tx.Call("objectStore", metaStore)
		ms.Call("put", "me", nodeIDKey)
		ms.Call("put", 2, layoutKey)
		tx.Call("objectStore", countersStore).Call("put", js.Global().Get("JSON").Call("parse", `{"p":{"me":5},"n":{"x":2}}`), "likes")
		tx.Call("objectStore", indexStore).Call("put", js.Global().Get("JSON").Call("parse", `{"o":"me","b":true,"u":1}`), "likes")
		tx.Set("oncomplete", js.FuncOf(func(js.Value, []js.Value) any {
			db.Call("close")
			done <- nil
			return nil
		}))
		return nil
	})
	failure = js.FuncOf(func(this js.Value, args []js.Value) any {
		done <- errors.New("open failed")
		return nil
	})
	defer upgrade.Release()
	defer success.Release()
	defer failure.Release()
	req := js.Global().Get("indexedDB").Call("open", name, 2)
	req.Set("onupgradeneeded", upgrade)
	req.Set("onsuccess", success)
	req.Set("onerror", failure)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	t.Cleanup(func() { deleteDB(t, name) })

	s := openNamed(t, name)
	if got := stateString(mustLoad(t, s)); got != "likes:pmap[me:5],nmap[x:2];" {
		t.Fatalf("counters after the upgrade: %s", got)
	}
	if id, err := s.NodeID(t.Context(), func() string { return "new" }); err != nil || id != "me" {
		t.Fatalf("NodeID = %q, %v; want the stored one", id, err)
	}
	st := crdt.BState{Min: 0, P: map[string]int64{"me": 3}}
	if err := s.SaveBounded(t.Context(), "stock", st); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.LoadBounded(t.Context(), "stock"); err != nil || !ok || got.P["me"] != 3 {
		t.Fatalf("LoadBounded = %+v, %v, %v", got, ok, err)
	}
}
