//go:build js && wasm

package idb

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall/js"
	"testing"
	"time"

	indexeddb "github.com/hack-pad/go-indexeddb/idb"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/store/storetest"
)

// TestMain fails the run if goroutines outlive the tests (OnChange
// listeners, go-indexeddb's per-request listener goroutines).
func TestMain(m *testing.M) {
	before := len(goroutines())
	code := m.Run()
	if code == 0 {
		var left []string
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if left = goroutines(); len(left) <= before || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > before {
			fmt.Fprintf(os.Stderr, "leaked goroutines (%d before, %d after):\n%s\n",
				before, len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// goroutines returns the stacks of all goroutines but the caller and the
// runtime's JS event handler (running while a timer or callback fires).
func goroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "runtime.handleEvent()") || strings.Contains(g, ".goroutines()") {
			continue
		}
		out = append(out, g)
	}
	return out
}

// dbName returns a database name unique to this test run.
func dbName(t *testing.T) string {
	return fmt.Sprintf("topgun-test/%s/%s", t.Name(), rand.Text()[:8])
}

// openNamed opens name and closes it at cleanup; the first call for a name
// also deletes the database at cleanup (cleanups run last-in first-out,
// so every Store on it is closed by then).
func openNamed(t *testing.T, name string) *Store {
	t.Helper()
	s, err := Open(t.Context(), name)
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	name := dbName(t)
	t.Cleanup(func() { deleteDB(t, name) })
	return openNamed(t, name), name
}

func deleteDB(t *testing.T, name string) {
	// t.Context is already cancelled in cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := indexeddb.WrapFactory(js.Global().Get("indexedDB"))
	if err != nil {
		t.Errorf("indexedDB: %v", err)
		return
	}
	req, err := f.DeleteDatabase(name)
	if err == nil {
		err = req.Await(ctx)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		t.Errorf("delete %q: %v", name, err)
	}
}

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
		return s
	})
}

func mustApply(t *testing.T, s *Store, b store.Batch) []store.OwnTotal {
	t.Helper()
	totals, err := s.Apply(t.Context(), b)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return totals
}

func mustLoad(t *testing.T, s *Store) map[string]crdt.State {
	t.Helper()
	m, err := s.LoadCounters(t.Context())
	if err != nil {
		t.Fatalf("LoadCounters: %v", err)
	}
	return m
}

func stateString(m map[string]crdt.State) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s:p%v,n%v;", k, m[k].P, m[k].N)
	}
	return b.String()
}

// rawPut writes value under key in objectStore of s's database,
// bypassing the Store (corrupt records, layout checks).
func rawPut(t *testing.T, s *Store, objectStore, key string, value js.Value) {
	t.Helper()
	tx, err := s.db.Transaction(indexeddb.TransactionReadWrite, objectStore)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.ObjectStore(objectStore)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutKey(js.ValueOf(key), value); err != nil {
		t.Fatal(err)
	}
	if err := tx.Await(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, s *Store, objectStore, key string) js.Value {
	t.Helper()
	tx, err := s.db.Transaction(indexeddb.TransactionReadOnly, objectStore)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.ObjectStore(objectStore)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := getEach(t.Context(), st, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	return vals[0]
}

func jsonOf(v js.Value) string {
	return js.Global().Get("JSON").Call("stringify", v).String()
}

// TestLayout pins the record format that JS code and DevTools see.
func TestLayout(t *testing.T) {
	s, _ := openTemp(t)
	id, err := s.NodeID(t.Context(), func() string { return "node-1" })
	if err != nil || id != "node-1" {
		t.Fatalf("NodeID = %q, %v", id, err)
	}
	if v := rawGet(t, s, metaStore, nodeIDKey); v.Type() != js.TypeString || v.String() != "node-1" {
		t.Fatalf("meta[nodeId] = %v", v)
	}
	mustApply(t, s, store.Batch{
		Own:    []store.OwnDelta{{Name: "c", Node: "a", DP: 5}},
		Remote: map[string]crdt.State{"c": {N: map[string]int64{"b": crdt.MaxSafe, "z": 0}}},
	})
	if got, want := jsonOf(rawGet(t, s, countersStore, "c")), `{"p":{"a":5},"n":{"b":9007199254740991}}`; got != want {
		t.Fatalf("record = %s, want %s", got, want)
	}
	// A node named __proto__ is a plain entry, not a prototype.
	mustApply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "__proto__", DP: 2}}})
	if got := mustLoad(t, s)["c"].P["__proto__"]; got != 2 {
		t.Fatalf(`p["__proto__"] = %d, want 2; stored %s`, got, jsonOf(rawGet(t, s, countersStore, "c")))
	}
}

func TestDefaultName(t *testing.T) {
	s, err := Open(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteDB(t, DefaultName) })
	defer s.Close()
	if s.name != DefaultName || DefaultName != "topgun-go" {
		t.Fatalf("name = %q", s.name)
	}
}

func TestUnavailable(t *testing.T) {
	for _, v := range []js.Value{js.Undefined(), js.Null()} {
		_, err := open(t.Context(), "x", v, nil)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "MemoryAdapter") {
			t.Errorf("open without indexedDB (%v) = %v, want ErrUnavailable mentioning MemoryAdapter", v, err)
		}
	}
	_, err := open(t.Context(), "x", js.Undefined(), errors.New("SecurityError"))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("open with a throwing indexedDB getter = %v, want ErrUnavailable", err)
	}
}

// TestNodeIDSharedByTabs: two Stores on one database (two tabs) racing to
// create the node id agree, and a later one reads it.
func TestNodeIDSharedByTabs(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	var ids [2]string
	var errs [2]error
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			ids[i], errs[i] = s.NodeID(t.Context(), func() string { return fmt.Sprintf("tab-%d", i) })
		})
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("NodeID: %v, %v", errs[0], errs[1])
	}
	if ids[0] != ids[1] {
		t.Fatalf("tabs got different node ids %q and %q", ids[0], ids[1])
	}
	c := openNamed(t, name)
	id, err := c.NodeID(t.Context(), func() string { t.Error("newID called on a third tab"); return "x" })
	if err != nil || id != ids[0] {
		t.Fatalf("third tab NodeID = %q, %v; want %q", id, err, ids[0])
	}
}

// TestConcurrentTabsExactSum: two tabs sharing a node id add concurrently;
// no increment is lost.
func TestConcurrentTabsExactSum(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	const rounds = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for w, s := range []*Store{a, b} {
		wg.Go(func() {
			last := int64(0)
			for range rounds {
				totals, err := s.Apply(t.Context(), store.Batch{Own: []store.OwnDelta{
					{Name: "c", Node: "same", DP: int64(w + 1)},
					{Name: "d", Node: "same", DN: 1},
				}})
				if err != nil {
					errs <- err
					return
				}
				if totals[0].P <= last {
					errs <- fmt.Errorf("tab %d: total went from %d to %d", w, last, totals[0].P)
				}
				last = totals[0].P
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := openNamed(t, name)
	m := mustLoad(t, c)
	if got := stateString(m); got != fmt.Sprintf("c:pmap[same:%d],nmap[];d:pmap[],nmap[same:%d];", 3*rounds, 2*rounds) {
		t.Fatalf("stored %s", got)
	}
}

// recv waits for a notice on ch, or fails after a timeout.
func recv(t *testing.T, ch <-chan []string) []string {
	t.Helper()
	select {
	case names := <-ch:
		return names
	case <-time.After(5 * time.Second):
		t.Fatal("no change notice")
		return nil
	}
}

func quiet(t *testing.T, ch <-chan []string, what string) {
	t.Helper()
	select {
	case names := <-ch:
		t.Fatalf("%s: unexpected notice %q", what, names)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestOnChange(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	gotA := make(chan []string, 10)
	gotB := make(chan []string, 10)
	unsubA := a.OnChange(func(n []string) { gotA <- n })
	defer unsubA()
	unsubB := b.OnChange(func(n []string) { gotB <- n })

	mustApply(t, a, store.Batch{
		Own:    []store.OwnDelta{{Name: "y", Node: "a", DP: 1}},
		Remote: map[string]crdt.State{"x": {P: map[string]int64{"r": 3}}},
	})
	if names := recv(t, gotB); !slices.Equal(names, []string{"x", "y"}) {
		t.Fatalf("b got %q, want [x y]", names)
	}
	// A batch that changes nothing posts nothing, and a Store never hears
	// its own posts.
	mustApply(t, a, store.Batch{Remote: map[string]crdt.State{"x": {P: map[string]int64{"r": 2}}}})
	quiet(t, gotB, "no-op batch")
	quiet(t, gotA, "own post")

	// Notices go both ways.
	mustApply(t, b, store.Batch{Own: []store.OwnDelta{{Name: "z", Node: "b", DN: 1}}})
	if names := recv(t, gotA); !slices.Equal(names, []string{"z"}) {
		t.Fatalf("a got %q, want [z]", names)
	}

	// After unsubscribe b hears nothing; unsubscribe is idempotent.
	unsubB()
	unsubB()
	mustApply(t, a, store.Batch{Own: []store.OwnDelta{{Name: "y", Node: "a", DP: 1}}})
	quiet(t, gotB, "after unsubscribe")
	if n := len(b.listeners); n != 0 {
		t.Fatalf("b still has %d listeners", n)
	}
}

// TestOnChangeOrderAndBlockingFn: a slow fn neither blocks the page nor
// reorders notices.
func TestOnChangeOrderAndBlockingFn(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	got := make(chan []string, 100)
	b.OnChange(func(n []string) {
		time.Sleep(5 * time.Millisecond)
		got <- n
	})
	const n = 10
	for i := range n {
		mustApply(t, a, store.Batch{Own: []store.OwnDelta{{Name: fmt.Sprintf("c%02d", i), Node: "a", DP: 1}}})
	}
	for i := range n {
		if names := recv(t, got); !slices.Equal(names, []string{fmt.Sprintf("c%02d", i)}) {
			t.Fatalf("notice %d = %q", i, names)
		}
	}
	// Close releases the listener.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if len(b.listeners) != 0 {
		t.Fatal("Close left listeners")
	}
}

// TestApplyAbortsWholeBatch: a batch that fails part-way changes nothing
// and posts nothing.
func TestApplyAbortsWholeBatch(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	got := make(chan []string, 10)
	defer b.OnChange(func(n []string) { got <- n })()
	mustApply(t, a, store.Batch{
		Own:    []store.OwnDelta{{Name: "a", Node: "me", DP: 1}},
		Remote: map[string]crdt.State{"big": {P: map[string]int64{"me": crdt.MaxSafe - 1}}},
	})
	recv(t, got)
	before := stateString(mustLoad(t, a))

	// The batch validates, but its third delta would pass 2^53-1 against
	// the stored value: ErrInvalid, and the first two never land.
	bad := store.Batch{
		Own: []store.OwnDelta{
			{Name: "a", Node: "me", DP: 5},
			{Name: "new", Node: "me", DP: 1},
			{Name: "big", Node: "me", DP: 2},
		},
		Remote: map[string]crdt.State{"r": {P: map[string]int64{"x": 1}}},
	}
	if _, err := a.Apply(t.Context(), bad); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("overflowing batch: %v, want ErrInvalid", err)
	}
	if after := stateString(mustLoad(t, b)); after != before {
		t.Fatalf("overflowing batch changed the store:\n%s\nwant\n%s", after, before)
	}

	// A write failing after others were issued aborts the transaction.
	fine := store.Batch{
		Own:    []store.OwnDelta{bad.Own[0], bad.Own[1], {Name: "big", Node: "me", DP: 1}},
		Remote: bad.Remote,
	}
	boom := errors.New("boom")
	testHookPut = func(i int) error {
		if i == 2 {
			return boom
		}
		return nil
	}
	defer func() { testHookPut = nil }()
	if _, err := a.Apply(t.Context(), fine); !errors.Is(err, boom) {
		t.Fatalf("failing write: %v, want boom", err)
	}
	testHookPut = nil
	if after := stateString(mustLoad(t, b)); after != before {
		t.Fatalf("aborted batch changed the store:\n%s\nwant\n%s", after, before)
	}
	quiet(t, got, "failed batches")

	// The store still works, and the same batch now lands whole.
	mustApply(t, a, fine)
	if names := recv(t, got); !slices.Equal(names, []string{"a", "big", "new", "r"}) {
		t.Fatalf("notice %q", names)
	}
}

func TestCorruptRecords(t *testing.T) {
	obj := func(src string) js.Value {
		return js.Global().Get("JSON").Call("parse", src)
	}
	cases := []struct {
		name string
		rec  js.Value
	}{
		{"string", js.ValueOf("nope")},
		{"null", js.Null()},
		{"array", obj(`[1,2]`)},
		{"p not object", obj(`{"p":5}`)},
		{"string entry", obj(`{"p":{"a":"5"}}`)},
		{"negative", obj(`{"p":{"a":-1}}`)},
		{"fraction", obj(`{"n":{"a":1.5}}`)},
		{"unsafe", obj(`{"p":{"a":9007199254740992}}`)},
		{"empty node", obj(`{"p":{"":1}}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			mustApply(t, s, store.Batch{Own: []store.OwnDelta{{Name: "good", Node: "a", DP: 1}}})
			rawPut(t, s, countersStore, "bad", tc.rec)
			if m, err := s.LoadCounters(t.Context()); err == nil {
				t.Fatalf("LoadCounters = %v, want error", m)
			} else if !strings.Contains(err.Error(), `"bad"`) {
				t.Fatalf("LoadCounters error %q does not name the counter", err)
			}
			if _, err := s.Apply(t.Context(), store.Batch{Own: []store.OwnDelta{
				{Name: "good", Node: "a", DP: 1}, {Name: "bad", Node: "a", DP: 1},
			}}); err == nil {
				t.Fatal("Apply over a corrupt record succeeded")
			}
			if got := jsonOf(rawGet(t, s, countersStore, "good")); got != `{"p":{"a":1},"n":{}}` {
				t.Fatalf("failed Apply changed good: %s", got)
			}
		})
	}
	t.Run("node id", func(t *testing.T) {
		s, _ := openTemp(t)
		rawPut(t, s, metaStore, nodeIDKey, js.ValueOf(42))
		if id, err := s.NodeID(t.Context(), func() string { return "x" }); err == nil {
			t.Fatalf("NodeID over a corrupt record = %q", id)
		}
	})
}

func TestClosed(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeID(t.Context(), func() string { return "x" }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("NodeID: %v", err)
	}
	if _, err := s.LoadCounters(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadCounters: %v", err)
	}
	if _, err := s.Apply(t.Context(), store.Batch{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("empty Apply: %v", err)
	}
	if _, err := s.Apply(t.Context(), store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 1}}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Apply: %v", err)
	}
	s.OnChange(func([]string) { t.Error("called") })() // no-op, no panic
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Apply(ctx, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 1}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply: %v", err)
	}
	if _, err := s.LoadCounters(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadCounters: %v", err)
	}
	name := dbName(t)
	t.Cleanup(func() { deleteDB(t, name) })
	if _, err := Open(ctx, name); !errors.Is(err, context.Canceled) {
		t.Errorf("Open: %v", err)
	}
	if m := mustLoad(t, s); len(m) != 0 {
		t.Fatalf("cancelled Apply wrote %v", m)
	}
}

// BenchmarkApply measures one batch of own deltas to distinct counters, the
// engine's per-tick write: one transaction, reads then writes.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("counters=%d", n), func(b *testing.B) {
			name := fmt.Sprintf("topgun-bench/%d/%s", n, rand.Text()[:8])
			s, err := Open(b.Context(), name)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				_ = s.Close()
				f, _ := indexeddb.WrapFactory(js.Global().Get("indexedDB"))
				if req, err := f.DeleteDatabase(name); err == nil {
					_ = req.Await(context.Background())
				}
			}()
			batch := store.Batch{}
			for i := range n {
				batch.Own = append(batch.Own, store.OwnDelta{Name: fmt.Sprintf("c%04d", i), Node: "me", DP: 1})
			}
			for b.Loop() {
				if _, err := s.Apply(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// TestMigrateVersion1 opens a database that an earlier release created at
// version 1 (meta and counters only): the upgrade adds the index stores
// and Open indexes the records once, so Pending finds the one with
// unconfirmed writes of the stored node id and Evict can delete the rest.
func TestMigrateVersion1(t *testing.T) {
	name := dbName(t)
	done := make(chan error, 1)
	var upgrade, success, failure js.Func
	upgrade = js.FuncOf(func(this js.Value, args []js.Value) any {
		db := args[0].Get("target").Get("result")
		db.Call("createObjectStore", metaStore)
		db.Call("createObjectStore", countersStore)
		return nil
	})
	success = js.FuncOf(func(this js.Value, args []js.Value) any {
		db := args[0].Get("target").Get("result")
		tx := db.Call("transaction", js.ValueOf([]any{metaStore, countersStore}), "readwrite")
		tx.Call("objectStore", metaStore).Call("put", "me", nodeIDKey)
		cs := tx.Call("objectStore", countersStore)
		rec := func(src string) js.Value { return js.Global().Get("JSON").Call("parse", src) }
		cs.Call("put", rec(`{"p":{"me":2,"=":2,"x":1},"n":{}}`), "sent")
		cs.Call("put", rec(`{"p":{"me":3,"=":2},"n":{}}`), "unsent")
		cs.Call("put", rec(`{"p":{"x":4},"n":{}}`), "other")
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
	req := js.Global().Get("indexedDB").Call("open", name, 1)
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
	snap, err := s.Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p := snap.States; len(p) != 1 || p["unsent"].P["me"] != 3 || !snap.Based["unsent"] {
		t.Fatalf("Pending after migration = %v (based %v), want unsent, based", stateString(p), snap.Based)
	}
	gone, err := s.Evict(t.Context(), 0, nil)
	slices.Sort(gone)
	if err != nil || !slices.Equal(gone, []string{"other", "sent"}) {
		t.Fatalf("Evict(0) = %v, %v; want [other sent]", gone, err)
	}
	// A second Open does not migrate again: the index is kept.
	again := openNamed(t, name)
	if p, err := again.Pending(t.Context()); err != nil || len(p.States) != 1 {
		t.Fatalf("Pending after reopening = %v, %v", stateString(p.States), err)
	}
}

// TestUnbasedAcrossTabs: two Stores on one database (two tabs) write
// unbased amounts; one rebases them all, once; the other's later rebase
// moves nothing, and Pending follows.
func TestUnbasedAcrossTabs(t *testing.T) {
	a, name := openTemp(t)
	b := openNamed(t, name)
	mustApply(t, a, store.Batch{Own: []store.OwnDelta{{Name: "u", Node: "me", DP: 2, Unbased: true}}})
	got := mustApply(t, b, store.Batch{Own: []store.OwnDelta{{Name: "u", Node: "me", DN: 1, Unbased: true}}})
	if got[0] != (store.OwnTotal{UP: 2, UN: 1, Unbased: true}) {
		t.Fatalf("tab b's unbased total %+v", got[0])
	}
	got = mustApply(t, a, store.Batch{Own: []store.OwnDelta{{Name: "u", Node: "me", FloorP: 10}}})
	if got[0] != (store.OwnTotal{P: 12, N: 1}) {
		t.Fatalf("rebase %+v, want {12 1}", got[0])
	}
	got = mustApply(t, b, store.Batch{Own: []store.OwnDelta{{Name: "u", Node: "me", FloorP: 10}}})
	if got[0] != (store.OwnTotal{P: 12, N: 1}) {
		t.Fatalf("second rebase %+v, want {12 1}", got[0])
	}
	if p, _ := b.Pending(t.Context()); len(p.States) != 1 {
		t.Fatalf("pending %v: unconfirmed own entries", stateString(p.States))
	}
	mustApply(t, a, store.Batch{Remote: map[string]crdt.State{"u": {P: map[string]int64{store.AckNode: 12}, N: map[string]int64{store.AckNode: 1}}}})
	if p, _ := b.Pending(t.Context()); len(p.States) != 0 {
		t.Fatalf("pending %v after the confirmation", stateString(p.States))
	}
}
