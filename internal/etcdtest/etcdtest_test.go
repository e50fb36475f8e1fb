package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/topgun-go/topgun/internal/etcdtest"
)

// TestKillLeader: a 3-member cluster keeps serving writes after its leader
// is killed, and the killed member rejoins.
func TestKillLeader(t *testing.T) {
	c := etcdtest.New(t, 3)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(l)
	// Writes in flight during the election fail ("request timed out,
	// possibly due to previous leader failure"); a retry succeeds.
	for {
		_, err := cli.Put(ctx, "k", "2")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	if err := c.Restart(ctx, l); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.Kvs[0].Value); got != "2" {
		t.Fatalf("k = %q, want 2", got)
	}
}
