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
