package crdt

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func mustBounded(t *testing.T, min int64) *Bounded {
	t.Helper()
	b, err := NewBounded(min)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBoundedRights: increments create rights where they are made, a
// decrement spends them and fails cleanly without them, a transfer moves
// them, and a replica that learns of a transfer may spend it.
func TestBoundedRights(t *testing.T) {
	shop, alice := mustBounded(t, 0), mustBounded(t, 0)
	if v, err := shop.Increment("shop", 10); err != nil || v != 10 {
		t.Fatalf("Increment = %d, %v", v, err)
	}
	if _, err := alice.Decrement("alice", 1); !errors.Is(err, ErrNoRights) {
		t.Fatalf("decrement without rights: %v, want ErrNoRights", err)
	}
	if err := shop.Transfer("shop", "alice", 3); err != nil {
		t.Fatal(err)
	}
	if err := shop.Transfer("shop", "alice", 8); !errors.Is(err, ErrNoRights) {
		t.Fatalf("transfer of more than held: %v, want ErrNoRights", err)
	}
	if _, err := alice.Merge(shop.State()); err != nil {
		t.Fatal(err)
	}
	if r := alice.Rights("alice"); r != 3 {
		t.Fatalf("alice holds %d rights, want 3", r)
	}
	for i := range 3 {
		if v, err := alice.Decrement("alice", 1); err != nil || v != int64(9-i) {
			t.Fatalf("decrement %d: %d, %v", i, v, err)
		}
	}
	if _, err := alice.Decrement("alice", 1); !errors.Is(err, ErrNoRights) {
		t.Fatalf("fourth decrement: %v, want ErrNoRights", err)
	}
	if r := shop.Rights("shop"); r != 7 {
		t.Fatalf("shop holds %d, want 7", r)
	}
	if _, err := shop.Merge(alice.State()); err != nil || shop.Value() != 7 {
		t.Fatalf("shop after merge: %d, %v; want 7", shop.Value(), err)
	}
}

// TestBoundedMergeFrom: the server's check of a replica's own state.
func TestBoundedMergeFrom(t *testing.T) {
	srv := mustBounded(t, 0)
	if _, err := srv.Increment("srv", 5); err != nil {
		t.Fatal(err)
	}
	if err := srv.Transfer("srv", "c", 2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    BState
		want error
	}{
		{"spends what it holds", BState{N: map[string]int64{"c": 2}}, nil},
		{"overspends", BState{N: map[string]int64{"c": 3}}, ErrNoRights},
		{"transfers more than it holds", BState{T: map[string]map[string]int64{"c": {"srv": 3}}}, ErrNoRights},
		{"raises another node", BState{P: map[string]int64{"srv": 9}}, ErrNotOwner},
		{"raises another row", BState{T: map[string]map[string]int64{"srv": {"c": 5}}}, ErrNotOwner},
		{"other bound", BState{Min: -1}, ErrBoundMismatch},
		{"its increments make rights", BState{P: map[string]int64{"c": 4}, N: map[string]int64{"c": 6}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := BoundedFromState(srv.State())
			if err != nil {
				t.Fatal(err)
			}
			before := b.State()
			_, err = b.MergeFrom("c", tc.s)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("MergeFrom = %v, want %v", err, tc.want)
			}
			if err != nil && !reflect.DeepEqual(b.State(), before) {
				t.Fatalf("a refused state changed the replica: %+v", b.State())
			}
		})
	}
}

// bsim is a system of bounded-counter replicas exchanging full states
// through a network that delays, reorders, duplicates and loses messages,
// driven by fuzz input.
type bsim struct {
	t        *testing.T
	min      int64
	replicas []*Bounded
	inflight []BState // states sent and not yet delivered (or delivered and kept: duplicates)
}

func newBsim(t *testing.T, min int64, n int) *bsim {
	s := &bsim{t: t, min: min}
	for range n {
		s.replicas = append(s.replicas, mustBounded(t, min))
	}
	return s
}

func node(i int) string { return fmt.Sprintf("r%d", i) }

// step runs one operation chosen by op and arg.
func (s *bsim) step(op, arg byte) {
	n := len(s.replicas)
	i := int(arg) % n
	r := s.replicas[i]
	amount := int64(arg>>4) + 1
	switch op % 6 {
	case 0: // increment
		if _, err := r.Increment(node(i), amount); err != nil {
			s.t.Fatalf("increment: %v", err)
		}
	case 1, 2: // decrement: refused exactly when the rights are short
		held := r.Rights(node(i))
		_, err := r.Decrement(node(i), amount)
		if (err == nil) != (held >= amount) {
			s.t.Fatalf("decrement %d with %d rights: %v", amount, held, err)
		}
	case 3: // transfer to another replica
		j := (i + 1 + int(arg>>2)%(n-1)) % n
		held := r.Rights(node(i))
		err := r.Transfer(node(i), node(j), amount)
		if (err == nil) != (held >= amount) {
			s.t.Fatalf("transfer %d with %d rights: %v", amount, held, err)
		}
	case 4: // send i's full state
		s.inflight = append(s.inflight, r.State())
	case 5: // deliver a message: keep it (a duplicate later) or drop it
		if len(s.inflight) == 0 {
			return
		}
		k := int(arg) % len(s.inflight)
		m := s.inflight[k]
		if arg&1 == 0 {
			s.inflight = append(s.inflight[:k], s.inflight[k+1:]...)
		}
		to := s.replicas[int(arg>>1)%n]
		if _, err := to.Merge(m); err != nil {
			s.t.Fatalf("merge: %v", err)
		}
	}
	s.check()
}

// check: in every replica's view the value is at least the bound and
// every node's rights are not negative, and so in the join of all views.
func (s *bsim) check() {
	join := mustBounded(s.t, s.min)
	for i, r := range s.replicas {
		if r.Value() < s.min {
			s.t.Fatalf("replica %d shows %d, below the bound %d", i, r.Value(), s.min)
		}
		for j := range s.replicas {
			if h := r.Rights(node(j)); h < 0 {
				s.t.Fatalf("replica %d sees %s holding %d rights", i, node(j), h)
			}
		}
		if _, err := join.Merge(r.State()); err != nil {
			s.t.Fatal(err)
		}
	}
	if join.Value() < s.min {
		s.t.Fatalf("the join of all replicas shows %d, below the bound %d", join.Value(), s.min)
	}
}

// converge delivers every replica's state to every other and checks that
// all agree.
func (s *bsim) converge() {
	for range 2 {
		for _, from := range s.replicas {
			st := from.State()
			for _, to := range s.replicas {
				if _, err := to.Merge(st); err != nil {
					s.t.Fatal(err)
				}
			}
		}
	}
	want := s.replicas[0].State()
	for i, r := range s.replicas[1:] {
		if got := r.State(); !reflect.DeepEqual(normal(got), normal(want)) {
			s.t.Fatalf("replica %d = %+v, replica 0 = %+v", i+1, got, want)
		}
	}
	s.check()
}

// normal drops zero entries and empty rows, which are the same as absent.
func normal(s BState) BState {
	out := BState{Min: s.Min, P: map[string]int64{}, N: map[string]int64{}, T: map[string]map[string]int64{}}
	for k, v := range s.P {
		if v != 0 {
			out.P[k] = v
		}
	}
	for k, v := range s.N {
		if v != 0 {
			out.N[k] = v
		}
	}
	for from, row := range s.T {
		for to, v := range row {
			if v != 0 {
				if out.T[from] == nil {
					out.T[from] = map[string]int64{}
				}
				out.T[from][to] = v
			}
		}
	}
	return out
}

// FuzzBoundedInvariant: replicas increment, decrement, transfer and
// exchange states through a network that reorders, duplicates and loses
// messages; after every step no replica (nor the join of all) shows a
// value below the bound or a node with negative rights, a decrement or
// transfer fails exactly when the rights are short, and once every state
// is delivered all replicas agree.
func FuzzBoundedInvariant(f *testing.F) {
	f.Add(byte(3), int64(0), []byte{0, 0x30, 3, 0x01, 4, 0, 5, 0x02, 1, 0x01, 2, 0x11})
	f.Add(byte(2), int64(-5), []byte{0, 0xf0, 3, 0xf0, 4, 0, 5, 1, 1, 0xf1, 1, 0xf1, 4, 1, 5, 0})
	f.Add(byte(5), int64(100), []byte{})
	f.Fuzz(func(t *testing.T, replicas byte, min int64, ops []byte) {
		n := 2 + int(replicas)%5
		min %= 1 << 40
		if len(ops) > 300 {
			ops = ops[:300]
		}
		s := newBsim(t, min, n)
		for k := 0; k+1 < len(ops); k += 2 {
			s.step(ops[k], ops[k+1])
		}
		s.converge()
	})
}

// randomState builds a valid state from fuzz bytes: entries on a few
// nodes, transfers between different nodes.
func randomState(min int64, data []byte) BState {
	s := BState{Min: min, P: map[string]int64{}, N: map[string]int64{}, T: map[string]map[string]int64{}}
	for k := 0; k+2 < len(data); k += 3 {
		i, j, v := int(data[k]%4), int(data[k+1]%4), int64(data[k+2])
		switch data[k+1] % 3 {
		case 0:
			s.P[node(i)] = v
		case 1:
			s.N[node(i)] = v
		default:
			if i != j {
				if s.T[node(i)] == nil {
					s.T[node(i)] = map[string]int64{}
				}
				s.T[node(i)][node(j)] = v
			}
		}
	}
	return s
}

func joinOf(t *testing.T, min int64, states ...BState) BState {
	t.Helper()
	b := mustBounded(t, min)
	for _, s := range states {
		if _, err := b.Merge(s); err != nil {
			t.Fatal(err)
		}
	}
	return normal(b.State())
}

// FuzzBoundedMergeLaws: merge is commutative, associative and idempotent
// on any valid states.
func FuzzBoundedMergeLaws(f *testing.F) {
	f.Add([]byte{0, 0, 5, 1, 1, 3}, []byte{0, 0, 7, 2, 2, 1}, []byte{1, 3, 9})
	f.Fuzz(func(t *testing.T, da, db, dc []byte) {
		a, b, c := randomState(0, da), randomState(0, db), randomState(0, dc)
		if ab, ba := joinOf(t, 0, a, b), joinOf(t, 0, b, a); !reflect.DeepEqual(ab, ba) {
			t.Fatalf("a∨b = %+v, b∨a = %+v", ab, ba)
		}
		if l, r := joinOf(t, 0, joinOf(t, 0, a, b), c), joinOf(t, 0, a, joinOf(t, 0, b, c)); !reflect.DeepEqual(l, r) {
			t.Fatalf("(a∨b)∨c = %+v, a∨(b∨c) = %+v", l, r)
		}
		if aa := joinOf(t, 0, a, a); !reflect.DeepEqual(aa, joinOf(t, 0, a)) {
			t.Fatalf("a∨a = %+v, a = %+v", aa, joinOf(t, 0, a))
		}
	})
}

// FuzzBStateBinary: every valid state survives its binary form, and any
// bytes decode to a valid state or an error matching ErrCorrupt, never a
// panic.
func FuzzBStateBinary(f *testing.F) {
	f.Add([]byte{0, 0, 5, 1, 1, 3, 2, 3, 9}, []byte{})
	f.Add([]byte{}, []byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data, raw []byte) {
		s := randomState(int64(len(data))-3, data)
		got, err := DecodeBState(s.AppendBinary(nil))
		if err != nil {
			t.Fatalf("decode of %+v: %v", s, err)
		}
		if !reflect.DeepEqual(normal(got), normal(s)) {
			t.Fatalf("round trip %+v → %+v", s, got)
		}
		if st, err := DecodeBState(raw); err == nil {
			if err := st.Validate(); err != nil {
				t.Fatalf("decoded an invalid state %+v", st)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not match ErrCorrupt", err)
		}
	})
}
