package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// Server serves the protocol over WebSocket on / and /ws, and GET /healthz.
type Server struct {
	cfg      Config
	log      *slog.Logger
	verifier *verifier
	counters *counterHub
	bounded  *boundedHub
	writers  *writerPool
	metrics  *metrics
	// slowRounds counts pool rounds the socket could not take at once
	// (handed to a writer goroutine).
	slowRounds atomic.Int64
	locks      locks.Service
	http       *http.Server

	nextID  atomic.Uint64
	mu      sync.Mutex
	conns   map[*conn]struct{}
	closed  bool
	wg      sync.WaitGroup // connection and async goroutines
	stop    chan struct{}
	stopped sync.Once
}

// New validates cfg and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		conns: make(map[*conn]struct{}),
		stop:  make(chan struct{}),
	}
	s.metrics = newMetrics(cfg.Metrics, s)
	s.cfg.Store = timeStore(cfg.Store, s.metrics)
	if !cfg.NoAuth {
		v, err := newVerifier(cfg.JWTSecret, cfg.TokenLeeway)
		if err != nil {
			return nil, err
		}
		s.verifier = v
	}
	s.counters = newCounterHub(s)
	s.bounded = newBoundedHub(s, cfg.Store) // it times the bounded methods itself
	s.writers = newWriterPool(poolSize())
	backend := cfg.Locks
	if backend == nil {
		backend = locks.Memory(s.cfg.Store)
	}
	ls, err := backend(locks.Options{
		DefaultTTL: cfg.DefaultLockTTL,
		MaxTTL:     cfg.MaxLockTTL,
		MaxLocks:   cfg.MaxLocks,
		Logger:     cfg.Logger,
	})
	if err != nil {
		s.counters.close()
		s.bounded.close()
		s.writers.close()
		return nil, err
	}
	s.locks = ls
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	go s.reap()
	return s, nil
}

// Handler returns the HTTP handler: WebSocket upgrades on / and /ws,
// GET /healthz, the admin API under /v1/ (admin.go), and Config.Static
// (or a short text page) for the rest.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "connections": n})
	})
	if !s.cfg.SeparateMetrics {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	s.adminRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path == "/" || r.URL.Path == "/ws") && isUpgrade(r) {
			s.serveWS(w, r)
			return
		}
		if s.cfg.Static != nil {
			s.cfg.Static.ServeHTTP(w, r)
			return
		}
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("topgun-go server: connect a WebSocket client to /ws\n"))
	})
	return mux
}

// MetricsHandler serves the server's metrics in the Prometheus text
// format (docs/metrics.md). Handler serves it at /metrics unless
// Config.SeparateMetrics is set.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler() }

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops accepting, closes every connection (their locks are freed)
// and waits for the server's goroutines. WebSocket connections get a
// close frame (1001); plain HTTP connections are closed at once, a request
// being served or a connection that has not sent one yet (a browser's
// preconnect) alike. It does not close Config.Store.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Shutdown is Close that lets plain HTTP requests finish until ctx ends;
// it then closes what is left as Close does and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopped.Do(func() { close(s.stop) })
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.cancel()
	}
	s.mu.Unlock()
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	s.wg.Wait()
	s.writers.close()
	s.locks.Close()
	s.counters.close()
	s.bounded.close()
	return err
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	wc, err := acceptWS(w, r, s.cfg.AllowedOrigins, wire.MaxFrameSize)
	if err != nil {
		s.log.Debug("accept", "err", err, "origin", r.Header.Get("Origin"))
		return
	}
	c := newConn(s, wc, s.nextID.Add(1))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = wc.Close(ws.StatusGoingAway, "server shutting down")
		c.cancel()
		wc.CloseNow()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.metrics.connsOpened.Inc()
	if s.cfg.NoAuth {
		s.metrics.connsOpen.Inc()
	} else {
		s.metrics.connsAuth.Inc()
	}
	c.log.Debug("connection opened", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
	// The reader runs in a goroutine of its own so that this handler
	// returns: net/http's request, its buffers and the handler's deep
	// stack are not kept for the life of the connection.
	go s.serveConn(c)
}

// serveConn runs c's reader, then frees what the connection held and
// closes it.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	c.run()
	c.stopExpiry()

	s.locks.Disconnect(c)
	c.forgetWaits()
	s.counters.unsubscribeAll(c)
	s.bounded.unsubscribeAll(c)
	c.closeAfterFlush()
	select {
	case <-c.wrote:
	case <-time.After(writeTimeout):
	}
	code, reason := ws.StatusNormalClosure, ""
	if s.isClosed() {
		code, reason = ws.StatusGoingAway, "server shutting down"
	}
	// A close handshake, unless the connection is ending anyway (server
	// shutdown, a failed write): the peer has read everything once it
	// answers, and a socket closed with unread input is reset, which can
	// lose what the peer has not read yet.
	handshake := c.ctx.Err() == nil
	_ = c.ws.Close(code, reason) // nothing if a close frame was sent already
	if handshake {
		c.ws.Linger()
	}
	c.cancel()
	c.ws.CloseNow()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if s.cfg.NoAuth || c.user != "" {
		s.metrics.connsOpen.Dec()
	} else {
		s.metrics.connsAuth.Dec()
	}
	sent := c.ws.closeCode()
	s.metrics.closed(int(sent))
	c.log.Debug("connection closed", "code", int(sent), "peer_closed", c.ws.closeRecv, "cause", c.readErr,
		"duration", time.Since(c.opened).Round(time.Millisecond))
}

// isClosed reports whether Close or Shutdown was called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// reap closes connections that sent nothing for IdleTimeout. It looks
// every IdleTimeout/10 (at most every second), and closePolicy frees a
// connection's locks before its close handshake, so an idle holder loses
// its locks at most a tenth of the timeout (or a second) late, even when
// the peer never answers the close.
func (s *Server) reap() {
	period := min(s.cfg.IdleTimeout/10, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var idle []*conn
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			limit := now.Add(-s.cfg.IdleTimeout).UnixNano()
			s.mu.Lock()
			for c := range s.conns {
				if c.lastSeen.Load() < limit && !c.policyClosing.Load() {
					idle = append(idle, c)
				}
			}
			s.mu.Unlock()
			for _, c := range idle {
				// s.log, not c.log, which the reader sets during the handshake.
				s.log.Info("closing idle connection", "conn", c.id, "idle", s.cfg.IdleTimeout)
				c.closePolicy("idle: nothing received for " + s.cfg.IdleTimeout.String())
			}
			clear(idle)
			idle = idle[:0]
		}
	}
}

// authReason names the cause of a JWT failure without echoing the token.
func authReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks a required claim (exp)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid signature"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable token (algorithm not accepted)"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token not valid yet"
	case errors.Is(err, errNoSubject):
		return "token has no sub"
	case errors.Is(err, errClaim):
		return err.Error() // names the claim's fault, never its patterns' owner
	}
	return "invalid token"
}
