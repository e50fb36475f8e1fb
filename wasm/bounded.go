//go:build js && wasm

// The tg_bounded_* functions are called from JS through //go:wasmexport,
// which staticcheck cannot see.
//
//lint:file-ignore U1000 called from JS through //go:wasmexport

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"syscall/js"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/idb"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
)

// Bounded counters of a tab run under the tab's bounded-replica identity
// (docs/bounded-counters.md, "Tabs"): with IndexedDB, a second engine
// client with node id = the identity, whose store keeps PN-Counters in
// memory (it opens none) and bounded counters in the identity's Replica
// view of the shared database. The shim picks the identity, holding a Web
// Lock on it for the tab's life, and hands it to boundedClient. With
// MemoryAdapter the tab's own client (a node id of its own) serves them.

var bounded []*boundedHandle

type boundedHandle struct {
	h      *clientHandle
	c      *client.Client // the client serving b
	b      *client.BoundedCounter
	notify js.Value // JS function called after changes made outside tg_bounded_spend
	refs   int      // JS handles using it (one, and a second while a disposed one flushes); under mu
}

// replicaStore is the bounded client's store.
type replicaStore struct {
	store.Store // memory: PN-Counters (none are opened)
	r           *idb.Replica
}

func (s replicaStore) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	return s.r.LoadBounded(ctx, name)
}

func (s replicaStore) SaveBounded(ctx context.Context, name string, st crdt.BState) error {
	return s.r.SaveBounded(ctx, name, st)
}

// boundedClient(id, identity) → Promise: starts the client that runs the
// tab's bounded counters under identity (a valid node id the shim holds
// exclusively). Without IndexedDB the tab's client serves them and
// identity is ignored.
func boundedClient(args []js.Value) any {
	h := getClient(args[0])
	identity := args[1].String()
	return promise(func() (any, error) {
		if h.idb == nil {
			return nil, nil
		}
		h.bmu.Lock()
		defer h.bmu.Unlock()
		if h.bc != nil {
			if h.bc.NodeID() != identity {
				return nil, fmt.Errorf("topgun: bounded counters already run as %q", h.bc.NodeID())
			}
			return nil, nil
		}
		r, err := h.idb.Replica(identity)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Claim(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", client.ErrStorage, err)
		}
		opts := h.opts
		opts.NodeID = identity
		mem := store.NewMemory()
		opts.Store = replicaStore{mem, r}
		c, err := client.New(opts)
		if err == nil {
			c.OnError(h.reportBounded)
			if err = c.Start(context.Background()); err != nil {
				c.Close()
			}
		}
		if err != nil {
			mem.Close()
			return nil, err
		}
		if !h.online {
			c.SetOnline(false)
		}
		h.bc, h.bmem = c, mem
		return nil, nil
	})
}

// boundedOf returns the client serving h's bounded counters.
func (h *clientHandle) boundedOf() (*client.Client, error) {
	if h.idb == nil {
		return h.c, nil
	}
	h.bmu.Lock()
	defer h.bmu.Unlock()
	if h.bc == nil {
		return nil, errors.New("topgun: bounded counters are not started (the shim calls boundedClient first)")
	}
	return h.bc, nil
}

// boundedOpen(id, name, min) → Promise<handle>: opens the counter, reading
// its stored replica (Client.BoundedCounter).
func boundedOpen(args []js.Value) any {
	h := getClient(args[0])
	name, min := args[1].String(), int64(args[2].Float())
	return promise(func() (any, error) {
		c, err := h.boundedOf()
		if err != nil {
			return nil, err
		}
		b, err := c.BoundedCounter(name, min)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		for i, bh := range bounded {
			if bh != nil && bh.b == b {
				bh.refs++
				return i, nil
			}
		}
		bh := &boundedHandle{h: h, c: c, b: b, notify: undef, refs: 1}
		bounded = append(bounded, bh)
		// Spends come through tg_bounded_spend and the shim has told its
		// listeners already; everything else crosses back.
		b.Subscribe(func(int64) {
			if inLocal || bh.notify.IsUndefined() {
				return
			}
			bh.notify.Invoke()
		})
		return len(bounded) - 1, nil
	})
}

func getBounded(h int32) *boundedHandle {
	if h < 0 || int(h) >= len(bounded) {
		return nil
	}
	return bounded[h]
}

func mustBounded(v js.Value) *boundedHandle {
	mu.Lock()
	defer mu.Unlock()
	bh := getBounded(int32(v.Int()))
	if bh == nil {
		panic(fmt.Sprintf("no bounded counter %d", v.Int()))
	}
	return bh
}

// boundedNotify(h, fn) sets the function called (without arguments) after
// changes not made by tg_bounded_spend: views and grants from the server,
// increments, returned rights.
func boundedNotify(args []js.Value) any {
	mustBounded(args[0]).notify = args[1]
	return nil
}

// boundedRequest(h, n) → Promise<granted>.
func boundedRequest(args []js.Value) any {
	bh, n := mustBounded(args[0]), int64(args[1].Float())
	return promise(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The tab's connection is up but the bounded client's own may still
		// be in its handshake (it starts with the first bounded counter):
		// give it a moment rather than failing NOT_READY.
		for i := 0; i < 500 && bh.c != bh.h.c && bh.h.c.State() == client.Ready && bh.c.State() != client.Ready; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		g, err := bh.b.RequestRights(ctx, n)
		return float64(g), err
	})
}

// boundedFlush(h) → Promise, resolved once every spend is stored.
func boundedFlush(args []js.Value) any {
	bh := mustBounded(args[0])
	return promise(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return nil, bh.b.Flush(ctx)
	})
}

// boundedClose(h): the handle stops getting updates (BoundedCounter.Close).
func boundedClose(args []js.Value) any {
	mu.Lock()
	i := args[0].Int()
	bh := getBounded(int32(i))
	if bh != nil {
		if bh.refs--; bh.refs > 0 {
			bh = nil // a newer JS handle of the counter still uses it
		} else {
			bounded[i] = nil
		}
	}
	mu.Unlock()
	if bh != nil {
		bh.b.Close()
	}
	return nil
}

// Hot path (see exports.go).

//go:wasmexport tg_bounded_get
func tgBoundedGet(h int32) float64 {
	if bh := getBounded(h); bh != nil {
		return float64(bh.b.Get())
	}
	return math.NaN()
}

//go:wasmexport tg_bounded_available
func tgBoundedAvailable(h int32) float64 {
	if bh := getBounded(h); bh != nil {
		return float64(bh.b.Available())
	}
	return math.NaN()
}

//go:wasmexport tg_bounded_synced
func tgBoundedSynced(h int32) int32 {
	if bh := getBounded(h); bh != nil && bh.b.Synced() {
		return 1
	}
	return 0
}

// localChange applies fn to handle h's counter as a change made in this
// tab (inLocal: the shim mirrors it already): 1 when fn succeeded, 0 when
// it did not or there is no handle.
func localChange(h int32, fn func(b *client.BoundedCounter) bool) int32 {
	bh := getBounded(h)
	if bh == nil {
		return 0
	}
	inLocal = true
	ok := fn(bh.b)
	inLocal = false
	if ok {
		return 1
	}
	return 0
}

// tg_bounded_spend takes n away (the shim's spends of a tick, checked
// against the rights it mirrors): 1 when done, 0 when the rights are not
// there (the handle is closed) or there is no handle.
//
//go:wasmexport tg_bounded_spend
func tgBoundedSpend(h int32, n float64) int32 {
	return localChange(h, func(b *client.BoundedCounter) bool { return b.TryDecrementLater(int64(n)) })
}

// tg_bounded_add adds n (IncrementLater): 1 when done, 0 otherwise.
//
//go:wasmexport tg_bounded_add
func tgBoundedAdd(h int32, n float64) int32 {
	return localChange(h, func(b *client.BoundedCounter) bool { return b.IncrementLater(int64(n)) == nil })
}

// tg_bounded_return hands n rights back to the broker
// (ReturnRightsLater): 1 when done, 0 when they are not held.
//
//go:wasmexport tg_bounded_return
func tgBoundedReturn(h int32, n float64) int32 {
	return localChange(h, func(b *client.BoundedCounter) bool { return b.ReturnRightsLater(int64(n)) == nil })
}
