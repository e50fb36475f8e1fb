//go:build !js

package client_test

import (
	"testing"

	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
)

// TestBoundedRightsSurviveRestart: rights granted to a replica are in its
// store; after a restart of the client on that store, offline, it spends
// exactly those and no more, and its sales reach the server on reconnect.
// (The store is a memory store the client does not own, so it outlives
// the client; filestore keeps the same records durably, checked by
// storetest.RunBounded: importing it here would link bbolt into the
// client's tests, which internal/testserver forbids.)
func TestBoundedRightsSurviveRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	defer st.Close()
	open := func() (*client.Client, store.Store) {
		opts := fastOptions(srv.url)
		opts.Store = st
		return newClient(t, opts), st
	}
	seller := readyClient(t, srv.url)
	sb := mustBounded(t, seller, "tickets", -5)
	if err := sb.Increment(10); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stock stored", sb.Synced)

	c, st := open()
	waitReady(t, c)
	b := mustBounded(t, c, "tickets", -5)
	g, err := b.RequestRights(ctxT(t), 4)
	if err != nil || g != 4 || b.Available() != 4 {
		t.Fatalf("RequestRights = %d, %v; available %d", g, err, b.Available())
	}
	c.SetOnline(false)
	if !b.TryDecrement(1) {
		t.Fatal("TryDecrement with rights failed")
	}
	c.Close()

	c, _ = open() // restarted, and offline from the start
	c.SetOnline(false)
	b = mustBounded(t, c, "tickets", -5)
	if b.Available() != 3 || b.Get() != 9-5 {
		t.Fatalf("after restart: available %d value %d", b.Available(), b.Get())
	}
	if b.TryDecrement(4) {
		t.Fatal("decremented beyond the rights held")
	}
	for range 3 {
		if !b.TryDecrement(1) {
			t.Fatal("TryDecrement with rights failed")
		}
	}
	if b.TryDecrement(1) || b.Available() != 0 {
		t.Fatalf("rights did not run out: available %d", b.Available())
	}
	c.SetOnline(true)
	eventually(t, "offline sales synced", b.Synced)
	eventually(t, "the seller sees them", func() bool { return sb.Get() == 10-4-5 })
	c.Close()
}

// TestBoundedTryDecrementLater: the write-behind path spends only rights
// held, stores before Flush returns (a restart keeps the spends), and the
// server gets them.
func TestBoundedTryDecrementLater(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	defer st.Close()
	open := func() *client.Client {
		opts := fastOptions(srv.url)
		opts.Store = st
		return newClient(t, opts)
	}
	seller := readyClient(t, srv.url)
	sb := mustBounded(t, seller, "seats", 0)
	if err := sb.Increment(20); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stock stored", sb.Synced)

	c := open()
	waitReady(t, c)
	b := mustBounded(t, c, "seats", 0)
	if b.TryDecrementLater(1) {
		t.Fatal("TryDecrementLater without rights succeeded")
	}
	if g, err := b.RequestRights(ctxT(t), 5); err != nil || g != 5 {
		t.Fatalf("RequestRights = %d, %v", g, err)
	}
	for i := range 5 {
		if !b.TryDecrementLater(1) {
			t.Fatalf("TryDecrementLater %d with rights failed", i)
		}
	}
	if b.TryDecrementLater(1) || b.Available() != 0 || b.Get() != 15 {
		t.Fatalf("after 5 spends: available %d value %d", b.Available(), b.Get())
	}
	if err := b.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	saved, ok, err := st.(store.BoundedStore).LoadBounded(ctxT(t), "seats")
	if err != nil || !ok || saved.N[c.NodeID()] != 5 {
		t.Fatalf("stored %+v, %v, %v; want n=5", saved, ok, err)
	}
	eventually(t, "the server has the spends", b.Synced)
	eventually(t, "the seller sees them", func() bool { return sb.Get() == 15 })
	c.Close()
}
