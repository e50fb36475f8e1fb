// Package client is topgun-go's client engine: offline-first PN-Counters and
// named distributed locks over TopGun's wire protocol.
//
//	c, err := client.New(client.Options{URL: "ws://localhost:8080/ws"})
//	if err := c.Start(ctx); err != nil { ... } // loads local state; no network wait
//	defer c.Close()
//	likes, _ := c.Counter("post:42:likes")
//	likes.Increment()                    // local, returns at once
//	stop := likes.Subscribe(func(v int64) { render(v) })
//	lk, _ := c.Lock("jobs/nightly")
//	ok, err := lk.Acquire(ctx, 30*time.Second, client.WithWait(5*time.Second))
//
// # Connection
//
// Start loads the node id (created once and persisted by the Store) and the
// stored counters with unconfirmed writes, then connects in the background. Each attempt dials the
// current server URL (URL reports it) and sends AUTH with Options.Token or TokenFunc's token (ready on
// AUTH_ACK), or, without a token, DEVICE_HELLO (ready on DEVICE_ACK, on any
// other message but AUTH_REQUIRED, or after HelloTimeout). State and
// OnStateChange report Connecting, Authenticating, Ready, Offline and Closed;
// Err says why the last attempt failed (an *AuthError after AUTH_FAIL,
// ErrAuthRequired when a server wants a token the client does not have),
// and OnError reports every error as it happens. After AUTH_FAIL or
// AUTH_REQUIRED the client does not retry with the same token: it waits for
// SetToken, RetryNow, or a TokenFunc that returns another token (polled
// with the backoff).
// Once ready the client PINGs every PingInterval and drops the connection
// when no PONG came for PingTimeout. Failed or dropped connections are retried
// after min(MinBackoff·2^attempt, MaxBackoff) × uniform[0.5, 1.5); the attempt
// count resets whenever a connection becomes ready.
//
// # Several servers
//
// Options.URL and Options.URLs list the servers, for instance the nodes of a
// cluster sharing one storage; the client uses one at a time, in that order,
// duplicates dropped. After every failed attempt (dial, handshake) and every
// lost connection it moves on to the next URL, round-robin, before it reports
// Offline; going offline with SetOnline(false) keeps the URL. When a ready
// connection is lost the next URL is tried after only MinBackoff ×
// uniform[0, 0.5), not a full backoff, so the clients of a node that died move
// to another node promptly, jittered so they do not arrive all at once;
// attempts after that back off as above. The new connection is like any other:
// every counter resyncs on ready, and locks held on the old one are lost
// (OnLost with LostDisconnected), since a lease belongs to its connection.
//
// # Counters
//
// Client.Counter returns one *Counter per name. Get, Increment, Decrement and
// AddAndGet act on the local replica and return at once; Subscribe calls
// back at once with the value and after every local or remote change of it;
// OnSynced likewise with Synced(). Local writes are
// persisted and synced in the background: after SyncDelay one worker round
// applies every pending change in ONE Store.Apply (own writes as deltas, other
// nodes' entries by max), then sends COUNTER_SYNC with this replica's own
// entries, and only entries already in the store, so the server never knows
// more of this replica than its store does. On every transition to ready
// the client sends, for every counter it holds, COUNTER_SYNC with its own
// entries, or COUNTER_REQUEST if it has none: offline writes reach the server,
// the connection is subscribed again, and a handle created offline loads the
// server's state. States from the server merge by max.
// Synced reports whether the server has confirmed all local writes; Flush
// sends at once and waits for that. Persist writes pending changes to the
// store at once (a program about to act on a write calls it).
//
// # What a client costs
//
// A client's cost follows the counters it uses now, not every counter it
// ever touched. The store remembers the server's confirmation of each
// counter's own entries (under the pseudo-node "=", never sent) and indexes
// the records with writes above it (Store.Pending). Start reads only those:
// they are delivered, then released (see Counter.Close). Every other stored
// counter costs nothing, on the wire or in memory, until a handle asks for
// it: Client.Counter reads its record (Store.Load) before it returns, so Get
// is the stored value at once; Client.OpenCounter returns at once and reads
// it in the background (Counter.Loaded; the browser build, whose calls
// cannot wait for IndexedDB, uses it), counting writes made meanwhile on top.
// Either way the handle subscribes and catches up within a round trip.
//
// Options.MaxStoredCounters caps the store (default 10,000): beyond it the
// worker evicts the least recently used records (Store.Evict) that hold no
// pending write and whose counter has no handle in use. Records of compact
// views keep O(1) entries: individual entries of other nodes, from before
// the aggregate, are folded into it when the record is next written.
//
// # Unknown base
//
// A node's own entries only grow, and the server merges them by maximum. A
// client that has no record of a counter (evicted, or another replica's
// store) does not know its node's entries on the server, its base: an
// absolute entry written from zero would be merged away. So until the
// base is known its writes are relative: stored as unbased amounts (they
// survive restarts and reloads), shown on top of what is known, never sent.
// The base is known once the store has a based record of the counter, or
// once the server's full state (COUNTER_RESPONSE to the subscription, which
// is a COUNTER_REQUEST while the base is unknown) has arrived: its entries of
// this node, absent meaning zero. The next round then writes the own entries
// with the base as floor, and the store moves the unbased amounts on top in
// the same transaction, once, whichever tab does it; only then are they
// sent. Until then Synced is false. A base known in memory goes stale if
// the record is evicted after it was learnt (another tab may have written
// more meanwhile): the store then refuses the write as based (see the
// generation in sync/store) and the client asks the server again. This
// relies on the server's full state being current for this node: in
// cluster mode a node reads the counter from etcd before it answers a
// subscription, so a node whose watch lags does not give a base too low.
//
// # Shutdown
//
// Close means delivered or reported: it refuses new writes, persists, and
// within Options.CloseTimeout tries to deliver what the server has not
// confirmed (connecting at once if it is between attempts), whatever the
// connection is doing. What remains is returned as an *UndeliveredError and
// stays in the Store for the next Start; so a program whose offline writes
// must survive a restart passes a durable Store (sync/store/filestore).
//
// A node id must belong to one replica with one store. Two live clients that
// share a node id but not their store overwrite each other's increments on the
// server (per-node entries merge by max).
//
// # Locks
//
// Client.Lock returns one *Lock per name. Acquire waits for a ready
// connection, sends LOCK_REQUEST and reports (true, nil) when granted,
// (false, nil) when another client holds the lock (also after a WithWait
// wait ran out) and an error otherwise (a *LockError with the
// server's reason, ErrDisconnected, the context's error). Requests are
// correlated by requestId. A lease belongs to the connection: when it drops,
// pending Acquires fail with ErrDisconnected and held locks are lost;
// OnLost callbacks then fire with LostDisconnected, or with the reason of
// the server's LOCK_LOST: LostExpired, LostReleased (released by the same
// user through another connection) or LostUnavailable (cluster mode: the
// node lost its etcd lease). Unlock sends LOCK_RELEASE with the fencing token
// and clears the handle whatever the answer. With KeepAlive, the client
// renews the lease every third of its TTL until Unlock; a lease that ends
// anyway is reported through OnLost (LostForbidden when the token's
// permissions no longer allow it). A name the token's topgun claim does
// not allow is denied with a *LockError matching ErrForbidden.
//
// # Errors and callbacks
//
// Errors carry the "client: " prefix and wrap the package's sentinels. Frames
// the client cannot decode or does not expect are logged and dropped, never
// fatal. Callbacks (OnStateChange, Subscribe, OnLost) run without the
// client's locks held and may call back into the client, but must not block
// for long: remote changes are delivered from the connection's goroutine.
//
// # Wasm
//
// The package builds with GOOS=js GOARCH=wasm unchanged: it needs only
// goroutines, timers and the Store and transport.Dialer interfaces, whose
// browser implementations (IndexedDB, browser WebSocket) plug in through
// Options.
package client
