package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

// claimStore is a real store that records its owner calls, and holds
// ClaimNodes calls of one user until released.
type claimStore struct {
	storage.Store

	mu      sync.Mutex
	batches [][]string // nodes of each ClaimNodes call

	holdUser string
	held     chan []string // a held call's nodes, when it starts
	release  chan struct{}
}

func newClaimStore(t *testing.T) *claimStore {
	s := &claimStore{Store: storageForTest(t), held: make(chan []string, 1), release: make(chan struct{})}
	return s
}

func (s *claimStore) ClaimNodes(ctx context.Context, nodes []string, user string) ([]string, error) {
	s.mu.Lock()
	s.batches = append(s.batches, append([]string(nil), nodes...))
	hold := user == s.holdUser
	s.mu.Unlock()
	if hold {
		s.held <- nodes
		<-s.release
	}
	return s.Store.ClaimNodes(ctx, nodes, user)
}

// calls returns the recorded calls and forgets them.
func (s *claimStore) calls() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	batches := s.batches
	s.batches = nil
	return batches
}

func login(t *testing.T, url, user string) *raw {
	t.Helper()
	r := dial(t, url)
	expect[wire.AuthRequired](r)
	r.send(wire.Auth{Token: hs256(t, testSecret, valid(user))})
	expect[wire.AuthAck](r)
	return r
}

// manyNodes is a state raising n node ids of prefix by one.
func manyNodes(prefix string, n int) crdt.State {
	s := st(nil, nil)
	for i := range n {
		s.P[fmt.Sprintf("%s-%d", prefix, i)] = 1
	}
	return s
}

// TestOwnersOneBatchPerFrame: the node ids a COUNTER_SYNC brings are
// claimed with one store call, known owners are not claimed again, and a
// node of another user is refused (403) without merging anything.
func TestOwnersOneBatchPerFrame(t *testing.T) {
	t.Parallel()
	store := newClaimStore(t)
	url, _ := start(t, Config{JWTSecret: testSecret, Store: store, MaxSyncNodes: 5000})
	alice, mallory := login(t, url, "alice"), login(t, url, "mallory")

	alice.send(wire.CounterSync{Name: "c", State: manyNodes("a", 300)})
	if u := expect[wire.CounterUpdate](alice); u.State.Len() != 300 {
		t.Fatalf("reply with %d entries, want 300", u.State.Len())
	}
	if batches := store.calls(); len(batches) != 1 || len(batches[0]) != 300 {
		t.Fatalf("%d ClaimNodes calls for one frame of 300 new nodes, want 1 of 300", len(batches))
	}
	// Raising them again needs no store call: the owners are known.
	more := manyNodes("a", 300)
	for k := range more.P {
		more.P[k] = 2
	}
	alice.send(wire.CounterSync{Name: "c", State: more})
	expect[wire.CounterUpdate](alice)
	if batches := store.calls(); len(batches) != 0 {
		t.Fatalf("known owners claimed again: %d ClaimNodes calls", len(batches))
	}

	// mallory raising one of alice's nodes among new ones of her own is
	// refused, and nothing of the frame is merged.
	bad := manyNodes("m", 10)
	bad.P["a-7"] = 100
	mallory.send(wire.CounterSync{Name: "c", State: bad})
	if e := expect[wire.Error](mallory); e.Code != 403 {
		t.Fatalf("raising another user's node: %+v", e)
	}
	// The same through a server that has not seen alice's nodes yet (a
	// restart, another node of a cluster): the store says whose they are.
	url2, _ := start(t, Config{JWTSecret: testSecret, Store: store, MaxSyncNodes: 5000})
	mallory2 := login(t, url2, "mallory")
	store.calls()
	mallory2.send(wire.CounterSync{Name: "c", State: bad})
	if e := expect[wire.Error](mallory2); e.Code != 403 {
		t.Fatalf("raising another user's node through a fresh server: %+v", e)
	}
	if batches := store.calls(); len(batches) != 1 || len(batches[0]) != 11 {
		t.Fatalf("ClaimNodes calls %v, want one with the frame's 11 nodes", batches)
	}
	c := login(t, url2, "carol")
	c.send(wire.CounterRequest{Name: "c"})
	r := expect[wire.CounterResponse](c)
	if r.State.P["a-7"] != 2 || r.State.P["m-0"] != 0 {
		t.Fatalf("state after the refused frames: a-7=%d m-0=%d, want 2 and 0", r.State.P["a-7"], r.State.P["m-0"])
	}
}

// TestOwnersClaimedOutsideCounterLock: while the store records the owners
// of one user's frame with 5,000 new node ids (held here until released),
// another user's COUNTER_SYNC on the same counter is merged and
// acknowledged.
func TestOwnersClaimedOutsideCounterLock(t *testing.T) {
	t.Parallel()
	store := newClaimStore(t)
	store.holdUser = "alice"
	url, _ := start(t, Config{JWTSecret: testSecret, Store: store, MaxSyncNodes: 5000})
	alice, bob, watcher := login(t, url, "alice"), login(t, url, "bob"), login(t, url, "watcher")
	watcher.send(wire.CounterRequest{Name: "hot"})
	expect[wire.CounterResponse](watcher)

	alice.send(wire.CounterSync{Name: "hot", State: manyNodes("alice", 5000)})
	select {
	case nodes := <-store.held:
		if len(nodes) != 5000 {
			t.Fatalf("held claim of %d nodes, want 5000", len(nodes))
		}
	case <-time.After(20 * time.Second): // a liveness guard, not a timing assertion
		t.Fatal("alice's owners were not claimed with one ClaimNodes call")
	}
	// alice's claim is in the store now; bob's sync goes through.
	bob.send(wire.CounterSync{Name: "hot", State: st(map[string]int64{"bob-node": 3}, nil)})
	if u := expect[wire.CounterUpdate](bob); u.State.P["bob-node"] != 3 {
		t.Fatalf("bob's reply %+v", u)
	}
	if u := expect[wire.CounterUpdate](watcher); u.State.P["bob-node"] != 3 || u.State.Len() != 1 {
		t.Fatalf("watcher's update %+v, want bob-node only", u)
	}
	close(store.release)
	u := expect[wire.CounterUpdate](alice)
	if u.State.Len() != 5001 || u.State.P["alice-4999"] != 1 || u.State.P["bob-node"] != 3 {
		t.Fatalf("alice's reply has %d entries, want 5001 with hers and bob's", u.State.Len())
	}
	if u := expect[wire.CounterUpdate](watcher); u.State.Len() != 5000 {
		t.Fatalf("watcher's second update has %d entries, want alice's 5000", u.State.Len())
	}
	if batches := store.calls(); len(batches) != 2 {
		t.Fatalf("%d ClaimNodes calls, want 2 (alice's and bob's)", len(batches))
	}
}
