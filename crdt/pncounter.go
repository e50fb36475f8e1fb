package crdt

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// MaxSafe is the largest integer a JavaScript number represents exactly
// (Number.MAX_SAFE_INTEGER). Every magnitude and every value stays within
// [-MaxSafe, MaxSafe].
const MaxSafe = 1<<53 - 1

// maxSum bounds a counter's running sums Σp and Σn. With both sums in
// [0, maxSum], adding one more increment or difference of them never
// overflows int64. Reaching it takes hundreds of nodes each near MaxSafe.
const maxSum = math.MaxInt64 / 2

// Sentinel errors. Use errors.Is; the returned errors wrap these with detail.
var (
	// ErrOutOfRange: the result would leave the JS safe-integer range.
	ErrOutOfRange = errors.New("crdt: value out of safe integer range")
	// ErrInvalidEntry: a state entry is negative, fractional, non-finite,
	// too large or not a number.
	ErrInvalidEntry = errors.New("crdt: invalid counter entry")
)

// State is a PN-Counter state as it travels between replicas: per-node
// magnitudes of increments (P) and decrements (N). A nil map is an empty one.
// It is also the delta format: a State holding only some entries merges
// exactly like a full one.
type State struct {
	P map[string]int64
	N map[string]int64
}

// Len reports the number of entries in s.
func (s State) Len() int { return len(s.P) + len(s.N) }

// Clone returns a deep copy of s with non-nil maps.
func (s State) Clone() State {
	c := State{P: make(map[string]int64, len(s.P)), N: make(map[string]int64, len(s.N))}
	for k, v := range s.P {
		c.P[k] = v
	}
	for k, v := range s.N {
		c.N[k] = v
	}
	return c
}

// Raise raises every entry of s to at least the entry of o (a per-node
// max, without validation or value bookkeeping: for deltas and caches, not
// for replicas, which use Counter.Merge). s's maps must be non-nil when o
// has entries on that side; see Clone and RaiseInto.
func (s State) Raise(o State) {
	for k, v := range o.P {
		if v > s.P[k] {
			s.P[k] = v
		}
	}
	for k, v := range o.N {
		if v > s.N[k] {
			s.N[k] = v
		}
	}
}

// RaiseInto is Raise for a *State whose maps may be nil: it allocates them
// as needed.
func RaiseInto(dst *State, o State) {
	if dst.P == nil && len(o.P) > 0 {
		dst.P = make(map[string]int64, len(o.P))
	}
	if dst.N == nil && len(o.N) > 0 {
		dst.N = make(map[string]int64, len(o.N))
	}
	dst.Raise(o)
}

// Validate reports whether every entry of s is a magnitude in [0, MaxSafe]
// and node ids are non-empty.
func (s State) Validate() error {
	for _, side := range [2]struct {
		name string
		m    map[string]int64
	}{{"p", s.P}, {"n", s.N}} {
		for node, v := range side.m {
			if node == "" {
				return fmt.Errorf("%w: empty node id in %s", ErrInvalidEntry, side.name)
			}
			if v < 0 || v > MaxSafe {
				return fmt.Errorf("%w: %s[%q] = %d", ErrInvalidEntry, side.name, node, v)
			}
		}
	}
	return nil
}

// Value returns Σp − Σn of s. It fails with ErrOutOfRange when the result
// does not fit the safe range.
func (s State) Value() (int64, error) {
	var p, n int64
	for _, v := range s.P {
		if v < 0 || p > math.MaxInt64-v {
			return 0, ErrOutOfRange
		}
		p += v
	}
	for _, v := range s.N {
		if v < 0 || n > math.MaxInt64-v {
			return 0, ErrOutOfRange
		}
		n += v
	}
	if d := p - n; d > MaxSafe || d < -MaxSafe {
		return 0, ErrOutOfRange
	}
	return p - n, nil
}

// Nodes returns the sorted node ids that appear in s.
func (s State) Nodes() []string {
	seen := make(map[string]struct{}, len(s.P)+len(s.N))
	for k := range s.P {
		seen[k] = struct{}{}
	}
	for k := range s.N {
		seen[k] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Magnitude converts a number decoded from the wire into a counter entry.
// It accepts every Go integer type and integral float32/float64 values in
// [0, MaxSafe]; anything else fails with ErrInvalidEntry.
func Magnitude(v any) (int64, error) {
	var x int64
	switch t := v.(type) {
	case int:
		x = int64(t)
	case int8:
		x = int64(t)
	case int16:
		x = int64(t)
	case int32:
		x = int64(t)
	case int64:
		x = t
	case uint:
		if uint64(t) > MaxSafe {
			return 0, fmt.Errorf("%w: %d exceeds 2^53-1", ErrInvalidEntry, t)
		}
		x = int64(t)
	case uint8:
		x = int64(t)
	case uint16:
		x = int64(t)
	case uint32:
		x = int64(t)
	case uint64:
		if t > MaxSafe {
			return 0, fmt.Errorf("%w: %d exceeds 2^53-1", ErrInvalidEntry, t)
		}
		x = int64(t)
	case float32:
		return Magnitude(float64(t))
	case float64:
		switch {
		case math.IsNaN(t):
			return 0, fmt.Errorf("%w: NaN", ErrInvalidEntry)
		case math.IsInf(t, 0):
			return 0, fmt.Errorf("%w: %v", ErrInvalidEntry, t)
		case t != math.Trunc(t):
			return 0, fmt.Errorf("%w: %v is not an integer", ErrInvalidEntry, t)
		case t < 0:
			return 0, fmt.Errorf("%w: %v is negative", ErrInvalidEntry, t)
		case t > MaxSafe:
			return 0, fmt.Errorf("%w: %v exceeds 2^53-1", ErrInvalidEntry, t)
		}
		return int64(t), nil
	default:
		return 0, fmt.Errorf("%w: %T is not a number", ErrInvalidEntry, v)
	}
	if x < 0 {
		return 0, fmt.Errorf("%w: %d is negative", ErrInvalidEntry, x)
	}
	if x > MaxSafe {
		return 0, fmt.Errorf("%w: %d exceeds 2^53-1", ErrInvalidEntry, x)
	}
	return x, nil
}

// Counter is a PN-Counter replica. The zero value is an empty counter ready
// to use. It keeps running sums so Value is O(1).
type Counter struct {
	p, n       map[string]int64
	sumP, sumN int64
}

// New returns an empty counter.
func New() *Counter { return &Counter{} }

// FromState returns a counter holding s, or an error if s is invalid.
func FromState(s State) (*Counter, error) {
	c := New()
	if _, err := c.Merge(s); err != nil {
		return nil, err
	}
	return c, nil
}

// Value returns Σp − Σn.
func (c *Counter) Value() int64 { return c.sumP - c.sumN }

// Len returns the number of entries (non-zero magnitudes) in c.
func (c *Counter) Len() int { return len(c.p) + len(c.n) }

// Sums returns Σp and Σn, the totals of each side (each at most 2^62-1).
func (c *Counter) Sums() (p, n int64) { return c.sumP, c.sumN }

// Entry returns node's magnitudes.
func (c *Counter) Entry(node string) (p, n int64) { return c.p[node], c.n[node] }

// Add adds delta to the counter on behalf of node: a positive delta raises
// p[node], a negative one raises n[node], zero changes nothing. It returns the
// new value, or ErrOutOfRange (and changes nothing) if the node's magnitude or
// the counter's value would leave [-MaxSafe, MaxSafe], or if Σp or Σn would
// exceed 2^62-1 (the bound Merge enforces, so every state Add produces can be
// merged by other replicas).
func (c *Counter) Add(node string, delta int64) (int64, error) {
	if node == "" {
		return c.Value(), fmt.Errorf("%w: empty node id", ErrInvalidEntry)
	}
	if delta == 0 {
		return c.Value(), nil
	}
	if delta < -MaxSafe || delta > MaxSafe {
		return c.Value(), fmt.Errorf("%w: delta %d", ErrOutOfRange, delta)
	}
	v := c.Value() + delta
	if v < -MaxSafe || v > MaxSafe {
		return c.Value(), fmt.Errorf("%w: %d%+d", ErrOutOfRange, c.Value(), delta)
	}
	if delta > 0 {
		if c.sumP > maxSum-delta {
			return c.Value(), fmt.Errorf("%w: sum of p would exceed 2^62-1", ErrOutOfRange)
		}
		if c.p[node]+delta > MaxSafe {
			return c.Value(), fmt.Errorf("%w: p[%q] would exceed 2^53-1", ErrOutOfRange, node)
		}
		if c.p == nil {
			c.p = make(map[string]int64)
		}
		c.p[node] += delta
		c.sumP += delta
	} else {
		if c.sumN > maxSum+delta {
			return c.Value(), fmt.Errorf("%w: sum of n would exceed 2^62-1", ErrOutOfRange)
		}
		if c.n[node]-delta > MaxSafe {
			return c.Value(), fmt.Errorf("%w: n[%q] would exceed 2^53-1", ErrOutOfRange, node)
		}
		if c.n == nil {
			c.n = make(map[string]int64)
		}
		c.n[node] -= delta
		c.sumN -= delta
	}
	return v, nil
}

// errSums is the error of a Merge whose Σp or Σn would exceed maxSum.
func errSums() error {
	return fmt.Errorf("%w: merged sums would exceed 2^62-1", ErrOutOfRange)
}

// Merge folds s into c by per-node maximum and returns the entries of c that
// changed, with their new values (nil maps when nothing changed on a side).
// If s is invalid (ErrInvalidEntry), or the merged value would leave the safe
// range or Σp or Σn would exceed 2^62-1 (ErrOutOfRange), nothing is merged and
// the error says why.
func (c *Counter) Merge(s State) (changed State, err error) {
	_, err = c.MergeInto(s, &changed)
	return changed, err
}

// MergeInto is Merge writing the changed entries into *changed instead of
// new maps (allocating its maps only if they are nil and needed), so a
// caller that accumulates changes, such as a pending write, pays no
// allocation per merge. Values already in *changed are raised, never
// lowered. It returns how many entries changed.
func (c *Counter) MergeInto(s State, changed *State) (n int, err error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	// The increments are summed with an overflow guard: a state with more
	// than ~1024 entries near MaxSafe would otherwise wrap int64 and slip a
	// value far outside the safe range past the checks below.
	dp, dn := int64(0), int64(0)
	for k, v := range s.P {
		if inc := v - c.p[k]; inc > 0 {
			if dp > maxSum-inc {
				return 0, errSums()
			}
			dp += inc
		}
	}
	for k, v := range s.N {
		if inc := v - c.n[k]; inc > 0 {
			if dn > maxSum-inc {
				return 0, errSums()
			}
			dn += inc
		}
	}
	if dp == 0 && dn == 0 {
		return 0, nil
	}
	// c.sumP, c.sumN, dp and dn are all in [0, maxSum]: no int64 overflow.
	sp, sn := c.sumP+dp, c.sumN+dn
	if sp > maxSum || sn > maxSum {
		return 0, errSums()
	}
	if sp-sn > MaxSafe || sp-sn < -MaxSafe {
		return 0, fmt.Errorf("%w: merged value would leave the safe range", ErrOutOfRange)
	}
	for k, v := range s.P {
		if v > c.p[k] {
			if c.p == nil {
				c.p = make(map[string]int64)
			}
			if changed.P == nil {
				changed.P = make(map[string]int64)
			}
			c.p[k] = v
			changed.P[k] = max(changed.P[k], v)
			n++
		}
	}
	for k, v := range s.N {
		if v > c.n[k] {
			if c.n == nil {
				c.n = make(map[string]int64)
			}
			if changed.N == nil {
				changed.N = make(map[string]int64)
			}
			c.n[k] = v
			changed.N[k] = max(changed.N[k], v)
			n++
		}
	}
	c.sumP, c.sumN = sp, sn
	return n, nil
}

// State returns a deep copy of the whole state.
func (c *Counter) State() State { return State{P: c.p, N: c.n}.Clone() }

// Own returns the entries of node only: the O(1)-sized state a replica sends
// when it only needs to publish its own writes.
func (c *Counter) Own(node string) State {
	s := State{P: map[string]int64{}, N: map[string]int64{}}
	if v, ok := c.p[node]; ok {
		s.P[node] = v
	}
	if v, ok := c.n[node]; ok {
		s.N[node] = v
	}
	return s
}

// Diff returns the entries of c that are greater than the corresponding
// entries of s (absent counts as 0): what a replica holding s lacks.
func (c *Counter) Diff(s State) State {
	d := State{P: map[string]int64{}, N: map[string]int64{}}
	for k, v := range c.p {
		if v > s.P[k] {
			d.P[k] = v
		}
	}
	for k, v := range c.n {
		if v > s.N[k] {
			d.N[k] = v
		}
	}
	return d
}
