//go:build !js

// The client tests run natively only: they start the real server, which
// links etcd's client (no js build). The engine's js build is vetted and
// exercised through wasm/ and idb/ in Chromium.

package client_test

import (
	"context"
	"github.com/topgun-go/topgun/internal/leakcheck"
	"github.com/topgun-go/topgun/internal/testserver"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "topgun/sync/client.", "topgun/sync/transport.") }

// waitTimeout bounds every wait for a condition; conditions are polled, so
// it only matters when a test is about to fail.
const waitTimeout = 30 * time.Second

func quietLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("TOPGUN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testServer struct {
	url  string
	addr string
}

// serverConfig is the tests' server configuration: no auth, quiet.
func serverConfig(mod ...func(*server.Config)) server.Config {
	cfg := server.Config{
		DefaultLockTTL: 30 * time.Second,
		MaxLockTTL:     time.Hour,
		Logger:         quietLogger(),
	}
	for _, f := range mod {
		f(&cfg)
	}
	return cfg
}

// startServer runs a real no-auth server on 127.0.0.1 for the test.
func startServer(t *testing.T, mod ...func(*server.Config)) testServer {
	t.Helper()
	addr := testserver.Start(t, serverConfig(mod...))
	return testServer{url: "ws://" + addr + "/ws", addr: addr}
}

// startNode runs a server on st, a storage that other nodes may share,
// which the test can stop before it ends (Close).
func startNode(t *testing.T, st storage.Store) *testserver.Server {
	t.Helper()
	return testserver.StartServer(t, serverConfig(func(c *server.Config) { c.Store = st }))
}

// fastOptions are Options tuned for quick tests.
func fastOptions(url string) client.Options {
	return client.Options{
		URL:        url,
		Logger:     quietLogger(),
		SyncDelay:  2 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		// Clients closed while the server is out of reach wait this long.
		CloseTimeout: time.Second,
	}
}

// newClient starts a client that the test closes at cleanup.
func newClient(t *testing.T, opts client.Options) *client.Client {
	t.Helper()
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readyClient starts a client and waits until it is ready.
func readyClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c := newClient(t, fastOptions(url))
	waitReady(t, c)
	return c
}

func waitReady(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v (state %v, last error %v)", err, c.State(), c.Err())
	}
}

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func mustCounter(t *testing.T, c *client.Client, name string) *client.Counter {
	t.Helper()
	cnt, err := c.Counter(name)
	if err != nil {
		t.Fatal(err)
	}
	return cnt
}

func mustLock(t *testing.T, c *client.Client, name string) *client.Lock {
	t.Helper()
	l, err := c.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// proxy is a TCP proxy that a test can cut (close live connections and
// refuse new ones) and restore.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/ws" }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.mu.Unlock()
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// Cut closes every live connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *proxy) close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// raw is a protocol-level connection for crafting frames.
type raw struct {
	t    *testing.T
	conn transport.Conn
	msgs chan wire.Message
}

func dialRaw(t *testing.T, url string) *raw {
	t.Helper()
	conn, err := transport.Dial(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	r := &raw{t: t, conn: conn, msgs: make(chan wire.Message, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(r.msgs)
		for {
			b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			m, err := wire.Decode(b)
			if err != nil {
				t.Errorf("raw: decode: %v", err)
				continue
			}
			r.msgs <- m
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return r
}

func (r *raw) send(m wire.Message) {
	r.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.conn.Write(ctxT(r.t), b); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next message of type T, skipping others.
func next[T wire.Message](r *raw) T {
	r.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				r.t.Fatal("raw: connection closed")
			}
			if x, ok := m.(T); ok {
				return x
			}
		case <-timeout:
			var zero T
			r.t.Fatalf("raw: no %T", zero)
		}
	}
}

// recordingDialer wraps transport.Dial and records every frame the client
// writes (or tries to).
type recordingDialer struct {
	mu      sync.Mutex
	written []wire.Message
	notify  chan wire.Message // optional; receives copies, never blocks
	// dropPongs makes Read swallow PONG frames (a silent server).
	dropPongs bool
}

func (d *recordingDialer) dial(ctx context.Context, url string) (transport.Conn, error) {
	c, err := transport.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, d: d}, nil
}

func (d *recordingDialer) frames() []wire.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.Message(nil), d.written...)
}

type recordingConn struct {
	transport.Conn
	d *recordingDialer
}

// Write records the frame before writing it: the server's reply may be
// processed before Write returns.
func (c *recordingConn) Write(ctx context.Context, b []byte) error {
	if m, derr := wire.Decode(b); derr == nil {
		c.d.mu.Lock()
		c.d.written = append(c.d.written, m)
		c.d.mu.Unlock()
		if c.d.notify != nil {
			select {
			case c.d.notify <- m:
			default:
			}
		}
	}
	return c.Conn.Write(ctx, b)
}

func (c *recordingConn) Read(ctx context.Context) ([]byte, error) {
	for {
		b, err := c.Conn.Read(ctx)
		if err != nil || !c.d.dropPongs {
			return b, err
		}
		if m, derr := wire.Decode(b); derr == nil {
			if _, ok := m.(wire.Pong); ok {
				continue
			}
		}
		return b, nil
	}
}
