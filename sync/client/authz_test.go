//go:build !js

package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/wire"
)

// tokenWith signs a token for sub that expires after ttl and carries
// claims besides.
func tokenWith(t *testing.T, sub string, ttl time.Duration, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestForbiddenByPermissions: a token's topgun claim limits the names it
// may use; a forbidden lock is a *LockError matching ErrForbidden, a
// forbidden counter write an OnError *ServerError 403 matching it too,
// while allowed names work as before.
func TestForbiddenByPermissions(t *testing.T) {
	t.Parallel()
	srv := jwtServer(t)
	opts := fastOptions(srv.url)
	opts.Token = tokenWith(t, "alice", time.Hour, jwt.MapClaims{"topgun": map[string]any{
		"write": []string{"likes:*"}, "lock": []string{"job:*"}}})
	c := newClient(t, opts)
	errs := make(chan error, 16)
	c.OnError(func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	waitReady(t, c)

	ok, err := mustLock(t, c, "other").Acquire(ctxT(t), time.Minute)
	var le *client.LockError
	if ok || !errors.Is(err, client.ErrForbidden) || !errors.As(err, &le) || le.Reason != wire.ReasonForbidden {
		t.Fatalf("forbidden Acquire = %v, %v", ok, err)
	}
	if ok, err := mustLock(t, c, "job:1").Acquire(ctxT(t), time.Minute); !ok || err != nil {
		t.Fatalf("allowed Acquire = %v, %v", ok, err)
	}

	allowed := mustCounter(t, c, "likes:1")
	allowed.Increment()
	if err := allowed.Flush(ctxT(t)); err != nil {
		t.Fatalf("allowed counter: %v", err)
	}
	mustCounter(t, c, "secret").Increment()
	select {
	case err := <-errs:
		var se *client.ServerError
		if !errors.Is(err, client.ErrForbidden) || !errors.As(err, &se) || se.Code != 403 {
			t.Fatalf("OnError %v, want a 403 matching ErrForbidden", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no error reported for a forbidden counter")
	}
}

// TestTokenExpiryReconnects: the server closes a connection whose token
// expires; a client with a TokenFunc gets a new token and goes on, one
// with a fixed token stops at ErrAuthFailed without retrying.
func TestTokenExpiryReconnects(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.NoAuth = false
		c.JWTSecret = secret
		c.TokenLeeway = time.Millisecond
	})

	t.Run("token func", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions(srv.url)
		var calls atomic.Int32
		opts.TokenFunc = func(context.Context) (string, error) {
			calls.Add(1)
			return tokenWith(t, "alice", 2*time.Second, nil), nil
		}
		c := newClient(t, opts)
		waitReady(t, c)
		var drops atomic.Int32
		c.OnStateChange(func(s client.State) {
			if s != client.Ready {
				drops.Add(1)
			}
		})
		eventually(t, "a reconnect with a fresh token", func() bool {
			return drops.Load() > 0 && c.State() == client.Ready && calls.Load() >= 2
		})
		cnt := mustCounter(t, c, "after-refresh")
		cnt.Increment()
		if err := cnt.Flush(ctxT(t)); err != nil {
			t.Fatalf("write after the refresh: %v", err)
		}
	})
	t.Run("fixed token", func(t *testing.T) {
		t.Parallel()
		d := &recordingDialer{}
		opts := fastOptions(srv.url)
		opts.Dialer = d.dial
		opts.Token = tokenWith(t, "bob", 2*time.Second, nil)
		c := newClient(t, opts)
		waitReady(t, c)
		eventually(t, "the expired token refused", func() bool { return errors.Is(c.Err(), client.ErrAuthFailed) })
		auths := func() (n int) {
			for _, m := range d.frames() {
				if _, ok := m.(wire.Auth); ok {
					n++
				}
			}
			return n
		}
		n := auths()
		if n != 2 {
			t.Errorf("%d AUTH frames, want 2: the first connection and one refused retry", n)
		}
		// No retry storm: nothing more is sent for many backoff periods
		// (fastOptions' longest is 200 ms).
		time.Sleep(time.Second)
		if m := auths(); m != n || c.State() == client.Ready {
			t.Errorf("%d AUTH frames after the refusal, state %v: the client retried a refused token", m-n, c.State())
		}
	})
}
