//go:build js && wasm

package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall/js"
	"testing"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// These tests run in a real browser and talk to the real server. They are
// run by TestBrowserTransport (browser_test.go, the native build), which
// starts the servers, sets the environment variables below and runs this
// package with GOOS=js GOARCH=wasm through wasmbrowsertest.
const (
	envURL       = "TOPGUN_TEST_WS_URL"        // a server in no-auth mode
	envIdleURL   = "TOPGUN_TEST_WS_IDLE_URL"   // one that closes idle connections fast
	envHangURL   = "TOPGUN_TEST_WS_HANG_URL"   // accepts TCP, never answers
	envClosedURL = "TOPGUN_TEST_WS_CLOSED_URL" // nothing listens there
)

func TestMain(m *testing.M) {
	for _, k := range []string{envURL, envIdleURL, envHangURL, envClosedURL} {
		if os.Getenv(k) == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: the js/wasm tests of sync/transport are run by the native "+
				"TestBrowserTransport, which starts the servers they need:\n"+
				"\tgo test -run TestBrowserTransport ./sync/transport\n", k)
			os.Exit(1)
		}
	}
	code := m.Run()
	if code == 0 {
		// Every connection has ended by now: its listeners must be gone.
		deadline := time.Now().Add(5 * time.Second)
		for liveFuncs.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := liveFuncs.Load(); n != 0 {
			fmt.Fprintf(os.Stderr, "%d js.Func not released after every connection ended\n", n)
			code = 1
		}
	}
	os.Exit(code)
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, ctx context.Context, url string) Conn {
	t.Helper()
	c, err := Dial(ctx, url)
	if err != nil {
		t.Fatalf("Dial(%s): %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t *testing.T, ctx context.Context, c Conn, frame []byte) {
	t.Helper()
	if err := c.Write(ctx, frame); err != nil {
		t.Fatalf("Write(%d bytes): %v", len(frame), err)
	}
}

func encode(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// read returns the next message, decoded.
func read(t *testing.T, ctx context.Context, c Conn) wire.Message {
	t.Helper()
	b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	m, err := wire.Decode(b)
	if err != nil {
		t.Fatalf("Decode(%d bytes from the server): %v", len(b), err)
	}
	return m
}

func wantPong(t *testing.T, ctx context.Context, c Conn, ts uint64) {
	t.Helper()
	m := read(t, ctx, c)
	if p, ok := m.(wire.Pong); !ok || p.Timestamp != ts {
		t.Fatalf("got %#v, want PONG with timestamp %d", m, ts)
	}
}

// paddedPing returns a valid PING frame of exactly size bytes: the server
// ignores the unknown "pad" key.
func paddedPing(ts uint8, size int) []byte {
	b := []byte{0x83, 0xa4}
	b = append(b, "type"...)
	b = append(b, 0xa4)
	b = append(b, "PING"...)
	b = append(b, 0xa9)
	b = append(b, "timestamp"...)
	b = append(b, ts&0x7f) // positive fixint
	b = append(b, 0xa3)
	b = append(b, "pad"...)
	n := size - len(b) - 5
	b = append(b, 0xdb) // str 32
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, strings.Repeat("x", n)...)
}

func TestJSConversation(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	c := dial(t, ctx, os.Getenv(envURL))

	write(t, ctx, c, encode(t, wire.Ping{Timestamp: 42}))
	wantPong(t, ctx, c, 42)

	// A malformed frame gets ERROR 400 and the connection stays up.
	write(t, ctx, c, []byte{0xc1})
	if m, ok := read(t, ctx, c).(wire.Error); !ok || m.Code != 400 {
		t.Fatalf("malformed frame: got %#v, want ERROR 400", m)
	}

	// The largest frame the server accepts, then enough of them in a row
	// that Write has to wait for bufferedAmount to drain.
	big := paddedPing(7, wire.MaxFrameSize)
	if _, err := wire.Decode(big); err != nil {
		t.Fatalf("paddedPing is not a valid frame: %v", err)
	}
	write(t, ctx, c, big)
	wantPong(t, ctx, c, 7)
	const n = 8
	maxBuffered := 0
	for i := range n {
		write(t, ctx, c, paddedPing(uint8(10+i), wire.MaxFrameSize))
		// Write sends only while at most writeHighWater bytes wait.
		b := c.(*jsConn).ws.Get("bufferedAmount").Int()
		maxBuffered = max(maxBuffered, b)
		if b > writeHighWater+wire.MaxFrameSize {
			t.Fatalf("after Write %d: bufferedAmount %d, over writeHighWater plus one frame", i, b)
		}
	}
	t.Logf("largest bufferedAmount after a Write: %d", maxBuffered)
	for i := range n {
		wantPong(t, ctx, c, uint64(10+i))
	}

	// Read's ctx ending does not end the connection.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Read(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with an expiring ctx: got %v, want DeadlineExceeded", err)
	}
	write(t, ctx, c, encode(t, wire.Ping{Timestamp: 43}))
	wantPong(t, ctx, c, 43)

	// Close is idempotent, and Read and Write then fail with ErrClosed.
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Read(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: got %v, want ErrClosed", err)
	}
	if err := c.Write(ctx, encode(t, wire.Ping{Timestamp: 44})); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: got %v, want ErrClosed", err)
	}
}

func TestJSCloseUnblocksRead(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	c := dial(t, ctx, os.Getenv(envURL))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Read after Close: got %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending Read did not return after Close")
	}
}

func TestJSServerCloses(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  string
		send []byte // nil: stay idle
		want string // in the error
	}{
		{"idle", os.Getenv(envIdleURL), nil, "status 1008"},
		{"frame over the server's limit", os.Getenv(envURL), paddedPing(1, wire.MaxFrameSize+1), "status 1009"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 10*time.Second)
			c := dial(t, ctx, tc.url)
			if tc.send != nil {
				write(t, ctx, c, tc.send)
			}
			start := time.Now()
			_, err := c.Read(ctx) // pending until the server closes
			if !errors.Is(err, ErrClosed) || ctx.Err() != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read on a connection the server closed: got %v after %v, want ErrClosed with %q",
					err, time.Since(start), tc.want)
			}
			t.Logf("Read after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if _, err2 := c.Read(ctx); !errors.Is(err2, ErrClosed) {
				t.Fatalf("second Read: got %v, want ErrClosed", err2)
			}
			if err := c.Write(ctx, encode(t, wire.Ping{Timestamp: 1})); !errors.Is(err, ErrClosed) {
				t.Fatalf("Write on a connection the server closed: got %v, want ErrClosed", err)
			}
		})
	}
}

// TestJSIncoming feeds the connection's message listener synthetic
// MessageEvents: the server never sends text or oversized messages.
func TestJSIncoming(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	c := dial(t, ctx, os.Getenv(envURL)).(*jsConn)
	deliver := func(data js.Value) {
		init := js.Global().Get("Object").New()
		init.Set("data", data)
		c.ws.Call("dispatchEvent", js.Global().Get("MessageEvent").New("message", init))
	}
	binary := func(n int) js.Value { return js.Global().Get("ArrayBuffer").New(n) }

	// A text message is skipped: the PONG is the next frame.
	deliver(js.ValueOf("text is not part of the protocol"))
	write(t, ctx, c, encode(t, wire.Ping{Timestamp: 5}))
	wantPong(t, ctx, c, 5)

	// A message of exactly ReadLimit bytes is read.
	deliver(binary(ReadLimit))
	if b, err := c.Read(ctx); err != nil || len(b) != ReadLimit {
		t.Fatalf("Read of a ReadLimit message: got %d bytes, %v", len(b), err)
	}

	// One byte more ends the connection, after the frames before it.
	deliver(binary(3))
	deliver(binary(ReadLimit + 1))
	deliver(binary(4)) // after the end: dropped
	if b, err := c.Read(ctx); err != nil || len(b) != 3 {
		t.Fatalf("Read of the frame before the oversized one: got %d bytes, %v", len(b), err)
	}
	for i := range 2 {
		_, err := c.Read(ctx)
		if !errors.Is(err, ErrClosed) || !errors.Is(err, wire.ErrFrameTooLarge) {
			t.Fatalf("Read %d after an oversized message: got %v, want ErrClosed and ErrFrameTooLarge", i, err)
		}
		if i == 0 {
			t.Logf("Read: %v", err)
		}
	}
	if err := c.Write(ctx, encode(t, wire.Ping{Timestamp: 6})); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after an oversized message: got %v, want ErrClosed", err)
	}
}

func TestJSDialErrors(t *testing.T) {
	healthz := strings.Replace(os.Getenv(envURL), "/ws", "/healthz", 1)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		url     string
		timeout time.Duration
		ctx     context.Context // overrides timeout
		want    error           // nil: any error
	}{
		{"closed port", os.Getenv(envClosedURL), 10 * time.Second, nil, nil},
		{"not a WebSocket endpoint", healthz, 10 * time.Second, nil, nil},
		{"relative URL", "not-a-websocket", 10 * time.Second, nil, nil},
		{"malformed URL", "ws://[::1", 10 * time.Second, nil, nil},
		{"no answer within ctx", os.Getenv(envHangURL), 300 * time.Millisecond, nil, context.DeadlineExceeded},
		{"ctx already cancelled", os.Getenv(envURL), 0, cancelled, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = testCtx(t, tc.timeout)
			}
			start := time.Now()
			c, err := Dial(ctx, tc.url)
			if err == nil {
				c.Close()
				t.Fatalf("Dial(%s) succeeded", tc.url)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Dial(%s): got %v, want %v", tc.url, err, tc.want)
			}
			if tc.want == nil && ctx.Err() != nil {
				t.Fatalf("Dial(%s) hung until its ctx ended: %v", tc.url, err)
			}
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}
