package wire_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

func benchState(nodes int) crdt.State {
	s := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	for i := 0; i < nodes; i++ {
		id := fmt.Sprintf("6f1c2a9e-0000-4000-8000-%012d", i)
		s.P[id] = int64(1000 + i)
		if i%2 == 0 {
			s.N[id] = int64(i)
		}
	}
	return s
}

func BenchmarkDecodeCounterSync(b *testing.B) {
	for _, nodes := range []int{1, 16} {
		frame, err := wire.Encode(wire.CounterSync{Name: "page-views", State: benchState(nodes)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := wire.Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeCounterUpdate(b *testing.B) {
	for _, nodes := range []int{1, 16} {
		m := wire.CounterUpdate{Name: "page-views", State: benchState(nodes)}
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := wire.EncodeTo(&buf, m); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
	}
}

func BenchmarkDecodeLockRequest(b *testing.B) {
	ttl := uint64(10000)
	frame, err := wire.Encode(wire.LockRequest{
		RequestID: "3b241101-e2bb-4255-8caf-4136c566a962", Name: "orders/42", TTL: &ttl})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := wire.Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}
