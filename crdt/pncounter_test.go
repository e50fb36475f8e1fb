package crdt

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"
)

// m builds a map from alternating node, magnitude pairs.
func m(kv ...any) map[string]int64 {
	if len(kv)%2 != 0 {
		panic("m: odd number of arguments")
	}
	out := make(map[string]int64, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		var v int64
		switch x := kv[i+1].(type) {
		case int:
			v = int64(x)
		case int64:
			v = x
		default:
			panic(fmt.Sprintf("m: bad magnitude type %T", x))
		}
		out[kv[i].(string)] = v
	}
	return out
}

// stateEqual compares states, treating nil and empty maps alike.
func stateEqual(a, b State) bool {
	return maps.Equal(a.P, b.P) && maps.Equal(a.N, b.N)
}

// mustFromState builds a counter from s or fails the test.
func mustFromState(tb testing.TB, s State) *Counter {
	tb.Helper()
	c, err := FromState(s)
	if err != nil {
		tb.Fatalf("FromState(%v): %v", s, err)
	}
	return c
}

// checkErr reports whether err matches want (nil means no error expected).
// An ErrOutOfRange must not also be an ErrInvalidEntry and vice versa.
func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want one wrapping %v", what, err, want)
	case errors.Is(err, ErrOutOfRange) && errors.Is(err, ErrInvalidEntry):
		t.Fatalf("%s: error %v wraps both sentinels", what, err)
	}
}

// bigState returns k nodes each with p = n = MaxSafe: value 0, but
// Σp = Σn = k·MaxSafe. For k = 512 that is 2^62−512, just below maxSum.
func bigState(k int) State {
	s := State{P: make(map[string]int64, k), N: make(map[string]int64, k)}
	for i := range k {
		id := fmt.Sprintf("big-%04d", i)
		s.P[id] = MaxSafe
		s.N[id] = MaxSafe
	}
	return s
}

type addOp struct {
	node  string
	delta int64
}

func TestAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   []addOp // must all succeed
		op      addOp
		want    int64 // value returned by op
		wantErr error
		wantSt  State // state after op (on error: state after setup)
	}{
		{
			name: "positive on empty",
			op:   addOp{"a", 5}, want: 5,
			wantSt: State{P: m("a", 5)},
		},
		{
			name: "negative on empty",
			op:   addOp{"a", -7}, want: -7,
			wantSt: State{N: m("a", 7)},
		},
		{
			name: "zero on empty changes nothing",
			op:   addOp{"a", 0}, want: 0,
			wantSt: State{},
		},
		{
			name:  "zero keeps value and entries",
			setup: []addOp{{"a", 3}, {"b", -1}},
			op:    addOp{"a", 0}, want: 2,
			wantSt: State{P: m("a", 3), N: m("b", 1)},
		},
		{
			name:  "accumulates per node and side",
			setup: []addOp{{"a", 3}, {"a", 4}, {"a", -2}, {"b", 10}},
			op:    addOp{"b", -20}, want: -5,
			wantSt: State{P: m("a", 7, "b", 10), N: m("a", 2, "b", 20)},
		},
		{
			name: "delta exactly MaxSafe",
			op:   addOp{"a", MaxSafe}, want: MaxSafe,
			wantSt: State{P: m("a", int64(MaxSafe))},
		},
		{
			name: "delta exactly -MaxSafe",
			op:   addOp{"a", -MaxSafe}, want: -MaxSafe,
			wantSt: State{N: m("a", int64(MaxSafe))},
		},
		{
			name:  "p reaches MaxSafe exactly",
			setup: []addOp{{"a", MaxSafe - 1}, {"b", -10}},
			op:    addOp{"a", 1}, want: MaxSafe - 10,
			wantSt: State{P: m("a", int64(MaxSafe)), N: m("b", 10)},
		},
		{
			name:  "p above MaxSafe",
			setup: []addOp{{"a", MaxSafe}, {"b", -MaxSafe}},
			op:    addOp{"a", 1}, want: 0, wantErr: ErrOutOfRange,
			wantSt: State{P: m("a", int64(MaxSafe)), N: m("b", int64(MaxSafe))},
		},
		{
			name:  "n above MaxSafe",
			setup: []addOp{{"a", -MaxSafe}, {"b", MaxSafe}},
			op:    addOp{"a", -1}, want: 0, wantErr: ErrOutOfRange,
			wantSt: State{P: m("b", int64(MaxSafe)), N: m("a", int64(MaxSafe))},
		},
		{
			name:  "value above MaxSafe",
			setup: []addOp{{"a", MaxSafe}},
			op:    addOp{"b", 1}, want: MaxSafe, wantErr: ErrOutOfRange,
			wantSt: State{P: m("a", int64(MaxSafe))},
		},
		{
			name:  "value below -MaxSafe",
			setup: []addOp{{"a", -MaxSafe}},
			op:    addOp{"b", -1}, want: -MaxSafe, wantErr: ErrOutOfRange,
			wantSt: State{N: m("a", int64(MaxSafe))},
		},
		{
			name:  "value above MaxSafe from mid-range",
			setup: []addOp{{"a", 1 << 52}},
			op:    addOp{"a", 1 << 52}, want: 1 << 52, wantErr: ErrOutOfRange,
			wantSt: State{P: m("a", int64(1<<52))},
		},
		{
			name:  "delta MaxSafe+1",
			setup: []addOp{{"a", -5}},
			op:    addOp{"b", MaxSafe + 1}, want: -5, wantErr: ErrOutOfRange,
			wantSt: State{N: m("a", 5)},
		},
		{
			name: "delta -MaxSafe-1",
			op:   addOp{"b", -MaxSafe - 1}, want: 0, wantErr: ErrOutOfRange,
			wantSt: State{},
		},
		{
			name: "delta MinInt64",
			op:   addOp{"b", math.MinInt64}, want: 0, wantErr: ErrOutOfRange,
			wantSt: State{},
		},
		{
			name: "delta MaxInt64",
			op:   addOp{"b", math.MaxInt64}, want: 0, wantErr: ErrOutOfRange,
			wantSt: State{},
		},
		{
			name:  "empty node id",
			setup: []addOp{{"a", 2}},
			op:    addOp{"", 1}, want: 2, wantErr: ErrInvalidEntry,
			wantSt: State{P: m("a", 2)},
		},
		{
			name: "empty node id with zero delta",
			op:   addOp{"", 0}, want: 0, wantErr: ErrInvalidEntry,
			wantSt: State{},
		},
		{
			name: "empty node id with negative delta",
			op:   addOp{"", -1}, want: 0, wantErr: ErrInvalidEntry,
			wantSt: State{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c Counter // the zero value is ready to use
			for _, op := range tt.setup {
				if _, err := c.Add(op.node, op.delta); err != nil {
					t.Fatalf("setup Add(%q, %d): %v", op.node, op.delta, err)
				}
			}
			before, beforeV := c.State(), c.Value()
			got, err := c.Add(tt.op.node, tt.op.delta)
			checkErr(t, "Add", err, tt.wantErr)
			if got != tt.want {
				t.Errorf("Add returned %d, want %d", got, tt.want)
			}
			if c.Value() != tt.want {
				t.Errorf("Value() = %d, want %d", c.Value(), tt.want)
			}
			if !stateEqual(c.State(), tt.wantSt) {
				t.Errorf("State() = %v, want %v", c.State(), tt.wantSt)
			}
			if err != nil {
				if c.Value() != beforeV || !stateEqual(c.State(), before) {
					t.Errorf("failed Add changed the counter: %v (%d) -> %v (%d)",
						before, beforeV, c.State(), c.Value())
				}
			}
			// The running sum agrees with the state, and every reachable
			// state is accepted by another replica.
			if v, err := c.State().Value(); err != nil || v != c.Value() {
				t.Errorf("State().Value() = %d, %v; want %d", v, err, c.Value())
			}
			if d := mustFromState(t, c.State()); d.Value() != c.Value() {
				t.Errorf("FromState(State()).Value() = %d, want %d", d.Value(), c.Value())
			}
		})
	}
}

// Regression: Add must keep Σp and Σn within the bound Merge enforces, or it
// produces a state that no other replica (nor FromState) can merge.
func TestAddSumBound(t *testing.T) {
	t.Parallel()
	c := mustFromState(t, bigState(512)) // Σp = Σn = maxSum − 511
	if _, err := c.Add("x", 511); err != nil {
		t.Fatalf("Add up to the bound: %v", err)
	}
	if _, err := c.Add("y", -511); err != nil {
		t.Fatalf("Add up to the bound: %v", err)
	}
	before := c.State()
	for _, d := range []int64{1, -1, MaxSafe, -MaxSafe} {
		v, err := c.Add("x", d)
		checkErr(t, fmt.Sprintf("Add(x, %d) past the bound", d), err, ErrOutOfRange)
		if v != 0 || c.Value() != 0 || !stateEqual(c.State(), before) {
			t.Fatalf("failed Add changed the counter")
		}
	}
	d := mustFromState(t, c.State())
	if d.Value() != c.Value() {
		t.Fatalf("replica value %d, want %d", d.Value(), c.Value())
	}
}

func TestEntry(t *testing.T) {
	t.Parallel()
	var c Counter
	if p, n := c.Entry("a"); p != 0 || n != 0 {
		t.Fatalf("Entry on zero counter = %d, %d", p, n)
	}
	c.Add("a", 4)
	c.Add("a", -9)
	c.Add("b", 1)
	if p, n := c.Entry("a"); p != 4 || n != 9 {
		t.Fatalf("Entry(a) = %d, %d; want 4, 9", p, n)
	}
	if p, n := c.Entry("zz"); p != 0 || n != 0 {
		t.Fatalf("Entry(zz) = %d, %d; want 0, 0", p, n)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		init        State
		in          State
		wantChanged State
		wantSt      State // ignored on error: the state must be init's
		wantVal     int64
		wantErr     error
	}{
		{
			name:        "into empty",
			in:          State{P: m("a", 5, "b", 2), N: m("a", 1)},
			wantChanged: State{P: m("a", 5, "b", 2), N: m("a", 1)},
			wantSt:      State{P: m("a", 5, "b", 2), N: m("a", 1)},
			wantVal:     6,
		},
		{
			name:        "per-node max, reports only raised entries",
			init:        State{P: m("a", 5, "b", 2), N: m("a", 3, "c", 4)},
			in:          State{P: m("a", 4, "b", 7, "d", 1), N: m("a", 3, "c", 9)},
			wantChanged: State{P: m("b", 7, "d", 1), N: m("c", 9)},
			wantSt:      State{P: m("a", 5, "b", 7, "d", 1), N: m("a", 3, "c", 9)},
			wantVal:     13 - 12,
		},
		{
			name:        "only n side changes",
			init:        State{P: m("a", 5)},
			in:          State{P: m("a", 5), N: m("a", 2)},
			wantChanged: State{N: m("a", 2)},
			wantSt:      State{P: m("a", 5), N: m("a", 2)},
			wantVal:     3,
		},
		{
			name:    "all lower or equal: nothing changes",
			init:    State{P: m("a", 5, "b", 2), N: m("a", 3)},
			in:      State{P: m("a", 5, "b", 1), N: m("a", 0)},
			wantSt:  State{P: m("a", 5, "b", 2), N: m("a", 3)},
			wantVal: 4,
		},
		{
			name:    "zero entries are not stored",
			in:      State{P: m("a", 0), N: m("b", 0)},
			wantSt:  State{},
			wantVal: 0,
		},
		{
			name:    "nil maps",
			init:    State{P: m("a", 1)},
			in:      State{},
			wantSt:  State{P: m("a", 1)},
			wantVal: 1,
		},
		{
			name:        "entries at MaxSafe",
			in:          State{P: m("a", int64(MaxSafe)), N: m("a", int64(MaxSafe), "b", 1)},
			wantChanged: State{P: m("a", int64(MaxSafe)), N: m("a", int64(MaxSafe), "b", 1)},
			wantSt:      State{P: m("a", int64(MaxSafe)), N: m("a", int64(MaxSafe), "b", 1)},
			wantVal:     -1,
		},
		{
			name:    "negative entry merges nothing",
			init:    State{P: m("a", 1)},
			in:      State{P: m("a", 9, "b", 3), N: m("c", -1)},
			wantErr: ErrInvalidEntry,
		},
		{
			name:    "MinInt64 entry merges nothing",
			in:      State{P: m("a", 9, "b", int64(math.MinInt64))},
			wantErr: ErrInvalidEntry,
		},
		{
			name:    "entry above MaxSafe merges nothing",
			init:    State{N: m("a", 1)},
			in:      State{P: m("a", 9, "b", int64(MaxSafe+1)), N: m("a", 4)},
			wantErr: ErrInvalidEntry,
		},
		{
			name:    "MaxInt64 entry merges nothing",
			in:      State{N: m("b", int64(math.MaxInt64)), P: m("a", 2)},
			wantErr: ErrInvalidEntry,
		},
		{
			name:    "empty node id in p merges nothing",
			init:    State{P: m("a", 1)},
			in:      State{P: m("a", 9, "", 3), N: m("b", 2)},
			wantErr: ErrInvalidEntry,
		},
		{
			name:    "empty node id in n merges nothing",
			in:      State{P: m("a", 9), N: m("", 0)},
			wantErr: ErrInvalidEntry,
		},
		{
			name:    "value above MaxSafe merges nothing",
			init:    State{P: m("a", int64(MaxSafe))},
			in:      State{P: m("b", 1, "c", 0), N: m("x", 0)},
			wantErr: ErrOutOfRange,
		},
		{
			name:    "value below -MaxSafe merges nothing",
			init:    State{N: m("a", int64(MaxSafe-5)), P: m("q", 3)},
			in:      State{P: m("q", 4), N: m("b", 11)}, // −MaxSafe+8 +1 −11
			wantErr: ErrOutOfRange,
		},
		{
			name:    "state alone out of range",
			in:      State{P: m("a", int64(MaxSafe), "b", int64(MaxSafe))},
			wantErr: ErrOutOfRange,
		},
		{
			name:    "raising an existing p past MaxSafe value merges nothing",
			init:    State{P: m("a", 1<<52, "b", 1<<52-1)},
			in:      State{P: m("a", 1<<52+1, "c", 0)},
			wantErr: ErrOutOfRange,
		},
		{
			name:    "sums over 2^62-1",
			init:    bigState(512),
			in:      State{P: m("x", 512), N: m("y", 512)},
			wantErr: ErrOutOfRange,
		},
		{
			name:        "sums exactly 2^62-1",
			init:        bigState(512),
			in:          State{P: m("x", 511), N: m("y", 510)},
			wantChanged: State{P: m("x", 511), N: m("y", 510)},
			wantSt: func() State {
				s := bigState(512)
				s.P["x"], s.N["y"] = 511, 510
				return s
			}(),
			wantVal: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustFromState(t, tt.init)
			in := tt.in.Clone()
			before, beforeV := c.State(), c.Value()
			changed, err := c.Merge(tt.in)
			checkErr(t, "Merge", err, tt.wantErr)
			if !stateEqual(tt.in, in) {
				t.Errorf("Merge modified its argument: %v -> %v", in, tt.in)
			}
			if err != nil {
				if changed.Len() != 0 {
					t.Errorf("failed Merge reported changes %v", changed)
				}
				if c.Value() != beforeV || !stateEqual(c.State(), before) {
					t.Errorf("failed Merge changed the counter: %v (%d) -> %v (%d)",
						before, beforeV, c.State(), c.Value())
				}
				return
			}
			if !stateEqual(changed, tt.wantChanged) {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if !stateEqual(c.State(), tt.wantSt) {
				t.Errorf("State() = %v, want %v", c.State(), tt.wantSt)
			}
			if c.Value() != tt.wantVal {
				t.Errorf("Value() = %d, want %d", c.Value(), tt.wantVal)
			}
			if v, err := c.State().Value(); err != nil || v != c.Value() {
				t.Errorf("State().Value() = %d, %v; want %d", v, err, c.Value())
			}
			// Merging the reported delta into the old state gives the new one.
			d := mustFromState(t, before)
			if _, err := d.Merge(changed); err != nil || !stateEqual(d.State(), c.State()) {
				t.Errorf("old ⊔ changed = %v (%v), want %v", d.State(), err, c.State())
			}
			// Merging again changes nothing.
			again, err := c.Merge(tt.in)
			if err != nil || again.Len() != 0 {
				t.Errorf("second Merge = %v, %v; want no change", again, err)
			}
		})
	}
}

// Regression: with more than 2048 entries near MaxSafe the increments used to
// be summed in wrapping int64 arithmetic, so a state whose value is 2^64+5
// merged and read back as 5.
func TestMergeSumOverflow(t *testing.T) {
	t.Parallel()
	s := State{P: make(map[string]int64)}
	for i := range 2048 {
		s.P[fmt.Sprintf("n%04d", i)] = MaxSafe
	}
	s.P["extra"] = 2048 + 5 // Σp = 2^64 + 5
	if _, err := s.Value(); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("State.Value error = %v, want ErrOutOfRange", err)
	}
	if c, err := FromState(s); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("FromState = %v (value %d), want ErrOutOfRange", err, c.Value())
	}
	var c Counter
	c.Add("a", 1)
	if _, err := c.Merge(s); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Merge error = %v, want ErrOutOfRange", err)
	}
	if c.Value() != 1 || !stateEqual(c.State(), State{P: m("a", 1)}) {
		t.Fatalf("failed Merge changed the counter: %v", c.State())
	}
}

func TestMergeChangedIsACopy(t *testing.T) {
	t.Parallel()
	var c Counter
	changed, err := c.Merge(State{P: m("a", 3), N: m("b", 1)})
	if err != nil {
		t.Fatal(err)
	}
	changed.P["a"] = 100
	changed.N["b"] = 100
	changed.P["z"] = 1
	if want := (State{P: m("a", 3), N: m("b", 1)}); !stateEqual(c.State(), want) || c.Value() != 2 {
		t.Fatalf("mutating changed altered the counter: %v", c.State())
	}
}

func TestOwn(t *testing.T) {
	t.Parallel()
	c := mustFromState(t, State{P: m("a", 5, "b", 2), N: m("a", 1, "c", 4)})
	tests := []struct {
		node string
		want State
	}{
		{"a", State{P: m("a", 5), N: m("a", 1)}},
		{"b", State{P: m("b", 2)}},
		{"c", State{N: m("c", 4)}},
		{"absent", State{}},
		{"", State{}},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			t.Parallel()
			got := c.Own(tt.node)
			if !stateEqual(got, tt.want) {
				t.Fatalf("Own(%q) = %v, want %v", tt.node, got, tt.want)
			}
			if got.P == nil || got.N == nil {
				t.Fatalf("Own(%q) has nil maps", tt.node)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Own(%q).Validate: %v", tt.node, err)
			}
		})
	}
	// Own is a copy.
	o := c.Own("a")
	o.P["a"] = 99
	if p, _ := c.Entry("a"); p != 5 {
		t.Fatalf("mutating Own altered the counter: p[a] = %d", p)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	full := State{P: m("a", 5, "b", 2), N: m("a", 1, "c", 4)}
	tests := []struct {
		name  string
		other State
		want  State
	}{
		{"against empty", State{}, full},
		{"against itself", full, State{}},
		{
			"against partial",
			State{P: m("a", 5, "b", 1), N: m("c", 4)},
			State{P: m("b", 2), N: m("a", 1)},
		},
		{
			"other ahead or unknown nodes",
			State{P: m("a", 9, "b", 2, "z", 3), N: m("a", 0, "c", 5)},
			State{N: m("a", 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustFromState(t, full)
			got := c.Diff(tt.other)
			if !stateEqual(got, tt.want) {
				t.Fatalf("Diff = %v, want %v", got, tt.want)
			}
			if got.P == nil || got.N == nil {
				t.Fatalf("Diff has nil maps")
			}
			// A replica holding other, after merging the diff, has seen
			// everything c has.
			r := mustFromState(t, tt.other)
			if _, err := r.Merge(got); err != nil {
				t.Fatal(err)
			}
			if rest := c.Diff(r.State()); rest.Len() != 0 {
				t.Fatalf("after merging the diff, still missing %v", rest)
			}
		})
	}
}

func TestStateIsDeepCopy(t *testing.T) {
	t.Parallel()
	var c Counter
	s := c.State()
	if s.P == nil || s.N == nil || s.Len() != 0 {
		t.Fatalf("State of empty counter = %#v", s)
	}
	c.Add("a", 3)
	c.Add("b", -2)
	s = c.State()
	s.P["a"] = 100
	s.P["new"] = 1
	s.N["b"] = 100
	delete(s.N, "b")
	if want := (State{P: m("a", 3), N: m("b", 2)}); !stateEqual(c.State(), want) || c.Value() != 1 {
		t.Fatalf("mutating State() altered the counter: %v, value %d", c.State(), c.Value())
	}
	// And the counter does not write through to an earlier State.
	s2 := c.State()
	c.Add("a", 1)
	if s2.P["a"] != 3 {
		t.Fatalf("Add altered an earlier State: %v", s2)
	}
}

func TestStateValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		s       State
		want    int64
		wantErr error
	}{
		{"empty", State{}, 0, nil},
		{"mixed", State{P: m("a", 5, "b", 2), N: m("a", 10)}, -3, nil},
		{"MaxSafe", State{P: m("a", int64(MaxSafe))}, MaxSafe, nil},
		{"-MaxSafe", State{N: m("a", int64(MaxSafe))}, -MaxSafe, nil},
		{"big but balanced", bigState(4), 0, nil},
		{"above MaxSafe", State{P: m("a", int64(MaxSafe), "b", 1)}, 0, ErrOutOfRange},
		{"below -MaxSafe", State{N: m("a", int64(MaxSafe), "b", 1)}, 0, ErrOutOfRange},
		{"int64 overflow of p", State{P: m("a", int64(math.MaxInt64), "b", 1)}, 0, ErrOutOfRange},
		{"int64 overflow of n", State{N: m("a", int64(math.MaxInt64), "b", 1)}, 0, ErrOutOfRange},
		{"negative p", State{P: m("a", -1)}, 0, ErrOutOfRange},
		{"negative n", State{N: m("a", -1)}, 0, ErrOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.s.Value()
			checkErr(t, "Value", err, tt.wantErr)
			if got != tt.want {
				t.Fatalf("Value() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestStateValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		s       State
		wantErr error
	}{
		{"empty", State{}, nil},
		{"empty maps", State{P: m(), N: m()}, nil},
		{"zeros and MaxSafe", State{P: m("a", 0, "b", int64(MaxSafe)), N: m("a", int64(MaxSafe))}, nil},
		// Validate checks entries, not the value.
		{"valid entries, value out of range", State{P: m("a", int64(MaxSafe), "b", int64(MaxSafe))}, nil},
		{"negative p", State{P: m("a", 1, "b", -1)}, ErrInvalidEntry},
		{"negative n", State{N: m("a", -5)}, ErrInvalidEntry},
		{"MinInt64", State{N: m("a", int64(math.MinInt64))}, ErrInvalidEntry},
		{"p above MaxSafe", State{P: m("a", int64(MaxSafe+1))}, ErrInvalidEntry},
		{"n above MaxSafe", State{N: m("a", int64(math.MaxInt64))}, ErrInvalidEntry},
		{"empty node in p", State{P: m("", 1)}, ErrInvalidEntry},
		{"empty node in n with zero", State{N: m("", 0)}, ErrInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, "Validate", tt.s.Validate(), tt.wantErr)
		})
	}
}

func TestStateClone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    State
	}{
		{"nil maps", State{}},
		{"only p", State{P: m("a", 1)}},
		{"both", State{P: m("a", 1, "b", 2), N: m("a", 3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := State{P: maps.Clone(tt.s.P), N: maps.Clone(tt.s.N)}
			c := tt.s.Clone()
			if c.P == nil || c.N == nil {
				t.Fatalf("Clone has nil maps: %#v", c)
			}
			if !stateEqual(c, tt.s) || c.Len() != tt.s.Len() {
				t.Fatalf("Clone = %v, want %v", c, tt.s)
			}
			c.P["a"] = 42
			c.N["zz"] = 7
			if !stateEqual(tt.s, orig) {
				t.Fatalf("mutating the clone altered the original: %v", tt.s)
			}
		})
	}
}

func TestStateNodesAndLen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		s       State
		want    []string
		wantLen int
	}{
		{"empty", State{}, []string{}, 0},
		{"p only", State{P: m("b", 1, "a", 2)}, []string{"a", "b"}, 2},
		{"overlap", State{P: m("c", 1, "a", 2), N: m("a", 1, "b", 0)}, []string{"a", "b", "c"}, 4},
		{"n only", State{N: m("z", 1, "y", 1, "x", 1)}, []string{"x", "y", "z"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.s.Nodes()
			if got == nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Nodes() = %#v, want %#v", got, tt.want)
			}
			if tt.s.Len() != tt.wantLen {
				t.Fatalf("Len() = %d, want %d", tt.s.Len(), tt.wantLen)
			}
		})
	}
}

func TestMagnitude(t *testing.T) {
	t.Parallel()
	// Platform-dependent widths: int and uint are 32 bits on some targets.
	maxUint := ^uint(0)
	var maxUintErr error
	if uint64(maxUint) > MaxSafe {
		maxUintErr = ErrInvalidEntry
	}
	tests := []struct {
		name    string
		in      any
		want    int64
		wantErr error
	}{
		{"int zero", int(0), 0, nil},
		{"int", int(42), 42, nil},
		{"int8", int8(math.MaxInt8), math.MaxInt8, nil},
		{"int16", int16(math.MaxInt16), math.MaxInt16, nil},
		{"int32", int32(math.MaxInt32), math.MaxInt32, nil},
		{"int64", int64(7), 7, nil},
		{"int64 MaxSafe", int64(MaxSafe), MaxSafe, nil},
		{"uint", uint(9), 9, nil},
		{"uint8", uint8(math.MaxUint8), math.MaxUint8, nil},
		{"uint16", uint16(math.MaxUint16), math.MaxUint16, nil},
		{"uint32", uint32(math.MaxUint32), math.MaxUint32, nil},
		{"uint64", uint64(11), 11, nil},
		{"uint64 MaxSafe", uint64(MaxSafe), MaxSafe, nil},
		{"float32", float32(1 << 24), 1 << 24, nil},
		{"float32 large integral", float32(1e10), 1e10, nil},
		{"float32 zero", float32(0), 0, nil},
		{"float64", float64(123), 123, nil},
		{"float64 zero", float64(0), 0, nil},
		{"float64 negative zero", math.Copysign(0, -1), 0, nil},
		{"float64 MaxSafe", float64(MaxSafe), MaxSafe, nil},

		{"int negative", int(-1), 0, ErrInvalidEntry},
		{"int8 negative", int8(math.MinInt8), 0, ErrInvalidEntry},
		{"int16 negative", int16(-1), 0, ErrInvalidEntry},
		{"int32 negative", int32(math.MinInt32), 0, ErrInvalidEntry},
		{"int64 negative", int64(-1), 0, ErrInvalidEntry},
		{"int64 MinInt64", int64(math.MinInt64), 0, ErrInvalidEntry},
		{"int64 2^53", int64(1 << 53), 0, ErrInvalidEntry},
		{"int64 MaxInt64", int64(math.MaxInt64), 0, ErrInvalidEntry},
		{"uint max", maxUint, int64(uint64(maxUint) & MaxSafe), maxUintErr},
		{"uint64 2^53", uint64(1 << 53), 0, ErrInvalidEntry},
		{"uint64 MaxUint64", uint64(math.MaxUint64), 0, ErrInvalidEntry},
		{"float64 fractional", 1.5, 0, ErrInvalidEntry},
		{"float64 tiny fraction", math.SmallestNonzeroFloat64, 0, ErrInvalidEntry},
		{"float64 negative", -1.0, 0, ErrInvalidEntry},
		{"float64 negative fraction", -0.5, 0, ErrInvalidEntry},
		{"float64 NaN", math.NaN(), 0, ErrInvalidEntry},
		{"float64 +Inf", math.Inf(1), 0, ErrInvalidEntry},
		{"float64 -Inf", math.Inf(-1), 0, ErrInvalidEntry},
		{"float64 2^53", float64(1 << 53), 0, ErrInvalidEntry},
		{"float64 1e300", 1e300, 0, ErrInvalidEntry},
		{"float64 MaxFloat64", math.MaxFloat64, 0, ErrInvalidEntry},
		{"float32 fractional", float32(1.5), 0, ErrInvalidEntry},
		{"float32 negative", float32(-2), 0, ErrInvalidEntry},
		{"float32 NaN", float32(math.NaN()), 0, ErrInvalidEntry},
		{"float32 +Inf", float32(math.Inf(1)), 0, ErrInvalidEntry},
		{"float32 -Inf", float32(math.Inf(-1)), 0, ErrInvalidEntry},
		{"float32 2^53", float32(1 << 53), 0, ErrInvalidEntry},
		{"float32 MaxFloat32", float32(math.MaxFloat32), 0, ErrInvalidEntry},
		{"string", "1", 0, ErrInvalidEntry},
		{"nil", nil, 0, ErrInvalidEntry},
		{"bool", true, 0, ErrInvalidEntry},
		{"bytes", []byte{1}, 0, ErrInvalidEntry},
		{"pointer", new(int64), 0, ErrInvalidEntry},
		{"complex", complex(1, 0), 0, ErrInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Magnitude(tt.in)
			checkErr(t, fmt.Sprintf("Magnitude(%T %v)", tt.in, tt.in), err, tt.wantErr)
			if err != nil {
				if got != 0 {
					t.Fatalf("Magnitude(%v) = %d with error, want 0", tt.in, got)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("Magnitude(%T %v) = %d, want %d", tt.in, tt.in, got, tt.want)
			}
			// Round trip through the float64 a browser would see.
			if back, err := Magnitude(float64(got)); err != nil || back != got {
				t.Fatalf("Magnitude(float64(%d)) = %d, %v", got, back, err)
			}
		})
	}
}

func TestFromState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		s       State
		want    int64
		wantErr error
	}{
		{"empty", State{}, 0, nil},
		{"valid", State{P: m("a", 5, "b", 1), N: m("a", 2, "c", 0)}, 4, nil},
		{"negative entry", State{P: m("a", 5), N: m("b", -1)}, 0, ErrInvalidEntry},
		{"oversized entry", State{P: m("a", int64(MaxSafe+1))}, 0, ErrInvalidEntry},
		{"empty node id", State{P: m("", 1)}, 0, ErrInvalidEntry},
		{"out of range", State{P: m("a", int64(MaxSafe), "b", 1)}, 0, ErrOutOfRange},
		{"out of range negative", State{N: m("a", int64(MaxSafe), "b", 1)}, 0, ErrOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.s.Clone()
			c, err := FromState(in)
			checkErr(t, "FromState", err, tt.wantErr)
			if err != nil {
				if c != nil {
					t.Fatalf("FromState returned a counter with error %v", err)
				}
				return
			}
			if c.Value() != tt.want {
				t.Fatalf("Value() = %d, want %d", c.Value(), tt.want)
			}
			want := tt.s.Clone()
			maps.DeleteFunc(want.P, func(_ string, v int64) bool { return v == 0 })
			maps.DeleteFunc(want.N, func(_ string, v int64) bool { return v == 0 })
			if !stateEqual(c.State(), want) {
				t.Fatalf("State() = %v, want %v", c.State(), want)
			}
			// c does not alias the input.
			in.P["a"] = 1000
			if p, _ := c.Entry("a"); p == 1000 {
				t.Fatalf("FromState aliases its input")
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	c := New()
	if c.Value() != 0 || c.State().Len() != 0 {
		t.Fatalf("New() not empty: %v", c.State())
	}
}

func TestRaise(t *testing.T) {
	t.Parallel()
	s := State{P: map[string]int64{"a": 5, "b": 1}, N: map[string]int64{"a": 2}}
	s.Raise(State{P: map[string]int64{"a": 3, "b": 4, "c": 7}, N: map[string]int64{"a": 9}})
	want := State{P: map[string]int64{"a": 5, "b": 4, "c": 7}, N: map[string]int64{"a": 9}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Raise: %v, want %v", s, want)
	}
	var d State // nil maps
	RaiseInto(&d, State{N: map[string]int64{"x": 2}})
	if d.P != nil || d.N["x"] != 2 {
		t.Fatalf("RaiseInto: %+v", d)
	}
	RaiseInto(&d, State{})
	if d.P != nil || len(d.N) != 1 {
		t.Fatalf("RaiseInto of nothing changed %+v", d)
	}
}

func TestMergeInto(t *testing.T) {
	t.Parallel()
	c, _ := FromState(State{P: map[string]int64{"a": 5}})
	pending := State{P: map[string]int64{"z": 9}, N: map[string]int64{}}
	n, err := c.MergeInto(State{P: map[string]int64{"a": 7, "b": 1}, N: map[string]int64{"a": 0}}, &pending)
	if err != nil || n != 2 {
		t.Fatalf("MergeInto = %d, %v", n, err)
	}
	want := State{P: map[string]int64{"z": 9, "a": 7, "b": 1}, N: map[string]int64{}}
	if !reflect.DeepEqual(pending, want) || c.Value() != 8 {
		t.Fatalf("pending %v value %d", pending, c.Value())
	}
	// Nothing new: nothing changes, pending included.
	if n, err := c.MergeInto(State{P: map[string]int64{"a": 6}}, &pending); n != 0 || err != nil || !reflect.DeepEqual(pending, want) {
		t.Fatalf("no-op MergeInto = %d, %v, %v", n, err, pending)
	}
	// An invalid state merges nothing and leaves pending alone.
	if _, err := c.MergeInto(State{P: map[string]int64{"a": 100, "x": -1}}, &pending); !errors.Is(err, ErrInvalidEntry) || !reflect.DeepEqual(pending, want) {
		t.Fatalf("invalid MergeInto: %v, %v", err, pending)
	}
}
