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
	"slices"
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
		{"LoadNamed", testLoadNamed},
		{"PendingIndex", testPendingIndex},
		{"UnbasedWrites", testUnbased},
		{"UnbasedInvalid", testUnbasedInvalid},
		{"FoldLegacyEntries", testFold},
		{"EvictLRU", testEvictLRU},
		{"EvictKeepsPending", testEvictPending},
		{"StaleBaseAfterEviction", testStaleBase},
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
	if _, err := s.Load(ctx(t), []string{"k"}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Load after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Pending(ctx(t)); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Pending after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Evict(ctx(t), 0, nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Evict after Close = %v, want ErrClosed", err)
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

func st(p, n map[string]int64) crdt.State {
	if p == nil {
		p = map[string]int64{}
	}
	if n == nil {
		n = map[string]int64{}
	}
	return crdt.State{P: p, N: n}
}

func names(m map[string]crdt.State) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// testLoadNamed: Load returns the named records only, copies, and leaves
// out names without a record.
func testLoadNamed(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{
		Own:    []store.OwnDelta{{Name: "a", Node: "me", DP: 1}, {Name: "b", Node: "me", DN: 2}},
		Remote: map[string]crdt.State{"c": st(map[string]int64{"x": 3}, nil)},
	})
	snap, err := s.Load(ctx(t), []string{"a", "c", "missing"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	m := snap.States
	if !snap.Based["a"] || snap.Based["c"] {
		t.Fatalf("Based = %v, want a (an own delta wrote it), not c (remote entries only)", snap.Based)
	}
	if got := names(m); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("Load returned %v, want [a c]", got)
	}
	if !equal(m["a"], st(map[string]int64{"me": 1}, nil)) || !equal(m["c"], st(map[string]int64{"x": 3}, nil)) {
		t.Fatalf("Load = %v", m)
	}
	m["a"].P["me"] = 99
	if again, _ := s.Load(ctx(t), []string{"a"}); !equal(again.States["a"], st(map[string]int64{"me": 1}, nil)) {
		t.Fatalf("Load returned the store's own maps: %v", again.States)
	}
	if m, err := s.Load(ctx(t), nil); err != nil || len(m.States) != 0 {
		t.Fatalf("Load(nil) = %v, %v", m.States, err)
	}
}

func pending(t *testing.T, s store.Store) map[string]crdt.State {
	t.Helper()
	m, err := s.Pending(ctx(t))
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return m.States
}

// testPendingIndex: a record is pending while its own node's entries (the
// node of its last own delta) exceed the AckNode entries, or it holds
// unbased writes; Pending returns exactly those.
func testPendingIndex(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{
		{Name: "w1", Node: "me", DP: 2},
		{Name: "w2", Node: "me", DN: 1},
		{Name: "u", Node: "me", DP: 1, Unbased: true},
	}, Remote: map[string]crdt.State{"r": st(map[string]int64{"x": 5}, nil)}})
	if got := names(pending(t, s)); !slices.Equal(got, []string{"u", "w1", "w2"}) {
		t.Fatalf("Pending = %v, want [u w1 w2]", got)
	}
	// The server confirms w1 fully and w2 partly.
	apply(t, s, store.Batch{Remote: map[string]crdt.State{
		"w1": st(map[string]int64{store.AckNode: 2}, nil),
		"w2": st(map[string]int64{store.AckNode: 7}, nil), // p side only
	}})
	p := pending(t, s)
	if got := names(p); !slices.Equal(got, []string{"u", "w2"}) {
		t.Fatalf("Pending after confirmations = %v, want [u w2]", got)
	}
	if !equal(p["w2"], st(map[string]int64{store.AckNode: 7}, map[string]int64{"me": 1})) {
		t.Fatalf("pending w2 = %v", p["w2"])
	}
	// A new write makes w1 pending again.
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "w1", Node: "me", DP: 1}}})
	if got := names(pending(t, s)); !slices.Equal(got, []string{"u", "w1", "w2"}) {
		t.Fatalf("Pending after a new write = %v", got)
	}
}

// testUnbased: an unbased delta on a counter without a based record goes
// to the UnbasedNode slot; on a based record it is an ordinary delta; a
// based delta moves the unbased amounts into the own slot after its
// floors.
func testUnbased(t *testing.T, s store.Store) {
	got := apply(t, s, store.Batch{Own: []store.OwnDelta{
		{Name: "e", Node: "me", DP: 2, Unbased: true},
		{Name: "e", Node: "me", DN: 1, Unbased: true},
	}})
	if got[1] != (store.OwnTotal{UP: 2, UN: 1, Unbased: true}) {
		t.Fatalf("unbased totals %+v", got)
	}
	// Another writer (tab) adds more, still unbased.
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "e", Node: "me", DP: 3, Unbased: true}}})
	want(t, s, "e", st(map[string]int64{store.UnbasedNode: 5}, map[string]int64{store.UnbasedNode: 1}))
	// The server said the node holds +10/-4: a based delta with those
	// floors moves the unbased writes on top.
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "e", Node: "me", DP: 1, FloorP: 10, FloorN: 4}}})
	if got[0] != (store.OwnTotal{P: 16, N: 5}) {
		t.Fatalf("rebase totals %+v, want {16 5}", got)
	}
	want(t, s, "e", st(map[string]int64{"me": 16}, map[string]int64{"me": 5}))
	// The record is based now: an unbased delta adds to the own slot.
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "e", Node: "me", DP: 1, Unbased: true}}})
	if got[0] != (store.OwnTotal{P: 17, N: 5}) {
		t.Fatalf("unbased delta on a based record: %+v, want {17 5}", got)
	}
	// A second rebase (another tab that learnt the base too) moves nothing.
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "e", Node: "me", FloorP: 10, FloorN: 4}}})
	if got[0] != (store.OwnTotal{P: 17, N: 5}) {
		t.Fatalf("second rebase %+v, want {17 5}", got)
	}
	// A record that other nodes' entries created is not based: its own
	// slot says nothing of the node's entries on the server.
	apply(t, s, store.Batch{Remote: map[string]crdt.State{"r": st(map[string]int64{"x": 1}, nil)}})
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "r", Node: "me", DP: 1, Unbased: true}}})
	if got[0] != (store.OwnTotal{UP: 1, Unbased: true}) {
		t.Fatalf("unbased delta on a remote record: %+v", got)
	}
	// A based delta with no entries makes a based record of zero entries:
	// it keeps the knowledge that the node has none.
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "zero", Node: "me"}}})
	if snap, _ := s.Load(ctx(t), []string{"zero"}); !snap.Based["zero"] || snap.States["zero"].Len() != 0 {
		t.Fatalf("zero = %v, based %v", snap.States, snap.Based)
	}
}

func testUnbasedInvalid(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "k", Node: "me", DP: 1, Unbased: true}}})
	bad := []store.Batch{
		{Own: []store.OwnDelta{{Name: "k", Node: "me", DP: 1, FloorP: 3, Unbased: true}}},
		{Remote: map[string]crdt.State{"k": st(map[string]int64{store.UnbasedNode: 9}, nil)}},
		{Own: []store.OwnDelta{{Name: "k", Node: store.UnbasedNode, DP: 1}}},
		{Own: []store.OwnDelta{{Name: "k", Node: "me", DP: crdt.MaxSafe, Unbased: true}}},
		{Own: []store.OwnDelta{{Name: "k", Node: "me", DP: crdt.MaxSafe}}}, // moving +1 overflows
		{Touch: []string{""}},
	}
	for i, b := range bad {
		if _, err := s.Apply(ctx(t), b); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("bad batch %d: Apply = %v, want ErrInvalid", i, err)
		}
	}
	want(t, s, "k", st(map[string]int64{store.UnbasedNode: 1}, nil))
}

// testFold: a folded record keeps its own entries, the pseudo-nodes and
// the aggregate max(RestNode, Σ individual others) per side.
func testFold(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Remote: map[string]crdt.State{"f": st(
		map[string]int64{"a": 3, "b": 4, store.RestNode: 5, store.AckNode: 1},
		map[string]int64{"a": 2, store.RestNode: 1},
	)}})
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "f", Node: "me", DP: 1}}, Fold: []string{"f"}})
	want(t, s, "f", st(
		map[string]int64{"me": 1, store.RestNode: 7, store.AckNode: 1},
		map[string]int64{store.RestNode: 2},
	))
	// Folding again changes nothing; an aggregate above the sum stays.
	apply(t, s, store.Batch{Remote: map[string]crdt.State{"f": st(map[string]int64{"c": 1}, nil)}, Fold: []string{"f"}})
	want(t, s, "f", st(
		map[string]int64{"me": 1, store.RestNode: 7, store.AckNode: 1},
		map[string]int64{store.RestNode: 2},
	))
	apply(t, s, store.Batch{Fold: []string{"none"}}) // no record: nothing
	if m, _ := s.Load(ctx(t), []string{"none"}); len(m.States) != 0 {
		t.Fatalf("folding a missing record created %v", m.States)
	}
}

// testEvictLRU: Evict deletes the least recently used records (written or
// touched) beyond max, skipping those keep names.
func testEvictLRU(t *testing.T, s store.Store) {
	for i := range 6 {
		apply(t, s, store.Batch{Remote: map[string]crdt.State{fmt.Sprintf("e%d", i): st(map[string]int64{"x": int64(i + 1)}, nil)}})
	}
	apply(t, s, store.Batch{Touch: []string{"e0", "missing"}}) // e0 is now the most recent
	apply(t, s, store.Batch{Remote: map[string]crdt.State{"e1": st(map[string]int64{"x": 9}, nil)}})
	if _, err := s.Evict(ctx(t), -1, nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Evict(-1) = %v, want ErrInvalid", err)
	}
	gone, err := s.Evict(ctx(t), 3, func(name string) bool { return name == "e2" })
	if err != nil {
		t.Fatalf("Evict: %v", err)
	}
	slices.Sort(gone)
	if !slices.Equal(gone, []string{"e3", "e4", "e5"}) {
		t.Fatalf("Evict removed %v, want [e3 e4 e5] (e2 kept, e0 touched, e1 written last)", gone)
	}
	if got := names(load(t, s)); !slices.Equal(got, []string{"e0", "e1", "e2"}) {
		t.Fatalf("left %v", got)
	}
	if gone, err := s.Evict(ctx(t), 3, nil); err != nil || len(gone) != 0 {
		t.Fatalf("Evict at the cap = %v, %v", gone, err)
	}
	if m, _ := s.Load(ctx(t), []string{"e3"}); len(m.States) != 0 {
		t.Fatalf("evicted record still loads: %v", m.States)
	}
	gone, err = s.Evict(ctx(t), 0, nil)
	if err != nil || len(gone) != 3 {
		t.Fatalf("Evict(0) = %v, %v", gone, err)
	}
	if m := load(t, s); len(m) != 0 {
		t.Fatalf("left %v", m)
	}
}

// testEvictPending: records with unconfirmed or unbased own writes are
// never evicted.
func testEvictPending(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{
		{Name: "p", Node: "me", DP: 1},
		{Name: "u", Node: "me", DN: 1, Unbased: true},
		{Name: "c", Node: "me", DP: 1},
	}, Remote: map[string]crdt.State{"c": st(map[string]int64{store.AckNode: 1}, nil)}})
	gone, err := s.Evict(ctx(t), 0, nil)
	if err != nil || !slices.Equal(gone, []string{"c"}) {
		t.Fatalf("Evict(0) = %v, %v; want [c]", gone, err)
	}
	if got := names(load(t, s)); !slices.Equal(got, []string{"p", "u"}) {
		t.Fatalf("left %v, want [p u]", got)
	}
}

// testStaleBase: after an eviction (which raises the generation), a based
// delta whose knowledge predates it is refused on a record that is not
// based (missing, or unbased) and kept as an unbased write; with the
// current generation it is accepted; a based record accepts any.
func testStaleBase(t *testing.T, s store.Store) {
	apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "old", Node: "me", DP: 5}, {Name: "kept", Node: "me", DP: 1}},
		Remote: map[string]crdt.State{"old": st(map[string]int64{store.AckNode: 5}, nil)}})
	g0, err := s.Load(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Evict(ctx(t), 1, func(name string) bool { return name == "kept" })
	if err != nil || !slices.Equal(gone, []string{"old"}) {
		t.Fatalf("Evict = %v, %v", gone, err)
	}
	g1, _ := s.Load(ctx(t), nil)
	if g1.Gen <= g0.Gen {
		t.Fatalf("generation %d after an eviction, was %d", g1.Gen, g0.Gen)
	}
	// A writer that knew old's base (5) before the eviction writes +1.
	got := apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "old", Node: "me", DP: 1, FloorP: 5, Gen: g0.Gen}}})
	if got[0] != (store.OwnTotal{UP: 1, Unbased: true, Gen: g1.Gen}) {
		t.Fatalf("stale based delta: %+v, want unbased", got[0])
	}
	// Once it has learnt the base again (current generation), it lands.
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "old", Node: "me", FloorP: 5, Gen: g1.Gen}}})
	if got[0] != (store.OwnTotal{P: 6, Gen: g1.Gen}) {
		t.Fatalf("current based delta: %+v, want {6}", got[0])
	}
	// A based record never evicted accepts knowledge of any age.
	got = apply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "kept", Node: "me", DP: 1, Gen: g0.Gen}}})
	if got[0] != (store.OwnTotal{P: 2, Gen: g1.Gen}) {
		t.Fatalf("based record: %+v, want {2}", got[0])
	}
	// An evicting call that deletes nothing keeps the generation.
	if gone, _ := s.Evict(ctx(t), 10, nil); len(gone) != 0 {
		t.Fatalf("Evict(10) deleted %v", gone)
	}
	if g2, _ := s.Load(ctx(t), nil); g2.Gen != g1.Gen {
		t.Fatalf("generation %d after an Evict that deleted nothing, want %d", g2.Gen, g1.Gen)
	}
}
