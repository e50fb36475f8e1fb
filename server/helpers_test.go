package server

import (
	"context"
	"fmt"
	"github.com/topgun-go/topgun/internal/leakcheck"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/server/locks/etcdlocks"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEtcd.c != nil {
		sharedEtcd.c.Stop()
		os.RemoveAll(sharedEtcd.dir)
	}
	if code == 0 {
		if err := leakcheck.Wait(10*time.Second, "topgun/server."); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedEtcd is one etcd member for the package's tests, started on first
// use; each test uses its own key prefix.
var sharedEtcd struct {
	once sync.Once
	c    *etcdtest.Cluster
	dir  string
	err  error
}

// lockMode turns a test's Config into one of the modes the lock tests run
// in.
type lockMode func(t *testing.T, cfg Config) Config

// eachLockMode runs fn against a single-node server and against a node of
// an etcd cluster: locks behave alike in both.
func eachLockMode(t *testing.T, fn func(t *testing.T, mode lockMode)) {
	t.Parallel()
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		fn(t, func(t *testing.T, cfg Config) Config { return cfg })
	})
	t.Run("etcd", func(t *testing.T) {
		t.Parallel()
		fn(t, withEtcd)
	})
}

var prefixSeq atomic.Uint64

// withEtcd sets cfg up as a node of the shared etcd, under a key prefix of
// its own (one per call site: call it once per test).
func withEtcd(t *testing.T, cfg Config) Config {
	t.Helper()
	sharedEtcd.once.Do(func() {
		sharedEtcd.dir, sharedEtcd.err = os.MkdirTemp("", "topgun-server-etcd")
		if sharedEtcd.err == nil {
			sharedEtcd.c, sharedEtcd.err = etcdtest.Start(context.Background(), 1, sharedEtcd.dir, nil)
		}
	})
	if sharedEtcd.err != nil {
		t.Fatal(sharedEtcd.err)
	}
	cfg.Locks = etcdlocks.Backend(sharedEtcd.c.Client(t), etcdlocks.Config{Prefix: fmt.Sprintf("/test/%d", prefixSeq.Add(1))})
	return cfg
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a real server on 127.0.0.1 and returns its ws URL.
func start(t *testing.T, cfg Config) (string, *Server) {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = storage.NewMemory()
		t.Cleanup(func() { cfg.Store.Close() })
	}
	if cfg.JWTSecret == "" {
		cfg.NoAuth = true
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url, stop := serveOn(t, srv)
	t.Cleanup(stop)
	return url, srv
}

// serveOn serves srv on a fresh 127.0.0.1 port; stop closes it (once).
func serveOn(t *testing.T, srv *Server) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := srv.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	return "ws://" + ln.Addr().String() + "/ws", stop
}

// raw is a protocol-level test client.
type raw struct {
	t    *testing.T
	ws   *websocket.Conn
	msgs chan wire.Message
	errs chan error
}

func dial(t *testing.T, url string) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(4 << 20)
	r := &raw{t: t, ws: ws, msgs: make(chan wire.Message, 1024), errs: make(chan error, 1)}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				r.errs <- err
				close(r.msgs)
				return
			}
			m, err := wire.Decode(b)
			if err != nil {
				r.errs <- fmt.Errorf("client decode: %w", err)
				continue
			}
			r.msgs <- m
		}
	}()
	t.Cleanup(func() { ws.CloseNow() })
	return r
}

func (r *raw) send(m wire.Message) {
	r.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendBytes(b)
}

func (r *raw) sendBytes(b []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next message, failing the test if none arrives within a
// generous bound (a liveness guard, not a timing assertion).
func (r *raw) next() wire.Message {
	r.t.Helper()
	select {
	case m, ok := <-r.msgs:
		if !ok {
			r.t.Fatalf("connection closed: %v", <-r.errs)
		}
		return m
	case <-time.After(10 * time.Second):
		r.t.Fatal("no message within 10s")
	}
	return nil
}

// expect returns the next message, which must be of type T.
func expect[T wire.Message](r *raw) T {
	r.t.Helper()
	m := r.next()
	v, ok := m.(T)
	if !ok {
		var zero T
		r.t.Fatalf("got %#v, want %T", m, zero)
	}
	return v
}

// closed waits until the server closes the connection and returns the
// close error.
func (r *raw) closed() error {
	r.t.Helper()
	for {
		select {
		case _, ok := <-r.msgs:
			if !ok {
				return <-r.errs
			}
		case <-time.After(10 * time.Second):
			r.t.Fatal("connection not closed within 10s")
		}
	}
}

// roundTrip sends PING and skips until the PONG, returning what came
// before it: the server has handled every earlier frame by then, except
// work waiting for durability.
func (r *raw) roundTrip() []wire.Message {
	r.t.Helper()
	ts := uint64(time.Now().UnixNano())
	r.send(wire.Ping{Timestamp: ts})
	var before []wire.Message
	for {
		m := r.next()
		if p, ok := m.(wire.Pong); ok && p.Timestamp == ts {
			return before
		}
		before = append(before, m)
	}
}

func u64(v uint64) *uint64 { return &v }

func storageForTest(t *testing.T) storage.Store {
	s := storage.NewMemory()
	t.Cleanup(func() { s.Close() })
	return s
}
