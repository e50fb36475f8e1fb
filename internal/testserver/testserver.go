// Package testserver runs the real server in-process on 127.0.0.1 for the
// tests of other packages (the server's own tests use its internals).
package testserver

import (
	"net"
	"testing"

	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage"
)

// Start serves cfg on a free 127.0.0.1 port until the test ends and
// returns the listen address (host:port; the WebSocket URL is
// "ws://"+addr+"/ws"). A nil cfg.Store is an in-memory store; without a JWT
// secret the server runs in no-auth mode.
func Start(t testing.TB, cfg server.Config) (addr string) {
	t.Helper()
	if cfg.Store == nil {
		st := storage.NewMemory()
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	if cfg.JWTSecret == "" {
		cfg.NoAuth = true
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("server Serve: %v", err)
		}
	})
	return ln.Addr().String()
}
