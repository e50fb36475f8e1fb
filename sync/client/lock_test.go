//go:build !js

package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/wire"
)

// fenced is a resource that accepts a write only with a token at least as
// high as any it has seen, and records every attempt.
type fenced struct {
	mu       sync.Mutex
	highest  uint64
	accepted int
	rejected []string
}

func (f *fenced) write(token uint64, who string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.highest {
		f.rejected = append(f.rejected, fmt.Sprintf("%s with token %d < %d", who, token, f.highest))
		return false
	}
	f.highest = token
	f.accepted++
	return true
}

func TestLockContention(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const clients, rounds = 50, 20
	cs := make([]*client.Client, clients)
	for i := range cs {
		cs[i] = newClient(t, fastOptions(srv.url))
	}
	for _, c := range cs {
		waitReady(t, c)
	}
	var holders atomic.Int32
	var res fenced
	var wg sync.WaitGroup
	for i, c := range cs {
		l := mustLock(t, c, "contended")
		wg.Go(func() {
			for r := range rounds {
				ok, err := l.Acquire(ctxT(t), 10*time.Second, client.WithWait(time.Minute))
				if err != nil || !ok {
					t.Errorf("client %d round %d: Acquire = %v, %v", i, r, ok, err)
					return
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("client %d round %d: %d holders at once", i, r, n)
				}
				if !res.write(l.FencingToken(), fmt.Sprintf("client %d round %d", i, r)) {
					t.Errorf("client %d round %d: live holder's write rejected", i, r)
				}
				holders.Add(-1)
				if err := l.Unlock(ctxT(t)); err != nil {
					t.Errorf("client %d round %d: Unlock: %v", i, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if res.accepted != clients*rounds || len(res.rejected) != 0 {
		t.Fatalf("accepted %d of %d writes; rejected %v", res.accepted, clients*rounds, res.rejected)
	}
}

// TestLockContentionRetry contends without server-side waiting: busy
// answers are (false, nil) and callers retry.
func TestLockContentionRetry(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const clients, rounds = 10, 10
	var holders atomic.Int32
	var res fenced
	var busy atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		l := mustLock(t, readyClient(t, srv.url), "retry")
		wg.Go(func() {
			for r := 0; r < rounds; {
				ok, err := l.Acquire(ctxT(t), 10*time.Second)
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				if !ok {
					busy.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				if !res.write(l.FencingToken(), fmt.Sprintf("client %d round %d", i, r)) {
					t.Errorf("live holder's write rejected")
				}
				holders.Add(-1)
				if err := l.Unlock(ctxT(t)); err != nil {
					t.Errorf("Unlock: %v", err)
				}
				r++
			}
		})
	}
	wg.Wait()
	if res.accepted != clients*rounds || len(res.rejected) != 0 {
		t.Fatalf("accepted %d of %d; rejected %v", res.accepted, clients*rounds, res.rejected)
	}
	t.Logf("%d busy answers", busy.Load())
}

func TestLockBasics(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a, b := readyClient(t, srv.url), readyClient(t, srv.url)
	la, lb := mustLock(t, a, "basic"), mustLock(t, b, "basic")
	if la2 := mustLock(t, a, "basic"); la2 != la {
		t.Fatal("Lock returned a different handle for the same name")
	}
	if la.IsLocked() || la.FencingToken() != 0 {
		t.Fatal("fresh lock reports held")
	}
	if err := la.Unlock(ctxT(t)); err != nil {
		t.Fatalf("Unlock of a lock not held = %v", err)
	}
	ok, err := la.Acquire(ctxT(t), time.Minute)
	if !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	tok := la.FencingToken()
	if !la.IsLocked() || tok == 0 {
		t.Fatalf("after Acquire: IsLocked %v token %d", la.IsLocked(), tok)
	}
	// Busy is (false, nil).
	if ok, err := lb.Acquire(ctxT(t), time.Minute); ok || err != nil {
		t.Fatalf("Acquire of a held lock = %v, %v; want false, nil", ok, err)
	}
	// Renewal keeps the token.
	if ok, err := la.Acquire(ctxT(t), 2*time.Minute); !ok || err != nil || la.FencingToken() != tok {
		t.Fatalf("renewal = %v, %v, token %d; want true, nil, %d", ok, err, la.FencingToken(), tok)
	}
	// A wait that runs out while the lock stays held is (false, nil) too.
	ok, err = lb.Acquire(ctxT(t), time.Minute, client.WithWait(10*time.Millisecond))
	if ok || err != nil {
		t.Fatalf("timed-out wait = %v, %v; want false, nil", ok, err)
	}
	// Invalid ttl: above the server's maximum.
	ok, err = lb.Acquire(ctxT(t), 2*time.Hour)
	if ok || !errors.Is(err, client.ErrInvalidTTL) {
		t.Fatalf("Acquire with 2h ttl = %v, %v; want ErrInvalidTTL", ok, err)
	}
	if _, err := lb.Acquire(ctxT(t), -time.Second); !errors.Is(err, client.ErrInvalidTTL) {
		t.Fatalf("negative ttl = %v", err)
	}
	// Unlock, then B gets a higher token.
	if err := la.Unlock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if la.IsLocked() || la.FencingToken() != 0 {
		t.Fatal("still held after Unlock")
	}
	if ok, err := lb.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("Acquire after Unlock = %v, %v", ok, err)
	}
	if lb.FencingToken() <= tok {
		t.Fatalf("token %d not above %d", lb.FencingToken(), tok)
	}
	// Default ttl (0) is accepted.
	ld := mustLock(t, a, "default-ttl")
	if ok, err := ld.Acquire(ctxT(t), 0); !ok || err != nil {
		t.Fatalf("Acquire with default ttl = %v, %v", ok, err)
	}
}

func TestLockExpiry(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := readyClient(t, srv.url)
	l := mustLock(t, c, "short")
	lost := make(chan string, 4)
	l.OnLost(func(reason string) { lost <- reason })
	if ok, err := l.Acquire(ctxT(t), 30*time.Millisecond); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	select {
	case r := <-lost:
		if r != client.LostExpired {
			t.Fatalf("OnLost reason %q, want %q", r, client.LostExpired)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no OnLost after the lease expired")
	}
	if l.IsLocked() || l.FencingToken() != 0 {
		t.Fatal("IsLocked after expiry")
	}
	// Unlock after loss is a no-op, and the lock can be taken again.
	if err := l.Unlock(ctxT(t)); err != nil {
		t.Fatalf("Unlock after loss = %v", err)
	}
	other := mustLock(t, readyClient(t, srv.url), "short")
	if ok, err := other.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("Acquire after expiry = %v, %v", ok, err)
	}
	select {
	case r := <-lost:
		t.Fatalf("extra OnLost %q", r)
	default:
	}
}

func TestLockDisconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	a := newClient(t, fastOptions(px.url()))
	waitReady(t, a)
	b := readyClient(t, srv.url)
	la, lb := mustLock(t, a, "conn"), mustLock(t, b, "conn")
	lost := make(chan string, 4)
	la.OnLost(func(reason string) { lost <- reason })
	if ok, err := la.Acquire(ctxT(t), time.Hour); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}

	// A pending wait on the dropped connection fails with ErrDisconnected.
	a2 := mustLock(t, a, "conn-pending")
	if ok, err := lb.Acquire(ctxT(t), time.Hour); ok || err != nil {
		t.Fatalf("B Acquire = %v, %v", ok, err)
	}
	bHold := mustLock(t, b, "conn-pending")
	if ok, err := bHold.Acquire(ctxT(t), time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	pending := make(chan error, 1)
	go func() {
		_, err := a2.Acquire(ctxT(t), time.Hour, client.WithWait(time.Hour))
		pending <- err
	}()
	// B waits in the queue for "conn".
	granted := make(chan error, 1)
	go func() {
		ok, err := lb.Acquire(ctxT(t), time.Hour, client.WithWait(time.Hour))
		if err == nil && !ok {
			err = errors.New("not granted")
		}
		granted <- err
	}()

	px.Cut()
	select {
	case r := <-lost:
		if r != client.LostDisconnected {
			t.Fatalf("OnLost %q, want %q", r, client.LostDisconnected)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no OnLost after disconnect")
	}
	if la.IsLocked() {
		t.Fatal("IsLocked after disconnect")
	}
	select {
	case err := <-pending:
		if !errors.Is(err, client.ErrDisconnected) {
			// The request may not have been sent before the cut; then it
			// waits for the reconnect and gets a grant or busy instead.
			t.Logf("pending Acquire ended with %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("pending Acquire did not end")
	}
	if err := <-granted; err != nil {
		t.Fatalf("B after A's disconnect: %v", err)
	}
	if !lb.IsLocked() {
		t.Fatal("B not holding")
	}
	px.Restore()
}

// TestLockReleasedOnClose: closing the holder's client frees the lock.
func TestLockReleasedOnClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a, b := readyClient(t, srv.url), readyClient(t, srv.url)
	la, lb := mustLock(t, a, "close"), mustLock(t, b, "close")
	lost := make(chan string, 1)
	la.OnLost(func(r string) { lost <- r })
	if ok, err := la.Acquire(ctxT(t), time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := lb.Acquire(ctxT(t), time.Hour); ok || err != nil {
		t.Fatalf("busy = %v, %v", ok, err)
	}
	a.Close()
	if r := <-lost; r != client.LostDisconnected {
		t.Fatalf("OnLost %q", r)
	}
	eventually(t, "B acquires after A closed", func() bool {
		ok, err := lb.Acquire(ctxT(t), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	if _, err := la.Acquire(ctxT(t), time.Hour); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Acquire on closed client = %v", err)
	}
}

// TestUnlockByNonHolder: a LOCK_RELEASE with the right name and token from
// another connection is refused, and the holder keeps the lock.
func TestUnlockByNonHolder(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a := readyClient(t, srv.url)
	la := mustLock(t, a, "mine")
	if ok, err := la.Acquire(ctxT(t), time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	r := dialRaw(t, srv.url)
	r.send(wire.LockRelease{RequestID: "steal", Name: "mine", FencingToken: la.FencingToken()})
	rep := next[wire.LockReleased](r)
	if rep.RequestID != "steal" || rep.Success || rep.Reason != wire.ReasonNotHolder {
		t.Fatalf("release by non-holder answered %+v", rep)
	}
	// Still held: another request is busy.
	r.send(wire.LockRequest{RequestID: "try", Name: "mine"})
	if rep := next[wire.LockReleased](r); rep.Success || rep.Reason != wire.ReasonBusy {
		t.Fatalf("request after failed steal answered %+v", rep)
	}
	if !la.IsLocked() {
		t.Fatal("holder lost the lock")
	}
	if err := la.Unlock(ctxT(t)); err != nil {
		t.Fatalf("holder's Unlock = %v", err)
	}
	r.send(wire.LockRequest{RequestID: "again", Name: "mine"})
	if g := next[wire.LockGranted](r); g.RequestID != "again" {
		t.Fatalf("grant %+v", g)
	}
}

// TestLockWaitOrder: three waiters get the lock in request order.
func TestLockWaitOrder(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	holder := readyClient(t, srv.url)
	lh := mustLock(t, holder, "queue")
	if ok, err := lh.Acquire(ctxT(t), time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 3 {
		rec := &recordingDialer{notify: make(chan wire.Message, 64)}
		opts := fastOptions(srv.url)
		opts.Dialer = rec.dial
		c := newClient(t, opts)
		waitReady(t, c)
		l := mustLock(t, c, "queue")
		wg.Go(func() {
			ok, err := l.Acquire(ctxT(t), time.Hour, client.WithWait(time.Hour))
			if !ok || err != nil {
				t.Errorf("waiter %d: %v, %v", i, ok, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := l.Unlock(ctxT(t)); err != nil {
				t.Errorf("waiter %d Unlock: %v", i, err)
			}
		})
		// Barrier: the LOCK_REQUEST is on the wire; a counter sync written
		// after it on the same connection is answered only after the
		// server has read (and queued) the request.
		for m := range rec.notify {
			if _, ok := m.(wire.LockRequest); ok {
				break
			}
		}
		cnt := mustCounter(t, c, "barrier")
		cnt.Increment()
		if err := cnt.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lh.Unlock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(order) != 3 || order[0] != 0 || order[1] != 1 || order[2] != 2 {
		t.Fatalf("grant order %v, want [0 1 2]", order)
	}
}

// TestAcquireWaitsForReady: Acquire on a client that is not ready yet waits
// for the connection, and gives up with ctx.
func TestAcquireWaitsForReady(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	px.Cut()
	c := newClient(t, fastOptions(px.url()))
	l := mustLock(t, c, "later")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire while offline = %v, want deadline exceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		ok, err := l.Acquire(ctxT(t), time.Minute)
		if err == nil && !ok {
			err = errors.New("busy")
		}
		done <- err
	}()
	px.Restore()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !l.IsLocked() {
		t.Fatal("not held")
	}
}

// TestAbandonedGrantReleased: a grant that arrives after the caller gave
// up is released, so the lock does not stay taken.
func TestAbandonedGrantReleased(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a := readyClient(t, srv.url)
	rec := &recordingDialer{notify: make(chan wire.Message, 64)}
	opts := fastOptions(srv.url)
	opts.Dialer = rec.dial
	b := newClient(t, opts)
	waitReady(t, b)
	la, lb := mustLock(t, a, "abandon"), mustLock(t, b, "abandon")
	if ok, err := la.Acquire(ctxT(t), time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := lb.Acquire(ctx, time.Hour, client.WithWait(time.Hour))
		done <- err
	}()
	// Give up once the request is queued: B's subsequent frames are
	// answered after it.
	for m := range rec.notify {
		if _, ok := m.(wire.LockRequest); ok {
			break
		}
	}
	cb := mustCounter(t, b, "b-barrier")
	cb.Increment()
	if err := cb.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Acquire = %v, want context.Canceled", err)
	}
	if err := la.Unlock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The abandoned grant goes to B and is released; C eventually gets it.
	lc := mustLock(t, readyClient(t, srv.url), "abandon")
	if ok, err := lc.Acquire(ctxT(t), time.Hour, client.WithWait(time.Minute)); !ok || err != nil {
		t.Fatalf("C Acquire = %v, %v", ok, err)
	}
	if lb.IsLocked() {
		t.Fatal("B holds an abandoned lock")
	}
	var releases int
	for _, m := range rec.frames() {
		if r, ok := m.(wire.LockRelease); ok && r.Name == "abandon" {
			releases++
		}
	}
	if releases != 1 {
		t.Fatalf("B sent %d LOCK_RELEASE, want 1", releases)
	}
}
