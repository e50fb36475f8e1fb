// Package storetest is the one conformance suite every store.Store runs.
//
// It makes no assumptions about files or the operating system and keeps
// concurrency modest, so it also runs under GOOS=js GOARCH=wasm in a
// browser (the IndexedDB store).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
)

// Run runs the suite. open must return a new, empty store for each call;
// Run closes the stores it opens unless a subtest already did.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"NodeIDCreatedOnce", testNodeIDCreatedOnce},
		{"NodeIDConcurrent", testNodeIDConcurrent},
		{"NodeIDEmpty", testNodeIDEmpty},
		{"EmptyLoad", testEmptyLoad},
		{"OwnDeltasAdd", testOwnDeltasAdd},
		{"SharedNodeWriters", testSharedNodeWriters},
		{"OwnTotalsAndFloors", testOwnTotalsAndFloors},
		{"RemoteMergeByMax", testRemoteMergeByMax},
		{"RemoteThenOwnInOneBatch", testRemoteThenOwn},
		{"ManyCounters", testManyCounters},
		{"InvalidBatchChangesNothing", testInvalidBatch},
		{"LoadIsACopy", testLoadIsACopy},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			closed := false
			t.Cleanup(func() {
				if !closed {
					_ = s.Close()
				}
			})
			if tt.name == "Close" {
				closed = true
			}
			tt.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func load(t *testing.T, s store.Store) map[string]crdt.State {
	t.Helper()
	m, err := s.LoadCounters(ctx(t))
	if err != nil {
		t.Fatalf("LoadCounters: %v", err)
	}
	return m
}

func apply(t *testing.T, s store.Store, b store.Batch) []store.OwnTotal {
	t.Helper()
	totals, err := s.Apply(ctx(t), b)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", b, err)
	}
	if len(totals) != len(b.Own) {
		t.Fatalf("Apply returned %d totals for %d own deltas", len(totals), len(b.Own))
	}
	return totals
}

// equal compares states, treating nil and empty maps and zero and absent
// entries alike.
func equal(a, b crdt.State) bool {
	norm := func(m map[string]int64) map[string]int64 {
		out := map[string]int64{}
		for k, v := range m {
			if v != 0 {
				out[k] = v
			}
		}
		return out
	}
	return maps.Equal(norm(a.P), norm(b.P)) && maps.Equal(norm(a.N), norm(b.N))
}

func want(t *testing.T, s store.Store, name string, w crdt.State) {
	t.Helper()
	got := load(t, s)[name]
	if !equal(got, w) {
		t.Fatalf("counter %q = %v, want %v", name, got, w)
	}
}

func testNodeIDCreatedOnce(t *testing.T, s store.Store) {
	calls := 0
	gen := func() string { calls++; return fmt.Sprintf("node-%d", calls) }
	id, err := s.NodeID(ctx(t), gen)
	if err != nil || id != "node-1" {
		t.Fatalf("first NodeID = %q, %v; want node-1", id, err)
	}
	for range 3 {
		again, err := s.NodeID(ctx(t), gen)
		if err != nil || again != id {
			t.Fatalf("NodeID again = %q, %v; want %q", again, err, id)
		}
	}
	if calls != 1 {
		t.Fatalf("newID called %d times, want 1", calls)
	}
}

func testNodeIDConcurrent(t *testing.T, s store.Store) {
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ids[i], errs[i] = s.NodeID(ctx(t), func() string { return fmt.Sprintf("cand-%d", i) })
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("NodeID %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent NodeID disagree: %q vs %q", ids[i], ids[0])
		}
	}
	// Later callers get the same id without generating one.
	id, err := s.NodeID(ctx(t), func() string { t.Error("newID called after creation"); return "x" })
	if err != nil || id != ids[0] {
		t.Fatalf("NodeID after concurrent creation = %q, %v; want %q", id, err, ids[0])
	}
}

func testNodeIDEmpty(t *testing.T, s store.Store) {
	if id, err := s.NodeID(ctx(t), func() string { return "" }); err == nil {
		t.Fatalf("NodeID with empty newID = %q, want error", id)
	}
	id, err := s.NodeID(ctx(t), func() string { return "good" })
	if err != nil || id != "good" {
		t.Fatalf("NodeID after failed creation = %q, %v; want good", id, err)
	}
}

func testEmptyLoad(t *testing.T, s store.Store) {
	if m := load(t, s); len(m) != 0 {
		t.Fatalf("new store has counters %v", m)
	}
	apply(t, s, store.Batch{}) // empty batch is fine
	if m := load(t, s); len(m) != 0 {
		t.Fatalf("empty batch created counters %v", m)
	}
}

func testOwnDeltasAdd(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 5}}})
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 2, DN: 3}}})
	// Several deltas for one slot in one batch all count.
	apply(t, s, store.Batch{Own: []store.OwnDelta{
		{Name: "c", Node: "a", DP: 1},
		{Name: "c", Node: "a", DN: 4},
		{Name: "c", Node: "b", DP: 10},
	}})
	want(t, s, "c", crdt.State{P: map[string]int64{"a": 8, "b": 10}, N: map[string]int64{"a": 7}})
	// A delta never overwrites: it adds to a slot that a remote merge raised.
	apply(t, s, store.Batch{Remote: map[string]crdt.State{"c": {P: map[string]int64{"a": 100}}}})
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 1}}})
	want(t, s, "c", crdt.State{P: map[string]int64{"a": 101, "b": 10}, N: map[string]int64{"a": 7}})
}

// testOwnTotalsAndFloors: Apply reports the stored slots after the batch
// (including other writers' increments), and floors raise a slot before the
// delta is added, never lower it.
func testOwnTotalsAndFloors(t *testing.T, s store.Store) {
	got := apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "t", Node: "a", DP: 3}}})
	if got[0] != (store.OwnTotal{P: 3}) {
		t.Fatalf("totals %+v, want {3 0}", got)
	}
	// Another writer with the same node id adds 4: the next Apply of the
	// first writer reports both.
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "t", Node: "a", DP: 4}}})
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{
		{Name: "t", Node: "a", DN: 1},
		{Name: "u", Node: "a", DP: 2, FloorP: 10}, // floor then delta: 12
		{Name: "t", Node: "a", DP: 1, FloorP: 5},  // floor below stored: no effect
	}})
	want := []store.OwnTotal{{P: 7, N: 1}, {P: 12}, {P: 8, N: 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	// A floor alone (no delta) raises the slot.
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "t", Node: "a", FloorN: 9}}})
	if got[0] != (store.OwnTotal{P: 8, N: 9}) {
		t.Fatalf("totals %+v, want {8 9}", got)
	}
	m := load(t, s)
	if !equal(m["t"], crdt.State{P: map[string]int64{"a": 8}, N: map[string]int64{"a": 9}}) ||
		!equal(m["u"], crdt.State{P: map[string]int64{"a": 12}}) {
		t.Fatalf("stored %v", m)
	}
	// A floor past 2^53-1 is invalid and changes nothing.
	if _, err := s.Apply(ctx(t), store.Batch{Own: []store.OwnDelta{{Name: "t", Node: "a", FloorP: crdt.MaxSafe, DP: 1}}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("overflowing floor: %v", err)
	}
}

// testSharedNodeWriters: two writers (tabs) sharing one node id each add
// deltas; the stored slot is the exact sum.
func testSharedNodeWriters(t *testing.T, s store.Store) {
	const writers, rounds = 2, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				b := store.Batch{Own: []store.OwnDelta{
					{Name: "shared", Node: "same", DP: int64(w + 1), DN: int64(i % 2)},
					{Name: fmt.Sprintf("w%d", w), Node: "same", DP: 1},
				}}
				if _, err := s.Apply(ctx(t), b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Apply: %v", err)
	}
	want(t, s, "shared", crdt.State{
		P: map[string]int64{"same": rounds * (1 + 2)},
		N: map[string]int64{"same": writers * rounds / 2},
	})
	want(t, s, "w0", crdt.State{P: map[string]int64{"same": rounds}})
	want(t, s, "w1", crdt.State{P: map[string]int64{"same": rounds}})
}

func testRemoteMergeByMax(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Remote: map[string]crdt.State{
		"r": {P: map[string]int64{"x": 10, "y": 3}, N: map[string]int64{"x": 2}},
	}})
	// Lower and equal entries change nothing; higher ones raise; new ones add.
	apply(t, s, store.Batch{Remote: map[string]crdt.State{
		"r": {P: map[string]int64{"x": 4, "y": 9, "z": 1}, N: map[string]int64{"x": 2, "w": 0}},
	}})
	w := crdt.State{P: map[string]int64{"x": 10, "y": 9, "z": 1}, N: map[string]int64{"x": 2}}
	want(t, s, "r", w)
	apply(t, s, store.Batch{Remote: map[string]crdt.State{"r": {P: map[string]int64{"x": 0}, N: map[string]int64{}}}})
	want(t, s, "r", w)
}

func testRemoteThenOwn(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{
		Own:    []store.OwnDelta{{Name: "m", Node: "me", DP: 2}},
		Remote: map[string]crdt.State{"m": {P: map[string]int64{"me": 5, "other": 7}}},
	})
	want(t, s, "m", crdt.State{P: map[string]int64{"me": 7, "other": 7}})
}

func testManyCounters(t *testing.T, s store.Store) {
	const n = 300
	b := store.Batch{Remote: map[string]crdt.State{}}
	for i := range n {
		name := fmt.Sprintf("counter/%03d", i)
		b.Own = append(b.Own, store.OwnDelta{Name: name, Node: "me", DP: int64(i), DN: 1})
		b.Remote[name] = crdt.State{P: map[string]int64{"peer": int64(2 * i)}}
	}
	apply(t, s, b)
	m := load(t, s)
	if len(m) != n {
		t.Fatalf("LoadCounters has %d counters, want %d", len(m), n)
	}
	for i := range n {
		name := fmt.Sprintf("counter/%03d", i)
		w := crdt.State{P: map[string]int64{"me": int64(i), "peer": int64(2 * i)}, N: map[string]int64{"me": 1}}
		if !equal(m[name], w) {
			t.Fatalf("%s = %v, want %v", name, m[name], w)
		}
		if v, err := m[name].Value(); err != nil || v != int64(3*i-1) {
			t.Fatalf("%s value = %d, %v; want %d", name, v, err, 3*i-1)
		}
	}
}

func testInvalidBatch(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "v", Node: "a", DP: 1}}})
	bad := []store.Batch{
		{Own: []store.OwnDelta{{Name: "v", Node: "a", DP: 1}, {Name: "v", Node: "a", DP: -1}}},
		{Own: []store.OwnDelta{{Name: "v", Node: "a", DP: 1}, {Name: "", Node: "a", DP: 1}}},
		{Own: []store.OwnDelta{{Name: "v", Node: "", DP: 1}}},
		{Own: []store.OwnDelta{{Name: "v", Node: "a", DP: 1}, {Name: "v", Node: "a", DP: crdt.MaxSafe}}},
		{
			Own:    []store.OwnDelta{{Name: "v", Node: "a", DP: 1}},
			Remote: map[string]crdt.State{"v": {P: map[string]int64{"b": -1}}},
		},
		{
			Own:    []store.OwnDelta{{Name: "v", Node: "a", DP: 1}},
			Remote: map[string]crdt.State{"w": {P: map[string]int64{"b": crdt.MaxSafe + 1}}},
		},
	}
	for i, b := range bad {
		if _, err := s.Apply(ctx(t), b); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("bad batch %d: Apply = %v, want ErrInvalid", i, err)
		}
	}
	m := load(t, s)
	if len(m) != 1 || !equal(m["v"], crdt.State{P: map[string]int64{"a": 1}}) {
		t.Fatalf("invalid batches changed the store: %v", m)
	}
}

func testLoadIsACopy(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "k", Node: "a", DP: 1}}})
	m := load(t, s)
	m["k"].P["a"] = 99
	m["k"].P["zz"] = 1
	delete(m, "k")
	want(t, s, "k", crdt.State{P: map[string]int64{"a": 1}})
}

func testClose(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "k", Node: "a", DP: 1}}})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.LoadCounters(ctx(t)); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadCounters after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Apply(ctx(t), store.Batch{Own: []store.OwnDelta{{Name: "k", Node: "a", DP: 1}}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	if _, err := s.NodeID(ctx(t), func() string { return "x" }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("NodeID after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}
