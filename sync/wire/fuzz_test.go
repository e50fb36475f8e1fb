package wire_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// FuzzDecode checks that Decode never panics, fails only with a
// *DecodeError wrapping a sentinel, and that whatever it accepts survives
// Encode exactly: Decode(Encode(m)) == m, and Encode is deterministic.
func FuzzDecode(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.msgpack)
	}
	for _, tc := range typeCases {
		f.Add(frameOf(tc.typ, tc.wrapped, tc.kv))
		if b, err := wire.Encode(tc.want); err == nil {
			f.Add(b)
		}
	}
	for _, c := range rejectCases() {
		f.Add(c.frame)
	}
	for _, fl := range numFields {
		for _, n := range numEncodings {
			f.Add(enc(fl.frame(n.v)))
		}
	}
	f.Add(nested(256))
	f.Add(nested(257))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0xc0, 0xc0, 0xc0})
	f.Add(enc(wrapped("ERROR", "code", 1, "message", "m", "details",
		M{"n", F64(math.NaN()), "a", A{U16(300), I8(-1), F32(1.5), []byte{}, M{}}})))

	sentinels := []error{wire.ErrFrameTooLarge, wire.ErrTooDeep, wire.ErrMalformed,
		wire.ErrUnknownType, wire.ErrInvalidField}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := wire.Decode(b)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned %#v with error %v", m, err)
			}
			if _, ok := wire.AsDecodeError(err); !ok {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			known := false
			for _, s := range sentinels {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if errors.Is(err, crdt.ErrInvalidEntry) && !errors.Is(err, wire.ErrInvalidField) {
				t.Fatalf("counter entry error %v does not wrap ErrInvalidField", err)
			}
			return
		}
		if m == nil {
			t.Fatal("Decode returned nil, nil")
		}
		enc1, err := wire.Encode(m)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", m, err)
		}
		if len(enc1) > wire.MaxFrameSize {
			// Entries grow from 1-byte ints to 9-byte floats; such a frame
			// is legitimately too large to decode again.
			return
		}
		back, err := wire.Decode(enc1)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)): %v\nframe % x", m, err, enc1)
		}
		if !sameMessage(back, m) {
			t.Fatalf("round trip changed the message:\n got %#v\nwant %#v", back, m)
		}
		enc2, err := wire.Encode(back)
		if err != nil || !bytes.Equal(enc1, enc2) {
			t.Fatalf("Encode not deterministic (%v):\n% x\n% x", err, enc1, enc2)
		}
	})
}

// sameMessage is reflect.DeepEqual, except that NaN equals NaN inside
// ERROR.details (the only place a float can hide in a message).
func sameMessage(a, b wire.Message) bool {
	ea, ok1 := a.(wire.Error)
	eb, ok2 := b.(wire.Error)
	if ok1 && ok2 {
		return ea.Code == eb.Code && ea.Message == eb.Message && sameAny(ea.Details, eb.Details)
	}
	return reflect.DeepEqual(a, b)
}

func sameAny(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y))
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !sameAny(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameAny(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestSameAny(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	if !sameAny(map[string]any{"a": []any{nan}}, map[string]any{"a": []any{nan}}) {
		t.Error("NaN != NaN")
	}
	if sameAny(0.0, math.Copysign(0, -1)) || sameAny(int64(1), uint64(1)) || sameAny([]any{}, []any(nil)) {
		t.Error("sameAny too lenient")
	}
}

// TestDecodeHugeDeclaredLengths: frames that declare far more than they
// hold fail in the scan, before any decoder sizes a buffer from the
// declaration. Not parallel, because AllocsPerRun counts all goroutines.
func TestDecodeHugeDeclaredLengths(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"map32 2^32-1 entries in 10 bytes", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa4, 't', 'y', 'p', 'e'}},
		{"array32 2^32-1 in payload", append(openMap(2, "type", "ERROR", "payload"), 0x81, 0xa7, 'd', 'e', 't', 'a', 'i', 'l', 's', 0xdd, 0xff, 0xff, 0xff, 0xff)},
		{"str32 4 GiB name", append(openMap(2, "type", "COUNTER_REQUEST", "payload"), 0x81, 0xa4, 'n', 'a', 'm', 'e', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x')},
		{"bin32 4 GiB data", append(openMap(3, "type", "BATCH", "count", 1, "data"), 0xc6, 0xff, 0xff, 0xff, 0xff)},
		{"map16 state side", append(openMap(2, "type", "COUNTER_SYNC", "payload"), 0x82, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'c', 0xa5, 's', 't', 'a', 't', 'e', 0x82, 0xa1, 'p', 0xde, 0xff, 0xff, 0xa1, 'n', 0x80)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			allocs := math.Inf(1) // least of three: see TestScanHostileCheap
			for range 3 {
				allocs = min(allocs, testing.AllocsPerRun(100, func() { _, err = wire.Decode(c.frame) }))
			}
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if allocs > 4 {
				t.Errorf("Decode allocated %v times", allocs)
			}
		})
	}
}
