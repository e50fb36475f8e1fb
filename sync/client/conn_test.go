//go:build !js

package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

const secret = "test-secret"

func token(t *testing.T, sub string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub,
		"exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtServer(t *testing.T) testServer {
	return startServer(t, func(c *server.Config) {
		c.NoAuth = false
		c.JWTSecret = secret
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	srv := jwtServer(t)

	t.Run("token", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions(srv.url)
		opts.Token = token(t, "alice")
		c := newClient(t, opts)
		waitReady(t, c)
		cnt := mustCounter(t, c, "auth")
		cnt.Increment()
		if err := cnt.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("token func", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions(srv.url)
		calls := 0
		var mu sync.Mutex
		opts.TokenFunc = func(ctx context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return token(t, "bob"), nil
		}
		c := newClient(t, opts)
		waitReady(t, c)
		mu.Lock()
		defer mu.Unlock()
		if calls != 1 {
			t.Fatalf("TokenFunc called %d times", calls)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions(srv.url)
		opts.Token = "not-a-jwt"
		c := newClient(t, opts)
		eventually(t, "auth failure reported", func() bool {
			return errors.Is(c.Err(), client.ErrAuthFailed)
		})
		var ae *client.AuthError
		if !errors.As(c.Err(), &ae) || ae.Message == "" {
			t.Fatalf("Err() = %#v, want *AuthError with a message", c.Err())
		}
		if c.State() == client.Ready {
			t.Fatal("ready with a bad token")
		}
	})
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, fastOptions(srv.url))
		eventually(t, "auth required reported", func() bool {
			return errors.Is(c.Err(), client.ErrAuthRequired)
		})
	})
	t.Run("token func error", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions(srv.url)
		boom := errors.New("no token today")
		opts.TokenFunc = func(context.Context) (string, error) { return "", boom }
		c := newClient(t, opts)
		eventually(t, "token error reported", func() bool { return errors.Is(c.Err(), boom) })
	})
}

func TestStates(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	c, err := client.New(fastOptions(px.url()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var states []client.State
	unsub := c.OnStateChange(func(s client.State) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	})
	if c.State() != client.Offline {
		t.Fatalf("initial state %v", c.State())
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c)
	px.Cut()
	eventually(t, "offline", func() bool { return c.State() == client.Offline })
	px.Restore()
	waitReady(t, c)
	c.Close()
	unsub()
	mu.Lock()
	defer mu.Unlock()
	want := []client.State{client.Connecting, client.Authenticating, client.Ready, client.Offline}
	for i, s := range want {
		if i >= len(states) || states[i] != s {
			t.Fatalf("states %v, want prefix %v", states, want)
		}
	}
	if states[len(states)-1] != client.Closed || states[len(states)-2] != client.Ready {
		t.Fatalf("states %v, want ... ready closed", states)
	}
	for _, s := range []client.State{client.Offline, client.Connecting, client.Authenticating, client.Ready, client.Closed} {
		if s.String() == "unknown" {
			t.Errorf("State %d has no name", s)
		}
	}
}

// TestHeartbeat: a server whose PONGs never arrive is dropped after
// PingTimeout and the client reconnects.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	rec := &recordingDialer{dropPongs: true}
	opts := fastOptions(srv.url)
	opts.Dialer = rec.dial
	opts.PingInterval = 10 * time.Millisecond
	opts.PingTimeout = 50 * time.Millisecond
	c := newClient(t, opts)
	var mu sync.Mutex
	readies := 0
	c.OnStateChange(func(s client.State) {
		if s == client.Ready {
			mu.Lock()
			readies++
			mu.Unlock()
		}
	})
	eventually(t, "dropped for missing PONGs and reconnected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return readies >= 2 && errors.Is(c.Err(), client.ErrHeartbeat) || readies >= 3
	})
	pings := 0
	for _, m := range rec.frames() {
		if p, ok := m.(wire.Ping); ok {
			pings++
			if p.Timestamp == 0 {
				t.Fatal("PING without timestamp")
			}
		}
	}
	if pings == 0 {
		t.Fatal("no PING sent")
	}
}

// TestHeartbeatHealthy: with PONGs arriving, short intervals never drop
// the connection.
func TestHeartbeatHealthy(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	rec := &recordingDialer{}
	opts := fastOptions(srv.url)
	opts.Dialer = rec.dial
	opts.PingInterval = 5 * time.Millisecond
	opts.PingTimeout = 5 * time.Second
	c := newClient(t, opts)
	waitReady(t, c)
	drops := 0
	var mu sync.Mutex
	c.OnStateChange(func(s client.State) {
		if s == client.Offline {
			mu.Lock()
			drops++
			mu.Unlock()
		}
	})
	eventually(t, "20 pings", func() bool {
		n := 0
		for _, m := range rec.frames() {
			if _, ok := m.(wire.Ping); ok {
				n++
			}
		}
		return n >= 20
	})
	mu.Lock()
	defer mu.Unlock()
	if drops != 0 || c.State() != client.Ready {
		t.Fatalf("dropped %d times with a healthy server", drops)
	}
}

func TestCloseIdempotent(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := readyClient(t, srv.url)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(t.Context()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("WaitReady after Close = %v", err)
	}
	if _, err := c.Counter("x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Counter after Close = %v", err)
	}
}

// hostileConn prepends hostile frames to what the server sends.
type hostileConn struct {
	transport.Conn
	mu     sync.Mutex
	frames [][]byte
}

func (h *hostileConn) Read(ctx context.Context) ([]byte, error) {
	h.mu.Lock()
	if len(h.frames) > 0 {
		b := h.frames[0]
		h.frames = h.frames[1:]
		h.mu.Unlock()
		return b, nil
	}
	h.mu.Unlock()
	return h.Conn.Read(ctx)
}

// TestHostileServerInput: garbage and unexpected messages from the server
// are logged and skipped, never fatal.
func TestHostileServerInput(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	enc := func(m wire.Message) []byte {
		b, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bad := func() [][]byte {
		return [][]byte{
			{0xc1},
			{},
			[]byte("not msgpack at all"),
			{0x81, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'F', 'O', 'O'},
			enc(wire.CounterUpdate{Name: "unknown", State: crdt.State{P: map[string]int64{"x": 1}}}),
			enc(wire.CounterUpdate{Name: "h", State: crdt.State{P: map[string]int64{"x": crdt.MaxSafe, "y": crdt.MaxSafe}}}),
			enc(wire.LockGranted{RequestID: "nobody", Name: "h", FencingToken: 7}),
			enc(wire.LockReleased{RequestID: "nobody", Name: "h"}),
			enc(wire.LockLost{Name: "h", FencingToken: 9}),
			enc(wire.LockLost{Name: "unknown", FencingToken: 9}),
			enc(wire.Batch{Count: 3, Data: []byte{1, 2}}),
			enc(wire.Batch{Count: 1, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0, 0xc1, 0xc1}}),
			enc(wire.Error{Code: 500, Message: "oops"}),
			enc(wire.AuthFail{Error: "late"}),
		}
	}
	opts := fastOptions(srv.url)
	opts.Dialer = func(ctx context.Context, url string) (transport.Conn, error) {
		c, err := transport.Dial(ctx, url)
		if err != nil {
			return nil, err
		}
		return &hostileConn{Conn: c, frames: bad()}, nil
	}
	// Counter "h" exists from the start, so the hostile update reaches it.
	st := store.NewMemory()
	defer st.Close()
	if _, err := st.Apply(t.Context(), store.Batch{Remote: map[string]crdt.State{"h": {P: map[string]int64{"z": 1}}}}); err != nil {
		t.Fatal(err)
	}
	opts.Store = st
	c := newClient(t, opts)
	waitReady(t, c)
	l := mustLock(t, c, "h")
	cnt := mustCounter(t, c, "h")
	cnt.AddAndGet(3)
	if err := cnt.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if cnt.Get() != 4 {
		t.Fatalf("value %d after hostile frames", cnt.Get())
	}
}

// TestRetryNow: with a long backoff, RetryNow reconnects at once once the
// network is back (the browser's "online" event).
func TestRetryNow(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := newProxy(t, srv.addr)
	p.Cut()
	opts := fastOptions(p.url())
	opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour
	c := newClient(t, opts)
	eventually(t, "offline", func() bool { return c.State() == client.Offline })
	p.Restore()
	c.RetryNow()
	waitReady(t, c)
}

// TestSetOnline: offline on purpose drops the connection (locks lost and
// freed), keeps counters working, and reconnects when back online.
func TestSetOnline(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := readyClient(t, srv.url)
	other := readyClient(t, srv.url)
	l := mustLock(t, c, "set-online")
	lost := make(chan string, 1)
	l.OnLost(func(r string) { lost <- r })
	if ok, err := l.Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	k := mustCounter(t, c, "set-online")
	c.SetOnline(false)
	if c.Online() {
		t.Fatal("Online() after SetOnline(false)")
	}
	if r := <-lost; r != client.LostDisconnected {
		t.Fatalf("lost reason %q", r)
	}
	eventually(t, "offline", func() bool { return c.State() == client.Offline })
	if !errors.Is(c.Err(), client.ErrOffline) {
		t.Fatalf("Err() = %v, want ErrOffline", c.Err())
	}
	// The server freed the lock with the connection.
	if ok, err := mustLock(t, other, "set-online").Acquire(ctxT(t), time.Minute, client.WithWait(30*time.Second)); !ok || err != nil {
		t.Fatalf("other Acquire = %v, %v", ok, err)
	}
	k.AddAndGet(7)
	if c.State() != client.Offline {
		t.Fatalf("state %v while offline", c.State())
	}
	c.SetOnline(true)
	waitReady(t, c)
	if err := k.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ok := mustCounter(t, other, "set-online")
	eventually(t, "other sees 7", func() bool { return ok.Get() == 7 })
}
