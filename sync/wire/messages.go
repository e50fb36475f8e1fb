package wire

import "github.com/topgun-go/topgun/crdt"

// Message types as they appear in the "type" key.
const (
	TypeAuthRequired    = "AUTH_REQUIRED"
	TypeAuth            = "AUTH"
	TypeAuthAck         = "AUTH_ACK"
	TypeAuthFail        = "AUTH_FAIL"
	TypeDeviceHello     = "DEVICE_HELLO"
	TypeDeviceAck       = "DEVICE_ACK"
	TypePing            = "PING"
	TypePong            = "PONG"
	TypeError           = "ERROR"
	TypeBatch           = "BATCH"
	TypeCounterRequest  = "COUNTER_REQUEST"
	TypeCounterResponse = "COUNTER_RESPONSE"
	TypeCounterSync     = "COUNTER_SYNC"
	TypeCounterUpdate   = "COUNTER_UPDATE"
	TypeLockRequest     = "LOCK_REQUEST"
	TypeLockGranted     = "LOCK_GRANTED"
	TypeLockRelease     = "LOCK_RELEASE"
	TypeLockReleased    = "LOCK_RELEASED"
	TypeLockLost        = "LOCK_LOST"
	// TypeCounterUnsubscribe is a topgun-go extension: a client that no
	// longer needs a counter's updates says so.
	TypeCounterUnsubscribe = "COUNTER_UNSUBSCRIBE"
)

// Lock denial and loss reasons (LOCK_RELEASED.reason, LOCK_LOST.reason).
const (
	ReasonBusy        = "busy"
	ReasonInvalidName = "invalid_name"
	ReasonInvalidTTL  = "invalid_ttl"
	ReasonNotHolder   = "not_holder"
	ReasonTimeout     = "timeout"
	ReasonRateLimited = "rate_limited"
	ReasonUnavailable = "unavailable" // server could not persist a fencing token
	ReasonTooMany     = "too_many"    // the connection holds or waits for too many locks
	ReasonExpired     = "expired"     // LOCK_LOST: the lease ran out
	ReasonReleased    = "released"    // LOCK_LOST: released on the holder's behalf
	ReasonRevoked     = "revoked"     // LOCK_LOST: an operator freed it (admin API)
	// ReasonForbidden: the token's per-name permissions (docs/auth.md) do
	// not allow locking the name.
	ReasonForbidden = "forbidden"
)

// Message is one protocol message. The concrete types below are the only
// implementations.
type Message interface {
	// Type returns the value of the "type" key.
	Type() string
	wrapped() bool
}

// AuthRequired is sent by a JWT-mode server right after the upgrade.
type AuthRequired struct{}

// Auth carries the client's JWT.
type Auth struct {
	Token           string
	ProtocolVersion uint32 // 0: absent
	DeviceToken     string
	// NodeID and Views negotiate compact counter views (a topgun-go
	// extension, "" when absent): the replica's node id and ViewsCompact.
	NodeID string
	Views  string
}

// AuthAck accepts an Auth (or, in no-auth mode, answers it anyway).
type AuthAck struct {
	UserID          string
	DeviceID        string
	DeviceToken     string
	ProtocolVersion uint32 // 0: absent; only seen in upstream fixtures
	// Views is ViewsCompact when the server will send compact views.
	Views string
}

// AuthFail rejects an Auth; the server closes the connection after it.
type AuthFail struct {
	Error string
	Code  uint32 // 0: absent
}

// DeviceHello opens a session without a token. NodeID and Views are as
// in Auth.
type DeviceHello struct{ DeviceToken, NodeID, Views string }

// DeviceAck answers DeviceHello; Views as in AuthAck.
type DeviceAck struct{ DeviceID, DeviceToken, Views string }

// Compact counter views, a topgun-go extension. A client that sends
// Views: ViewsCompact and its NodeID in AUTH or DEVICE_HELLO, and whose
// server answers Views: ViewsCompact, receives every counter state as a
// view: its own node's entries plus, under RestNode on each side, the sum
// of every other node's entries. RestNode is not a valid node id, so a
// view's aggregate can never be merged back as a node's entry.
const (
	ViewsCompact = "compact"
	RestNode     = "*"
)

// Ping is the client's heartbeat; Timestamp is the client's clock in ms.
type Ping struct{ Timestamp uint64 }

// Pong echoes Ping.Timestamp and adds the server clock in ms.
type Pong struct{ Timestamp, ServerTime uint64 }

// Error reports a problem with a frame or the connection.
type Error struct {
	Code    uint32
	Message string
	// Details is optional and decoded loosely (see Decode). Encode accepts
	// nil, bool, every Go int, uint and float type, string, []byte, []any
	// and map[string]any (keys sorted), nested at most MaxDepth-2 deep.
	Details any
}

// Batch carries several messages in Data (see SplitBatch).
type Batch struct {
	Count uint32
	Data  []byte
}

// CounterRequest subscribes to a counter and asks for its state.
type CounterRequest struct{ Name string }

// CounterUnsubscribe ends the connection's subscription to a counter (a
// topgun-go extension; sent only to servers that acknowledged compact
// views). The server answers nothing.
type CounterUnsubscribe struct{ Name string }

// CounterResponse answers CounterRequest with the full state.
type CounterResponse struct {
	Name  string
	State crdt.State
}

// CounterSync sends entries to merge (a full state or a delta).
type CounterSync struct {
	Name  string
	State crdt.State
}

// CounterUpdate carries merged entries from the server (full or delta).
type CounterUpdate struct {
	Name  string
	State crdt.State
}

// LockRequest asks for a lease on Name.
type LockRequest struct {
	RequestID string
	Name      string
	// TTL is the lease in ms; nil means the server default. 0 is invalid.
	TTL *uint64
	// Wait is how long (ms) the request may queue behind a holder; 0 means
	// deny at once when busy. Extension.
	Wait uint64
}

// LockGranted grants a lease.
type LockGranted struct {
	RequestID    string
	Name         string
	FencingToken uint64
	TTL          uint64 // granted lease in ms; 0: absent. Extension.
}

// LockRelease gives a lease back.
type LockRelease struct {
	RequestID    string // optional
	Name         string
	FencingToken uint64
}

// LockReleased answers LockRelease, and denies a LockRequest with
// Success false and a Reason.
type LockReleased struct {
	RequestID string
	Name      string
	Success   bool
	Reason    string // extension; empty on success
}

// LockLost tells a holder that its lease ended without its release.
// Extension.
type LockLost struct {
	Name         string
	FencingToken uint64
	Reason       string
}

func (AuthRequired) Type() string       { return TypeAuthRequired }
func (Auth) Type() string               { return TypeAuth }
func (AuthAck) Type() string            { return TypeAuthAck }
func (AuthFail) Type() string           { return TypeAuthFail }
func (DeviceHello) Type() string        { return TypeDeviceHello }
func (DeviceAck) Type() string          { return TypeDeviceAck }
func (Ping) Type() string               { return TypePing }
func (Pong) Type() string               { return TypePong }
func (Error) Type() string              { return TypeError }
func (Batch) Type() string              { return TypeBatch }
func (CounterRequest) Type() string     { return TypeCounterRequest }
func (CounterUnsubscribe) Type() string { return TypeCounterUnsubscribe }
func (CounterResponse) Type() string    { return TypeCounterResponse }
func (CounterSync) Type() string        { return TypeCounterSync }
func (CounterUpdate) Type() string      { return TypeCounterUpdate }
func (LockRequest) Type() string        { return TypeLockRequest }
func (LockGranted) Type() string        { return TypeLockGranted }
func (LockRelease) Type() string        { return TypeLockRelease }
func (LockReleased) Type() string       { return TypeLockReleased }
func (LockLost) Type() string           { return TypeLockLost }

func (AuthRequired) wrapped() bool       { return false }
func (Auth) wrapped() bool               { return false }
func (AuthAck) wrapped() bool            { return false }
func (AuthFail) wrapped() bool           { return false }
func (DeviceHello) wrapped() bool        { return false }
func (DeviceAck) wrapped() bool          { return false }
func (Ping) wrapped() bool               { return false }
func (Pong) wrapped() bool               { return false }
func (Batch) wrapped() bool              { return false }
func (Error) wrapped() bool              { return true }
func (CounterRequest) wrapped() bool     { return true }
func (CounterUnsubscribe) wrapped() bool { return true }
func (CounterResponse) wrapped() bool    { return true }
func (CounterSync) wrapped() bool        { return true }
func (CounterUpdate) wrapped() bool      { return true }
func (LockRequest) wrapped() bool        { return true }
func (LockGranted) wrapped() bool        { return true }
func (LockRelease) wrapped() bool        { return true }
func (LockReleased) wrapped() bool       { return true }
func (LockLost) wrapped() bool           { return true }
