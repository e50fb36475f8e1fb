package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage/boltstore"
	goclient "github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store/filestore"
	"github.com/topgun-go/topgun/sync/wire"
)

// boundedFigures are the bounded-counter figures (issue 13), each with
// its baseline from the same run.
type boundedFigures struct {
	decrements, pnDecrements float64 // per second, one Go client on a file store
	later                    float64 // TryDecrementLater per second, same client
	rightsRTT, pingRTT       time.Duration
	syncBytes, viewBytes     int // a replica's own row after sales, and the view it gets back
	pnSyncBytes              int // a PN-Counter's own entries, the same sales
}

// boundedBench measures, against a server of its own (bbolt, durable): a
// Go client's sales with rights it holds (TryDecrement stores the sale
// before it returns; TryDecrementLater stores it behind) against plain
// PN-Counter decrements on the same client and store; a rights request
// round trip (BCOUNTER_RIGHTS → BCOUNTER_GRANT, stored before the answer)
// against a PING round trip on the same connection; and frame sizes.
func boundedBench(rep *report, dir string) {
	store, err := boltstore.Open(filepath.Join(dir, "bounded.db"), boltstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	srv, err := server.New(server.Config{Store: store, NoAuth: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit: 1e9, RateBurst: 1 << 30, BoundedGrantMax: 1 << 40})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	url := serve(srv)
	const n, rtts = 20000, 500
	var f boundedFigures

	fs, err := filestore.Open(filepath.Join(dir, "client", "client.db"), filestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	c, err := goclient.New(goclient.Options{URL: url, Store: fs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	b, err := c.BoundedCounter("bench:stock", 0)
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Increment(3 * n); err != nil { // the rights go to the server
		log.Fatal(err)
	}
	for b.Available() < 2*n {
		if _, err := b.RequestRights(ctx, 2*n-b.Available()); err != nil {
			log.Fatal(err)
		}
	}
	pn, err := c.Counter("bench:pn")
	if err != nil {
		log.Fatal(err)
	}
	t0 := time.Now()
	for range n {
		pn.Decrement()
	}
	f.pnDecrements = n / time.Since(t0).Seconds()
	t0 = time.Now()
	for range n {
		if !b.TryDecrement(1) {
			log.Fatal("bench bounded: TryDecrement failed with rights held")
		}
	}
	f.decrements = n / time.Since(t0).Seconds()
	t0 = time.Now()
	for range n {
		if !b.TryDecrementLater(1) {
			log.Fatal("bench bounded: TryDecrementLater failed with rights held")
		}
	}
	f.later = n / time.Since(t0).Seconds()
	if err := b.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	// Round trips on one raw connection: PING, then rights requests of 1.
	r := dialRaw(url)
	defer r.ws.CloseNow()
	r.send(wire.DeviceHello{NodeID: "bench-raw", Views: wire.ViewsCompact})
	r.next()
	r.send(wire.BCounterRequest{Name: "bench:stock", Min: 0})
	r.next()
	pings, grants := make([]time.Duration, rtts), make([]time.Duration, rtts)
	for i := range rtts {
		t := time.Now()
		r.send(wire.Ping{Timestamp: uint64(i)})
		for {
			if _, m := r.next(); m.Type() == wire.TypePong {
				break
			}
		}
		pings[i] = time.Since(t)
		t = time.Now()
		r.send(wire.BCounterRights{RequestID: fmt.Sprint(i), Name: "bench:stock", Amount: 1})
		for {
			if _, m := r.next(); m.Type() == wire.TypeBCounterGrant {
				if m.(wire.BCounterGrant).Granted != 1 {
					log.Fatal("bench bounded: the server holds no rights to grant")
				}
				break
			}
		}
		grants[i] = time.Since(t)
	}
	f.pingRTT, f.rightsRTT = pct(pings, 0.5), pct(grants, 0.5)

	// Sizes: the raw replica's own row after 1,000 sales with the rights it
	// was granted, the view it gets back, and a PN-Counter's own entries.
	row := crdt.BState{N: map[string]int64{"bench-raw": 1000}, T: map[string]map[string]int64{}}
	own, err := wire.Encode(wire.BCounterSync{Name: "bench:stock", State: row})
	if err != nil {
		log.Fatal(err)
	}
	f.syncBytes = len(own)
	r.send(wire.BCounterRights{RequestID: "sizes", Name: "bench:stock", Amount: 1000})
	for {
		if _, m := r.next(); m.Type() == wire.TypeBCounterGrant {
			break
		}
	}
	r.send(wire.BCounterSync{Name: "bench:stock", State: row})
	for {
		b, m := r.next()
		if u, ok := m.(wire.BCounterUpdate); ok && u.State.N["bench-raw"] == 1000 {
			f.viewBytes = len(b)
			break
		}
	}
	pnRow, err := wire.Encode(wire.CounterSync{Name: "bench:stock", State: crdt.State{P: map[string]int64{}, N: map[string]int64{"bench-raw": 1000}}})
	if err != nil {
		log.Fatal(err)
	}
	f.pnSyncBytes = len(pnRow)
	rep.bounded(f)
}

func (r *report) bounded(f boundedFigures) {
	r.p("## Bounded counters (one Go client, bbolt server, durable)\n\n")
	r.p("A Go client on a file store (`sync/store/filestore`) sells from a bounded counter with the rights it holds, against\n")
	r.p("PN-Counter decrements on the same client and store; round trips on one raw connection; frame sizes.\n\n")
	r.p("| | per second | ratio to PN-Counter decrements |\n|---|---|---|\n")
	r.p("| `TryDecrement(1)` (the sale is stored before it returns) | %.0f | %.3g× |\n", f.decrements, f.decrements/f.pnDecrements)
	r.p("| `TryDecrementLater(1)` (stored behind, sent once stored) | %.0f | %.2f× |\n", f.later, f.later/f.pnDecrements)
	r.p("| baseline: `Counter.Decrement()` | %.0f | 1.00× |\n\n", f.pnDecrements)
	r.p("Target ≥ 0.5× a PN-Counter decrement: %s with `TryDecrementLater` (%.2f×), %s with `TryDecrement` (%.3g×: one\n",
		verdict(f.later/f.pnDecrements >= 0.5), f.later/f.pnDecrements, verdict(f.decrements/f.pnDecrements >= 0.5), f.decrements/f.pnDecrements)
	r.p("durable file-store write per sale; the browser client always uses the write-behind path).\n\n")
	r.p("A rights request is answered once the grant is stored (a durable bbolt write), so it costs about one fsync.\n\n")
	r.p("| round trip | p50 | ratio to PING |\n|---|---|---|\n")
	r.p("| `BCOUNTER_RIGHTS` → `BCOUNTER_GRANT` (1 right, stored before the answer) | %s | %.1f× |\n", ms(f.rightsRTT), float64(f.rightsRTT)/float64(f.pingRTT))
	r.p("| baseline: PING → PONG | %s | 1.0× |\n\n", ms(f.pingRTT))
	r.p("Bytes per sync: a replica's own row after 1,000 sales (`BCOUNTER_SYNC`) %d B, the view it gets back (`BCOUNTER_UPDATE`:\n", f.syncBytes)
	r.p("its row, the server's transfers to it, everyone else summed) %d B; the same sales as a PN-Counter `COUNTER_SYNC` %d B.\n\n", f.viewBytes, f.pnSyncBytes)
}
