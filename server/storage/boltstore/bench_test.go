package boltstore

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
)

// writers is how many goroutines write at once in the parallel benchmarks:
// a server has many connections, each waiting on its own durable write.
const writers = 128

func benchMerge(b *testing.B, s *Store) {
	ctx := context.Background()
	var ids atomic.Int64
	// RunParallel starts SetParallelism × GOMAXPROCS goroutines.
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := ids.Add(1)
		name, node := fmt.Sprintf("c%d", id%16), fmt.Sprintf("node-%d", id)
		for v := int64(1); pb.Next(); v++ {
			if err := s.MergeCounter(ctx, name, crdt.State{P: map[string]int64{node: v}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkMergeCounterParallel measures durable merges from many writers
// with the default Options: concurrent writes share fsyncs via db.Batch.
func BenchmarkMergeCounterParallel(b *testing.B) {
	s := open(b, b.TempDir(), Options{})
	defer s.Close()
	benchMerge(b, s)
}

// BenchmarkMergeCounterUpdateEach is the baseline: the same durable merges,
// each in its own db.Update (one fsync per write).
func BenchmarkMergeCounterUpdateEach(b *testing.B) {
	s := open(b, b.TempDir(), Options{})
	defer s.Close()
	s.write = s.db.Update
	benchMerge(b, s)
}

// BenchmarkReserveFencing measures durable single-token reservations from
// many goroutines.
func BenchmarkReserveFencing(b *testing.B) {
	s := open(b, b.TempDir(), Options{})
	defer s.Close()
	ctx := context.Background()
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.ReserveFencing(ctx, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
}

// BenchmarkBatchSettings sweeps MaxBatchSize and MaxBatchDelay; it chose the
// defaults. It runs only with TOPGUN_BENCH_SWEEP=1, being slow.
func BenchmarkBatchSettings(b *testing.B) {
	if os.Getenv("TOPGUN_BENCH_SWEEP") == "" {
		b.Skip("set TOPGUN_BENCH_SWEEP=1 to sweep batch settings")
	}
	for _, size := range []int{100, 1000} {
		for _, delay := range []time.Duration{500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond} {
			b.Run(fmt.Sprintf("size=%d/delay=%v", size, delay), func(b *testing.B) {
				s := open(b, b.TempDir(), Options{MaxBatchSize: size, MaxBatchDelay: delay})
				defer s.Close()
				benchMerge(b, s)
			})
		}
	}
}
