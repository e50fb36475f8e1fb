package server

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/topgun-go/topgun/sync/wire"
)

// TestLockRequestWithoutName: a LOCK_REQUEST without name is denied
// invalid_name (it was invalid_ttl: a missing field left the decode
// error's field empty), also when its ttl is fine or absent.
func TestLockRequestWithoutName(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	r := dial(t, url)
	for _, payload := range []map[string]any{
		{"requestId": "n1"},
		{"requestId": "n2", "ttl": 1000},
		{"requestId": "n3", "ttl": -1}, // a bad ttl too: the name still comes first
	} {
		r.sendBytes(frame(t, func(e *msgpack.Encoder) {
			e.EncodeMap(map[string]any{"type": "LOCK_REQUEST", "payload": payload})
		}))
		if e := expect[wire.Error](r); e.Code != 400 {
			t.Errorf("%v: ERROR %+v", payload, e)
		}
		d := expect[wire.LockReleased](r)
		if d.RequestID != payload["requestId"] || d.Reason != wire.ReasonInvalidName {
			t.Errorf("%v: denial %+v, want invalid_name", payload, d)
		}
	}
	// A bad ttl with a valid name stays invalid_ttl.
	r.sendBytes(frame(t, func(e *msgpack.Encoder) {
		e.EncodeMap(map[string]any{"type": "LOCK_REQUEST", "payload": map[string]any{
			"requestId": "n4", "name": "job", "ttl": -1}})
	}))
	expect[wire.Error](r)
	if d := expect[wire.LockReleased](r); d.Reason != wire.ReasonInvalidTTL {
		t.Errorf("bad ttl: %+v", d)
	}
}

// TestBatchWithoutCompleteItem: a BATCH with no complete item gets ERROR
// 400 instead of silence.
func TestBatchWithoutCompleteItem(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	r := dial(t, url)
	for _, data := range [][]byte{nil, {0, 0}, {0, 0, 0, 9, 1, 2}} {
		r.send(wire.Batch{Count: 1, Data: data})
		if e := expect[wire.Error](r); e.Code != 400 || !strings.Contains(e.Message, "no complete item") {
			t.Errorf("BATCH %x: %+v", data, e)
		}
	}
	r.roundTrip()
}

// TestFrozenHolderFreedAtIdleLimit: a holder that stops (socket half
// open, never answers the close) loses its 1 h lease when the idle limit
// passes, not after the close handshake gives up on it: a waiter gets the
// lock while the server still waits for the frozen peer's close answer.
func TestFrozenHolderFreedAtIdleLimit(t *testing.T) {
	t.Parallel()
	url, srv := start(t, Config{IdleTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if br == nil {
		br = bufio.NewReader(nc)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{br, nc}
	b, _ := wire.Encode(lockReq("f1", "frozen-job", 3600000, 0))
	if err := wsutil.WriteClientBinary(nc, b); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := wsutil.ReadServerBinary(rw)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := wire.Decode(msg); m == nil || m.Type() != wire.TypeLockGranted {
		t.Fatalf("frozen holder got %v", m)
	}
	// From here on the holder neither reads nor writes.

	w := dial(t, url)
	w.send(lockReq("w1", "frozen-job", 5000, 30000))
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the waiter stays active
		for i := 0; i < 300; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			b, _ := wire.Encode(wire.Ping{Timestamp: uint64(i)})
			if w.ws.Write(context.Background(), websocket.MessageBinary, b) != nil {
				return
			}
		}
	}()
	for {
		m := w.next()
		if _, ok := m.(wire.Pong); ok {
			continue
		}
		if g, ok := m.(wire.LockGranted); !ok || g.RequestID != "w1" {
			t.Fatalf("waiter got %#v", m)
		}
		break
	}
	srv.mu.Lock()
	n := len(srv.conns)
	srv.mu.Unlock()
	if n != 2 {
		t.Errorf("%d connections when the lock was handed on; want 2: the frozen one's close handshake still waiting", n)
	}
}
