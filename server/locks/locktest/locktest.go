// Package locktest is the one test suite every locks.Service
// implementation runs: the in-memory service of package locks and the
// etcd one of package etcdlocks. The server's own lock tests check the
// protocol around it (decoding, rate limits, several server nodes).
//
// The suite checks outcomes, never timings: leases and waits that must run
// out are short, and the suite waits for their effect.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// Run runs the suite. backing returns, for each subtest, a Backend on
// fresh state of its own: every service it opens shares that state, as a
// restarted node shares its store (fencing tokens must keep increasing
// from one to the next). The suite closes every service it opens.
func Run(t *testing.T, backing func(t *testing.T) locks.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, open opener)
	}{
		{"GrantRenewRelease", testGrantRenewRelease},
		{"InvalidRequests", testInvalidRequests},
		{"Expiry", testExpiry},
		{"Disconnect", testDisconnect},
		{"WaitQueueFIFO", testWaitQueueFIFO},
		{"WaitTimeout", testWaitTimeout},
		{"FencingAcrossRestarts", testFencingAcrossRestarts},
		{"SameUserRelease", testSameUserRelease},
		{"TooMany", testTooMany},
		{"RenewalAtExpiry", testRenewalAtExpiry},
		{"Inspect", testInspect},
		{"Revoke", testRevoke},
		{"FenceAfterExpiry", testFenceAfterExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := backing(t)
			tt.fn(t, func(o locks.Options) locks.Service {
				t.Helper()
				s, err := b(o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Close)
				return s
			})
		})
	}
}

// opener opens a service on the subtest's state.
type opener func(locks.Options) locks.Service

var ids atomic.Uint64

// Holder is a locks.Holder that keeps what it is sent, for tests.
type Holder struct {
	t    *testing.T
	id   uint64
	user string

	mu   sync.Mutex
	msgs []wire.Message
	wake chan struct{}
}

// NewHolder returns a holder of user ("" for none).
func NewHolder(t *testing.T, user string) *Holder {
	return &Holder{t: t, id: ids.Add(1), user: user, wake: make(chan struct{}, 1)}
}

// ID implements locks.Holder.
func (h *Holder) ID() uint64 { return h.id }

// User implements locks.Holder.
func (h *Holder) User() string { return h.user }

// Send implements locks.Holder; it never blocks.
func (h *Holder) Send(m wire.Message) {
	h.mu.Lock()
	h.msgs = append(h.msgs, m)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Next returns the next message sent to h, failing the test if none comes
// within a generous bound (a liveness guard, not a timing assertion).
func (h *Holder) Next() wire.Message {
	h.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		h.mu.Lock()
		if len(h.msgs) > 0 {
			m := h.msgs[0]
			h.msgs = h.msgs[1:]
			h.mu.Unlock()
			return m
		}
		h.mu.Unlock()
		select {
		case <-h.wake:
		case <-deadline:
			h.t.Fatalf("holder %d: no message within 20s", h.id)
		}
	}
}

// Queued returns the messages sent to h and not taken yet.
func (h *Holder) Queued() []wire.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]wire.Message(nil), h.msgs...)
}

// Expect returns the next message sent to h, which must be a T.
func Expect[T wire.Message](h *Holder) T {
	h.t.Helper()
	m := h.Next()
	v, ok := m.(T)
	if !ok {
		var zero T
		h.t.Fatalf("holder %d: got %#v, want %T", h.id, m, zero)
	}
	return v
}

func req(id, name string, ttl, wait uint64) wire.LockRequest {
	r := wire.LockRequest{RequestID: id, Name: name, Wait: wait}
	if ttl > 0 {
		r.TTL = &ttl
	}
	return r
}

func release(s locks.Service, h *Holder, name string, token uint64) wire.LockReleased {
	h.t.Helper()
	s.Release(h, wire.LockRelease{RequestID: "rel", Name: name, FencingToken: token})
	return Expect[wire.LockReleased](h)
}

func testGrantRenewRelease(t *testing.T, open opener) {
	s := open(locks.Options{DefaultTTL: 7 * time.Second})
	a, b := NewHolder(t, ""), NewHolder(t, "")

	s.Acquire(a, wire.LockRequest{RequestID: "1", Name: "job"}) // no ttl: the default
	g1 := Expect[wire.LockGranted](a)
	if g1.RequestID != "1" || g1.Name != "job" || g1.FencingToken == 0 || g1.TTL != 7000 {
		t.Fatalf("grant %+v", g1)
	}
	// Renewal by the holder: same token, lease extended to the new ttl.
	s.Acquire(a, req("2", "job", 60000, 0))
	if g := Expect[wire.LockGranted](a); g.FencingToken != g1.FencingToken || g.TTL != 60000 || g.RequestID != "2" {
		t.Fatalf("renewal %+v, want token %d ttl 60000", g, g1.FencingToken)
	}
	s.Acquire(b, req("3", "job", 1000, 0))
	if d := Expect[wire.LockReleased](b); d.Success || d.Reason != wire.ReasonBusy || d.RequestID != "3" || d.Name != "job" {
		t.Fatalf("busy denial %+v", d)
	}
	// Neither a non-holder with the right token nor the holder with a
	// stale one can release.
	if d := release(s, b, "job", g1.FencingToken); d.Success || d.Reason != wire.ReasonNotHolder {
		t.Fatalf("non-holder release %+v", d)
	}
	if d := release(s, a, "job", g1.FencingToken-1); d.Success || d.Reason != wire.ReasonNotHolder {
		t.Fatalf("stale-token release %+v", d)
	}
	if d := release(s, a, "never-held", 1); d.Success || d.Reason != wire.ReasonNotHolder {
		t.Fatalf("release of a free lock %+v", d)
	}
	if d := release(s, a, "job", g1.FencingToken); !d.Success || d.RequestID != "rel" || d.Reason != "" {
		t.Fatalf("release %+v", d)
	}
	if d := release(s, a, "job", g1.FencingToken); d.Success {
		t.Fatalf("second release %+v", d)
	}
	// Every new grant has a strictly greater token, whoever gets it and
	// whatever the name.
	last := g1.FencingToken
	for i := range 6 {
		h := []*Holder{a, b}[i%2]
		name := []string{"job", "other"}[i/3]
		s.Acquire(h, req("g", name, 1000, 0))
		g := Expect[wire.LockGranted](h)
		if g.FencingToken <= last {
			t.Fatalf("token %d not above %d", g.FencingToken, last)
		}
		last = g.FencingToken
		if d := release(s, h, name, g.FencingToken); !d.Success {
			t.Fatalf("release %+v", d)
		}
	}
}

func testInvalidRequests(t *testing.T, open opener) {
	s := open(locks.Options{MaxTTL: time.Minute})
	h := NewHolder(t, "")
	for _, tc := range []struct {
		req    wire.LockRequest
		reason string
	}{
		{wire.LockRequest{RequestID: "a", Name: "bad name!"}, wire.ReasonInvalidName},
		{wire.LockRequest{RequestID: "b", Name: ""}, wire.ReasonInvalidName},
		{req("c", "ok", 60001, 0), wire.ReasonInvalidTTL},
		{req("d", "ok", 1000, 60001), wire.ReasonInvalidTTL},
		{wire.LockRequest{RequestID: "e", Name: "ok", TTL: new(uint64)}, wire.ReasonInvalidTTL}, // ttl 0
	} {
		s.Acquire(h, tc.req)
		d := Expect[wire.LockReleased](h)
		if d.Success || d.Reason != tc.reason || d.RequestID != tc.req.RequestID {
			t.Errorf("%+v: got %+v, want %s", tc.req, d, tc.reason)
		}
	}
	s.Release(h, wire.LockRelease{RequestID: "f", Name: "bad name!", FencingToken: 1})
	if d := Expect[wire.LockReleased](h); d.Success || d.Reason != wire.ReasonInvalidName || d.RequestID != "f" {
		t.Errorf("release of an invalid name: %+v", d)
	}
	// The longest lease and wait are allowed, and nothing was held.
	s.Acquire(h, req("g", "ok", 60000, 60000))
	if g := Expect[wire.LockGranted](h); g.TTL != 60000 {
		t.Errorf("grant %+v", g)
	}
	if q := h.Queued(); len(q) != 0 {
		t.Errorf("unexpected messages %v", q)
	}
}

func testExpiry(t *testing.T, open opener) {
	s := open(locks.Options{})
	a, b := NewHolder(t, ""), NewHolder(t, "")
	s.Acquire(a, req("1", "exp", 50, 0))
	g := Expect[wire.LockGranted](a)
	lost := Expect[wire.LockLost](a)
	if lost.Name != "exp" || lost.FencingToken != g.FencingToken || lost.Reason != wire.ReasonExpired {
		t.Fatalf("lost %+v", lost)
	}
	s.Acquire(b, req("2", "exp", 60000, 0))
	if g2 := Expect[wire.LockGranted](b); g2.FencingToken <= g.FencingToken {
		t.Fatalf("token after expiry %d <= %d", g2.FencingToken, g.FencingToken)
	}
	if d := release(s, a, "exp", g.FencingToken); d.Success {
		t.Fatalf("release after expiry %+v", d)
	}
	// A renewal moves the expiry: the renewed lease is the one that runs
	// out, with the same token.
	s.Acquire(a, req("3", "renewed", 60000, 0))
	g3 := Expect[wire.LockGranted](a)
	s.Acquire(a, req("4", "renewed", 50, 0))
	if g := Expect[wire.LockGranted](a); g.FencingToken != g3.FencingToken {
		t.Fatalf("renewal %+v", g)
	}
	if l := Expect[wire.LockLost](a); l.FencingToken != g3.FencingToken || l.Reason != wire.ReasonExpired {
		t.Fatalf("lost %+v", l)
	}
}

func testDisconnect(t *testing.T, open opener) {
	s := open(locks.Options{})
	holder, gone, next := NewHolder(t, ""), NewHolder(t, ""), NewHolder(t, "")
	s.Acquire(holder, req("h", "d", 60000, 0))
	g := Expect[wire.LockGranted](holder)
	s.Acquire(gone, req("g", "d", 60000, 60000)) // queued first, then gone
	s.Acquire(next, req("n", "d", 60000, 60000))
	s.Disconnect(gone)
	s.Disconnect(holder)
	gn := Expect[wire.LockGranted](next)
	if gn.RequestID != "n" || gn.FencingToken <= g.FencingToken {
		t.Fatalf("after the holder left: %+v (token before %d)", gn, g.FencingToken)
	}
	if q := gone.Queued(); len(q) != 0 {
		t.Fatalf("a disconnected waiter was sent %v", q)
	}
	if q := holder.Queued(); len(q) != 0 {
		t.Fatalf("a disconnected holder was sent %v", q)
	}
	// Disconnecting a holder of several locks frees them all.
	s.Acquire(next, req("x", "d2", 60000, 0))
	Expect[wire.LockGranted](next)
	later := NewHolder(t, "")
	s.Acquire(later, req("y", "d", 60000, 60000))
	s.Acquire(later, req("z", "d2", 60000, 60000))
	s.Disconnect(next)
	for range 2 {
		if g := Expect[wire.LockGranted](later); g.FencingToken <= gn.FencingToken {
			t.Fatalf("token %d after %d", g.FencingToken, gn.FencingToken)
		}
	}
}

func testWaitQueueFIFO(t *testing.T, open opener) {
	s := open(locks.Options{})
	holder := NewHolder(t, "")
	s.Acquire(holder, req("h", "q", 60000, 0))
	g := Expect[wire.LockGranted](holder)
	waiters := make([]*Holder, 4)
	for i := range waiters {
		waiters[i] = NewHolder(t, "")
		s.Acquire(waiters[i], req(fmt.Sprint(i), "q", 60000, 60000))
	}
	// A request without wait is still denied while others wait.
	late := NewHolder(t, "")
	s.Acquire(late, req("late", "q", 60000, 0))
	if d := Expect[wire.LockReleased](late); d.Reason != wire.ReasonBusy {
		t.Fatalf("no-wait request behind a queue: %+v", d)
	}
	release(s, holder, "q", g.FencingToken)
	last := g.FencingToken
	for i, w := range waiters {
		got := Expect[wire.LockGranted](w)
		if got.RequestID != fmt.Sprint(i) || got.FencingToken <= last {
			t.Fatalf("waiter %d got %+v after token %d", i, got, last)
		}
		last = got.FencingToken
		for _, x := range waiters[i+1:] {
			if q := x.Queued(); len(q) != 0 {
				t.Fatalf("a later waiter got %v while waiter %d holds the lock", q, i)
			}
		}
		if d := release(s, w, "q", got.FencingToken); !d.Success {
			t.Fatalf("release %+v", d)
		}
	}
}

func testWaitTimeout(t *testing.T, open opener) {
	s := open(locks.Options{})
	a, b, c := NewHolder(t, ""), NewHolder(t, ""), NewHolder(t, "")
	s.Acquire(a, req("1", "w", 60000, 0))
	g := Expect[wire.LockGranted](a)
	s.Acquire(b, req("2", "w", 1000, 30))
	if d := Expect[wire.LockReleased](b); d.Success || d.Reason != wire.ReasonTimeout || d.RequestID != "2" {
		t.Fatalf("got %+v, want timeout", d)
	}
	// The timed-out request is out of the queue: the next waiter is served.
	s.Acquire(c, req("3", "w", 1000, 60000))
	release(s, a, "w", g.FencingToken)
	if gc := Expect[wire.LockGranted](c); gc.RequestID != "3" {
		t.Fatalf("got %+v", gc)
	}
	if q := b.Queued(); len(q) != 0 {
		t.Fatalf("timed-out waiter was sent %v", q)
	}
}

func testFencingAcrossRestarts(t *testing.T, open opener) {
	var last uint64
	for round := range 3 {
		s := open(locks.Options{})
		h := NewHolder(t, "")
		for range 3 {
			s.Acquire(h, req("x", "f", 60000, 0))
			g := Expect[wire.LockGranted](h)
			if g.FencingToken <= last {
				t.Fatalf("round %d: token %d not above %d", round, g.FencingToken, last)
			}
			last = g.FencingToken
			release(s, h, "f", g.FencingToken)
		}
		s.Close()
	}
}

func testSameUserRelease(t *testing.T, open opener) {
	s := open(locks.Options{})
	alice, alice2, mallory := NewHolder(t, "alice"), NewHolder(t, "alice"), NewHolder(t, "mallory")
	s.Acquire(alice, req("1", "y", 60000, 0))
	g := Expect[wire.LockGranted](alice)
	if d := release(s, mallory, "y", g.FencingToken); d.Success || d.Reason != wire.ReasonNotHolder {
		t.Fatalf("other user's release %+v", d)
	}
	if d := release(s, alice2, "y", g.FencingToken); !d.Success {
		t.Fatalf("same user's release %+v", d)
	}
	if l := Expect[wire.LockLost](alice); l.Reason != wire.ReasonReleased || l.FencingToken != g.FencingToken || l.Name != "y" {
		t.Fatalf("holder notice %+v", l)
	}
	// Without a user, only the holder itself may release.
	anon, anon2 := NewHolder(t, ""), NewHolder(t, "")
	s.Acquire(anon, req("2", "z", 60000, 0))
	ga := Expect[wire.LockGranted](anon)
	if d := release(s, anon2, "z", ga.FencingToken); d.Success || d.Reason != wire.ReasonNotHolder {
		t.Fatalf("another anonymous holder's release %+v", d)
	}
	if d := release(s, anon, "z", ga.FencingToken); !d.Success {
		t.Fatalf("release %+v", d)
	}
}

func testTooMany(t *testing.T, open opener) {
	s := open(locks.Options{MaxLocks: 2})
	h, other := NewHolder(t, ""), NewHolder(t, "")
	s.Acquire(other, req("o", "busy", 60000, 0))
	Expect[wire.LockGranted](other)
	s.Acquire(h, req("1", "l1", 60000, 0))
	g1 := Expect[wire.LockGranted](h)
	s.Acquire(h, req("2", "busy", 60000, 60000)) // queued: it counts
	s.Acquire(h, req("3", "l3", 60000, 0))
	if d := Expect[wire.LockReleased](h); d.Reason != wire.ReasonTooMany || d.RequestID != "3" {
		t.Fatalf("third lock: %+v, want too_many", d)
	}
	s.Acquire(h, req("4", "l1", 60000, 0)) // renewal of a held lock
	if g := Expect[wire.LockGranted](h); g.RequestID != "4" || g.FencingToken != g1.FencingToken {
		t.Fatalf("renewal at the limit: %+v", g)
	}
	// Another holder has its own limit.
	s.Acquire(other, req("5", "l3", 60000, 0))
	Expect[wire.LockGranted](other)
	// A release makes room.
	release(s, h, "l1", g1.FencingToken)
	s.Acquire(h, req("6", "l6", 60000, 0))
	if g := Expect[wire.LockGranted](h); g.RequestID != "6" {
		t.Fatalf("after a release: %+v", g)
	}
}

// testRenewalAtExpiry: a renewal that races the lease's expiry either
// comes too late (LOCK_LOST expired, then a new grant with a new token) or
// is granted, and then the renewed lease holds: no LOCK_LOST for the old
// lease may follow the renewal's grant. The expiry timer once compared
// only the token, which a renewal keeps, and ended the renewed lease.
func testRenewalAtExpiry(t *testing.T, open opener) {
	s := open(locks.Options{})
	h := NewHolder(t, "")
	ctx := context.Background()
	for i := range 40 {
		name := fmt.Sprintf("race%d", i)
		s.Acquire(h, req("first", name, 1, 0)) // a 1 ms lease
		g := Expect[wire.LockGranted](h)
		s.Acquire(h, req("renew", name, 60000, 0))
		token := g.FencingToken
		switch m := h.Next().(type) {
		case wire.LockGranted: // renewed in time: same token, 60 s lease
			if m.RequestID != "renew" || m.FencingToken != token {
				t.Fatalf("%s: renewal %+v, want token %d", name, m, token)
			}
		case wire.LockLost: // expired first: the renewal is a new grant
			if m.Reason != wire.ReasonExpired || m.FencingToken != token {
				t.Fatalf("%s: lost %+v", name, m)
			}
			g2 := Expect[wire.LockGranted](h)
			if g2.RequestID != "renew" || g2.FencingToken <= token {
				t.Fatalf("%s: grant after expiry %+v (token before %d)", name, g2, token)
			}
			token = g2.FencingToken
		default:
			t.Fatalf("%s: got %#v", name, m)
		}
		// The lease just granted is the one in force.
		if cur, _, err := s.Fence(ctx, name, token); err != nil || !cur {
			t.Fatalf("%s: token %d not current after its grant (err %v); sent %v", name, token, err, h.Queued())
		}
		if d := release(s, h, name, token); !d.Success {
			t.Fatalf("%s: release of the renewed lock: %+v", name, d)
		}
		if q := h.Queued(); len(q) != 0 {
			t.Fatalf("%s: after the release: %v", name, q)
		}
	}
}

func testInspect(t *testing.T, open opener) {
	s := open(locks.Options{})
	ctx := context.Background()
	if in, err := s.Info(ctx, "in:a"); err != nil || in.Held || in.Name != "in:a" || in.Waiters != 0 {
		t.Fatalf("free lock: %+v, %v", in, err)
	}
	a, b, c := NewHolder(t, "alice"), NewHolder(t, "bob"), NewHolder(t, "")
	s.Acquire(a, req("1", "in:a", 60000, 0))
	g := Expect[wire.LockGranted](a)
	s.Acquire(b, req("2", "in:a", 60000, 60000))
	s.Acquire(c, req("3", "in:a", 60000, 60000))
	s.Acquire(c, req("4", "in:b", 60000, 0))
	gb := Expect[wire.LockGranted](c)
	s.Acquire(c, req("5", "other", 60000, 0))
	Expect[wire.LockGranted](c)

	in, err := s.Info(ctx, "in:a")
	if err != nil {
		t.Fatal(err)
	}
	if !in.Held || in.FencingToken != g.FencingToken || in.Holder.User != "alice" || in.Holder.Conn != a.ID() || in.Waiters != 2 {
		t.Fatalf("info %+v, want held by alice (conn %d) with token %d and 2 waiters", in, a.ID(), g.FencingToken)
	}
	// The service that granted it knows the time left (at most the lease).
	if !in.Expiry || in.ExpiresIn <= 0 || in.ExpiresIn > time.Minute {
		t.Fatalf("expiry %v (known %v)", in.ExpiresIn, in.Expiry)
	}
	list, more, err := s.List(ctx, "in:", 10)
	if err != nil || more || len(list) != 2 || list[0].Name != "in:a" || list[1].Name != "in:b" {
		t.Fatalf("list in: = %+v, more %v, err %v", list, more, err)
	}
	if list[1].FencingToken != gb.FencingToken || list[1].Holder.Conn != c.ID() || list[1].Waiters != 0 {
		t.Fatalf("list entry %+v", list[1])
	}
	if list, more, err := s.List(ctx, "", 2); err != nil || !more || len(list) != 2 || list[0].Name != "in:a" {
		t.Fatalf("list with limit 2: %+v, more %v, err %v", list, more, err)
	}
	if list, more, err := s.List(ctx, "none:", 5); err != nil || more || len(list) != 0 {
		t.Fatalf("list none: %+v, more %v, err %v", list, more, err)
	}
}

func testRevoke(t *testing.T, open opener) {
	s := open(locks.Options{})
	ctx := context.Background()
	a, b := NewHolder(t, "alice"), NewHolder(t, "alice")
	if _, err := s.Revoke(ctx, "rv"); !errors.Is(err, locks.ErrNotHeld) {
		t.Fatalf("revoke of a free lock: %v", err)
	}
	s.Acquire(a, req("1", "rv", 60000, 0))
	g := Expect[wire.LockGranted](a)
	s.Acquire(b, req("2", "rv", 60000, 60000))
	in, err := s.Revoke(ctx, "rv")
	if err != nil || in.FencingToken != g.FencingToken || !in.Held {
		t.Fatalf("revoke: %+v, %v", in, err)
	}
	if l := Expect[wire.LockLost](a); l.Reason != wire.ReasonRevoked || l.FencingToken != g.FencingToken || l.Name != "rv" {
		t.Fatalf("holder notice %+v", l)
	}
	// The waiter gets it, as after a release.
	gb := Expect[wire.LockGranted](b)
	if gb.RequestID != "2" || gb.FencingToken <= g.FencingToken {
		t.Fatalf("waiter after revoke: %+v (token before %d)", gb, g.FencingToken)
	}
	if cur, now, err := s.Fence(ctx, "rv", g.FencingToken); err != nil || cur || now != gb.FencingToken {
		t.Fatalf("fence of the revoked token: %v %d %v, want false %d", cur, now, err, gb.FencingToken)
	}
	if cur, now, err := s.Fence(ctx, "rv", gb.FencingToken); err != nil || !cur || now != gb.FencingToken {
		t.Fatalf("fence of the current token: %v %d %v", cur, now, err)
	}
	// The revoked holder can no longer release it.
	if d := release(s, a, "rv", g.FencingToken); d.Success {
		t.Fatalf("release by the revoked holder %+v", d)
	}
	if d := release(s, b, "rv", gb.FencingToken); !d.Success {
		t.Fatalf("release %+v", d)
	}
	if cur, now, err := s.Fence(ctx, "rv", gb.FencingToken); err != nil || cur || now != 0 {
		t.Fatalf("fence of a free lock: %v %d %v, want false 0", cur, now, err)
	}
	if q := a.Queued(); len(q) != 0 {
		t.Fatalf("revoked holder was sent %v", q)
	}
}

// testFenceAfterExpiry: once a lease runs out and another holder takes
// the lock, the first token is stale and the new one current.
func testFenceAfterExpiry(t *testing.T, open opener) {
	s := open(locks.Options{})
	ctx := context.Background()
	a, b := NewHolder(t, ""), NewHolder(t, "")
	s.Acquire(a, req("1", "fx", 50, 0))
	ga := Expect[wire.LockGranted](a)
	if cur, _, err := s.Fence(ctx, "fx", ga.FencingToken+1); err != nil || cur {
		t.Fatalf("a token above the holder's is current: %v %v", cur, err)
	}
	Expect[wire.LockLost](a)
	s.Acquire(b, req("2", "fx", 60000, 0))
	gb := Expect[wire.LockGranted](b)
	if cur, now, err := s.Fence(ctx, "fx", ga.FencingToken); err != nil || cur || now != gb.FencingToken {
		t.Fatalf("expired token: %v %d %v, want false %d", cur, now, err, gb.FencingToken)
	}
	if cur, _, err := s.Fence(ctx, "fx", gb.FencingToken); err != nil || !cur {
		t.Fatalf("new token: %v %v", cur, err)
	}
}
