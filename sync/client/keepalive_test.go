//go:build !js

package client_test

import (
	"testing"
	"time"

	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/sync/client"
)

// TestKeepAlive: with KeepAlive a holder keeps a 600 ms lease for five
// TTLs, with the same fencing token, while another client is refused;
// after Unlock the renewals stop and the other client gets it. Without
// KeepAlive the same lease is lost at its TTL.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	holder, other := readyClient(t, srv.url), readyClient(t, srv.url)
	const ttl = 600 * time.Millisecond

	l := mustLock(t, holder, "ka")
	lost := make(chan string, 4)
	l.OnLost(func(reason string) { lost <- reason })
	if ok, err := l.Acquire(ctxT(t), ttl, client.KeepAlive()); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	token := l.FencingToken()
	o := mustLock(t, other, "ka")
	for end := time.Now().Add(5 * ttl); time.Now().Before(end); time.Sleep(ttl / 4) {
		if ok, err := o.Acquire(ctxT(t), ttl); ok || err != nil {
			t.Fatalf("other Acquire while kept alive = %v, %v", ok, err)
		}
	}
	select {
	case r := <-lost:
		t.Fatalf("lost %q while kept alive", r)
	default:
	}
	if !l.IsLocked() || l.FencingToken() != token {
		t.Fatalf("held %v token %d, want the first token %d", l.IsLocked(), l.FencingToken(), token)
	}
	if err := l.Unlock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ok, err := o.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("other Acquire after Unlock = %v, %v", ok, err)
	}
	if err := o.Unlock(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	// Without KeepAlive: lost at the TTL.
	if ok, err := l.Acquire(ctxT(t), ttl); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	select {
	case r := <-lost:
		if r != client.LostExpired {
			t.Fatalf("lost %q, want %q", r, client.LostExpired)
		}
	case <-time.After(waitTimeout):
		t.Fatal("lease without keep-alive not lost")
	}
	if ok, err := o.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("other Acquire after expiry = %v, %v", ok, err)
	}
}

// TestKeepAliveRenewalFailure: renewals the server refuses (here: a rate
// limit far below the renewal rate) end the lease at its TTL, and the
// holder is told (LostExpired) instead of believing it still holds it.
func TestKeepAliveRenewalFailure(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.RateLimit = 0.2 // frames/s: the handshake, the request and one renewal fit the burst
		c.RateBurst = 3
	})
	opts := fastOptions(srv.url)
	opts.PingInterval = time.Hour
	opts.PingTimeout = 2 * time.Hour
	c := newClient(t, opts)
	waitReady(t, c)
	l := mustLock(t, c, "ka-fail")
	lost := make(chan string, 4)
	l.OnLost(func(reason string) { lost <- reason })
	if ok, err := l.Acquire(ctxT(t), 600*time.Millisecond, client.KeepAlive()); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	select {
	case r := <-lost:
		if r != client.LostExpired {
			t.Fatalf("lost %q, want %q", r, client.LostExpired)
		}
	case <-time.After(waitTimeout):
		t.Fatal("refused renewals not reported")
	}
	if l.IsLocked() {
		t.Fatal("IsLocked after the lease ended")
	}
}
