package locks

import (
	"context"
	"sync"
	"testing"

	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

type recorder struct {
	mu   sync.Mutex
	msgs []wire.Message
}

func (r *recorder) ID() uint64   { return 1 }
func (r *recorder) User() string { return "" }
func (r *recorder) Send(m wire.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

// TestStaleExpiryAfterRenewal: an expiry timer that fired while a renewal
// held the mutex (simulated by calling it after the renewal) leaves the
// renewed lease alone. It once compared only the token, which a renewal
// keeps, and freed the lock microseconds after renewing it.
func TestStaleExpiryAfterRenewal(t *testing.T) {
	store := storage.NewMemory()
	defer store.Close()
	svc, err := NewMemory(store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	m := svc.(*memory)
	h := &recorder{}
	ttl := uint64(60000)
	m.Acquire(h, wire.LockRequest{RequestID: "1", Name: "r", TTL: &ttl})
	m.mu.Lock()
	e := m.locks["r"]
	stale := e.gen
	m.mu.Unlock()
	m.Acquire(h, wire.LockRequest{RequestID: "2", Name: "r", TTL: &ttl})
	m.expire(e, stale) // the first lease's timer, late
	if cur, _, _ := m.Fence(context.Background(), "r", e.token); !cur {
		t.Fatal("renewed lock freed by the first lease's timer")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.msgs) != 2 {
		t.Fatalf("holder was sent %v, want two grants", h.msgs)
	}
	for _, msg := range h.msgs {
		if _, ok := msg.(wire.LockGranted); !ok {
			t.Fatalf("holder was sent %#v", msg)
		}
	}
}
