package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/topgun-go/topgun/crdt"
)

// Store is the client's local persistence. Implementations are safe for
// concurrent use, and implement the record semantics of ApplyRecords
// exactly (they share it).
type Store interface {
	// NodeID returns the persisted node id of this replica, creating it
	// with newID on first call; concurrent callers (and, for IndexedDB,
	// other tabs) get the same id.
	NodeID(ctx context.Context, newID func() string) (string, error)
	// Load returns the stored records of the named counters; a name with
	// no record is absent from the result. It reads those records only.
	Load(ctx context.Context, names []string) (Snapshot, error)
	// Pending returns every pending record (see Record.Pending): the
	// counters with own writes the server has not confirmed. It reads
	// those records only (an index), not every record.
	Pending(ctx context.Context) (Snapshot, error)
	// LoadCounters returns every stored counter state. It reads every
	// record: tools and tests use it; the client does not.
	LoadCounters(ctx context.Context) (map[string]crdt.State, error)
	// Apply applies one batch atomically (one transaction) with the
	// semantics of ApplyRecords: for each Remote state, merge by per-entry
	// max; then for each OwnDelta, raise the stored p/n slot of Node for
	// counter Name to at least FloorP/FloorN and add DP/DN to it
	// (read-modify-write, never overwrite with an absolute value, so two
	// writers sharing a node id — browser tabs sharing IndexedDB — never
	// lose each other's increments), or, for an Unbased delta on a
	// counter the store has no based record of, add it to the record's
	// UnbasedNode slot; then fold Fold's individual entries into RestNode.
	// Every record the batch writes, and every Touch name that has a
	// record, becomes the most recently used. It returns one OwnTotal per
	// OwnDelta in order. An invalid batch (ErrInvalid) changes nothing.
	Apply(ctx context.Context, b Batch) ([]OwnTotal, error)
	// Evict deletes the least recently used records that are not pending
	// and for which keep (if not nil) returns false, until at most max
	// records remain or none is left to delete, in one transaction, and
	// returns the names it deleted. If it deleted any it raises the
	// store's generation (see OwnDelta.Gen). max < 0 is ErrInvalid.
	Evict(ctx context.Context, max int, keep func(name string) bool) ([]string, error)
	// Close releases resources. Further calls return ErrClosed.
	Close() error
}

// Pseudo-node keys of a stored record: not valid node ids (sync/wire's
// rule of names), never sent to a server.
const (
	// AckNode holds the server's confirmation of the own entries (the
	// highest own entries the server reported back), merged by max.
	AckNode = "="
	// UnbasedNode holds own writes made while the replica did not know
	// its own entries on the server (the counter had no based record in
	// the store): relative amounts, added to, never merged by max, and
	// moved into the own slot by the next based OwnDelta (ApplyRecords).
	UnbasedNode = "+"
	// RestNode is the aggregate of every other node of a compact view
	// (sync/wire.RestNode).
	RestNode = "*"
)

// Snapshot is what Load and Pending read: the states of the records (by
// counter name), which of them are based (see Record), and the store's
// generation when they were read.
type Snapshot struct {
	States map[string]crdt.State
	Based  map[string]bool
	Gen    uint64
}

// Batch is one atomic write. Within a batch, Remote states are merged
// first, Own deltas added after, then Fold applied.
type Batch struct {
	Own    []OwnDelta
	Remote map[string]crdt.State
	// Fold names counters held as compact views: after the batch, their
	// record's RestNode entries become max(RestNode, the sum of every
	// individual entry of a node other than the record's own node) per
	// side, and those individual entries are dropped, so a record holds
	// O(1) entries.
	Fold []string
	// Touch names counters used now, whose records (if any) become the
	// most recently used without other change.
	Touch []string
}

// Empty reports whether b writes nothing.
func (b Batch) Empty() bool {
	return len(b.Own) == 0 && len(b.Remote) == 0 && len(b.Fold) == 0 && len(b.Touch) == 0
}

// Names returns every counter name b touches, sorted, once each.
func (b Batch) Names() []string {
	names := make([]string, 0, len(b.Remote)+len(b.Own)+len(b.Fold)+len(b.Touch))
	for name := range b.Remote {
		names = append(names, name)
	}
	for _, d := range b.Own {
		names = append(names, d.Name)
	}
	names = append(names, b.Fold...)
	names = append(names, b.Touch...)
	slices.Sort(names)
	return slices.Compact(names)
}

// OwnDelta adds DP to p[Node] and DN to n[Node] of counter Name, after
// raising them to FloorP and FloorN (the node's own entries as the writer
// knows them: from the server, or from the record), and after moving the
// record's UnbasedNode amounts into them. The record is based afterwards.
//
// The writer's knowledge is only valid if the record has not been evicted
// since it was gained: Gen is the store's generation then (Snapshot.Gen,
// OwnTotal.Gen, or for a base from the server the generation the writer
// had seen before it asked the server). If the record is not based and
// the store's generation is above Gen (an eviction happened since), the
// delta is refused as stale: it is applied as an unbased one, without its
// floors, and OwnTotal.Unbased tells the writer to learn its base again.
//
// With Unbased set the writer does not know the node's own entries on the
// server. If the record is based, the delta is applied to Node's slot as
// above (without floors, which must be zero); otherwise DP/DN are added to
// the record's UnbasedNode slot and Node's slot is unchanged.
type OwnDelta struct {
	Name, Node     string
	DP, DN         int64
	FloorP, FloorN int64
	Unbased        bool
	Gen            uint64
}

// OwnTotal is a node's stored p and n after an Apply. Unbased is set when
// the delta went to the UnbasedNode slot (an unbased delta on a record
// that is not based, or a stale based one), whose amounts after the batch
// are UP and UN (P and N are then the record's entries of Node, usually
// zero); otherwise UP and UN are zero. Gen is the store's generation.
type OwnTotal struct {
	P, N    int64
	UP, UN  int64
	Unbased bool
	Gen     uint64
}

// Sentinel errors; returned errors may wrap them.
var (
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: a batch, node id or argument is invalid (empty name or
	// node, negative delta, entry outside [0, crdt.MaxSafe], a remote
	// UnbasedNode entry, floors on an unbased delta, max < 0).
	ErrInvalid = errors.New("store: invalid argument")
)

// Validate checks b without applying it: names and nodes non-empty,
// deltas non-negative and at most crdt.MaxSafe, remote states valid and
// without UnbasedNode entries, unbased deltas without floors. It does not
// check that sums stay in range; ApplyRecords does that against the
// stored values.
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
		if d.Unbased && (d.FloorP != 0 || d.FloorN != 0) {
			return fmt.Errorf("%w: unbased delta with floors for %q", ErrInvalid, d.Name)
		}
		if isPseudo(d.Node) {
			return fmt.Errorf("%w: own delta for pseudo-node %q of %q", ErrInvalid, d.Node, d.Name)
		}
	}
	for name, s := range b.Remote {
		if name == "" {
			return fmt.Errorf("%w: remote state with empty name", ErrInvalid)
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: counter %q: %w", ErrInvalid, name, err)
		}
		if _, ok := s.P[UnbasedNode]; ok {
			return fmt.Errorf("%w: counter %q: remote %q entry", ErrInvalid, name, UnbasedNode)
		}
		if _, ok := s.N[UnbasedNode]; ok {
			return fmt.Errorf("%w: counter %q: remote %q entry", ErrInvalid, name, UnbasedNode)
		}
	}
	for _, name := range append(slices.Clip(b.Fold), b.Touch...) {
		if name == "" {
			return fmt.Errorf("%w: empty counter name", ErrInvalid)
		}
	}
	return nil
}

func isPseudo(node string) bool { return node == AckNode || node == UnbasedNode || node == RestNode }

// ApplyOwn computes the stored slots after applying d to stored p and n:
// max(stored, floor) + delta, failing with ErrInvalid past 2^53-1. Store
// implementations share it (through ApplyRecords) so they agree exactly.
func ApplyOwn(p, n int64, d OwnDelta) (OwnTotal, error) {
	t := OwnTotal{P: max(p, d.FloorP) + d.DP, N: max(n, d.FloorN) + d.DN}
	if t.P > crdt.MaxSafe || t.N > crdt.MaxSafe {
		return OwnTotal{}, fmt.Errorf("%w: %q[%q] would exceed 2^53-1", ErrInvalid, d.Name, d.Node)
	}
	return t, nil
}

// Record is one counter as a store keeps it: its entries (pseudo-nodes
// included), the node of the last own delta applied to it, and whether it
// is based: a based own delta wrote it, so its own entries hold the node's
// entries on the server and every own write since (a record that Remote
// states or unbased deltas created is not, until then). A based record
// has no UnbasedNode amounts. Based records stay based until evicted.
type Record struct {
	State crdt.State
	Own   string
	Based bool
}

// Pending reports whether r holds own writes the server has not confirmed:
// UnbasedNode amounts, or own entries above the AckNode entries. Stores
// index pending records, so that Pending reads only those.
func (r *Record) Pending() bool {
	if r == nil {
		return false
	}
	if r.State.P[UnbasedNode] > 0 || r.State.N[UnbasedNode] > 0 {
		return true
	}
	if r.Own == "" {
		return false
	}
	return r.State.P[r.Own] > r.State.P[AckNode] || r.State.N[r.Own] > r.State.N[AckNode]
}

// ApplyRecords applies b to recs, which must hold every name of b.Names()
// (nil for a counter without a record), at the store's generation gen, and
// returns the totals of the own deltas and the names whose records changed
// (a nil record in recs afterwards means none: stores delete it). It
// modifies the records of recs in place (they are the caller's copies) and
// checks everything before it returns, so a store that gets an error
// writes nothing. Every store implements Apply with it.
func ApplyRecords(b Batch, recs map[string]*Record, gen uint64) ([]OwnTotal, map[string]bool, error) {
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	changed := map[string]bool{}
	rec := func(name string) *Record {
		r := recs[name]
		if r == nil {
			r = &Record{State: crdt.State{P: map[string]int64{}, N: map[string]int64{}}}
			recs[name] = r
		}
		if r.State.P == nil {
			r.State.P = map[string]int64{}
		}
		if r.State.N == nil {
			r.State.N = map[string]int64{}
		}
		return r
	}
	for name, rs := range b.Remote {
		r := rec(name)
		for k, v := range rs.P {
			if v > r.State.P[k] {
				r.State.P[k] = v
				changed[name] = true
			}
		}
		for k, v := range rs.N {
			if v > r.State.N[k] {
				r.State.N[k] = v
				changed[name] = true
			}
		}
	}
	totals := make([]OwnTotal, len(b.Own))
	for i, d := range b.Own {
		r := rec(d.Name)
		if !d.Unbased && !r.Based && gen > d.Gen {
			// Stale: the record may have been evicted since the writer
			// learnt its base. Kept as an unbased write.
			d.Unbased, d.FloorP, d.FloorN = true, 0, 0
		}
		if d.Unbased && !r.Based {
			up, un := r.State.P[UnbasedNode]+d.DP, r.State.N[UnbasedNode]+d.DN
			if up > crdt.MaxSafe || un > crdt.MaxSafe {
				return nil, nil, fmt.Errorf("%w: %q: unbased writes would exceed 2^53-1", ErrInvalid, d.Name)
			}
			setEntry(r.State.P, UnbasedNode, up)
			setEntry(r.State.N, UnbasedNode, un)
			if d.DP != 0 || d.DN != 0 {
				changed[d.Name] = true
			}
			if r.Own != d.Node {
				r.Own = d.Node
				changed[d.Name] = true
			}
			totals[i] = OwnTotal{P: r.State.P[d.Node], N: r.State.N[d.Node], UP: up, UN: un, Unbased: true, Gen: gen}
			continue
		}
		if d.Unbased {
			d.FloorP, d.FloorN = 0, 0 // a based record holds the base
		}
		// A based delta: the record now holds the node's own entries; what
		// was written unbased moves into them.
		moveP, moveN := r.State.P[UnbasedNode], r.State.N[UnbasedNode]
		p, n := r.State.P[d.Node], r.State.N[d.Node]
		t, err := ApplyOwn(p, n, OwnDelta{Name: d.Name, Node: d.Node, DP: d.DP + moveP, DN: d.DN + moveN, FloorP: d.FloorP, FloorN: d.FloorN})
		if err != nil {
			return nil, nil, err
		}
		if t.P != p || t.N != n || moveP != 0 || moveN != 0 || r.Own != d.Node || !r.Based {
			changed[d.Name] = true
		}
		delete(r.State.P, UnbasedNode)
		delete(r.State.N, UnbasedNode)
		setEntry(r.State.P, d.Node, t.P)
		setEntry(r.State.N, d.Node, t.N)
		r.Own = d.Node
		r.Based = true
		t.Gen = gen
		totals[i] = t
	}
	for _, name := range b.Fold {
		r := recs[name]
		if r == nil {
			continue
		}
		if foldRecord(r) {
			changed[name] = true
		}
	}
	for name := range changed {
		if r := recs[name]; r != nil && r.State.Len() == 0 && !r.Based {
			recs[name] = nil // an empty counter is the same as none
		}
	}
	return totals, changed, nil
}

func setEntry(m map[string]int64, k string, v int64) {
	if v > 0 {
		m[k] = v
	} else {
		delete(m, k)
	}
}

// foldRecord folds r's individual entries of other nodes into RestNode
// and reports whether r changed.
func foldRecord(r *Record) bool {
	if r.Own == "" {
		return false // which entries are the own node's is unknown
	}
	fold := func(m map[string]int64) bool {
		var sum int64
		any := false
		for k, v := range m {
			if k != r.Own && !isPseudo(k) {
				sum += v
				any = true
			}
		}
		if !any {
			return false
		}
		for k := range m {
			if k != r.Own && !isPseudo(k) {
				delete(m, k)
			}
		}
		// A sum of valid entries of a valid state stays in range: the
		// value check bounds each side.
		m[RestNode] = min(max(m[RestNode], sum), crdt.MaxSafe)
		return true
	}
	p := fold(r.State.P)
	n := fold(r.State.N)
	return p || n
}
