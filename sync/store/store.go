package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/topgun-go/topgun/crdt"
)

// Store is the client's local persistence. Implementations are safe for
// concurrent use.
type Store interface {
	// NodeID returns the persisted node id of this replica, creating it
	// with newID on first call; concurrent callers (and, for IndexedDB,
	// other tabs) get the same id.
	NodeID(ctx context.Context, newID func() string) (string, error)
	// LoadCounters returns every stored counter state.
	LoadCounters(ctx context.Context) (map[string]crdt.State, error)
	// Apply applies one batch atomically (one transaction): for each
	// Remote state, merge by per-entry max; then for each OwnDelta, raise
	// the stored p/n slot of Node for counter Name to at least FloorP/FloorN
	// and add DP/DN to it (read-modify-write, never overwrite with an
	// absolute value, so two writers sharing a node id — browser tabs
	// sharing IndexedDB — never lose each other's increments). It returns
	// the stored slots after the batch, one OwnTotal per OwnDelta in order.
	// An invalid batch (ErrInvalid) changes nothing.
	Apply(ctx context.Context, b Batch) ([]OwnTotal, error)
	// Close releases resources. Further calls return ErrClosed.
	Close() error
}

// Batch is one atomic write. Within a batch, Remote states are merged first
// and Own deltas added after.
type Batch struct {
	Own    []OwnDelta
	Remote map[string]crdt.State
}

// Empty reports whether b writes nothing.
func (b Batch) Empty() bool { return len(b.Own) == 0 && len(b.Remote) == 0 }

// OwnDelta adds DP to p[Node] and DN to n[Node] of counter Name, after
// raising them to FloorP and FloorN (own totals the server reported, which
// a store may lack, e.g. after its data was cleared).
type OwnDelta struct {
	Name, Node     string
	DP, DN         int64
	FloorP, FloorN int64
}

// OwnTotal is a node's stored p and n after an Apply.
type OwnTotal struct{ P, N int64 }

// Sentinel errors; returned errors may wrap them.
var (
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: a batch or node id is invalid (empty name or node,
	// negative delta, entry outside [0, crdt.MaxSafe]).
	ErrInvalid = errors.New("store: invalid argument")
)

// Validate checks b without applying it: names and nodes non-empty,
// deltas non-negative and at most crdt.MaxSafe, remote states valid.
// It does not check that sums stay in range; implementations do that
// against the stored values.
func (b Batch) Validate() error {
	for _, d := range b.Own {
		if d.Name == "" || d.Node == "" {
			return fmt.Errorf("%w: own delta with empty name or node", ErrInvalid)
		}
		if d.DP < 0 || d.DN < 0 || d.DP > crdt.MaxSafe || d.DN > crdt.MaxSafe {
			return fmt.Errorf("%w: own delta %+d/%+d for %q", ErrInvalid, d.DP, d.DN, d.Name)
		}
		if d.FloorP < 0 || d.FloorN < 0 || d.FloorP > crdt.MaxSafe || d.FloorN > crdt.MaxSafe {
			return fmt.Errorf("%w: own floor %d/%d for %q", ErrInvalid, d.FloorP, d.FloorN, d.Name)
		}
	}
	for name, s := range b.Remote {
		if name == "" {
			return fmt.Errorf("%w: remote state with empty name", ErrInvalid)
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: counter %q: %w", ErrInvalid, name, err)
		}
	}
	return nil
}

// ApplyOwn computes the stored slots after applying d to stored p and n:
// max(stored, floor) + delta, failing with ErrInvalid past 2^53-1. Store
// implementations share it so they agree exactly.
func ApplyOwn(p, n int64, d OwnDelta) (OwnTotal, error) {
	t := OwnTotal{P: max(p, d.FloorP) + d.DP, N: max(n, d.FloorN) + d.DN}
	if t.P > crdt.MaxSafe || t.N > crdt.MaxSafe {
		return OwnTotal{}, fmt.Errorf("%w: %q[%q] would exceed 2^53-1", ErrInvalid, d.Name, d.Node)
	}
	return t, nil
}
