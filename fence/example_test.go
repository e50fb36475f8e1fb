package fence_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"time"

	"github.com/topgun-go/topgun/fence"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/client"
)

// reportStore is a storage service that accepts a write only with the
// fencing token of the lock's current holder.
type reportStore struct {
	fence *fence.Client

	mu      sync.Mutex
	reports map[string]string
}

func (s *reportStore) Put(ctx context.Context, lock string, token uint64, key, value string) error {
	if _, err := s.fence.Check(ctx, lock, token); err != nil {
		return err // *fence.StaleError, or the server could not say: refuse either way
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports[key] = value
	return nil
}

// Example_storageService: worker A takes the lock, stalls past its lease,
// and worker B takes the lock; the store accepts B's write and rejects A's
// late one.
func Example_storageService() {
	ctx := context.Background()
	addr, stop := exampleServer() // your topgun-server deployment
	defer stop()
	store := &reportStore{fence: fence.New("http://"+addr, ""), reports: map[string]string{}}

	worker := func() (*client.Client, *client.Lock) {
		c, err := client.New(client.Options{URL: "ws://" + addr + "/ws", Logger: quiet()})
		if err != nil {
			log.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			log.Fatal(err)
		}
		l, err := c.Lock("reports/daily")
		if err != nil {
			log.Fatal(err)
		}
		return c, l
	}
	ca, a := worker()
	defer ca.Close()
	lost := make(chan string, 1)
	a.OnLost(func(reason string) { lost <- reason })
	if ok, err := a.Acquire(ctx, 200*time.Millisecond); !ok || err != nil {
		log.Fatal("A: ", ok, err)
	}
	tokenA := a.FencingToken()
	fmt.Println("A: lost the lock:", <-lost) // A stalls past its lease

	cb, b := worker()
	defer cb.Close()
	if ok, err := b.Acquire(ctx, time.Minute); !ok || err != nil {
		log.Fatal("B: ", ok, err)
	}
	fmt.Println("B: put:", store.Put(ctx, "reports/daily", b.FencingToken(), "2024-06-01", "from B"))

	err := store.Put(ctx, "reports/daily", tokenA, "2024-06-01", "from A, late")
	var stale *fence.StaleError
	fmt.Println("A: put rejected:", errors.As(err, &stale) && stale.Current == b.FencingToken())
	fmt.Println("stored:", store.reports["2024-06-01"])
	// Output:
	// A: lost the lock: expired
	// B: put: <nil>
	// A: put rejected: true
	// stored: from B
}

// exampleServer runs a topgun server on 127.0.0.1 (no auth: the admin API
// then answers loopback clients) and returns its address.
func exampleServer() (addr string, stop func()) {
	st := storage.NewMemory()
	srv, err := server.New(server.Config{Store: st, NoAuth: true, Logger: quiet()})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { srv.Close(); st.Close() }
}
