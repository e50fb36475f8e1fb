package crdt

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// Fuzz states are decoded from bytes as a sequence of entries. Each entry is
// a control byte:
//
//	bit 0     side: 0 = P, 1 = N
//	bits 1-3  node: fuzzNodes[bits % len(fuzzNodes)] (few ids, so collisions)
//	bits 4-7  kind:
//	          0-12  kindNormal: magnitude < 2^40 from the next 5 bytes (LE)
//	          13    kindNear:   MaxSafe − b for the next byte b
//	          14    kindZero:   0
//	          15    kindBad:    an invalid entry chosen by the next byte
//
// Later entries overwrite earlier ones with the same side and node. At most
// fuzzMaxEntries entries are read, so sums of normal entries stay far inside
// the safe range; only kindNear and kindBad can make a merge fail.
var fuzzNodes = [...]string{"a", "b", "c", "d", "e"}

const (
	fuzzMaxEntries = 8
	kindNormal     = 0
	kindNear       = 13
	kindZero       = 14
	kindBad        = 15
)

func fuzzState(data []byte) State {
	s := State{P: map[string]int64{}, N: map[string]int64{}}
	for i := 0; i < fuzzMaxEntries && len(data) > 0; i++ {
		ctl := data[0]
		data = data[1:]
		side := s.P
		if ctl&1 == 1 {
			side = s.N
		}
		node := fuzzNodes[int(ctl>>1&7)%len(fuzzNodes)]
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		switch kind := ctl >> 4; kind {
		case kindNear:
			side[node] = MaxSafe - int64(next())
		case kindZero:
			side[node] = 0
		case kindBad:
			switch b := next(); b % 5 {
			case 0:
				side[node] = -1 - int64(b)
			case 1:
				side[node] = MaxSafe + 1 + int64(b)
			case 2:
				side[node] = math.MinInt64
			case 3:
				side[node] = math.MaxInt64
			case 4:
				side[""] = int64(b)
			}
		default:
			var buf [8]byte
			n := copy(buf[:5], data)
			data = data[n:]
			side[node] = int64(binary.LittleEndian.Uint64(buf[:]))
		}
	}
	return s
}

// Seed encoders, the inverse of fuzzState.
func sp(node int, v uint64) []byte { return seedEntry(0, node, kindNormal, v) }
func sn(node int, v uint64) []byte { return seedEntry(1, node, kindNormal, v) }

// near is MaxSafe−below on the given side.
func near(side byte, node int, below byte) []byte {
	return seedEntry(side, node, kindNear, uint64(below))
}
func zero(side byte, node int) []byte { return seedEntry(side, node, kindZero, 0) }

// bad is an invalid entry: which%5 selects negative, >MaxSafe, MinInt64,
// MaxInt64 or an empty node id.
func bad(side byte, node int, which byte) []byte {
	return seedEntry(side, node, kindBad, uint64(which))
}

func seedEntry(side byte, node int, kind byte, v uint64) []byte {
	b := []byte{side&1 | byte(node&7)<<1 | kind<<4}
	switch kind {
	case kindNear, kindBad:
		return append(b, byte(v))
	case kindZero:
		return b
	default:
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], v)
		return append(b, buf[:5]...)
	}
}

func seed(entries ...[]byte) []byte {
	var out []byte
	for _, e := range entries {
		out = append(out, e...)
	}
	return out
}

// fuzzSeeds are table-like cases shared by the Merge fuzz targets.
var fuzzSeeds = [][]byte{
	seed(),
	seed(sp(0, 5)),
	seed(sp(0, 3), sn(1, 2)),
	seed(sp(0, 5), sn(1, 2), sp(2, 9), sn(0, 1)),
	seed(sp(1, 7), sn(0, 1), sp(0, 4)),
	seed(sp(3, 1<<40-1), sn(3, 1<<40-1), sp(4, 1<<39)),
	seed(sn(0, 1<<40-1), sn(1, 1<<40-1), sn(2, 1<<40-1)),
	seed(sp(0, 1), sp(0, 2), sp(0, 3)), // same key rewritten
	seed(zero(0, 0), zero(1, 1), sp(2, 1)),
	seed(near(0, 0, 0)),                // p[a] = MaxSafe
	seed(near(1, 1, 0)),                // n[b] = MaxSafe
	seed(near(0, 2, 3), sn(0, 2)),      // value MaxSafe−5
	seed(near(0, 0, 0), near(1, 0, 0)), // balanced at MaxSafe
	seed(bad(0, 0, 0), sp(1, 1)),       // negative
	seed(sp(1, 1), bad(1, 0, 1)),       // above MaxSafe
	seed(bad(0, 2, 2)),                 // MinInt64
	seed(bad(1, 3, 3)),                 // MaxInt64
	seed(sp(0, 4), bad(0, 0, 4)),       // empty node id
}

// refJoin is the specification of Merge: the per-node maximum, without zero
// entries. Only meaningful for valid states.
func refJoin(states ...State) State {
	out := State{P: map[string]int64{}, N: map[string]int64{}}
	for _, s := range states {
		for k, v := range s.P {
			if v > out.P[k] {
				out.P[k] = v
			}
		}
		for k, v := range s.N {
			if v > out.N[k] {
				out.N[k] = v
			}
		}
	}
	return out
}

// inRange reports whether every state is valid and has a value in range.
func inRange(states ...State) bool {
	for _, s := range states {
		if s.Validate() != nil {
			return false
		}
		if _, err := s.Value(); err != nil {
			return false
		}
	}
	return true
}

// withinBounds reports whether a valid state's value is in the safe range
// and its sums Σp and Σn are at most maxSum: what a counter may hold.
func withinBounds(s State) bool {
	if _, err := s.Value(); err != nil {
		return false
	}
	for _, side := range []map[string]int64{s.P, s.N} {
		var sum int64
		for _, v := range side {
			if sum > maxSum-v {
				return false
			}
			sum += v
		}
	}
	return true
}

// mergeStep merges s into c and checks Merge's contract: on error nothing
// changed and the error wraps the right sentinel; on success the reported
// changes are exactly the raised entries and the running sums agree with the
// state.
func mergeStep(t *testing.T, c *Counter, s State) (State, error) {
	t.Helper()
	before, beforeV := c.State(), c.Value()
	changed, err := c.Merge(s)
	if err != nil {
		if s.Validate() != nil && !errors.Is(err, ErrInvalidEntry) {
			t.Fatalf("Merge of invalid %v: error %v, want ErrInvalidEntry", s, err)
		}
		if !errors.Is(err, ErrInvalidEntry) && !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Merge error %v wraps neither sentinel", err)
		}
		if s.Validate() == nil {
			if errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("Merge of valid %v: %v", s, err)
			}
			if j := refJoin(before, s); withinBounds(j) {
				t.Fatalf("Merge(%v) into %v rejected (%v), but the join %v is in range",
					s, before, err, j)
			}
		}
		if changed.Len() != 0 || c.Value() != beforeV || !stateEqual(c.State(), before) {
			t.Fatalf("failed Merge (%v) changed the counter: %v -> %v, reported %v",
				err, before, c.State(), changed)
		}
		return changed, err
	}
	if s.Validate() != nil {
		t.Fatalf("Merge accepted invalid state %v", s)
	}
	want := refJoin(before, s)
	if !stateEqual(c.State(), want) {
		t.Fatalf("Merge(%v) into %v = %v, want %v", s, before, c.State(), want)
	}
	wantChanged := State{P: map[string]int64{}, N: map[string]int64{}}
	for k, v := range s.P {
		if v > before.P[k] {
			wantChanged.P[k] = v
		}
	}
	for k, v := range s.N {
		if v > before.N[k] {
			wantChanged.N[k] = v
		}
	}
	if !stateEqual(changed, wantChanged) {
		t.Fatalf("Merge(%v) into %v reported %v, want %v", s, before, changed, wantChanged)
	}
	checkCounter(t, c)
	return changed, nil
}

// checkCounter checks that c's value matches its state and all entries are
// positive magnitudes within range.
func checkCounter(t *testing.T, c *Counter) {
	t.Helper()
	st := c.State()
	if err := st.Validate(); err != nil {
		t.Fatalf("counter holds an invalid state: %v", err)
	}
	for _, side := range []map[string]int64{st.P, st.N} {
		for k, v := range side {
			if v == 0 {
				t.Fatalf("counter stores a zero entry for %q", k)
			}
		}
	}
	if v, err := st.Value(); err != nil || v != c.Value() {
		t.Fatalf("State().Value() = %d, %v; Value() = %d", v, err, c.Value())
	}
}

// mergeAll merges states, in order, into a fresh counter.
func mergeAll(t *testing.T, states ...State) (*Counter, error) {
	t.Helper()
	c := New()
	for _, s := range states {
		if _, err := mergeStep(t, c, s); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func FuzzMergeCommutative(f *testing.F) {
	for i, a := range fuzzSeeds {
		for _, b := range fuzzSeeds[i:] {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		sa, sb := fuzzState(a), fuzzState(b)
		ab, errAB := mergeAll(t, sa, sb)
		ba, errBA := mergeAll(t, sb, sa)
		if sa.Validate() != nil || sb.Validate() != nil {
			if errAB == nil || errBA == nil {
				t.Fatalf("invalid input merged: %v, %v", errAB, errBA)
			}
			return
		}
		if inRange(sa, sb, refJoin(sa, sb)) && (errAB != nil || errBA != nil) {
			t.Fatalf("in-range merge failed: %v, %v", errAB, errBA)
		}
		if errAB != nil || errBA != nil {
			return
		}
		if !stateEqual(ab.State(), ba.State()) || ab.Value() != ba.Value() {
			t.Fatalf("a⊔b = %v (%d), b⊔a = %v (%d)", ab.State(), ab.Value(), ba.State(), ba.Value())
		}
	})
}

func FuzzMergeAssociative(f *testing.F) {
	for i, a := range fuzzSeeds {
		for j, b := range fuzzSeeds[i:] {
			f.Add(a, b, fuzzSeeds[(i+3*j+1)%len(fuzzSeeds)])
		}
	}
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		sa, sb, sc := fuzzState(a), fuzzState(b), fuzzState(c)
		left, errL := mergeAll(t, sa, sb, sc) // (a⊔b)⊔c
		var right *Counter
		bc, errR := mergeAll(t, sb, sc)
		if errR == nil {
			right, errR = mergeAll(t, sa, bc.State()) // a⊔(b⊔c)
		}
		if sa.Validate() != nil || sb.Validate() != nil || sc.Validate() != nil {
			if errL == nil || errR == nil {
				t.Fatalf("invalid input merged: %v, %v", errL, errR)
			}
			return
		}
		ab, bcRef, abc := refJoin(sa, sb), refJoin(sb, sc), refJoin(sa, sb, sc)
		if inRange(sa, sb, sc, ab, bcRef, abc) && (errL != nil || errR != nil) {
			t.Fatalf("in-range merge failed: %v, %v", errL, errR)
		}
		if errL != nil || errR != nil {
			return
		}
		if !stateEqual(left.State(), right.State()) || left.Value() != right.Value() {
			t.Fatalf("(a⊔b)⊔c = %v (%d), a⊔(b⊔c) = %v (%d)",
				left.State(), left.Value(), right.State(), right.Value())
		}
		if !stateEqual(left.State(), abc) {
			t.Fatalf("a⊔b⊔c = %v, want %v", left.State(), abc)
		}
	})
}

func FuzzMergeIdempotent(f *testing.F) {
	for i, a := range fuzzSeeds {
		for _, b := range fuzzSeeds[i:] {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		sa, sb := fuzzState(a), fuzzState(b)
		c, err := mergeAll(t, sa)
		if err != nil {
			return
		}
		// c already holds sa: merging it again, or c's own state, changes nothing.
		for _, s := range []State{sa, c.State()} {
			before := c.State()
			changed, err := mergeStep(t, c, s)
			if err != nil || changed.Len() != 0 || !stateEqual(c.State(), before) {
				t.Fatalf("re-merging %v: changed %v, err %v", s, changed, err)
			}
		}
		changed1, err1 := mergeStep(t, c, sb)
		after1, v1 := c.State(), c.Value()
		changed2, err2 := mergeStep(t, c, sb)
		if (err1 == nil) != (err2 == nil) ||
			errors.Is(err1, ErrInvalidEntry) != errors.Is(err2, ErrInvalidEntry) ||
			errors.Is(err1, ErrOutOfRange) != errors.Is(err2, ErrOutOfRange) {
			t.Fatalf("same merge twice: errors %v then %v", err1, err2)
		}
		if changed2.Len() != 0 || c.Value() != v1 || !stateEqual(c.State(), after1) {
			t.Fatalf("second merge of %v changed %v (state %v -> %v)", sb, changed2, after1, c.State())
		}
		// The reported delta is itself already merged.
		if changed3, err := mergeStep(t, c, changed1); err != nil || changed3.Len() != 0 {
			t.Fatalf("merging the reported delta again: %v, %v", changed3, err)
		}
	})
}

func FuzzMagnitude(f *testing.F) {
	for _, x := range []float64{
		0, math.Copysign(0, -1), 1, 42, 1.5, -1, -0.5, 0.1,
		MaxSafe, MaxSafe - 1, 1 << 53, 1<<53 + 2, -MaxSafe,
		math.NaN(), math.Inf(1), math.Inf(-1),
		math.MaxFloat64, math.SmallestNonzeroFloat64, 1e300, 4503599627370495.5,
	} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		got, err := Magnitude(x)
		valid := !math.IsNaN(x) && !math.IsInf(x, 0) && x == math.Trunc(x) && x >= 0 && x <= MaxSafe
		if err != nil {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("Magnitude(%v) error %v does not wrap ErrInvalidEntry", x, err)
			}
			if valid {
				t.Fatalf("Magnitude(%v) rejected a valid magnitude: %v", x, err)
			}
			if got != 0 {
				t.Fatalf("Magnitude(%v) = %d with an error", x, got)
			}
			return
		}
		if !valid {
			t.Fatalf("Magnitude(%v) accepted an invalid value as %d", x, got)
		}
		if got < 0 || got > MaxSafe || float64(got) != x {
			t.Fatalf("Magnitude(%v) = %d, not the same integer in range", x, got)
		}
		// Round trips: the int64 and the float64 of the result agree.
		if back, err := Magnitude(got); err != nil || back != got {
			t.Fatalf("Magnitude(int64 %d) = %d, %v", got, back, err)
		}
		if back, err := Magnitude(float64(got)); err != nil || back != got {
			t.Fatalf("Magnitude(float64(%d)) = %d, %v", got, back, err)
		}
		if x32 := float32(x); float64(x32) == x {
			if back, err := Magnitude(x32); err != nil || back != got {
				t.Fatalf("Magnitude(float32 %v) = %d, %v; want %d", x32, back, err, got)
			}
		}
	})
}
