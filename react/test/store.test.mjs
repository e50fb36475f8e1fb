// The React-free store layer against the real client and server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { getClientStore, getCounterStore, getLockStore, TopGunReactError } from '../dist/store.js';
import { startServer, newClient, until } from '../testutil.mjs';

let server;
let url;
before(async () => {
  server = await startServer();
  url = server.url;
});
after(async () => server?.stop());

// record subscribes to store and keeps every snapshot it is told about.
function record(store) {
  const seen = [];
  const off = store.subscribe(() => seen.push(store.getSnapshot()));
  return { seen, off };
}

test('client store: idle until start() resolves, then started', async () => {
  const c = await newClient(url, { start: false });
  const s = getClientStore(c);
  assert.equal(getClientStore(c), s, 'one store per client');
  const s0 = s.getSnapshot();
  assert.deepEqual(s0, { state: 'idle', started: false, error: null });
  assert.equal(s.getSnapshot(), s0, 'snapshot keeps its identity');
  const { seen, off } = record(s);
  let ran = false;
  s.whenStarted(() => (ran = true));
  await Promise.all([s.start(), s.start()]);
  assert.equal(ran, true);
  const s1 = s.getSnapshot();
  assert.equal(s1.started, true);
  assert.notEqual(s1.state, 'idle');
  assert.ok(seen.length >= 1 && seen.at(-1).started);
  off();
});

test('client store: a client started by the app is started at once', async () => {
  const c = await newClient(url);
  assert.equal(getClientStore(c).getSnapshot().started, true);
});

test('client store: a failed start is kept as error', async () => {
  const c = await newClient(url, { start: false });
  await c.close();
  const s = getClientStore(c);
  await assert.rejects(s.start(), { code: 'CLOSED' });
  assert.equal(s.getSnapshot().error.code, 'CLOSED');
  assert.equal(s.getSnapshot().started, false);
});

test('bad clients are TypeErrors', () => {
  assert.throws(() => getClientStore({}), TypeError);
  assert.throws(() => getCounterStore(undefined, 'x'), TypeError);
});

test('counter store: loading until started; subscribing starts the client', async () => {
  const c = await newClient(url, { start: false });
  const s = getCounterStore(c, 'store:loading');
  assert.equal(getCounterStore(c, 'store:loading'), s, 'one store per client and name');
  assert.deepEqual(s.getSnapshot(), { value: 0, loading: true, synced: false });
  assert.throws(() => s.increment(), (e) => e instanceof TopGunReactError && e.code === 'NOT_READY');
  const { off } = record(s);
  await until('started', () => !s.getSnapshot().loading);
  assert.equal(s.getSnapshot().value, 0);
  off();
});

test('counter store: local and remote changes, stable snapshots, synced', async () => {
  const a = await newClient(url);
  const b = await newClient(url);
  const sa = getCounterStore(a, 'store:likes');
  const sb = getCounterStore(b, 'store:likes');
  const ra = record(sa);
  const rb = record(sb);
  assert.equal(sa.increment(), 1);
  assert.equal(sa.add(10), 11);
  assert.equal(sa.decrement(), 10);
  assert.throws(() => sa.add(0.5), RangeError);
  // Writes count while the stored state is read; loading ends after it.
  await until('a has read its stored state', () => !sa.getSnapshot().loading);
  const snap = sa.getSnapshot();
  assert.equal(snap.value, 10);
  assert.equal(snap.loading, false);
  assert.equal(sa.getSnapshot(), snap, 'unchanged: same object');
  assert.ok(Object.isFrozen(snap));
  assert.deepEqual(
    ra.seen.map((x) => x.value).filter((v, i, xs) => v !== xs[i - 1]),
    [1, 11, 10],
    'a listener call per change',
  );
  await until('b sees 10', () => sb.getSnapshot().value === 10);
  assert.ok(rb.seen.some((x) => x.value === 10), 'remote change notified');
  // The counter's synced-change event reaches the listeners (nothing polls).
  await until('the listener hears a is synced', () => ra.seen.at(-1).synced);
  assert.equal(sa.getSnapshot().synced, true);
  assert.equal(ra.seen.at(-1).value, 10);
  ra.off();
  rb.off();
});

test('lock store: acquiring, held with a token, busy, unlock', async () => {
  const a = await newClient(url);
  const b = await newClient(url);
  const la = getLockStore(a, 'store:lock');
  const lb = getLockStore(b, 'store:lock');
  const ra = record(la);
  const rb = record(lb);
  assert.deepEqual(la.getSnapshot(), { held: false, fencingToken: null, state: 'idle', error: null, lostReason: null });
  const p = la.lock(5000);
  assert.equal(la.getSnapshot().state, 'acquiring');
  assert.equal(await p, true);
  const held = la.getSnapshot();
  assert.equal(held.state, 'held');
  assert.equal(held.held, true);
  assert.ok(Number.isSafeInteger(held.fencingToken) && held.fencingToken > 0);
  assert.equal(await lb.lock(5000), false, 'busy');
  assert.equal(lb.getSnapshot().state, 'idle');
  assert.equal(lb.getSnapshot().held, false);
  await la.unlock();
  assert.deepEqual(la.getSnapshot(), { held: false, fencingToken: null, state: 'idle', error: null, lostReason: null });
  assert.deepEqual(
    ra.seen.map((x) => x.state).filter((v, i, xs) => v !== xs[i - 1]),
    ['acquiring', 'held', 'idle'],
  );
  assert.equal(await lb.lock(5000), true);
  assert.ok(lb.getSnapshot().fencingToken > held.fencingToken, 'tokens increase');
  await lb.unlock();
  ra.off();
  rb.off();
});

test('lock store: TTL expiry is state lost', async () => {
  const c = await newClient(url);
  const l = getLockStore(c, 'store:ttl');
  const { off } = record(l);
  assert.equal(await l.lock(150), true);
  await until('lost', () => l.getSnapshot().state === 'lost');
  const s = l.getSnapshot();
  assert.equal(s.held, false);
  assert.equal(s.fencingToken, null);
  assert.equal(s.lostReason, 'expired');
  assert.equal(await l.lock(5000), true, 'lock again after a loss');
  assert.equal(l.getSnapshot().lostReason, null);
  await l.unlock();
  off();
});

test('lock store: rejections are state error and still reject', async () => {
  const c = await newClient(url);
  const l = getLockStore(c, 'store:bad-ttl');
  await assert.rejects(l.lock(0), RangeError);
  assert.equal(l.getSnapshot().state, 'error');
  assert.ok(l.getSnapshot().error instanceof RangeError);
  await assert.rejects(l.lock(120000), { code: 'INVALID_TTL' }); // over --lock-ttl-max
  assert.equal(l.getSnapshot().error.code, 'INVALID_TTL');
  const n = await newClient(url, { start: false });
  await assert.rejects(getLockStore(n, 'x').unlock(), { code: 'NOT_READY' });
});

test('client store: a refused token is the snapshot error (useClientStatus().error), and setToken clears it', async () => {
  const { startServer: startProcess } = await import('../../scripts/server-process.mjs');
  const { TopGunClient, MemoryAdapter } = await import('@topgun-go/client');
  const { createHmac } = await import('node:crypto');
  const secret = 'react-store-secret';
  const jwt = await startProcess(['--jwt-secret', secret, '--data', 'memory']);
  const c = new TopGunClient({ serverUrl: jwt.url, storage: new MemoryAdapter(), token: 'not-a-jwt' });
  try {
    const s = getClientStore(c);
    const { seen, off } = record(s);
    await s.start();
    await until('AUTH_FAILED in the snapshot', () => s.getSnapshot().error?.code === 'AUTH_FAILED');
    assert.ok(s.getSnapshot().error.reason, 'with the server reason');
    assert.equal(s.getSnapshot().state, 'offline');
    assert.ok(seen.some((x) => x.error?.code === 'AUTH_FAILED'), 'listeners were told');
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'ann', exp: Math.floor(Date.now() / 1000) + 3600 })}`;
    c.setToken(`${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`);
    await until('ready, error cleared', () => s.getSnapshot().state === 'ready' && s.getSnapshot().error === null);
    off();
  } finally {
    await c.close();
    await jwt.stop();
  }
});
