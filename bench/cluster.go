package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/locks/etcdlocks"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/server/storage/etcdstore"
	"github.com/topgun-go/topgun/sync/wire"
)

// singleNode holds the single-node figures the cluster figures are compared
// with, measured earlier in the same run on the same machine.
type singleNode struct {
	lock   []time.Duration
	merges float64
	update []time.Duration
}

// clusterNode is one in-process server node on etcd.
type clusterNode struct {
	srv *server.Server
	cli *clientv3.Client
	url string
}

func startClusterNode(eps []string) *clusterNode {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	st, err := etcdstore.New(cli, "/topgun")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Store: st, NoAuth: true, Locks: etcdlocks.Backend(cli, etcdlocks.Config{}),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit: 1e9, RateBurst: 1 << 30,
	})
	if err != nil {
		log.Fatal(err)
	}
	return &clusterNode{srv: srv, cli: cli, url: serve(srv)}
}

func (n *clusterNode) close() {
	n.srv.Close()
	n.cli.Close()
}

// updateLatency measures, n times in sequence, the time from a
// COUNTER_SYNC sent by writer to the COUNTER_UPDATE carrying it at
// reader (a subscriber).
func updateLatency(writer, reader *client, name string, n int) []time.Duration {
	reader.send(wire.CounterRequest{Name: name})
	if _, ok := reader.await().(wire.CounterResponse); !ok {
		log.Fatal("bench: no COUNTER_RESPONSE")
	}
	var out []time.Duration
	for i := 1; i <= n+n/10; i++ {
		v := int64(i)
		t0 := time.Now()
		writer.send(wire.CounterSync{Name: name, State: crdt.State{P: map[string]int64{"lat-writer": v}, N: map[string]int64{}}})
		for {
			m, ok := <-reader.replies
			if !ok {
				log.Fatal("bench: reader closed")
			}
			if u, ok := m.(wire.CounterUpdate); ok && u.Name == name && u.State.P["lat-writer"] >= v {
				break
			}
		}
		d := time.Since(t0)
		if _, ok := (<-writer.replies).(wire.CounterUpdate); !ok { // the writer's own reply
			log.Fatal("bench: no reply to COUNTER_SYNC")
		}
		if i > n/10 {
			out = append(out, d)
		}
	}
	return out
}

// leaderKill kills the etcd leader while clients of both nodes keep
// acquiring and releasing one lock, and returns the time from the kill
// to the first grant of a request sent after it (a request already in
// flight may still be granted by the old leader). The member is restarted
// afterwards.
func leaderKill(ec *etcdtest.Cluster, nodes []*clusterNode) time.Duration {
	var (
		mu     sync.Mutex
		grants []grant
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for i := range 8 {
		c, err := dial(nodes[i%2].url)
		if err != nil {
			log.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.ws.CloseNow()
			ttl := uint64(30000)
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent := time.Now()
				c.send(wire.LockRequest{RequestID: "k", Name: "leader-kill", TTL: &ttl, Wait: 5000})
				g, ok := c.await().(wire.LockGranted)
				if !ok {
					time.Sleep(10 * time.Millisecond) // unavailable during the election
					continue
				}
				mu.Lock()
				grants = append(grants, grant{sent: sent, at: time.Now()})
				mu.Unlock()
				c.send(wire.LockRelease{RequestID: "r", Name: g.Name, FencingToken: g.FencingToken})
				c.await()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(grants) }
	for count() < 50 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, err := ec.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	before := count()
	killed := time.Now()
	ec.Kill(leader)
	var first time.Time
	for first.IsZero() {
		if time.Since(killed) > time.Minute {
			log.Fatal("bench: no lock grant within a minute of the leader kill")
		}
		time.Sleep(time.Millisecond)
		mu.Lock()
		for _, g := range grants[before:] {
			if g.sent.After(killed) {
				first = g.at
				break
			}
		}
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	if err := ec.Restart(ctx, leader); err != nil {
		log.Fatal(err)
	}
	return first.Sub(killed)
}

type grant struct{ sent, at time.Time }

// clusterBench measures cluster mode: 3 etcd members, 2 server nodes in
// this process, the clients split over both.
func clusterBench(rep *report, dir string, base singleNode) {
	ec, err := etcdtest.Start(context.Background(), 3, filepath.Join(dir, "etcd"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ec.Stop()
	nodes := []*clusterNode{startClusterNode(ec.Endpoints()), startClusterNode(ec.Endpoints())}

	cs := make([]*client, *clients)
	for i := range cs {
		if cs[i], err = dial(nodes[i%2].url); err != nil {
			log.Fatal(err)
		}
	}
	log.Print("cluster: lock round trips")
	lock, _ := lockRoundTrips(cs, *rounds/5)
	log.Print("cluster: merges")
	merges := throughput(cs, *duration, func(i int, seq uint64) wire.Message {
		node := fmt.Sprintf("bench-node-%d", i)
		return wire.CounterSync{Name: fmt.Sprintf("own-%d", i), State: crdt.State{P: map[string]int64{node: int64(seq)}, N: map[string]int64{}}}
	})
	for _, c := range cs {
		c.ws.CloseNow()
	}
	w, err := dial(nodes[0].url)
	if err != nil {
		log.Fatal(err)
	}
	r, err := dial(nodes[1].url)
	if err != nil {
		log.Fatal(err)
	}
	log.Print("cluster: update latency")
	update := updateLatency(w, r, "latency", 1000)
	w.ws.CloseNow()
	r.ws.CloseNow()

	var kills []time.Duration
	for i := range 3 {
		log.Printf("cluster: leader kill %d", i+1)
		kills = append(kills, leaderKill(ec, nodes))
	}
	for _, n := range nodes {
		n.close()
	}
	rep.cluster(base, lock, merges, update, kills)
}

// singleUpdateLatency is updateLatency on one single-node server.
func singleUpdateLatency(url string) []time.Duration {
	w, err := dial(url)
	if err != nil {
		log.Fatal(err)
	}
	r, err := dial(url)
	if err != nil {
		log.Fatal(err)
	}
	defer w.ws.CloseNow()
	defer r.ws.CloseNow()
	return updateLatency(w, r, "latency", 1000)
}

func (r *report) cluster(base singleNode, lock []time.Duration, merges float64, update, kills []time.Duration) {
	r.p("## Cluster mode: 3 etcd members, 2 server nodes, clients split over both\n\n")
	r.p("Debian's etcd 3.4.23 on 127.0.0.1 (default heartbeat 100 ms, election timeout 1 s, fsync on), two\n")
	r.p("server nodes in this process, each with its own etcd client; the single-node figures are the bbolt\n")
	r.p("runs above, same machine, same run. Lock request timeout 2 s (etcdlocks.Config.RequestTimeout).\n\n")
	r.p("| | single node (bbolt) | cluster (etcd) | ratio cluster / single |\n|---|---|---|---|\n")
	r.p("| lock acquire+release p50 (%d / %d rounds) | %s | %s | %.1f× |\n", len(base.lock), len(lock), ms(pct(base.lock, 0.5)), ms(pct(lock, 0.5)), float64(pct(lock, 0.5))/float64(pct(base.lock, 0.5)))
	r.p("| lock acquire+release p99 | %s | %s | %.1f× |\n", ms(pct(base.lock, 0.99)), ms(pct(lock, 0.99)), float64(pct(lock, 0.99))/float64(pct(base.lock, 0.99)))
	r.p("| COUNTER_SYNC merges/s, one counter per client, %d clients | %.0f | %.0f | %.2f× |\n", *clients, base.merges, merges, merges/base.merges)
	r.p("| write → COUNTER_UPDATE at another subscriber, p50 | %s | %s | %.1f× |\n", ms(pct(base.update, 0.5)), ms(pct(update, 0.5)), float64(pct(update, 0.5))/float64(pct(base.update, 0.5)))
	r.p("| write → COUNTER_UPDATE at another subscriber, p99 | %s | %s | %.1f× |\n\n", ms(pct(base.update, 0.99)), ms(pct(update, 0.99)), float64(pct(update, 0.99))/float64(pct(base.update, 0.99)))
	r.p("In cluster mode the writer is a client of node 1 and the subscriber a client of node 2: the change goes\n")
	r.p("node 1 → etcd (one transaction, committed by the quorum) → node 2's watch → the subscriber. Single node: both\n")
	r.p("clients on one server.\n\n")
	r.p("### etcd leader killed (SIGKILL) while 8 clients over both nodes take turns on one lock\n\n")
	r.p("Time from the kill to the first grant of a lock request sent after it.\n\n")
	r.p("| trial | kill → next lock grant |\n|---|---|\n")
	for i, k := range kills {
		r.p("| %d | %s |\n", i+1, ms(k))
	}
	bound := 2*etcdtest.ElectionMS*time.Millisecond + 2*time.Second
	worst := kills[0]
	for _, k := range kills {
		worst = max(worst, k)
	}
	r.p("\nDocumented bound (docs/deployment.md): election (≤ 2 × election timeout = %v here) + one lock request\n", 2*etcdtest.ElectionMS*time.Millisecond)
	r.p("timeout (2 s) = %v. Worst trial: %s — %s.\n", bound, ms(worst), map[bool]string{true: "within the bound", false: "ABOVE the bound"}[worst <= bound])
}

var _ storage.CounterWatcher = (*etcdstore.Store)(nil)
