//go:build !js

package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

// A client's cost follows the counters it uses: Start reads the pending
// records only, a handle reads its own record, eviction keeps the store
// within a cap, and a counter the store no longer holds never loses a
// write however its base is learnt.

// countingStore counts the reads a client makes of a real store.
type countingStore struct {
	store.Store
	mu               sync.Mutex
	pending, loadAll int
	loaded           []string
}

func (s *countingStore) Pending(ctx context.Context) (store.Snapshot, error) {
	s.mu.Lock()
	s.pending++
	s.mu.Unlock()
	return s.Store.Pending(ctx)
}

func (s *countingStore) LoadCounters(ctx context.Context) (map[string]crdt.State, error) {
	s.mu.Lock()
	s.loadAll++
	s.mu.Unlock()
	return s.Store.LoadCounters(ctx)
}

func (s *countingStore) Load(ctx context.Context, names []string) (store.Snapshot, error) {
	s.mu.Lock()
	s.loaded = append(s.loaded, names...)
	s.mu.Unlock()
	return s.Store.Load(ctx, names)
}

// offlineOptions are options of a client that never reaches a server.
func offlineOptions(st store.Store) client.Options {
	return client.Options{URL: "ws://127.0.0.1:1/ws", Store: st, Logger: quietLogger(),
		SyncDelay: time.Millisecond, MinBackoff: time.Hour, CloseTimeout: -1}
}

// touchAll writes +1 to n counters prefix:i through a client on st, has
// the server confirm them, and closes the client (the store then holds
// every record with its confirmation).
func touchAll(t *testing.T, url string, st store.Store, prefix string, n int) {
	t.Helper()
	opts := fastOptions(url)
	opts.Store = st
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		mustCounter(t, c, fmt.Sprintf("%s:%d", prefix, i)).Increment()
	}
	if err := c.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStartReadsPendingOnly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	touchAll(t, srv.url, st, "feed", 200)
	if p, err := st.Pending(t.Context()); err != nil || len(p.States) != 0 {
		t.Fatalf("pending after a confirmed session: %v, %v", p.States, err)
	}
	// One offline write leaves one pending record.
	off := newClient(t, offlineOptions(st))
	mustCounter(t, off, "feed:3").AddAndGet(2)
	if err := off.Close(); err == nil {
		t.Fatal("Close delivered offline")
	}
	if p, _ := st.Pending(t.Context()); len(p.States) != 1 {
		t.Fatalf("pending = %v, want feed:3", p.States)
	}

	cs := &countingStore{Store: st}
	c := newClient(t, offlineOptions(cs))
	cs.mu.Lock()
	if cs.pending != 1 || cs.loadAll != 0 || len(cs.loaded) != 0 {
		t.Fatalf("Start read: Pending %d times, LoadCounters %d times, Load %v", cs.pending, cs.loadAll, cs.loaded)
	}
	cs.mu.Unlock()
	// A handle reads its record, and only it; Get is the stored value at
	// once (offline).
	if v := mustCounter(t, c, "feed:42").Get(); v != 1 {
		t.Fatalf("feed:42 = %d, want 1", v)
	}
	if v := mustCounter(t, c, "feed:3").Get(); v != 3 {
		t.Fatalf("feed:3 = %d, want 3 (loaded at Start: pending)", v)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !slices.Equal(cs.loaded, []string{"feed:42"}) || cs.loadAll != 0 {
		t.Fatalf("Load %v, LoadCounters %d times; want [feed:42], 0", cs.loaded, cs.loadAll)
	}
}

// TestOpenCounterLoadsInBackground: OpenCounter returns at once; writes
// made before the stored state arrives count on top of it.
func TestOpenCounterLoadsInBackground(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	touchAll(t, srv.url, st, "bg", 1)
	c := newClient(t, offlineOptions(st))
	cnt, err := c.OpenCounter("bg:0")
	if err != nil {
		t.Fatal(err)
	}
	cnt.AddAndGet(5)
	var got []int64
	var mu sync.Mutex
	cnt.Subscribe(func(v int64) { mu.Lock(); got = append(got, v); mu.Unlock() })
	select {
	case <-cnt.Loaded():
	case <-ctxT(t).Done():
		t.Fatal("never loaded")
	}
	// Once loaded, the stored value and the write add up exactly.
	if v := cnt.Get(); v != 6 {
		t.Fatalf("loaded: %d, want 6 (stored 1 + written 5)", v)
	}
	if again := mustCounter(t, c, "bg:0"); again != cnt || again.Get() != 6 {
		t.Fatalf("Counter after OpenCounter: %p %d", again, again.Get())
	}
	mu.Lock()
	defer mu.Unlock()
	if got[len(got)-1] != 6 {
		t.Fatalf("subscriber saw %v, want ... 6", got)
	}
}

// TestEvictedCounterKeepsWrites is the hazard of eviction: the server
// holds this node's entries of a counter the store no longer has. Writes
// made offline, across restarts, stay relative, and are added on top of
// the base the server reports: nothing is max-merged away.
func TestEvictedCounterKeepsWrites(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	touchAll(t, srv.url, st, "h", 1) // node's entry: +1
	for range 4 {
		c := newClient(t, func() client.Options { o := fastOptions(srv.url); o.Store = st; return o }())
		if err := mustCounter(t, c, "h:0").Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		mustCounter(t, c, "h:0").Increment()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	} // node's entry: +5, confirmed
	gone, err := st.Evict(t.Context(), 0, nil)
	if err != nil || !slices.Equal(gone, []string{"h:0"}) {
		t.Fatalf("Evict = %v, %v", gone, err)
	}

	// Offline, two sessions write +1 and +2: relative, kept in the store.
	for i, d := range []int64{1, 2} {
		c := newClient(t, offlineOptions(st))
		cnt := mustCounter(t, c, "h:0")
		if v, _ := cnt.AddAndGet(d); v != 1+int64(i)*2 {
			t.Fatalf("session %d: value %d (the relative writes so far)", i, v)
		}
		if cnt.Synced() {
			t.Fatal("synced with relative writes")
		}
		_ = c.Close()
	}
	m, _ := st.Load(t.Context(), []string{"h:0"})
	if m.States["h:0"].P[store.UnbasedNode] != 3 {
		t.Fatalf("stored %v, want 3 unbased", m.States["h:0"])
	}

	// Online: the server's state gives the base 5; 5 + 3 is delivered.
	opts := fastOptions(srv.url)
	opts.Store = st
	c := newClient(t, opts)
	cnt := mustCounter(t, c, "h:0")
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if p, _ := cnt.Own(); p != 8 || cnt.Get() != 8 {
		t.Fatalf("after the base: value %d, own +%d; want 8", cnt.Get(), p)
	}
	fresh := mustCounter(t, readyClient(t, srv.url), "h:0")
	eventually(t, "the server holds 8", func() bool { return fresh.Get() == 8 })
}

// TestEvictedCounterWrittenBeforeReply: online, the write comes before the
// server's reply to the subscription (the reply is held back): it stays
// relative until the reply, then lands on top of the base.
func TestEvictedCounterWrittenBeforeReply(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	touchAll(t, srv.url, st, "r", 1)
	for range 2 {
		c := newClient(t, func() client.Options { o := fastOptions(srv.url); o.Store = st; return o }())
		mustCounter(t, c, "r:0").Increment()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	} // +3, confirmed
	if gone, err := st.Evict(t.Context(), 0, nil); err != nil || len(gone) != 1 {
		t.Fatalf("Evict = %v, %v", gone, err)
	}
	gate := &replyGate{release: make(chan struct{})}
	opts := fastOptions(srv.url)
	opts.Store = st
	opts.Dialer = gate.dial
	c := newClient(t, opts)
	waitReady(t, c)
	cnt := mustCounter(t, c, "r:0") // sends COUNTER_REQUEST; the reply is held
	cnt.AddAndGet(4)
	eventually(t, "the write stored unbased", func() bool {
		m, _ := st.Load(t.Context(), []string{"r:0"})
		return m.States["r:0"].P[store.UnbasedNode] == 4
	})
	close(gate.release)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	fresh := mustCounter(t, readyClient(t, srv.url), "r:0")
	eventually(t, "the server holds 7", func() bool { return fresh.Get() == 7 })
	if cnt.Get() != 7 {
		t.Fatalf("client reads %d, want 7", cnt.Get())
	}
}

// replyGate holds every COUNTER_RESPONSE the client reads until release
// is closed.
type replyGate struct{ release chan struct{} }

func (g *replyGate) dial(ctx context.Context, url string) (transport.Conn, error) {
	c, err := transport.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return &heldReplyConn{Conn: c, g: g}, nil
}

type heldReplyConn struct {
	transport.Conn
	g *replyGate
}

func (c *heldReplyConn) Read(ctx context.Context) ([]byte, error) {
	b, err := c.Conn.Read(ctx)
	if err != nil {
		return b, err
	}
	held := false
	counters, _ := splitFrame(b)
	for _, f := range counters {
		if m, _ := wire.Decode(f); m != nil {
			if _, ok := m.(wire.CounterResponse); ok {
				held = true
			}
		}
	}
	if held {
		select {
		case <-c.g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b, nil
}

// TestEvictionCap: beyond MaxStoredCounters the store drops synced
// counters without a handle in use, never pending ones: offline writes to
// more counters than the cap are all delivered later.
func TestEvictionCap(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	const limit = 10
	opts := fastOptions(srv.url)
	opts.Store = st
	opts.MaxStoredCounters = limit
	c := newClient(t, opts)
	handles := make([]*client.Counter, 40)
	for i := range handles {
		handles[i] = mustCounter(t, c, fmt.Sprintf("cap:%d", i))
		handles[i].Increment()
	}
	if err := c.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, h := range handles[:35] {
		h.Close() // released: may be evicted
	}
	eventually(t, "the store within the cap", func() bool {
		_ = c.Persist(ctxT(t))
		m, _ := st.LoadCounters(t.Context())
		return len(m) <= limit
	})
	m, _ := st.LoadCounters(t.Context())
	for _, h := range handles[35:] {
		if _, ok := m[h.Name()]; !ok {
			t.Fatalf("%s evicted while its handle is in use (left %d)", h.Name(), len(m))
		}
	}
	// Released handles still read their last value, and writes to them
	// still land (their base is known in memory; floors restore it).
	handles[0].Increment()
	if err := handles[0].Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Offline with the same cap: 30 written counters stay until delivered.
	off := offlineOptions(st)
	off.MaxStoredCounters = limit
	oc := newClient(t, off)
	for i := range 30 {
		mustCounter(t, oc, fmt.Sprintf("cap:%d", i)).AddAndGet(10)
	}
	if err := oc.Persist(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_ = oc.Close()
	if p, _ := st.Pending(t.Context()); len(p.States) != 30 {
		t.Fatalf("%d pending records after offline writes, want 30", len(p.States))
	}
	opts.Store = st
	back := newClient(t, opts) // delivers the pending records (no handle taken)
	eventually(t, "every write delivered and its confirmation stored", func() bool {
		p, _ := st.Pending(t.Context())
		return len(p.States) == 0
	})
	reader := readyClient(t, srv.url)
	for i := range 30 {
		want := int64(11)
		if i == 0 {
			want = 12
		}
		cnt := mustCounter(t, reader, fmt.Sprintf("cap:%d", i))
		eventually(t, fmt.Sprintf("cap:%d = %d", i, want), func() bool { return cnt.Get() == want })
	}
	if err := back.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store back within the cap", func() bool {
		m, _ := st.LoadCounters(t.Context())
		return len(m) <= limit
	})
}

// TestStaleBaseAfterEviction: an offline tab's handle keeps the base it
// knew; another tab (same store, same node id) writes more and the record
// is evicted. When the first tab writes again, its base is stale: the
// store refuses it (the eviction came after it was learnt), the write is
// kept relative, and the server's current state gives the base. Before
// the store's generation, the write was sent on the stale base and merged
// away (the property test found it).
func TestStaleBaseAfterEviction(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := fastOptions(srv.url)
	opts.Store = st
	opts.MaxStoredCounters = -1 // the test evicts
	a, b := newClient(t, opts), newClient(t, opts)
	ca := mustCounter(t, a, "stale")
	ca.Increment()
	if err := ca.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	a.SetOnline(false) // a hears nothing of b's writes
	cb := mustCounter(t, b, "stale")
	if _, err := cb.AddAndGet(5); err != nil {
		t.Fatal(err)
	}
	if err := cb.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cb.Close()
	if err := b.Persist(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record confirmed", func() bool {
		p, _ := st.Pending(t.Context())
		return len(p.States) == 0
	})
	if gone, err := st.Evict(t.Context(), 0, nil); err != nil || len(gone) != 1 {
		t.Fatalf("Evict = %v, %v", gone, err)
	}
	// a still believes the node's entry is +1.
	if _, err := ca.AddAndGet(1); err != nil {
		t.Fatal(err)
	}
	if err := a.Persist(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	m, _ := st.Load(t.Context(), []string{"stale"})
	if m.States["stale"].P[store.UnbasedNode] != 1 || m.Based["stale"] {
		t.Fatalf("stored %v (based %v): want the write kept unbased", m.States["stale"], m.Based)
	}
	a.SetOnline(true)
	if err := ca.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	fresh := mustCounter(t, readyClient(t, srv.url), "stale")
	eventually(t, "the server holds 7", func() bool { return fresh.Get() == 7 })
	eventually(t, "a reads 7", func() bool { return ca.Get() == 7 })
}

// slowLoadStore holds every Load until release is closed.
type slowLoadStore struct {
	store.Store
	release chan struct{}
}

func (s *slowLoadStore) Load(ctx context.Context, names []string) (store.Snapshot, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return store.Snapshot{}, ctx.Err()
	}
	return s.Store.Load(ctx, names)
}

// TestWritesWaitForTheLoad: writes made through OpenCounter before its
// record is read wait for it, and land on top of the stored value, also
// when the client closes meanwhile (Close's persistence waits for the
// read).
func TestWritesWaitForTheLoad(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	touchAll(t, srv.url, st, "slow", 1)
	slow := &slowLoadStore{Store: st, release: make(chan struct{})}
	c := newClient(t, offlineOptions(slow))
	cnt, err := c.OpenCounter("slow:0")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cnt.AddAndGet(5); v != 5 {
		t.Fatalf("before the load: %d, want 5 (the write only)", v)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	time.Sleep(20 * time.Millisecond) // Close is waiting for the read (not a timed assertion: either order passes)
	close(slow.release)
	if err := <-closed; err == nil {
		t.Fatal("Close delivered offline")
	}
	m, _ := st.Load(t.Context(), []string{"slow:0"})
	node := c.NodeID()
	if p := m.States["slow:0"].P[node]; p != 6 {
		t.Fatalf("stored own +%d, want 6 (stored 1 + written 5): %v", p, m.States["slow:0"])
	}
}

// TestRecordsFoldLegacyEntries: a stored record with individual entries of
// other nodes (a full state an older client received) keeps only its own
// entries, the aggregate "*" and the confirmation once the client, which
// receives compact views, writes it again: records are O(1).
func TestRecordsFoldLegacyEntries(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	legacy := crdt.State{P: map[string]int64{"legacy-a": 2, "legacy-b": 3}, N: map[string]int64{"legacy-a": 1}}
	r := dialRaw(t, srv.url)
	r.send(wire.CounterSync{Name: "fold", State: legacy})
	next[wire.CounterUpdate](r)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	if _, err := st.Apply(t.Context(), store.Batch{Remote: map[string]crdt.State{"fold": legacy}}); err != nil {
		t.Fatal(err)
	}
	opts := fastOptions(srv.url)
	opts.Store = st
	c := newClient(t, opts)
	cnt := mustCounter(t, c, "fold")
	cnt.Increment()
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Persist(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if cnt.Get() != 5 {
		t.Fatalf("value %d, want 5", cnt.Get())
	}
	eventually(t, "the record folded and confirmed", func() bool {
		m, _ := st.Load(t.Context(), []string{"fold"})
		s := m.States["fold"]
		for _, side := range []map[string]int64{s.P, s.N} {
			for k := range side {
				if k != c.NodeID() && k != wire.RestNode && k != store.AckNode {
					return false
				}
			}
		}
		return s.P[wire.RestNode] == 5 && s.N[wire.RestNode] == 1 && s.P[store.AckNode] == 1 && m.Based["fold"]
	})
}
