//go:build js && wasm

package transport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall/js"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// writeHighWater is how many bytes may wait in the browser's send buffer
// (WebSocket.bufferedAmount) before Write waits for it to drain. The
// browser never blocks send and buffers without bound, so this is the only
// backpressure a writer gets. 1 MiB keeps at most one maximum-size frame
// (2 MiB) plus 1 MiB queued per connection, and is far above what the
// engine's small frames reach on a healthy link.
const writeHighWater = 1 << 20

// writePoll is how often a waiting Write looks at bufferedAmount again. The
// browser fires no event when the buffer drains, so Write polls; reading the
// property is one cheap JS call.
const writePoll = 5 * time.Millisecond

// WebSocket.readyState values.
const (
	wsOpen = 1
)

var jsUint8Array = js.Global().Get("Uint8Array")

// ignoreError is every socket's onerror handler, for its whole life: the
// listener added by Dial is removed when the connection is released, but a
// socket closed while still connecting reports an error afterwards, and
// Node's ws package throws an error event that has no listener (an
// uncaught exception that ends the process). One function, never released.
var ignoreError = js.FuncOf(func(js.Value, []js.Value) any { return nil })

// liveFuncs counts js.Funcs this file holds; tests check that it returns to
// zero once every connection has ended.
var liveFuncs atomic.Int32

// Dial opens a WebSocket connection to url with the browser's WebSocket. It
// is the default Dialer. ctx bounds the opening handshake only; if it ends
// first the socket is closed.
func Dial(ctx context.Context, url string) (Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", url, err)
	}
	ctor := js.Global().Get("WebSocket")
	if ctor.Type() != js.TypeFunction {
		return nil, fmt.Errorf("transport: dial %s: this JavaScript environment has no WebSocket", url)
	}
	var ws js.Value
	if err := catch(func() { ws = ctor.New(url) }); err != nil {
		// A malformed URL or a blocked port throws a SyntaxError or
		// SecurityError.
		return nil, fmt.Errorf("transport: dial %s: %w", url, err)
	}
	ws.Set("binaryType", "arraybuffer")
	ws.Set("onerror", ignoreError)

	c := &jsConn{ws: ws, notify: make(chan struct{}, 1), done: make(chan struct{})}
	opened := make(chan struct{})
	c.releases = []func(){
		c.listen("open", func(js.Value) { close(opened) }),
		c.listen("message", c.onMessage),
		c.listen("error", c.onError),
		c.listen("close", c.onClose),
	}

	select {
	case <-opened:
		return c, nil
	case <-c.done:
		// The browser does not say why (its console does): the error event
		// is deliberately opaque and the close code is 1006 either way.
		c.Close()
		return nil, fmt.Errorf("transport: dial %s: the WebSocket could not be opened (the server is unreachable or refused it; in a browser the console says why): %w", url, c.endErr())
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("transport: dial %s: %w", url, ctx.Err())
	}
}

// jsConn is a Conn over a browser WebSocket. The event handlers only copy
// data and signal under mu, so they never block the JS event loop; Read
// and Write do the waiting in Go.
type jsConn struct {
	ws     js.Value
	notify chan struct{} // capacity 1: a frame arrived or the connection ended
	done   chan struct{} // closed when err is set

	mu       sync.Mutex
	frames   [][]byte // received, not yet read
	err      error    // why the connection ended; wraps ErrClosed
	releases []func() // remove the listeners and release their js.Funcs
}

// listen adds fn as a listener for typ and returns the func that removes
// it and releases its js.Func.
func (c *jsConn) listen(typ string, fn func(js.Value)) (release func()) {
	f := js.FuncOf(func(_ js.Value, args []js.Value) any {
		fn(args[0])
		return nil
	})
	c.ws.Call("addEventListener", typ, f)
	liveFuncs.Add(1)
	return func() {
		c.ws.Call("removeEventListener", typ, f)
		f.Release()
		liveFuncs.Add(-1)
	}
}

func (c *jsConn) onMessage(e js.Value) {
	data := e.Get("data")
	if data.Type() == js.TypeString {
		return // text frames carry nothing in this protocol
	}
	n := data.Get("byteLength").Int()
	if n > ReadLimit {
		// As the native Dial: the message is not read, the connection
		// ends, and Read reports why after the frames before it.
		c.end(fmt.Errorf("%w: received a %d-byte message, over ReadLimit (%d bytes): %w",
			ErrClosed, n, ReadLimit, wire.ErrFrameTooLarge), false)
		// Browsers may only send 1000 or 3000-4999, not 1009.
		c.closeSocket(1000, "message over the read limit")
		return
	}
	b := make([]byte, n)
	js.CopyBytesToGo(b, jsUint8Array.New(data))
	c.mu.Lock()
	if c.err == nil {
		c.frames = append(c.frames, b)
	}
	c.mu.Unlock()
	c.signal()
}

func (c *jsConn) onError(js.Value) {
	// A close event follows, but end now so that nothing waits for it.
	c.end(fmt.Errorf("%w: WebSocket error", ErrClosed), false)
}

func (c *jsConn) onClose(e js.Value) {
	code := e.Get("code").Int()
	if e.Get("wasClean").Bool() {
		c.end(fmt.Errorf("%w: closed by the server (status %d %q)",
			ErrClosed, code, e.Get("reason").String()), false)
	} else {
		c.end(fmt.Errorf("%w: connection lost (status %d)", ErrClosed, code), false)
	}
	c.release()
}

// end records why the connection ended (the first reason wins) and wakes
// Read. clear drops frames not read yet.
func (c *jsConn) end(reason error, clear bool) {
	c.mu.Lock()
	if c.err == nil {
		c.err = reason
		close(c.done)
	}
	if clear {
		c.frames = nil
	}
	c.mu.Unlock()
	c.signal()
}

func (c *jsConn) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *jsConn) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *jsConn) release() {
	c.mu.Lock()
	rs := c.releases
	c.releases = nil
	c.mu.Unlock()
	for _, r := range rs {
		r()
	}
}

func (c *jsConn) closeSocket(code int, reason string) {
	_ = catch(func() { c.ws.Call("close", code, reason) })
}

// Read returns the next binary frame. Frames that arrived before the
// server closed the connection are returned before the error. Cancelling
// ctx does not close the connection.
func (c *jsConn) Read(ctx context.Context) ([]byte, error) {
	for {
		c.mu.Lock()
		if len(c.frames) > 0 {
			b := c.frames[0]
			c.frames[0] = nil
			c.frames = c.frames[1:]
			c.mu.Unlock()
			return b, nil
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-c.notify:
		case <-ctx.Done():
			return nil, fmt.Errorf("transport: read: %w", ctx.Err())
		}
	}
}

// Write sends frame as one binary message. The browser queues it without
// blocking; Write first waits, while more than writeHighWater bytes are
// queued, until the queue drains, the connection ends or ctx ends (then
// nothing is sent).
func (c *jsConn) Write(ctx context.Context, frame []byte) error {
	var t *time.Timer
	for {
		if err := c.endErr(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("transport: write: %w", err)
		}
		if c.ws.Get("readyState").Int() != wsOpen {
			// CLOSING or CLOSED: send would discard the frame silently.
			return fmt.Errorf("%w: WebSocket is closing", ErrClosed)
		}
		if c.ws.Get("bufferedAmount").Int() <= writeHighWater {
			break
		}
		if t == nil {
			t = time.NewTimer(writePoll)
			defer t.Stop()
		} else {
			t.Reset(writePoll)
		}
		select {
		case <-t.C:
		case <-c.done:
		case <-ctx.Done():
		}
	}
	a := jsUint8Array.New(len(frame))
	js.CopyBytesToJS(a, frame)
	if err := catch(func() { c.ws.Call("send", a) }); err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	return nil
}

// Close closes the WebSocket (status 1000) without waiting for the close
// handshake, drops unread frames and releases the event listeners.
// Pending and later Reads and Writes fail with ErrClosed.
func (c *jsConn) Close() error {
	c.end(ErrClosed, true)
	c.closeSocket(1000, "")
	c.release()
	return nil
}

// catch turns a JS exception thrown by fn into an error.
func catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			jsErr, ok := r.(js.Error)
			if !ok {
				panic(r)
			}
			err = jsErr
		}
	}()
	fn()
	return nil
}
