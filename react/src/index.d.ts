// Types of @topgun-go/react. Hand-kept: it mirrors react/src/index.js; the
// store types are in store.d.ts, the client's in @topgun-go/client.
import type { ReactNode } from 'react';
import type { ConnectionState, TopGunClient } from '@topgun-go/client';
import type { LockState } from './store.js';

export { TopGunReactError } from './store.js';
export type { LockState, CounterSnapshot, LockSnapshot, BoundedSnapshot } from './store.js';

export interface TopGunProviderProps {
  /**
   * The client the hooks below use. The provider calls client.start() once
   * after its first render (start() is shared, so starting it yourself as
   * well is harmless) and never closes it: the app owns the client.
   * null renders every hook in its loading state without touching
   * IndexedDB or the network: for server-side rendering (Next.js...) and
   * until the app has created its client in the browser.
   */
  client: TopGunClient | null;
  children?: ReactNode;
  /** Rendered instead of children until the client has started. Default: children at once (hooks report loading). */
  fallback?: ReactNode;
}

export function TopGunProvider(props: TopGunProviderProps): ReactNode;

/**
 * The provider's client. Outside a <TopGunProvider> this (and every hook
 * below) throws TopGunReactError NO_PROVIDER with the fix in the message.
 */
export function useClient(): TopGunClient | null;

export interface ClientStatus {
  /** The client's connection state ('idle' until started). */
  state: ConnectionState;
  /** True until client.start() has resolved. */
  loading: boolean;
  /** Why start() failed (e.g. TopGunError WASM_LOAD), or null. */
  error: Error | null;
}

/** The provider's client: connection state, loading, start error. */
export function useClientStatus(): ClientStatus;

export interface PNCounterResult {
  /**
   * The local value: 0 before the client has started; while the stored
   * state is being read, this page's writes only.
   */
  value: number;
  /**
   * True until the client has started and the counter's stored state has
   * been read from IndexedDB (PNCounter.loaded).
   */
  loading: boolean;
  /** Whether the server has confirmed every local write. */
  synced: boolean;
  /** Adds 1; returns the new value. Throws TopGunReactError NOT_READY before the client has started (writes while the stored state is read are kept). Stable. */
  increment: () => number;
  /** Subtracts 1; returns the new value. Throws TopGunReactError NOT_READY before the client has started (writes while the stored state is read are kept). Stable. */
  decrement: () => number;
  /** Adds delta (a safe integer; RangeError otherwise); returns the new value. Stable. */
  add: (delta: number) => number;
}

/**
 * The PN-Counter name, re-rendering on every local and remote change.
 * Throws TypeError (from the client) for an invalid name once started.
 */
export function usePNCounter(name: string): PNCounterResult;

export interface BoundedCounterResult {
  /** The value as this tab knows it, never below min; min while loading. */
  value: number;
  /** Rights this tab holds: how much tryDecrement may take away here. */
  available: number;
  /** True until the client has started and the counter's replica is loaded. */
  loading: boolean;
  /** Whether the server has confirmed every change made here. */
  synced: boolean;
  /** Adds n (default 1); returns the new value. Throws NOT_READY before the client has started. Stable. */
  increment: (n?: number) => number;
  /** Takes n (default 1) away if this tab holds the rights, offline too; synchronous. Stable. */
  tryDecrement: (n?: number) => boolean;
  /** Asks the server for n rights; resolves with how many it granted. Stable. */
  requestRights: (n: number) => Promise<number>;
}

/**
 * The bounded counter name (options.min, default 0: its value never goes
 * below it), re-rendering on local and remote changes and when available
 * or synced change.
 */
export function useBoundedCounter(name: string, options?: { min?: number }): BoundedCounterResult;

export interface UseLockOptions {
  /** The lease lock() asks for when called without ttlMs. Default: the client's (10000 ms). */
  ttlMs?: number;
}

export interface LockResult {
  /** Whether this client holds the lock. */
  held: boolean;
  /** Token of the current grant, or null when not held. */
  fencingToken: number | null;
  /** 'idle' | 'acquiring' | 'held' | 'lost' | 'error'. */
  state: LockState;
  /** The rejection of the last lock()/unlock() when state is 'error'. */
  error: Error | null;
  /** Why the lock was lost ('expired', 'disconnected') when state is 'lost'. */
  lostReason: string | null;
  /**
   * Lock.lock() of the client: resolves true when granted (or renewed),
   * false when another client holds it; rejects (and state becomes
   * 'error') for other denials. Stable while options.ttlMs is.
   */
  lock: (ttlMs?: number, options?: { waitMs?: number; keepAlive?: boolean }) => Promise<boolean>;
  /** Releases the lock (a no-op when not held). Stable. */
  unlock: () => Promise<void>;
}

/** The lock name, with its state as React state. */
export function useLock(name: string, options?: UseLockOptions): LockResult;
