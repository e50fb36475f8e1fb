package fence_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/topgun-go/topgun/fence"
	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/internal/testserver"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/locks/etcdlocks"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/client"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// holder is a Go client holding (or trying for) one lock.
type holder struct {
	lock *client.Lock
	lost chan string
}

func newHolder(t *testing.T, wsURL, name string) *holder {
	t.Helper()
	c, err := client.New(client.Options{URL: wsURL, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l, err := c.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{lock: l, lost: make(chan string, 4)}
	l.OnLost(func(reason string) { h.lost <- reason })
	return h
}

func (h *holder) acquire(t *testing.T, ttl time.Duration) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ok, err := h.lock.Acquire(ctx, ttl, client.WithWait(15*time.Second))
	if err != nil || !ok {
		t.Fatalf("acquire %s: %v %v", h.lock.Name(), ok, err)
	}
	return h.lock.FencingToken()
}

// staleAfterExpiry: a holder's lease runs out, another client takes the
// lock (through takeURL); the first token is then stale and the second
// current, whichever node fc asks.
func staleAfterExpiry(t *testing.T, holdURL, takeURL string, fc *fence.Client) {
	t.Helper()
	ctx := context.Background()
	a := newHolder(t, holdURL, "reports/daily")
	old := a.acquire(t, 300*time.Millisecond)
	if ok, err := fc.Check(ctx, "reports/daily", old); !ok || err != nil {
		t.Fatalf("holder's token %d: %v %v", old, ok, err)
	}
	select {
	case r := <-a.lost:
		if r != client.LostExpired {
			t.Fatalf("lost: %s", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the lease did not run out")
	}
	b := newHolder(t, takeURL, "reports/daily")
	cur := b.acquire(t, time.Minute)
	if cur <= old {
		t.Fatalf("token %d after %d", cur, old)
	}

	ok, err := fc.Check(ctx, "reports/daily", old)
	var stale *fence.StaleError
	if ok || !errors.As(err, &stale) || !errors.Is(err, fence.ErrStale) || stale.Current != cur || stale.Token != old {
		t.Fatalf("old token %d: %v %v, want a StaleError with current %d", old, ok, err, cur)
	}
	if ok, err := fc.Check(ctx, "reports/daily", cur); !ok || err != nil {
		t.Fatalf("new token %d: %v %v", cur, ok, err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.lock.Unlock(ctx2); err != nil {
		t.Fatal(err)
	}
	ok, err = fc.Check(ctx, "reports/daily", cur)
	if ok || !errors.As(err, &stale) || stale.Current != 0 {
		t.Fatalf("token of a released lock: %v %v", ok, err)
	}
}

func TestStaleTokenSingleNode(t *testing.T) {
	t.Parallel()
	s := testserver.StartServer(t, server.Config{Logger: quiet(), AdminToken: "fence-test"})
	staleAfterExpiry(t, s.URL, s.URL, fence.New("http://"+s.Addr, "fence-test"))
}

// TestStaleTokenCluster: two server nodes on one etcd; the lock is held
// through node 1 and taken through node 2, and both nodes answer the
// check from etcd.
func TestStaleTokenCluster(t *testing.T) {
	t.Parallel()
	etcd := etcdtest.New(t, 1)
	st := storage.NewMemory()
	t.Cleanup(func() { st.Close() })
	cfg := server.Config{Store: st, Logger: quiet(), Locks: etcdlocks.Backend(etcd.Client(t), etcdlocks.Config{Prefix: "/fence"})}
	n1, n2 := testserver.StartServer(t, cfg), testserver.StartServer(t, cfg)
	staleAfterExpiry(t, n1.URL, n2.URL, fence.New("http://"+n1.Addr, ""))
	staleAfterExpiry(t, n2.URL, n1.URL, fence.New("http://"+n2.Addr+"/", ""))
}

// TestRefusals: the server's refusals come back as *fence.Error with its
// message; an unreachable server as an error; never as a stale token.
func TestRefusals(t *testing.T) {
	t.Parallel()
	s := testserver.StartServer(t, server.Config{Logger: quiet(), AdminToken: "right"})
	ctx := context.Background()
	for _, tc := range []struct {
		token, name string
		status      int
		msg         string
	}{
		{"wrong", "x", http.StatusForbidden, "wrong admin token"},
		{"", "x", http.StatusUnauthorized, "credential required"},
		{"right", "bad name", http.StatusBadRequest, "invalid"},
	} {
		ok, err := fence.New("http://"+s.Addr, tc.token).Check(ctx, tc.name, 1)
		var fe *fence.Error
		if ok || !errors.As(err, &fe) || fe.Status != tc.status || !strings.Contains(fe.Message, tc.msg) || errors.Is(err, fence.ErrStale) {
			t.Errorf("%+v: %v %v", tc, ok, err)
		}
	}
	ok, err := fence.New(strings.Replace(testserver.RefusedURL(t), "ws://", "http://", 1), "").Check(ctx, "x", 1)
	if ok || err == nil || errors.Is(err, fence.ErrStale) {
		t.Errorf("unreachable server: %v %v", ok, err)
	}
}
