// Types of @topgun-go/client. Hand-kept: it mirrors js/src/index.js and,
// through it, the Go side in wasm/main.go (the js.FuncOf API and the
// //go:wasmexport functions tg_*) and sync/client (the engine's semantics).
// Change them together.

/** Connection states of the engine (sync/client State.String()). */
export type ConnectionState = 'idle' | 'connecting' | 'authenticating' | 'ready' | 'offline' | 'closed';

/**
 * Every code a TopGunError carries (wasm/main.go errObject; docs/errors.md
 * says when each happens and what to do).
 */
export type TopGunErrorCode =
  // the client
  | 'CLOSED' // the client was closed
  | 'NOT_STARTED' // start() has not resolved
  | 'FATAL' // the Go runtime ended or crashed
  | 'WASM_LOAD' // topgun.wasm could not be fetched
  | 'STORAGE_UNAVAILABLE' // no usable IndexedDB: use MemoryAdapter
  | 'STORAGE_FAILED' // writing to local storage failed; kept in memory, retried
  | 'UNDELIVERED' // close() could not deliver writes (counters, kept)
  // the connection (client.error, 'error' events)
  | 'AUTH_FAILED' // the server refused the token (reason); retries stop until a new token
  | 'AUTH_REQUIRED' // the server wants a token and none is set; retries stop until one is
  | 'TOKEN_FAILED' // getToken threw or did not return a string
  | 'CONNECT_FAILED' // the server could not be reached
  | 'HANDSHAKE_TIMEOUT' // the server did not finish the handshake in time
  | 'HEARTBEAT_TIMEOUT' // the server stopped answering PINGs
  | 'DISCONNECTED' // the connection was lost (also: a lock request pending then)
  | 'OFFLINE' // setOnline(false)
  | 'SERVER_ERROR' // the server answered a frame with ERROR (status, reason)
  // lock denials
  | 'INVALID_TTL'
  | 'NOT_HOLDER'
  | 'RATE_LIMITED'
  | 'UNAVAILABLE'
  | 'TOO_MANY_LOCKS' // the connection holds or waits for the server's --max-locks
  | 'FORBIDDEN' // the token's topgun claim does not allow locking the name (docs/auth.md)
  // bounded counters
  | 'NOT_READY' // requestRights needs a ready connection
  | 'NOT_LOADED' // returnRights before the handle's `loaded`
  | 'BOUND_MISMATCH' // opened with another min than it has (here or on the server)
  | 'NO_REPLICA' // no bounded-replica identity could be taken for this tab
  | 'ERROR'; // anything else

/** Error with a machine-readable code (wasm/main.go errObject). */
export class TopGunError extends Error {
  readonly code: TopGunErrorCode;
  /** AUTH_FAILED, SERVER_ERROR: the server's words. */
  readonly reason?: string;
  /** SERVER_ERROR: the ERROR frame's code (400, 403 (also: a counter the token's topgun claim does not allow), 429, 500...). */
  readonly status?: number;
  /** UNDELIVERED: the counters whose writes the server has not confirmed. */
  readonly counters?: string[];
  /** UNDELIVERED: whether they are kept in storage (IDBAdapter) for the next start(). */
  readonly kept?: boolean;
  constructor(code: TopGunErrorCode, message: string, details?: object);
}

/** What close() resolves to. */
export interface CloseResult {
  /** True when the server confirmed every local write (or there were none). */
  delivered: boolean;
  /** Counters with writes the server has not confirmed. */
  undelivered: string[];
  /** UNDELIVERED (with counters and kept), or another failure; null if none. */
  error: TopGunError | Error | null;
}

/** Keeps counters in memory only (tests, Node programs, no IndexedDB). */
export class MemoryAdapter {
  readonly kind: 'memory';
  constructor();
}

/**
 * Persists counters to IndexedDB (idb/), one node id per browser profile,
 * shared by its tabs. Throws TopGunError STORAGE_UNAVAILABLE where
 * IndexedDB is missing: use MemoryAdapter there.
 */
export class IDBAdapter {
  readonly kind: 'idb';
  readonly name: string;
  constructor(options?: { name?: string });
}

export interface TopGunClientOptions {
  /**
   * ws:// or wss:// URL of a topgun-go (or TopGun) server, or a non-empty
   * array of them (the nodes of a cluster sharing one storage; duplicates
   * are dropped). Anything else throws TypeError. The client uses one URL at
   * a time, starting with the first, and fails over to the next, round-robin,
   * after a failed attempt or a lost connection: the first try after losing
   * a ready connection comes within half a second (jittered), later ones
   * back off (1 s doubling to 30 s, jittered).
   * Every counter resyncs on the new connection; held locks are lost
   * ('disconnected'), as on any disconnect (sync/client Options.URLs).
   */
  serverUrl: string | string[];
  /** Where counters persist. Default: MemoryAdapter. */
  storage?: IDBAdapter | MemoryAdapter;
  /** JWT sent in AUTH on every connection. */
  token?: string;
  /** Called before every connection attempt; returns a JWT. */
  getToken?: () => string | Promise<string>;
  /** Override the persisted node id (must be unique per replica and store). */
  nodeId?: string;
  /** Where to load the engine from. Default: topgun.wasm next to this module. */
  wasmURL?: string | URL;
  /** Debounce of counter syncs to the server, in ms (default 1: every tick). */
  syncDelayMs?: number;
  /**
   * How long close() tries to deliver writes the server has not confirmed,
   * in ms (default 3000; 0: persist and close at once).
   */
  closeTimeoutMs?: number;
  /**
   * How many counters IndexedDB keeps (default 10000; Infinity: no cap).
   * Beyond it the least recently used counters that hold no unconfirmed
   * write and have no handle in use (a disposed handle is not in use) are
   * deleted; using one again reads it from the server. Checked at start()
   * and after every tenth of the cap of counters written, so IndexedDB may
   * hold about a tenth more in between.
   */
  maxStoredCounters?: number;
  /** Log the engine's diagnostics to the console. */
  debug?: boolean;
}

export class TopGunClient extends EventTarget {
  constructor(options: TopGunClientOptions);
  /**
   * Loads the engine and local state and starts connecting. Does not wait for the network.
   * Rejects with TopGunError CLOSED after close().
   */
  start(): Promise<void>;
  /**
   * Delivers pending writes within closeTimeoutMs (connecting at once if
   * between attempts), then closes the connection (its locks are freed) and
   * storage. Never rejects, whatever the connection is doing; what it could
   * not deliver is in the result (and an 'error' event), and with IDBAdapter
   * stays in IndexedDB for the next start().
   */
  close(): Promise<CloseResult>;
  readonly state: ConnectionState;
  /**
   * Why the last connection attempt or connection failed, or null while
   * ready (and before any failure). After AUTH_FAILED or AUTH_REQUIRED the
   * client stops retrying until setToken(), or retryNow() with getToken.
   */
  readonly error: TopGunError | null;
  /**
   * Calls cb with every new state and client.error at that moment; also
   * dispatched as a 'statechange' CustomEvent (detail: state, error).
   */
  onStateChange(cb: (state: ConnectionState, error: TopGunError | null) => void): () => void;
  /**
   * Calls cb with every error the client reports (failed attempts, lost
   * connections, auth failures, STORAGE_FAILED, SERVER_ERROR, UNDELIVERED);
   * also dispatched as an 'error' CustomEvent (detail: the error).
   */
  onError(cb: (error: TopGunError) => void): () => void;
  /** Replaces the token from the next attempt on; after an auth failure, connects at once. */
  setToken(token: string): void;
  /** Reconnects now instead of after the backoff; after an auth failure, calls getToken again. */
  retryNow(): void;
  /**
   * The server URL in use: the one connected or connecting to, or, between
   * attempts, the one dialled next (sync/client Client.URL). The first of
   * serverUrl before start(); the last one used after close().
   */
  readonly url: string;
  /** This replica's node id (still readable after close()). */
  readonly nodeId: string;
  /**
   * setOnline(false) takes the client offline on purpose: the connection is
   * closed (held locks are lost with 'disconnected' and freed by the server)
   * and not redialled; counters keep working and persisting. setOnline(true)
   * reconnects at once.
   */
  setOnline(online: boolean): void;
  /** False after setOnline(false). */
  readonly online: boolean;
  /**
   * The same handle for every call with one name. Throws TypeError for an
   * invalid name. start() reads only counters with unconfirmed writes; any
   * other stored counter is read from IndexedDB when first asked for here,
   * in the background: await `counter.loaded` before trusting get().
   */
  getPNCounter(name: string): PNCounter;
  /**
   * The bounded counter named name (value never below min; min defaults to
   * 0). The same handle for every call with one name; another min throws
   * TopGunError BOUND_MISMATCH, an invalid name TypeError, a min that is
   * not a safe integer RangeError. Its replica is loaded in the
   * background: await `counter.loaded`.
   */
  getBoundedCounter(name: string, options?: { min?: number }): BoundedCounter;
  /**
   * The node id this tab's bounded counters run as (its bounded-replica
   * identity, `<nodeId>:r<k>` with IDBAdapter and Web Locks), or null before
   * the first getBoundedCounter started them.
   */
  readonly replicaId: string | null;
  /** The same handle for every call with one name. Throws TypeError for an invalid name. */
  getLock(name: string): Lock;
}

/**
 * A bounded counter (sync/client BoundedCounter; wasm/bounded.go): its value
 * never goes below min in any replica, even offline. Amounts are positive
 * safe integers (RangeError otherwise).
 */
export class BoundedCounter {
  readonly name: string;
  readonly min: number;
  /** Resolves once this tab's replica of the counter is loaded; rejects if it could not start. */
  readonly loaded: Promise<void>;
  /** True until `loaded` settles. */
  readonly loading: boolean;
  /** The value as this replica knows it; never below min (min plus local increments while loading). */
  get(): number;
  /** Rights held by this tab: how much tryDecrement may take away here, online or offline. */
  available(): number;
  /** Adds n (default 1); returns the new value. The new rights go to the server, for everyone. */
  increment(n?: number): number;
  /**
   * Takes n (default 1) away if this tab holds n rights; synchronous, works
   * offline, false when the rights are not here (or while loading).
   */
  tryDecrement(n?: number): boolean;
  /** Asks the server for n rights; resolves with how many it granted (0..n). Rejects NOT_READY when not connected. */
  requestRights(n: number): Promise<number>;
  /** Hands n held rights back to the server. RangeError beyond available(). */
  returnRights(n: number): void;
  /** Whether the server has confirmed every change made here. */
  readonly synced: boolean;
  /** Calls cb(value) now and after every local or remote change (available or synced changing alone too). */
  subscribe(cb: (value: number) => void): () => void;
  /** Resolves once every change made here is stored in IndexedDB (they are sent only after that). */
  flush(): Promise<void>;
  /** Stores what was changed here, then releases the handle; the rights stay with this tab. */
  dispose(): Promise<void>;
}

/** A replicated PN-Counter (sync/client Counter). */
export class PNCounter {
  readonly name: string;
  /**
   * Resolves once the stored state has been read from IndexedDB (at once for
   * counters start() loaded). Until then get() counts only this page's
   * writes and server states that arrived; writes made meanwhile are kept
   * and counted on top of the stored value, and subscribers are called
   * when it arrives.
   */
  readonly loaded: Promise<void>;
  /** True until `loaded` resolves. */
  readonly loading: boolean;
  /** The local value; no network (see `loaded`). */
  get(): number;
  /** Adds 1; returns the new value synchronously. */
  increment(): number;
  /** Subtracts 1; returns the new value synchronously. */
  decrement(): number;
  /**
   * Adds delta and returns the new value synchronously. Throws RangeError
   * (and changes nothing) for a non-integer, NaN, ±Infinity or unsafe delta,
   * or when the result would leave the safe integer range.
   */
  addAndGet(delta: number): number;
  /** Calls cb at once with the value, then after every local and remote change. */
  subscribe(cb: (value: number) => void): () => void;
  /** Whether the server has confirmed every local write. */
  readonly synced: boolean;
  /**
   * Calls cb at once with `synced`, then whenever it changes (false after a
   * local write, true once the server has confirmed every local write).
   */
  onSyncedChange(cb: (synced: boolean) => void): () => void;
  /** Sends local writes now; resolves once the server has stored them. */
  flush(): Promise<void>;
  /**
   * Releases the handle (sync/client Counter.Close): once its writes are
   * delivered the server stops sending its changes and reconnects skip it;
   * get() keeps the last known value. Writes are never dropped. Using the
   * handle again takes it back and it catches up.
   */
  dispose(): void;
}

/** Options of Lock.lock() (sync/client WithWait, KeepAlive). */
export interface LockOptions {
  /** How long the request may queue behind the holder, in ms (default 0: denied at once). */
  waitMs?: number;
  /** Renew the lease every ttlMs/3 until unlock() (default false). */
  keepAlive?: boolean;
}

/** A named lease with a fencing token (sync/client Lock). */
export class Lock {
  readonly name: string;
  /**
   * Resolves true when granted (again by the holder: lease renewed, token
   * kept), false when another client holds the lock (at once, or after
   * waitMs). Rejects with TopGunError for other denials (FORBIDDEN: the
   * token does not allow the name). keepAlive renews the lease every
   * ttlMs/3 until unlock(); a page that stops (a frozen tab, a lost
   * connection) still loses it one TTL after the last renewal, and onLost
   * says so.
   */
  lock(ttlMs?: number, options?: LockOptions): Promise<boolean>;
  /** Releases the lock; a no-op when not held. */
  unlock(): Promise<void>;
  /** Whether this client holds the lock. */
  isLocked(): boolean;
  /** Token of the current grant (strictly increasing per grant), or null. */
  readonly fencingToken: number | null;
  /**
   * Calls cb when a held lock is lost: 'expired' (TTL), 'disconnected', 'released' (by the same user
   * through another connection), 'revoked' (an operator force-released it), 'unavailable' (cluster mode:
   * the node lost its etcd lease) or 'forbidden' (a keepAlive renewal the token no longer allows; the lease
   * was given back).
   */
  onLost(cb: (reason: 'expired' | 'disconnected' | 'released' | 'revoked' | 'unavailable' | 'forbidden' | string) => void): () => void;
}
