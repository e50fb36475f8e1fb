package server

import (
	"context"
	"fmt"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/server/storage/etcdstore"
	"github.com/topgun-go/topgun/sync/wire"
)

// laggingStore is an etcd store whose counter watches deliver nothing
// while paused: a node whose watch lags behind writes made through other
// nodes.
type laggingStore struct {
	*etcdstore.Store
	mu     sync.Mutex
	paused bool
}

func (s *laggingStore) WatchCounter(ctx context.Context, name string, fn func(crdt.State)) (crdt.State, error) {
	return s.Store.WatchCounter(ctx, name, func(d crdt.State) {
		s.mu.Lock()
		paused := s.paused
		s.mu.Unlock()
		if !paused {
			fn(d)
		}
	})
}

func (s *laggingStore) pause() {
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
}

var _ storage.CounterWatcher = (*laggingStore)(nil)

// TestSubscriptionReadsThroughALaggingWatch: a node that holds a counter
// in memory, kept current by a watch that lags, answers a subscription
// with what is stored, writes made through another node included: a
// client that takes its own entries from that answer as the base of its
// next writes (after it evicted the counter) must not get them too low.
func TestSubscriptionReadsThroughALaggingWatch(t *testing.T) {
	t.Parallel()
	url1, url2, lag := laggingNodes(t, "refresh")

	// Node 2 holds the counter in memory for a subscriber of its own.
	held := dial(t, url2)
	held.send(wire.CounterRequest{Name: "c"})
	expect[wire.CounterResponse](held)
	lag.pause()

	// A write through node 1, stored and acknowledged.
	w := dial(t, url1)
	w.send(wire.CounterSync{Name: "c", State: crdt.State{P: map[string]int64{"tab": 5}}})
	expect[wire.CounterUpdate](w)

	// A client of node 2 (the writer's node id, after a failover) asks for
	// the counter: node 2's watch has not delivered the write.
	r := dial(t, url2)
	r.send(wire.DeviceHello{NodeID: "tab", Views: wire.ViewsCompact})
	expect[wire.DeviceAck](r)
	r.send(wire.CounterRequest{Name: "c"})
	got := expect[wire.CounterResponse](r)
	if got.State.P["tab"] != 5 {
		t.Fatalf("node 2 answered %v: the write stored through node 1 is missing (p[tab] = %d, want 5)", got.State, got.State.P["tab"])
	}
}

// failingLoads is an etcd store whose LoadCounter fails (an unreachable
// etcd) once the counter is watched, and counts the calls.
type failingLoads struct {
	*etcdstore.Store
	mu    sync.Mutex
	calls int
}

func (s *failingLoads) LoadCounter(ctx context.Context, name string) (crdt.State, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return crdt.State{}, context.DeadlineExceeded
}

func (s *failingLoads) WatchCounter(ctx context.Context, name string, fn func(crdt.State)) (crdt.State, error) {
	return s.Store.WatchCounter(ctx, name, fn)
}

// TestSubscriptionWhenTheStoreReadFails: when the read before an answer
// fails, the subscription is answered from memory, and the next ones are
// answered without trying for a while: an unreachable store does not
// cost a timeout per subscription.
func TestSubscriptionWhenTheStoreReadFails(t *testing.T) {
	t.Parallel()
	st, err := etcdstore.New(sharedEtcdClient(t), fmt.Sprintf("/refresh/%d", prefixSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fl := &failingLoads{Store: st}
	url, _ := start(t, withEtcd(t, Config{Store: fl}))
	held := dial(t, url)
	held.send(wire.CounterSync{Name: "c", State: crdt.State{P: map[string]int64{"a": 3}}})
	expect[wire.CounterUpdate](held)
	for i := range 3 {
		r := dial(t, url)
		r.send(wire.CounterRequest{Name: "c"})
		if got := expect[wire.CounterResponse](r); got.State.P["a"] != 3 {
			t.Fatalf("subscription %d answered %v, want a:3 from memory", i, got.State)
		}
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.calls != 1 {
		t.Fatalf("%d store reads for 3 subscriptions, want 1 (then a pause)", fl.calls)
	}
}

// sharedEtcdClient is a client of the package's shared etcd member
// (started by withEtcd, which the caller has called or calls).
// laggingNodes starts two server nodes on one etcd prefix (under tag):
// node 1 on an etcd store, node 2 on one whose watch can be paused.
func laggingNodes(t *testing.T, tag string) (url1, url2 string, lag *laggingStore) {
	t.Helper()
	cli := sharedEtcdClient(t)
	prefix := fmt.Sprintf("/%s/%d", tag, prefixSeq.Add(1))
	st1, err := etcdstore.New(cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st1.Close() })
	st2, err := etcdstore.New(cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	lag = &laggingStore{Store: st2}
	url1, _ = start(t, withEtcd(t, Config{Store: st1}))
	url2, _ = start(t, withEtcd(t, Config{Store: lag}))
	return url1, url2, lag
}

func sharedEtcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	withEtcd(t, Config{})
	return sharedEtcd.c.Client(t)
}
