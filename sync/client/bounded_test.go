//go:build !js

package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/wire"
)

func mustBounded(t *testing.T, c *client.Client, name string, min int64) *client.BoundedCounter {
	t.Helper()
	b, err := c.BoundedCounter(name, min)
	if err != nil {
		t.Fatalf("BoundedCounter(%q, %d): %v", name, min, err)
	}
	return b
}

// watchFloor subscribes to b and records any value below min it reports.
func watchFloor(t *testing.T, b *client.BoundedCounter, min int64, bad *atomic.Int64) {
	t.Cleanup(b.Subscribe(func(v int64) {
		if v < min {
			bad.Store(v - min - 1) // nonzero
		}
	}))
}

// TestBoundedStockNeverOversold: a stock of N, decremented concurrently by
// replicas that ask the broker for rights, some of which sell offline
// between reconnects. Nobody's view ever goes below the bound, every unit
// is sold exactly once (the successful TryDecrements add up to N) and
// every replica converges on the value 0.
func TestBoundedStockNeverOversold(t *testing.T) {
	t.Parallel()
	const stock, replicas, ask = 300, 6, 7
	srv := startServer(t)
	name := "stock:widget"

	owner := readyClient(t, srv.url)
	ob := mustBounded(t, owner, name, 0)
	if err := ob.Increment(stock); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stock reaches the broker", ob.Synced)
	if ob.Available() != 0 || ob.Get() != stock {
		t.Fatalf("owner: available %d value %d", ob.Available(), ob.Get())
	}

	var bad atomic.Int64
	watchFloor(t, ob, 0, &bad)
	sold := make([]int64, replicas)
	handles := make([]*client.BoundedCounter, replicas)
	clients := make([]*client.Client, replicas)
	for i := range replicas {
		clients[i] = readyClient(t, srv.url)
		handles[i] = mustBounded(t, clients[i], name, 0)
		watchFloor(t, handles[i], 0, &bad)
	}
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, b := clients[i], handles[i]
			offlineRounds := 0
			for range 100 * stock { // a liveness bound: each round sells, asks or waits
				if b.Available() > 0 {
					if !b.TryDecrement(1) {
						t.Errorf("replica %d: TryDecrement failed with %d available", i, b.Available())
						return
					}
					sold[i]++
					continue
				}
				if !c.Online() { // sold out offline: fails cleanly, then reconnect
					if b.TryDecrement(1) {
						t.Errorf("replica %d: TryDecrement without rights succeeded", i)
						return
					}
					c.SetOnline(true)
					waitReady(t, c)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				g, err := b.RequestRights(ctx, ask)
				cancel()
				if err != nil {
					if errors.Is(err, client.ErrNotReady) || errors.Is(err, client.ErrDisconnected) {
						// The connection dropped by SetOnline(false) may
						// still be torn down; wait for the new one.
						time.Sleep(2 * time.Millisecond)
						waitReady(t, c)
						continue
					}
					t.Errorf("replica %d: RequestRights: %v", i, err)
					return
				}
				if g == 0 {
					return // the broker holds nothing more: sold out
				}
				if i%2 == 0 && offlineRounds < 3 {
					offlineRounds++
					c.SetOnline(false) // sell the rights just granted offline
				}
			}
			t.Errorf("replica %d: did not finish", i)
		}()
	}
	wg.Wait()
	var total int64
	for i, n := range sold {
		total += n
		eventually(t, fmt.Sprintf("replica %d synced", i), handles[i].Synced)
	}
	if total != stock {
		t.Fatalf("sold %d units of a stock of %d", total, stock)
	}
	for i, b := range append(handles, ob) {
		eventually(t, fmt.Sprintf("replica %d sees the stock sold out", i), func() bool { return b.Get() == 0 })
	}
	if v := bad.Load(); v != 0 {
		t.Fatalf("a replica's view went below the bound (%d)", v)
	}
	fresh := readyClient(t, srv.url)
	fb := mustBounded(t, fresh, name, 0)
	eventually(t, "a fresh replica sees 0", func() bool { return fb.Get() == 0 && fb.Available() == 0 })
	if _, err := fresh.BoundedCounter(name, 1); !errors.Is(err, client.ErrBoundMismatch) {
		t.Fatalf("another bound: err = %v", err)
	}
}

// TestBoundedMaliciousClient: a raw client that overspends, writes other
// rows, poses as the broker or changes the bound gets an error and
// changes nothing.
func TestBoundedMaliciousClient(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	good := readyClient(t, srv.url)
	gb := mustBounded(t, good, "stock", 0)
	if err := gb.Increment(5); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stock stored", gb.Synced)

	r := dialRaw(t, srv.url)
	r.send(wire.DeviceHello{NodeID: "mallory", Views: wire.ViewsCompact})
	if ack := next[wire.DeviceAck](r); ack.Views != wire.ViewsCompact {
		t.Fatalf("no compact views: %+v", ack)
	}
	r.send(wire.BCounterRequest{Name: "stock", Min: 0})
	if v := next[wire.BCounterUpdate](r); v.State.P[wire.RestNode] != 5 {
		t.Fatalf("view = %+v", v.State)
	}
	row := func(p, n map[string]int64, tr map[string]map[string]int64) crdt.BState {
		return crdt.BState{Min: 0, P: p, N: n, T: tr}
	}
	cases := []struct {
		what string
		m    wire.Message
		code uint32
	}{
		{"overspend", wire.BCounterSync{Name: "stock", State: row(nil, map[string]int64{"mallory": 1}, nil)}, 403},
		{"transfer unheld rights", wire.BCounterSync{Name: "stock", State: row(nil, nil,
			map[string]map[string]int64{"mallory": {wire.BrokerNode: 3}})}, 403},
		{"another row", wire.BCounterSync{Name: "stock", State: row(map[string]int64{"x": 9}, nil, nil)}, 400},
		{"the aggregate", wire.BCounterSync{Name: "stock", State: row(map[string]int64{wire.RestNode: 9}, nil, nil)}, 400},
		{"the broker's row", wire.BCounterSync{Name: "stock", State: row(nil, nil,
			map[string]map[string]int64{wire.BrokerNode: {"mallory": 5}})}, 400},
		{"a transfer to another client", wire.BCounterSync{Name: "stock", State: row(map[string]int64{"mallory": 2}, nil,
			map[string]map[string]int64{"mallory": {"x": 2}})}, 400},
		{"another bound", wire.BCounterRequest{Name: "stock", Min: -10}, 409},
		{"another bound in a sync", wire.BCounterSync{Name: "stock", State: crdt.BState{Min: -10}}, 409},
		{"rights of an unknown counter", wire.BCounterRights{RequestID: "r", Name: "nothing", Amount: 1}, 404},
		{"an invalid name", wire.BCounterRequest{Name: "bad name", Min: 0}, 400},
		{"a view sent back", wire.BCounterUpdate{Name: "stock", State: row(nil, nil, nil)}, 400},
	}
	for _, c := range cases {
		r.send(c.m)
		if e := next[wire.Error](r); e.Code != c.code {
			t.Errorf("%s: ERROR %d %q, want %d", c.what, e.Code, e.Message, c.code)
		}
	}
	// Nothing changed: the stock is whole, the broker still holds it all.
	r.send(wire.BCounterRights{RequestID: "r1", Name: "stock", Amount: 100})
	g := next[wire.BCounterGrant](r)
	if g.Granted != 5 || g.State.T[wire.BrokerNode]["mallory"] != 5 {
		t.Fatalf("grant = %+v", g)
	}
	r.send(wire.BCounterRights{RequestID: "r2", Name: "stock", Amount: 1})
	if g := next[wire.BCounterGrant](r); g.Granted != 0 {
		t.Fatalf("second grant = %+v", g)
	}
	eventually(t, "the honest replica's view", func() bool { return gb.Get() == 5 })
}

// TestBoundedNeedsCompactViews: a client without compact views gets a
// clear error.
func TestBoundedNeedsCompactViews(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	r := dialRaw(t, srv.url)
	r.send(wire.BCounterRequest{Name: "stock", Min: 0})
	if e := next[wire.Error](r); e.Code != 400 {
		t.Fatalf("ERROR %d %q", e.Code, e.Message)
	}
}
