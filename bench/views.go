package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"time"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

// rawConn reads frames as bytes, for measuring what the server sends.
type rawConn struct{ ws *websocket.Conn }

func dialRaw(url string) *rawConn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	ws.SetReadLimit(64 << 20) // a legacy full state may be huge
	return &rawConn{ws}
}

func (c *rawConn) send(m wire.Message) {
	b, err := wire.Encode(m)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		log.Fatal(err)
	}
}

// next returns the next frame and its decoded message.
func (c *rawConn) next() ([]byte, wire.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		log.Fatalf("bench views: read: %v", err)
	}
	m, err := wire.Decode(b)
	if err != nil && len(b) <= wire.MaxFrameSize {
		log.Fatalf("bench views: decode: %v", err)
	}
	return b, m
}

// viewsRow is one W of the compact-views figures.
type viewsRow struct {
	w                   int
	compact, legacy     int    // bytes of the response to a fresh client
	legacyNote          string // what a legacy client got instead, if not a state
	update, legacyDelta int    // bytes per update after one more write
	merge, ping         time.Duration
	memPerWriter        float64
}

// viewsBench measures compact counter views against full states at W
// writers: bytes to a fresh client, bytes per update, server time per
// merge (each a ratio to a PING round trip in the same run) and server
// memory per writer.
func viewsBench(rep *report) {
	var rows []viewsRow
	for _, w := range []int{10, 1000, 100000, 1000000} {
		rows = append(rows, viewsAt(w))
	}
	rep.p("## Compact counter views: a counter with W writers\n\n")
	rep.p("Writers' entries are loaded through SYNC frames of 10,000 node ids (in-memory store); then a fresh client that\n")
	rep.p("negotiated compact views and a fresh legacy client (full states, as TopGun's clients get) request the counter,\n")
	rep.p("another writer writes once, and one writer's single-entry COUNTER_SYNC is timed over 2,000 sequential round trips\n")
	rep.p("against 2,000 PING round trips on the same connection. Memory: heap growth after GC while loading, per writer.\n\n")
	rep.p("| W | fresh compact client | fresh legacy client | ratio | update, compact / legacy | merge round trip | PING round trip | ratio | heap per writer |\n")
	rep.p("|---|---|---|---|---|---|---|---|---|\n")
	worst := 0
	for _, r := range rows {
		legacy := fmt.Sprintf("%d B", r.legacy)
		ratio := fmt.Sprintf("%.4f×", float64(r.compact)/float64(r.legacy))
		if r.legacyNote != "" {
			legacy, ratio = r.legacyNote, "—"
		}
		rep.p("| %d | %d B | %s | %s | %d B / %d B | %s | %s | %.2f× | %.0f B |\n", r.w, r.compact, legacy, ratio,
			r.update, r.legacyDelta, ms(r.merge), ms(r.ping), float64(r.merge)/float64(r.ping), r.memPerWriter)
		worst = max(worst, r.compact, r.update)
	}
	rep.p("\nTarget ≤ 256 B to a fresh compact client at every W: %s (largest %d B). Merge time against W: flat when\n", verdict(worst <= 256), worst)
	rep.p("the merge-to-PING ratio does not grow with W.\n\n")
}

func viewsAt(w int) viewsRow {
	st := storage.NewMemory()
	defer st.Close()
	srv, err := server.New(server.Config{
		Store: st, NoAuth: true, MaxSyncNodes: 10000,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit: 1e9, RateBurst: 1 << 30,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	url := serve(srv)
	name := fmt.Sprintf("views-%d", w)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	loader := dialRaw(url)
	for lo := 0; lo < w; lo += 10000 {
		s := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
		for i := lo; i < min(lo+10000, w); i++ {
			s.P[fmt.Sprintf("writer-%07d", i)] = int64(i%1000 + 1)
		}
		loader.send(wire.CounterSync{Name: name, State: s})
		loader.next()
	}
	loader.ws.CloseNow() // no full-state subscriber left behind
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	row := viewsRow{w: w, memPerWriter: float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(w)}

	compact := dialRaw(url)
	compact.send(wire.DeviceHello{NodeID: "bench-reader", Views: wire.ViewsCompact})
	compact.next()
	compact.send(wire.CounterRequest{Name: name})
	b, _ := compact.next()
	row.compact = len(b)

	legacy := dialRaw(url)
	legacy.send(wire.CounterRequest{Name: name})
	b, m := legacy.next()
	row.legacy = len(b)
	if e, ok := m.(wire.Error); ok {
		row.legacyNote = fmt.Sprintf("ERROR %d (full state over 2 MiB)", e.Code)
	}

	writer := dialRaw(url)
	writer.send(wire.DeviceHello{NodeID: "bench-writer", Views: wire.ViewsCompact})
	writer.next()
	writer.send(wire.CounterSync{Name: name, State: crdt.State{P: map[string]int64{"bench-writer": 1}, N: map[string]int64{}}})
	writer.next()
	b, _ = compact.next()
	row.update = len(b)
	b, _ = legacy.next()
	row.legacyDelta = len(b)

	const n = 2000
	t0 := time.Now()
	for i := 0; i < n; i++ {
		writer.send(wire.Ping{Timestamp: uint64(i)})
		writer.next()
	}
	row.ping = time.Since(t0) / n
	t0 = time.Now()
	for i := 0; i < n; i++ {
		writer.send(wire.CounterSync{Name: name, State: crdt.State{P: map[string]int64{"bench-writer": int64(i + 2)}, N: map[string]int64{}}})
		writer.next()
	}
	row.merge = time.Since(t0) / n
	for _, c := range []*rawConn{compact, legacy, writer} {
		c.ws.CloseNow()
	}
	return row
}
