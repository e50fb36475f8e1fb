package server

import (
	"strings"
	"testing"
	"time"

	"github.com/topgun-go/topgun/server/locks/etcdlocks"
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
		if cfg.Locks != nil {
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

// TestLocksBackendError: New fails with the lock backend's error (here an
// etcd lease an election could outlast).
func TestLocksBackendError(t *testing.T) {
	t.Parallel()
	cfg := withEtcd(t, Config{NoAuth: true, Store: storageForTest(t)})
	cfg.Locks = etcdlocks.Backend(sharedEtcd.c.Client(t), etcdlocks.Config{LeaseTTL: time.Second})
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "election") {
		t.Fatalf("New with a 1s etcd lease: %v", err)
	}
}
