package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

func TestAppendEncode(t *testing.T) {
	t.Parallel()
	msgs := []wire.Message{
		wire.Ping{Timestamp: 1},
		wire.CounterUpdate{Name: "c", State: state(map[string]int64{"b": 2, "a": 1}, nil)},
		wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(1000)},
		wire.Error{Code: 500, Message: "m", Details: map[string]any{"z": 1, "a": []any{int8(-5), uint16(300), 1.5}}},
	}
	dst := []byte("prefix")
	var want []byte
	want = append(want, dst...)
	for _, m := range msgs {
		var err error
		if dst, err = wire.AppendEncode(dst, m); err != nil {
			t.Fatalf("AppendEncode(%#v): %v", m, err)
		}
		frame, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, frame...)
	}
	if !bytes.Equal(dst, want) {
		t.Fatalf("AppendEncode wrote\n% x\nwant\n% x", dst, want)
	}
}

func TestAppendEncodeErrorKeepsDst(t *testing.T) {
	t.Parallel()
	deep := any(nil)
	for i := 0; i < wire.MaxDepth; i++ {
		deep = []any{deep}
	}
	for _, c := range []struct {
		m    wire.Message
		want error // nil: any error
	}{
		{wire.CounterSync{Name: "c", State: crdt.State{N: map[string]int64{"a": -1}}}, crdt.ErrInvalidEntry},
		{wire.Error{Code: 1, Message: "m", Details: struct{}{}}, nil},
		{wire.Error{Code: 1, Message: "m", Details: []any{1, map[string]any{"k": make(chan int)}}}, nil},
		{wire.Error{Code: 1, Message: "m", Details: deep}, wire.ErrTooDeep},
		{(*wire.Ping)(nil), nil},
	} {
		dst := make([]byte, 3, 1024)
		copy(dst, "abc")
		got, err := wire.AppendEncode(dst, c.m)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("AppendEncode(%T) err = %v, want %v", c.m, err, c.want)
		}
		if string(got) != "abc" || &got[0] != &dst[0] {
			t.Errorf("AppendEncode(%T) returned % x, want dst unchanged", c.m, got)
		}
	}
}

// TestDetailsDepthLimit: the deepest details Decode accepts still encode;
// one level more is ErrTooDeep, where the old encoder produced a frame
// every peer drops.
func TestDetailsDepthLimit(t *testing.T) {
	t.Parallel()
	nest := func(levels int) any {
		var x any = "leaf"
		for i := 0; i < levels; i++ {
			x = map[string]any{"k": x}
		}
		return x
	}
	frame, err := wire.Encode(wire.Error{Code: 1, Message: "m", Details: nest(wire.MaxDepth - 2)})
	if err != nil {
		t.Fatalf("Encode at the limit: %v", err)
	}
	if _, err := wire.Decode(frame); err != nil {
		t.Fatalf("Decode at the limit: %v", err)
	}
	if _, err := wire.Encode(wire.Error{Code: 1, Message: "m", Details: nest(wire.MaxDepth - 1)}); !errors.Is(err, wire.ErrTooDeep) {
		t.Fatalf("Encode past the limit: err = %v, want ErrTooDeep", err)
	}
}

// TestAppendEncodeNoAllocs: with room in dst, encoding allocates nothing.
// Not parallel: AllocsPerRun counts every goroutine's allocations.
func TestAppendEncodeNoAllocs(t *testing.T) {
	var m wire.Message = wire.CounterUpdate{Name: "page-views", State: benchState(16)}
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = wire.AppendEncode(buf[:0], m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendEncode allocated %v times", allocs)
	}
}

// TestDecodeCopies: a decoded message does not alias its frame, so the
// caller may reuse the buffer.
func TestDecodeCopies(t *testing.T) {
	t.Parallel()
	for _, m := range []wire.Message{
		wire.CounterSync{Name: "views", State: state(map[string]int64{"node-1": 3}, map[string]int64{"node-2": 1})},
		wire.LockRequest{RequestID: "req", Name: "lock", TTL: u64p(5)},
		wire.Batch{Count: 1, Data: []byte{1, 2, 3}},
		wire.Error{Code: 1, Message: "m", Details: map[string]any{"s": "str", "b": []byte{9}, "a": []any{"x"}}},
		wire.Auth{Token: "tok", DeviceToken: "dev"},
	} {
		frame, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		for i := range frame {
			frame[i] = 'Z'
		}
		if !sameMessage(got, m) {
			t.Errorf("after overwriting the frame: %#v, want %#v", got, m)
		}
	}
}
