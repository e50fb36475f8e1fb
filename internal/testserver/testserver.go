// Package testserver runs the real server in-process on 127.0.0.1 for the
// tests of other packages (the server's own tests use its internals).
package testserver

import (
	"net"
	"sync"
	"testing"

	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage"
)

// Server is a server started by StartServer.
type Server struct {
	// Addr is the listen address (host:port).
	Addr string
	// URL is the WebSocket endpoint, "ws://"+Addr+"/ws".
	URL string

	t     testing.TB
	srv   *server.Server
	done  chan error // Serve's result
	close sync.Once
}

// Start serves cfg on a free 127.0.0.1 port until the test ends and
// returns the listen address (host:port; the WebSocket URL is
// "ws://"+addr+"/ws"). A nil cfg.Store is an in-memory store; without a JWT
// secret the server runs in no-auth mode.
func Start(t testing.TB, cfg server.Config) (addr string) {
	t.Helper()
	return StartServer(t, cfg).Addr
}

// StartServer is Start for tests that stop the server before they end
// (a node of a cluster dying): Close stops it early. Servers given one
// cfg.Store share their counters and fencing tokens, as the nodes of a
// cluster do; the store is not closed with them.
func StartServer(t testing.TB, cfg server.Config) *Server {
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
	s := &Server{
		Addr: ln.Addr().String(),
		t:    t,
		srv:  srv,
		done: make(chan error, 1),
	}
	s.URL = "ws://" + s.Addr + "/ws"
	go func() { s.done <- srv.Serve(ln) }()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server: it stops listening (dials to Addr are refused)
// and closes every connection, whose locks it frees. It waits for the
// server's goroutines and reports errors to the test. Calls after the first
// do nothing; the test's cleanup calls it too.
func (s *Server) Close() {
	s.close.Do(func() {
		if err := s.srv.Close(); err != nil {
			s.t.Errorf("server Close: %v", err)
		}
		if err := <-s.done; err != nil {
			s.t.Errorf("server Serve: %v", err)
		}
	})
}

// RefusedURL returns a ws:// URL on 127.0.0.1 where nothing listens: the
// port of a listener just closed.
func RefusedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "ws://" + addr + "/ws"
}
