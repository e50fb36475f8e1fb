package crdt

import (
	"errors"
	"fmt"
)

// Bounded-counter errors. Use errors.Is; returned errors wrap these.
var (
	// ErrNoRights: the replica does not hold enough rights for a decrement
	// or a transfer.
	ErrNoRights = errors.New("crdt: not enough rights")
	// ErrBoundMismatch: two states of one counter disagree on its bound.
	ErrBoundMismatch = errors.New("crdt: bounded counters with different bounds")
	// ErrNotOwner: a replica's state raises entries of another replica.
	ErrNotOwner = errors.New("crdt: entries of another replica")
)

// BState is the state of a bounded counter (the escrow counter of Balegas
// et al., "Extending Eventually Consistent Cloud Databases for Enforcing
// Numeric Invariants", SRDS 2015): a counter whose value never goes below
// Min in any replica, even when replicas decrement concurrently or offline.
//
// Every unit above the bound is a right held by exactly one replica. P[i]
// is what replica i added (each unit a new right at i), N[i] what i took
// away (each unit spends one of i's rights) and T[i][j] the rights i handed
// to replica j (i ≠ j). So:
//
//	value     = Min + Σ P − Σ N
//	rights(i) = P[i] + Σ_j T[j][i] − Σ_j T[i][j] − N[i]
//
// Replica i only ever raises its own entries (P[i], N[i], T[i][·]) and
// only spends rights it holds, so every entry only grows and a merge is a
// per-entry max: commutative, associative and idempotent. Because i's
// entries grow together, a join of full replica states holds each i's
// entries as of one moment of i, together with everything i knew then, so
// rights(i) ≥ 0 for every i in any such join and value ≥ Min in every
// replica's view (FuzzBoundedInvariant checks it under reordered,
// duplicated and lost deliveries).
//
// A nil map is an empty one. A state with only some entries (a delta)
// merges like a full one.
type BState struct {
	Min int64
	P   map[string]int64
	N   map[string]int64
	T   map[string]map[string]int64 // T[from][to]
}

// Validate checks every entry: finite, non-negative and within MaxSafe, no
// transfer from a node to itself, no empty node id, and Min within the
// safe range.
func (s BState) Validate() error {
	if s.Min < -MaxSafe || s.Min > MaxSafe {
		return fmt.Errorf("%w: bound %d", ErrOutOfRange, s.Min)
	}
	for _, side := range [2]map[string]int64{s.P, s.N} {
		for k, v := range side {
			if err := checkEntry(k, v); err != nil {
				return err
			}
		}
	}
	for from, row := range s.T {
		for to, v := range row {
			if from == to {
				return fmt.Errorf("%w: transfer from %q to itself", ErrInvalidEntry, from)
			}
			if err := checkEntry(from, v); err != nil {
				return err
			}
			if to == "" {
				return fmt.Errorf("%w: transfer to an empty node id", ErrInvalidEntry)
			}
		}
	}
	return nil
}

func checkEntry(node string, v int64) error {
	if node == "" {
		return fmt.Errorf("%w: empty node id", ErrInvalidEntry)
	}
	if v < 0 || v > MaxSafe {
		return fmt.Errorf("%w: %q = %d", ErrInvalidEntry, node, v)
	}
	return nil
}

// Bounded is one replica's bounded counter. It is not safe for concurrent
// use.
type Bounded struct {
	min        int64
	p, n       map[string]int64
	t          map[string]map[string]int64
	sumP, sumN int64
	in, out    map[string]int64 // Σ_j T[j][i] and Σ_j T[i][j] per node i
}

// NewBounded returns an empty bounded counter with lower bound min: its
// value is min and nobody holds rights.
func NewBounded(min int64) (*Bounded, error) {
	if min < -MaxSafe || min > MaxSafe {
		return nil, fmt.Errorf("%w: bound %d", ErrOutOfRange, min)
	}
	return &Bounded{
		min: min,
		p:   map[string]int64{}, n: map[string]int64{},
		t:  map[string]map[string]int64{},
		in: map[string]int64{}, out: map[string]int64{},
	}, nil
}

// BoundedFromState returns a replica holding s.
func BoundedFromState(s BState) (*Bounded, error) {
	b, err := NewBounded(s.Min)
	if err != nil {
		return nil, err
	}
	if _, err := b.Merge(s); err != nil {
		return nil, err
	}
	return b, nil
}

// Min is the bound.
func (b *Bounded) Min() int64 { return b.min }

// Value is Min + Σ P − Σ N.
func (b *Bounded) Value() int64 { return b.min + b.sumP - b.sumN }

// Rights is what node may still take away or hand on, as this replica
// knows it: exact for the replica's own node, a lower bound of what
// another node may hold (transfers to it may be on their way).
func (b *Bounded) Rights(node string) int64 {
	return b.p[node] + b.in[node] - b.out[node] - b.n[node]
}

// Increment adds k > 0 at node, creating k rights there, and returns the
// new value.
func (b *Bounded) Increment(node string, k int64) (int64, error) {
	if err := b.checkAmount(node, k); err != nil {
		return b.Value(), err
	}
	v := b.p[node] + k
	if v > MaxSafe || b.Value()+k > MaxSafe {
		return b.Value(), fmt.Errorf("%w: increment %d at %q", ErrOutOfRange, k, node)
	}
	b.p[node] = v
	b.sumP += k
	return b.Value(), nil
}

// Decrement takes k > 0 away at node, spending k of node's rights, and
// returns the new value; without enough rights it changes nothing and
// returns an error matching ErrNoRights.
func (b *Bounded) Decrement(node string, k int64) (int64, error) {
	if err := b.checkAmount(node, k); err != nil {
		return b.Value(), err
	}
	if r := b.Rights(node); r < k {
		return b.Value(), fmt.Errorf("%w: %q holds %d, decrement of %d", ErrNoRights, node, r, k)
	}
	b.n[node] += k
	b.sumN += k
	return b.Value(), nil
}

// Transfer hands k > 0 of from's rights to to; without enough rights it
// changes nothing and returns an error matching ErrNoRights.
func (b *Bounded) Transfer(from, to string, k int64) error {
	if err := b.checkAmount(from, k); err != nil {
		return err
	}
	if to == "" || to == from {
		return fmt.Errorf("%w: transfer from %q to %q", ErrInvalidEntry, from, to)
	}
	if r := b.Rights(from); r < k {
		return fmt.Errorf("%w: %q holds %d, transfer of %d", ErrNoRights, from, r, k)
	}
	row := b.t[from]
	if row == nil {
		row = map[string]int64{}
		b.t[from] = row
	}
	if row[to]+k > MaxSafe {
		return fmt.Errorf("%w: transfer %d from %q to %q", ErrOutOfRange, k, from, to)
	}
	row[to] += k
	b.out[from] += k
	b.in[to] += k
	return nil
}

func (b *Bounded) checkAmount(node string, k int64) error {
	if node == "" {
		return fmt.Errorf("%w: empty node id", ErrInvalidEntry)
	}
	if k <= 0 || k > MaxSafe {
		return fmt.Errorf("%w: amount %d", ErrInvalidEntry, k)
	}
	return nil
}

// Merge raises every entry to at least s's and reports whether anything
// changed. An invalid s, or one with another bound, changes nothing.
func (b *Bounded) Merge(s BState) (changed bool, err error) {
	if s.Min != b.min {
		return false, fmt.Errorf("%w: %d and %d", ErrBoundMismatch, b.min, s.Min)
	}
	if err := s.Validate(); err != nil {
		return false, err
	}
	// Check the sums before changing anything, so that a state that would
	// leave the safe range is refused whole.
	sumP, sumN := b.sumP, b.sumN
	for k, v := range s.P {
		if d := v - b.p[k]; d > 0 {
			sumP += d
		}
	}
	for k, v := range s.N {
		if d := v - b.n[k]; d > 0 {
			sumN += d
		}
	}
	if sumP > maxSum || sumN > maxSum {
		return false, errSums()
	}
	if v := b.min + sumP - sumN; v > MaxSafe || v < -MaxSafe {
		return false, fmt.Errorf("%w: value %d", ErrOutOfRange, v)
	}
	for k, v := range s.P {
		if v > b.p[k] {
			b.p[k], changed = v, true
		}
	}
	for k, v := range s.N {
		if v > b.n[k] {
			b.n[k], changed = v, true
		}
	}
	b.sumP, b.sumN = sumP, sumN
	for from, row := range s.T {
		for to, v := range row {
			have := b.t[from][to]
			if v <= have {
				continue
			}
			if b.t[from] == nil {
				b.t[from] = map[string]int64{}
			}
			b.t[from][to] = v
			b.out[from] += v - have
			b.in[to] += v - have
			changed = true
		}
	}
	return changed, nil
}

// MergeFrom merges the state that replica node sent about itself, for a
// replica that must not trust it (the server): s may raise only node's own
// entries (P[node], N[node], T[node][·]) and must leave node with rights
// ≥ 0 in this replica's view, or nothing changes and the error matches
// ErrNotOwner or ErrNoRights.
func (b *Bounded) MergeFrom(node string, s BState) (changed bool, err error) {
	if s.Min != b.min {
		return false, fmt.Errorf("%w: %d and %d", ErrBoundMismatch, b.min, s.Min)
	}
	if err := s.Validate(); err != nil {
		return false, err
	}
	for _, side := range [2]struct {
		m    map[string]int64
		have map[string]int64
	}{{s.P, b.p}, {s.N, b.n}} {
		for k, v := range side.m {
			if k != node && v > side.have[k] {
				return false, fmt.Errorf("%w: %q raises %q", ErrNotOwner, node, k)
			}
		}
	}
	for from, row := range s.T {
		for to, v := range row {
			if from != node && v > b.t[from][to] {
				return false, fmt.Errorf("%w: %q raises the transfer %q→%q", ErrNotOwner, node, from, to)
			}
		}
	}
	out := b.out[node] // node's transfers after the merge
	for to, v := range s.T[node] {
		if d := v - b.t[node][to]; d > 0 {
			out += d
		}
	}
	p, n := max(b.p[node], s.P[node]), max(b.n[node], s.N[node])
	if r := p + b.in[node] - out - n; r < 0 {
		return false, fmt.Errorf("%w: %q would hold %d", ErrNoRights, node, r)
	}
	return b.Merge(s)
}

// State returns a deep copy of the replica's state.
func (b *Bounded) State() BState {
	s := BState{Min: b.min, P: make(map[string]int64, len(b.p)), N: make(map[string]int64, len(b.n)),
		T: make(map[string]map[string]int64, len(b.t))}
	for k, v := range b.p {
		s.P[k] = v
	}
	for k, v := range b.n {
		s.N[k] = v
	}
	for from, row := range b.t {
		r := make(map[string]int64, len(row))
		for to, v := range row {
			r[to] = v
		}
		s.T[from] = r
	}
	return s
}
