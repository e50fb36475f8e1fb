package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage/boltstore"
	"github.com/topgun-go/topgun/sync/wire"
)

// benchConns returns a server on a durable bbolt store and n connections
// without sockets: frames go in through handleFrame, replies are taken
// from the connection's queue. It measures the server's own work per frame
// (decode, merge, durable write, encode) without the network.
func benchConns(b *testing.B, n int) (*Server, []*conn) {
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	srv, err := New(Config{Store: store, NoAuth: true, Logger: quietLogger(), RateLimit: 1e12, RateBurst: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	cs := make([]*conn, n)
	for i := range cs {
		cs[i] = newConn(srv, nil, uint64(i+1))
		b.Cleanup(cs[i].cancel)
	}
	return srv, cs
}

// drain takes queued frames off c and returns how many there were.
func drain(c *conn) int {
	c.mu.Lock()
	n := len(c.out)
	clear(c.out)
	c.out = c.out[:0]
	clear(c.updates)
	c.order = c.order[:0]
	c.mu.Unlock()
	return n
}

// runPath drives 200 connections, each with `window` frames in flight,
// and reports replies per second.
func runPath(b *testing.B, frame func(i int, seq int64) []byte) {
	const clients, window = 200, 32
	_, cs := benchConns(b, clients)
	var replies atomic.Int64
	per := b.N/clients + 1
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, sent := 0, 0
			for got < per {
				for sent < per && sent-got < window {
					sent++
					c.handleFrame(frame(i, int64(sent)), true)
				}
				n := drain(c)
				if n == 0 {
					time.Sleep(20 * time.Microsecond)
				}
				got += n
			}
			replies.Add(int64(got))
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(replies.Load())/time.Since(start).Seconds(), "replies/s")
}

// BenchmarkServerPing is the baseline of BenchmarkServerMerge: the same
// frame loop with PING, which the server answers without any state.
func BenchmarkServerPing(b *testing.B) {
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i], _ = wire.Encode(wire.Ping{Timestamp: uint64(i)})
	}
	runPath(b, func(i int, seq int64) []byte { return frames[seq%64] })
}

// BenchmarkServerMerge: COUNTER_SYNCs that each raise the sender's entry,
// merged, stored durably and acknowledged; one counter per connection.
func BenchmarkServerMerge(b *testing.B) {
	runPath(b, syncFrames(b, func(i int) string { return fmt.Sprintf("c%d", i) }))
}

// BenchmarkServerMergeShared: the same with every connection on one
// counter, so each stored change is forwarded to 199 subscribers.
func BenchmarkServerMergeShared(b *testing.B) {
	runPath(b, syncFrames(b, func(int) string { return "shared" }))
}

// syncFrames returns a frame builder for COUNTER_SYNC{name(i), p[node-i] =
// seq}. It encodes one template per connection and patches the float64
// entry, so the client side of the benchmark costs next to nothing.
func syncFrames(b *testing.B, name func(i int) string) func(i int, seq int64) []byte {
	const clients = 200
	type tmpl struct {
		frame []byte
		at    int
	}
	ts := make([]tmpl, clients)
	marker := binary.BigEndian.AppendUint64([]byte{0xcb}, math.Float64bits(12345))
	for i := range ts {
		f, err := wire.Encode(wire.CounterSync{
			Name:  name(i),
			State: crdt.State{P: map[string]int64{fmt.Sprintf("node-%d", i): 12345}, N: map[string]int64{}},
		})
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = tmpl{f, bytes.Index(f, marker) + 1}
	}
	return func(i int, seq int64) []byte {
		t := &ts[i]
		binary.BigEndian.PutUint64(t.frame[t.at:], math.Float64bits(float64(seq)))
		return t.frame
	}
}
