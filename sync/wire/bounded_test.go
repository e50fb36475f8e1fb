package wire_test

import (
	"errors"
	"math"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// TestDecodeBoundedRejects: every malformed bounded-counter frame is an
// ErrInvalidField, never a panic or a silently repaired state.
func TestDecodeBoundedRejects(t *testing.T) {
	t.Parallel()
	sync := func(st any) []byte { return enc(wrapped("BCOUNTER_SYNC", "name", "b", "state", st)) }
	cases := []struct {
		name  string
		frame []byte
	}{
		{"state not a map", sync(A{1})},
		{"state without min", sync(M{"p", M{"x", 1}})},
		{"min fractional", sync(M{"min", F64(0.5)})},
		{"min NaN", sync(M{"min", F64(math.NaN())})},
		{"min beyond 2^53", sync(M{"min", I64(1 << 53)})},
		{"min below -2^53", sync(M{"min", I64(-(1 << 53))})},
		{"min a string", sync(M{"min", "0"})},
		{"negative p", sync(M{"min", 0, "p", M{"x", -1}})},
		{"fractional n", sync(M{"min", 0, "n", M{"x", F64(1.5)}})},
		{"p beyond 2^53", sync(M{"min", 0, "p", M{"x", U64(1 << 53)}})},
		{"empty node", sync(M{"min", 0, "p", M{"", 1}})},
		{"p not a map", sync(M{"min", 0, "p", A{}})},
		{"t not a map", sync(M{"min", 0, "t", 3})},
		{"t row not a map", sync(M{"min", 0, "t", M{"x", 3}})},
		{"t self transfer", sync(M{"min", 0, "t", M{"x", M{"x", 1}}})},
		{"t empty from", sync(M{"min", 0, "t", M{"", M{"y", 1}}})},
		{"t empty to", sync(M{"min", 0, "t", M{"x", M{"", 1}}})},
		{"t negative", sync(M{"min", 0, "t", M{"x", M{"@", I8(-2)}}})},
		{"request without min", enc(wrapped("BCOUNTER_REQUEST", "name", "b"))},
		{"request min float inf", enc(wrapped("BCOUNTER_REQUEST", "name", "b", "min", F64(math.Inf(-1))))},
		{"rights negative", enc(wrapped("BCOUNTER_RIGHTS", "requestId", "r", "name", "b", "amount", -1))},
		{"rights fractional", enc(wrapped("BCOUNTER_RIGHTS", "requestId", "r", "name", "b", "amount", F64(0.5)))},
		{"rights without requestId", enc(wrapped("BCOUNTER_RIGHTS", "name", "b", "amount", 1))},
		{"grant without state", enc(wrapped("BCOUNTER_GRANT", "requestId", "r", "name", "b", "granted", 1))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, err := wire.Decode(c.frame)
			if !errors.Is(err, wire.ErrInvalidField) {
				t.Fatalf("Decode = %#v, %v; want ErrInvalidField", m, err)
			}
		})
	}
}

// TestEncodeBoundedRefusesInvalid: an invalid state or amount is not put
// on the wire.
func TestEncodeBoundedRefusesInvalid(t *testing.T) {
	t.Parallel()
	for _, m := range []wire.Message{
		wire.BCounterSync{Name: "b", State: crdt.BState{P: map[string]int64{"x": -1}}},
		wire.BCounterUpdate{Name: "b", State: crdt.BState{T: map[string]map[string]int64{"x": {"x": 1}}}},
		wire.BCounterRequest{Name: "b", Min: math.MinInt64},
		wire.BCounterRights{RequestID: "r", Name: "b", Amount: -1},
		wire.BCounterGrant{RequestID: "r", Name: "b", Granted: crdt.MaxSafe + 1},
	} {
		if b, err := wire.Encode(m); err == nil {
			t.Errorf("Encode(%#v) = %x, want an error", m, b)
		}
	}
}

// TestBoundedEntriesAreIntegers: entries travel as MessagePack integers
// (a bounded state has no TopGun ancestor whose float64 form to keep), and
// JavaScript's float64 numbers are read back as the same integers.
func TestBoundedEntriesAreIntegers(t *testing.T) {
	t.Parallel()
	b, err := wire.Encode(wire.BCounterUpdate{Name: "b", State: crdt.BState{Min: -1, P: map[string]int64{"x": 3}}})
	if err != nil {
		t.Fatal(err)
	}
	want := enc(wrapped("BCOUNTER_UPDATE", "name", "b", "state", M{"min", -1, "p", M{"x", 3}, "n", M{}, "t", M{}}))
	if string(b) != string(want) {
		t.Fatalf("Encode = %x, want %x", b, want)
	}
	m, err := wire.Decode(enc(wrapped("BCOUNTER_UPDATE", "name", "b",
		"state", M{"min", F64(-1), "p", M{"x", F64(3)}})))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(wire.BCounterUpdate).State; got.Min != -1 || got.P["x"] != 3 {
		t.Fatalf("Decode = %#v", got)
	}
}
