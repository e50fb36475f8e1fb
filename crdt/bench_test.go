package crdt

import (
	"fmt"
	"testing"
)

func BenchmarkAdd(b *testing.B) {
	c := New()
	nodes := []string{"node-a", "node-b", "node-c", "node-d"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Alternate signs so the value stays near zero however long it runs.
		d := int64(1)
		if i&1 == 1 {
			d = -1
		}
		if _, err := c.Add(nodes[i&3], d); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMergeOwnDelta merges a 1-entry delta (what Own ships) into a
// counter that knows 200 nodes. Each delta raises the entry, so every
// iteration takes the full path, including the reported change.
func BenchmarkMergeOwnDelta(b *testing.B) {
	const nodes = 200
	s := State{P: make(map[string]int64, nodes), N: make(map[string]int64, nodes)}
	for i := range nodes {
		id := fmt.Sprintf("node-%03d", i)
		s.P[id] = int64(1000 + i)
		s.N[id] = int64(i)
	}
	c, err := FromState(s)
	if err != nil {
		b.Fatal(err)
	}
	const writer = "node-042"
	delta := State{P: map[string]int64{writer: 0}, N: map[string]int64{}}
	v := s.P[writer]
	b.ReportAllocs()
	for b.Loop() {
		v++
		delta.P[writer] = v
		changed, err := c.Merge(delta)
		if err != nil {
			b.Fatal(err)
		}
		if changed.Len() != 1 {
			b.Fatalf("changed = %v, want one entry", changed)
		}
	}
}
