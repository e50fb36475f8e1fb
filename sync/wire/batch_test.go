package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/topgun-go/topgun/sync/wire"
)

func TestSplitBatch(t *testing.T) {
	t.Parallel()
	many := func(n int) []byte { // n empty items
		return make([]byte, 4*n)
	}
	cases := []struct {
		name string
		data []byte
		want [][]byte
		err  error
	}{
		{"empty", nil, nil, nil},
		{"one", []byte{0, 0, 0, 2, 'h', 'i'}, [][]byte{[]byte("hi")}, nil},
		{"two", []byte{0, 0, 0, 1, 'a', 0, 0, 0, 2, 'b', 'c'}, [][]byte{[]byte("a"), []byte("bc")}, nil},
		{"empty item", []byte{0, 0, 0, 0, 0, 0, 0, 1, 'x'}, [][]byte{{}, []byte("x")}, nil},
		{"big-endian length 256", append([]byte{0, 0, 1, 0}, make([]byte, 256)...), [][]byte{make([]byte, 256)}, nil},
		{"little-endian length is truncated tail", []byte{2, 0, 0, 0, 'h', 'i'}, nil, nil},
		{"truncated tail ignored", []byte{0, 0, 0, 1, 'a', 0, 0, 0, 9, 'b'}, [][]byte{[]byte("a")}, nil},
		{"stray tail bytes ignored", []byte{0, 0, 0, 1, 'a', 0, 0}, [][]byte{[]byte("a")}, nil},
		{"only stray bytes", []byte{0, 0, 0}, nil, nil},
		{"max length claim", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, nil, nil},
		{"DEADBEEF fixture data", []byte{0xde, 0xad, 0xbe, 0xef}, nil, nil},
		{"count field not consulted", wire.JoinBatch([]byte("a")), [][]byte{[]byte("a")}, nil},
		{"8192 items", many(wire.MaxBatchItems), nil, nil},
		{"8193 items", many(wire.MaxBatchItems + 1), nil, wire.ErrBatchTooLarge},
		{"8192 items and a truncated tail", append(many(wire.MaxBatchItems), 0, 0, 0, 5), nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := wire.SplitBatch(c.data)
			if c.err != nil {
				if !errors.Is(err, c.err) || got != nil {
					t.Fatalf("SplitBatch = %d items, %v; want %v", len(got), err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SplitBatch: %v", err)
			}
			if c.name == "8192 items" || c.name == "8192 items and a truncated tail" {
				if len(got) != wire.MaxBatchItems {
					t.Fatalf("got %d items, want %d", len(got), wire.MaxBatchItems)
				}
				return
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			for i := range got {
				if !bytes.Equal(got[i], c.want[i]) {
					t.Fatalf("item %d = %q, want %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestJoinBatchRoundTrip(t *testing.T) {
	t.Parallel()
	var frames [][]byte
	for _, m := range []wire.Message{
		wire.Ping{Timestamp: 1},
		wire.CounterRequest{Name: "views"},
		wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(1000)},
		wire.CounterSync{Name: "views", State: state(map[string]int64{"a": 300}, nil)},
	} {
		b, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	frames = append(frames, []byte{}, bytes.Repeat([]byte{0xc0}, 70000)) // empty and > 64 KiB items
	data := wire.JoinBatch(frames...)
	if got := binary.BigEndian.Uint32(data); int(got) != len(frames[0]) {
		t.Fatalf("first length %d, want big-endian %d", got, len(frames[0]))
	}
	items, err := wire.SplitBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(frames) {
		t.Fatalf("got %d items, want %d", len(items), len(frames))
	}
	for i := range items {
		if !bytes.Equal(items[i], frames[i]) {
			t.Fatalf("item %d differs", i)
		}
	}
	// The items decode, and a BATCH carrying them survives the codec.
	for _, it := range items[:4] {
		if _, err := wire.Decode(it); err != nil {
			t.Errorf("Decode(item): %v", err)
		}
	}
	b, err := wire.Encode(wire.Batch{Count: uint32(len(frames)), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.(wire.Batch).Data, data) {
		t.Fatal("BATCH data changed in the codec")
	}
	if got := wire.JoinBatch(); len(got) != 0 {
		t.Errorf("JoinBatch() = % x", got)
	}
}

// leBatch builds server→client BATCH data: LE count, then LE-length items.
func leBatch(count uint32, items ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, count)
	for _, it := range items {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(it)))
		b = append(b, it...)
	}
	return b
}

func TestSplitServerBatch(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte{'z'}, 300)
	cases := []struct {
		name string
		data []byte
		want [][]byte
		err  error
	}{
		{"two", []byte{2, 0, 0, 0, 1, 0, 0, 0, 'a', 2, 0, 0, 0, 'b', 'c'}, [][]byte{[]byte("a"), []byte("bc")}, nil},
		{"zero", []byte{0, 0, 0, 0}, [][]byte{}, nil},
		{"little-endian length 300", leBatch(1, big), [][]byte{big}, nil},
		{"extra bytes after count items ignored", append(leBatch(1, []byte("a")), 9, 9), [][]byte{[]byte("a")}, nil},
		{"empty item", leBatch(2, nil, []byte("x")), [][]byte{{}, []byte("x")}, nil},
		{"8192 items", leBatch(wire.MaxBatchItems, make([][]byte, wire.MaxBatchItems)...), make([][]byte, wire.MaxBatchItems), nil},
		{"no count", []byte{1, 0, 0}, nil, wire.ErrMalformed},
		{"nil", nil, nil, wire.ErrMalformed},
		{"count larger than items", leBatch(3, []byte("a")), nil, wire.ErrMalformed},
		{"truncated item", []byte{1, 0, 0, 0, 5, 0, 0, 0, 'a'}, nil, wire.ErrMalformed},
		{"truncated length", []byte{1, 0, 0, 0, 5, 0}, nil, wire.ErrMalformed},
		{"big-endian data reads as a huge count", []byte{0, 0, 0, 1, 'a'}, nil, wire.ErrBatchTooLarge},
		{"8193 items", leBatch(wire.MaxBatchItems + 1), nil, wire.ErrBatchTooLarge},
		{"count 2^32-1", []byte{0xff, 0xff, 0xff, 0xff}, nil, wire.ErrBatchTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := wire.SplitServerBatch(c.data)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("SplitServerBatch = %d items, %v; want %v", len(got), err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SplitServerBatch: %v", err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d items, want %d", len(got), len(c.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], c.want[i]) {
					t.Fatalf("item %d = %q, want %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestBatchLayoutsDiffer pins a known upstream mismatch: the same items framed for one
// direction do not split as the other.
func TestBatchLayoutsDiffer(t *testing.T) {
	t.Parallel()
	items := [][]byte{[]byte("ab"), []byte("c")}
	be := wire.JoinBatch(items...)
	if got, err := wire.SplitServerBatch(be); err == nil && reflect.DeepEqual(got, items) {
		t.Error("big-endian data split as little-endian")
	}
	le := leBatch(2, items...)
	if got, _ := wire.SplitBatch(le); reflect.DeepEqual(got, items) {
		t.Error("little-endian data split as big-endian")
	}
	if got, err := wire.SplitServerBatch(le); err != nil || !reflect.DeepEqual(got, items) {
		t.Errorf("SplitServerBatch = %q, %v", got, err)
	}
}

func TestJoinServerBatchRoundTrip(t *testing.T) {
	t.Parallel()
	var frames [][]byte
	for _, m := range []wire.Message{
		wire.Pong{Timestamp: 1, ServerTime: 2},
		wire.CounterUpdate{Name: "views", State: state(map[string]int64{"me": 3, wire.RestNode: 40}, nil)},
		wire.LockGranted{RequestID: "r", Name: "l", FencingToken: 7},
	} {
		b, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	frames = append(frames, []byte{}, bytes.Repeat([]byte{0xc0}, 70000)) // empty and > 64 KiB items
	for _, fs := range [][][]byte{nil, frames[:1], frames} {
		data := wire.JoinServerBatch(fs...)
		if got := binary.LittleEndian.Uint32(data); int(got) != len(fs) {
			t.Fatalf("count %d, want little-endian %d", got, len(fs))
		}
		items, err := wire.SplitServerBatch(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != len(fs) {
			t.Fatalf("got %d items, want %d", len(items), len(fs))
		}
		for i := range items {
			if !bytes.Equal(items[i], fs[i]) {
				t.Fatalf("item %d differs", i)
			}
		}
		// AppendServerBatch is the encoded BATCH of that data, byte for byte.
		want, err := wire.Encode(wire.Batch{Count: uint32(len(fs)), Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.AppendServerBatch([]byte("x"), fs); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("AppendServerBatch differs from Encode(Batch) for %d frames", len(fs))
		}
		m, err := wire.Decode(want)
		if err != nil {
			t.Fatal(err)
		}
		if b := m.(wire.Batch); b.Count != uint32(len(fs)) || !bytes.Equal(b.Data, data) {
			t.Fatalf("decoded %d / %d bytes", b.Count, len(b.Data))
		}
	}
	for _, it := range frames[:3] {
		if _, err := wire.Decode(it); err != nil {
			t.Errorf("Decode(item): %v", err)
		}
	}
}

// unbatch returns the frames a client reads out of what ServerBatches
// emitted, checking each emitted frame against the limits.
func unbatch(t *testing.T, emitted [][]byte) (frames [][]byte, batches int) {
	t.Helper()
	for _, e := range emitted {
		if len(e) > wire.MaxFrameSize {
			t.Fatalf("emitted %d bytes, over MaxFrameSize", len(e))
		}
		m, err := wire.Decode(e)
		if err != nil {
			t.Fatalf("emitted frame does not decode: %v", err)
		}
		b, ok := m.(wire.Batch)
		if !ok {
			frames = append(frames, e)
			continue
		}
		batches++
		items, err := wire.SplitServerBatch(b.Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) < 2 || len(items) > wire.MaxBatchItems || int(b.Count) != len(items) {
			t.Fatalf("BATCH of %d items (count %d)", len(items), b.Count)
		}
		frames = append(frames, items...)
	}
	return frames, batches
}

func TestServerBatches(t *testing.T) {
	t.Parallel()
	ping := func(i int) []byte {
		b, err := wire.Encode(wire.Ping{Timestamp: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A valid frame of exactly n bytes: an ERROR whose message pads it.
	sized := func(n int) []byte {
		base, _ := wire.Encode(wire.Error{Code: 1, Message: ""})
		for _, hdr := range []int{0, 1, 2, 4} { // str header beyond fixstr's byte
			b, err := wire.Encode(wire.Error{Code: 1, Message: string(bytes.Repeat([]byte{'m'}, n-len(base)-hdr))})
			if err == nil && len(b) == n {
				return b
			}
		}
		t.Fatalf("no ERROR frame of %d bytes", n)
		return nil
	}
	many := func(n int) [][]byte {
		fs := make([][]byte, n)
		for i := range fs {
			fs[i] = ping(i)
		}
		return fs
	}
	half := wire.MaxFrameSize/2 - 64
	cases := []struct {
		name    string
		frames  [][]byte
		emitted int // frames emitted
		batches int // of which BATCHes
	}{
		{"none", nil, 0, 0},
		{"one goes alone", many(1), 1, 0},
		{"two share a BATCH", many(2), 1, 1},
		{"8192 in one BATCH", many(wire.MaxBatchItems), 1, 1},
		{"8193: a BATCH and a lone frame", many(wire.MaxBatchItems + 1), 2, 1},
		{"8194: two BATCHes", many(wire.MaxBatchItems + 2), 2, 2},
		{"two halves share", [][]byte{sized(half), sized(half)}, 1, 1},
		{"three halves: BATCH, then alone", [][]byte{sized(half), sized(half), sized(half)}, 2, 1},
		{"a full-size frame goes alone", [][]byte{ping(1), sized(wire.MaxFrameSize), ping(2), ping(3)}, 3, 1},
		{"frames filling a BATCH exactly", [][]byte{sized(wire.MaxFrameSize - 1<<20 - 31 - 12), sized(1 << 20)}, 1, 1},
		{"one byte over splits", [][]byte{sized(wire.MaxFrameSize - 1<<20 - 31 - 11), sized(1 << 20)}, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var emitted [][]byte
			var buf []byte
			var err error
			for range 2 { // buf is reused
				emitted = emitted[:0]
				buf, err = wire.ServerBatches(buf, c.frames, func(f []byte) error {
					emitted = append(emitted, bytes.Clone(f))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			got, batches := unbatch(t, emitted)
			if len(emitted) != c.emitted || batches != c.batches {
				t.Fatalf("emitted %d frames, %d BATCHes; want %d, %d", len(emitted), batches, c.emitted, c.batches)
			}
			if len(got) != len(c.frames) {
				t.Fatalf("client reads %d frames, want %d", len(got), len(c.frames))
			}
			for i := range got {
				if !bytes.Equal(got[i], c.frames[i]) {
					t.Fatalf("frame %d differs or is out of order", i)
				}
			}
		})
	}
	t.Run("emit error stops", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		calls := 0
		_, err := wire.ServerBatches(nil, [][]byte{sized(wire.MaxFrameSize), ping(1), ping(2)}, func([]byte) error {
			calls++
			return boom
		})
		if !errors.Is(err, boom) || calls != 1 {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})
}
