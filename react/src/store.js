// @topgun-go/react/store: external stores over a TopGunClient, with no
// React in them (the zustand vanilla/react split). The hooks in index.js
// are thin useSyncExternalStore wrappers over these; other view layers can
// use them directly.
//
// Every store has subscribe(listener) → unsubscribe and getSnapshot() →
// an immutable object that keeps its identity until something changes, as
// useSyncExternalStore requires. Stores are cached per client (and name),
// so components that use the same counter share one store. They attach to
// the client lazily, on the first subscribe, and detach when the last
// listener leaves, so creating one during render has no side effects.

/** Error raised by @topgun-go/react, with a machine-readable code. */
export class TopGunReactError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'TopGunReactError';
    this.code = code;
  }
}

function checkClient(client, who) {
  if (
    !client ||
    typeof client.start !== 'function' ||
    typeof client.getPNCounter !== 'function' ||
    typeof client.onStateChange !== 'function'
  ) {
    throw new TypeError(`${who}: expected a TopGunClient from @topgun-go/client, got ${String(client)}`);
  }
}

// A tiny listener set.
function listeners() {
  const set = new Set();
  return {
    add(l) {
      set.add(l);
      return () => set.delete(l);
    },
    emit() {
      for (const l of [...set]) l();
    },
    get size() {
      return set.size;
    },
  };
}

// ---- client ------------------------------------------------------------------

const clientStores = new WeakMap();

/**
 * The store of a client's lifecycle: {state, started, error}. started turns
 * true once client.start() has resolved (or at once for a client that was
 * already started); error holds the reason start() failed or, once started,
 * client.error: why the last connection attempt failed (AUTH_FAILED with the
 * server's reason, AUTH_REQUIRED, CONNECT_FAILED...), null while ready.
 */
export function getClientStore(client) {
  checkClient(client, 'getClientStore');
  let s = clientStores.get(client);
  if (!s) {
    s = createClientStore(client);
    clientStores.set(client, s);
  }
  return s;
}

function createClientStore(client) {
  const ls = listeners();
  // The engine never reports 'idle': any other state means start() has
  // created it (or the client is closed).
  let started = client.state !== 'idle' && client.state !== 'closed';
  let startError = null;
  let starting = null;
  let snap = Object.freeze({ state: client.state, started, error: startError ?? client.error ?? null });
  let off = null;

  function read() {
    const state = client.state;
    const error = startError ?? client.error ?? null;
    if (state !== snap.state || started !== snap.started || error !== snap.error) {
      snap = Object.freeze({ state, started, error });
    }
    return snap;
  }
  // emitted is the last snapshot listeners were told about: getSnapshot
  // may see a change first, and they must still hear of it.
  let emitted = snap;
  function changed() {
    if (read() !== emitted) {
      emitted = snap;
      ls.emit();
    }
  }

  return {
    client,
    getSnapshot: read,
    subscribe(listener) {
      if (ls.size === 0) emitted = read();
      const un = ls.add(listener);
      if (!off) off = client.onStateChange(changed);
      return () => {
        un();
        if (ls.size === 0 && off) {
          off();
          off = null;
        }
      };
    },
    /**
     * Calls client.start() (the client shares one start between callers, so
     * this is safe when the app has started it too). Resolves when started;
     * a failure is kept in the snapshot's error and rejects. Calling it again
     * after a failure retries.
     */
    start() {
      if (started) return Promise.resolve();
      starting ??= client.start().then(
        () => {
          started = true;
          startError = null;
          changed();
        },
        (e) => {
          starting = null;
          startError = e instanceof Error ? e : new Error(String(e));
          changed();
          throw startError;
        },
      );
      return starting;
    },
    /** Calls f once the client has started (now, if it has); returns a canceller. */
    whenStarted(f) {
      if (started) {
        f();
        return () => {};
      }
      let done = false;
      const un = ls.add(() => {
        if (!done && started) {
          done = true;
          un();
          f();
        }
      });
      return () => {
        done = true;
        un();
      };
    },
    get started() {
      return started;
    },
  };
}

// startQuietly starts the client for a store that got a subscriber; a
// failure is kept in the client store's snapshot (useClientStatus().error).
function startQuietly(cs) {
  if (!cs.started) cs.start().catch(() => {});
}

// attachHandle starts the client if needed and, once it has started,
// subscribes to the handle (subscribe returns an unsubscribe function) and
// to the client's state changes. It returns the function that undoes all
// of it.
function attachHandle(cs, client, subscribe, refresh) {
  let offHandle = null;
  let offState = null;
  const cancel = cs.whenStarted(() => {
    try {
      offHandle = subscribe();
    } catch {
      return; // closed meanwhile, or an invalid name: render reports it
    }
    offState = client.onStateChange(refresh);
  });
  startQuietly(cs);
  return () => {
    cancel();
    offHandle?.();
    offState?.();
  };
}

function perName(cache, client, name, create) {
  let m = cache.get(client);
  if (!m) {
    m = new Map();
    cache.set(client, m);
  }
  let s = m.get(name);
  if (!s) {
    s = create();
    m.set(name, s);
  }
  return s;
}

// ---- counters ----------------------------------------------------------------

const counterStores = new WeakMap();

/**
 * The store of the PN-Counter name: snapshots {value, loading, synced}.
 * loading is true until the client has started and the counter's stored
 * state has been read (PNCounter.loaded); value is 0 before the client
 * has started, and this page's writes only until then; the snapshot
 * follows the counter's subscribe (value) and onSyncedChange (synced)
 * events: nothing polls.
 */
export function getCounterStore(client, name) {
  checkClient(client, 'getCounterStore');
  return perName(counterStores, client, name, () => createCounterStore(client, name));
}

const LOADING_COUNTER = Object.freeze({ value: 0, loading: true, synced: false });

function createCounterStore(client, name) {
  const cs = getClientStore(client);
  const ls = listeners();
  let snap = LOADING_COUNTER;
  let handle = null;
  let detach = null;

  // counter returns the handle once the client has started. It throws
  // TypeError for an invalid name, during render, where it belongs.
  function counter() {
    if (!handle && cs.started) handle = client.getPNCounter(name);
    return handle;
  }

  function read() {
    const h = counter();
    if (!h) return snap; // loading
    const value = h.get();
    const synced = h.synced;
    const loading = h.loading;
    if (loading !== snap.loading || value !== snap.value || synced !== snap.synced) {
      snap = Object.freeze({ value, loading, synced });
    }
    return snap;
  }

  // emitted is the last snapshot listeners were told about: getSnapshot
  // may see a change first, and they must still hear of it.
  let emitted = snap;
  function refresh() {
    if (read() !== emitted) {
      emitted = snap;
      ls.emit();
    }
  }

  function attach() {
    detach = attachHandle(
      cs,
      client,
      () => {
        const h = counter();
        const offValue = h.subscribe(refresh);
        const offSynced = h.onSyncedChange(refresh);
        if (h.loading) h.loaded.then(refresh, refresh);
        return () => {
          offValue();
          offSynced();
        };
      },
      refresh,
    );
  }

  function need(op) {
    const h = counter();
    if (!h) {
      throw new TopGunReactError(
        'NOT_READY',
        `counter ${name}: ${op}() before the client has started; wait until loading is false`,
      );
    }
    return h;
  }

  return {
    name,
    getSnapshot: read,
    subscribe(listener) {
      if (ls.size === 0) emitted = read(); // no one to tell
      const un = ls.add(listener);
      if (!detach) attach();
      refresh();
      return () => {
        un();
        if (ls.size === 0) {
          detach?.();
          detach = null;
          // Nobody shows it: the client stops receiving its changes (its
          // writes are still delivered); the next subscriber takes it back.
          try {
            handle?.dispose();
          } catch {
            // closed client: nothing to release
          }
        }
      };
    },
    /** Adds 1; returns the new value. */
    increment: () => need('increment').increment(),
    /** Subtracts 1; returns the new value. */
    decrement: () => need('decrement').decrement(),
    /** Adds delta (a safe integer); returns the new value. */
    add: (delta) => need('add').addAndGet(delta),
  };
}

// ---- bounded counters ----------------------------------------------------------

const boundedStores = new WeakMap();

/**
 * The store of the bounded counter name with bound min: snapshots {value,
 * available, loading, synced}. loading is true until the client has
 * started and the counter's replica is loaded (BoundedCounter.loaded);
 * value is min until then. The snapshot follows the counter's subscribe,
 * which fires on local and remote changes and when available or synced
 * change: nothing polls. The handle is kept when the last subscriber
 * leaves (its rights stay with this tab either way).
 */
export function getBoundedStore(client, name, min = 0) {
  checkClient(client, 'getBoundedStore');
  if (!Number.isSafeInteger(min)) throw new RangeError(`bounded counter ${name}: min must be a safe integer, got ${min}`);
  const s = perName(boundedStores, client, name, () => createBoundedStore(client, name, min));
  if (s.min !== min) {
    throw new TopGunReactError('BOUND_MISMATCH', `bounded counter ${name} is used with min ${s.min}, not ${min}`);
  }
  return s;
}

function createBoundedStore(client, name, min) {
  const cs = getClientStore(client);
  const ls = listeners();
  let snap = Object.freeze({ value: min, available: 0, loading: true, synced: false });
  let handle = null;
  let detach = null;

  function counter() {
    if (!handle && cs.started) handle = client.getBoundedCounter(name, { min });
    return handle;
  }

  function read() {
    const h = counter();
    if (!h) return snap;
    const value = h.get();
    const available = h.available();
    const synced = h.synced;
    const loading = h.loading;
    if (loading !== snap.loading || value !== snap.value || synced !== snap.synced || available !== snap.available) {
      snap = Object.freeze({ value, available, loading, synced });
    }
    return snap;
  }

  let emitted = snap;
  function refresh() {
    if (read() !== emitted) {
      emitted = snap;
      ls.emit();
    }
  }

  function attach() {
    detach = attachHandle(
      cs,
      client,
      () => {
        const h = counter();
        const off = h.subscribe(refresh);
        if (h.loading) h.loaded.then(refresh, refresh);
        return off;
      },
      refresh,
    );
  }

  function need(op) {
    const h = counter();
    if (!h) {
      throw new TopGunReactError(
        'NOT_READY',
        `bounded counter ${name}: ${op}() before the client has started; wait until loading is false`,
      );
    }
    return h;
  }

  return {
    name,
    min,
    getSnapshot: read,
    subscribe(listener) {
      if (ls.size === 0) emitted = read();
      const un = ls.add(listener);
      if (!detach) attach();
      refresh();
      return () => {
        un();
        if (ls.size === 0) {
          detach?.();
          detach = null;
          // Nobody shows it: the tab stops receiving its changes and the
          // connection's --max-bounded slot is freed (its rights stay with
          // the tab's replica); the next subscriber opens it again.
          const h = handle;
          handle = null;
          h?.dispose().catch(() => {});
        }
      };
    },
    /** Adds n (default 1); returns the new value. */
    increment: (n) => need('increment').increment(n),
    /** Takes n (default 1) away if this tab holds the rights; false before the client has started. */
    tryDecrement: (n) => {
      const h = counter();
      return h ? h.tryDecrement(n) : false;
    },
    /** Asks the server for n rights; resolves with how many were granted. */
    requestRights: (n) => {
      try {
        return need('requestRights').requestRights(n);
      } catch (e) {
        return Promise.reject(e);
      }
    },
  };
}

// ---- locks -------------------------------------------------------------------

const lockStores = new WeakMap();

/**
 * The store of the lock name: snapshots {held, fencingToken, state, error,
 * lostReason}. state is 'idle', 'acquiring', 'held', 'lost' (after an
 * onLost notice: lostReason says why) or 'error' (error says why).
 */
export function getLockStore(client, name) {
  checkClient(client, 'getLockStore');
  return perName(lockStores, client, name, () => createLockStore(client, name));
}

const IDLE_LOCK = Object.freeze({ held: false, fencingToken: null, state: 'idle', error: null, lostReason: null });

function createLockStore(client, name) {
  const cs = getClientStore(client);
  const ls = listeners();
  let snap = IDLE_LOCK;
  let handle = null;
  let detach = null;
  // What the last operation left: the snapshot's state, error, lostReason.
  let state = 'idle';
  let error = null;
  let lostReason = null;
  let op = 0; // only the latest lock()/unlock() may set the state
  let releasing = false; // unlock() in flight: not held is no loss

  function lk() {
    if (!handle && cs.started) handle = client.getLock(name);
    return handle;
  }

  function read() {
    const h = lk();
    const held = h ? h.isLocked() : false;
    const fencingToken = held ? h.fencingToken : null;
    // A lease that ended while no one listened for onLost was lost too.
    if (state === 'held' && !held && !releasing) {
      state = 'lost';
      lostReason ??= 'expired';
    }
    if (
      held !== snap.held ||
      fencingToken !== snap.fencingToken ||
      state !== snap.state ||
      error !== snap.error ||
      lostReason !== snap.lostReason
    ) {
      snap = Object.freeze({ held, fencingToken, state, error, lostReason });
    }
    return snap;
  }

  let emitted = snap; // as in the counter store
  function refresh() {
    if (read() !== emitted) {
      emitted = snap;
      ls.emit();
    }
  }

  function set(s, e = null) {
    state = s;
    error = e;
    refresh();
  }

  function attach() {
    const onLost = (reason) => {
      op++; // a pending renewal's answer is stale now
      releasing = false;
      lostReason = String(reason);
      set('lost');
    };
    detach = attachHandle(cs, client, () => lk().onLost(onLost), refresh);
  }

  function need(what) {
    const h = lk();
    if (!h) {
      throw new TopGunReactError(
        'NOT_READY',
        `lock ${name}: ${what}() before the client has started; wait until the client is ready`,
      );
    }
    return h;
  }

  return {
    name,
    getSnapshot: read,
    subscribe(listener) {
      if (ls.size === 0) emitted = read(); // no one to tell
      const un = ls.add(listener);
      if (!detach) attach();
      refresh();
      return () => {
        un();
        if (ls.size === 0) {
          detach?.();
          detach = null;
        }
      };
    },
    /**
     * The handle's lock(ttlMs, options): resolves true when granted, false
     * when another client holds the lock; rejects as the handle does. The
     * snapshot follows: 'acquiring', then 'held', 'idle' (busy) or 'error'.
     */
    async lock(ttlMs, options) {
      const h = need('lock');
      const my = ++op;
      releasing = false;
      lostReason = null;
      set('acquiring');
      try {
        const ok = await h.lock(ttlMs, options);
        if (my === op) set(ok ? 'held' : 'idle');
        return ok;
      } catch (e) {
        if (my === op) set('error', e);
        throw e;
      }
    },
    /** The handle's unlock(); the snapshot goes to 'idle' (or 'error'). */
    async unlock() {
      const h = need('unlock');
      const my = ++op;
      releasing = true;
      try {
        await h.unlock();
        if (my === op) {
          lostReason = null;
          set('idle');
        }
      } catch (e) {
        if (my === op) set('error', e);
        throw e;
      } finally {
        if (my === op) releasing = false;
      }
    },
  };
}
