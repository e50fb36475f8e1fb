//go:build !js

package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/topgun-go/topgun/internal/testserver"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/transport"
)

// TestFailover: two nodes share one storage; a client given both URLs
// connects to the first, and when that node dies it reconnects to the
// second, where its writes reach the second node's other clients. The lock
// it held on the dead node is lost, as on any disconnect.
func TestFailover(t *testing.T) {
	t.Parallel()
	st := storage.NewMemory()
	t.Cleanup(func() { st.Close() })
	a, b := startNode(t, st), startNode(t, st)

	opts := fastOptions(a.URL)
	opts.URLs = []string{b.URL}
	c := newClient(t, opts)
	waitReady(t, c)
	if c.URL() != a.URL {
		t.Fatalf("URL() = %s, want the first URL %s", c.URL(), a.URL)
	}
	watcher := readyClient(t, b.URL)
	seen := mustCounter(t, watcher, "failover")

	cnt := mustCounter(t, c, "failover")
	cnt.AddAndGet(5)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	l := mustLock(t, c, "failover")
	lost := make(chan string, 1)
	l.OnLost(func(r string) { lost <- r })
	if ok, err := l.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("Acquire on a = %v, %v", ok, err)
	}

	left := make(chan struct{}, 1)
	unsub := c.OnStateChange(func(s client.State) {
		if s != client.Ready {
			select {
			case left <- struct{}{}:
			default:
			}
		}
	})
	a.Close()
	select {
	case <-left:
	case <-ctxT(t).Done():
		t.Fatal("the client stayed ready after its server closed")
	}
	unsub()
	select {
	case r := <-lost:
		if r != client.LostDisconnected {
			t.Fatalf("lost reason %q", r)
		}
	case <-ctxT(t).Done():
		t.Fatal("no OnLost after the server closed")
	}

	waitReady(t, c)
	if c.URL() != b.URL {
		t.Fatalf("URL() = %s after failover, want %s", c.URL(), b.URL)
	}
	if c.State() != client.Ready {
		t.Fatalf("state %v after failover", c.State())
	}
	cnt.AddAndGet(2)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The writes made through a arrive with the resync on ready, the later
	// ones with the next sync.
	eventually(t, "the client on b sees 7", func() bool { return seen.Get() == 7 })
	if got := cnt.Get(); got != 7 {
		t.Fatalf("failed-over client's value %d, want 7", got)
	}
	// b has no record of a's lease: the lock is free there.
	if ok, err := l.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("Acquire on b = %v, %v", ok, err)
	}
}

// TestFailoverFirstURLRefuses: when nothing listens at the first URL the
// client ends up ready on the second.
func TestFailoverFirstURLRefuses(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	opts := fastOptions(testserver.RefusedURL(t))
	opts.URLs = []string{srv.url}
	c := newClient(t, opts)
	waitReady(t, c)
	if c.URL() != srv.url {
		t.Fatalf("URL() = %s, want %s", c.URL(), srv.url)
	}
	cnt := mustCounter(t, c, "refused-first")
	cnt.Increment()
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestURLsRoundRobin: failed dials go through the URLs in order, URL first
// and duplicates once, and start over.
func TestURLsRoundRobin(t *testing.T) {
	t.Parallel()
	want := []string{"ws://one.invalid/ws", "ws://two.invalid/ws", "ws://three.invalid/ws"}
	dialed := make(chan string, 16)
	refused := errors.New("refused")
	opts := fastOptions(want[0])
	opts.URLs = []string{want[1], want[0], want[2], want[1]}
	opts.Dialer = func(ctx context.Context, url string) (transport.Conn, error) {
		select {
		case dialed <- url:
		default:
		}
		return nil, refused
	}
	c := newClient(t, opts)
	for i := range 2*len(want) + 1 {
		select {
		case got := <-dialed:
			if w := want[i%len(want)]; got != w {
				t.Fatalf("dial %d went to %s, want %s", i, got, w)
			}
		case <-ctxT(t).Done():
			t.Fatalf("dial %d did not happen", i)
		}
	}
	if !errors.Is(c.Err(), refused) {
		t.Fatalf("Err() = %v, want the dial error", c.Err())
	}
}
