package etcdstore

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/topgun-go/topgun/crdt"
)

// writers is how many goroutines write at once: a server has many
// connections, each waiting on its own durable write (as in boltstore).
const writers = 128

// BenchmarkMergeCounter measures durable single-entry merges from many
// writers, each its own node of one counter: the case a key per entry is
// for (with one key per counter, every writer's compare would race every
// other's). It runs against the test binary's one-member cluster.
func BenchmarkMergeCounter(b *testing.B) {
	s := newStore(b, newClient(b, shared.Endpoints()), uniquePrefix())
	ctx := context.Background()
	var ids atomic.Int64
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		node := fmt.Sprintf("node-%d", ids.Add(1))
		for v := int64(1); pb.Next(); v++ {
			if err := s.MergeCounter(ctx, "bench", crdt.State{P: map[string]int64{node: v}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
