package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
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
		cs[i].hold = true // no writer: drain takes the replies
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

// BenchmarkFanout: one writer and S subscribers of its counter that
// negotiated compact views, without sockets (each subscriber's writer
// runs, and its socket write is replaced by a counter). One op is one
// COUNTER_SYNC of the writer, merged, stored (in-memory store: the fan-out,
// not the fsync) and delivered to every subscriber before the next one.
// It reports the process CPU time (user+system) per delivered update
// (cpu-ns/update), the same per PONG delivered when each subscriber
// answers a PING (cpu-ns/pong, the baseline: one frame in, one out, no
// state), and wall time per delivered update.
func BenchmarkFanout(b *testing.B) {
	for _, s := range []int{100, 1000, 5000, 10000} {
		b.Run(fmt.Sprintf("S=%d", s), func(b *testing.B) { fanout(b, s) })
	}
}

func fanout(b *testing.B, subs int) {
	st := storage.NewMemory()
	b.Cleanup(func() { st.Close() })
	srv, err := New(Config{Store: st, NoAuth: true, Logger: quietLogger(), RateLimit: 1e12, RateBurst: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	var delivered, target atomic.Int64
	reached := make(chan struct{}, 1)
	hook := func([]byte) error {
		if delivered.Add(1) == target.Load() {
			reached <- struct{}{}
		}
		return nil
	}
	// await waits until n more frames were delivered.
	await := func(n int64, send func()) {
		target.Store(delivered.Load() + n)
		send()
		select {
		case <-reached:
		case <-time.After(time.Minute):
			b.Fatalf("delivered %d of %d frames", delivered.Load(), target.Load())
		}
	}
	frame := func(m wire.Message) []byte {
		f, err := wire.Encode(m)
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	const name = "fanout"
	cs := make([]*conn, subs)
	await(int64(2*subs), func() { // DEVICE_ACK and COUNTER_RESPONSE each
		for i := range cs {
			c := newConn(srv, nil, uint64(i+1))
			c.writeFrame = hook
			c.pooled = true // written by the writer pool, as connections on sockets are
			b.Cleanup(func() { srv.counters.unsubscribeAll(c); c.cancel(); <-c.wrote })
			c.handleFrame(frame(wire.DeviceHello{NodeID: fmt.Sprintf("sub-%d", i), Views: wire.ViewsCompact}), true)
			c.handleFrame(frame(wire.CounterRequest{Name: name}), true)
			cs[i] = c
		}
	})
	w := newConn(srv, nil, uint64(subs+1))
	w.writeFrame = func([]byte) error { return nil }
	b.Cleanup(func() { srv.counters.unsubscribeAll(w); w.cancel(); <-w.wrote })
	syncs := syncFrames(b, func(int) string { return name })
	ping := frame(wire.Ping{Timestamp: 1})

	b.ResetTimer()
	cpu0, t0 := cpuTime(b), time.Now()
	for i := 0; i < b.N; i++ {
		await(int64(subs), func() { w.handleFrame(syncs(0, int64(i+1)), true) })
	}
	cpu1, t1 := cpuTime(b), time.Now()
	rounds := max(1, b.N/4)
	for range rounds {
		await(int64(subs), func() {
			for _, c := range cs {
				c.handleFrame(ping, true)
			}
		})
	}
	cpu2 := cpuTime(b)
	b.StopTimer()
	updates := float64(b.N) * float64(subs)
	b.ReportMetric(float64(cpu1-cpu0)/updates, "cpu-ns/update")
	b.ReportMetric(float64(cpu2-cpu1)/float64(rounds*subs), "cpu-ns/pong")
	b.ReportMetric(float64(t1.Sub(t0))/updates, "ns/update")
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
