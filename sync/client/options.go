package client

import (
	"context"
	"time"

	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/transport"
)

// Options configure a Client. Only a server URL (URL or URLs) is required.
type Options struct {
	// URL of the server's WebSocket endpoint, ws(s)://host:port/ws.
	URL string
	// URLs are the endpoints of more servers sharing one storage (the nodes
	// of a cluster). The client uses one at a time, in the order URL, then
	// URLs, duplicates dropped, and moves to the next after every failed
	// attempt or lost connection, round-robin: when a node dies its clients
	// reconnect to another.
	URLs []string
	// Token is a JWT sent in AUTH on every connection. TokenFunc, if set,
	// is called instead before every connection attempt. With neither the
	// client sends DEVICE_HELLO (no-auth servers).
	Token     string
	TokenFunc func(ctx context.Context) (string, error)
	// Store persists the node id and counters. Default store.NewMemory(),
	// which Close closes; a Store passed here is not closed by Close.
	// The default keeps nothing across restarts: a native program that must
	// not lose offline writes when it stops passes a durable store, such as
	// filestore.Open (sync/store/filestore, one file on disk); browsers use
	// IndexedDB (idb.Open).
	Store store.Store
	// NodeID overrides the persisted node id (Store.NodeID). It must be
	// unique to this replica and its store: two live writers with one node
	// id and separate stores lose each other's increments.
	NodeID string
	// Dialer opens connections. Default transport.Dial.
	Dialer transport.Dialer
	// Logger receives diagnostics; a *slog.Logger satisfies it. Default:
	// discard.
	Logger Logger
	// PingInterval between PINGs once ready (default 5s); PingTimeout
	// without a PONG after which the connection is dropped (default 15s).
	PingInterval, PingTimeout time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay
	// min(MinBackoff·2^attempt, MaxBackoff) × uniform[0.5, 1.5).
	// Defaults 1s and 30s. With more than one URL, the first attempt after
	// a ready connection was lost goes to the next URL after only
	// MinBackoff × uniform[0, 0.5).
	MinBackoff, MaxBackoff time.Duration
	// SyncDelay debounces persistence and counter syncs after a local
	// write. Default 50ms.
	SyncDelay time.Duration
	// ConnectTimeout bounds one dial plus handshake. Default 5s.
	ConnectTimeout time.Duration
	// HelloTimeout is how long a client without a token waits for
	// DEVICE_ACK before it considers itself ready anyway. Default 500ms.
	HelloTimeout time.Duration
	// CloseTimeout is the grace period Close spends delivering local
	// writes the server has not confirmed: it persists them, connects at
	// once if it is between attempts, and waits for the server's
	// confirmation. Default 3s; negative: Close persists and returns
	// without waiting. Writes still undelivered then stay in the Store and
	// are sent on the next Start with it (Close reports them).
	CloseTimeout time.Duration
	// MaxStoredCounters caps the counters the Store keeps. When it holds
	// more, the least recently used ones (written, or asked for by Counter
	// or OpenCounter) that have no pending write and no handle in use
	// (handles released with Counter.Close are not in use) are deleted
	// from it; using one again reads it from the server (see "Unknown
	// base" in the package doc). Default DefaultMaxStoredCounters; 0 means
	// the default, negative never evicts. The worker evicts at Start and
	// after every MaxStoredCounters/10 counters written, so the store may
	// exceed the cap by about a tenth between evictions; pending records
	// and those of handles in use are never evicted, so it may also exceed
	// it while they wait for the server or stay in use.
	MaxStoredCounters int
}

// DefaultMaxStoredCounters is Options.MaxStoredCounters' default.
const DefaultMaxStoredCounters = 10000

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PingInterval, 5*time.Second)
	def(&o.PingTimeout, 15*time.Second)
	def(&o.MinBackoff, time.Second)
	def(&o.MaxBackoff, 30*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	def(&o.SyncDelay, 50*time.Millisecond)
	def(&o.ConnectTimeout, 5*time.Second)
	def(&o.HelloTimeout, 500*time.Millisecond)
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 3 * time.Second
	}
	if o.MaxStoredCounters == 0 {
		o.MaxStoredCounters = DefaultMaxStoredCounters
	}
	if o.Dialer == nil {
		o.Dialer = transport.Dial
	}
	if o.Logger == nil {
		o.Logger = discard{}
	}
}

// State is the connection state of a Client.
type State int

// Connection states. A client starts Offline, cycles Connecting →
// Authenticating → Ready, falls back to Offline when a connection fails or
// drops, and ends Closed.
const (
	Offline        State = iota // no connection; waiting to retry
	Connecting                  // dialing
	Authenticating              // handshake (AUTH or DEVICE_HELLO) in progress
	Ready                       // operational
	Closed                      // Close was called
)

func (s State) String() string {
	switch s {
	case Offline:
		return "offline"
	case Connecting:
		return "connecting"
	case Authenticating:
		return "authenticating"
	case Ready:
		return "ready"
	case Closed:
		return "closed"
	}
	return "unknown"
}

// Logger receives the engine's diagnostics as a message and key-value
// pairs. *slog.Logger satisfies it. The engine does not import log/slog
// itself: in the browser build it would add about 125 KB brotli.
type Logger interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

type discard struct{}

func (discard) Debug(string, ...any) {}
func (discard) Info(string, ...any)  {}
func (discard) Warn(string, ...any)  {}
func (discard) Error(string, ...any) {}
