// Types of @topgun-go/react/store. Hand-kept: it mirrors react/src/store.js;
// the client types come from @topgun-go/client (js/src/index.d.ts).
import type { ConnectionState, TopGunClient } from '@topgun-go/client';

/** Error raised by @topgun-go/react, with a machine-readable code. */
export class TopGunReactError extends Error {
  /**
   * NO_PROVIDER: a hook was used outside <TopGunProvider>.
   * NOT_READY: a counter or lock was written before the client started.
   */
  readonly code: 'NO_PROVIDER' | 'NOT_READY' | string;
  constructor(code: string, message: string);
}

/** An external store, in the shape useSyncExternalStore takes. */
export interface ExternalStore<S> {
  /** Calls listener after every change of the snapshot; returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** The current snapshot: immutable, the same object until something changes. */
  getSnapshot(): S;
}

export interface ClientSnapshot {
  readonly state: ConnectionState;
  /** Whether client.start() has resolved. */
  readonly started: boolean;
  /**
   * Why start() failed or, once started, client.error: why the last
   * connection attempt failed (a TopGunError: AUTH_FAILED with the server's
   * reason, AUTH_REQUIRED, CONNECT_FAILED...); null while ready.
   */
  readonly error: Error | null;
}

export interface ClientStore extends ExternalStore<ClientSnapshot> {
  readonly client: TopGunClient;
  /** Calls client.start() once; a failure is kept in the snapshot and rejects; calling again retries. */
  start(): Promise<void>;
  /** Calls f once the client has started (at once if it has); returns a canceller. */
  whenStarted(f: () => void): () => void;
  readonly started: boolean;
}

export interface CounterSnapshot {
  /**
   * The local value: 0 before the client has started; while the stored
   * state is being read, this page's writes only.
   */
  readonly value: number;
  /**
   * True until the client has started and the counter's stored state has
   * been read from IndexedDB (PNCounter.loaded).
   */
  readonly loading: boolean;
  /** Whether the server has confirmed every local write (PNCounter.synced). */
  readonly synced: boolean;
}

export interface CounterStore extends ExternalStore<CounterSnapshot> {
  readonly name: string;
  /** Adds 1; returns the new value. Throws TopGunReactError NOT_READY before the client has started (writes while the stored state is read are kept). */
  increment(): number;
  /** Subtracts 1; returns the new value. Throws TopGunReactError NOT_READY before the client has started (writes while the stored state is read are kept). */
  decrement(): number;
  /** Adds delta (a safe integer; RangeError otherwise); returns the new value. */
  add(delta: number): number;
}

export type LockState = 'idle' | 'acquiring' | 'held' | 'lost' | 'error';

export interface LockSnapshot {
  /** Whether this client holds the lock. */
  readonly held: boolean;
  /** Token of the current grant, or null when not held. */
  readonly fencingToken: number | null;
  /**
   * 'idle' (not held; also after lock() resolved false: busy), 'acquiring'
   * (a lock() call is pending), 'held', 'lost' (an onLost notice came:
   * lostReason says why), 'error' (the last lock()/unlock() rejected).
   */
  readonly state: LockState;
  /** The rejection of the last lock()/unlock() when state is 'error'. */
  readonly error: Error | null;
  /** 'expired', 'disconnected', ... when state is 'lost'; else null. */
  readonly lostReason: string | null;
}

export interface LockStore extends ExternalStore<LockSnapshot> {
  readonly name: string;
  /** Lock.lock(ttlMs, options) of @topgun-go/client, tracked in the snapshot. */
  lock(ttlMs?: number, options?: { waitMs?: number }): Promise<boolean>;
  /** Lock.unlock(), tracked in the snapshot. */
  unlock(): Promise<void>;
}

/**
 * The store of a client's lifecycle, one per client. Subscribing to a
 * counter or lock store starts the client if nothing has.
 */
export function getClientStore(client: TopGunClient): ClientStore;
/** The store of a counter, one per client and name; attaches on the first subscribe. */
export function getCounterStore(client: TopGunClient, name: string): CounterStore;
export interface BoundedSnapshot {
  readonly value: number;
  readonly available: number;
  readonly loading: boolean;
  readonly synced: boolean;
}

export interface BoundedStore extends ExternalStore<BoundedSnapshot> {
  readonly name: string;
  readonly min: number;
  increment(n?: number): number;
  tryDecrement(n?: number): boolean;
  requestRights(n: number): Promise<number>;
}

/**
 * The store of a bounded counter, one per client and name (another min
 * throws BOUND_MISMATCH); attaches on the first subscribe.
 */
export function getBoundedStore(client: TopGunClient, name: string, min?: number): BoundedStore;
/** The store of a lock, one per client and name; attaches on the first subscribe. */
export function getLockStore(client: TopGunClient, name: string): LockStore;
