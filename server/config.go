package server

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/server/storage"
)

// Config configures a Server. The zero value of every field but Store,
// JWTSecret and NoAuth is replaced by a default.
type Config struct {
	// Store holds counters, node owners and the fencing sequence. Required.
	Store storage.Store

	// JWTSecret is the HS256 secret, or an RSA public key in PEM form
	// (RS256). Literal "\n" sequences are turned into newlines. Either it or
	// NoAuth must be set.
	JWTSecret string
	// NoAuth accepts every connection without a token.
	NoAuth bool

	// DefaultLockTTL is the lease of a LOCK_REQUEST without ttl (30 s).
	DefaultLockTTL time.Duration
	// MaxLockTTL is the longest lease and the longest wait (1 h).
	MaxLockTTL time.Duration

	// AllowedOrigins are WebSocket Origin host patterns (path.Match syntax,
	// matched case-insensitively against the Origin's host; the server's
	// own host and requests without Origin always pass, see checkOrigin).
	// Empty accepts every origin: browser apps authenticate with a token
	// in AUTH, not cookies.
	AllowedOrigins []string

	// RateLimit is the sustained frames per second per connection (20 000)
	// and RateBurst the burst (40 000).
	RateLimit float64
	RateBurst int

	// MaxOutbox bounds, in bytes, what may wait to be written to one
	// connection (8 MiB). At the bound the server stops reading the
	// connection's frames; past twice the bound (fan-out to a client that
	// does not read) it closes the connection with 1008 "slow consumer".
	MaxOutbox int
	// MaxSyncNodes is the most node ids one COUNTER_SYNC may carry (1000;
	// topgun-go clients send one). More is refused with ERROR 413.
	MaxSyncNodes int
	// MaxSubscriptions is the most counters one connection may subscribe
	// to (10 000). More is refused with ERROR 413.
	MaxSubscriptions int
	// MaxBounded is the most bounded counters one connection may use
	// (1000). More is refused with ERROR 413.
	MaxBounded int
	// BoundedGrantMax caps the rights one BCOUNTER_RIGHTS is granted
	// (1000): a replica asks again for more, so one greedy replica cannot
	// drain the broker in one request.
	BoundedGrantMax int64
	// MaxLocks is the most locks one connection may hold or wait for
	// (1024). More is denied with reason "too_many".
	MaxLocks int

	// StoreTimeout bounds one store request made for a client: a counter's
	// load, write or ownership claim (30 s). A write that fails or times
	// out is answered with ERROR 500 and the client sends it again, so the
	// bound is how long one counter's acknowledgements can stall behind a
	// store that does not answer (cmd/topgun-server sets it to
	// --etcd-request-timeout in cluster mode: an etcd leader election).
	StoreTimeout time.Duration

	// AuthTimeout bounds the time from connect to AUTH in JWT mode (10 s).
	AuthTimeout time.Duration
	// TokenLeeway is the clock skew allowed when checking a token's exp and
	// nbf (60 s). A connection is closed (1008 "token expired") when its
	// token's exp plus TokenLeeway passes, the moment a new AUTH with it
	// would be refused.
	TokenLeeway time.Duration
	// IdleTimeout closes a connection that sent nothing for this long (60 s).
	IdleTimeout time.Duration

	// AdminToken is the bearer token of the admin API (docs/admin.md),
	// compared in constant time. A JWT verified like a connection's and
	// carrying the claim "topgun_admin": true (AdminClaim) is accepted
	// too. With NoAuth and no AdminToken the admin API answers loopback
	// clients only.
	AdminToken string
	// AdminListMax is the most locks one GET /v1/locks returns (1000).
	AdminListMax int

	// Static, if set, serves plain HTTP requests to paths other than
	// /healthz (the demo page); WebSocket upgrades on / and /ws always reach
	// the protocol.
	Static http.Handler

	// Locks opens the lock service the server hands LOCK_REQUEST and
	// LOCK_RELEASE to, with the lock options above (DefaultLockTTL,
	// MaxLockTTL, MaxLocks) and Logger. Nil is locks.Memory(Store): the
	// locks of one node, with fencing tokens reserved from Store. A node of
	// a cluster gets etcdlocks.Backend (cmd/topgun-server builds it with
	// --etcd), with Store an etcdstore on the same etcd cluster, whose
	// counter watches carry writes made through other nodes to this node's
	// clients. The server closes the service it opened at Shutdown, after
	// every connection is gone.
	Locks locks.Backend

	// Metrics is the registry the server's metrics are registered on, with
	// Go runtime and process metrics (nil: a registry of its own). The
	// embedding program may register more on it (cmd/topgun-server adds
	// etcd request latency).
	Metrics *prometheus.Registry
	// SeparateMetrics leaves /metrics out of Handler: the program serves
	// MetricsHandler on a listener of its own (--metrics-addr).
	SeparateMetrics bool

	// Logger receives structured logs (slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("server: Config.Store is required")
	}
	if c.JWTSecret == "" && !c.NoAuth {
		return errors.New("server: no JWT secret: set --jwt-secret (JWT_SECRET) or run with --no-auth (TOPGUN_NO_AUTH=1)")
	}
	if c.DefaultLockTTL <= 0 {
		c.DefaultLockTTL = 30 * time.Second
	}
	if c.MaxLockTTL <= 0 {
		c.MaxLockTTL = time.Hour
	}
	if c.DefaultLockTTL > c.MaxLockTTL {
		return errors.New("server: default lock ttl exceeds the maximum")
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 30 * time.Second
	}
	if c.RateLimit <= 0 {
		c.RateLimit = 20000
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 40000
	}
	if c.MaxOutbox <= 0 {
		c.MaxOutbox = 8 << 20
	}
	if c.MaxSyncNodes <= 0 {
		c.MaxSyncNodes = 1000
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 10000
	}
	if c.MaxBounded <= 0 {
		c.MaxBounded = 1000
	}
	if c.BoundedGrantMax <= 0 {
		c.BoundedGrantMax = 1000
	}
	if c.MaxLocks <= 0 {
		c.MaxLocks = 1024
	}
	if c.AdminListMax <= 0 {
		c.AdminListMax = 1000
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = 10 * time.Second
	}
	if c.TokenLeeway <= 0 {
		c.TokenLeeway = 60 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
