package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
)

// RunBounded runs the bounded-counter cases against stores from open,
// which must implement store.BoundedStore (memory and filestore do; the
// IndexedDB store gets it with the browser API).
func RunBounded(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("BoundedSaveMerges", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		b, ok := s.(store.BoundedStore)
		if !ok {
			t.Fatalf("%T does not implement store.BoundedStore", s)
		}
		ctx := context.Background()
		if _, ok, err := b.LoadBounded(ctx, "stock"); ok || err != nil {
			t.Fatalf("LoadBounded(unknown) = %v, %v", ok, err)
		}
		newer := crdt.BState{Min: 0, P: map[string]int64{"me": 5, "*": 9}, N: map[string]int64{"me": 3},
			T: map[string]map[string]int64{"me": {"@": 5}, "@": {"me": 4}}}
		older := crdt.BState{Min: 0, P: map[string]int64{"me": 5, "*": 2}, N: map[string]int64{"me": 1},
			T: map[string]map[string]int64{"@": {"me": 2}}}
		for _, st := range []crdt.BState{newer, older} { // out of order: max wins
			if err := b.SaveBounded(ctx, "stock", st); err != nil {
				t.Fatal(err)
			}
		}
		got, ok, err := b.LoadBounded(ctx, "stock")
		if err != nil || !ok {
			t.Fatalf("LoadBounded = %v, %v", ok, err)
		}
		bc, err := crdt.BoundedFromState(got)
		if err != nil {
			t.Fatal(err)
		}
		if bc.Value() != 11 || bc.Rights("me") != 1 || got.P["*"] != 9 {
			t.Fatalf("stored %+v: value %d rights %d", got, bc.Value(), bc.Rights("me"))
		}
		if err := b.SaveBounded(ctx, "stock", crdt.BState{Min: 1}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("another bound: err = %v", err)
		}
		if err := b.SaveBounded(ctx, "stock", crdt.BState{P: map[string]int64{"x": -1}}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("invalid state: err = %v", err)
		}
		if again, _, _ := b.LoadBounded(ctx, "stock"); again.N["me"] != 3 {
			t.Fatalf("a refused save changed %+v", again)
		}
	})
}
