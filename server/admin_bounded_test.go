package server

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// TestAdminBounded: an operator sees who holds a bounded counter's rights
// and reclaims those of a replica gone for good; the rights go back to the
// broker and are granted again, and the replica, should it come back after
// all, cannot spend them.
func TestAdminBounded(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	base := httpBase(url)
	replica := func(node string) *raw {
		r := dial(t, url)
		r.send(wire.DeviceHello{NodeID: node, Views: wire.ViewsCompact})
		expect[wire.DeviceAck](r)
		r.send(wire.BCounterRequest{Name: "a:stock", Min: 0})
		expect[wire.BCounterUpdate](r)
		return r
	}
	shop := replica("shop")
	shop.send(wire.BCounterSync{Name: "a:stock", State: crdt.BState{P: map[string]int64{"shop": 10},
		T: map[string]map[string]int64{"shop": {wire.BrokerNode: 10}}}})
	expect[wire.BCounterUpdate](shop)
	gone := replica("gone")
	gone.send(wire.BCounterRights{RequestID: "1", Name: "a:stock", Amount: 4})
	if g := expect[wire.BCounterGrant](gone); g.Granted != 4 {
		t.Fatalf("granted %d, want 4", g.Granted)
	}
	gone.ws.Close(1000, "")

	var got BoundedJSON
	if code, e := adminCall(t, "GET", base+"/v1/bounded/a:stock", "", "", &got); code != 200 {
		t.Fatalf("GET: %d %s", code, e)
	}
	want := BoundedJSON{Name: "a:stock", Min: 0, Value: 10, BrokerRights: 6, Holders: []BoundedHolderJSON{{"gone", 4}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GET = %+v, want %+v", got, want)
	}

	var rec ReclaimJSON
	if code, e := adminCall(t, "POST", base+"/v1/bounded/a:stock/reclaim", "", `{"node":"gone"}`, &rec); code != 200 {
		t.Fatalf("reclaim: %d %s", code, e)
	}
	if rec.Reclaimed != 4 || rec.Counter.BrokerRights != 10 || len(rec.Counter.Holders) != 0 || rec.Counter.Value != 10 {
		t.Fatalf("reclaim = %+v, want 4 back with the broker (10), nobody else holding any", rec)
	}
	if code, e := adminCall(t, "POST", base+"/v1/bounded/a:stock/reclaim", "", `{"node":"gone"}`, &rec); code != 200 || rec.Reclaimed != 0 {
		t.Fatalf("second reclaim: %d %s %+v, want 0 moved", code, e, rec)
	}
	// The rights are the broker's again: granted to another replica.
	other := replica("other")
	other.send(wire.BCounterRights{RequestID: "2", Name: "a:stock", Amount: 10})
	if g := expect[wire.BCounterGrant](other); g.Granted != 10 {
		t.Fatalf("granted %d after the reclaim, want 10", g.Granted)
	}
	// The replica comes back after all: a sale with the reclaimed rights
	// is refused (the hazard docs/bounded-counters.md states).
	back := replica("gone")
	back.send(wire.BCounterSync{Name: "a:stock", State: crdt.BState{N: map[string]int64{"gone": 1}}})
	if e := expect[wire.Error](back); e.Code != 403 {
		t.Fatalf("sale with reclaimed rights: ERROR %d %q, want 403", e.Code, e.Message)
	}

	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/v1/bounded/a:none", "", http.StatusNotFound},
		{"POST", "/v1/bounded/a:none/reclaim", `{"node":"gone"}`, http.StatusNotFound},
		{"POST", "/v1/bounded/a:stock/reclaim", `{"node":"@"}`, http.StatusBadRequest},
		{"POST", "/v1/bounded/a:stock/reclaim", `{}`, http.StatusBadRequest},
		{"POST", "/v1/bounded/a:stock/reclaim", `not json`, http.StatusBadRequest},
		{"GET", "/v1/bounded/a:stock/reclaim", "", http.StatusMethodNotAllowed},
	} {
		if code, _ := adminCall(t, tc.method, base+tc.path, "", tc.body, nil); code != tc.code {
			t.Errorf("%s %s %s: %d, want %d", tc.method, tc.path, tc.body, code, tc.code)
		}
	}
}
