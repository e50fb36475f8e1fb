package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// TestEtcdLocksAcrossNodes: two nodes on one etcd share each lock: one
// holder, FIFO waiters across nodes, hand-off from one node to the other,
// tokens increasing.
func TestEtcdLocksAcrossNodes(t *testing.T) {
	t.Parallel()
	cfg := withEtcd(t, Config{})
	url1, _ := start(t, cfg)
	url2, _ := start(t, cfg)
	a, b, c := dial(t, url1), dial(t, url2), dial(t, url1)

	a.send(lockReq("a", "x", 60000, 0))
	ga := expect[wire.LockGranted](a)
	b.send(lockReq("b0", "x", 60000, 0))
	if d := expect[wire.LockReleased](b); d.Reason != wire.ReasonBusy {
		t.Fatalf("node 2 while node 1 holds: %+v", d)
	}
	b.send(lockReq("b", "x", 60000, 60000))
	b.roundTrip()
	c.send(lockReq("c", "x", 60000, 60000))
	c.roundTrip()

	a.send(wire.LockRelease{RequestID: "r", Name: "x", FencingToken: ga.FencingToken})
	if d := expect[wire.LockReleased](a); !d.Success {
		t.Fatalf("release %+v", d)
	}
	gb := expect[wire.LockGranted](b) // b queued first, on the other node
	if gb.FencingToken <= ga.FencingToken {
		t.Fatalf("token %d after %d", gb.FencingToken, ga.FencingToken)
	}
	if rest := c.roundTrip(); len(rest) != 0 {
		t.Fatalf("c got %v before its turn", rest)
	}
	b.ws.CloseNow() // disconnect on node 2 frees it for node 1's waiter
	gc := expect[wire.LockGranted](c)
	if gc.FencingToken <= gb.FencingToken {
		t.Fatalf("token %d after %d", gc.FencingToken, gb.FencingToken)
	}
}

// TestReleaseBySameUserElsewhere: in JWT mode the holder's user may
// release through another connection (in cluster mode, on another node);
// the holding connection learns of it with LOCK_LOST "released".
func TestReleaseBySameUserElsewhere(t *testing.T) {
	eachLockMode(t, func(t *testing.T, mode lockMode) {
		cfg := mode(t, Config{JWTSecret: testSecret})
		url1, _ := start(t, cfg)
		url2 := url1
		if cfg.Etcd != nil {
			url2, _ = start(t, cfg)
		}
		testReleaseBySameUser(t, url1, url2)
	})
}

func testReleaseBySameUser(t *testing.T, url1, url2 string) {
	login := func(url, user string) *raw {
		r := dial(t, url)
		expect[wire.AuthRequired](r)
		r.send(wire.Auth{Token: hs256(t, testSecret, valid(user))})
		expect[wire.AuthAck](r)
		return r
	}
	a, a2, m := login(url1, "alice"), login(url2, "alice"), login(url2, "mallory")

	a.send(lockReq("1", "y", 60000, 0))
	g := expect[wire.LockGranted](a)
	m.send(wire.LockRelease{RequestID: "m", Name: "y", FencingToken: g.FencingToken})
	if d := expect[wire.LockReleased](m); d.Success || d.Reason != wire.ReasonNotHolder {
		t.Fatalf("other user's release %+v", d)
	}
	a2.send(wire.LockRelease{RequestID: "2", Name: "y", FencingToken: g.FencingToken})
	if d := expect[wire.LockReleased](a2); !d.Success {
		t.Fatalf("same user's release on node 2: %+v", d)
	}
	if l := expect[wire.LockLost](a); l.Reason != wire.ReasonReleased || l.FencingToken != g.FencingToken {
		t.Fatalf("holder notice %+v", l)
	}
}

// TestEtcdLeaseLost: when the node's lease ends (here revoked behind its
// back, as when etcd is unreachable for longer than the TTL), its holders
// are told, and the node takes a new lease and grants again.
func TestEtcdLeaseLost(t *testing.T) {
	t.Parallel()
	cfg := withEtcd(t, Config{})
	url, srv := start(t, cfg)
	a, b := dial(t, url), dial(t, url)
	a.send(lockReq("1", "z", 60000, 0))
	g := expect[wire.LockGranted](a)

	l := srv.locks.(*etcdLocks)
	l.mu.Lock()
	lease := l.lease
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cfg.Etcd.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	lost := expect[wire.LockLost](a)
	if lost.FencingToken != g.FencingToken || (lost.Reason != wire.ReasonUnavailable && lost.Reason != wire.ReasonReleased) {
		t.Fatalf("lost %+v", lost)
	}
	// A new lease comes; meanwhile requests are denied as unavailable.
	for {
		b.send(lockReq("2", "z", 60000, 0))
		switch m := b.next().(type) {
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

// TestEtcdLeaseTTLTooShort: a lease that an etcd election could outlast is
// refused with the reason.
func TestEtcdLeaseTTLTooShort(t *testing.T) {
	t.Parallel()
	cfg := withEtcd(t, Config{NoAuth: true, Store: storageForTest(t), EtcdLeaseTTL: time.Second})
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "election") {
		t.Fatalf("New with a 1s lease: %v", err)
	}
}
