// @topgun-go/react: React hooks over the stores in store.js, each one a
// useSyncExternalStore call. The API is written down in index.d.ts.
//
// The provider starts the client: it calls client.start() once (start() is
// shared between callers, so an app that starts the client itself loses
// nothing), and the hooks report loading until it has resolved.

import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useSyncExternalStore } from 'react';
import { TopGunReactError, getBoundedStore, getClientStore, getCounterStore, getLockStore } from './store.js';

export { TopGunReactError } from './store.js';

const ClientContext = createContext(null);
ClientContext.displayName = 'TopGunClient';

function useClientStore(hook) {
  const store = useContext(ClientContext);
  if (!store) {
    throw new TopGunReactError(
      'NO_PROVIDER',
      `${hook} must be used inside <TopGunProvider client={...}>; wrap your app: ` +
        'const client = new TopGunClient({ serverUrl: "ws://host:8080" }); ' +
        'root.render(<TopGunProvider client={client}><App /></TopGunProvider>)',
    );
  }
  return store;
}

function useStore(store) {
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

// The stores of a provider whose client is null: server-side rendering, or
// before the app has made its client in the browser. Everything is loading;
// nothing touches IndexedDB or the network.
const noop = () => () => {};
function notReady(what) {
  return () => {
    throw new TopGunReactError(
      'NOT_READY',
      `${what}() without a client: <TopGunProvider client={null}> renders loading state only ` +
        '(server-side rendering); create the client in the browser',
    );
  };
}
const NULL_CLIENT = Object.freeze({ state: 'idle', started: false, error: null });
const NULL_COUNTER = Object.freeze({ value: 0, loading: true, synced: false });
const NULL_LOCK = Object.freeze({ held: false, fencingToken: null, state: 'idle', error: null, lostReason: null });
const nullClientStore = Object.freeze({
  client: null,
  subscribe: noop,
  getSnapshot: () => NULL_CLIENT,
  start: () => Promise.resolve(),
  whenStarted: noop,
  started: false,
});
const nullCounterStore = Object.freeze({
  subscribe: noop,
  getSnapshot: () => NULL_COUNTER,
  increment: notReady('increment'),
  decrement: notReady('decrement'),
  add: notReady('add'),
});
const nullBoundedStore = (min) => {
  const snap = Object.freeze({ value: min, available: 0, loading: true, synced: false });
  return Object.freeze({
    subscribe: noop,
    getSnapshot: () => snap,
    increment: notReady('increment'),
    tryDecrement: () => false,
    requestRights: () =>
      Promise.reject(new TopGunReactError('NOT_READY', 'requestRights() without a client (server-side rendering)')),
  });
};
const nullLockStore = Object.freeze({
  subscribe: noop,
  getSnapshot: () => NULL_LOCK,
  lock: () => Promise.reject(new TopGunReactError('NOT_READY', 'lock() without a client (server-side rendering)')),
  unlock: () => Promise.reject(new TopGunReactError('NOT_READY', 'unlock() without a client (server-side rendering)')),
});

/**
 * TopGunProvider makes client available to the hooks below it and starts
 * it (once) after the first render. With a fallback it renders that, not
 * children, until the client has started.
 */
export function TopGunProvider({ client, children, fallback }) {
  const store = client === null ? nullClientStore : getClientStore(client);
  useEffect(() => {
    // A failure is kept for useClientStatus().error.
    store.start().catch(() => {});
  }, [store]);
  const { started } = useStore(store);
  const body = fallback !== undefined && !started ? fallback : children;
  return createElement(ClientContext.Provider, { value: store }, body);
}

/** useClient returns the provider's TopGunClient. */
export function useClient() {
  return useClientStore('useClient').client;
}

/** useClientStatus returns {state, loading, error} of the provider's client. */
export function useClientStatus() {
  const snap = useStore(useClientStore('useClientStatus'));
  return useMemo(() => ({ state: snap.state, loading: !snap.started, error: snap.error }), [snap]);
}

/**
 * usePNCounter returns {value, loading, synced, increment, decrement, add}
 * for the counter name; the functions keep their identity across renders.
 */
export function usePNCounter(name) {
  const cs = useClientStore('usePNCounter');
  const store = cs.client === null ? nullCounterStore : getCounterStore(cs.client, name);
  const snap = useStore(store);
  return useMemo(
    () => ({
      value: snap.value,
      loading: snap.loading,
      synced: snap.synced,
      increment: store.increment,
      decrement: store.decrement,
      add: store.add,
    }),
    [snap, store],
  );
}

/**
 * useBoundedCounter returns {value, available, loading, synced, increment,
 * tryDecrement, requestRights} for the bounded counter name (options.min,
 * default 0); the functions keep their identity across renders.
 * tryDecrement(n) is synchronous: true when this tab held the rights.
 */
export function useBoundedCounter(name, options) {
  const cs = useClientStore('useBoundedCounter');
  const min = options?.min ?? 0;
  const store = useMemo(
    () => (cs.client === null ? nullBoundedStore(min) : getBoundedStore(cs.client, name, min)),
    [cs, name, min],
  );
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return useMemo(
    () => ({
      value: snap.value,
      available: snap.available,
      loading: snap.loading,
      synced: snap.synced,
      increment: store.increment,
      tryDecrement: store.tryDecrement,
      requestRights: store.requestRights,
    }),
    [snap, store],
  );
}

/**
 * useLock returns {held, fencingToken, state, error, lostReason, lock,
 * unlock} for the lock name. options.ttlMs is the lease lock() asks for
 * when called without one.
 */
export function useLock(name, options) {
  const cs = useClientStore('useLock');
  const store = cs.client === null ? nullLockStore : getLockStore(cs.client, name);
  const snap = useStore(store);
  const defTTL = options?.ttlMs;
  const lock = useCallback((ttlMs, opts) => store.lock(ttlMs ?? defTTL, opts), [store, defTTL]);
  return useMemo(
    () => ({
      held: snap.held,
      fencingToken: snap.fencingToken,
      state: snap.state,
      error: snap.error,
      lostReason: snap.lostReason,
      lock,
      unlock: store.unlock,
    }),
    [snap, store, lock],
  );
}
