package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/topgun-go/topgun/crdt"
)

// Memory is the in-memory Store. Its zero value is not usable; use
// NewMemory.
type Memory struct {
	mu       sync.Mutex
	closed   bool
	nodeID   string
	counters map[string]crdt.State
}

// NewMemory returns an empty in-memory store.
func NewMemory() Store { return &Memory{counters: make(map[string]crdt.State)} }

// NodeID implements Store.
func (m *Memory) NodeID(ctx context.Context, newID func() string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrClosed
	}
	if m.nodeID == "" {
		id := newID()
		if id == "" {
			return "", fmt.Errorf("%w: empty node id", ErrInvalid)
		}
		m.nodeID = id
	}
	return m.nodeID, nil
}

// LoadCounters implements Store.
func (m *Memory) LoadCounters(ctx context.Context) (map[string]crdt.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make(map[string]crdt.State, len(m.counters))
	for k, s := range m.counters {
		out[k] = s.Clone()
	}
	return out, nil
}

// Apply implements Store.
func (m *Memory) Apply(ctx context.Context, b Batch) ([]OwnTotal, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	// Work on copies of the touched counters so a failure changes nothing.
	next := make(map[string]crdt.State, len(b.Remote)+len(b.Own))
	get := func(name string) crdt.State {
		s, ok := next[name]
		if !ok {
			s = m.counters[name].Clone()
			next[name] = s
		}
		return s
	}
	for name, r := range b.Remote {
		get(name).Raise(r)
	}
	totals := make([]OwnTotal, len(b.Own))
	for i, d := range b.Own {
		s := get(d.Name)
		t, err := ApplyOwn(s.P[d.Node], s.N[d.Node], d)
		if err != nil {
			return nil, err
		}
		if t.P > 0 {
			s.P[d.Node] = t.P
		}
		if t.N > 0 {
			s.N[d.Node] = t.N
		}
		totals[i] = t
	}
	for name, s := range next {
		m.counters[name] = s
	}
	return totals, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.counters = nil
	return nil
}
