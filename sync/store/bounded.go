package store

import (
	"context"
	"fmt"

	"github.com/topgun-go/topgun/crdt"
)

// BoundedStore keeps the local replicas of bounded counters (crdt.BState):
// the replica's own row, the rights the broker transferred to it, and the
// aggregate of the other nodes, as the server's views gave them. Memory
// and filestore implement it; client.Client.BoundedCounter needs it. (The
// IndexedDB store gets it with the browser API.)
type BoundedStore interface {
	// LoadBounded returns the stored state of bounded counter name; ok is
	// false when there is none.
	LoadBounded(ctx context.Context, name string) (st crdt.BState, ok bool, err error)
	// SaveBounded merges s into the stored state of name by per-entry max
	// (creating it), durably, in one transaction. A state with another
	// bound than the stored one, or an invalid one, fails with ErrInvalid
	// and changes nothing. Since every entry only grows, saves of
	// successive snapshots may complete in any order.
	SaveBounded(ctx context.Context, name string, s crdt.BState) error
}

// MergeBounded returns the stored bytes of cur (nil: none) merged with s,
// and whether they changed. Stores share it.
func MergeBounded(name string, cur []byte, s crdt.BState) (out []byte, changed bool, err error) {
	if name == "" {
		return nil, false, fmt.Errorf("%w: empty bounded counter name", ErrInvalid)
	}
	b, err := crdt.NewBounded(s.Min)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if cur != nil {
		have, err := DecodeBounded(cur)
		if err != nil {
			return nil, false, err
		}
		if have.Min != s.Min {
			return nil, false, fmt.Errorf("%w: bounded counter %q has bound %d, not %d", ErrInvalid, name, have.Min, s.Min)
		}
		if _, err := b.Merge(have); err != nil {
			return nil, false, err
		}
	}
	changed, err = b.Merge(s)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !changed && cur != nil {
		return nil, false, nil
	}
	return b.State().AppendBinary(nil), true, nil
}

// DecodeBounded parses a stored bounded counter (crdt's binary form, not
// JSON: encoding/json would add about 170 KB brotli to the WebAssembly
// client), checking it.
func DecodeBounded(b []byte) (crdt.BState, error) {
	s, err := crdt.DecodeBState(b)
	if err != nil {
		return crdt.BState{}, fmt.Errorf("store: %w", err)
	}
	return s, nil
}

// LoadBounded implements BoundedStore.
func (m *Memory) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return crdt.BState{}, false, ErrClosed
	}
	b, ok := m.bounded[name]
	if !ok {
		return crdt.BState{}, false, nil
	}
	s, err := DecodeBounded(b)
	return s, err == nil, err
}

// SaveBounded implements BoundedStore.
func (m *Memory) SaveBounded(ctx context.Context, name string, s crdt.BState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	out, changed, err := MergeBounded(name, m.bounded[name], s)
	if err != nil || !changed {
		return err
	}
	if m.bounded == nil {
		m.bounded = map[string][]byte{}
	}
	m.bounded[name] = out
	return nil
}
