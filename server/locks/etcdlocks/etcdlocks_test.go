package etcdlocks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/internal/faultproxy"
	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/server/locks/locktest"
	"github.com/topgun-go/topgun/sync/wire"
)

// shared is the one etcd member the tests share, each under its own
// prefix.
var shared *etcdtest.Cluster

func TestMain(m *testing.M) {
	os.Exit(etcdtest.Main(m, &shared, "topgun/server/locks/etcdlocks."))
}

var prefixes atomic.Int64

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// backing is a Backend under a prefix of its own: the services it opens
// share their locks and fencing tokens, as the nodes of a cluster do.
func backing(t *testing.T) locks.Backend {
	cli := shared.Client(t)
	b := Backend(cli, Config{Prefix: fmt.Sprintf("/test%d", prefixes.Add(1))})
	return func(o locks.Options) (locks.Service, error) {
		if o.Logger == nil {
			o.Logger = quiet()
		}
		return b(o)
	}
}

func TestSuite(t *testing.T) {
	locktest.Run(t, backing)
}

// TestAcrossNodes: two services on one prefix (two server nodes) share
// each lock: one holder, FIFO waiters across nodes, tokens increasing.
func TestAcrossNodes(t *testing.T) {
	t.Parallel()
	b := backing(t)
	open := func() locks.Service {
		s, err := b(locks.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	n1, n2 := open(), open()
	a, w1, w2 := locktest.NewHolder(t, ""), locktest.NewHolder(t, ""), locktest.NewHolder(t, "")
	n1.Acquire(a, wire.LockRequest{RequestID: "a", Name: "x"})
	ga := locktest.Expect[wire.LockGranted](a)
	n2.Acquire(w1, wire.LockRequest{RequestID: "b0", Name: "x"})
	if d := locktest.Expect[wire.LockReleased](w1); d.Reason != wire.ReasonBusy {
		t.Fatalf("node 2 while node 1 holds: %+v", d)
	}
	n2.Acquire(w1, wire.LockRequest{RequestID: "b", Name: "x", Wait: 60000})
	n1.Acquire(w2, wire.LockRequest{RequestID: "c", Name: "x", Wait: 60000})
	n1.Release(a, wire.LockRelease{Name: "x", FencingToken: ga.FencingToken})
	if d := locktest.Expect[wire.LockReleased](a); !d.Success {
		t.Fatalf("release %+v", d)
	}
	g1 := locktest.Expect[wire.LockGranted](w1)
	if g1.FencingToken <= ga.FencingToken {
		t.Fatalf("token %d after %d", g1.FencingToken, ga.FencingToken)
	}
	if q := w2.Queued(); len(q) != 0 {
		t.Fatalf("the second waiter got %v before its turn", q)
	}
	n2.Disconnect(w1)
	if g2 := locktest.Expect[wire.LockGranted](w2); g2.FencingToken <= g1.FencingToken {
		t.Fatalf("token %d after %d", g2.FencingToken, g1.FencingToken)
	}
}

// TestLeaseLost: when the node's lease ends (here revoked behind its back,
// as when etcd is unreachable for longer than the TTL), its holders are
// told, and the node takes a new lease and grants again.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	cli := shared.Client(t)
	s, err := New(cli, Config{Prefix: fmt.Sprintf("/test%d", prefixes.Add(1))}, locks.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	a, b := locktest.NewHolder(t, ""), locktest.NewHolder(t, "")
	s.Acquire(a, wire.LockRequest{RequestID: "1", Name: "z"})
	g := locktest.Expect[wire.LockGranted](a)

	s.mu.Lock()
	lease := s.lease
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	lost := locktest.Expect[wire.LockLost](a)
	if lost.FencingToken != g.FencingToken || (lost.Reason != wire.ReasonUnavailable && lost.Reason != wire.ReasonReleased) {
		t.Fatalf("lost %+v", lost)
	}
	// A new lease comes; meanwhile requests are denied as unavailable.
	for {
		s.Acquire(b, wire.LockRequest{RequestID: "2", Name: "z"})
		switch m := b.Next().(type) {
		case wire.LockGranted:
			if m.FencingToken <= g.FencingToken {
				t.Fatalf("token %d after %d", m.FencingToken, g.FencingToken)
			}
			return
		case wire.LockReleased:
			if m.Reason != wire.ReasonUnavailable {
				t.Fatalf("denied %+v while the lease is replaced", m)
			}
			time.Sleep(20 * time.Millisecond)
		default:
			t.Fatalf("got %#v", m)
		}
	}
}

// TestConfig: a lease that an etcd election could outlast is refused with
// the reason, as are a nil client and bad lock options.
func TestConfig(t *testing.T) {
	t.Parallel()
	cli := shared.Client(t)
	if _, err := New(cli, Config{LeaseTTL: time.Second}, locks.Options{}); err == nil || !strings.Contains(err.Error(), "election") {
		t.Errorf("New with a 1s lease: %v", err)
	}
	if _, err := New(nil, Config{}, locks.Options{}); err == nil {
		t.Error("New with a nil client: no error")
	}
	if _, err := New(cli, Config{}, locks.Options{DefaultTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Error("New with a default ttl above the maximum: no error")
	}
}

// TestStaleExpiryAfterRenewal: an expiry timer that fired while a renewal
// held the service's mutex (simulated by calling it after the renewal)
// leaves the renewed lease alone: the renewal keeps the token, so the
// lease generation tells the leases apart.
func TestStaleExpiryAfterRenewal(t *testing.T) {
	t.Parallel()
	s, err := New(shared.Client(t), Config{Prefix: fmt.Sprintf("/test%d", prefixes.Add(1))}, locks.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	h := locktest.NewHolder(t, "")
	s.Acquire(h, wire.LockRequest{RequestID: "1", Name: "r", TTL: u64(60000)})
	g := locktest.Expect[wire.LockGranted](h)
	s.mu.Lock()
	var q *etcdReq
	for x := range s.byHolder[h] {
		q = x
	}
	stale := q.gen
	s.mu.Unlock()
	s.Acquire(h, wire.LockRequest{RequestID: "2", Name: "r", TTL: u64(60000)})
	if r := locktest.Expect[wire.LockGranted](h); r.FencingToken != g.FencingToken {
		t.Fatalf("renewal %+v", r)
	}
	s.expire(q, stale) // the first lease's timer, late
	if cur, _, err := s.Fence(context.Background(), "r", g.FencingToken); err != nil || !cur {
		t.Fatalf("renewed lock not current after a stale expiry: %v %v", cur, err)
	}
	if m := h.Queued(); len(m) != 0 {
		t.Fatalf("holder was sent %v", m)
	}
}

func u64(v uint64) *uint64 { return &v }

// TestReleaseThroughOutage: a release whose delete etcd does not answer
// at first (an election, a partition shorter than a lease TTL) is retried
// and answered with success once etcd confirms it, not "unavailable" for
// a lock that is gone.
func TestReleaseThroughOutage(t *testing.T) {
	t.Parallel()
	px, err := faultproxy.New(strings.TrimPrefix(shared.Endpoints()[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{px.Addr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	const timeout = 200 * time.Millisecond
	s, err := New(cli, Config{Prefix: fmt.Sprintf("/test%d", prefixes.Add(1)), LeaseTTL: MinLeaseTTL, RequestTimeout: timeout},
		locks.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	a, b := locktest.NewHolder(t, ""), locktest.NewHolder(t, "")
	s.Acquire(a, wire.LockRequest{RequestID: "1", Name: "out"})
	g := locktest.Expect[wire.LockGranted](a)

	// etcd stops answering for three request timeouts, well within the
	// lease: the first tries of the delete time out.
	px.Partition()
	s.Release(a, wire.LockRelease{RequestID: "2", Name: "out", FencingToken: g.FencingToken})
	time.Sleep(3 * timeout)
	px.Heal()
	if d := locktest.Expect[wire.LockReleased](a); !d.Success {
		t.Fatalf("release through the outage: %+v, want success", d)
	}
	s.Acquire(b, wire.LockRequest{RequestID: "3", Name: "out"})
	if gb := locktest.Expect[wire.LockGranted](b); gb.FencingToken <= g.FencingToken {
		t.Fatalf("token %d after %d", gb.FencingToken, g.FencingToken)
	}
}

// TestDeadNodeQueueSkipped: a node that dies with a request queued does
// not hold back the live waiters behind it until its lease runs out: when
// its request reaches the head and its node does not take its turn within
// TurnTimeout, a node with waiters deletes it and the next one gets the
// lock.
func TestDeadNodeQueueSkipped(t *testing.T) {
	t.Parallel()
	cli := shared.Client(t)
	prefix := fmt.Sprintf("/test%d", prefixes.Add(1))
	open := func(lease time.Duration) *Service {
		s, err := New(cli, Config{Prefix: prefix, LeaseTTL: lease, TurnTimeout: 300 * time.Millisecond}, locks.Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	// The dead node's lease outlasts the test's bound on a grant (20 s):
	// without the turn timeout the live waiter would wait for it.
	n1, dead, n3 := open(MinLeaseTTL), open(40*time.Second), open(MinLeaseTTL)
	a, w2, w3 := locktest.NewHolder(t, ""), locktest.NewHolder(t, ""), locktest.NewHolder(t, "")
	n1.Acquire(a, wire.LockRequest{RequestID: "a", Name: "q"})
	g := locktest.Expect[wire.LockGranted](a)
	dead.Acquire(w2, wire.LockRequest{RequestID: "w2", Name: "q", Wait: 60000})
	n3.Acquire(w3, wire.LockRequest{RequestID: "w3", Name: "q", Wait: 60000})
	// Both are queued (their keys written) once a later request is busy.
	for _, n := range []*Service{dead, n3} {
		for {
			n.mu.Lock()
			queued := len(n.waiters["q"]) > 0 && func() bool {
				for q := range n.waiters["q"] {
					if q.state != reqWaiting {
						return false
					}
				}
				return true
			}()
			n.mu.Unlock()
			if queued {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// The node dies: its goroutines stop, its lease and keys stay.
	dead.mu.Lock()
	dead.closed = true
	dead.mu.Unlock()
	dead.cancel()
	dead.wg.Wait()

	n1.Release(a, wire.LockRelease{RequestID: "r", Name: "q", FencingToken: g.FencingToken})
	if d := locktest.Expect[wire.LockReleased](a); !d.Success {
		t.Fatalf("release %+v", d)
	}
	g3 := locktest.Expect[wire.LockGranted](w3)
	if g3.FencingToken <= g.FencingToken {
		t.Fatalf("token %d after %d", g3.FencingToken, g.FencingToken)
	}
	if q := w2.Queued(); len(q) != 0 {
		t.Fatalf("the dead node's holder got %v", q)
	}
}
