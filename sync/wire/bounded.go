package wire

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/topgun-go/topgun/crdt"
)

// Bounded counters, a topgun-go extension (docs/protocol.md, "Bounded
// counters"): only for connections that negotiated compact views.
const (
	TypeBCounterRequest     = "BCOUNTER_REQUEST"
	TypeBCounterSync        = "BCOUNTER_SYNC"
	TypeBCounterUpdate      = "BCOUNTER_UPDATE"
	TypeBCounterRights      = "BCOUNTER_RIGHTS"
	TypeBCounterGrant       = "BCOUNTER_GRANT"
	TypeBCounterUnsubscribe = "BCOUNTER_UNSUBSCRIBE"
)

// BrokerNode is the node id of the server's replica of every bounded
// counter: the rights broker. Like RestNode it breaks the rule of names,
// so no client can sync entries under it.
const BrokerNode = "@"

// BCounterRequest subscribes to a bounded counter with lower bound Min.
// The first request of a counter fixes its bound.
type BCounterRequest struct {
	Name string
	Min  int64
}

// BCounterSync sends the sender's own row of a bounded counter (its P, N
// and T entries; State.Min is the bound) and subscribes to it.
type BCounterSync struct {
	Name  string
	State crdt.BState
}

// BCounterUpdate carries a connection's view of a bounded counter: its own
// row as the server holds it, the broker's transfers to it, and every
// other node folded into RestNode.
type BCounterUpdate struct {
	Name  string
	State crdt.BState
}

// BCounterRights asks the broker for Amount rights (1..2^53-1).
type BCounterRights struct {
	RequestID string
	Name      string
	Amount    int64
}

// BCounterGrant answers BCounterRights: the broker transferred Granted
// (0..Amount) rights to the requester, stored before this was sent; State
// is the requester's view including the transfer.
type BCounterGrant struct {
	RequestID string
	Name      string
	Granted   int64
	State     crdt.BState
}

// BCounterUnsubscribe ends the connection's subscription to a bounded
// counter. The server answers nothing.
type BCounterUnsubscribe struct{ Name string }

func (BCounterRequest) Type() string     { return TypeBCounterRequest }
func (BCounterSync) Type() string        { return TypeBCounterSync }
func (BCounterUpdate) Type() string      { return TypeBCounterUpdate }
func (BCounterRights) Type() string      { return TypeBCounterRights }
func (BCounterGrant) Type() string       { return TypeBCounterGrant }
func (BCounterUnsubscribe) Type() string { return TypeBCounterUnsubscribe }

func (BCounterRequest) wrapped() bool     { return true }
func (BCounterSync) wrapped() bool        { return true }
func (BCounterUpdate) wrapped() bool      { return true }
func (BCounterRights) wrapped() bool      { return true }
func (BCounterGrant) wrapped() bool       { return true }
func (BCounterUnsubscribe) wrapped() bool { return true }

// bound reads a bounded counter's Min: an integer (or an integral float,
// as JavaScript sends numbers) within ±(2^53-1).
func (d *decoder) bound() (int64, error) {
	n, err := d.number()
	if err != nil {
		return 0, fieldErr("min", err)
	}
	var v int64
	switch n.kind {
	case numInt:
		v = int64(n.bits)
	case numUint:
		if n.bits > crdt.MaxSafe {
			return 0, fmt.Errorf("%w: min %d out of range", ErrInvalidField, n.bits)
		}
		v = int64(n.bits)
	default:
		f := math.Float64frombits(n.bits)
		if !(f >= -crdt.MaxSafe && f <= crdt.MaxSafe) || f != math.Trunc(f) { // NaN fails too
			return 0, fmt.Errorf("%w: min %v is not an integer within ±(2^53-1)", ErrInvalidField, f)
		}
		v = int64(f)
	}
	if v < -crdt.MaxSafe || v > crdt.MaxSafe {
		return 0, fmt.Errorf("%w: min %d out of range", ErrInvalidField, v)
	}
	return v, nil
}

// magnitude reads an integer in [0, 2^53-1] (integral floats accepted).
func (d *decoder) magnitude(what string) (int64, error) {
	n, err := d.number()
	if err != nil {
		return 0, fieldErr(what, err)
	}
	v, ok := n.magnitude()
	if !ok {
		return 0, fmt.Errorf("%w: %s %v is not an integer in [0, 2^53-1]", ErrInvalidField, what, n.value())
	}
	return v, nil
}

// bstate reads a bounded counter state {min, p, n, t}: min is required,
// the maps optional (an empty row). Node ids must be non-empty strings and
// entries integers in [0, 2^53-1].
func (d *decoder) bstate() (crdt.BState, error) {
	var s crdt.BState
	n, ok := d.mapLen()
	if !ok {
		return s, errStateMap
	}
	sawMin := false
	for i := 0; i < n; i++ {
		k, err := d.key()
		if err != nil {
			return s, err
		}
		switch string(k) {
		case "min":
			if s.Min, err = d.bound(); err != nil {
				return s, err
			}
			sawMin = true
		case "p":
			if s.P, err = d.bside("p"); err != nil {
				return s, err
			}
		case "n":
			if s.N, err = d.bside("n"); err != nil {
				return s, err
			}
		case "t":
			if d.isNil() {
				continue
			}
			tn, ok := d.mapLen()
			if !ok {
				return s, fmt.Errorf("%w: state.t is not a map", ErrInvalidField)
			}
			s.T = make(map[string]map[string]int64, tn)
			for j := 0; j < tn; j++ {
				from, err := d.key()
				if err != nil {
					return s, err
				}
				if len(from) == 0 {
					return s, fmt.Errorf("%w: %w: state.t has an empty node id", ErrInvalidField, crdt.ErrInvalidEntry)
				}
				row, err := d.bside("t." + string(from))
				if err != nil {
					return s, err
				}
				s.T[string(from)] = row
			}
		default:
			d.skip()
		}
	}
	if !sawMin {
		return s, fmt.Errorf("%w: state.min is required", ErrInvalidField)
	}
	// Absent and empty are the same; normalised so that a decoded state
	// encodes and decodes back to itself.
	if s.P == nil {
		s.P = map[string]int64{}
	}
	if s.N == nil {
		s.N = map[string]int64{}
	}
	if s.T == nil {
		s.T = map[string]map[string]int64{}
	}
	for from, row := range s.T {
		if row == nil {
			s.T[from] = map[string]int64{}
		}
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %w", ErrInvalidField, err)
	}
	return s, nil
}

// bside reads one map of node id → entry of a bounded state; nil is an
// empty map.
func (d *decoder) bside(side string) (map[string]int64, error) {
	if d.isNil() {
		return nil, nil
	}
	n, ok := d.mapLen()
	if !ok {
		return nil, fmt.Errorf("%w: state.%s is not a map", ErrInvalidField, side)
	}
	m := make(map[string]int64, n)
	for i := 0; i < n; i++ {
		node, err := d.key()
		if err != nil {
			return nil, err
		}
		if len(node) == 0 {
			return nil, fmt.Errorf("%w: %w: state.%s has an empty node id", ErrInvalidField, crdt.ErrInvalidEntry, side)
		}
		v, err := d.number()
		if err != nil {
			return nil, fmt.Errorf("%w: %w: state.%s[%q]: %v", ErrInvalidField, crdt.ErrInvalidEntry, side, node, err)
		}
		x, ok := v.magnitude()
		if !ok {
			return nil, fmt.Errorf("%w: %w: state.%s[%q] = %v is not an integer in [0, 2^53-1]",
				ErrInvalidField, crdt.ErrInvalidEntry, side, node, v.value())
		}
		m[string(node)] = x
	}
	return m, nil
}

// appendBState writes {min, p, n, t} with integer entries, node ids
// sorted so frames are deterministic.
func appendBState(b []byte, s crdt.BState) []byte {
	b = append(b, 0x84)
	b = appendStr(b, "min")
	b = appendInt(b, s.Min)
	b = appendStr(b, "p")
	b = appendBSide(b, s.P)
	b = appendStr(b, "n")
	b = appendBSide(b, s.N)
	b = appendStr(b, "t")
	b = appendMapLen(b, len(s.T))
	for _, from := range slices.Sorted(maps.Keys(s.T)) {
		b = appendStr(b, from)
		b = appendBSide(b, s.T[from])
	}
	return b
}

func appendBSide(b []byte, m map[string]int64) []byte {
	b = appendMapLen(b, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = appendStr(b, k)
		b = appendInt(b, m[k])
	}
	return b
}

func bstateSize(s crdt.BState) int {
	n := 32
	for k := range s.P {
		n += len(k) + 5 + 9
	}
	for k := range s.N {
		n += len(k) + 5 + 9
	}
	for from, row := range s.T {
		n += len(from) + 10
		for k := range row {
			n += len(k) + 5 + 9
		}
	}
	return n
}
