package storagetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
)

// Run runs the shared suite against fresh stores from open (each subtest
// calls open). The suite closes every store it opens.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	t.Helper()
	fresh := func(t *testing.T) storage.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"LoadUnknown", testLoadUnknown},
		{"MergeKeepsMax", testMergeKeepsMax},
		{"Independent", testIndependent},
		{"Limits", testLimits},
		{"InvalidStoresNothing", testInvalidStoresNothing},
		{"ConcurrentMerge", testConcurrentMerge},
		{"ClaimNode", testClaimNode},
		{"ClaimNodeRace", testClaimNodeRace},
		{"ClaimNodes", testClaimNodes},
		{"ClaimNodesMany", testClaimNodesMany},
		{"ClaimNodesRace", testClaimNodesRace},
		{"ReserveFencing", testReserveFencing},
		{"ReserveFencingConcurrent", testReserveFencingConcurrent},
		{"CanceledContext", testCanceledContext},
		{"Closed", testClosed},
		{"Bounded", testBounded},
		{"BoundedConcurrent", testBoundedConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, fresh(t))
		})
	}
}

// RunDurable additionally checks that data survives Close + reopen of the
// same dir. open must return a store kept in dir.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) storage.Store) {
	t.Helper()
	t.Run("Reopen", func(t *testing.T) {
		t.Parallel()
		testReopen(t, open)
	})
}

var ctx = context.Background()

// state builds a crdt.State from "p:node=v" / "n:node=v" pairs.
func state(kv map[string]int64) crdt.State {
	s := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	for k, v := range kv {
		side, node, ok := strings.Cut(k, ":")
		if !ok {
			panic("storagetest: bad key " + k)
		}
		switch side {
		case "p":
			s.P[node] = v
		case "n":
			s.N[node] = v
		default:
			panic("storagetest: bad side " + side)
		}
	}
	return s
}

func merge(t *testing.T, s storage.Store, name string, st crdt.State) {
	t.Helper()
	if err := s.MergeCounter(ctx, name, st); err != nil {
		t.Fatalf("MergeCounter(%q, %v): %v", name, st, err)
	}
}

func load(t *testing.T, s storage.Store, name string) crdt.State {
	t.Helper()
	got, err := s.LoadCounter(ctx, name)
	if err != nil {
		t.Fatalf("LoadCounter(%q): %v", name, err)
	}
	if got.P == nil || got.N == nil {
		t.Fatalf("LoadCounter(%q) = %#v, want non-nil maps", name, got)
	}
	return got
}

func wantState(t *testing.T, s storage.Store, name string, want crdt.State) {
	t.Helper()
	got := load(t, s, name)
	if !equal(got, want) {
		t.Errorf("LoadCounter(%q) = %v, want %v", name, got, want)
	}
}

// equal compares states, treating nil maps as empty.
func equal(a, b crdt.State) bool {
	eq := func(x, y map[string]int64) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || w != v {
				return false
			}
		}
		return true
	}
	return eq(a.P, b.P) && eq(a.N, b.N)
}

func testLoadUnknown(t *testing.T, s storage.Store) {
	got := load(t, s, "never-written")
	if got.Len() != 0 {
		t.Errorf("LoadCounter(unknown) = %v, want empty", got)
	}
}

func testMergeKeepsMax(t *testing.T, s storage.Store) {
	const name = "c"
	steps := []struct {
		merge map[string]int64
		want  map[string]int64
	}{
		{map[string]int64{"p:a": 5}, map[string]int64{"p:a": 5}},
		{map[string]int64{"p:a": 3}, map[string]int64{"p:a": 5}},
		{map[string]int64{"p:a": 7, "n:a": 2}, map[string]int64{"p:a": 7, "n:a": 2}},
		{map[string]int64{"p:a": 0, "n:a": 1, "p:b": 4}, map[string]int64{"p:a": 7, "n:a": 2, "p:b": 4}},
		{map[string]int64{"p:z": 0}, map[string]int64{"p:a": 7, "n:a": 2, "p:b": 4}}, // zero is absent
		{map[string]int64{}, map[string]int64{"p:a": 7, "n:a": 2, "p:b": 4}},
		{map[string]int64{"p:a": 7, "n:b": crdt.MaxSafe}, map[string]int64{"p:a": 7, "n:a": 2, "p:b": 4, "n:b": crdt.MaxSafe}},
	}
	for i, st := range steps {
		merge(t, s, name, state(st.merge))
		if got := load(t, s, name); !equal(got, state(st.want)) {
			t.Fatalf("step %d: after merging %v: got %v, want %v", i, st.merge, got, st.want)
		}
	}
	// A nil-map State is an empty one.
	merge(t, s, name, crdt.State{})
	merge(t, s, name, crdt.State{P: map[string]int64{"q": 1}})
	wantState(t, s, name, state(map[string]int64{"p:a": 7, "n:a": 2, "p:b": 4, "n:b": crdt.MaxSafe, "p:q": 1}))
	// Loaded states are copies.
	got := load(t, s, name)
	got.P["a"] = 1000
	got.N["new"] = 1
	wantState(t, s, name, state(map[string]int64{"p:a": 7, "n:a": 2, "p:b": 4, "n:b": crdt.MaxSafe, "p:q": 1}))
}

func testIndependent(t *testing.T, s storage.Store) {
	// Names that share prefixes, or that a naive key layout could confuse.
	names := []string{"c", "c/", "c/d", "cd", "c:d", "c.d", "C", "p", "n"}
	nodes := []string{"x", "x/y", "xy", "p", "n", "x\x00y", "ü"}
	want := map[string]crdt.State{}
	for i, name := range names {
		st := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
		for j, node := range nodes {
			st.P[node] = int64(100*i + j + 1)
			if j%2 == 0 {
				st.N[node] = int64(100*i + j + 50)
			}
		}
		want[name] = st
		merge(t, s, name, st)
	}
	for _, name := range names {
		wantState(t, s, name, want[name])
	}
	// Raising one side of one node of one counter changes nothing else.
	merge(t, s, "c", crdt.State{N: map[string]int64{"x/y": 999}})
	want["c"].N["x/y"] = 999
	for _, name := range names {
		wantState(t, s, name, want[name])
	}
}

func testLimits(t *testing.T, s storage.Store) {
	long := strings.Repeat("n", storage.MaxNameLen)
	chars := "ABCXYZabcxyz0123456789_-.:/"
	node := strings.Repeat("é", storage.MaxNodeLen/2)
	for _, name := range []string{long, chars, "a"} {
		st := crdt.State{P: map[string]int64{node: 3}, N: map[string]int64{node: 4, "m": crdt.MaxSafe}}
		merge(t, s, name, st)
		wantState(t, s, name, st)
	}
	if _, err := s.ClaimNodes(ctx, []string{node}, "u"); err != nil {
		t.Errorf("ClaimNodes(%d-byte node): %v", len(node), err)
	}
}

func testInvalidStoresNothing(t *testing.T, s storage.Store) {
	const name = "inv"
	cases := []struct {
		label string
		name  string
		st    crdt.State
		entry bool // error wraps crdt.ErrInvalidEntry too
	}{
		{"negative", name, crdt.State{P: map[string]int64{"a": 5, "b": -1}}, true},
		{"too large", name, crdt.State{P: map[string]int64{"a": 5}, N: map[string]int64{"b": crdt.MaxSafe + 1}}, true},
		{"empty node", name, crdt.State{P: map[string]int64{"a": 5}, N: map[string]int64{"": 1}}, true},
		{"long node", name, crdt.State{P: map[string]int64{"a": 5, strings.Repeat("x", storage.MaxNodeLen+1): 1}}, false},
		{"empty name", "", crdt.State{P: map[string]int64{"a": 5}}, false},
		{"long name", strings.Repeat("x", storage.MaxNameLen+1), crdt.State{P: map[string]int64{"a": 5}}, false},
	}
	for _, c := range cases {
		err := s.MergeCounter(ctx, c.name, c.st)
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: MergeCounter = %v, want ErrInvalid", c.label, err)
		}
		if c.entry && !errors.Is(err, crdt.ErrInvalidEntry) {
			t.Errorf("%s: MergeCounter = %v, want crdt.ErrInvalidEntry", c.label, err)
		}
	}
	wantState(t, s, name, crdt.State{})
	if _, err := s.LoadCounter(ctx, ""); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("LoadCounter(\"\") = %v, want ErrInvalid", err)
	}
	// An invalid merge on a stored counter leaves it as it was.
	merge(t, s, name, crdt.State{P: map[string]int64{"a": 1}})
	if err := s.MergeCounter(ctx, name, crdt.State{P: map[string]int64{"a": 9, "b": -1}}); err == nil {
		t.Error("MergeCounter(negative) = nil, want error")
	}
	wantState(t, s, name, crdt.State{P: map[string]int64{"a": 1}})
}

func testConcurrentMerge(t *testing.T, s storage.Store) {
	const (
		goroutines = 50
		rounds     = 20
		counters   = 5
		nodes      = 7
	)
	type key struct {
		counter, side, node string
	}
	var (
		mu   sync.Mutex
		want = map[key]int64{}
		wg   sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			local := map[key]int64{}
			for range rounds {
				// Even goroutines all hit "shared"; odd ones spread out.
				name := "shared"
				if g%2 == 1 {
					name = fmt.Sprintf("c%d", rng.IntN(counters))
				}
				st := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
				for range 1 + rng.IntN(3) {
					node := fmt.Sprintf("n%d", rng.IntN(nodes))
					v := rng.Int64N(1_000_000)
					side, m := "p", st.P
					if rng.IntN(2) == 0 {
						side, m = "n", st.N
					}
					m[node] = max(m[node], v) // a node may come up twice
					k := key{name, side, node}
					local[k] = max(local[k], m[node])
				}
				if err := s.MergeCounter(ctx, name, st); err != nil {
					t.Errorf("MergeCounter: %v", err)
					return
				}
			}
			mu.Lock()
			for k, v := range local {
				want[k] = max(want[k], v)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	names := []string{"shared"}
	for i := range counters {
		names = append(names, fmt.Sprintf("c%d", i))
	}
	for _, name := range names {
		exp := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
		for k, v := range want {
			if k.counter != name || v == 0 {
				continue
			}
			if k.side == "p" {
				exp.P[k.node] = v
			} else {
				exp.N[k.node] = v
			}
		}
		wantState(t, s, name, exp)
	}
}

func claim(t *testing.T, s storage.Store, node, user, want string) {
	t.Helper()
	got, err := claimOne(s, node, user)
	if err != nil {
		t.Fatalf("claim %q for %q: %v", node, user, err)
	}
	if got != want {
		t.Fatalf("claim %q for %q: owner %q, want %q", node, user, got, want)
	}
}

// claimOne claims one node.
func claimOne(s storage.Store, node, user string) (string, error) {
	owners, err := s.ClaimNodes(ctx, []string{node}, user)
	if err != nil {
		return "", err
	}
	if len(owners) != 1 {
		return "", fmt.Errorf("ClaimNodes of one node returned %d owners", len(owners))
	}
	return owners[0], nil
}

func testClaimNode(t *testing.T, s storage.Store) {
	claim(t, s, "n1", "alice", "alice")
	claim(t, s, "n1", "alice", "alice")
	claim(t, s, "n1", "bob", "alice")
	claim(t, s, "n2", "bob", "bob")
	claim(t, s, "n2", "alice", "bob")
	claim(t, s, "n1", "alice", "alice")
	for _, c := range []struct{ node, user string }{
		{"", "alice"},
		{"n3", ""},
		{strings.Repeat("x", storage.MaxNodeLen+1), "alice"},
	} {
		if _, err := claimOne(s, c.node, c.user); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("claim %q for %q: %v, want ErrInvalid", c.node, c.user, err)
		}
	}
	// The failed claims bound nothing.
	claim(t, s, "n3", "carol", "carol")
}

func testClaimNodeRace(t *testing.T, s storage.Store) {
	const goroutines = 20
	for round := range 5 {
		node := fmt.Sprintf("race-%d", round)
		owners := make([]string, goroutines)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			wg.Go(func() {
				<-start
				user := "alice"
				if g%2 == 1 {
					user = "bob"
				}
				owner, err := claimOne(s, node, user)
				if err != nil {
					t.Errorf("ClaimNodes: %v", err)
				}
				owners[g] = owner
			})
		}
		close(start)
		wg.Wait()
		if owners[0] != "alice" && owners[0] != "bob" {
			t.Fatalf("%s: owner %q, want alice or bob", node, owners[0])
		}
		for g, o := range owners {
			if o != owners[0] {
				t.Fatalf("%s: goroutine %d saw owner %q, goroutine 0 saw %q", node, g, o, owners[0])
			}
		}
		claim(t, s, node, "carol", owners[0])
	}
}

func claimAll(t *testing.T, s storage.Store, nodes []string, user string, want []string) {
	t.Helper()
	got, err := s.ClaimNodes(ctx, nodes, user)
	if err != nil {
		t.Fatalf("ClaimNodes(%d nodes, %q): %v", len(nodes), user, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ClaimNodes(%q, %q) = %q, want %q", nodes, user, got, want)
	}
}

func testClaimNodes(t *testing.T, s storage.Store) {
	claim(t, s, "a1", "alice", "alice")
	claim(t, s, "b1", "bob", "bob")
	// New nodes, the user's own, another's and a repeated one in one call.
	claimAll(t, s, []string{"a1", "a2", "b1", "a3", "a2"}, "alice", []string{"alice", "alice", "bob", "alice", "alice"})
	claimAll(t, s, []string{"a2", "b2", "a3"}, "bob", []string{"alice", "bob", "alice"})
	claimAll(t, s, nil, "alice", []string{})
	// Claims of one node agree.
	claim(t, s, "a3", "bob", "alice")
	claim(t, s, "b2", "alice", "bob")
	for _, c := range []struct {
		nodes []string
		user  string
	}{
		{[]string{"c1", ""}, "carol"},
		{[]string{"c1", strings.Repeat("x", storage.MaxNodeLen+1)}, "carol"},
		{[]string{"c1"}, ""},
	} {
		if _, err := s.ClaimNodes(ctx, c.nodes, c.user); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ClaimNodes(%q, %q) = %v, want ErrInvalid", c.nodes, c.user, err)
		}
	}
	// The failed calls claimed nothing.
	claim(t, s, "c1", "dave", "dave")
}

// testClaimNodesMany claims more nodes than one etcd transaction holds.
func testClaimNodesMany(t *testing.T, s storage.Store) {
	const n = 300
	var nodes, mine, want []string
	for i := range n {
		nodes = append(nodes, fmt.Sprintf("m-%d", i))
		mine = append(mine, "alice")
		if i%3 == 0 {
			claim(t, s, nodes[i], "bob", "bob")
			want = append(want, "bob")
		} else {
			want = append(want, "alice")
		}
	}
	claimAll(t, s, nodes, "alice", want)
	claimAll(t, s, nodes, "carol", want)
	for i := range n {
		if i%3 != 0 {
			claim(t, s, nodes[i], "bob", "alice")
		}
	}
	// alice's own nodes again, alone: all hers.
	var hers []string
	for i := range n {
		if i%3 != 0 {
			hers = append(hers, nodes[i])
		}
	}
	claimAll(t, s, hers, "alice", mine[:len(hers)])
}

// testClaimNodesRace: batches of two users over the same nodes, in
// different orders, see one owner per node.
func testClaimNodesRace(t *testing.T, s storage.Store) {
	const goroutines = 10
	nodes := make([]string, 40)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("r-%d", i)
	}
	results := make([][]string, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			user := []string{"alice", "bob"}[g%2]
			// Each goroutine claims the nodes in its own order.
			order := slices.Clone(nodes)
			rand.New(rand.NewPCG(uint64(g), 3)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			owners, err := s.ClaimNodes(ctx, order, user)
			if err != nil {
				t.Errorf("ClaimNodes: %v", err)
				return
			}
			byNode := make([]string, len(nodes))
			for i, node := range order {
				var k int
				fmt.Sscanf(node, "r-%d", &k)
				byNode[k] = owners[i]
			}
			results[g] = byNode
		})
	}
	close(start)
	wg.Wait()
	for i, node := range nodes {
		owner, err := claimOne(s, node, "carol")
		if err != nil {
			t.Fatal(err)
		}
		if owner != "alice" && owner != "bob" {
			t.Fatalf("%s: owner %q", node, owner)
		}
		for g, r := range results {
			if r != nil && r[i] != owner {
				t.Fatalf("%s: goroutine %d saw owner %q, the store has %q", node, g, r[i], owner)
			}
		}
	}
}

func reserve(t *testing.T, s storage.Store, n uint64) uint64 {
	t.Helper()
	first, err := s.ReserveFencing(ctx, n)
	if err != nil {
		t.Fatalf("ReserveFencing(%d): %v", n, err)
	}
	return first
}

func testReserveFencing(t *testing.T, s storage.Store) {
	if got := reserve(t, s, 1); got != 1 {
		t.Fatalf("first ReserveFencing(1) = %d, want 1", got)
	}
	prevEnd := uint64(1) // last token of the previous range
	for _, n := range []uint64{1, 5, 1, 100, 2} {
		first := reserve(t, s, n)
		if first <= prevEnd {
			t.Fatalf("ReserveFencing(%d) = %d, not above previous range ending at %d", n, first, prevEnd)
		}
		prevEnd = first + n - 1
	}
	if _, err := s.ReserveFencing(ctx, 0); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ReserveFencing(0) = %v, want ErrInvalid", err)
	}
	if _, err := s.ReserveFencing(ctx, storage.MaxFencing); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ReserveFencing(MaxFencing) past other ranges = %v, want ErrInvalid", err)
	}
	// Failed reservations raised nothing past what later ranges may use.
	if first := reserve(t, s, 1); first <= prevEnd {
		t.Fatalf("ReserveFencing(1) = %d, not above %d", first, prevEnd)
	}
}

func testReserveFencingConcurrent(t *testing.T, s storage.Store) {
	const (
		goroutines = 20
		each       = 10
	)
	type span struct{ first, n uint64 }
	var (
		mu    sync.Mutex
		spans []span
		wg    sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			var prevEnd uint64
			for range each {
				n := 1 + rng.Uint64N(5)
				first, err := s.ReserveFencing(ctx, n)
				if err != nil {
					t.Errorf("ReserveFencing: %v", err)
					return
				}
				if first <= prevEnd {
					t.Errorf("goroutine %d: ReserveFencing = %d, not above its previous range ending at %d", g, first, prevEnd)
				}
				prevEnd = first + n - 1
				mu.Lock()
				spans = append(spans, span{first, n})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(spans, func(a, b span) int { return int(a.first) - int(b.first) })
	if len(spans) == 0 || spans[0].first != 1 {
		t.Fatalf("lowest range %v, want one starting at 1", spans[:min(1, len(spans))])
	}
	for i := 1; i < len(spans); i++ {
		if prev := spans[i-1]; spans[i].first < prev.first+prev.n {
			t.Fatalf("ranges overlap: [%d,+%d) and [%d,+%d)", prev.first, prev.n, spans[i].first, spans[i].n)
		}
	}
}

func testCanceledContext(t *testing.T, s storage.Store) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.MergeCounter(c, "cc", crdt.State{P: map[string]int64{"a": 1}}); err == nil {
		t.Error("MergeCounter(canceled) = nil, want error")
	}
	if _, err := s.ClaimNodes(c, []string{"cc"}, "alice"); err == nil {
		t.Error("ClaimNodes(canceled) = nil, want error")
	}
	if _, err := s.ReserveFencing(c, 1); err == nil {
		t.Error("ReserveFencing(canceled) = nil, want error")
	}
	if _, err := s.LoadCounter(c, "cc"); err == nil {
		t.Error("LoadCounter(canceled) = nil, want error")
	}
	// The store still works with a live context.
	merge(t, s, "cc", crdt.State{P: map[string]int64{"a": 1}})
	claim(t, s, "cc", "bob", "bob")
	if first := reserve(t, s, 1); first < 1 {
		t.Errorf("ReserveFencing(1) = %d, want ≥ 1", first)
	}
}

func testClosed(t *testing.T, s storage.Store) {
	merge(t, s, "c", crdt.State{P: map[string]int64{"a": 1}})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.LoadCounter(ctx, "c"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("LoadCounter after Close = %v, want ErrClosed", err)
	}
	if err := s.MergeCounter(ctx, "c", crdt.State{P: map[string]int64{"a": 2}}); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("MergeCounter after Close = %v, want ErrClosed", err)
	}
	if _, err := s.ClaimNodes(ctx, []string{"n"}, "alice"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("ClaimNodes after Close = %v, want ErrClosed", err)
	}
	if _, err := s.ReserveFencing(ctx, 1); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("ReserveFencing after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func testReopen(t *testing.T, open func(t *testing.T, dir string) storage.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	counters := map[string]crdt.State{
		"a":           {P: map[string]int64{"x": 5, "y": crdt.MaxSafe}, N: map[string]int64{"x": 2}},
		"b/c:d.e_f-g": {P: map[string]int64{}, N: map[string]int64{"z": 9}},
	}
	for name, st := range counters {
		merge(t, s, name, st)
	}
	claim(t, s, "n1", "alice", "alice")
	claim(t, s, "n2", "bob", "bob")
	claimAll(t, s, []string{"n3", "n1", "n4"}, "carol", []string{"carol", "alice", "carol"})
	if _, err := bstore(t, s).UpdateBounded(ctx, "stock", func(cur crdt.BState, _ bool) (crdt.BState, bool, error) {
		return crdt.BState{Min: 3, P: map[string]int64{"x": 4}, T: map[string]map[string]int64{"x": {"@": 4}}}, true, nil
	}); err != nil {
		t.Fatalf("UpdateBounded: %v", err)
	}
	var hw uint64
	for _, n := range []uint64{1, 10, 3} {
		first := reserve(t, s, n)
		hw = first + n - 1
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for cycle := range 2 {
		s = open(t, dir)
		for name, st := range counters {
			wantState(t, s, name, st)
		}
		claim(t, s, "n1", "bob", "alice")
		claim(t, s, "n2", "alice", "bob")
		if b, ok, err := bstore(t, s).LoadBounded(ctx, "stock"); err != nil || !ok || b.Min != 3 || b.T["x"]["@"] != 4 {
			t.Fatalf("cycle %d: LoadBounded = %+v, %v, %v", cycle, b, ok, err)
		}
		claimAll(t, s, []string{"n4", "n3"}, "bob", []string{"carol", "carol"})
		first := reserve(t, s, 2)
		if first <= hw {
			t.Fatalf("cycle %d: ReserveFencing after reopen = %d, want above %d", cycle, first, hw)
		}
		hw = first + 1
		// Writes after a reopen merge with what was there.
		merge(t, s, "a", crdt.State{P: map[string]int64{"x": 4, "w": int64(cycle + 1)}})
		counters["a"].P["w"] = int64(cycle + 1)
		wantState(t, s, "a", counters["a"])
		if err := s.Close(); err != nil {
			t.Fatalf("cycle %d: Close: %v", cycle, err)
		}
	}
}
