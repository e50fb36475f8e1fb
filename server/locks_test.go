package server

import (
	"testing"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// The lock service's behaviour is tested by the shared suite of package
// locks/locktest, which both implementations run. These tests check the
// protocol around it, in both modes: frames in, frames out, a closed
// socket freeing its locks, Config reaching the service.

func lockReq(id, name string, ttl uint64, wait uint64) wire.LockRequest {
	r := wire.LockRequest{RequestID: id, Name: name, Wait: wait}
	if ttl > 0 {
		r.TTL = u64(ttl)
	}
	return r
}

func TestLockGrantRenewReleaseAndFencing(t *testing.T) {
	eachLockMode(t, func(t *testing.T, mode lockMode) {
		url, _ := start(t, mode(t, Config{DefaultLockTTL: 7 * time.Second}))
		a, b := dial(t, url), dial(t, url)

		a.send(wire.LockRequest{RequestID: "1", Name: "job"}) // no ttl: server default, never infinite
		g1 := expect[wire.LockGranted](a)
		if g1.RequestID != "1" || g1.Name != "job" || g1.FencingToken == 0 || g1.TTL != 7000 {
			t.Fatalf("grant %+v", g1)
		}
		// Renewal by the holder: same token, lease extended to the new ttl.
		a.send(lockReq("2", "job", 60000, 0))
		if g := expect[wire.LockGranted](a); g.FencingToken != g1.FencingToken || g.TTL != 60000 {
			t.Fatalf("renewal %+v, want token %d ttl 60000", g, g1.FencingToken)
		}
		// Another client is denied with a reason.
		b.send(lockReq("3", "job", 1000, 0))
		if d := expect[wire.LockReleased](b); d.Success || d.Reason != wire.ReasonBusy || d.RequestID != "3" {
			t.Fatalf("busy denial %+v", d)
		}
		// a non-holder cannot release, even with the right token.
		b.send(wire.LockRelease{RequestID: "4", Name: "job", FencingToken: g1.FencingToken})
		if d := expect[wire.LockReleased](b); d.Success || d.Reason != wire.ReasonNotHolder {
			t.Fatalf("non-holder release %+v", d)
		}
		// The holder with a stale token cannot either.
		a.send(wire.LockRelease{RequestID: "5", Name: "job", FencingToken: g1.FencingToken - 1})
		if d := expect[wire.LockReleased](a); d.Success || d.Reason != wire.ReasonNotHolder {
			t.Fatalf("stale-token release %+v", d)
		}
		a.send(wire.LockRelease{RequestID: "6", Name: "job", FencingToken: g1.FencingToken})
		if d := expect[wire.LockReleased](a); !d.Success || d.RequestID != "6" {
			t.Fatalf("release %+v", d)
		}
		// Every new grant has a strictly greater token.
		last := g1.FencingToken
		for i := 0; i < 5; i++ {
			c := a
			if i%2 == 1 {
				c = b
			}
			c.send(lockReq("g", "job", 1000, 0))
			g := expect[wire.LockGranted](c)
			if g.FencingToken <= last {
				t.Fatalf("token %d not above %d", g.FencingToken, last)
			}
			last = g.FencingToken
			c.send(wire.LockRelease{RequestID: "r", Name: "job", FencingToken: g.FencingToken})
			expect[wire.LockReleased](c)
		}
	})
}

func TestLockInvalidRequests(t *testing.T) {
	eachLockMode(t, func(t *testing.T, mode lockMode) {
		url, _ := start(t, mode(t, Config{MaxLockTTL: time.Minute}))
		r := dial(t, url)
		cases := []struct {
			req    wire.LockRequest
			reason string
		}{
			{wire.LockRequest{RequestID: "a", Name: "bad name!"}, wire.ReasonInvalidName},
			{wire.LockRequest{RequestID: "b", Name: ""}, wire.ReasonInvalidName},
			{wire.LockRequest{RequestID: "c", Name: "ok", TTL: u64(0)}, wire.ReasonInvalidTTL},
			{wire.LockRequest{RequestID: "d", Name: "ok", TTL: u64(60001)}, wire.ReasonInvalidTTL},
			{wire.LockRequest{RequestID: "e", Name: "ok", TTL: u64(1000), Wait: 60001}, wire.ReasonInvalidTTL},
		}
		for _, tc := range cases {
			r.send(tc.req)
			d := expect[wire.LockReleased](r)
			if d.Success || d.Reason != tc.reason || d.RequestID != tc.req.RequestID {
				t.Errorf("%+v: got %+v, want %s", tc.req, d, tc.reason)
			}
		}
		// A fractional ttl cannot even be decoded: ERROR 400 and the denial.
		r.sendBytes(frame(t, func(e encoder) {
			e.EncodeMapLen(2)
			e.EncodeString("type")
			e.EncodeString("LOCK_REQUEST")
			e.EncodeString("payload")
			e.EncodeMapLen(3)
			e.EncodeString("requestId")
			e.EncodeString("f")
			e.EncodeString("name")
			e.EncodeString("ok")
			e.EncodeString("ttl")
			e.EncodeFloat64(1.5)
		}))
		if e := expect[wire.Error](r); e.Code != 400 {
			t.Errorf("got %+v", e)
		}
		if d := expect[wire.LockReleased](r); d.RequestID != "f" || d.Reason != wire.ReasonInvalidTTL {
			t.Errorf("got %+v", d)
		}
	})
}

func TestLockDisconnectFreesAndWaitQueueOrder(t *testing.T) {
	eachLockMode(t, func(t *testing.T, mode lockMode) {
		url, _ := start(t, mode(t, Config{}))
		holder := dial(t, url)
		holder.send(lockReq("h", "q", 60000, 0))
		g := expect[wire.LockGranted](holder)

		waiters := []*raw{dial(t, url), dial(t, url), dial(t, url)}
		for i, w := range waiters {
			w.send(lockReq(string(rune('a'+i)), "q", 60000, 60000))
			w.roundTrip() // queued in this order
		}
		holder.ws.CloseNow() // disconnect releases

		last := g.FencingToken
		for i, w := range waiters {
			got := expect[wire.LockGranted](w)
			if got.RequestID != string(rune('a'+i)) || got.FencingToken <= last {
				t.Fatalf("waiter %d got %+v after token %d", i, got, last)
			}
			last = got.FencingToken
			// Until it releases, the next waiter has nothing.
			if i+1 < len(waiters) {
				if rest := waiters[i+1].roundTrip(); len(rest) != 0 {
					t.Fatalf("waiter %d got %v before its turn", i+1, rest)
				}
			}
			w.send(wire.LockRelease{RequestID: "r", Name: "q", FencingToken: got.FencingToken})
			expect[wire.LockReleased](w)
		}
	})
}
