// @topgun-go/client: the JS face of the topgun-go engine (Go compiled to
// WebAssembly, wasm/main.go). The contract with Go is written down in
// index.d.ts; this file keeps to it.
//
// Hot paths never call Go through js.FuncOf (about 6 µs a call): a
// counter's increments are applied to a JS-side cache at once, and handed
// to Go once per tick (one scalar //go:wasmexport call per counter), where
// the engine persists them to IndexedDB and syncs them.

import '../gen/wasm_exec.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const NAME_RE = /^[A-Za-z0-9_\-.:/]{1,256}$/;
const NAME_RULE = '1-256 characters, each one of A-Z a-z 0-9 _ - . : /';
// __TOPGUN_NODE__ is set by build.mjs: false in dist/index.js (browsers and
// bundlers: no Node code in the bundle), true in dist/index.node.js (the
// "node" export condition).
/* global __TOPGUN_NODE__ */

/**
 * Error raised or reported by the client, with a machine-readable code
 * (the codes are listed in index.d.ts and docs/errors.md). Some carry
 * details: reason (the server's words), status (an ERROR frame's code),
 * counters and kept (writes close() could not deliver).
 */
export class TopGunError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = 'TopGunError';
    this.code = code;
    if (details) {
      for (const k of ['reason', 'status', 'counters', 'kept']) {
        if (details[k] !== undefined) this[k] = details[k];
      }
    }
  }
}

function isErrObject(v) {
  return v !== null && typeof v === 'object' && typeof v.error === 'string';
}

// toError turns Go's {error, code, ...} object into a TopGunError.
function toError(v) {
  return new TopGunError(v.code || 'ERROR', v.error, v);
}

// unwrap turns Go's {error, code} results into exceptions.
function unwrap(v) {
  if (isErrObject(v)) {
    if (v.code === 'INVALID_NAME') throw new TypeError(v.error);
    if (v.code === 'OUT_OF_RANGE') throw new RangeError(v.error);
    throw toError(v);
  }
  return v;
}

function rethrow(e) {
  unwrap(e);
  throw e instanceof Error ? e : new TopGunError('ERROR', String(e));
}

const URL_RULE = 'a ws:// or wss:// URL, or a non-empty array of them';

function show(v) {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

// serverUrls returns serverUrl as a list (a copy), or throws TypeError.
function serverUrls(v) {
  const list = Array.isArray(v) ? [...v] : [v];
  if (list.length === 0 || !list.every((u) => typeof u === 'string' && /^wss?:\/\//.test(u))) {
    throw new TypeError(`TopGunClient: serverUrl must be ${URL_RULE}; got ${show(v)}`);
  }
  return list;
}

function checkName(kind, name) {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new TypeError(`${kind} name must be ${NAME_RULE}; got ${JSON.stringify(name)}`);
  }
}

/** Keeps counters in memory only (tests, Node programs, no IndexedDB). */
export class MemoryAdapter {
  constructor() {
    this.kind = 'memory';
  }
}

/** Persists counters to IndexedDB, shared by the tabs of a browser profile. */
export class IDBAdapter {
  constructor(options = {}) {
    if (typeof indexedDB === 'undefined') {
      throw new TopGunError(
        'STORAGE_UNAVAILABLE',
        'IndexedDB is not available in this environment; use `new MemoryAdapter()` as storage instead',
      );
    }
    this.kind = 'idb';
    this.name = options.name ?? 'topgun-go';
  }
}

// ---- the Go runtime, loaded once per page ----------------------------------

let runtime = null; // Promise<{api, x}> while loading or loaded
let fatalError = null;

function defaultWasmURL() {
  return new URL('./topgun.wasm', import.meta.url);
}

async function instantiate(url, imports) {
  const u = url instanceof URL ? url : new URL(String(url), globalThis.location?.href ?? import.meta.url);
  if (__TOPGUN_NODE__ && u.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    return WebAssembly.instantiate(await readFile(u), imports);
  }
  const resp = await fetch(u);
  if (!resp.ok) throw new TopGunError('WASM_LOAD', `fetching ${u}: HTTP ${resp.status}`);
  const type = resp.headers.get('content-type') || '';
  if (WebAssembly.instantiateStreaming && type.startsWith('application/wasm')) {
    return WebAssembly.instantiateStreaming(resp, imports);
  }
  // Servers that do not send application/wasm: instantiate from bytes.
  return WebAssembly.instantiate(await resp.arrayBuffer(), imports);
}

function loadRuntime(wasmURL) {
  if (fatalError) return Promise.reject(fatalError);
  if (runtime) return runtime;
  runtime = (async () => {
    if (__TOPGUN_NODE__ && typeof globalThis.WebSocket === 'undefined') {
      const ws = await import('ws');
      globalThis.WebSocket = ws.WebSocket;
    }
    const go = new globalThis.Go();
    const ready = new Promise((resolve) => {
      globalThis.__topgunGoReady = resolve;
    });
    const { instance } = await instantiate(wasmURL ?? defaultWasmURL(), go.importObject);
    const exited = go.run(instance);
    const died = exited.then(
      () => new TopGunError('FATAL', 'the topgun Go runtime exited'),
      (e) => new TopGunError('FATAL', `the topgun Go runtime crashed: ${e?.message ?? e}`),
    );
    died.then((err) => {
      fatalError = err;
      for (const c of liveClients) c._fatal(err);
    });
    const api = await Promise.race([ready, died.then((e) => Promise.reject(e))]);
    delete globalThis.__topgunGoReady;
    return { api, x: instance.exports };
  })();
  runtime.catch(() => {
    runtime = null; // allow a retry after a failed load
  });
  return runtime;
}

const liveClients = new Set();

// When the browser says the network is back, reconnect now instead of
// waiting out the backoff.
globalThis.addEventListener?.('online', () => {
  for (const c of liveClients) c._retryNow();
});

// ---- client ----------------------------------------------------------------

/**
 * A connection to a topgun-go server with local persistence. Emits
 * 'statechange' events ({detail: state, error}) and 'error' events
 * ({detail: TopGunError}).
 */
export class TopGunClient extends EventTarget {
  #opts;
  #rt = null;
  #id = -1;
  #state = 'idle';
  #error = null;
  #counters = new Map();
  #bounded = new Map();
  #boundedStart = null; // Promise: the tab's bounded replica is running
  #replica = null; // {id, release}
  #locks = new Map();
  #unsub = [];
  #starting = null;
  #closing = null;
  #closed = false;
  #online = true;
  #nodeId = null;
  #url;

  constructor(options) {
    super();
    const urls = serverUrls(options?.serverUrl);
    if (options.token !== undefined && typeof options.token !== 'string') {
      throw new TypeError('TopGunClient: token must be a string');
    }
    if (options.getToken !== undefined && typeof options.getToken !== 'function') {
      throw new TypeError('TopGunClient: getToken must be a function');
    }
    const ct = options.closeTimeoutMs;
    if (ct !== undefined && !(Number.isSafeInteger(ct) && ct >= 0)) {
      throw new TypeError(`TopGunClient: closeTimeoutMs must be a non-negative integer, got ${show(ct)}`);
    }
    const msc = options.maxStoredCounters;
    if (msc !== undefined && msc !== Infinity && !(Number.isSafeInteger(msc) && msc > 0)) {
      throw new TypeError(`TopGunClient: maxStoredCounters must be a positive integer or Infinity, got ${show(msc)}`);
    }
    const storage = options.storage ?? new MemoryAdapter();
    if (storage.kind !== 'memory' && storage.kind !== 'idb') {
      throw new TypeError('TopGunClient: storage must be an IDBAdapter or a MemoryAdapter');
    }
    this.#opts = { ...options, serverUrl: urls, storage };
    this.#url = urls[0];
  }

  /** Loads local state and starts connecting; does not wait for the network. */
  start() {
    if (this.#closed) return Promise.reject(new TopGunError('CLOSED', 'client is closed'));
    this.#starting ??= (async () => {
      const rt = await loadRuntime(this.#opts.wasmURL);
      const o = this.#opts;
      const id = unwrap(
        await rt.api
          .createClient({
            serverUrl: o.serverUrl,
            token: o.token,
            getToken: o.getToken,
            nodeId: o.nodeId,
            storage: { kind: o.storage.kind, name: o.storage.name },
            syncDelayMs: o.syncDelayMs ?? 1,
            closeTimeoutMs: o.closeTimeoutMs,
            maxStoredCounters: o.maxStoredCounters === Infinity ? -1 : o.maxStoredCounters,
            debug: !!o.debug,
          })
          .catch(rethrow),
      );
      this.#rt = rt;
      this.#id = id;
      liveClients.add(this);
      this.#unsub.push(
        rt.api.onState(id, (s, e) => this.#setState(s, e)),
        rt.api.onError(id, (e) => this.#report(toError(e))),
      );
      this.#setState(rt.api.clientState(id), rt.api.clientError(id));
    })();
    this.#starting.catch(() => {
      this.#starting = null;
    });
    return this.#starting;
  }

  /** 'idle' before start, then 'connecting', 'authenticating', 'ready', 'offline', 'closed'. */
  get state() {
    return this.#state;
  }

  /**
   * Why the last connection attempt or connection failed (a TopGunError:
   * AUTH_FAILED, AUTH_REQUIRED, CONNECT_FAILED, ...), or null while ready
   * and before any failure.
   */
  get error() {
    return this.#error;
  }

  /** Calls cb(state, error) with every new state; returns an unsubscribe function. */
  onStateChange(cb) {
    const h = (e) => cb(e.detail, e.error);
    this.addEventListener('statechange', h);
    return () => this.removeEventListener('statechange', h);
  }

  /**
   * Calls cb(error) with every error the client reports: failed connection
   * attempts, lost connections, authentication failures, local storage
   * failures, ERROR frames from the server, writes close() could not
   * deliver. Returns an unsubscribe function.
   */
  onError(cb) {
    const h = (e) => cb(e.detail);
    this.addEventListener('error', h);
    return () => this.removeEventListener('error', h);
  }

  #report(err) {
    const e = new CustomEvent('error', { detail: err });
    this.dispatchEvent(e);
  }

  /**
   * Replaces the token sent in AUTH from the next connection attempt on and,
   * after an authentication failure (which stops the retries), connects at
   * once. With getToken, call retryNow() instead to have it called again.
   */
  setToken(token) {
    if (typeof token !== 'string') throw new TypeError('setToken needs a string');
    this.#api().setToken(this.#id, token);
  }

  /**
   * Reconnects now instead of after the backoff; after an authentication
   * failure, tries again (calling getToken again).
   */
  retryNow() {
    this.#api().retryNow(this.#id);
  }

  /**
   * Takes the client offline on purpose (false) or back online (true).
   * Offline, counters keep working and persisting; the connection is closed,
   * so held locks are lost ('disconnected') and freed by the server.
   */
  setOnline(online) {
    if (typeof online !== 'boolean') throw new TypeError('setOnline needs a boolean');
    this.#api().setOnline(this.#id, online);
    this.#online = online;
  }

  /** False after setOnline(false). */
  get online() {
    return this.#online;
  }

  /**
   * The server URL in use: the one connected or connecting to, or, between
   * attempts, the one dialled next. The first of serverUrl before start().
   */
  get url() {
    if (!this.#closed && this.#id >= 0 && !fatalError) this.#url = this.#rt.api.clientUrl(this.#id);
    return this.#url;
  }

  /** This replica's node id (persisted per browser profile with IDBAdapter). */
  get nodeId() {
    if (this.#nodeId === null) this.#nodeId = this.#api().nodeId(this.#id);
    return this.#nodeId;
  }

  #setState(s, err) {
    const error = isErrObject(err) ? toError(err) : null;
    if (s === 'ready' || error) this.#error = error;
    if (s === this.#state) return;
    this.#state = s;
    const e = new CustomEvent('statechange', { detail: s });
    e.error = this.#error;
    this.dispatchEvent(e);
  }

  #api() {
    if (this.#closed) throw new TopGunError('CLOSED', 'client is closed');
    if (fatalError) throw fatalError;
    if (this.#id < 0) throw new TopGunError('NOT_STARTED', 'call `await client.start()` first');
    return this.#rt.api;
  }

  _kick() {
    if (!this.#closed && this.#id >= 0 && !fatalError) this.#rt.api.kick(this.#id);
  }

  _retryNow() {
    if (!this.#closed && this.#id >= 0 && !fatalError) this.#rt.api.retryNow(this.#id);
  }

  _forgetBounded(name, b) {
    if (this.#bounded.get(name) === b) this.#bounded.delete(name);
  }

  _fatal(err) {
    this.#setState('closed');
    for (const c of this.#counters.values()) c._fatal(err);
    for (const b of this.#bounded.values()) b._fatal(err);
  }

  /** The counter named name; the same handle for every call with one name. */
  getPNCounter(name) {
    checkName('counter', name);
    let c = this.#counters.get(name);
    if (!c) {
      const api = this.#api();
      const h = unwrap(api.counter(this.#id, name));
      c = new PNCounter(this, this.#rt, h, name, () => this.#api());
      this.#counters.set(name, c);
    } else {
      c._hold();
    }
    return c;
  }

  /**
   * The bounded counter named name, whose value never goes below min (a
   * safe integer, 0 by default); the same handle for every call with one
   * name. Its stored replica is read in the background (see `loaded`).
   */
  getBoundedCounter(name, options = {}) {
    checkName('bounded counter', name);
    const min = options?.min ?? 0;
    if (!Number.isSafeInteger(min)) {
      throw new RangeError(`bounded counter ${name}: min must be a safe integer, got ${show(min)}`);
    }
    let b = this.#bounded.get(name);
    if (b) {
      if (b.min !== min) {
        throw new TopGunError('BOUND_MISMATCH', `bounded counter ${name} is open with min ${b.min}, not ${min}`);
      }
      return b;
    }
    const api = this.#api();
    const id = this.#id;
    this.#boundedStart ??= this.#startBounded(api);
    const h = this.#boundedStart.then(() => api.bounded(id, name, min)).then(unwrap, rethrow);
    b = new BoundedCounter(this, this.#rt, h, name, min, () => this.#api());
    this.#bounded.set(name, b);
    return b;
  }

  /**
   * The node id this tab's bounded counters run as: its bounded-replica
   * identity (docs/bounded-counters.md), or null before the first
   * getBoundedCounter has started them.
   */
  get replicaId() {
    return this.#replica?.id ?? null;
  }

  // startBounded picks the tab's bounded-replica identity and starts the
  // engine client that runs its bounded counters. With MemoryAdapter the
  // tab has a node id of its own, which serves as it is.
  async #startBounded(api) {
    const nodeId = this.nodeId;
    if (this.#opts.storage.kind !== 'idb') {
      this.#replica = { id: nodeId, release() {} };
    } else {
      this.#replica = await acquireReplica(this.#opts.storage.name, nodeId);
      if (this.#closed) {
        this.#replica.release();
        throw new TopGunError('CLOSED', 'client is closed');
      }
    }
    unwrap(await api.boundedClient(this.#id, this.#replica.id).catch(rethrow));
  }

  /** The lock named name; the same handle for every call with one name. */
  getLock(name) {
    checkName('lock', name);
    let l = this.#locks.get(name);
    if (!l) {
      const api = this.#api();
      const h = unwrap(api.lock(this.#id, name));
      l = new Lock(this.#rt, h, name, () => this.#api());
      this.#locks.set(name, l);
    }
    return l;
  }

  /**
   * Delivers pending writes, then closes the connection (locks are freed)
   * and storage. Within closeTimeoutMs (default 3000) it persists every
   * write, connects at once if it is between attempts and waits for the
   * server to confirm them. Resolves {delivered, undelivered, error}:
   * undelivered names the counters whose writes the server has not
   * confirmed; with IDBAdapter they stay in IndexedDB and the next start()
   * sends them (error.kept is true). Never rejects: a failure is in the
   * result and reported as an 'error' event.
   */
  close() {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close() {
    let error = null;
    try {
      if (this.#starting) await this.#starting.catch(() => {});
      if (this.#id >= 0 && !fatalError) {
        pushAll();
        kickAll();
      }
      // Bounded counters' spends are stored before their client closes.
      if (this.#boundedStart) {
        await this.#boundedStart.catch(() => {});
        await Promise.all([...this.#bounded.values()].map((b) => b._flushQuiet()));
      }
      this.#closed = true;
      liveClients.delete(this);
      const closed = new TopGunError('CLOSED', 'client is closed');
      for (const c of this.#counters.values()) c._fatal(closed);
      for (const b of this.#bounded.values()) b._fatal(closed);
      if (this.#id >= 0 && !fatalError) {
        const res = await this.#rt.api.closeClient(this.#id);
        if (isErrObject(res?.error)) error = toError(res.error);
      }
    } catch (e) {
      error = isErrObject(e) ? toError(e) : e instanceof Error ? e : new TopGunError('ERROR', String(e));
    }
    for (const off of this.#unsub) off();
    this.#unsub = [];
    this.#replica?.release(); // another tab may take the identity now
    this.#setState('closed');
    if (error) this.#report(error);
    return { delivered: error?.code !== 'UNDELIVERED', undelivered: error?.counters ?? [], error };
  }
}

// ---- counters --------------------------------------------------------------

// Counters with writes not yet handed to Go. A microtask hands them over
// (one //go:wasmexport call per counter); a task queued behind the current
// one then kicks the engine, which writes everything handed over in one
// IndexedDB transaction. So writes are coalesced per event-loop task and at
// most the current task's writes are at risk when a tab dies, while code
// that yields with await many times within one task pays for one kick.
const dirty = new Set();
let pushQueued = false;
const toKick = new Set();
let kickQueued = false;
const kickChannel = typeof MessageChannel === 'function' ? new MessageChannel() : null;
if (kickChannel) {
  kickChannel.port1.onmessage = kickAll;
  kickChannel.port1.unref?.(); // Node: a queued kick must not keep the process alive
}

function queuePush(counter) {
  dirty.add(counter);
  if (!pushQueued) {
    pushQueued = true;
    queueMicrotask(pushAll);
  }
}

function pushAll() {
  pushQueued = false;
  for (const c of dirty) {
    if (c._push()) toKick.add(c._client);
  }
  dirty.clear();
  if (toKick.size !== 0 && !kickQueued) {
    kickQueued = true;
    if (kickChannel) kickChannel.port2.postMessage(null);
    else setTimeout(kickAll, 0);
  }
}

function kickAll() {
  kickQueued = false;
  for (const client of toKick) client._kick();
  toKick.clear();
}

// Hand the current task's writes to Go and persist them before the page
// goes away.
globalThis.addEventListener?.('pagehide', () => {
  pushAll();
  kickAll();
});

/** A replicated PN-Counter. Reads and writes are local and synchronous. */
export class PNCounter {
  #x;
  #api;
  #h;
  #name;
  #value;
  #ownP;
  #ownN;
  #pendP = 0;
  #pendN = 0;
  #listeners = new Set();
  #syncListeners = new Set();
  #syncedLast;
  #queued = false;
  #dead = null;
  #disposed = false;
  #loading = true;
  #loaded;

  constructor(client, rt, h, name, api) {
    this._client = client;
    this.#x = rt.x;
    this.#api = api;
    this.#h = h;
    this.#name = name;
    this.#value = this.#x.tg_counter_get(h);
    this.#ownP = this.#x.tg_counter_own_p(h);
    this.#ownN = this.#x.tg_counter_own_n(h);
    this.#syncedLast = this.synced;
    rt.api.counterNotify(
      h,
      (v) => this.#remote(v),
      () => this.#checkSynced(),
    );
    // The stored state is read from IndexedDB in the background; it
    // arrives like a remote change (subscribers are called if it changes
    // the value).
    this.#loaded = rt.api.counterLoaded(h).then(
      () => {
        this.#loading = false;
        if (!this.#dead) this.#remote(this.#x.tg_counter_get(h));
      },
      (e) => {
        this.#loading = false;
        rethrow(e);
      },
    );
    this.#loaded.catch(() => {});
  }

  /**
   * Resolves once the counter's stored state has been read (getPNCounter
   * returns before that, as IndexedDB is asynchronous). Until then get()
   * reports only what is known: this page's writes and server states that
   * arrived; writes made meanwhile are kept and counted on top.
   */
  get loaded() {
    return this.#loaded;
  }

  /** True until `loaded` resolves. */
  get loading() {
    return this.#loading;
  }

  get name() {
    return this.#name;
  }

  /** The current local value. */
  get() {
    return this.#value;
  }

  increment() {
    return this.addAndGet(1);
  }

  decrement() {
    return this.addAndGet(-1);
  }

  /** Adds delta (a safe integer) and returns the new value. */
  addAndGet(delta) {
    if (!Number.isSafeInteger(delta)) {
      throw new RangeError(`counter ${this.#name}: delta must be a safe integer, got ${delta}`);
    }
    if (this.#dead) throw this.#dead;
    if (delta === 0) return this.#value;
    const v = this.#value + delta;
    if (v > MAX_SAFE || v < -MAX_SAFE) {
      throw new RangeError(`counter ${this.#name}: ${this.#value} + ${delta} leaves the safe integer range`);
    }
    if (delta > 0) {
      if (this.#ownP + this.#pendP + delta > MAX_SAFE) {
        throw new RangeError(`counter ${this.#name}: this replica's increments would exceed 2^53-1`);
      }
      this.#pendP += delta;
    } else {
      if (this.#ownN + this.#pendN - delta > MAX_SAFE) {
        throw new RangeError(`counter ${this.#name}: this replica's decrements would exceed 2^53-1`);
      }
      this.#pendN -= delta;
    }
    this.#value = v;
    this.#disposed = false; // Go takes it back with the write
    if (!this.#queued) {
      this.#queued = true;
      queuePush(this);
    }
    if (this.#listeners.size !== 0) for (const l of this.#listeners) l(v);
    if (this.#syncedLast) this.#checkSynced();
    return v;
  }

  // _push hands this tick's writes to Go; true if there were any.
  _push() {
    this.#queued = false;
    const p = this.#pendP;
    const n = this.#pendN;
    if (p === 0 && n === 0) return false;
    this.#pendP = 0;
    this.#pendN = 0;
    const x = this.#x;
    let gv = NaN;
    if (p !== 0) gv = x.tg_counter_add(this.#h, p);
    if (n !== 0 && (p === 0 || !Number.isNaN(gv))) gv = x.tg_counter_add(this.#h, -n);
    if (Number.isNaN(gv)) {
      // Only a closed client can get here (ranges were checked above).
      return false;
    }
    this.#ownP = x.tg_counter_own_p(this.#h);
    this.#ownN = x.tg_counter_own_n(this.#h);
    this.#settle(gv);
    return true;
  }

  #remote(gv) {
    this.#ownP = this.#x.tg_counter_own_p(this.#h);
    this.#ownN = this.#x.tg_counter_own_n(this.#h);
    this.#settle(gv);
  }

  // settle sets the value from Go's plus what Go has not seen yet.
  #settle(gv) {
    const v = gv + this.#pendP - this.#pendN;
    if (v === this.#value) return;
    this.#value = v;
    for (const l of this.#listeners) l(v);
  }

  /** Calls cb now with the value, then after every local or remote change. */
  subscribe(cb) {
    if (typeof cb !== 'function') throw new TypeError('subscribe needs a function');
    this._hold();
    this.#listeners.add(cb);
    cb(this.#value);
    return () => this.#listeners.delete(cb);
  }

  /** Whether the server has confirmed every local write. */
  get synced() {
    return this.#pendP === 0 && this.#pendN === 0 && this.#x.tg_counter_synced(this.#h) === 1;
  }

  #checkSynced() {
    if (this.#dead) return;
    const s = this.synced;
    if (s === this.#syncedLast) return;
    this.#syncedLast = s;
    for (const l of this.#syncListeners) l(s);
  }

  /**
   * Calls cb(synced) now, then whenever `synced` changes: false after a
   * local write, true once the server has confirmed every local write.
   * Returns an unsubscribe function.
   */
  onSyncedChange(cb) {
    if (typeof cb !== 'function') throw new TypeError('onSyncedChange needs a function');
    this._hold();
    this.#syncListeners.add(cb);
    cb(this.#syncedLast);
    return () => this.#syncListeners.delete(cb);
  }

  /**
   * Releases the handle: once its writes are delivered, the server stops
   * sending this client the counter's changes and reconnects skip it; get()
   * keeps the last known value. Writes are never dropped. Using the handle
   * again (addAndGet, subscribe, onSyncedChange, flush, getPNCounter) takes
   * it back and it catches up. React's usePNCounter does this on unmount.
   */
  dispose() {
    if (this.#disposed || this.#dead) return;
    this.#disposed = true;
    this.#api().counterHold(this.#h, false);
  }

  _hold() {
    if (!this.#disposed || this.#dead) return;
    this.#disposed = false;
    this.#api().counterHold(this.#h, true);
  }

  /** Sends local writes now and resolves when the server has stored them. */
  async flush() {
    this._hold();
    const api = this.#api();
    pushAll();
    kickAll();
    await api.flush(this.#h).catch(rethrow);
  }

  _fatal(err) {
    this.#dead = err;
  }
}

// ---- bounded counters ------------------------------------------------------

// Bounded-replica identities of a profile: a tab takes the lowest k whose
// Web Lock nobody holds, so a closed tab's identity (and the rights stored
// under it) goes to the next tab that starts, and two live tabs never
// share one. See docs/bounded-counters.md, "Tabs".
const MAX_REPLICAS = 256;

async function acquireReplica(dbName, nodeId) {
  const locks = globalThis.navigator?.locks;
  if (typeof locks?.request !== 'function') {
    // No Web Locks: a fresh identity per tab. A closed tab's rights then
    // wait for an operator to reclaim them.
    const bytes = new Uint8Array(6);
    globalThis.crypto.getRandomValues(bytes);
    const rnd = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return { id: replicaName(nodeId, `t${rnd}`), locked: false, release() {} };
  }
  for (let k = 1; k <= MAX_REPLICAS; k++) {
    const id = replicaName(nodeId, `r${k}`);
    let release;
    const hold = new Promise((r) => {
      release = r;
    });
    const got = await new Promise((resolve, reject) => {
      locks
        .request(`topgun-go:${dbName}:replica:${id}`, { mode: 'exclusive', ifAvailable: true }, (lock) => {
          resolve(lock !== null);
          return lock === null ? undefined : hold; // held until release()
        })
        .catch(reject);
    });
    if (got) return { id, locked: true, release };
  }
  throw new TopGunError('NO_REPLICA', `all ${MAX_REPLICAS} bounded-replica identities of this profile are in use by other tabs`);
}

function replicaName(nodeId, suffix) {
  const id = `${nodeId}:${suffix}`;
  if (!NAME_RE.test(id)) {
    throw new TopGunError('NO_REPLICA', `node id ${JSON.stringify(nodeId)} is too long to derive a bounded-replica identity (${NAME_RULE})`);
  }
  return id;
}

function checkAmount(what, name, n) {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`bounded counter ${name}: ${what} needs a positive safe integer, got ${show(n)}`);
  }
}

/**
 * A bounded counter: its value never goes below min, in any replica, even
 * offline. tryDecrement spends rights held by this tab (available()),
 * synchronously; requestRights asks the server for more.
 */
export class BoundedCounter {
  #x;
  #rt;
  #api;
  #h = -1;
  #name;
  #min;
  #value;
  #rights = 0; // Go's Available() at the last refresh
  #pendSpend = 0; // spent here, not handed to Go yet
  #pendAdd = 0; // added here, not handed to Go yet
  #listeners = new Set();
  #queued = false;
  #dead = null;
  #loading = true;
  #loaded;

  constructor(client, rt, handle, name, min, api) {
    this._client = client;
    this.#x = rt.x;
    this.#rt = rt;
    this.#api = api;
    this.#name = name;
    this.#min = min;
    this.#value = min;
    this.#loaded = handle.then(
      (h) => {
        this.#h = h;
        this.#loading = false;
        if (this.#dead) return;
        rt.api.boundedNotify(h, () => this.#refresh(true));
        if (this.#pendAdd !== 0) this.#queue();
        this.#refresh(true);
      },
      (e) => {
        this.#loading = false;
        throw e;
      },
    );
    this.#loaded.catch(() => {});
  }

  /**
   * Resolves once the counter's stored replica has been read and the tab's
   * bounded replica is running; rejects if it could not start. Until then
   * get() is min plus this tab's increments and tryDecrement fails.
   */
  get loaded() {
    return this.#loaded;
  }

  /** True until `loaded` settles. */
  get loading() {
    return this.#loading;
  }

  get name() {
    return this.#name;
  }

  get min() {
    return this.#min;
  }

  /** The value as this replica knows it; never below min. */
  get() {
    return this.#value;
  }

  /** The rights this tab holds: how much tryDecrement may take away here. */
  available() {
    return Math.max(0, this.#rights - this.#pendSpend);
  }

  /** Adds n (default 1) and returns the new value; the new rights go to the server for everyone. */
  increment(n = 1) {
    checkAmount('increment', this.#name, n);
    if (this.#dead) throw this.#dead;
    if (this.#value + n > MAX_SAFE) {
      throw new RangeError(`bounded counter ${this.#name}: ${this.#value} + ${n} leaves the safe integer range`);
    }
    this.#pendAdd += n;
    this.#value += n;
    if (this.#h >= 0) this.#queue();
    this.#fire();
    return this.#value;
  }

  /**
   * Takes n (default 1) away if this tab holds n rights, offline too, and
   * says whether it did. Synchronous; the decrement is stored in IndexedDB
   * within the current task's write (flush() waits for it) and only then
   * sent.
   */
  tryDecrement(n = 1) {
    checkAmount('tryDecrement', this.#name, n);
    if (this.#dead || this.#h < 0 || n > this.#rights - this.#pendSpend) return false;
    this.#pendSpend += n;
    this.#value -= n;
    this.#queue();
    this.#fire();
    return true;
  }

  /**
   * Asks the server for n rights; resolves with how many it granted
   * (0..n, capped per request by the server). Rejects when not connected
   * (TopGunError NOT_READY... codes as for other requests).
   */
  async requestRights(n) {
    checkAmount('requestRights', this.#name, n);
    await this.#loaded;
    const api = this.#api();
    const g = await api.boundedRequest(this.#h, n).catch(rethrow);
    this.#refresh(true);
    return g;
  }

  /** Hands n of this tab's rights back to the server, for other replicas. Throws RangeError beyond available(). */
  returnRights(n) {
    checkAmount('returnRights', this.#name, n);
    if (this.#dead) throw this.#dead;
    if (this.#h < 0) throw new TopGunError('NOT_LOADED', `bounded counter ${this.#name} is loading; await its \`loaded\``);
    if (n > this.available()) {
      throw new RangeError(`bounded counter ${this.#name}: cannot return ${n} rights, ${this.available()} held`);
    }
    this._push();
    if (this.#x.tg_bounded_return(this.#h, n) !== 1) {
      throw new TopGunError('ERROR', `bounded counter ${this.#name}: the rights could not be returned`);
    }
    this.#refresh();
    toKick.add(this._client);
    pushAll();
  }

  /** Whether the server has confirmed every change made here. */
  get synced() {
    return this.#h >= 0 && this.#pendAdd === 0 && this.#pendSpend === 0 && this.#x.tg_bounded_synced(this.#h) === 1;
  }

  /**
   * Calls cb(value) now, then after every local or remote change (a change
   * of available() or synced alone calls it too). Returns an unsubscribe
   * function.
   */
  subscribe(cb) {
    if (typeof cb !== 'function') throw new TypeError('subscribe needs a function');
    this.#listeners.add(cb);
    cb(this.#value);
    return () => this.#listeners.delete(cb);
  }

  /** Resolves once every change made here is stored in IndexedDB (then it is sent). */
  async flush() {
    await this.#loaded;
    const api = this.#api();
    pushAll();
    kickAll();
    await api.boundedFlush(this.#h).catch(rethrow);
  }

  _flushQuiet() {
    return this.flush().catch(() => {});
  }

  /**
   * Stores what was changed here, then releases the handle (no more
   * updates); the rights stay with this tab's replica. getBoundedCounter
   * gives a new handle.
   */
  async dispose() {
    if (this.#dead) return;
    // This tick's spends reach Go now, before another handle of the
    // counter can mirror its rights; from here on getBoundedCounter gives
    // a new handle (a remount), while this one stores what it changed.
    this._push();
    this.#dead = new TopGunError('CLOSED', `bounded counter ${this.#name} was disposed`);
    this._client._forgetBounded(this.#name, this);
    await this._flushQuiet();
    if (this.#h >= 0) this.#api().boundedClose(this.#h);
  }

  #queue() {
    if (!this.#queued) {
      this.#queued = true;
      queuePush(this);
    }
  }

  // _push hands this tick's changes to Go; true if there were any.
  _push() {
    this.#queued = false;
    if (this.#h < 0 || this.#dead) return false;
    const add = this.#pendAdd;
    const spend = this.#pendSpend;
    if (add === 0 && spend === 0) return false;
    this.#pendAdd = 0;
    this.#pendSpend = 0;
    const x = this.#x;
    if (add !== 0 && x.tg_bounded_add(this.#h, add) !== 1) {
      this.#dead = new TopGunError('CLOSED', `bounded counter ${this.#name}: the engine refused an increment`);
    }
    if (spend !== 0 && x.tg_bounded_spend(this.#h, spend) !== 1) {
      // The rights were checked against Go's; only a closed handle gets here.
      this.#dead = new TopGunError('CLOSED', `bounded counter ${this.#name}: the engine refused a decrement`);
    }
    this.#refresh();
    return true;
  }

  // refresh reads Go's value and rights; listeners are called when they
  // changed, or always (force: Go said something changed, maybe synced).
  #refresh(force = false) {
    if (this.#h < 0) return;
    const x = this.#x;
    const gv = x.tg_bounded_get(this.#h);
    if (Number.isNaN(gv)) return;
    const rights = x.tg_bounded_available(this.#h);
    const v = gv + this.#pendAdd - this.#pendSpend;
    if (!force && v === this.#value && rights === this.#rights) return;
    this.#rights = rights;
    this.#value = v;
    this.#fire();
  }

  #fire() {
    if (this.#listeners.size !== 0) for (const l of this.#listeners) l(this.#value);
  }

  _fatal(err) {
    this.#dead = err;
  }
}

// ---- locks -----------------------------------------------------------------

/** A named lease with a fencing token. */
export class Lock {
  #x;
  #api;
  #h;
  #name;

  constructor(rt, h, name, api) {
    this.#x = rt.x;
    this.#api = api;
    this.#h = h;
    this.#name = name;
  }

  get name() {
    return this.#name;
  }

  /**
   * Requests the lock for ttlMs. Resolves true when granted (again by the
   * holder: the lease is renewed and the token kept), false when another
   * client holds it (at once, or after waitMs). Rejects for other reasons
   * (TopGunError: FORBIDDEN when the token does not allow the name).
   * keepAlive: renew the lease every ttlMs/3 until unlock(); onLost
   * reports a lease that ends anyway.
   */
  async lock(ttlMs = 10000, options = {}) {
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
      throw new RangeError(`lock ${this.#name}: ttlMs must be a positive integer, got ${ttlMs}`);
    }
    const waitMs = options.waitMs ?? 0;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0) {
      throw new RangeError(`lock ${this.#name}: waitMs must be a non-negative integer, got ${waitMs}`);
    }
    const keepAlive = options.keepAlive ?? false;
    if (typeof keepAlive !== 'boolean') {
      throw new TypeError(`lock ${this.#name}: keepAlive must be a boolean, got ${typeof keepAlive}`);
    }
    const api = this.#api();
    return api.lockAcquire(this.#h, ttlMs, waitMs, keepAlive).catch(rethrow);
  }

  /** Releases the lock; a no-op when not held. */
  async unlock() {
    const api = this.#api();
    await api.lockUnlock(this.#h).catch(rethrow);
  }

  /** Whether this client holds the lock (false after a lost notice). */
  isLocked() {
    return this.#x.tg_lock_held(this.#h) === 1;
  }

  /** The fencing token of the current grant, or null when not held. */
  get fencingToken() {
    return this.isLocked() ? this.#x.tg_lock_token(this.#h) : null;
  }

  /** Calls cb(reason) when a held lock is lost ('expired', 'disconnected', 'released', 'revoked', 'unavailable', 'forbidden'). */
  onLost(cb) {
    if (typeof cb !== 'function') throw new TypeError('onLost needs a function');
    const api = this.#api();
    return api.lockOnLost(this.#h, cb);
  }
}
