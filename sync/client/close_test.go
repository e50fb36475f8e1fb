//go:build !js

package client_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/internal/testserver"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/transport"
)

// gate holds a dial, or the reads of the connections it made, until it is
// opened; entered is closed when the first caller waits on it.
type gate struct {
	open    chan struct{}
	entered chan struct{}
	once    sync.Once
	enter   sync.Once
}

func newGate() *gate { return &gate{open: make(chan struct{}), entered: make(chan struct{})} }

func (g *gate) Open() { g.once.Do(func() { close(g.open) }) }

func (g *gate) wait(ctx context.Context) error {
	g.enter.Do(func() { close(g.entered) })
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedDialer dials only once g is open.
func gatedDialer(g *gate) transport.Dialer {
	return func(ctx context.Context, url string) (transport.Conn, error) {
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		return transport.Dial(ctx, url)
	}
}

// readGatedDialer dials at once but holds every Read until g is open: the
// client stays in the handshake (Authenticating) until then.
func readGatedDialer(g *gate) transport.Dialer {
	return wrapDialer(func(c transport.Conn) transport.Conn { return &gatedConn{Conn: c, g: g} })
}

// wrapDialer dials with transport.Dial and wraps each connection.
func wrapDialer(wrap func(transport.Conn) transport.Conn) transport.Dialer {
	return func(ctx context.Context, url string) (transport.Conn, error) {
		c, err := transport.Dial(ctx, url)
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	}
}

type gatedConn struct {
	transport.Conn
	g *gate
}

func (c *gatedConn) Read(ctx context.Context) ([]byte, error) {
	if err := c.g.wait(ctx); err != nil {
		return nil, err
	}
	return c.Conn.Read(ctx)
}

// closeBegun waits until c refuses new handles, which Close does first.
func closeBegun(t *testing.T, c *client.Client) {
	t.Helper()
	eventually(t, "Close under way", func() bool {
		_, err := c.Counter("probe")
		return errors.Is(err, client.ErrClosed)
	})
}

// serverValue reads counter name through a fresh client.
func serverValue(t *testing.T, url, name string, want int64) {
	t.Helper()
	cnt := mustCounter(t, readyClient(t, url), name)
	eventually(t, "server has the writes", func() bool { return cnt.Get() == want })
}

// TestCloseDeliversAtEveryMoment: a write followed by Close reaches the
// server whatever the connection was doing when Close was called, provided
// the server can be reached within the grace period.
func TestCloseDeliversAtEveryMoment(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	tests := []struct {
		name string
		// setup returns the options and a function run after the write
		// (before Close) and one run once Close is under way.
		setup func(t *testing.T) (opts client.Options, beforeClose func(*client.Client), during func())
	}{
		{"just after Start, default sync delay", func(t *testing.T) (client.Options, func(*client.Client), func()) {
			opts := fastOptions(srv.url)
			opts.SyncDelay = 0 // the default 50 ms: Close must not wait for it
			return opts, func(*client.Client) {}, func() {}
		}},
		{"during dial", func(t *testing.T) (client.Options, func(*client.Client), func()) {
			g := newGate()
			opts := fastOptions(srv.url)
			opts.Dialer = gatedDialer(g)
			return opts, func(*client.Client) { <-g.entered }, g.Open
		}},
		{"authenticating", func(t *testing.T) (client.Options, func(*client.Client), func()) {
			g := newGate()
			opts := fastOptions(srv.url)
			opts.Dialer = readGatedDialer(g)
			return opts, func(c *client.Client) {
				eventually(t, "authenticating", func() bool { return c.State() == client.Authenticating })
			}, g.Open
		}},
		{"ready", func(t *testing.T) (client.Options, func(*client.Client), func()) {
			opts := fastOptions(srv.url)
			opts.SyncDelay = 0
			return opts, func(c *client.Client) { waitReady(t, c) }, func() {}
		}},
		{"reconnecting", func(t *testing.T) (client.Options, func(*client.Client), func()) {
			px := newProxy(t, srv.addr)
			opts := fastOptions(px.url())
			// Once the connection is lost the client would wait an hour:
			// only Close's own attempt can deliver.
			opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour
			return opts, func(c *client.Client) {
				waitReady(t, c)
				px.Cut()
				eventually(t, "offline", func() bool { return c.State() == client.Offline })
				px.Restore()
			}, func() {}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, before, during := tt.setup(t)
			opts.CloseTimeout = waitTimeout
			name := "close-" + t.Name()[len("TestCloseDeliversAtEveryMoment/"):]
			name = sanitize(name)
			c := newClient(t, opts) // the cleanup's Close is a no-op after this test's
			cnt := mustCounter(t, c, name)
			if v, err := cnt.AddAndGet(5); v != 5 || err != nil {
				t.Fatalf("AddAndGet = %d, %v", v, err)
			}
			before(c)
			if name == sanitize("close-reconnecting") {
				cnt.AddAndGet(2) // a write made while reconnecting
			}
			done := make(chan error, 1)
			go func() { done <- c.Close() }()
			closeBegun(t, c)
			during()
			if err := <-done; err != nil {
				t.Fatalf("Close = %v, want nil (delivered)", err)
			}
			if _, err := cnt.AddAndGet(1); !errors.Is(err, client.ErrClosed) {
				t.Fatalf("AddAndGet after Close = %v, want ErrClosed", err)
			}
			want := int64(5)
			if name == sanitize("close-reconnecting") {
				want = 7
			}
			serverValue(t, srv.url, name, want)
		})
	}
}

// sanitize maps a subtest name to a valid counter name.
func sanitize(s string) string {
	b := []byte(s)
	for i, ch := range b {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-'
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}

// TestCloseKeepsWhatItCannotDeliver: when the server stays out of reach
// for the whole grace period, at every moment of the connection's life,
// Close reports the writes it kept, and the next Start with the same store
// delivers them.
func TestCloseKeepsWhatItCannotDeliver(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) (opts client.Options, beforeClose func(*client.Client))
	}{
		{"server down", func(t *testing.T) (client.Options, func(*client.Client)) {
			return fastOptions(testserverRefused(t)), func(c *client.Client) {
				eventually(t, "a failed attempt", func() bool { return errors.Is(c.Err(), client.ErrConnect) })
			}
		}},
		{"dial never completes", func(t *testing.T) (client.Options, func(*client.Client)) {
			g := newGate() // never opened
			opts := fastOptions(srv.url)
			opts.Dialer = gatedDialer(g)
			return opts, func(*client.Client) { <-g.entered }
		}},
		{"handshake never completes", func(t *testing.T) (client.Options, func(*client.Client)) {
			g := newGate() // never opened
			opts := fastOptions(srv.url)
			opts.Dialer = readGatedDialer(g)
			return opts, func(c *client.Client) {
				eventually(t, "authenticating", func() bool { return c.State() == client.Authenticating })
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := sanitize("kept-" + tt.name)
			st := store.NewMemory()
			t.Cleanup(func() { st.Close() })
			opts, before := tt.setup(t)
			opts.Store = st
			opts.CloseTimeout = 300 * time.Millisecond
			c := newClient(t, opts) // the cleanup's Close is a no-op after this test's
			cnt := mustCounter(t, c, name)
			cnt.AddAndGet(9)
			before(c)
			err := c.Close()
			var ue *client.UndeliveredError
			if !errors.As(err, &ue) || !errors.Is(err, client.ErrUndelivered) {
				t.Fatalf("Close = %v, want an *UndeliveredError", err)
			}
			if !ue.Kept || !slices.Equal(ue.Counters, []string{name}) || ue.Cause == nil {
				t.Fatalf("UndeliveredError %+v, want Kept, [%s] and a cause", ue, name)
			}
			// The next life of the replica delivers them.
			c2 := newClient(t, client.Options{URL: srv.url, Store: st, Logger: quietLogger(), SyncDelay: time.Millisecond})
			cnt2 := mustCounter(t, c2, name)
			if cnt2.Get() != 9 {
				t.Fatalf("restored %d, want 9", cnt2.Get())
			}
			if err := cnt2.Flush(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			serverValue(t, srv.url, name, 9)
		})
	}
}

// TestCloseMemoryStoreReportsLoss: with the default in-memory store, Close
// says the writes it could not deliver are lost.
func TestCloseMemoryStoreReportsLoss(t *testing.T) {
	t.Parallel()
	opts := fastOptions(testserverRefused(t))
	opts.CloseTimeout = 100 * time.Millisecond
	c := newClient(t, opts) // the cleanup's Close is a no-op after this test's
	mustCounter(t, c, "lost").Increment()
	var ue *client.UndeliveredError
	if err := c.Close(); !errors.As(err, &ue) || ue.Kept {
		t.Fatalf("Close = %v, want an UndeliveredError with Kept false", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestCloseOfflineOnPurpose: after SetOnline(false) Close does not connect;
// it persists and reports at once.
func TestCloseOfflineOnPurpose(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := fastOptions(srv.url)
	opts.Store = st
	opts.CloseTimeout = time.Hour // not waited for
	c := newClient(t, opts)       // the cleanup's Close is a no-op after this test's
	waitReady(t, c)
	c.SetOnline(false)
	mustCounter(t, c, "offline-close").AddAndGet(3)
	err := c.Close()
	if !errors.Is(err, client.ErrUndelivered) || !errors.Is(err, client.ErrOffline) {
		t.Fatalf("Close = %v, want ErrUndelivered caused by ErrOffline", err)
	}
	// The store had no record of the counter and the server's reply never
	// came: its base is unknown, so the write is kept relative.
	m, err := st.LoadCounters(t.Context())
	if err != nil || m["offline-close"].P[store.UnbasedNode] != 3 {
		t.Fatalf("stored %v, %v; want 3 unbased", m["offline-close"], err)
	}
}

// TestCloseBeforeStart: nothing to deliver, nothing reported.
func TestCloseBeforeStart(t *testing.T) {
	t.Parallel()
	c, err := client.New(fastOptions(testserverRefused(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}
}

// countingDialer counts dials.
func countingDialer(n *atomic.Int32) transport.Dialer {
	return func(ctx context.Context, url string) (transport.Conn, error) {
		n.Add(1)
		return transport.Dial(ctx, url)
	}
}

// refusalFirstConn hands the client's reader nothing that comes after the
// client's first write (its AUTH or DEVICE_HELLO) until the server has
// closed: then the answer and the end of the connection follow each other
// at once, as they do when a machine is busy, and both can be waiting when
// the handshake looks.
type refusalFirstConn struct {
	transport.Conn
	wrote atomic.Bool
	ahead [][]byte // read by the reader goroutine only
	err   error
}

func (c *refusalFirstConn) Read(ctx context.Context) ([]byte, error) {
	if c.err == nil && c.wrote.Load() {
		for c.err == nil {
			b, err := c.Conn.Read(ctx)
			if err != nil {
				c.err = err
			} else {
				c.ahead = append(c.ahead, b)
			}
		}
	}
	if len(c.ahead) > 0 {
		b := c.ahead[0]
		c.ahead = c.ahead[1:]
		return b, nil
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.Conn.Read(ctx)
}

func (c *refusalFirstConn) Write(ctx context.Context, frame []byte) error {
	err := c.Conn.Write(ctx, frame)
	c.wrote.Store(true)
	return err
}

// TestRefusalThenClose: the server answers a refused token with AUTH_FAIL
// and closes at once; the client reports the refusal, not the close,
// every time (it took one of the two at random, then retried the refused
// token).
func TestRefusalThenClose(t *testing.T) {
	t.Parallel()
	srv := jwtServer(t)
	expired := expiredToken(t)
	// Each try leaves it to chance which of the two ready events the old
	// client took.
	for range 20 {
		opts := fastOptions(srv.url)
		opts.Token = expired
		opts.Dialer = func(ctx context.Context, url string) (transport.Conn, error) {
			cn, err := transport.Dial(ctx, url)
			if err != nil {
				return nil, err
			}
			return &refusalFirstConn{Conn: cn}, nil
		}
		c := newClient(t, opts)
		var mu sync.Mutex
		var first error
		c.OnError(func(err error) {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		})
		eventually(t, "an error", func() bool { mu.Lock(); defer mu.Unlock(); return first != nil })
		mu.Lock()
		err := first
		mu.Unlock()
		if !errors.Is(err, client.ErrAuthFailed) {
			t.Fatalf("first error %v, want %v", err, client.ErrAuthFailed)
		}
		c.Close()
	}
}

// TestAuthFailureStopsRetrying: after AUTH_FAIL (a bad or expired token) or
// AUTH_REQUIRED (no token) the client does not dial again with the same
// token; a new one (SetToken, or a TokenFunc returning another) resumes.
func TestAuthFailureStopsRetrying(t *testing.T) {
	t.Parallel()
	srv := jwtServer(t)

	// check waits for the auth error, then checks that the client holds:
	// no dial in a period covering several of its backoffs. A client that
	// holds never dials there, however slow the machine; one that retries
	// would dial about five times.
	check := func(t *testing.T, c *client.Client, dials *atomic.Int32, want error) {
		t.Helper()
		eventually(t, "auth error", func() bool { return errors.Is(c.Err(), want) })
		n := dials.Load()
		// fastOptions back off at most 200 ms: in 1 s an unheld client
		// would dial again several times.
		time.Sleep(time.Second)
		if got := dials.Load(); got != n {
			t.Fatalf("dialled %d more times after %v", got-n, want)
		}
		if c.State() != client.Offline || !errors.Is(c.Err(), want) {
			t.Fatalf("state %v, err %v; want offline with %v", c.State(), c.Err(), want)
		}
	}

	for _, tt := range []struct {
		name  string
		token string
		want  error
	}{
		{"bad token", "not-a-jwt", client.ErrAuthFailed},
		{"expired token", expiredToken(t), client.ErrAuthFailed},
		{"no token", "", client.ErrAuthRequired},
	} {
		t.Run(tt.name+" then SetToken", func(t *testing.T) {
			t.Parallel()
			var dials atomic.Int32
			opts := fastOptions(srv.url)
			opts.Token = tt.token
			opts.Dialer = countingDialer(&dials)
			c := newClient(t, opts)
			var mu sync.Mutex
			var reported []error
			c.OnError(func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() })
			check(t, c, &dials, tt.want)
			if tt.want == client.ErrAuthFailed {
				var ae *client.AuthError
				if !errors.As(c.Err(), &ae) || ae.Message == "" {
					t.Fatalf("Err() = %v, want an *AuthError with the server's reason", c.Err())
				}
			}
			c.SetToken(token(t, "carol"))
			waitReady(t, c)
			if c.Err() != nil {
				t.Fatalf("Err() = %v once ready", c.Err())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reported) == 0 || !errors.Is(reported[0], tt.want) {
				t.Fatalf("OnError got %v, want %v first", reported, tt.want)
			}
		})
	}

	t.Run("token func returns a new token", func(t *testing.T) {
		t.Parallel()
		var dials, calls atomic.Int32
		good := token(t, "dave")
		var ok atomic.Bool
		opts := fastOptions(srv.url)
		opts.Dialer = countingDialer(&dials)
		opts.TokenFunc = func(context.Context) (string, error) {
			calls.Add(1)
			if ok.Load() {
				return good, nil
			}
			return "stale", nil
		}
		c := newClient(t, opts)
		check(t, c, &dials, client.ErrAuthFailed)
		if calls.Load() < 2 {
			t.Fatalf("TokenFunc called %d times while held, want it polled", calls.Load())
		}
		ok.Store(true)
		waitReady(t, c)
	})
}

// TestOnSynced: the synced-change callback fires at once, false after an
// unconfirmed write and true after the server's confirmation, without
// polling.
func TestOnSynced(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	c := newClient(t, fastOptions(px.url()))
	waitReady(t, c)
	cnt := mustCounter(t, c, "synced-events")
	var mu sync.Mutex
	var got []bool
	last := func() (bool, int) {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1], len(got)
	}
	off := cnt.OnSynced(func(s bool) { mu.Lock(); got = append(got, s); mu.Unlock() })
	if s, n := last(); !s || n != 1 {
		t.Fatalf("OnSynced first call %v (%d calls), want true at once", s, n)
	}
	px.Cut() // so the write cannot be confirmed before we look
	eventually(t, "offline", func() bool { return c.State() == client.Offline })
	cnt.Increment()
	if s, _ := last(); s || cnt.Synced() {
		t.Fatal("not reported unsynced after a write")
	}
	cnt.Increment() // still unsynced: no call
	if _, n := last(); n != 2 {
		t.Fatalf("%d calls, want 2 (no repeat of false)", n)
	}
	px.Restore()
	eventually(t, "synced again", func() bool { s, _ := last(); return s })
	if !cnt.Synced() {
		t.Fatal("callback said synced, Synced() disagrees")
	}
	off()
	cnt.Increment()
	if _, n := last(); n != 3 {
		t.Fatalf("callback fired after unsubscribe (%d calls)", n)
	}
}

// TestOnErrorReportsStorageFailures: a store that fails is reported (and
// the write is kept and retried), not only logged.
func TestOnErrorReportsStorageFailures(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	fs := &failingStore{Store: store.NewMemory()}
	fs.fail.Store(true)
	t.Cleanup(func() { fs.Store.Close() })
	opts := fastOptions(srv.url)
	opts.Store = fs
	c := newClient(t, opts)
	errs := make(chan error, 16)
	c.OnError(func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	cnt := mustCounter(t, c, "store-fails")
	cnt.AddAndGet(4)
	err := c.Persist(ctxT(t))
	if !errors.Is(err, client.ErrStorage) || !errors.Is(err, errDisk) {
		t.Fatalf("Persist = %v, want ErrStorage wrapping the store's error", err)
	}
	if got := <-errs; !errors.Is(got, client.ErrStorage) {
		t.Fatalf("OnError got %v, want ErrStorage", got)
	}
	fs.fail.Store(false)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	serverValue(t, srv.url, "store-fails", 4)
}

var errDisk = errors.New("disk full")

type failingStore struct {
	store.Store
	fail atomic.Bool
}

func (s *failingStore) Apply(ctx context.Context, b store.Batch) ([]store.OwnTotal, error) {
	if s.fail.Load() {
		return nil, errDisk
	}
	return s.Store.Apply(ctx, b)
}

// TestOnlineTabDeliversOfflineTabsWrites: two clients share a store and a
// node id (browser tabs of one profile). The offline one writes; the
// online one, told by Reload (as the IndexedDB change notice does),
// delivers the writes, also for a counter it has no handle for.
func TestOnlineTabDeliversOfflineTabsWrites(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	st := store.NewMemory()
	t.Cleanup(func() { st.Close() })
	opts := fastOptions(srv.url)
	opts.Store = st
	online, offline := newClient(t, opts), newClient(t, opts)
	waitReady(t, online)
	offline.SetOnline(false)
	mine := mustCounter(t, online, "tab-shared")
	mine.Increment()
	if err := mine.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mustCounter(t, offline, "tab-shared").AddAndGet(10)
	mustCounter(t, offline, "tab-only-offline").AddAndGet(6)
	if err := offline.Persist(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := online.Reload(ctxT(t), []string{"tab-shared", "tab-only-offline"}); err != nil {
		t.Fatal(err)
	}
	serverValue(t, srv.url, "tab-shared", 11)
	serverValue(t, srv.url, "tab-only-offline", 6)
	if err := online.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func testserverRefused(t *testing.T) string { return testserver.RefusedURL(t) }

// expiredToken is signed with the server's secret but expired an hour ago,
// beyond the server's leeway.
func expiredToken(t *testing.T) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "late",
		"exp": time.Now().Add(-time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
