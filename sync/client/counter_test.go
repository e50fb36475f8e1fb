//go:build !js

package client_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"post:42/likes_total-v1.0", true},
		{strings.Repeat("x", 256), true},
		{"", false},
		{strings.Repeat("x", 257), false},
		{"with space", false},
		{"ünicode", false},
		{"semi;colon", false},
		{"tab\t", false},
	}
	srv := startServer(t)
	c := readyClient(t, srv.url)
	for _, tt := range tests {
		if got := client.ValidName(tt.name); got != tt.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
		_, cerr := c.Counter(tt.name)
		_, lerr := c.Lock(tt.name)
		for _, err := range []error{cerr, lerr} {
			if tt.ok && err != nil {
				t.Errorf("%q: unexpected error %v", tt.name, err)
			}
			if !tt.ok && !errors.Is(err, client.ErrInvalidName) {
				t.Errorf("%q: error %v, want ErrInvalidName", tt.name, err)
			}
		}
	}
}

func TestNewAndStartErrors(t *testing.T) {
	t.Parallel()
	if _, err := client.New(client.Options{}); err == nil {
		t.Fatal("New without URL succeeded")
	}
	c, err := client.New(client.Options{URL: "ws://127.0.0.1:1/ws"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Counter("x"); !errors.Is(err, client.ErrNotStarted) {
		t.Fatalf("Counter before Start = %v, want ErrNotStarted", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
	if c.State() != client.Closed {
		t.Fatalf("state after Close = %v", c.State())
	}
}

// TestOfflineFirst: with no server at all, Start succeeds at once and
// counters work; the client reports Offline with a dial error.
func TestOfflineFirst(t *testing.T) {
	t.Parallel()
	opts := fastOptions("ws://127.0.0.1:1/ws") // nothing listens on port 1
	st := store.NewMemory()
	defer st.Close()
	opts.Store = st
	c := newClient(t, opts)
	cnt := mustCounter(t, c, "offline")
	if v := cnt.Increment(); v != 1 {
		t.Fatalf("Increment = %d", v)
	}
	if v, err := cnt.AddAndGet(-5); err != nil || v != -4 {
		t.Fatalf("AddAndGet = %d, %v", v, err)
	}
	if cnt.Synced() {
		t.Fatal("Synced while offline")
	}
	eventually(t, "offline state with an error", func() bool {
		return c.State() == client.Offline && c.Err() != nil
	})
	// Local writes reach the store.
	eventually(t, "persisted", func() bool {
		m, _ := st.LoadCounters(t.Context())
		v, _ := m["offline"].Value()
		return v == -4
	})
	node, _ := st.NodeID(t.Context(), func() string { return "unused" })
	if node != c.NodeID() || node == "" {
		t.Fatalf("store node id %q, client %q", node, c.NodeID())
	}
}

func TestConverge(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const clients, ops = 10, 1000
	cs := make([]*client.Client, clients)
	for i := range cs {
		cs[i] = readyClient(t, srv.url)
	}
	var want atomic.Int64
	var wg sync.WaitGroup
	for i, c := range cs {
		cnt := mustCounter(t, c, "converge")
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 42))
			var sum int64
			for range ops {
				d := r.Int64N(201) - 100
				if _, err := cnt.AddAndGet(d); err != nil {
					t.Error(err)
					return
				}
				sum += d
			}
			want.Add(sum)
			if err := cnt.Flush(ctxT(t)); err != nil {
				t.Errorf("Flush: %v", err)
			}
		})
	}
	wg.Wait()
	w := want.Load()
	for i, c := range cs {
		cnt := mustCounter(t, c, "converge")
		eventually(t, fmt.Sprintf("client %d converges to %d", i, w), func() bool { return cnt.Get() == w })
		if !cnt.Synced() {
			t.Errorf("client %d not synced after Flush", i)
		}
	}
	fresh := readyClient(t, srv.url)
	cnt := mustCounter(t, fresh, "converge")
	eventually(t, "fresh client loads the sum", func() bool { return cnt.Get() == w })
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a, b := readyClient(t, srv.url), readyClient(t, srv.url)
	ca, cb := mustCounter(t, a, "sub"), mustCounter(t, b, "sub")
	if ca2 := mustCounter(t, a, "sub"); ca2 != ca {
		t.Fatal("Counter returned a different handle for the same name")
	}

	var mu sync.Mutex
	var gotA, gotB []int64
	unsubA := ca.Subscribe(func(v int64) { mu.Lock(); gotA = append(gotA, v); mu.Unlock() })
	unsubB := cb.Subscribe(func(v int64) { mu.Lock(); gotB = append(gotB, v); mu.Unlock() })
	last := func(s *[]int64) int64 {
		mu.Lock()
		defer mu.Unlock()
		if len(*s) == 0 {
			return -1 << 62
		}
		return (*s)[len(*s)-1]
	}

	// Subscribe calls back at once with the current value; local changes
	// fire synchronously.
	ca.Increment()
	ca.AddAndGet(4)
	mu.Lock()
	if len(gotA) != 3 || gotA[0] != 0 || gotA[1] != 1 || gotA[2] != 5 {
		t.Fatalf("local notifications %v, want [0 1 5]", gotA)
	}
	mu.Unlock()
	// No-op writes do not fire.
	ca.AddAndGet(0)
	// Remote changes fire on the other client.
	eventually(t, "B sees 5", func() bool { return last(&gotB) == 5 })
	cb.Decrement()
	eventually(t, "A sees 4", func() bool { return last(&gotA) == 4 })

	unsubA()
	unsubA() // idempotent
	mu.Lock()
	n := len(gotA)
	mu.Unlock()
	ca.Increment()
	cb.AddAndGet(10)
	eventually(t, "A converges to 15", func() bool { return ca.Get() == 15 })
	eventually(t, "B sees 15", func() bool { return last(&gotB) == 15 })
	mu.Lock()
	if len(gotA) != n {
		t.Fatalf("unsubscribed callback fired: %v", gotA[n:])
	}
	mu.Unlock()
	unsubB()
}

func TestFlushAndSynced(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := readyClient(t, srv.url)
	cnt := mustCounter(t, c, "flush")
	if !cnt.Synced() {
		t.Fatal("fresh counter not synced")
	}
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cnt.AddAndGet(7)
	cnt.AddAndGet(-3)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if !cnt.Synced() {
		t.Fatal("not synced after Flush")
	}
	// Another client reads what was flushed.
	other := mustCounter(t, readyClient(t, srv.url), "flush")
	eventually(t, "other client reads 4", func() bool { return other.Get() == 4 })

	// Flush respects its context when it cannot finish.
	off := newClient(t, fastOptions("ws://127.0.0.1:1/ws"))
	oc := mustCounter(t, off, "flush")
	oc.Increment()
	ctx, cancel := contextWithTimeout(t, 20*time.Millisecond)
	defer cancel()
	if err := oc.Flush(ctx); !errors.Is(err, ctx.Err()) || err == nil {
		t.Fatalf("offline Flush = %v, want context error", err)
	}
}

func TestAddAndGetOutOfRange(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := readyClient(t, srv.url)
	cnt := mustCounter(t, c, "range")
	fired := 0
	cnt.Subscribe(func(int64) { fired++ })
	if v, err := cnt.AddAndGet(crdt.MaxSafe); err != nil || v != crdt.MaxSafe {
		t.Fatalf("AddAndGet(MaxSafe) = %d, %v", v, err)
	}
	for _, d := range []int64{1, crdt.MaxSafe, crdt.MaxSafe + 1, -crdt.MaxSafe - 1} {
		v, err := cnt.AddAndGet(d)
		if !errors.Is(err, crdt.ErrOutOfRange) {
			t.Errorf("AddAndGet(%d) error = %v, want ErrOutOfRange", d, err)
		}
		if v != crdt.MaxSafe || cnt.Get() != crdt.MaxSafe {
			t.Errorf("AddAndGet(%d) changed the value: %d / %d", d, v, cnt.Get())
		}
	}
	if v := cnt.Increment(); v != crdt.MaxSafe {
		t.Errorf("Increment past MaxSafe = %d", v)
	}
	if fired != 2 { // at Subscribe, and for the one write that succeeded
		t.Errorf("subscriber fired %d times, want 2", fired)
	}
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	other := mustCounter(t, readyClient(t, srv.url), "range")
	eventually(t, "other reads MaxSafe", func() bool { return other.Get() == crdt.MaxSafe })
}

// TestOfflineReconnect cuts a client off with a proxy: it keeps writing,
// creates a handle while offline, reconnects when the proxy is back,
// and nothing is lost.
func TestOfflineReconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	rec := &recordingDialer{}
	opts := fastOptions(px.url())
	opts.Dialer = rec.dial
	a := newClient(t, opts)
	waitReady(t, a)
	b := readyClient(t, srv.url)

	ca := mustCounter(t, a, "cut")
	cb := mustCounter(t, b, "cut")
	var seen atomic.Int64
	cb.Subscribe(func(v int64) { seen.Store(v) })
	ca.AddAndGet(10)
	if err := ca.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B sees 10", func() bool { return seen.Load() == 10 })

	// B writes a counter A has never opened.
	late := mustCounter(t, b, "late")
	late.AddAndGet(33)
	if err := late.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	px.Cut()
	eventually(t, "A offline", func() bool { return a.State() != client.Ready })
	for i := range 100 {
		if i%3 == 0 {
			ca.Decrement()
		} else {
			ca.AddAndGet(2)
		}
	}
	want := int64(10 + 66*2 - 34)
	if ca.Get() != want {
		t.Fatalf("local value %d, want %d", ca.Get(), want)
	}
	if ca.Synced() {
		t.Fatal("Synced while cut off")
	}
	// A handle created offline.
	aLate := mustCounter(t, a, "late")
	if aLate.Get() != 0 {
		t.Fatalf("offline handle value %d before reconnect", aLate.Get())
	}
	// B keeps writing too.
	cb.AddAndGet(1000)
	want += 1000

	px.Restore()
	waitReady(t, a)
	if err := ca.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A converges", func() bool { return ca.Get() == want })
	eventually(t, "B's subscriber sees the final value", func() bool { return seen.Load() == want })
	eventually(t, "offline handle loads the server state", func() bool { return aLate.Get() == 33 })

	// The reconnect resubscribed every counter it holds.
	var syncs, requests int
	for _, m := range rec.frames() {
		switch m := m.(type) {
		case wire.CounterSync:
			if m.Name == "cut" {
				syncs++
			}
			if len(m.State.P)+len(m.State.N) != 1 && !(len(m.State.P) == 1 && len(m.State.N) == 1) {
				t.Errorf("COUNTER_SYNC carries other nodes' entries: %v", m.State)
			}
			for _, side := range []map[string]int64{m.State.P, m.State.N} {
				for node := range side {
					if node != a.NodeID() {
						t.Errorf("COUNTER_SYNC carries entry of node %q", node)
					}
				}
			}
		case wire.CounterRequest:
			if m.Name == "late" {
				requests++
			}
		}
	}
	if syncs < 2 || requests != 1 {
		t.Errorf("frames: %d COUNTER_SYNC for cut, %d COUNTER_REQUEST for late", syncs, requests)
	}
}

// TestPersistAcrossRestart: writes made offline survive Close and reach the
// server from the next client on the same store.
func TestPersistAcrossRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	px.Cut()
	st := store.NewMemory()
	defer st.Close()

	opts := fastOptions(px.url())
	opts.Store = st
	c1, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	cnt := mustCounter(t, c1, "restart")
	for range 50 {
		cnt.Increment()
	}
	cnt.AddAndGet(-8)
	node := c1.NodeID()
	// Close persists what is pending and, the server being out of reach
	// for the whole grace period, reports the writes it kept.
	var undelivered *client.UndeliveredError
	if err := c1.Close(); !errors.As(err, &undelivered) || !undelivered.Kept ||
		len(undelivered.Counters) != 1 || undelivered.Counters[0] != "restart" {
		t.Fatalf("Close = %v, want an UndeliveredError keeping [restart]", err)
	}
	if _, err := cnt.AddAndGet(1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("AddAndGet after Close = %v, want ErrClosed", err)
	}

	px.Restore()
	c2 := newClient(t, opts)
	if c2.NodeID() != node {
		t.Fatalf("node id %q after restart, want %q", c2.NodeID(), node)
	}
	cnt2 := mustCounter(t, c2, "restart")
	if cnt2.Get() != 42 {
		t.Fatalf("restored value %d, want 42", cnt2.Get())
	}
	if cnt2.Synced() {
		t.Fatal("restored unsent writes reported synced")
	}
	waitReady(t, c2)
	if err := cnt2.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	other := mustCounter(t, readyClient(t, srv.url), "restart")
	eventually(t, "server has the offline writes", func() bool { return other.Get() == 42 })
}

// TestServerStateAdoptedForOwnNode: a client whose explicit node id already
// has entries on the server (an earlier life) adopts them and keeps its
// store consistent, so later writes add to them.
func TestServerStateAdoptedForOwnNode(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	opts := fastOptions(srv.url)
	opts.NodeID = "fixed-node"
	first := newClient(t, opts)
	waitReady(t, first)
	c := mustCounter(t, first, "adopt")
	c.AddAndGet(100)
	if err := c.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	first.Close()

	st := store.NewMemory()
	defer st.Close()
	opts.Store = st
	second := newClient(t, opts)
	waitReady(t, second)
	c2 := mustCounter(t, second, "adopt")
	eventually(t, "adopts 100", func() bool { return c2.Get() == 100 })
	c2.AddAndGet(5)
	if err := c2.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	second.Close()
	m, err := st.LoadCounters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p := m["adopt"].P["fixed-node"]; p != 105 {
		t.Fatalf("stored own entry %d, want 105", p)
	}
	other := mustCounter(t, readyClient(t, srv.url), "adopt")
	eventually(t, "server has 105", func() bool { return other.Get() == 105 })
}

// TestTabsSharingStoreAndNodeID: two clients over one store share its node
// id, as browser tabs share IndexedDB. Both write the same counter at once;
// neither loses the other's increments, on the server, in the store or in
// their own values.
func TestTabsSharingStoreAndNodeID(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := fastOptions(srv.url)
	opts.Store = st
	a, b := newClient(t, opts), newClient(t, opts)
	waitReady(t, a)
	waitReady(t, b)
	if a.NodeID() != b.NodeID() {
		t.Fatalf("node ids %q and %q differ", a.NodeID(), b.NodeID())
	}
	ca, cb := mustCounter(t, a, "tabs"), mustCounter(t, b, "tabs")
	const each = 500
	var wg sync.WaitGroup
	for _, c := range []*client.Counter{ca, cb} {
		wg.Go(func() {
			for i := 0; i < each; i++ {
				c.Increment()
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // let rounds interleave
				}
			}
		})
	}
	wg.Wait()
	for _, c := range []*client.Counter{ca, cb} {
		if err := c.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both tabs see 1000", func() bool { return ca.Get() == 2*each && cb.Get() == 2*each })
	m, err := st.LoadCounters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p := m["tabs"].P[a.NodeID()]; p != 2*each {
		t.Fatalf("stored own entry %d, want %d", p, 2*each)
	}
	other := mustCounter(t, readyClient(t, srv.url), "tabs")
	eventually(t, "server has 1000", func() bool { return other.Get() == 2*each })
}

// TestReloadFromSharedStore: offline, a second client on the same store
// (another tab) writes; Reload brings its increments into the first.
func TestReloadFromSharedStore(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := client.Options{URL: "ws://127.0.0.1:1/ws", Store: st, Logger: quietLogger(), SyncDelay: time.Millisecond, MinBackoff: time.Hour}
	a, b := newClient(t, opts), newClient(t, opts)
	ca, cb := mustCounter(t, a, "r"), mustCounter(t, b, "r")
	ca.AddAndGet(3)
	cb.AddAndGet(4)
	var seen atomic.Int64
	ca.Subscribe(func(v int64) { seen.Store(v) })
	// Wait until both writes reached the store (offline: Flush cannot help),
	// as unbased writes: neither tab knows the node's entries on the server.
	eventually(t, "both writes stored", func() bool {
		m, err := st.LoadCounters(t.Context())
		return err == nil && m["r"].P[store.UnbasedNode] == 7
	})
	if err := a.Reload(t.Context(), []string{"r", "unknown"}); err != nil {
		t.Fatal(err)
	}
	if ca.Get() != 7 || seen.Load() != 7 {
		t.Fatalf("after reload: value %d, notified %d; want 7", ca.Get(), seen.Load())
	}
	if p, n := ca.Own(); p != 7 || n != 0 {
		t.Fatalf("Own() = %d, %d", p, n)
	}
}

// TestManyWritersCompact: a fresh client reads a counter with 50,000
// writers, whose full state is over the 2 MiB frame limit, through a
// compact view (it used to read 0), and its own writes still count once.
func TestManyWritersCompact(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.MaxSyncNodes = 10000 })
	r := dialRaw(t, srv.url)
	const w = 50000
	for lo := 0; lo < w; lo += 10000 {
		s := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
		for i := lo; i < lo+10000; i++ {
			s.P[fmt.Sprintf("writer-%06d", i)] = 3
		}
		r.send(wire.CounterSync{Name: "popular", State: s})
		next[wire.CounterUpdate](r)
	}
	c := readyClient(t, srv.url)
	cnt := mustCounter(t, c, "popular")
	eventually(t, "the fresh client reads the whole counter", func() bool { return cnt.Get() == 3*w })
	cnt.AddAndGet(5)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	other := mustCounter(t, readyClient(t, srv.url), "popular")
	eventually(t, "another client reads it with the write", func() bool { return other.Get() == 3*w+5 })
	if cnt.Get() != 3*w+5 {
		t.Fatalf("writer reads %d, want %d", cnt.Get(), 3*w+5)
	}
}

// legacyDialer strips the compact-views request from the handshake while
// legacy is set, so the server sends this client full states, as a server
// without the extension would.
func legacyDialer(legacy *atomic.Bool) transport.Dialer {
	return wrapDialer(func(c transport.Conn) transport.Conn { return &legacyConn{Conn: c, legacy: legacy} })
}

type legacyConn struct {
	transport.Conn
	legacy *atomic.Bool
}

func (c *legacyConn) Write(ctx context.Context, b []byte) error {
	if c.legacy.Load() {
		if m, err := wire.Decode(b); err == nil {
			if h, ok := m.(wire.DeviceHello); ok {
				h.Views, h.NodeID = "", ""
				b, _ = wire.Encode(h)
			}
		}
	}
	return c.Conn.Write(ctx, b)
}

// TestFullStateThenCompactView: a client that held other nodes' entries
// from full states, then gets compact views (its server gained the
// extension), folds them into the aggregate without counting them twice,
// and persists only its own entries and the aggregate.
func TestFullStateThenCompactView(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	writer := mustCounter(t, readyClient(t, srv.url), "fold")
	writer.AddAndGet(7)
	if err := writer.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var legacy atomic.Bool
	legacy.Store(true)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := fastOptions(px.url())
	opts.Dialer = legacyDialer(&legacy)
	opts.Store = st
	c := newClient(t, opts)
	cnt := mustCounter(t, c, "fold")
	eventually(t, "full state loaded", func() bool { return cnt.Get() == 7 })
	cnt.AddAndGet(2)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	legacy.Store(false)
	px.Cut()
	eventually(t, "offline", func() bool { return c.State() == client.Offline })
	px.Restore()
	waitReady(t, c)
	writer.AddAndGet(1)
	eventually(t, "compact updates count once", func() bool { return cnt.Get() == 10 })
	if err := c.Persist(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	m, err := st.LoadCounters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := m["fold"].P[wire.RestNode]; got != 8 {
		t.Fatalf("stored aggregate %d, want 8 (%+v)", got, m["fold"])
	}
	// A restart from that store (legacy entry and aggregate both stored)
	// still counts 10.
	c2 := newClient(t, client.Options{URL: "ws://127.0.0.1:1/ws", Store: st, Logger: quietLogger(), MinBackoff: time.Hour, CloseTimeout: -1})
	if v := mustCounter(t, c2, "fold").Get(); v != 10 {
		t.Fatalf("after restart %d, want 10", v)
	}
}

// TestCounterClose: a released handle stops receiving remote changes once
// its writes are delivered, costs nothing on reconnect, and catches up
// when used again.
func TestCounterClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	rec := &recordingDialer{}
	opts := fastOptions(px.url())
	opts.Dialer = rec.dial
	c := newClient(t, opts)
	waitReady(t, c)
	cnt := mustCounter(t, c, "released")
	cnt.AddAndGet(3)
	cnt.Close() // before the write is confirmed: it is delivered anyway
	other := mustCounter(t, readyClient(t, srv.url), "released")
	eventually(t, "the released handle's write delivered", func() bool { return other.Get() == 3 })
	eventually(t, "unsubscribed", func() bool {
		for _, m := range rec.frames() {
			if u, ok := m.(wire.CounterUnsubscribe); ok && u.Name == "released" {
				return true
			}
		}
		return false
	})
	other.AddAndGet(10)
	if err := other.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// A reconnect does not resubscribe the released counter.
	n := len(rec.frames())
	px.Cut()
	eventually(t, "offline", func() bool { return c.State() == client.Offline })
	px.Restore()
	waitReady(t, c)
	mustCounter(t, c, "kept").Increment()
	if err := c.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, m := range rec.frames()[n:] {
		switch m := m.(type) {
		case wire.CounterSync:
			if m.Name == "released" {
				t.Fatalf("reconnect resynced a released counter: %+v", m)
			}
		case wire.CounterRequest:
			if m.Name == "released" {
				t.Fatalf("reconnect requested a released counter: %+v", m)
			}
		}
	}
	if cnt.Get() != 3 {
		t.Fatalf("released handle changed to %d", cnt.Get())
	}
	// Used again, it subscribes and catches up.
	got := make(chan int64, 16)
	cnt.Subscribe(func(v int64) { got <- v })
	eventually(t, "caught up", func() bool { return cnt.Get() == 13 })
}

// TestRestartCostsFollowUse: after a restart, counters whose writes the
// server had confirmed cost nothing on the wire until the app uses them;
// those with pending writes are delivered at once; a counter used again
// catches up with what others wrote meanwhile.
func TestRestartCostsFollowUse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := fastOptions(srv.url)
	opts.Store = st
	first := newClient(t, opts)
	waitReady(t, first)
	const n = 50
	for i := range n {
		mustCounter(t, first, fmt.Sprintf("feed:%d", i)).AddAndGet(int64(i + 1))
	}
	if err := first.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	other := mustCounter(t, readyClient(t, srv.url), "feed:7")
	other.AddAndGet(100)
	if err := other.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	rec := &recordingDialer{}
	opts.Dialer = rec.dial
	second := newClient(t, opts)
	waitReady(t, second)
	if err := second.Flush(ctxT(t)); err != nil { // nothing to deliver
		t.Fatal(err)
	}
	second.RetryNow()
	// A PING round trip would show frames sent before it; count counter
	// frames among everything sent so far.
	counterFrames := func() (k int) {
		for _, m := range rec.frames() {
			switch m.(type) {
			case wire.CounterSync, wire.CounterRequest:
				k++
			}
		}
		return k
	}
	if k := counterFrames(); k != 0 {
		t.Fatalf("restart sent %d counter frames for %d confirmed, unused counters, want 0", k, n)
	}
	cnt := mustCounter(t, second, "feed:7")
	if !cnt.Synced() || cnt.Get() != 8 {
		t.Fatalf("restored feed:7 = %d (synced %v), want 8, synced", cnt.Get(), cnt.Synced())
	}
	eventually(t, "feed:7 catches up once used", func() bool { return cnt.Get() == 108 })
	if k := counterFrames(); k != 1 {
		t.Fatalf("using one counter sent %d counter frames, want 1", k)
	}
}
