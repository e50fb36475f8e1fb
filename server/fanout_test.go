package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// hookedConn is a connection without a socket whose writer hands each
// frame it writes to frames and waits until the test takes it; started
// is signalled as each write begins.
type hookedConn struct {
	*conn
	frames  chan []byte
	started chan struct{}
	running bool
}

func newHookedConn(t *testing.T, srv *Server, id uint64) *hookedConn {
	t.Helper()
	h := &hookedConn{conn: newConn(srv, nil, id), frames: make(chan []byte), started: make(chan struct{}, 64)}
	h.hold = true // until run
	h.writeFrame = func(b []byte) error {
		h.started <- struct{}{}
		select {
		case h.frames <- bytes.Clone(b):
			return nil
		case <-h.ctx.Done():
			return h.ctx.Err()
		}
	}
	t.Cleanup(func() {
		srv.counters.unsubscribeAll(h.conn) // the reader's job in serveWS
		h.cancel()
		if h.running {
			<-h.wrote
		}
	})
	return h
}

// run starts the writer.
func (h *hookedConn) run() {
	h.running = true
	h.startWriter()
}

// drainStarted forgets the start signals of writes already taken.
func (h *hookedConn) drainStarted() {
	for {
		select {
		case <-h.started:
		default:
			return
		}
	}
}

// frame returns the next frame the writer writes.
func (h *hookedConn) frame(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-h.frames:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no frame written within 10s")
	}
	return nil
}

// in hands m to the connection's frame handler, as the reader does.
func (h *hookedConn) in(t *testing.T, m wire.Message) {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	h.handleFrame(b, true)
}

// items returns the messages a client reads out of one written frame and
// whether it was a BATCH.
func items(t *testing.T, b []byte) ([]wire.Message, bool) {
	t.Helper()
	m, err := wire.Decode(b)
	if err != nil {
		t.Fatalf("written frame does not decode: %v", err)
	}
	bm, ok := m.(wire.Batch)
	if !ok {
		return []wire.Message{m}, false
	}
	raw, err := wire.SplitServerBatch(bm.Data)
	if err != nil {
		t.Fatalf("BATCH does not split as server→client: %v", err)
	}
	if int(bm.Count) != len(raw) || len(raw) < 2 {
		t.Fatalf("BATCH count %d with %d items", bm.Count, len(raw))
	}
	var ms []wire.Message
	for _, it := range raw {
		im, err := wire.Decode(it)
		if err != nil {
			t.Fatalf("BATCH item does not decode: %v", err)
		}
		if _, nested := im.(wire.Batch); nested {
			t.Fatal("BATCH inside a server BATCH")
		}
		ms = append(ms, im)
	}
	return ms, true
}

func types(ms []wire.Message) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Type())
	}
	return s
}

// waitQueued waits until an update of e is queued for c (pushed by the
// counter's writer goroutine).
func waitQueued(t *testing.T, c *conn, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		_, legacy := c.updates[name]
		compact := false
		for _, e := range c.vorder {
			compact = compact || e.name == name
		}
		c.mu.Unlock()
		if legacy || compact {
			return
		}
	}
	t.Fatalf("no update of %q queued within 10s", name)
}

// TestWakeupBatch: what one wake-up of the writer finds queued for a
// connection with compact views goes out as one server→client BATCH, in
// order; the compact acknowledgement (and what precedes it) goes alone, so
// a client learns it may get BATCH before it gets one; a connection
// without compact views gets the same messages one frame each, never a
// BATCH.
func TestWakeupBatch(t *testing.T) {
	t.Parallel()
	srv, err := New(Config{Store: storageForTest(t), NoAuth: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	writer := newHookedConn(t, srv, 100)
	writer.run()
	go func() { // the writer's own replies are not under test
		for {
			select {
			case <-writer.frames:
			case <-writer.ctx.Done():
				return
			}
		}
	}()

	for i, compact := range []bool{true, false} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			name := fmt.Sprintf("wake-%v", compact)
			c := newHookedConn(t, srv, uint64(200+i))
			if compact {
				c.in(t, wire.DeviceHello{NodeID: "sub", Views: wire.ViewsCompact})
			} else {
				c.in(t, wire.DeviceHello{})
			}
			// Queued before the writer runs: ack, PONG, PONG.
			c.in(t, wire.Ping{Timestamp: 1})
			c.in(t, wire.Ping{Timestamp: 2})
			c.run()
			var got [][]wire.Message
			for n := 0; n < 3; {
				ms, batch := items(t, c.frame(t))
				if batch && !compact {
					t.Fatalf("a connection without compact views got a BATCH: %v", types(ms))
				}
				got = append(got, ms)
				n += len(ms)
			}
			want := [][]wire.Message{{wire.DeviceAck{Views: ackViews(compact)}}, {wire.Pong{Timestamp: 1}, wire.Pong{Timestamp: 2}}}
			if !compact {
				want = [][]wire.Message{want[0], want[1][:1], want[1][1:]}
			}
			if !samePongs(got, want) {
				t.Fatalf("frames %v, want %v", got, want)
			}

			// The writer is busy with PONG 3 while a reply, two PONGs and
			// an update caused by another client's write are queued: its
			// next wake-up finds all four.
			c.in(t, wire.CounterRequest{Name: name})
			if ms, _ := items(t, c.frame(t)); len(ms) != 1 || ms[0].Type() != wire.TypeCounterResponse {
				t.Fatalf("got %v, want COUNTER_RESPONSE", types(ms))
			}
			c.drainStarted()
			c.in(t, wire.Ping{Timestamp: 3})
			<-c.started
			c.in(t, wire.CounterRequest{Name: name})
			c.in(t, wire.Ping{Timestamp: 4})
			c.in(t, wire.Ping{Timestamp: 5})
			writer.in(t, wire.CounterSync{Name: name, State: crdt.State{P: map[string]int64{"w": 7}, N: map[string]int64{}}})
			waitQueued(t, c.conn, name)

			if ms, batch := items(t, c.frame(t)); batch || !samePongs([][]wire.Message{ms}, [][]wire.Message{{wire.Pong{Timestamp: 3}}}) {
				t.Fatalf("got %v, want PONG 3 alone", types(ms))
			}
			wantTypes := []string{wire.TypeCounterResponse, wire.TypePong, wire.TypePong, wire.TypeCounterUpdate}
			var seen []string
			frames := 0
			for len(seen) < len(wantTypes) {
				ms, batch := items(t, c.frame(t))
				frames++
				if batch && !compact {
					t.Fatalf("a connection without compact views got a BATCH: %v", types(ms))
				}
				seen = append(seen, types(ms)...)
				if last := ms[len(ms)-1]; last.Type() == wire.TypeCounterUpdate {
					v, _ := last.(wire.CounterUpdate).State.Value()
					if v != 7 {
						t.Fatalf("update value %d, want 7", v)
					}
				}
			}
			if !reflect.DeepEqual(seen, wantTypes) {
				t.Fatalf("messages %v, want %v", seen, wantTypes)
			}
			if wantFrames := map[bool]int{true: 1, false: 4}[compact]; frames != wantFrames {
				t.Fatalf("%d frames for one wake-up, want %d", frames, wantFrames)
			}
		})
	}
}

// samePongs compares frames of handshake acks and PONGs, ignoring
// PONG.serverTime.
func samePongs(got, want [][]wire.Message) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if len(got[i]) != len(want[i]) {
			return false
		}
		for j := range got[i] {
			g := got[i][j]
			if p, ok := g.(wire.Pong); ok {
				p.ServerTime = 0
				g = p
			}
			if !reflect.DeepEqual(g, want[i][j]) {
				return false
			}
		}
	}
	return true
}

// unbatched reads messages off r, opening server BATCHes, until n
// messages were read; it returns them and how many BATCH frames carried
// them.
func unbatched(t *testing.T, r *raw, n int) (ms []wire.Message, batches int) {
	t.Helper()
	for len(ms) < n {
		m := r.next()
		b, ok := m.(wire.Batch)
		if !ok {
			ms = append(ms, m)
			continue
		}
		batches++
		its, err := wire.SplitServerBatch(b.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range its {
			im, err := wire.Decode(it)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, im)
		}
	}
	return ms, batches
}

// TestBatchOverSockets: over WebSocket, a burst of replies reaches a
// compact client complete and in order however it is batched, and never
// as a BATCH to a legacy client.
func TestBatchOverSockets(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	const n = 300
	var pings [][]byte
	for i := range n {
		b, _ := wire.Encode(wire.Ping{Timestamp: uint64(i + 1)})
		pings = append(pings, b)
	}
	burst := wire.Batch{Count: n, Data: wire.JoinBatch(pings...)} // C→S layout
	for _, how := range []string{"DEVICE_HELLO", "AUTH", "legacy"} {
		compact := how != "legacy"
		var r *raw
		switch how {
		case "DEVICE_HELLO":
			r = dialCompact(t, url, "burst")
		case "AUTH":
			r = dial(t, url)
			r.send(wire.Auth{NodeID: "burst2", Views: wire.ViewsCompact})
			if a := expect[wire.AuthAck](r); a.Views != wire.ViewsCompact {
				t.Fatalf("AUTH_ACK %+v", a)
			}
		default:
			r = dial(t, url)
		}
		r.send(burst)
		ms, batches := unbatched(t, r, n)
		if !compact && batches > 0 {
			t.Fatalf("legacy client got %d BATCH frames", batches)
		}
		for i, m := range ms {
			if p, ok := m.(wire.Pong); !ok || p.Timestamp != uint64(i+1) {
				t.Fatalf("%s: message %d: %+v, want PONG %d", how, i, m, i+1)
			}
		}
		t.Logf("%s: %d PONGs in %d BATCH frames", how, n, batches)
	}
}

// TestWriteTimeout: a frame write that blocks (the peer does not read)
// ends the connection once the write timeout passes, and at once when the
// connection ends meanwhile (server shutdown), without a context per
// write.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		c := blockedWriter(t, 300*time.Millisecond)
		select {
		case <-c.wrote:
		case <-time.After(10 * time.Second):
			t.Fatal("a write to a peer that does not read did not end within 10s")
		}
		if !c.stuck.Load() || c.ctx.Err() == nil {
			t.Fatalf("writer ended without the write timeout (stuck %v, ctx %v)", c.stuck.Load(), c.ctx.Err())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		c := blockedWriter(t, time.Hour)
		time.Sleep(200 * time.Millisecond) // the writer is blocked by now
		c.cancel()
		select {
		case <-c.wrote:
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked write did not end within 10s of the connection's end")
		}
		if c.stuck.Load() {
			t.Fatal("the watchdog fired")
		}
	})
}

// blockedWriter returns a server connection on a real WebSocket whose peer
// never reads, with far more queued than the socket buffers hold and its
// writer running.
func blockedWriter(t *testing.T, timeout time.Duration) *conn {
	t.Helper()
	c, _ := socketConn(t)
	c.writeTimeout = timeout
	c.hold = true
	big := wire.Error{Code: 500, Message: strings.Repeat("x", 1<<20)}
	for range 64 {
		c.send(big)
	}
	c.startWriter()
	return c
}

// socketConn returns a server connection (of a server of its own, no
// reader running) on a real WebSocket, and the peer's end.
func socketConn(t *testing.T) (*conn, *websocket.Conn) {
	t.Helper()
	srv, err := New(Config{Store: storageForTest(t), NoAuth: true, Logger: quietLogger(), MaxOutbox: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	accepted := make(chan *wsConn, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wc, err := acceptWS(w, r, nil, wire.MaxFrameSize)
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- wc
	}))
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peer, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	peer.SetReadLimit(4 << 20)
	t.Cleanup(func() { peer.CloseNow() })
	wc := <-accepted
	c := newConn(srv, wc, 1)
	t.Cleanup(func() { c.cancel(); wc.CloseNow(); <-c.wrote })
	return c, peer
}
