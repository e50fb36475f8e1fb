package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/topgun-go/topgun/crdt"
)

// BoundedStore keeps the states of bounded counters (crdt.BState). Every
// Store of this module implements it; the server answers bounded-counter
// requests with ERROR 500 on a store that does not.
//
// A bounded counter is read and written whole, by a read-modify-write
// that is atomic against every other writer of the store (several server
// nodes included): a grant of the broker's rights is a transfer computed
// from the current state, and two nodes must never grant the same rights.
type BoundedStore interface {
	// LoadBounded returns the stored state of bounded counter name; ok is
	// false when there is none.
	LoadBounded(ctx context.Context, name string) (st crdt.BState, ok bool, err error)
	// UpdateBounded atomically replaces the state of name with what fn
	// returns for the stored one (ok false: none stored, cur empty). fn
	// returns write false to store nothing, or an error, returned as is
	// with nothing stored. fn may run more than once (a lost race, a
	// retried batch), so it must only compute; the call's result is that
	// of its last run. UpdateBounded returns the state stored when it
	// returns (fn's, or the current one when write is false), durably.
	// fn's state must be valid (crdt.BState.Validate), or nothing is
	// stored and the error wraps ErrInvalid.
	UpdateBounded(ctx context.Context, name string,
		fn func(cur crdt.BState, ok bool) (next crdt.BState, write bool, err error)) (crdt.BState, error)
}

// BoundedWatcher is implemented by stores that several server nodes share
// (etcd): a node follows the bounded counters its clients subscribe to.
type BoundedWatcher interface {
	// WatchBounded calls fn, from one goroutine at a time, with every state
	// of name stored after the call began, until ctx is done. After a
	// broken watch it reads the state again and passes it to fn, so fn
	// sees every change eventually (states only grow: merging each by max
	// never misses one).
	WatchBounded(ctx context.Context, name string, fn func(crdt.BState)) error
}

// boundedRecord is the stored form of a bounded counter: JSON, which every
// store keeps as one value.
type boundedRecord struct {
	Min int64                       `json:"min"`
	P   map[string]int64            `json:"p,omitempty"`
	N   map[string]int64            `json:"n,omitempty"`
	T   map[string]map[string]int64 `json:"t,omitempty"`
}

// EncodeBounded returns the stored form of s, which must be valid.
func EncodeBounded(s crdt.BState) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return json.Marshal(boundedRecord(s))
}

// DecodeBounded parses what EncodeBounded wrote, checking it.
func DecodeBounded(b []byte) (crdt.BState, error) {
	var r boundedRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return crdt.BState{}, fmt.Errorf("storage: corrupt bounded counter: %w", err)
	}
	s := NormBounded(crdt.BState(r))
	if err := s.Validate(); err != nil {
		return crdt.BState{}, fmt.Errorf("storage: corrupt bounded counter: %w", err)
	}
	return s, nil
}

// NormBounded returns s with non-nil maps.
func NormBounded(s crdt.BState) crdt.BState {
	if s.P == nil {
		s.P = map[string]int64{}
	}
	if s.N == nil {
		s.N = map[string]int64{}
	}
	if s.T == nil {
		s.T = map[string]map[string]int64{}
	}
	return s
}

// UpdateBoundedBytes runs one step of UpdateBounded on the stored bytes
// cur (nil: none): it calls fn and returns the bytes to store (nil: no
// write) and the resulting state. Stores share it.
func UpdateBoundedBytes(name string, cur []byte,
	fn func(crdt.BState, bool) (crdt.BState, bool, error)) (out []byte, st crdt.BState, err error) {
	if err := ValidateName(name); err != nil {
		return nil, crdt.BState{}, err
	}
	var have crdt.BState
	if cur != nil {
		if have, err = DecodeBounded(cur); err != nil {
			return nil, crdt.BState{}, err
		}
	} else {
		have = NormBounded(crdt.BState{})
	}
	next, write, err := fn(have, cur != nil)
	if err != nil {
		return nil, crdt.BState{}, err
	}
	if !write {
		return nil, have, nil
	}
	next = NormBounded(next)
	b, err := EncodeBounded(next)
	if err != nil {
		return nil, crdt.BState{}, err
	}
	return b, next, nil
}
