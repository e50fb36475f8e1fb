package chaos

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/topgun-go/topgun/crdt"
)

// Lock model for porcupine, one partition per lock name. Each grant
// becomes up to two operations: the acquire (its call and return stamps,
// its token) and the end of the lease. A release the server confirmed is
// an operation with the release's own stamps: the server kept the holder
// until then. Any other end (LOCK_LOST, a refused or unanswered release,
// OnLost on disconnect) may have happened at the server at any time from
// the acquire's call to the moment the holder learnt it, so its interval
// is exactly that; a lease never seen to end stays open to the end of
// time. The history is linearizable only if the grants of each name can
// be ordered with at most one holder at a time and strictly increasing
// tokens.
type lockInput struct {
	worker int
	kind   string // "acquire", "release", "end"
	token  uint64
}

type lockState struct {
	holder int // -1: free
	token  uint64
}

var lockModel = porcupine.Model{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var names []string
		for _, op := range ops {
			n := op.Metadata.(string)
			if by[n] == nil {
				names = append(names, n)
			}
			by[n] = append(by[n], op)
		}
		sort.Strings(names)
		var out [][]porcupine.Operation
		for _, n := range names {
			out = append(out, by[n])
		}
		return out
	},
	Init: func() any { return lockState{holder: -1} },
	Step: func(state, input, _ any) (bool, any) {
		s, in := state.(lockState), input.(lockInput)
		switch in.kind {
		case "acquire":
			if s.holder != -1 || (in.token != 0 && in.token <= s.token) {
				return false, s
			}
			return true, lockState{holder: in.worker, token: max(s.token, in.token)}
		default: // release, end
			if s.holder != in.worker {
				return false, s
			}
			return true, lockState{holder: -1, token: s.token}
		}
	},
	DescribeOperation: func(input, _ any) string {
		in := input.(lockInput)
		return fmt.Sprintf("w%d %s %d", in.worker, in.kind, in.token)
	},
	DescribeState: func(state any) string {
		s := state.(lockState)
		if s.holder < 0 {
			return fmt.Sprintf("free (last token %d)", s.token)
		}
		return fmt.Sprintf("held by w%d (token %d)", s.holder, s.token)
	},
	DescribeOperationMetadata: func(info any) string { return info.(string) },
}

// lockOperations turns the grants into porcupine operations.
func lockOperations(grants []*grant) []porcupine.Operation {
	var ops []porcupine.Operation
	for _, g := range grants {
		ops = append(ops, porcupine.Operation{ClientId: g.worker, Metadata: g.lock,
			Input: lockInput{g.worker, "acquire", g.token}, Call: g.call, Return: g.ret})
		switch g.end {
		case resConfirmed:
			ops = append(ops, porcupine.Operation{ClientId: g.worker, Metadata: g.lock,
				Input: lockInput{g.worker, "release", g.token}, Call: max(g.endCall, g.ret), Return: g.endAt})
		case "":
			ops = append(ops, porcupine.Operation{ClientId: g.worker, Metadata: g.lock,
				Input: lockInput{g.worker, "end", g.token}, Call: g.call, Return: math.MaxInt64})
		default:
			ops = append(ops, porcupine.Operation{ClientId: g.worker, Metadata: g.lock,
				Input: lockInput{g.worker, "end", g.token}, Call: g.call, Return: g.endAt})
		}
	}
	return ops
}

// checkLocks runs the lock checks and returns the violations; on a
// failed linearizability check it writes porcupine's visualization into
// dir and says where.
func checkLocks(h *history, dir string, timeout time.Duration) (viols []string, vizPath string, unknown bool) {
	h.mu.Lock()
	grants := append([]*grant(nil), h.grants...)
	resources := map[string][]uint64{}
	for n, r := range h.resource {
		resources[n] = append([]uint64(nil), r.accepted...)
	}
	h.mu.Unlock()

	// At most one holder, tokens increasing: the model.
	res, info := porcupine.CheckOperationsVerbose(lockModel, lockOperations(grants), timeout)
	switch res {
	case porcupine.Illegal:
		vizPath = filepath.Join(dir, "locks-porcupine.html")
		if err := porcupine.VisualizePath(lockModel, info, vizPath); err != nil {
			vizPath = ""
		}
		viols = append(viols, "locks: the history is not linearizable (two holders at once, or a token not above the last)")
	case porcupine.Unknown:
		unknown = true
	}

	// Fencing tokens strictly increase per grant: a grant whose acquire
	// started after another grant's returned carries a larger token.
	byName := map[string][]*grant{}
	for _, g := range grants {
		if g.token != 0 {
			byName[g.lock] = append(byName[g.lock], g)
		}
	}
	for name, gs := range byName {
		byRet := append([]*grant(nil), gs...)
		sort.Slice(byRet, func(i, j int) bool { return byRet[i].ret < byRet[j].ret })
		sort.Slice(gs, func(i, j int) bool { return gs[i].call < gs[j].call })
		var hi uint64
		j := 0
		for _, g := range gs {
			for j < len(byRet) && byRet[j].ret < g.call {
				hi = max(hi, byRet[j].token)
				j++
			}
			if g.token <= hi {
				viols = append(viols, fmt.Sprintf("fencing: lock %s granted token %d after token %d had been granted", name, g.token, hi))
			}
		}
	}

	// The fenced resource never accepts an older token after a newer one,
	// and refuses a holder's write only if that holder's lease ended
	// without the server confirming its release.
	for name, acc := range resources {
		for i := 1; i < len(acc); i++ {
			if acc[i] < acc[i-1] {
				viols = append(viols, fmt.Sprintf("fencing: resource %s accepted token %d after %d", name, acc[i], acc[i-1]))
			}
		}
	}
	for _, g := range grants {
		if g.rejected > 0 && g.end == resConfirmed {
			viols = append(viols, fmt.Sprintf("fencing: lock %s: the resource refused token %d (it had seen %d) from worker %d, whose lease the server kept until its release",
				g.lock, g.token, g.rejectedBy, g.worker))
		}
		if g.end == "" {
			viols = append(viols, fmt.Sprintf("lock %s: worker %d's grant %d never ended (the holder was not told)", g.lock, g.worker, g.token))
		}
	}
	return viols, vizPath, unknown
}

// checkCounters compares what the workers were acknowledged and hold at
// the end with the servers' full states (one per server node), which must
// all be equal: every acknowledged write is in them, exactly what each
// writer flushed, and the inc-only counter never showed more than was
// ever written.
func checkCounters(h *history, counter string, states []crdt.State) (viols []string, value int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(states) == 0 {
		return []string{fmt.Sprintf("counter %s: no server state read", counter)}, 0
	}
	for i, s := range states {
		v, err := s.Value()
		if err != nil {
			viols = append(viols, fmt.Sprintf("counter %s: node %d: %v", counter, i, err))
		}
		if i == 0 {
			value = v
		} else if v != value || !sameState(s, states[0]) {
			viols = append(viols, fmt.Sprintf("counter %s: server nodes disagree (%d vs %d)", counter, v, value))
		}
	}
	s := states[0]
	for k, a := range h.acked {
		if k.counter != counter {
			continue
		}
		if s.P[k.node] < a[0] || s.N[k.node] < a[1] {
			viols = append(viols, fmt.Sprintf("counter %s: node %s acknowledged p=%d n=%d, server has p=%d n=%d (acknowledged write lost)",
				counter, k.node, a[0], a[1], s.P[k.node], s.N[k.node]))
		}
	}
	for k, f := range h.finals {
		if k.counter != counter {
			continue
		}
		if f.OK && (s.P[k.node] != f.P || s.N[k.node] != f.N) {
			viols = append(viols, fmt.Sprintf("counter %s: node %s flushed p=%d n=%d, server has p=%d n=%d",
				counter, k.node, f.P, f.N, s.P[k.node], s.N[k.node]))
		}
		if !f.OK {
			viols = append(viols, fmt.Sprintf("counter %s: node %s could not flush after the faults healed", counter, k.node))
		}
		if counter == incCounter && f.Max > value {
			viols = append(viols, fmt.Sprintf("counter %s: node %s showed %d, above the final total %d of an inc-only counter", counter, k.node, f.Max, value))
		}
	}
	return viols, value
}

func sameState(a, b crdt.State) bool {
	eq := func(x, y map[string]int64) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if y[k] != v {
				return false
			}
		}
		return true
	}
	return eq(a.P, b.P) && eq(a.N, b.N)
}

// checkStock checks the bounded counter after the faults healed: every
// node holds the same value, never below the bound, and it is exactly
// what was restocked minus what was sold (no sale lost, none counted
// twice, none made without rights: the server refuses those, so they
// would be missing here).
func (r *run) checkStock() (viols []string) {
	r.h.mu.Lock()
	var restocked, sold int64
	synced := true
	for node, f := range r.h.bfinals {
		restocked += f.P
		sold += f.N
		if !f.OK {
			synced = false
			viols = append(viols, fmt.Sprintf("stock: node %s did not sync after the faults healed", node))
		}
	}
	n := len(r.h.bfinals)
	r.h.mu.Unlock()
	if n < len(r.workers) {
		viols = append(viols, fmt.Sprintf("stock: %d of %d client reports arrived", n, len(r.workers)))
		synced = false
	}
	for i, s := range r.servers {
		b, err := readStock(s.Addr())
		if err != nil {
			viols = append(viols, fmt.Sprintf("stock: node %d: read: %v", i, err))
			continue
		}
		if b.Value < b.Min {
			viols = append(viols, fmt.Sprintf("stock: node %d holds %d, below the bound %d", i, b.Value, b.Min))
		}
		if synced && b.Value != restocked-sold {
			viols = append(viols, fmt.Sprintf("stock: node %d holds %d; restocked %d − sold %d = %d", i, b.Value, restocked, sold, restocked-sold))
		}
	}
	r.logf("stock: %d restocked, %d sold", restocked, sold)
	r.h.mu.Lock()
	r.h.ops += int(restocked/10 + sold)
	r.h.mu.Unlock()
	return viols
}
