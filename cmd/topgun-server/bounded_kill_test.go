package main

import (
	"syscall"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// TestKill9KeepsBoundedRights: a bounded counter on the bbolt store
// survives SIGKILLs: stock and sales acknowledged before a kill are there
// after it, a grant answered before a kill stays with its replica and is
// never granted again, and no replica can spend more than it was granted.
func TestKill9KeepsBoundedRights(t *testing.T) {
	dir := t.TempDir()
	const name = "stock"
	round := func(fn func(replica func(node string) *client)) {
		t.Helper()
		cmd, url := startProc(t, "--no-auth", "--data", dir)
		fn(func(node string) *client {
			c := connect(t, url)
			if _, ok := c.call(wire.DeviceHello{NodeID: node, Views: wire.ViewsCompact}).(wire.DeviceAck); !ok {
				t.Fatal("no DEVICE_ACK")
			}
			if _, ok := c.call(wire.BCounterRequest{Name: name, Min: 0}).(wire.BCounterUpdate); !ok {
				t.Fatal("no BCOUNTER_UPDATE")
			}
			return c
		})
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	// sell sends node's sales so far and returns the answer: an ERROR, or
	// the view that carries them (views of other replicas' sales may come
	// first).
	sell := func(c *client, node string, total int64) wire.Message {
		t.Helper()
		m := c.call(wire.BCounterSync{Name: name, State: crdt.BState{N: map[string]int64{node: total}}})
		for {
			if u, ok := m.(wire.BCounterUpdate); !ok || u.State.N[node] == total {
				return m
			}
			m = c.read()
		}
	}
	grant := func(c *client, amount int64) int64 {
		t.Helper()
		g, ok := c.call(wire.BCounterRights{RequestID: "r", Name: name, Amount: amount}).(wire.BCounterGrant)
		if !ok {
			t.Fatalf("no BCOUNTER_GRANT: %+v", g)
		}
		return g.Granted
	}
	value := func(m wire.Message) int64 {
		t.Helper()
		u, ok := m.(wire.BCounterUpdate)
		if !ok {
			t.Fatalf("got %#v, want BCOUNTER_UPDATE", m)
		}
		b, err := crdt.BoundedFromState(u.State)
		if err != nil {
			t.Fatal(err)
		}
		return b.Value()
	}

	round(func(replica func(string) *client) {
		shop := replica("shop")
		if v := value(shop.call(wire.BCounterSync{Name: name, State: crdt.BState{P: map[string]int64{"shop": 100},
			T: map[string]map[string]int64{"shop": {wire.BrokerNode: 100}}}})); v != 100 {
			t.Fatalf("stock %d, want 100", v)
		}
		a := replica("a")
		if g := grant(a, 30); g != 30 {
			t.Fatalf("a granted %d, want 30", g)
		}
		if v := value(sell(a, "a", 10)); v != 90 {
			t.Fatalf("after a's 10 sales: %d, want 90", v)
		}
	})
	round(func(replica func(string) *client) {
		// a's grant and sales survived; the broker holds the other 70 and
		// grants exactly those.
		b := replica("b")
		if g := grant(b, 1000); g != 70 {
			t.Fatalf("b granted %d after the kill, want the broker's 70 (30 stay with a)", g)
		}
		if g := grant(b, 1); g != 0 {
			t.Fatalf("b granted %d more, want 0", g)
		}
	})
	round(func(replica func(string) *client) {
		a, b := replica("a"), replica("b")
		if v := value(sell(a, "a", 30)); v != 70 {
			t.Fatalf("after a's remaining 20: %d, want 70", v)
		}
		if e, ok := sell(a, "a", 31).(wire.Error); !ok || e.Code != 403 {
			t.Fatalf("a's 31st sale: %+v, want ERROR 403", e)
		}
		if v := value(sell(b, "b", 70)); v != 0 {
			t.Fatalf("after b's 70: %d, want 0", v)
		}
		if e, ok := sell(b, "b", 71).(wire.Error); !ok || e.Code != 403 {
			t.Fatalf("b's 71st sale: %+v, want ERROR 403", e)
		}
	})
}
