package server

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// dialCompact opens a connection that negotiated compact views as node.
func dialCompact(t *testing.T, url, node string) *raw {
	t.Helper()
	r := dial(t, url)
	r.send(wire.DeviceHello{NodeID: node, Views: wire.ViewsCompact})
	if a := expect[wire.DeviceAck](r); a.Views != wire.ViewsCompact {
		t.Fatalf("DEVICE_ACK %+v, want views %q", a, wire.ViewsCompact)
	}
	return r
}

// manyWriters syncs w writers' entries into name through one legacy
// connection, in frames of at most 10,000 nodes.
func manyWriters(t *testing.T, url, name string, w int) {
	t.Helper()
	r := dial(t, url)
	for lo := 0; lo < w; lo += 10000 {
		s := st(nil, nil)
		for i := lo; i < min(lo+10000, w); i++ {
			s.P[fmt.Sprintf("w%07d", i)] = 2
			if i%2 == 0 {
				s.N[fmt.Sprintf("w%07d", i)] = 1
			}
		}
		r.send(wire.CounterSync{Name: name, State: s})
		expect[wire.CounterUpdate](r)
	}
}

func TestCompactViewIsSmallWhateverTheWriters(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{MaxSyncNodes: 10000})
	for _, w := range []int{10, 1000, 50000} {
		name := fmt.Sprintf("views:w%d", w)
		manyWriters(t, url, name, w)
		want := int64(2*w - (w+1)/2)

		c := dialCompact(t, url, "reader")
		c.send(wire.CounterRequest{Name: name})
		r := expect[wire.CounterResponse](c)
		b, _ := wire.Encode(r)
		if len(b) > 256 {
			t.Errorf("W=%d: compact response %d bytes, want ≤ 256", w, len(b))
		}
		if v, err := r.State.Value(); err != nil || v != want {
			t.Errorf("W=%d: value %d (%v), want %d: %+v", w, v, err, want, r.State)
		}
		wantView := st(map[string]int64{wire.RestNode: int64(2 * w)}, map[string]int64{wire.RestNode: int64((w + 1) / 2)})
		if !reflect.DeepEqual(r.State, wantView) {
			t.Errorf("W=%d: view %+v, want %+v", w, r.State, wantView)
		}
	}
}

// TestCompactViewOwnEntriesAndUpdates: a compact writer gets its own
// entries and the others' aggregate; updates to compact subscribers are
// views of the durable state; two connections sharing a node id see the
// node's entries once.
func TestCompactViewOwnEntriesAndUpdates(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	legacy := dial(t, url)
	legacy.send(wire.CounterSync{Name: "v", State: st(map[string]int64{"other": 10}, map[string]int64{"other": 1})})
	expect[wire.CounterUpdate](legacy)

	tab1, tab2 := dialCompact(t, url, "me"), dialCompact(t, url, "me")
	tab2.send(wire.CounterRequest{Name: "v"})
	if r := expect[wire.CounterResponse](tab2); !reflect.DeepEqual(r.State,
		st(map[string]int64{wire.RestNode: 10}, map[string]int64{wire.RestNode: 1})) {
		t.Fatalf("tab2 view %+v", r.State)
	}
	tab1.send(wire.CounterSync{Name: "v", State: st(map[string]int64{"me": 4}, nil)})
	want := st(map[string]int64{"me": 4, wire.RestNode: 10}, map[string]int64{wire.RestNode: 1})
	if u := expect[wire.CounterUpdate](tab1); !reflect.DeepEqual(u.State, want) {
		t.Fatalf("tab1 reply %+v, want %+v", u.State, want)
	}
	// tab2 shares the node id: its update shows "me" once, never in rest.
	if u := expect[wire.CounterUpdate](tab2); !reflect.DeepEqual(u.State, want) {
		t.Fatalf("tab2 update %+v, want %+v", u.State, want)
	}
	// The legacy subscriber gets the changed entry, as before.
	if u := expect[wire.CounterUpdate](legacy); !reflect.DeepEqual(u.State, st(map[string]int64{"me": 4}, nil)) {
		t.Fatalf("legacy update %+v", u.State)
	}
	// Another writer raises rest for both tabs.
	legacy.send(wire.CounterSync{Name: "v", State: st(map[string]int64{"other": 15}, nil)})
	expect[wire.CounterUpdate](legacy)
	want = st(map[string]int64{"me": 4, wire.RestNode: 15}, map[string]int64{wire.RestNode: 1})
	for _, tab := range []*raw{tab1, tab2} {
		if u := expect[wire.CounterUpdate](tab); !reflect.DeepEqual(u.State, want) {
			t.Fatalf("update %+v, want %+v", u.State, want)
		}
	}
}

// TestCompactRestNeverComesBack: the aggregate's key is not a node id; a
// SYNC carrying it, or any invalid node id, is refused before anything is
// merged, and the counter stays healthy.
func TestCompactRestNeverComesBack(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	c := dialCompact(t, url, "me")
	for _, bad := range []crdt.State{
		st(map[string]int64{wire.RestNode: 5}, nil),
		st(nil, map[string]int64{"me": 1, wire.RestNode: 5}),
		st(map[string]int64{strings.Repeat("x", 257): 1}, nil),
		st(map[string]int64{"has space": 1}, nil),
	} {
		c.send(wire.CounterSync{Name: "healthy", State: bad})
		if e := expect[wire.Error](c); e.Code != 400 {
			t.Fatalf("SYNC %+v: %+v, want ERROR 400", bad, e)
		}
	}
	c.send(wire.CounterSync{Name: "healthy", State: st(map[string]int64{"me": 2}, nil)})
	if u := expect[wire.CounterUpdate](c); !reflect.DeepEqual(u.State, st(map[string]int64{"me": 2, wire.RestNode: 0}, map[string]int64{wire.RestNode: 0})) {
		t.Fatalf("after refusals %+v", u.State)
	}
}

// TestCompactNegotiation: an invalid node id is refused with ERROR 400 and
// no compact views; a connection that subscribed before asking keeps full
// states; AUTH negotiates like DEVICE_HELLO.
func TestCompactNegotiation(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	bad := dial(t, url)
	bad.send(wire.DeviceHello{NodeID: "*", Views: wire.ViewsCompact})
	if e := expect[wire.Error](bad); e.Code != 400 {
		t.Fatalf("%+v", e)
	}
	if a := expect[wire.DeviceAck](bad); a.Views != "" {
		t.Fatalf("ack %+v", a)
	}
	late := dial(t, url)
	late.send(wire.CounterRequest{Name: "n"})
	expect[wire.CounterResponse](late)
	late.send(wire.DeviceHello{NodeID: "late", Views: wire.ViewsCompact})
	if a := expect[wire.DeviceAck](late); a.Views != "" {
		t.Fatalf("late ack %+v, want no compact views", a)
	}
	auth := dial(t, url)
	auth.send(wire.Auth{Token: "x", NodeID: "n1", Views: wire.ViewsCompact})
	if a := expect[wire.AuthAck](auth); a.Views != wire.ViewsCompact {
		t.Fatalf("auth ack %+v", a)
	}
	legacy := dial(t, url)
	legacy.send(wire.DeviceHello{})
	if a := expect[wire.DeviceAck](legacy); a.Views != "" {
		t.Fatalf("legacy ack %+v", a)
	}
}

// TestLegacyFullStateOverTheLimit: a full state over 2 MiB is not sent
// (the peer would drop it); the client gets ERROR 413 saying why.
func TestLegacyFullStateOverTheLimit(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{MaxSyncNodes: 10000})
	manyWriters(t, url, "huge", 120000)
	c := dial(t, url)
	c.send(wire.CounterRequest{Name: "huge"})
	e := expect[wire.Error](c)
	if e.Code != 413 || !strings.Contains(e.Message, "compact views") {
		t.Fatalf("%+v, want ERROR 413 naming compact views", e)
	}
	compact := dialCompact(t, url, "r")
	compact.send(wire.CounterRequest{Name: "huge"})
	if v, _ := expect[wire.CounterResponse](compact).State.Value(); v != 2*120000-60000 {
		t.Fatalf("compact value %d", v)
	}
}

// TestUnsubscribe: after COUNTER_UNSUBSCRIBE the connection gets no more
// updates of the counter, and a counter nothing uses is forgotten.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	url, srv := start(t, Config{})
	sub, w := dialCompact(t, url, "sub"), dial(t, url)
	sub.send(wire.CounterRequest{Name: "u"})
	expect[wire.CounterResponse](sub)
	sub.send(wire.CounterUnsubscribe{Name: "u"})
	sub.send(wire.CounterUnsubscribe{Name: "never-subscribed"}) // ignored
	sub.roundTrip()
	w.send(wire.CounterSync{Name: "u", State: st(map[string]int64{"w": 1}, nil)})
	expect[wire.CounterUpdate](w)
	w.send(wire.CounterUnsubscribe{Name: "u"})
	w.roundTrip()
	if got := sub.roundTrip(); len(got) != 0 {
		t.Fatalf("unsubscribed connection got %+v", got)
	}
	srv.counters.mu.Lock()
	_, live := srv.counters.m["u"]
	srv.counters.mu.Unlock()
	if live {
		t.Fatal("a counter nobody subscribes to is still in memory")
	}
	sub.send(wire.CounterRequest{Name: "u"})
	if v, _ := expect[wire.CounterResponse](sub).State.Value(); v != 1 {
		t.Fatalf("resubscribed value %d, want 1 (loaded from the store)", v)
	}
}
