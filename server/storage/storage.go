package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/topgun-go/topgun/crdt"
)

// Store is the server's durable state. Implementations are safe for
// concurrent use.
type Store interface {
	// LoadCounter returns the stored state of counter name; an unknown name
	// gives an empty State (non-nil maps) and no error.
	LoadCounter(ctx context.Context, name string) (crdt.State, error)
	// MergeCounter durably stores entries for counter name, keeping per
	// (side, node) the maximum of the stored and the given value (so
	// concurrent or reordered calls never lower anything). It returns only
	// once the write is durable. Entries must be valid (crdt.State.Validate);
	// an invalid state returns an error and stores nothing. Zero entries are
	// the same as absent ones and are not stored.
	MergeCounter(ctx context.Context, name string, entries crdt.State) error
	// ClaimNodes binds each counter node id of nodes to user if it is
	// unbound, durably, and returns the owners: owners[i] is user when
	// nodes[i] was just bound or already bound to user, otherwise the
	// other owner. It is one durable write for all of them (the new node
	// ids of one COUNTER_SYNC). Each node is claimed atomically: two
	// concurrent claims of one node by different users yield one owner for
	// both. An error may leave some of the nodes claimed, which a retry
	// then reports as user's. nodes may repeat, and may be empty. An
	// invalid node or user fails the whole call with ErrInvalid and claims
	// nothing.
	ClaimNodes(ctx context.Context, nodes []string, user string) (owners []string, err error)
	// ReserveFencing durably raises the fencing-token high-water mark by n
	// (n ≥ 1) and returns first, such that tokens first..first+n-1 belong to
	// the caller. Every range ever returned is strictly above every range
	// returned before, across process restarts and crashes. The first range
	// of a fresh store starts at 1. Tokens stay within [1, MaxFencing].
	ReserveFencing(ctx context.Context, n uint64) (first uint64, err error)
	// Close releases resources. Further calls return ErrClosed.
	Close() error
}

// CounterWatcher is implemented by stores that several server nodes share
// (etcd). A node watches the counters its clients subscribe to, so writes
// made through other nodes reach them.
type CounterWatcher interface {
	// WatchCounter returns the stored state of counter name and then calls
	// fn, from one goroutine at a time, with the entries stored after that
	// state was read, by any node, until ctx is done; the values given are
	// the stored (maximum) values. When the watch breaks (compaction, lost
	// connection), the store reloads the whole state and passes it to fn,
	// so applying each fn argument as a max-merge never misses a change.
	// fn is not called after WatchCounter's goroutines have seen ctx done;
	// they exit then.
	WatchCounter(ctx context.Context, name string, fn func(crdt.State)) (crdt.State, error)
}

// Sentinel errors. Use errors.Is; returned errors may wrap these with detail.
var (
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("storage: closed")
	// ErrInvalid: an argument is out of bounds (empty or too long name,
	// invalid counter entry, n of 0 or too large). Invalid counter entries
	// also wrap crdt.ErrInvalidEntry.
	ErrInvalid = errors.New("storage: invalid argument")
)

// Limits on arguments, the same for every implementation.
const (
	// MaxNameLen is the longest counter name, in bytes.
	MaxNameLen = 256
	// MaxNodeLen is the longest counter node id, in bytes.
	MaxNodeLen = 256
	// MaxFencing is the largest fencing token: tokens travel to JavaScript
	// clients as numbers, so they stay exact there.
	MaxFencing = crdt.MaxSafe
)

// ValidateName reports whether name is a usable counter name: 1 to
// MaxNameLen bytes. The server restricts the characters further; the store
// does not need to, since every byte string is a valid key.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: counter name of %d bytes (want 1..%d)", ErrInvalid, len(name), MaxNameLen)
	}
	return nil
}

func validateNode(node string) error {
	if node == "" || len(node) > MaxNodeLen {
		return fmt.Errorf("%w: node id of %d bytes (want 1..%d)", ErrInvalid, len(node), MaxNodeLen)
	}
	return nil
}

// ValidateMerge checks the arguments of MergeCounter.
func ValidateMerge(name string, entries crdt.State) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := entries.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, m := range [2]map[string]int64{entries.P, entries.N} {
		for node := range m {
			if err := validateNode(node); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidateClaims checks the arguments of ClaimNodes: nodes as in counter
// entries, and a non-empty user.
func ValidateClaims(nodes []string, user string) error {
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrInvalid)
	}
	for _, node := range nodes {
		if err := validateNode(node); err != nil {
			return err
		}
	}
	return nil
}

// ValidateReserve checks that reserving n tokens above the high-water mark
// hw is possible, and returns the first token of the range.
func ValidateReserve(hw, n uint64) (first uint64, err error) {
	if n == 0 {
		return 0, fmt.Errorf("%w: fencing range of 0 tokens", ErrInvalid)
	}
	if hw > MaxFencing || n > MaxFencing-hw {
		return 0, fmt.Errorf("%w: fencing range of %d above %d exceeds 2^53-1", ErrInvalid, n, hw)
	}
	return hw + 1, nil
}
