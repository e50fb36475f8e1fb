package storage

import (
	"context"
	"sync"

	"github.com/topgun-go/topgun/crdt"
)

// memory is the in-memory Store. One mutex guards everything: it is meant
// for tests and --data=memory, not for throughput.
type memory struct {
	mu       sync.Mutex
	closed   bool
	counters map[string]crdt.State
	owners   map[string]string
	fence    uint64 // high-water mark: the last token handed out
	bounded  map[string][]byte
}

var _ BoundedStore = (*memory)(nil)

// NewMemory returns an in-memory Store. Its contents are lost on exit; a
// write counts as durable as soon as it returns.
func NewMemory() Store {
	return &memory{counters: make(map[string]crdt.State), owners: make(map[string]string), bounded: make(map[string][]byte)}
}

// lock takes m.mu unless ctx is done or m is closed; on success the caller
// must unlock.
func (m *memory) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (m *memory) LoadCounter(ctx context.Context, name string) (crdt.State, error) {
	if err := ValidateName(name); err != nil {
		return crdt.State{}, err
	}
	if err := m.lock(ctx); err != nil {
		return crdt.State{}, err
	}
	defer m.mu.Unlock()
	return m.counters[name].Clone(), nil
}

func (m *memory) MergeCounter(ctx context.Context, name string, entries crdt.State) error {
	if err := ValidateMerge(name, entries); err != nil {
		return err
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	cur, ok := m.counters[name]
	if !ok {
		cur = crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	}
	for _, side := range [2]struct{ dst, src map[string]int64 }{{cur.P, entries.P}, {cur.N, entries.N}} {
		for node, v := range side.src {
			if v > side.dst[node] {
				side.dst[node] = v
			}
		}
	}
	if cur.Len() > 0 {
		m.counters[name] = cur
	}
	return nil
}

func (m *memory) ClaimNodes(ctx context.Context, nodes []string, user string) ([]string, error) {
	if err := ValidateClaims(nodes, user); err != nil {
		return nil, err
	}
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	owners := make([]string, len(nodes))
	for i, node := range nodes {
		owner, ok := m.owners[node]
		if !ok {
			owner = user
			m.owners[node] = user
		}
		owners[i] = owner
	}
	return owners, nil
}

func (m *memory) ReserveFencing(ctx context.Context, n uint64) (uint64, error) {
	if _, err := ValidateReserve(0, n); err != nil {
		return 0, err
	}
	if err := m.lock(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	first, err := ValidateReserve(m.fence, n)
	if err != nil {
		return 0, err
	}
	m.fence += n
	return first, nil
}

func (m *memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.counters, m.owners = nil, nil
	return nil
}

func (m *memory) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	if err := ValidateName(name); err != nil {
		return crdt.BState{}, false, err
	}
	if err := m.lock(ctx); err != nil {
		return crdt.BState{}, false, err
	}
	defer m.mu.Unlock()
	b, ok := m.bounded[name]
	if !ok {
		return crdt.BState{}, false, nil
	}
	st, err := DecodeBounded(b)
	return st, err == nil, err
}

func (m *memory) UpdateBounded(ctx context.Context, name string,
	fn func(crdt.BState, bool) (crdt.BState, bool, error)) (crdt.BState, error) {
	if err := m.lock(ctx); err != nil {
		return crdt.BState{}, err
	}
	defer m.mu.Unlock()
	out, st, err := UpdateBoundedBytes(name, m.bounded[name], fn)
	if err != nil {
		return crdt.BState{}, err
	}
	if out != nil {
		m.bounded[name] = out
	}
	return st, nil
}
