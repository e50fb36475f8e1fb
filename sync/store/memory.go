package store

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/topgun-go/topgun/crdt"
)

// Memory is the in-memory Store. Its zero value is not usable; use
// NewMemory.
type Memory struct {
	mu      sync.Mutex
	closed  bool
	nodeID  string
	records map[string]*memRecord
	pending map[string]bool // the index Pending reads
	seq     uint64
	gen     uint64 // raised by every Evict that deletes
	bounded map[string][]byte
}

var _ BoundedStore = (*Memory)(nil)

type memRecord struct {
	rec  Record
	used uint64 // recency: higher is more recent
}

// NewMemory returns an empty in-memory store.
func NewMemory() Store {
	return &Memory{records: make(map[string]*memRecord), pending: make(map[string]bool)}
}

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

// Load implements Store.
func (m *Memory) Load(ctx context.Context, names []string) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Snapshot{}, ErrClosed
	}
	out := m.snapshot()
	for _, name := range names {
		m.add(out, name)
	}
	return out, nil
}

// Pending implements Store.
func (m *Memory) Pending(ctx context.Context) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Snapshot{}, ErrClosed
	}
	out := m.snapshot()
	for name := range m.pending {
		m.add(out, name)
	}
	return out, nil
}

func (m *Memory) snapshot() Snapshot {
	return Snapshot{States: map[string]crdt.State{}, Based: map[string]bool{}, Gen: m.gen}
}

// add copies the record of name, if any, into out. m.mu held.
func (m *Memory) add(out Snapshot, name string) {
	if r := m.records[name]; r != nil {
		out.States[name] = r.rec.State.Clone()
		if r.rec.Based {
			out.Based[name] = true
		}
	}
}

// LoadCounters implements Store.
func (m *Memory) LoadCounters(ctx context.Context) (map[string]crdt.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make(map[string]crdt.State, len(m.records))
	for k, r := range m.records {
		out[k] = r.rec.State.Clone()
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
	// Work on copies of the touched records so a failure changes nothing.
	names := b.Names()
	recs := make(map[string]*Record, len(names))
	for _, name := range names {
		if r := m.records[name]; r != nil {
			recs[name] = &Record{State: r.rec.State.Clone(), Own: r.rec.Own, Based: r.rec.Based}
		} else {
			recs[name] = nil
		}
	}
	totals, changed, err := ApplyRecords(b, recs, m.gen)
	if err != nil {
		return nil, err
	}
	m.seq++
	for name := range changed {
		r := recs[name]
		if r == nil {
			delete(m.records, name)
			delete(m.pending, name)
			continue
		}
		m.records[name] = &memRecord{rec: *r, used: m.seq}
		if r.Pending() {
			m.pending[name] = true
		} else {
			delete(m.pending, name)
		}
	}
	for _, name := range b.Touch {
		if r := m.records[name]; r != nil {
			r.used = m.seq
		}
	}
	return totals, nil
}

// Evict implements Store.
func (m *Memory) Evict(ctx context.Context, max int, keep func(string) bool) ([]string, error) {
	if max < 0 {
		return nil, fmt.Errorf("%w: Evict max %d", ErrInvalid, max)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	excess := len(m.records) - max
	if excess <= 0 {
		return nil, nil
	}
	type cand struct {
		name string
		used uint64
	}
	list := make([]cand, 0, len(m.records))
	for name, r := range m.records {
		list = append(list, cand{name, r.used})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].used != list[j].used {
			return list[i].used < list[j].used
		}
		return list[i].name < list[j].name
	})
	var out []string
	for _, c := range list {
		if len(out) == excess {
			break
		}
		if m.pending[c.name] || (keep != nil && keep(c.name)) {
			continue
		}
		delete(m.records, c.name)
		out = append(out, c.name)
	}
	if len(out) > 0 {
		m.gen++
	}
	return out, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.records = nil
	m.pending = nil
	return nil
}
