package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/topgun-go/topgun/sync/wire"
)

// encoder builds hand-made frames.
type encoder = *msgpack.Encoder

func frame(t *testing.T, build func(e encoder)) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	build(e)
	return buf.Bytes()
}

// TestMalformedFrames: every bad frame gets ERROR 400 with a reason and the
// connection keeps working (TopGun drops them silently).
func TestMalformedFrames(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	deep := append(bytes.Repeat([]byte{0x91}, 300), 0xc0)
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"garbage", "malformed", []byte{0xc1, 0x00}},
		{"truncated", "malformed", []byte{0x82, 0xa4, 't'}},
		{"not a map", "not a map", frame(t, func(e *msgpack.Encoder) { e.EncodeString("PING") })},
		{"no type", "type", frame(t, func(e *msgpack.Encoder) { e.EncodeMapLen(1); e.EncodeString("x"); e.EncodeInt(1) })},
		{"unknown type", "unknown message type", frame(t, func(e *msgpack.Encoder) {
			e.EncodeMapLen(1)
			e.EncodeString("type")
			e.EncodeString("NOPE")
		})},
		{"missing field", "name is required", frame(t, func(e *msgpack.Encoder) {
			e.EncodeMapLen(2)
			e.EncodeString("type")
			e.EncodeString("COUNTER_REQUEST")
			e.EncodeString("payload")
			e.EncodeMapLen(0)
		})},
		{"ext type", "ext", []byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xd4, 0x00, 0x00}},
		{"too deep", "deeper than 256", deep},
		{"fractional entry", "not an integer", frame(t, func(e *msgpack.Encoder) {
			e.EncodeMapLen(2)
			e.EncodeString("type")
			e.EncodeString("COUNTER_SYNC")
			e.EncodeString("payload")
			e.EncodeMapLen(2)
			e.EncodeString("name")
			e.EncodeString("c")
			e.EncodeString("state")
			e.EncodeMapLen(2)
			e.EncodeString("p")
			e.EncodeMapLen(1)
			e.EncodeString("node")
			e.EncodeFloat64(1.5)
			e.EncodeString("n")
			e.EncodeMapLen(0)
		})},
		{"server message", "server-to-client", mustEncode(t, wire.Pong{Timestamp: 1, ServerTime: 2})},
		{"invalid counter name", "invalid name", mustEncode(t, wire.CounterRequest{Name: "has space"})},
	}
	r := dial(t, url)
	for _, tc := range cases {
		r.sendBytes(tc.b)
		got := expect[wire.Error](r)
		if got.Code != 400 || !strings.Contains(got.Message, tc.want) {
			t.Errorf("%s: got ERROR %d %q, want 400 containing %q", tc.name, got.Code, got.Message, tc.want)
		}
		if rest := r.roundTrip(); len(rest) != 0 {
			t.Errorf("%s: unexpected %v", tc.name, rest)
		}
	}
	// A text frame is not part of the protocol either.
	if err := r.ws.Write(t.Context(), websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if e := expect[wire.Error](r); e.Code != 400 {
		t.Errorf("text frame: %+v", e)
	}
	// Nothing was merged from the bad COUNTER_SYNC.
	r.send(wire.CounterRequest{Name: "c"})
	if got := expect[wire.CounterResponse](r); got.State.Len() != 0 {
		t.Errorf("state after rejected sync: %+v", got.State)
	}
}

func mustEncode(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFrameTooLarge: the transport refuses frames over 2 MiB.
func TestFrameTooLarge(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	r := dial(t, url)
	big := frame(t, func(e *msgpack.Encoder) {
		e.EncodeMapLen(2)
		e.EncodeString("type")
		e.EncodeString("PING")
		e.EncodeString("pad")
		e.EncodeBytes(make([]byte, wire.MaxFrameSize))
	})
	r.sendBytes(big)
	if st := websocket.CloseStatus(r.closed()); st != websocket.StatusMessageTooBig {
		t.Errorf("close status %v, want %v", st, websocket.StatusMessageTooBig)
	}
}

func TestPingDeviceHelloAndAuthInNoAuthMode(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	r := dial(t, url)
	r.send(wire.Ping{Timestamp: 1700000000000})
	if p := expect[wire.Pong](r); p.Timestamp != 1700000000000 || p.ServerTime == 0 {
		t.Errorf("pong %+v", p)
	}
	r.send(wire.DeviceHello{})
	expect[wire.DeviceAck](r)
	// a client that has a token must not hang against a no-auth server.
	r.send(wire.Auth{Token: "anything"})
	expect[wire.AuthAck](r)
}

func TestBatch(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	r := dial(t, url)
	data := wire.JoinBatch(mustEncode(t, wire.Ping{Timestamp: 1}), mustEncode(t, wire.Ping{Timestamp: 2}))
	r.send(wire.Batch{Count: 2, Data: data})
	if a, b := expect[wire.Pong](r), expect[wire.Pong](r); a.Timestamp != 1 || b.Timestamp != 2 {
		t.Errorf("pongs %+v %+v", a, b)
	}
	tooMany := make([][]byte, wire.MaxBatchItems+1)
	for i := range tooMany {
		tooMany[i] = mustEncode(t, wire.Ping{Timestamp: 9})
	}
	r.send(wire.Batch{Count: uint32(len(tooMany)), Data: wire.JoinBatch(tooMany...)})
	if e := expect[wire.Error](r); e.Code != 413 {
		t.Errorf("got %+v, want ERROR 413", e)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{RateLimit: 0.001, RateBurst: 2})
	r := dial(t, url)
	r.send(wire.Ping{Timestamp: 1})
	r.send(wire.Ping{Timestamp: 2})
	r.send(wire.Ping{Timestamp: 3})
	r.send(wire.LockRequest{RequestID: "q", Name: "l"})
	expect[wire.Pong](r)
	expect[wire.Pong](r)
	if e := expect[wire.Error](r); e.Code != 429 {
		t.Errorf("got %+v, want ERROR 429", e)
	}
	// A rate-limited lock request is still answered, with a reason.
	if d := expect[wire.LockReleased](r); d.Success || d.Reason != wire.ReasonRateLimited || d.RequestID != "q" {
		t.Errorf("got %+v, want rate_limited denial", d)
	}
}

// TestEndpoints: the protocol on / as well as /ws, /healthz, and a text
// page for plain HTTP on /.
func TestEndpoints(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	root := strings.TrimSuffix(url, "/ws") + "/"
	r := dial(t, root)
	r.send(wire.Ping{Timestamp: 7})
	if p := expect[wire.Pong](r); p.Timestamp != 7 {
		t.Fatalf("pong %+v", p)
	}
	httpBase := "http" + strings.TrimPrefix(strings.TrimSuffix(url, "/ws"), "ws")
	resp, err := http.Get(httpBase + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var health struct {
		Status      string
		Connections int
	}
	err = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || health.Status != "ok" || health.Connections != 1 {
		t.Fatalf("healthz %d %+v %v", resp.StatusCode, health, err)
	}
	resp, err = http.Get(httpBase + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
}

// TestIdleConnectionClosed: a connection that sends nothing for
// IdleTimeout is closed; one that pings stays.
func TestIdleConnectionClosed(t *testing.T) {
	t.Parallel()
	// The busy client pings ten times per idle timeout, so that a machine
	// busy with other tests cannot make it look idle.
	url, _ := start(t, Config{IdleTimeout: time.Second})
	idle, busy := dial(t, url), dial(t, url)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			b, _ := wire.Encode(wire.Ping{Timestamp: uint64(i)})
			if busy.ws.Write(t.Context(), websocket.MessageBinary, b) != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if st := websocket.CloseStatus(idle.closed()); st != websocket.StatusPolicyViolation {
		t.Errorf("idle connection closed with %v, want a close frame with %v", st, websocket.StatusPolicyViolation)
	}
	<-done
	busy.send(wire.Ping{Timestamp: 99})
	for {
		if p := expect[wire.Pong](busy); p.Timestamp == 99 {
			break
		}
	}
}

// TestCrossOriginAllowedByDefault: browser apps on other origins connect
// (they authenticate with AUTH, not cookies); an allow-list restricts.
func TestCrossOriginAllowedByDefault(t *testing.T) {
	t.Parallel()
	open := func(url, origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h := http.Header{"Origin": {origin}}
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			ws.CloseNow()
		}
		return err
	}
	url, _ := start(t, Config{})
	if err := open(url, "http://localhost:5173"); err != nil {
		t.Fatalf("cross-origin refused by default: %v", err)
	}
	url2, _ := start(t, Config{AllowedOrigins: []string{"app.example.com"}})
	if err := open(url2, "http://evil.example.net"); err == nil {
		t.Fatal("origin outside the allow-list accepted")
	}
	if err := open(url2, "https://app.example.com"); err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
}
