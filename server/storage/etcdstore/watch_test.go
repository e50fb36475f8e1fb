package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/server/storage"
)

// hangGuard bounds waits for a watch to deliver, so a lost event fails the
// test with the state seen instead of hanging until the test timeout. It is
// no latency assertion: deliveries take milliseconds.
const hangGuard = 60 * time.Second

// collector records the calls of a WatchCounter callback and max-merges
// them, as the server does.
type collector struct {
	mu      sync.Mutex
	calls   []crdt.State
	state   crdt.State
	changed chan struct{} // receives after each call (capacity 1)
}

func newCollector() *collector {
	return &collector{state: newState(), changed: make(chan struct{}, 1)}
}

func (c *collector) fn(st crdt.State) {
	c.mu.Lock()
	c.calls = append(c.calls, st.Clone())
	c.state.Raise(st)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// snapshot returns copies of the calls so far and of their merge.
func (c *collector) snapshot() ([]crdt.State, crdt.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]crdt.State(nil), c.calls...), c.state.Clone()
}

// waitFor waits until the merged state of the calls satisfies ok.
func (c *collector) waitFor(t *testing.T, what string, ok func(crdt.State) bool) {
	t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		if _, st := c.snapshot(); ok(st) {
			return
		}
		select {
		case <-c.changed:
		case <-guard.C:
			calls, st := c.snapshot()
			t.Fatalf("watch never delivered %s: merged %v from calls %v", what, st, calls)
		}
	}
}

// waitEqual waits until the merged state of the calls equals want.
func (c *collector) waitEqual(t *testing.T, want crdt.State) {
	t.Helper()
	c.waitFor(t, fmt.Sprint(want), func(st crdt.State) bool { return equalState(st, want) })
}

func equalState(a, b crdt.State) bool {
	return fmt.Sprint(a.Clone()) == fmt.Sprint(b.Clone())
}

func mustMerge(t *testing.T, s *Store, name string, st crdt.State) {
	t.Helper()
	if err := s.MergeCounter(context.Background(), name, st); err != nil {
		t.Fatalf("MergeCounter(%q, %v): %v", name, st, err)
	}
}

func ps(kv ...any) crdt.State {
	st := newState()
	for i := 0; i < len(kv); i += 2 {
		st.P[kv[i].(string)] = int64(kv[i+1].(int))
	}
	return st
}

// TestWatch: a watch sees the writes made through another store and
// client, with the stored values, and nothing of other counters.
func TestWatch(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix()
	a := newStore(t, newClient(t, shared.Endpoints()), prefix)
	b := newStore(t, newClient(t, shared.Endpoints()), prefix)
	const name = "c"
	mustMerge(t, b, name, ps("x", 3))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	col := newCollector()
	init, err := a.WatchCounter(ctx, name, col.fn)
	if err != nil {
		t.Fatal(err)
	}
	if !equalState(init, ps("x", 3)) {
		t.Fatalf("WatchCounter returned %v, want %v", init, ps("x", 3))
	}

	// Counters whose names or keys share a prefix with "c"; values ≥ 100
	// only there.
	for _, other := range []string{"c/", "cc", "c/p", "1:c"} {
		mustMerge(t, b, other, ps("x", 100, "other", 100))
	}
	want := ps("x", 5)
	want.N["y"] = 2
	mustMerge(t, b, name, crdt.State{P: map[string]int64{"x": 5}, N: map[string]int64{"y": 2}})
	col.waitEqual(t, want)

	// A lower value writes nothing and is not reported; the next raise is.
	mustMerge(t, b, name, ps("x", 1, "z", 0))
	mustMerge(t, b, name, ps("z", 7))
	want.P["z"] = 7
	col.waitEqual(t, want)

	// Another counter's writes never reach this watch.
	calls, _ := col.snapshot()
	for _, c := range calls {
		for _, m := range []map[string]int64{c.P, c.N} {
			for node, v := range m {
				if node == "other" || v >= 100 || v == 1 || v == 0 {
					t.Errorf("watch delivered %v: entry %s=%d was never stored in %q", c, node, v, name)
				}
			}
		}
	}

	cancel()
	a.watchers.Wait() // the watch goroutine exits on ctx done
}

// TestWatchCorrupt: values and keys the store did not write are skipped by
// watches (and fail LoadCounter); later writes still arrive.
func TestWatchCorrupt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := newClient(t, shared.Endpoints())
	s := newStore(t, cli, uniquePrefix())
	const name = "c"
	col := newCollector()
	if _, err := s.WatchCounter(ctx, name, col.fn); err != nil {
		t.Fatal(err)
	}
	cp := s.counterPrefix(name)
	for k, v := range map[string]string{
		cp + "p/g":   "garbage",
		cp + "p/h":   "9999999999999999", // above 2^53-1
		cp + "q/x":   "0000000000000009",
		cp + "p/":    "0000000000000009",
		cp + "x":     "0000000000000009",
		cp + "p/neg": "-000000000000009",
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	mustMerge(t, s, name, ps("ok", 4))
	col.waitEqual(t, ps("ok", 4))
	if _, err := s.LoadCounter(ctx, name); err == nil {
		t.Error("LoadCounter of a counter with corrupt entries succeeded")
	}
	if _, err := s.WatchCounter(ctx, name, col.fn); err == nil {
		t.Error("WatchCounter of a counter with corrupt entries succeeded")
	}
	cancel()
	s.watchers.Wait()
}

// TestWatchStops: watches end with Close of the store and of the client,
// and WatchCounter refuses a closed store, a canceled ctx and bad
// arguments.
func TestWatchStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cli := newClient(t, shared.Endpoints())
	s := newStore(t, cli, uniquePrefix())
	if _, err := s.WatchCounter(ctx, "c", func(crdt.State) {}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.watchers.Wait()
	if _, err := s.WatchCounter(ctx, "c", func(crdt.State) {}); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("WatchCounter after Close = %v, want ErrClosed", err)
	}

	own, err := clientv3.New(clientv3.Config{Endpoints: shared.Endpoints(), Logger: cli.GetLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s2 := newStore(t, own, uniquePrefix())
	if _, err := s2.WatchCounter(ctx, "c", func(crdt.State) {}); err != nil {
		t.Fatal(err)
	}
	own.Close()
	s2.watchers.Wait()

	s3 := newStore(t, cli, uniquePrefix())
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s3.WatchCounter(canceled, "c", func(crdt.State) {}); err == nil {
		t.Error("WatchCounter(canceled ctx) succeeded")
	}
	if _, err := s3.WatchCounter(ctx, "", func(crdt.State) {}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("WatchCounter(\"\") = %v, want ErrInvalid", err)
	}
	if _, err := s3.WatchCounter(ctx, "c", nil); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("WatchCounter(nil fn) = %v, want ErrInvalid", err)
	}
}

// TestWatchCompaction holds a watch between its first read and its
// registration while other writes land and the history is compacted past
// them, so etcd refuses the watch's start revision (ErrCompacted). The
// store must reload the counter, deliver every change, and watch on.
func TestWatchCompaction(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := etcdtest.New(t, 1)
	a := newStore(t, c.Client(t), "")
	b := newStore(t, c.Client(t), "")
	const name = "c"
	mustMerge(t, b, name, ps("x", 1))

	// revs receives the revision each watch registration starts after; the
	// first registration waits for hold.
	revs := make(chan int64, 100)
	hold := make(chan struct{})
	var registrations atomic.Int64
	a.beforeWatch = func(rev int64) {
		revs <- rev
		if registrations.Add(1) == 1 {
			<-hold
		}
	}
	col := newCollector()
	type result struct {
		st  crdt.State
		err error
	}
	res := make(chan result, 1)
	go func() {
		st, err := a.WatchCounter(ctx, name, col.fn)
		res <- result{st, err}
	}()
	first := <-revs

	// One transaction per write, then compact the history past them all.
	want := ps("x", 1)
	for i := 1; i <= 5; i++ {
		st := ps("x", 1+i, fmt.Sprintf("n%d", i), 10*i)
		mustMerge(t, b, name, st)
		want.Raise(st)
	}
	resp, err := b.Client().Get(ctx, "/revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	compacted := resp.Header.Revision
	if _, err := b.Client().Compact(ctx, compacted, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	close(hold)

	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !equalState(r.st, ps("x", 1)) {
		t.Errorf("WatchCounter returned %v, want the state read before the writes, %v", r.st, ps("x", 1))
	}
	col.waitEqual(t, want)
	// The reload registered a new watch after the compacted revision.
	select {
	case second := <-revs:
		if first >= compacted || second < compacted {
			t.Errorf("watches registered after revisions %d and %d; want the first below the compaction at %d and the second at or above it", first, second, compacted)
		}
	case <-time.After(hangGuard):
		t.Fatal("no watch registered after the reload")
	}

	// The watch registered after the reload delivers later writes.
	mustMerge(t, b, name, crdt.State{N: map[string]int64{"x": 3}})
	want.N["x"] = 3
	col.waitEqual(t, want)
	cancel()
	a.watchers.Wait()
}

// TestConcurrentClients: merges of the same entries through two clients
// at once end at the maximum of everything written.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix()
	stores := []*Store{
		newStore(t, newClient(t, shared.Endpoints()), prefix),
		newStore(t, newClient(t, shared.Endpoints()), prefix),
	}
	const (
		name       = "hot"
		goroutines = 8
		rounds     = 40
	)
	var wg sync.WaitGroup
	maxes := make([]crdt.State, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			s := stores[g%2]
			local := newState()
			for i := range rounds {
				// Values rise and fall, so stale writes race fresh ones.
				v := int64((i*7919+g*104729)%1000 + 1)
				st := crdt.State{P: map[string]int64{"x": v}, N: map[string]int64{"x": 1001 - v}}
				if err := s.MergeCounter(context.Background(), name, st); err != nil {
					t.Errorf("MergeCounter: %v", err)
					return
				}
				local.Raise(st)
			}
			maxes[g] = local
		})
	}
	wg.Wait()
	want := newState()
	for _, m := range maxes {
		want.Raise(m)
	}
	for i, s := range stores {
		got, err := s.LoadCounter(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !equalState(got, want) {
			t.Errorf("store %d: LoadCounter = %v, want %v", i, got, want)
		}
	}
}
