package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/server/storage/etcdstore"
	"github.com/topgun-go/topgun/sync/client"
)

// storedTotal reads counter name's value straight from etcd.
func storedTotal(t *testing.T, ec *etcdtest.Cluster, name string) int64 {
	t.Helper()
	st, err := etcdstore.New(ec.Client(t), "/topgun")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := st.LoadCounter(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var v int64
	for _, x := range s.P {
		v += x
	}
	for _, x := range s.N {
		v -= x
	}
	return v
}

// TestCountersConvergeAcrossNodes: clients of two nodes write one counter
// concurrently; every client and etcd reach the exact total.
func TestCountersConvergeAcrossNodes(t *testing.T) {
	ec := etcdtest.New(t, 3)
	n1, n2 := startNode(t, ec.Endpoints()), startNode(t, ec.Endpoints())
	const perClient, clients = 300, 8
	var cs []*client.Client
	for i := range clients {
		cs = append(cs, newClient(t, spread(i, n1, n2)...))
	}
	var wg sync.WaitGroup
	for i, c := range cs {
		cnt, err := c.Counter("likes:cluster")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perClient {
				if (i+j)%5 == 4 {
					cnt.Decrement()
					cnt.AddAndGet(2)
				} else {
					cnt.Increment()
				}
				if j%50 == 0 {
					time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	want := int64(perClient * clients)
	for i, c := range cs {
		cnt, _ := c.Counter("likes:cluster")
		waitFor(t, fmt.Sprintf("client %d sees %d", i, want), func() bool { return cnt.Get() == want && cnt.Synced() })
	}
	if got := storedTotal(t, ec, "likes:cluster"); got != want {
		t.Fatalf("etcd holds %d, want %d", got, want)
	}
	// Each node's /metrics shows its etcd requests and merges.
	for _, n := range []*node{n1, n2} {
		m := n.metrics(t)
		if m.sum("topgun_etcd_request_seconds_count") == 0 || m.sum("topgun_counter_merges_total") == 0 {
			t.Errorf("%s: no etcd requests or merges in /metrics: %v", n.URL, m)
		}
	}
}

// TestLockContentionAcrossNodes: 50 clients over two nodes contend for one
// lock guarding a fenced resource: never two holders, never a rejected
// write from a live holder, tokens strictly increasing.
func TestLockContentionAcrossNodes(t *testing.T) {
	ec := etcdtest.New(t, 3)
	n1, n2 := startNode(t, ec.Endpoints()), startNode(t, ec.Endpoints())
	res := &resource{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 50 {
		c := newClient(t, spread(i, n1, n2)...)
		wg.Add(1)
		go worker(c, "job-queue:partition-0", res, stop, &wg)
	}
	waitFor(t, "300 grants", func() bool { return res.grants() >= 300 })
	close(stop)
	wg.Wait()
	res.check(t)
}

// TestServerNodeKill: SIGKILL one node. Its clients reconnect to the
// other node, the lock one of them held is freed once the dead node's
// lease runs out, and no counter write is lost.
func TestServerNodeKill(t *testing.T) {
	ec := etcdtest.New(t, 3)
	n1, n2 := startNode(t, ec.Endpoints()), startNode(t, ec.Endpoints())
	a := newClient(t, n1.URL, n2.URL)
	b := newClient(t, n2.URL, n1.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(t, "a ready on node 1", func() bool { return a.State() == client.Ready && a.URL() == n1.URL })

	ca, _ := a.Counter("stock:cluster")
	cb, _ := b.Counter("stock:cluster")
	for range 100 {
		ca.Increment()
	}
	if err := ca.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	la, _ := a.Lock("nightly")
	if ok, err := la.Acquire(ctx, time.Minute); err != nil || !ok {
		t.Fatalf("a acquire: %v %v", ok, err)
	}
	tokenA := la.FencingToken()
	lost := make(chan string, 1)
	la.OnLost(func(reason string) { lost <- reason })

	// b waits for the lock on node 2.
	lb, _ := b.Lock("nightly")
	type result struct {
		ok  bool
		err error
	}
	got := make(chan result, 1)
	go func() {
		ok, err := lb.Acquire(ctx, time.Minute, client.WithWait(50*time.Second))
		got <- result{ok, err}
	}()
	waitFor(t, "b queued", func() bool { return b.State() == client.Ready })

	for range 50 { // written while node 1 dies: some not yet synced
		ca.Increment()
	}
	n1.kill()
	for range 25 { // written while a is between nodes
		ca.Increment()
	}

	select {
	case r := <-lost:
		t.Logf("a's lock lost: %s", r)
	case <-ctx.Done():
		t.Fatal("a was not told that its lock is gone")
	}
	r := <-got
	if r.err != nil || !r.ok {
		t.Fatalf("b acquire after node 1 died: %v %v", r.ok, r.err)
	}
	if tb := lb.FencingToken(); tb <= tokenA {
		t.Fatalf("b's token %d not above a's %d", tb, tokenA)
	}
	waitFor(t, "a fails over to node 2", func() bool { return a.State() == client.Ready && a.URL() == n2.URL })
	waitFor(t, "both see 175", func() bool { return ca.Get() == 175 && cb.Get() == 175 && ca.Synced() })
	if got := storedTotal(t, ec, "stock:cluster"); got != 175 {
		t.Fatalf("etcd holds %d, want 175", got)
	}
}

// TestEtcdLeaderKill: SIGKILL the etcd leader while 10 clients contend for
// a lock and 4 write a counter: no overlap, tokens strictly increasing,
// grants resume, no counter write lost; then the member is restarted and
// the cluster goes on.
func TestEtcdLeaderKill(t *testing.T) {
	ec := etcdtest.New(t, 3)
	n1, n2 := startNode(t, ec.Endpoints()), startNode(t, ec.Endpoints())
	res := &resource{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 10 {
		urls := spread(i, n1, n2)
		wg.Add(1)
		go worker(newClient(t, urls...), "leader-kill", res, stop, &wg)
	}
	var writers []*client.Counter
	var wwg sync.WaitGroup
	const perWriter = 400
	for i := range 4 {
		cnt, _ := newClient(t, spread(i, n1, n2)...).Counter("views:leader-kill")
		writers = append(writers, cnt)
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for range perWriter {
				cnt.Increment()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	waitFor(t, "50 grants before the kill", func() bool { return res.grants() >= 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := ec.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := res.grants()
	killed := time.Now()
	ec.Kill(leader)
	waitFor(t, "50 grants after the kill", func() bool { return res.grants() >= before+50 })
	res.mu.Lock()
	resumed := res.at[before].Sub(killed)
	res.mu.Unlock()
	t.Logf("first grant %v after the leader was killed", resumed.Round(time.Millisecond))

	if err := ec.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	after := res.grants()
	waitFor(t, "50 grants after the restart", func() bool { return res.grants() >= after+50 })
	close(stop)
	wg.Wait()
	wwg.Wait()
	res.check(t)
	want := int64(perWriter * len(writers))
	for i, cnt := range writers {
		waitFor(t, fmt.Sprintf("writer %d sees %d", i, want), func() bool { return cnt.Get() == want && cnt.Synced() })
	}
	if got := storedTotal(t, ec, "views:leader-kill"); got != want {
		t.Fatalf("etcd holds %d, want %d", got, want)
	}
}
