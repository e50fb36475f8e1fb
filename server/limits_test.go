package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/sync/wire"
)

func TestLimitSyncNodes(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{MaxSyncNodes: 3})
	r := dial(t, url)
	r.send(wire.CounterSync{Name: "c", State: st(map[string]int64{"a": 1, "b": 1}, map[string]int64{"c": 1, "d": 1})})
	if e := expect[wire.Error](r); e.Code != 413 || !strings.Contains(e.Message, "--max-sync-nodes") {
		t.Fatalf("%+v, want ERROR 413 naming the flag", e)
	}
	r.send(wire.CounterSync{Name: "c", State: st(map[string]int64{"a": 1}, map[string]int64{"a": 1, "b": 2})})
	if u := expect[wire.CounterUpdate](r); u.State.N["b"] != 2 {
		t.Fatalf("%+v", u)
	}
}

func TestLimitSubscriptions(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{MaxSubscriptions: 2})
	r := dial(t, url)
	r.send(wire.CounterRequest{Name: "s1"})
	expect[wire.CounterResponse](r)
	r.send(wire.CounterSync{Name: "s2", State: st(map[string]int64{"a": 1}, nil)})
	expect[wire.CounterUpdate](r)
	r.send(wire.CounterRequest{Name: "s3"})
	if e := expect[wire.Error](r); e.Code != 413 || !strings.Contains(e.Message, "--max-subscriptions") {
		t.Fatalf("%+v", e)
	}
	r.send(wire.CounterSync{Name: "s3", State: st(map[string]int64{"a": 1}, nil)})
	expect[wire.Error](r)
	r.send(wire.CounterRequest{Name: "s1"}) // already subscribed: fine
	expect[wire.CounterResponse](r)
}

func TestLimitLocksPerConnection(t *testing.T) {
	eachLockMode(t, func(t *testing.T, mode lockMode) {
		url, _ := start(t, mode(t, Config{MaxLocks: 2}))
		r, other := dial(t, url), dial(t, url)
		other.send(wire.LockRequest{RequestID: "o", Name: "busy", TTL: u64(60000)})
		expect[wire.LockGranted](other)
		r.send(wire.LockRequest{RequestID: "1", Name: "l1", TTL: u64(60000)})
		expect[wire.LockGranted](r)
		r.send(wire.LockRequest{RequestID: "2", Name: "busy", TTL: u64(60000), Wait: 60000}) // queued
		r.roundTrip()
		r.send(wire.LockRequest{RequestID: "3", Name: "l3", TTL: u64(60000)})
		if d := expect[wire.LockReleased](r); d.Reason != wire.ReasonTooMany || d.RequestID != "3" {
			t.Fatalf("%+v, want too_many", d)
		}
		r.send(wire.LockRequest{RequestID: "4", Name: "l1", TTL: u64(60000)}) // renewal of a held lock
		if g := expect[wire.LockGranted](r); g.RequestID != "4" {
			t.Fatalf("%+v", g)
		}
	})
}

// TestLimitOutbox: a connection that never reads, asking again and again
// for a large counter, holds at most --max-outbox (plus the frame that
// crossed it) in the server: the server stops reading it.
func TestLimitOutbox(t *testing.T) {
	t.Parallel()
	const limit = 256 << 10
	url, srv := start(t, Config{MaxOutbox: limit, MaxSyncNodes: 10000})
	manyWriters(t, url, "big", 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	req, _ := wire.Encode(wire.CounterRequest{Name: "big"})
	sent := make(chan int, 1)
	go func() { // never reads; stops when the server stops reading
		n := 0
		for ; n < 2000; n++ {
			if ws.Write(ctx, websocket.MessageBinary, req) != nil {
				break
			}
		}
		sent <- n
	}()
	frame := 0
	maxQueued := 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		srv.mu.Lock()
		for c := range srv.conns {
			c.mu.Lock()
			if c.outBytes > maxQueued {
				maxQueued = c.outBytes
			}
			if len(c.out) > 0 && frame == 0 {
				frame = len(c.out[0])
			}
			c.mu.Unlock()
		}
		srv.mu.Unlock()
		if maxQueued >= limit {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if maxQueued < limit {
		t.Fatalf("the outbox never filled (%d bytes)", maxQueued)
	}
	// Give the reader every chance to read more than it should.
	time.Sleep(200 * time.Millisecond)
	srv.mu.Lock()
	for c := range srv.conns {
		c.mu.Lock()
		maxQueued = max(maxQueued, c.outBytes)
		c.mu.Unlock()
	}
	srv.mu.Unlock()
	if maxQueued > limit+frame {
		t.Fatalf("outbox reached %d bytes, over the limit %d plus one %d-byte frame", maxQueued, limit, frame)
	}
	ws.CloseNow()
	t.Logf("outbox peaked at %d bytes (limit %d, frame %d); the client sent %d requests", maxQueued, limit, frame, <-sent)
}
