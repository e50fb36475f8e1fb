package etcdstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/etcdtest"
)

// TestKillLeader SIGKILLs the leader of a 3-member cluster while writers
// merge, and checks that every acknowledged merge is stored afterwards:
// through the survivors, through the restarted member alone, and in the
// state a watch on another client has delivered. Writers retry failed
// merges, as the server does: writes in flight at the kill fail with
// "request timed out, possibly due to previous leader failure".
func TestKillLeader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := etcdtest.New(t, 3)
	s := newStore(t, c.Client(t), "")
	w := newStore(t, c.Client(t), "")
	const (
		name    = "kill"
		writers = 8
		phase   = 100 // acknowledgements before the kill, after it, after the restart
	)
	col := newCollector()
	if _, err := w.WatchCounter(ctx, name, col.fn); err != nil {
		t.Fatal(err)
	}

	var (
		acks     atomic.Int64
		failures atomic.Int64
		acked    [writers]int64 // per writer, the last acknowledged value
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for g := range writers {
		wg.Go(func() {
			node := fmt.Sprintf("w%d", g)
			for v := int64(1); ; v++ {
				select {
				case <-stop:
					return
				default:
				}
				for {
					err := s.MergeCounter(ctx, name, crdt.State{P: map[string]int64{node: v}})
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						t.Errorf("writer %d: %v", g, err)
						return
					}
					if failures.Add(1) <= 3 {
						t.Logf("writer %d: %v (retrying)", g, err)
					}
				}
				acked[g] = v
				acks.Add(1)
			}
		})
	}
	waitAcks := func(n int64) {
		t.Helper()
		for acks.Load() < n {
			select {
			case <-ctx.Done():
				t.Fatalf("%d acknowledgements of %d: %v", acks.Load(), n, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	waitAcks(phase)
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(leader)
	killedAt := acks.Load()
	waitAcks(killedAt + phase)
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	waitAcks(acks.Load() + phase)
	close(stop)
	wg.Wait()
	t.Logf("%d merges acknowledged, %d before the kill; %d attempts failed and were retried", acks.Load(), killedAt, failures.Load())

	check := func(label string, st crdt.State) {
		t.Helper()
		for g, v := range acked {
			node := fmt.Sprintf("w%d", g)
			if st.P[node] < v {
				t.Errorf("%s: %s = %d, acknowledged %d", label, node, st.P[node], v)
			}
		}
	}
	final, err := s.LoadCounter(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	check("after the restart", final)
	restarted := newStore(t, newClient(t, c.Endpoints()[leader:leader+1]), "")
	st, err := restarted.LoadCounter(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	check("through the restarted member", st)
	col.waitEqual(t, final)
}

// TestWatchLosesLeader: a watch on a member that has lost its leader is
// closed by etcd (WithRequireLeader) and, once the cluster has a quorum
// again, reloaded and registered anew; writes made after that arrive.
func TestWatchLosesLeader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := etcdtest.New(t, 3)
	// The watch goes through member 0 only; members 1 and 2 die.
	w := newStore(t, newClient(t, c.Endpoints()[:1]), "")
	s := newStore(t, c.Client(t), "")
	regs := make(chan int64, 100) // watch registrations
	broke := make(chan error, 100)
	w.beforeWatch = func(rev int64) {
		select {
		case regs <- rev:
		default:
		}
	}
	w.watchBroke = func(err error) {
		select {
		case broke <- err:
		default:
		}
	}
	const name = "c"
	col := newCollector()
	if _, err := w.WatchCounter(ctx, name, col.fn); err != nil {
		t.Fatal(err)
	}
	mustMerge(t, s, name, ps("x", 1))
	col.waitEqual(t, ps("x", 1))
	<-regs // the first registration, in WatchCounter

	c.Kill(1)
	c.Kill(2)
	// etcd closes leaderless streams after 3 election timeouts.
	select {
	case err := <-broke:
		if err == nil || !strings.Contains(err.Error(), "no leader") {
			t.Errorf("watch broke with %v, want \"etcdserver: no leader\"", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("watch on a leaderless member was not closed")
	}
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := ps("x", 2, "y", 5)
	for {
		err := s.MergeCounter(ctx, name, want)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	col.waitEqual(t, want)
	select {
	case <-regs:
	case <-time.After(hangGuard):
		t.Fatal("no watch registered after the reload")
	}
	if err := c.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
}
