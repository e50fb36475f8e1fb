package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

// stallingStore is a real store whose counter writes hang, while stall
// is set, until their context ends: an etcd that lost its leader.
type stallingStore struct {
	storage.Store
	stall atomic.Bool
}

func (s *stallingStore) MergeCounter(ctx context.Context, name string, st crdt.State) error {
	if s.stall.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.MergeCounter(ctx, name, st)
}

// TestStoreTimeoutBoundsAcks: a counter write the store does not answer is
// refused with ERROR 500 once Config.StoreTimeout passes, and the counter's
// writes are acknowledged again as soon as the store answers (the write
// waited 30 s, and every acknowledgement of the counter behind it).
func TestStoreTimeoutBoundsAcks(t *testing.T) {
	t.Parallel()
	st := &stallingStore{Store: storage.NewMemory()}
	t.Cleanup(func() { st.Store.Close() })
	url, _ := start(t, Config{Store: st, StoreTimeout: 200 * time.Millisecond})
	r := dial(t, url)
	r.send(wire.DeviceHello{NodeID: "n1", Views: wire.ViewsCompact})
	expect[wire.DeviceAck](r)
	sync := func(v int64) {
		r.send(wire.CounterSync{Name: "stall", State: crdt.State{P: map[string]int64{"n1": v}, N: map[string]int64{}}})
	}

	st.stall.Store(true)
	sync(1)
	if e := expect[wire.Error](r); e.Code != 500 {
		t.Fatalf("ERROR %d %q, want 500", e.Code, e.Message)
	}
	st.stall.Store(false)
	sync(2)
	// The refused write is stored with the next one; what comes back may
	// share a BATCH.
	for {
		ms, _ := unbatched(t, r, 1)
		u, ok := ms[0].(wire.CounterUpdate)
		if !ok {
			t.Fatalf("got %#v, want COUNTER_UPDATE", ms[0])
		}
		if v, _ := u.State.Value(); v == 2 {
			return
		}
	}
}
