package clustertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/server/storage/etcdstore"
	"github.com/topgun-go/topgun/sync/client"
)

// storedBounded reads bounded counter name straight from etcd.
func storedBounded(t *testing.T, ec *etcdtest.Cluster, name string) crdt.BState {
	t.Helper()
	st, err := etcdstore.New(ec.Client(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, ok, err := st.LoadBounded(ctx, name)
	if err != nil || !ok {
		t.Fatalf("LoadBounded: %v %v", ok, err)
	}
	return b
}

// TestBoundedGrantsAcrossNodes: replicas on two server nodes of one etcd
// cluster ask for rights concurrently and sell a stock of N; a third node
// is SIGKILLed in the middle and its clients fail over. The grants never
// exceed the broker's rights (each is a compare-and-swap in etcd), every
// unit is sold exactly once, and the stored state keeps the bound.
func TestBoundedGrantsAcrossNodes(t *testing.T) {
	ec := etcdtest.New(t, 1)
	n1, n2 := startNode(t, ec.Endpoints(), "--bounded-grant-max", "3"), startNode(t, ec.Endpoints(), "--bounded-grant-max", "3")
	n3 := startNode(t, ec.Endpoints(), "--bounded-grant-max", "3")
	const stock, replicas = 200, 6
	name := "stock:bounded-cluster"

	owner := newClient(t, n1.URL)
	waitFor(t, "owner ready", func() bool { return owner.State() == client.Ready })
	ob, err := owner.BoundedCounter(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Increment(stock); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stock stored", ob.Synced)

	handles := make([]*client.BoundedCounter, replicas)
	clients := make([]*client.Client, replicas)
	for i := range replicas {
		urls := spread(i, n1, n2)
		if i < 2 {
			urls = []string{n3.URL, n1.URL, n2.URL} // to be killed under them
		}
		clients[i] = newClient(t, urls...)
		waitFor(t, fmt.Sprintf("replica %d ready", i), func() bool { return clients[i].State() == client.Ready })
		if handles[i], err = clients[i].BoundedCounter(name, 0); err != nil {
			t.Fatal(err)
		}
	}
	sold := make([]int64, replicas)
	var killOnce sync.Once
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := handles[i]
			for range 20 * stock {
				if b.Available() > 0 {
					if !b.TryDecrement(1) {
						t.Errorf("replica %d: TryDecrement failed with rights", i)
						return
					}
					if sold[i]++; sold[i] == 5 && i == 0 {
						killOnce.Do(n3.kill) // SIGKILL a node with grants in flight
					}
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				g, err := b.RequestRights(ctx, 4)
				cancel()
				if errors.Is(err, client.ErrNotReady) || errors.Is(err, client.ErrDisconnected) {
					time.Sleep(20 * time.Millisecond) // failing over
					continue
				}
				if err != nil {
					t.Errorf("replica %d: RequestRights: %v", i, err)
					return
				}
				if g == 0 && b.Available() == 0 {
					return
				}
			}
			t.Errorf("replica %d did not finish", i)
		}()
	}
	wg.Wait()
	var total int64
	for i, n := range sold {
		total += n
		waitFor(t, fmt.Sprintf("replica %d synced", i), handles[i].Synced)
	}
	if total != stock {
		t.Fatalf("sold %d of a stock of %d", total, stock)
	}
	st := storedBounded(t, ec, name)
	b, err := crdt.BoundedFromState(st)
	if err != nil {
		t.Fatal(err)
	}
	var granted int64
	for _, v := range st.T["@"] {
		granted += v
	}
	if b.Value() != 0 || b.Rights("@") < 0 || granted > stock {
		t.Fatalf("stored: value %d, broker rights %d, granted %d of %d", b.Value(), b.Rights("@"), granted, stock)
	}
}
