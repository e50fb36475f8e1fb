package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
)

func bstore(t *testing.T, s storage.Store) storage.BoundedStore {
	t.Helper()
	b, ok := s.(storage.BoundedStore)
	if !ok {
		t.Fatalf("%T does not implement storage.BoundedStore", s)
	}
	return b
}

// testBounded: load of an unknown counter, create, update, no-write and
// refused updates, invalid states.
func testBounded(t *testing.T, s storage.Store) {
	b := bstore(t, s)
	if _, ok, err := b.LoadBounded(ctx, "stock"); ok || err != nil {
		t.Fatalf("LoadBounded(unknown) = ok %v, %v", ok, err)
	}
	st, err := b.UpdateBounded(ctx, "stock", func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		if ok {
			return cur, false, errors.New("exists")
		}
		bc, _ := crdt.NewBounded(-2)
		_, _ = bc.Increment("a", 10)
		_ = bc.Transfer("a", "@", 7)
		return bc.State(), true, nil
	})
	if err != nil || st.Min != -2 || st.P["a"] != 10 || st.T["a"]["@"] != 7 {
		t.Fatalf("create = %+v, %v", st, err)
	}
	got, ok, err := b.LoadBounded(ctx, "stock")
	if err != nil || !ok || got.Min != -2 || got.P["a"] != 10 || got.T["a"]["@"] != 7 {
		t.Fatalf("LoadBounded = %+v, %v, %v", got, ok, err)
	}
	// No write: the stored state comes back unchanged.
	st, err = b.UpdateBounded(ctx, "stock", func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		return crdt.BState{}, false, nil
	})
	if err != nil || st.P["a"] != 10 {
		t.Fatalf("no-write update = %+v, %v", st, err)
	}
	// fn's error is returned and nothing is stored.
	boom := errors.New("boom")
	if _, err := b.UpdateBounded(ctx, "stock", func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		cur.P["a"] = 99
		return cur, true, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failing fn: err = %v", err)
	}
	// An invalid state is refused with ErrInvalid.
	if _, err := b.UpdateBounded(ctx, "stock", func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		cur.T["a"] = map[string]int64{"a": 1}
		return cur, true, nil
	}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("invalid state: err = %v", err)
	}
	if _, err := b.UpdateBounded(ctx, "", func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		return cur, true, nil
	}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("empty name: err = %v", err)
	}
	got, _, _ = b.LoadBounded(ctx, "stock")
	if got.P["a"] != 10 || len(got.T["a"]) != 1 {
		t.Fatalf("after refused updates: %+v", got)
	}
	if _, ok, _ := b.LoadBounded(ctx, "other"); ok {
		t.Fatal("counters are not independent")
	}
}

// testBoundedConcurrent: concurrent read-modify-writes never lose one and
// never act on a stale state: grants from the broker's rights (the
// server's use) never exceed them, whatever the interleaving.
func testBoundedConcurrent(t *testing.T, s storage.Store) {
	b := bstore(t, s)
	const stock, workers, tries = 40, 8, 10
	if _, err := b.UpdateBounded(ctx, "c", func(cur crdt.BState, ok bool) (crdt.BState, bool, error) {
		bc, _ := crdt.NewBounded(0)
		_, _ = bc.Increment("@", stock)
		return bc.State(), true, nil
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	granted := 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("n%d", w)
			for range tries {
				ok := false
				_, err := b.UpdateBounded(ctx, "c", func(cur crdt.BState, _ bool) (crdt.BState, bool, error) {
					bc, err := crdt.BoundedFromState(cur)
					if err != nil {
						return cur, false, err
					}
					ok = bc.Transfer("@", node, 1) == nil
					return bc.State(), ok, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	st, _, err := b.LoadBounded(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, v := range st.T["@"] {
		sum += v
	}
	if granted != stock || sum != stock {
		t.Fatalf("granted %d, stored transfers %d, want %d each", granted, sum, stock)
	}
}
