// The npm package under Node ≥ 20 (MemoryAdapter, the `ws` package for
// WebSocket), against the real server started as a process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { goSourceHash } from '../go-hash.mjs';
import { startServer } from '../../scripts/server-process.mjs';
import { startClient, until as untilWithin } from './helpers.mjs';
import { TopGunClient, MemoryAdapter, IDBAdapter, TopGunError } from '../dist/index.node.js';

let server; // scripts/server-process.mjs

before(async () => {
  server = await startServer(['--no-auth', '--data', 'memory', '--lock-ttl-max', '1m']);
});

after(async () => {
  await server?.stop();
});

const newClient = (opts = {}) => startClient({ serverUrl: server.url, ...opts });
const until = (what, cond) => untilWithin(what, cond, 20000);

test('the .wasm in dist was built from the current Go sources', () => {
  const stamp = JSON.parse(fs.readFileSync(new URL('../dist/build-stamp.json', import.meta.url), 'utf8'));
  assert.equal(stamp.goSources, goSourceHash(), 'js/dist is stale: run `make wasm`');
});

test('start() is offline-first: no server, writes still work', async () => {
  const c = await startClient({ serverUrl: 'ws://127.0.0.1:1' });
  const n = c.getPNCounter('offline:1');
  assert.equal(n.increment(), 1);
  assert.equal(n.addAndGet(10), 11);
  assert.equal(n.get(), 11);
  assert.equal(n.synced, false);
  assert.notEqual(c.state, 'ready');
});

test('same handle per name; increments converge between clients', async () => {
  const a = await newClient();
  const b = await newClient();
  const ca = a.getPNCounter('likes:post-123');
  assert.equal(a.getPNCounter('likes:post-123'), ca);
  const cb = b.getPNCounter('likes:post-123');
  const seen = [];
  const off = cb.subscribe((v) => seen.push(v));
  assert.deepEqual(seen, [0], 'subscribe calls back at once');
  assert.equal(ca.increment(), 1);
  assert.equal(ca.decrement(), 0);
  assert.equal(ca.addAndGet(10), 10);
  assert.equal(cb.addAndGet(5), 5);
  await until('both see 15', () => ca.get() === 15 && cb.get() === 15);
  assert.ok(seen.includes(15), `remote change reached the subscriber: ${seen}`);
  off();
  await ca.flush();
  await cb.flush();
  assert.equal(ca.synced, true);
});

test('getPNCounter reads the stored state in the background: loading until loaded; writes meanwhile count', async () => {
  const c = await startClient({ serverUrl: 'ws://127.0.0.1:1' });
  const n = c.getPNCounter('loaded:1');
  assert.equal(n.loading, true);
  assert.equal(n.increment(), 1);
  await n.loaded;
  assert.equal(n.loading, false);
  assert.equal(n.get(), 1);
  assert.equal(c.getPNCounter('loaded:1').loaded, n.loaded, 'one promise per handle');
  assert.throws(() => new TopGunClient({ serverUrl: server.url, maxStoredCounters: 0 }), TypeError);
  assert.throws(() => new TopGunClient({ serverUrl: server.url, maxStoredCounters: 1.5 }), TypeError);
  new TopGunClient({ serverUrl: server.url, maxStoredCounters: Infinity });
});

test('bad input: RangeError / TypeError and nothing changes', async () => {
  const c = await newClient();
  const n = c.getPNCounter('bad-input');
  n.addAndGet(3);
  for (const d of [1.5, NaN, Infinity, -Infinity, 2 ** 53, '1', null, undefined]) {
    assert.throws(() => n.addAndGet(d), RangeError, `delta ${d}`);
  }
  assert.throws(() => n.addAndGet(Number.MAX_SAFE_INTEGER), RangeError);
  assert.equal(n.get(), 3);
  for (const name of ['', 'has space', 'ü', 'x'.repeat(257), 42]) {
    assert.throws(() => c.getPNCounter(name), { name: 'TypeError', message: /A-Z a-z 0-9/ });
    assert.throws(() => c.getLock(name), TypeError);
  }
  const l = c.getLock('bad-ttl');
  await assert.rejects(l.lock(0), RangeError);
  await assert.rejects(l.lock(1.5), RangeError);
  await assert.rejects(l.lock(1000, { waitMs: -1 }), RangeError);
  await assert.rejects(l.lock(120000), (e) => e instanceof TopGunError && e.code === 'INVALID_TTL');
});

test('IDBAdapter without IndexedDB says to use MemoryAdapter', () => {
  assert.throws(() => new IDBAdapter(), (e) => e.code === 'STORAGE_UNAVAILABLE' && /MemoryAdapter/.test(e.message));
});

test('using a client before start() fails clearly', () => {
  const c = new TopGunClient({ serverUrl: server.url });
  assert.throws(() => c.getPNCounter('x'), (e) => e.code === 'NOT_STARTED' && /start\(\)/.test(e.message));
  assert.throws(() => new TopGunClient({ serverUrl: 'http://x' }), TypeError);
});

test('locks: one holder, increasing tokens, unlock, busy is false', async () => {
  const a = await newClient();
  const b = await newClient();
  const la = a.getLock('job-queue:partition-0');
  assert.equal(a.getLock('job-queue:partition-0'), la);
  const lb = b.getLock('job-queue:partition-0');
  assert.equal(await la.lock(5000), true);
  assert.equal(la.isLocked(), true);
  const t1 = la.fencingToken;
  assert.ok(Number.isSafeInteger(t1) && t1 > 0);
  assert.equal(await lb.lock(5000), false, 'busy is false, not an error');
  assert.equal(lb.fencingToken, null);
  const waiting = lb.lock(5000, { waitMs: 10000 });
  await la.unlock();
  assert.equal(la.isLocked(), false);
  assert.equal(await waiting, true, 'the waiter gets the lock when it frees');
  assert.ok(lb.fencingToken > t1);
  await la.unlock(); // not held: no-op
  await lb.unlock();
});

test('lock TTL expiry reaches the holder as a lost notice', async () => {
  const c = await newClient();
  const l = c.getLock('ttl-expiry');
  const lost = new Promise((r) => l.onLost(r));
  assert.equal(await l.lock(100), true);
  assert.equal(await lost, 'expired');
  assert.equal(l.isLocked(), false);
  assert.equal(l.fencingToken, null);
});

test('a closed client frees its locks', async () => {
  const a = new TopGunClient({ serverUrl: server.url });
  await a.start();
  const b = await newClient();
  assert.equal(await a.getLock('close-frees').lock(60000), true);
  const counter = a.getPNCounter('close-frees');
  await a.close();
  assert.equal(a.state, 'closed');
  assert.throws(() => a.getPNCounter('x'), (e) => e.code === 'CLOSED');
  assert.throws(() => counter.increment(), (e) => e.code === 'CLOSED', 'writes to a closed client throw');
  assert.equal(await b.getLock('close-frees').lock(1000, { waitMs: 10000 }), true);
});

test('setOnline(false) keeps counters working offline; setOnline(true) syncs them', async () => {
  const a = await newClient();
  const b = await newClient();
  await until('a ready', () => a.state === 'ready');
  const ka = a.getPNCounter('set-online');
  const kb = b.getPNCounter('set-online');
  const l = a.getLock('set-online');
  assert.equal(await l.lock(60000), true);
  const lost = new Promise((r) => l.onLost(r));
  a.setOnline(false);
  assert.equal(a.online, false);
  assert.equal(await lost, 'disconnected');
  await until('a offline', () => a.state === 'offline');
  assert.equal(ka.addAndGet(4), 4);
  assert.equal(await b.getLock('set-online').lock(1000, { waitMs: 10000 }), true, 'the server freed the lock');
  assert.equal(kb.get(), 0);
  a.setOnline(true);
  await until('b sees 4', () => kb.get() === 4);
  assert.throws(() => a.setOnline('yes'), TypeError);
});

test('dispose(): a disposed handle\'s writes are still delivered; using it again catches up', async () => {
  const a = await newClient();
  const b = await newClient();
  await until('ready', () => a.state === 'ready' && b.state === 'ready');
  const na = a.getPNCounter('dispose:1');
  const nb = b.getPNCounter('dispose:1');
  na.addAndGet(2);
  na.dispose(); // the write is still delivered
  await until('b sees the write of the disposed handle', () => nb.get() === 2);
  await until('a synced', () => na.synced);
  const seen = [];
  nb.addAndGet(5);
  await nb.flush();
  // (That the server stops sending a released counter is checked by the
  // Go client's TestCounterClose, which sees the COUNTER_UNSUBSCRIBE.)
  const c = await newClient();
  const nc = c.getPNCounter('dispose:1');
  await until('server has 7', () => nc.get() === 7);
  const off = na.subscribe((v) => seen.push(v));
  await until('a catches up after subscribe', () => na.get() === 7);
  assert.equal(seen.at(-1), 7);
  off();
});
