// Command bench measures the server and writes bench/RESULTS.md.
//
// Every figure is measured in this run next to a baseline measured the same
// way in the same run, and reported as a ratio to it:
//
//   - lock acquire+release round trip (p50/p99) with 200 connected clients,
//     against two PING/PONG round trips on the same connections (the same
//     number of network round trips, no lock work);
//   - COUNTER_SYNC merges per second (each one changes the state, is
//     persisted durably and acknowledged) with 200 clients pipelining,
//     against PING/PONG frames per second with the same clients and window;
//   - durable store writes per second from 200 writers, bbolt with the tuned
//     db.Batch against one fsync per write (MaxBatchSize 1);
//   - fan-out from one writer to S = 100 … 10,000 subscribers of one
//     counter: write→seen p50/p99 against PING round trips, frames and
//     server CPU per delivered update (server and subscribers in child
//     processes: bench/fanout.go);
//   - cluster mode (3 etcd members, 2 server nodes): lock round trips,
//     merges/s and write-to-update latency against the single-node figures,
//     and the time from an etcd leader kill to the next lock grant.
//
// The server runs in this process on 127.0.0.1 with the bbolt store in a
// temporary directory, as in production; the load generator shares the
// machine's cores with it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/bench/resultsmd"
	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage/boltstore"
	"github.com/topgun-go/topgun/sync/wire"
)

var (
	out      = flag.String("out", "", "write the results as Markdown to this file")
	cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the counter runs to this file")
	clients  = flag.Int("clients", 200, "connected clients")
	rounds   = flag.Int("rounds", 5000, "sequential lock round trips")
	duration = flag.Duration("duration", 5*time.Second, "length of each throughput run")
	window   = flag.Int("window", 32, "frames in flight per client in throughput runs")
	only     = flag.String("only", "", `run one section only ("merges": locks and merges over WebSocket, "views", "fanout", "idle" or "bounded"), printing it`)
)

func main() {
	if childMain() {
		return
	}
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "topgun-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var rep report
	rep.header()
	switch *only {
	case "views":
		viewsBench(&rep)
		fmt.Print(rep.String())
		return
	case "fanout":
		fanoutBench(&rep, dir)
		fmt.Print(rep.String())
		return
	case "idle":
		idleBench(&rep, dir)
		fmt.Print(rep.String())
		return
	case "bounded":
		boundedBench(&rep, dir)
		fmt.Print(rep.String())
		return
	case "", "merges":
	default:
		log.Fatalf("bench: -only %q: want merges, views, fanout, idle or bounded", *only)
	}

	store, err := boltstore.Open(filepath.Join(dir, "server.db"), boltstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Store: store, NoAuth: true,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit: 1e9, RateBurst: 1 << 30, // measure the server, not the limiter
	})
	if err != nil {
		log.Fatal(err)
	}
	url := serve(srv)

	cs := make([]*client, *clients)
	for i := range cs {
		if cs[i], err = dial(url); err != nil {
			log.Fatal(err)
		}
	}

	lockLat, pingLat := lockRoundTrips(cs, *rounds)
	rep.locks(lockLat, pingLat)

	pings := throughput(cs, *duration, func(i int, seq uint64) wire.Message {
		return wire.Ping{Timestamp: seq}
	})
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	// Names are made once, so that the load generator's cost per frame is
	// about the same as for the PINGs (the frame is encoded per send).
	nodes, names := make([]string, len(cs)), make([]string, len(cs))
	for i := range cs {
		nodes[i], names[i] = fmt.Sprintf("bench-node-%d", i), fmt.Sprintf("own-%d", i)
	}
	own := throughput(cs, *duration, func(i int, seq uint64) wire.Message {
		return wire.CounterSync{Name: names[i], State: crdt.State{P: map[string]int64{nodes[i]: int64(seq)}}}
	})
	shared := throughput(cs, *duration, func(i int, seq uint64) wire.Message {
		return wire.CounterSync{Name: "shared", State: crdt.State{P: map[string]int64{nodes[i]: int64(seq)}}}
	})
	pprof.StopCPUProfile()
	rep.merges(pings, own, shared)
	if *only == "merges" {
		fmt.Print(rep.String())
		return
	}
	rep.mergePath(serverPath())

	for _, c := range cs {
		c.ws.CloseNow()
	}
	base := singleNode{lock: lockLat, merges: own, update: singleUpdateLatency(url)}
	srv.Close()
	store.Close()

	batched := storeWrites(filepath.Join(dir, "batched.db"), boltstore.Options{}, *duration)
	single := storeWrites(filepath.Join(dir, "single.db"), boltstore.Options{MaxBatchSize: 1, MaxBatchDelay: time.Microsecond}, *duration)
	rep.store(batched, single)

	viewsBench(&rep)
	boundedBench(&rep, dir)
	fanoutBench(&rep, dir)
	idleBench(&rep, dir)
	clusterBench(&rep, dir, base)

	fmt.Print(rep.String())
	if *out != "" {
		doc := rep.String()
		// The chaos harness's figures come from make chaos-results: kept.
		if old, err := os.ReadFile(*out); err == nil {
			if sec := resultsmd.Section(string(old), resultsmd.ChaosHeading); sec != "" {
				doc = resultsmd.Splice(doc, resultsmd.ChaosHeading, sec)
			}
		}
		if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintln(os.Stderr, "wrote", *out)
	}
}

// serve serves srv on a free 127.0.0.1 port and returns its ws URL.
func serve(srv *server.Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	return "ws://" + ln.Addr().String() + "/ws"
}

// client is a raw protocol connection for the load generator.
type client struct {
	ws      *websocket.Conn
	replies chan wire.Message
}

func dial(url string) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(4 << 20)
	c := &client{ws: ws, replies: make(chan wire.Message, 4096)}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				close(c.replies)
				return
			}
			m, err := wire.Decode(b)
			if err != nil {
				log.Fatalf("bench: bad frame from server: %v", err)
			}
			c.replies <- m
		}
	}()
	return c, nil
}

func (c *client) send(m wire.Message) {
	b, err := wire.Encode(m)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		log.Fatal(err)
	}
}

// await returns the next reply that is not a COUNTER_UPDATE broadcast.
func (c *client) await() wire.Message {
	for m := range c.replies {
		if _, ok := m.(wire.CounterUpdate); ok {
			continue
		}
		return m
	}
	log.Fatal("bench: connection closed")
	return nil
}

// lockRoundTrips measures n sequential acquire+release round trips spread
// over the clients, and as many pairs of PING round trips.
func lockRoundTrips(cs []*client, n int) (lock, ping []time.Duration) {
	ttl := uint64(10000)
	for i := 0; i < n+n/10; i++ { // the first tenth warms up
		c := cs[i%len(cs)]
		t0 := time.Now()
		c.send(wire.LockRequest{RequestID: "a", Name: fmt.Sprintf("lock-%d", i%len(cs)), TTL: &ttl})
		g, ok := c.await().(wire.LockGranted)
		if !ok {
			log.Fatal("bench: lock not granted")
		}
		c.send(wire.LockRelease{RequestID: "r", Name: g.Name, FencingToken: g.FencingToken})
		if r, ok := c.await().(wire.LockReleased); !ok || !r.Success {
			log.Fatal("bench: release failed")
		}
		d := time.Since(t0)

		c = cs[(i+len(cs)/2)%len(cs)]
		t1 := time.Now()
		c.send(wire.Ping{Timestamp: 1})
		c.await()
		c.send(wire.Ping{Timestamp: 2})
		c.await()
		p := time.Since(t1)
		if i >= n/10 {
			lock = append(lock, d)
			ping = append(ping, p)
		}
	}
	return lock, ping
}

// throughput runs every client with up to *window frames in flight for d
// and returns acknowledged frames per second.
func throughput(cs []*client, d time.Duration, msg func(i int, seq uint64) wire.Message) float64 {
	var acked atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			credit := make(chan struct{}, *window)
			done := make(chan struct{})
			sent := 0
			go func() {
				defer close(done)
				for m := range c.replies {
					switch m.(type) {
					case wire.Pong:
					case wire.CounterUpdate:
						// Replies and broadcasts share the type; count
						// replies by credit returned below.
					case wire.Error:
						log.Fatalf("bench: server error %+v", m)
					default:
						continue
					}
					select {
					case <-credit:
						acked.Add(1)
					default: // a broadcast beyond our own replies
					}
					if stop.Load() && len(credit) == 0 {
						return
					}
				}
			}()
			var seq uint64
			for !stop.Load() {
				credit <- struct{}{}
				seq++
				c.send(msg(i, seq))
				sent++
			}
			<-done
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	elapsed := time.Since(start)
	n := acked.Load()
	wg.Wait()
	return float64(n) / elapsed.Seconds()
}

// serverPath runs the server package's in-process benchmarks (the merge
// path without sockets) and returns replies/s by benchmark name.
func serverPath() map[string]float64 {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkServer", "-benchtime", "1000000x", "./server")
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		log.Fatalf("bench: go test -bench ./server: %v\n%s", err, b)
	}
	res := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.HasPrefix(f[0], "BenchmarkServer") && f[len(f)-1] == "replies/s" {
			var v float64
			fmt.Sscan(f[len(f)-2], &v)
			res[strings.SplitN(strings.TrimPrefix(f[0], "Benchmark"), "-", 2)[0]] = v
		}
	}
	for _, k := range []string{"ServerPing", "ServerMerge", "ServerMergeShared"} {
		if res[k] == 0 {
			log.Fatalf("bench: no result for %s in:\n%s", k, b)
		}
	}
	return res
}

// storeWrites runs 200 writers against a fresh store for d.
func storeWrites(path string, opts boltstore.Options, d time.Duration) float64 {
	s, err := boltstore.Open(path, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 200; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("n%d", w)
			for v := int64(1); !stop.Load(); v++ {
				st := crdt.State{P: map[string]int64{node: v}, N: map[string]int64{}}
				if err := s.MergeCounter(context.Background(), fmt.Sprintf("c%d", w%20), st); err != nil {
					log.Fatal(err)
				}
				n.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

type report struct{ b strings.Builder }

func (r *report) String() string { return r.b.String() }

func (r *report) p(format string, args ...any) { fmt.Fprintf(&r.b, format, args...) }

func (r *report) header() {
	goVersion := runtime.Version()
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	rev := "unknown"
	if b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		rev = strings.TrimSpace(string(b))
	}
	r.p("# Benchmark results\n\n")
	r.p("Produced by `make bench` (`go run ./bench -out bench/RESULTS.md`, then `node bench/browser.mjs`) on %s at commit %s.\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), rev)
	r.p("Machine: %d CPUs (%s), %s/%s, %s. Server in-process on 127.0.0.1 with the bbolt store\n", runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, goVersion)
	r.p("(durable: every acknowledged write is fsync'd); the load generator shares the same cores.\n")
	r.p("Every figure has a baseline measured the same way in the same run.\n\n")
}

func pct(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (r *report) locks(lock, ping []time.Duration) {
	l50, l99 := pct(lock, 0.5), pct(lock, 0.99)
	p50, p99 := pct(ping, 0.5), pct(ping, 0.99)
	r.p("## Lock acquire+release round trip, %d connected clients, %d sequential rounds\n\n", *clients, len(lock))
	r.p("| | p50 | p99 |\n|---|---|---|\n")
	r.p("| LOCK_REQUEST→GRANTED + LOCK_RELEASE→RELEASED | %s | %s |\n", ms(l50), ms(l99))
	r.p("| baseline: PING→PONG twice (same round trips, no lock work) | %s | %s |\n", ms(p50), ms(p99))
	r.p("| ratio lock / baseline | %.2f× | %.2f× |\n\n", float64(l50)/float64(p50), float64(l99)/float64(p99))
	r.p("Target p50 ≤ 0.3 ms: %s. Target p99 ≤ 2 ms: %s. Target: lock round trips at ≥ 0.8× the rate of two PING\n", verdict(l50 <= 300*time.Microsecond), verdict(l99 <= 2*time.Millisecond))
	r.p("round trips (baseline p50 / lock p50 = %.2f×): %s.\n\n", float64(p50)/float64(l50), verdict(float64(p50)/float64(l50) >= 0.8))
}

func (r *report) merges(pings, own, shared float64) {
	r.p("## COUNTER_SYNC merges per second, %d clients, %d frames in flight each, %v per run\n\n", *clients, *window, *duration)
	r.p("Each COUNTER_SYNC raises the sender's entry, is merged, persisted durably and acknowledged.\n\n")
	r.p("| run | acknowledged/s | ratio to baseline |\n|---|---|---|\n")
	r.p("| baseline: PING→PONG | %.0f | 1.00× |\n", pings)
	r.p("| COUNTER_SYNC, one counter per client | %.0f | %.2f× |\n", own, own/pings)
	r.p("| COUNTER_SYNC, all clients on one counter (199 subscribers get each change) | %.0f | %.2f× |\n\n", shared, shared/pings)
	best := max(own, shared)
	r.p("Target: pipelined COUNTER_SYNC merges on the clients' own counters at ≥ 0.8× pipelined PINGs: %s (%.2f×).\n", verdict(own/pings >= 0.8), own/pings)
	r.p("On one shared counter each change also goes to the 199 other clients, which the baseline does not do.\n")
	r.p("Target ≥ 200k merges/s end to end: %s (best %.0f/s). Over WebSocket with one frame per merge the\n", verdict(best >= 200000), best)
	r.p("PING baseline itself bounds what this machine can carry.\n\n")
}

func (r *report) mergePath(res map[string]float64) {
	ping := res["ServerPing"]
	r.p("### The same without the network\n\n")
	r.p("`go test -run '^$' -bench '^BenchmarkServer' -benchtime 1000000x ./server`: 200 connections without sockets\n")
	r.p("(frames enter the connection's handler, replies are taken from its queue), 32 in flight each, durable bbolt\n")
	r.p("store. This is the server's own cost per frame: decode, merge, group-committed write, encode.\n\n")
	r.p("| run | replies/s | ratio to baseline |\n|---|---|---|\n")
	r.p("| baseline: PING→PONG | %.0f | 1.00× |\n", ping)
	r.p("| COUNTER_SYNC, one counter per connection | %.0f | %.2f× |\n", res["ServerMerge"], res["ServerMerge"]/ping)
	r.p("| COUNTER_SYNC, all connections on one counter | %.0f | %.2f× |\n\n", res["ServerMergeShared"], res["ServerMergeShared"]/ping)
	best := max(res["ServerMerge"], res["ServerMergeShared"])
	r.p("Target ≥ 200k merges/s on the server's merge path: %s (best %.0f/s).\n\n", verdict(best >= 200000), best)
}

func (r *report) store(batched, single float64) {
	r.p("## Durable store writes per second, 200 writers (bbolt, fsync per commit)\n\n")
	r.p("| store | writes/s | ratio |\n|---|---|---|\n")
	r.p("| baseline: one fsync per write (MaxBatchSize 1) | %.0f | 1.00× |\n", single)
	r.p("| tuned db.Batch (defaults: MaxBatchSize 1000, MaxBatchDelay 1 ms) | %.0f | %.2f× |\n", batched, batched/single)
}
