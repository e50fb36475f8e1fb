package etcdstore_test

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage/etcdstore"
)

// Two server nodes share one etcd cluster: a write through one reaches a
// watch through the other. (Here both run in one process, each with its own
// client; a deployment uses one prefix, such as the default "/topgun".)
func Example() {
	ctx := context.Background()
	prefix := etcdstore.UniquePrefix() // apart from the tests' keys
	open := func() *etcdstore.Store {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   etcdstore.SharedEndpoints(),
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			panic(err)
		}
		s, err := etcdstore.New(cli, prefix)
		if err != nil {
			panic(err)
		}
		return s
	}
	node1, node2 := open(), open()
	defer node1.Client().Close()
	defer node2.Client().Close()
	defer node1.Close()
	defer node2.Close()

	// Node 1 stores a client's write: entries only ever rise.
	if err := node1.MergeCounter(ctx, "likes", crdt.State{P: map[string]int64{"phone": 3}}); err != nil {
		panic(err)
	}

	// Node 2 watches the counter: it gets the state now, then every change.
	changes := make(chan crdt.State, 10)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	st, err := node2.WatchCounter(wctx, "likes", func(c crdt.State) { changes <- c })
	if err != nil {
		panic(err)
	}
	fmt.Println("node 2 loads:", st.P, st.N)

	// A stale write changes nothing; a raise and a decrement do.
	_ = node1.MergeCounter(ctx, "likes", crdt.State{P: map[string]int64{"phone": 2}})
	_ = node1.MergeCounter(ctx, "likes", crdt.State{P: map[string]int64{"phone": 4}, N: map[string]int64{"laptop": 1}})
	c := <-changes
	fmt.Println("node 2 sees:", c.P, c.N)

	// Output:
	// node 2 loads: map[phone:3] map[]
	// node 2 sees: map[phone:4] map[laptop:1]
}
