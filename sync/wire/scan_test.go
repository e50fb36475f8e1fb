package wire_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/topgun-go/topgun/sync/wire"
)

// nested returns a PING frame whose "x" value nests depth-1 arrays, so the
// whole frame nests depth containers (the top-level map is depth 1).
func nested(depth int) []byte {
	var x any = nil
	for i := 1; i < depth; i++ {
		x = A{x}
	}
	return enc(flat("PING", "timestamp", 1, "x", x))
}

// openMap writes a fixmap header for n entries followed by parts, so a
// test can append the rest of the map by hand.
func openMap(n int, parts ...any) []byte {
	b := []byte{0x80 | byte(n)}
	for _, p := range parts {
		b = append(b, enc(p)...)
	}
	return b
}

// pingWithPad returns a valid PING frame of exactly size bytes.
func pingWithPad(size int) []byte {
	frame := openMap(3, "type", "PING", "timestamp", 1, "pad")
	n := size - len(frame) - 5
	frame = append(frame, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	frame = append(frame, bytes.Repeat([]byte{'x'}, n)...)
	if len(frame) != size {
		panic("pingWithPad: wrong size")
	}
	return frame
}

func TestScan(t *testing.T) {
	t.Parallel()
	ping := enc(flat("PING", "timestamp", 1))
	inPing := func(raw ...byte) []byte { // PING with an extra key "x" holding raw
		return append(openMap(3, "type", "PING", "timestamp", 1, "x"), raw...)
	}
	cases := []struct {
		name  string
		frame []byte
		want  error // nil: decodes
	}{
		{"empty frame", nil, wire.ErrMalformed},
		{"empty slice", []byte{}, wire.ErrMalformed},
		{"exactly 2 MiB", pingWithPad(wire.MaxFrameSize), nil},
		{"2 MiB + 1", pingWithPad(wire.MaxFrameSize + 1), wire.ErrFrameTooLarge},
		{"2 MiB + 1 of garbage", bytes.Repeat([]byte{0xc1}, wire.MaxFrameSize+1), wire.ErrFrameTooLarge},
		{"depth 256", nested(256), nil},
		{"depth 257", nested(257), wire.ErrTooDeep},
		{"depth 257 of maps", enc(flat("PING", "timestamp", 1, "x", deepMaps(256))), wire.ErrTooDeep},
		{"depth 256 of maps", enc(flat("PING", "timestamp", 1, "x", deepMaps(255))), nil},
		{"empty array at depth 257", append(bytes.Repeat([]byte{0x91}, 256), 0x90), wire.ErrTooDeep},
		{"2 MiB of 0x91", bytes.Repeat([]byte{0x91}, wire.MaxFrameSize), wire.ErrTooDeep},
		{"2 MiB of 0xdc 0xff 0xff", bytes.Repeat([]byte{0xdc, 0xff, 0xff}, wire.MaxFrameSize/3), wire.ErrTooDeep},
		{"map16 claims more than bytes", []byte{0xde, 0xff, 0xff, 0xa1, 'a', 0x01}, wire.ErrMalformed},
		{"map32 claims more than bytes", []byte{0xdf, 0x00, 0x01, 0x00, 0x00, 0xc0, 0xc0}, wire.ErrMalformed},
		{"array32 claims more than bytes", inPing(0xdd, 0x7f, 0xff, 0xff, 0xff, 0xc0), wire.ErrMalformed},
		{"array16 claims more than bytes", inPing(0xdc, 0x00, 0x03, 0xc0, 0xc0), wire.ErrMalformed},
		{"fixmap claims more than bytes", []byte{0x8f, 0xa4, 't', 'y', 'p', 'e'}, wire.ErrMalformed},
		{"fixext1", inPing(0xd4, 0x01, 0x00), wire.ErrMalformed},
		{"fixext1 type 0 (msgpackr undefined)", inPing(0xd4, 0x00, 0x00), wire.ErrMalformed},
		{"fixext2", inPing(0xd5, 0x01, 0x00, 0x00), wire.ErrMalformed},
		{"fixext16", inPing(append([]byte{0xd8, 0x01}, make([]byte, 16)...)...), wire.ErrMalformed},
		{"ext8", inPing(0xc7, 0x01, 0x05, 0x00), wire.ErrMalformed},
		{"ext16", inPing(0xc8, 0x00, 0x01, 0x05, 0x00), wire.ErrMalformed},
		{"ext32", inPing(0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 0x00), wire.ErrMalformed},
		{"timestamp32", inPing(0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00), wire.ErrMalformed},
		{"timestamp64", inPing(append([]byte{0xd7, 0xff}, make([]byte, 8)...)...), wire.ErrMalformed},
		{"timestamp96", inPing(append([]byte{0xc7, 0x0c, 0xff}, make([]byte, 12)...)...), wire.ErrMalformed},
		{"ext as the frame", []byte{0xd4, 0x00, 0x00}, wire.ErrMalformed},
		{"ext as a map key", append([]byte{0x82, 0xd4, 0, 0, 0xc0}, enc(M{"type", "PING"})[1:]...), wire.ErrMalformed},
		{"reserved 0xc1", []byte{0xc1}, wire.ErrMalformed},
		{"reserved 0xc1 nested", inPing(0xc1), wire.ErrMalformed},
		{"reserved 0xc1 in payload", append(openMap(2, "type", "LOCK_LOST", "payload"), 0x81, 0xa1, 'x', 0xc1), wire.ErrMalformed},
		{"trailing byte", append(bytes.Clone(ping), 0x00), wire.ErrMalformed},
		{"trailing frame", append(bytes.Clone(ping), ping...), wire.ErrMalformed},
		{"trailing 0xc1", append(bytes.Clone(ping), 0xc1), wire.ErrMalformed},
		{"truncated frame", ping[:len(ping)-1], wire.ErrMalformed},
		{"truncated fixstr", inPing(0xa5, 'a', 'b'), wire.ErrMalformed},
		{"truncated str8", inPing(0xd9, 0x10, 'a', 'b', 'c'), wire.ErrMalformed},
		{"truncated str16", inPing(0xda, 0x01, 0x00, 'a'), wire.ErrMalformed},
		{"truncated str32", inPing(0xdb, 0xff, 0xff, 0xff, 0xff, 'a'), wire.ErrMalformed},
		{"truncated str8 header", inPing(0xd9), wire.ErrMalformed},
		{"truncated str32 header", inPing(0xdb, 0x00, 0x00), wire.ErrMalformed},
		{"truncated bin8", inPing(0xc4, 0x04, 0xde, 0xad), wire.ErrMalformed},
		{"truncated bin32", inPing(0xc6, 0x00, 0x10, 0x00, 0x00), wire.ErrMalformed},
		{"truncated float64", inPing(0xcb, 0x40, 0x00), wire.ErrMalformed},
		{"truncated float32", inPing(0xca, 0x40), wire.ErrMalformed},
		{"truncated uint64", inPing(0xcf, 0, 0, 0), wire.ErrMalformed},
		{"truncated int16", inPing(0xd1, 0), wire.ErrMalformed},
		{"truncated map16 header", []byte{0xde, 0x00}, wire.ErrMalformed},
		{"truncated key", []byte{0x81, 0xa4, 't', 'y'}, wire.ErrMalformed},
		{"missing value", openMap(2, "type", "PING", "timestamp"), wire.ErrMalformed},
		{"truncated type string", []byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'P', 'I'}, wire.ErrMalformed},
		{"all widths well formed", inPing(
			0xdc, 0x00, 0x11, 0xc0, 0xc2, 0xc3, 0xcc, 1, 0xcd, 0, 1, 0xce, 0, 0, 0, 1, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1,
			0xd0, 0xff, 0xd1, 0, 1, 0xd2, 0, 0, 0, 1, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1,
			0xca, 0, 0, 0, 0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xc5, 0, 1, 'b', 0xdc, 0, 0, 0xdf, 0, 0, 0, 0,
			0xe0),
			nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, err := wire.Decode(c.frame)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if m.Type() != wire.TypePing {
					t.Fatalf("Decode = %#v", m)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			de, ok := wire.AsDecodeError(err)
			if !ok || de.Type != "" {
				t.Fatalf("err = %#v, want a *DecodeError without Type (scan runs first)", err)
			}
		})
	}
}

// deepMaps nests depth maps {"k": …}.
func deepMaps(depth int) any {
	var x any = 1
	for i := 0; i < depth; i++ {
		x = M{"k", x}
	}
	return x
}

// TestScanHostileCheap checks that hostile frames fail without allocating
// in proportion to their size or declared lengths. It is not
// parallel: AllocsPerRun counts every goroutine's allocations, and
// sequential top-level tests run before the parallel ones resume.
func TestScanHostileCheap(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"2 MiB of 0x91", bytes.Repeat([]byte{0x91}, wire.MaxFrameSize), wire.ErrTooDeep},
		{"2 MiB of fixarray 15", bytes.Repeat([]byte{0x9f}, wire.MaxFrameSize), wire.ErrTooDeep},
		{"map32 max len", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0xc0, 0xc0, 0xc0}, wire.ErrMalformed},
		{"str32 max len", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, wire.ErrMalformed},
		{"2 MiB - 1 of nil array items", append([]byte{0xdd, 0x00, 0x20, 0x00, 0x00}, bytes.Repeat([]byte{0xc0}, wire.MaxFrameSize-6)...), wire.ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			// The least of three measurements: AllocsPerRun also counts
			// what the runtime or the race detector allocates meanwhile,
			// which does not repeat; Decode's own allocations do.
			allocs := math.Inf(1)
			for range 3 {
				allocs = min(allocs, testing.AllocsPerRun(5, func() { _, err = wire.Decode(c.frame) }))
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if allocs > 4 {
				t.Errorf("Decode allocated %v times", allocs)
			}
		})
	}
}

// TestScanErrorsDescribe checks that scan errors say where they happened.
func TestScanErrorsDescribe(t *testing.T) {
	t.Parallel()
	_, err := wire.Decode([]byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xc1})
	if err == nil || !strings.Contains(err.Error(), "byte 6") {
		t.Errorf("err = %v, want the offset of 0xc1", err)
	}
}
