package server

import (
	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// Compact counter views (wire.ViewsCompact). A connection that negotiated
// them, with its node id X, receives every state of a counter as
//
//	p: {X: p[X], "*": Σp − p[X]}   n: {X: n[X], "*": Σn − n[X]}
//
// instead of every node's entries: O(1) bytes whatever the number of
// writers. Both parts only grow (a raise of p[X] raises Σp by as much), so
// the client joins views by per-entry max, and stale, reordered or
// duplicated views (a lagging cluster node after failover) only lag. The
// server computes the aggregate for the subscriber's node id when it
// sends, so connections sharing a node id (browser tabs) never count that
// node's entries twice.
//
// Replies (COUNTER_RESPONSE, the COUNTER_UPDATE answering a SYNC) are built
// from the live state and wait for durability like every reply. Updates to
// other subscribers are built when the connection's writer sends them,
// from the durable totals below, so they never show what is not stored,
// and a slow subscriber gets only the newest view of each counter.

// durView tracks a counter's durable state next to the live one
// (counterEntry.ctr, which is ahead by the merges not stored yet): the
// durable totals, and the durable values of the nodes whose live entry is
// ahead. Every other node's durable entry is its live entry. Its size is
// O(nodes with unstored changes). counterEntry.mu guards it.
type durView struct {
	sumP, sumN int64
	oldP, oldN map[string]int64 // durable values of nodes ahead in ctr
	ver        uint64           // bumped on every durable change
	// cache holds encoded update views at ver: key "" for subscribers with
	// no entries of their own (readers), else the node id.
	cache    map[string][]byte
	cacheVer uint64
}

// durableLocked returns node's durable entries. e.mu held.
func (e *counterEntry) durableLocked(node string) (p, n int64) {
	p, n = e.ctr.Entry(node)
	if v, ok := e.dur.oldP[node]; ok {
		p = v
	}
	if v, ok := e.dur.oldN[node]; ok {
		n = v
	}
	return p, n
}

// noteLocked records, before s is merged into e.ctr, the durable values of
// the entries s raises. e.mu held.
func (e *counterEntry) noteLocked(s crdt.State) {
	noteSide(s.P, &e.dur.oldP, e.liveP)
	noteSide(s.N, &e.dur.oldN, e.liveN)
}

// storedLocked records that the entries of b are stored (a write
// committed, or a change another node stored): the durable totals rise.
// e.mu held, b already merged into e.ctr.
func (e *counterEntry) storedLocked(b crdt.State) {
	p := storedSide(b.P, e.dur.oldP, &e.dur.sumP, e.liveP)
	n := storedSide(b.N, e.dur.oldN, &e.dur.sumN, e.liveN)
	if p || n {
		e.dur.ver++
	}
}

// liveP and liveN return a node's live entry on one side. e.mu held.
func (e *counterEntry) liveP(node string) int64 { p, _ := e.ctr.Entry(node); return p }
func (e *counterEntry) liveN(node string) int64 { _, n := e.ctr.Entry(node); return n }

// noteSide is noteLocked for one side: old gets the live (still durable)
// value of every node that side raises, unless it has one already.
func noteSide(side map[string]int64, old *map[string]int64, live func(string) int64) {
	for node, v := range side {
		cur := live(node)
		if v <= cur {
			continue
		}
		if _, ok := (*old)[node]; !ok {
			if *old == nil {
				*old = make(map[string]int64)
			}
			(*old)[node] = cur
		}
	}
}

// storedSide is storedLocked for one side: the durable value of each node
// of side rises to its stored value, sum by as much, and a node whose live
// entry is no longer ahead leaves old. It reports whether sum changed.
func storedSide(side, old map[string]int64, sum *int64, live func(string) int64) bool {
	changed := false
	for node, v := range side {
		was, ok := old[node]
		if !ok {
			continue // durable already (noted nothing: nothing was ahead)
		}
		nv := max(was, v)
		*sum += nv - was
		changed = changed || nv != was
		if live(node) > nv {
			old[node] = nv
		} else {
			delete(old, node)
		}
	}
	return changed
}

// liveViewLocked is the compact view for node of the live state, for
// replies (which wait until it is stored). e.mu held.
func (e *counterEntry) liveViewLocked(node string) crdt.State {
	p, n := e.ctr.Entry(node)
	sp, sn := e.ctr.Sums()
	return view(node, p, n, sp-p, sn-n)
}

func view(node string, p, n, restP, restN int64) crdt.State {
	s := crdt.State{P: make(map[string]int64, 2), N: make(map[string]int64, 2)}
	if p > 0 {
		s.P[node] = p
	}
	if n > 0 {
		s.N[node] = n
	}
	s.P[wire.RestNode] = restP
	s.N[wire.RestNode] = restN
	return s
}

// encodedUpdateLocked returns the COUNTER_UPDATE frame carrying node's
// durable view, shared by every subscriber of the same class (all readers
// share one). e.mu held.
func (e *counterEntry) encodedUpdateLocked(node string) ([]byte, error) {
	p, n := e.durableLocked(node)
	key := node
	if p == 0 && n == 0 {
		key = ""
	}
	if e.dur.cacheVer != e.dur.ver || e.dur.cache == nil {
		clear(e.dur.cache)
		if e.dur.cache == nil {
			e.dur.cache = make(map[string][]byte)
		}
		e.dur.cacheVer = e.dur.ver
	}
	if b, ok := e.dur.cache[key]; ok {
		return b, nil
	}
	b, err := wire.Encode(wire.CounterUpdate{Name: e.name, State: view(node, p, n, e.dur.sumP-p, e.dur.sumN-n)})
	if err != nil {
		return nil, err
	}
	if len(e.dur.cache) < maxViewCache {
		e.dur.cache[key] = b
	}
	return b, nil
}

// maxViewCache bounds the encoded views cached per counter and version.
const maxViewCache = 64
