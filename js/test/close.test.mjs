// close() at every moment of the connection's life, and the errors a
// client reports, under Node with the real server as a process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { startServer } from '../../scripts/server-process.mjs';
import { startClient, until as untilWithin } from './helpers.mjs';
import { TopGunClient, MemoryAdapter, TopGunError } from '../dist/index.node.js';

const SECRET = 'close-test-secret';
let open; // no-auth server
let jwt; // JWT server

// Anything thrown or rejected without a handler while these tests run is
// a failure of close() (the bug: ws's "closed before the connection was
// established" error ended the process).
const unhandled = [];
const onUnhandled = (e) => unhandled.push(e);
process.on('unhandledRejection', onUnhandled);
process.on('uncaughtException', onUnhandled);

before(async () => {
  open = await startServer(['--no-auth', '--data', 'memory']);
  jwt = await startServer(['--jwt-secret', SECRET, '--data', 'memory']);
});

after(async () => {
  await open?.stop();
  await jwt?.stop();
  process.off('unhandledRejection', onUnhandled);
  process.off('uncaughtException', onUnhandled);
  assert.deepEqual(unhandled, [], 'nothing unhandled');
});

const until = (what, cond) => untilWithin(what, cond, 20000);

function sign(sub, expSeconds = 3600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + expSeconds })}`;
  return `${body}.${crypto.createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

function client(opts) {
  return new TopGunClient({ storage: new MemoryAdapter(), ...opts });
}

// serverHas waits until a fresh client of url reads want for name.
async function serverHas(url, name, want, opts = {}) {
  const c = await startClient({ serverUrl: url, ...opts });
  const n = c.getPNCounter(name);
  await until(`server has ${name}=${want} (reads ${n.get()})`, () => n.get() === want);
}

// A TCP listener that accepts and never answers: a WebSocket to it stays
// connecting.
async function blackHole() {
  const sockets = new Set();
  const srv = net.createServer((s) => sockets.add(s));
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `ws://127.0.0.1:${srv.address().port}`,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        srv.close(r);
      }),
  };
}

test('close() right after start() and a write delivers it (before the socket opened)', async () => {
  const c = client({ serverUrl: open.url });
  await c.start();
  const n = c.getPNCounter('close:before-dial');
  assert.equal(n.addAndGet(5), 5);
  const res = await c.close();
  assert.deepEqual(res, { delivered: true, undelivered: [], error: null });
  assert.equal(c.state, 'closed');
  assert.throws(() => n.increment(), (e) => e instanceof TopGunError && e.code === 'CLOSED');
  await serverHas(open.url, 'close:before-dial', 5);
});

test('close() while dialling a server that never answers resolves, reporting what it could not deliver', async () => {
  const hole = await blackHole();
  try {
    const c = client({ serverUrl: hole.url, closeTimeoutMs: 300 });
    await c.start();
    await until('connecting', () => c.state === 'connecting');
    c.getPNCounter('close:during-dial').addAndGet(2);
    const errors = [];
    c.onError((e) => errors.push(e));
    const res = await c.close();
    assert.equal(res.delivered, false);
    assert.deepEqual(res.undelivered, ['close:during-dial']);
    assert.ok(res.error instanceof TopGunError && res.error.code === 'UNDELIVERED', String(res.error));
    assert.equal(res.error.kept, false, 'MemoryAdapter keeps nothing');
    assert.ok(errors.some((e) => e.code === 'UNDELIVERED'), 'reported as an error event');
    assert.equal(c.state, 'closed');
    // Let the socket's late error event fire: it must be handled.
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    await hole.close();
  }
});

test('close() while authenticating delivers once the handshake completes', async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const c = client({ serverUrl: jwt.url, getToken: () => gate });
  await c.start();
  await until('authenticating', () => c.state === 'authenticating');
  c.getPNCounter('close:authenticating').addAndGet(3);
  const closing = c.close();
  release(sign('alice'));
  const res = await closing;
  assert.equal(res.delivered, true, String(res.error));
  await serverHas(jwt.url, 'close:authenticating', 3, { token: sign('bob') });
});

test('close() when ready delivers', async () => {
  const c = client({ serverUrl: open.url });
  await c.start();
  await until('ready', () => c.state === 'ready');
  c.getPNCounter('close:ready').addAndGet(4);
  assert.equal((await c.close()).delivered, true);
  await serverHas(open.url, 'close:ready', 4);
});

test('close() while reconnecting connects at once and delivers', async () => {
  const srv = await startServer(['--no-auth', '--data', 'memory']);
  let again;
  try {
    const c = client({ serverUrl: srv.url });
    await c.start();
    await until('ready', () => c.state === 'ready');
    await srv.stop();
    await until('offline', () => c.state === 'offline');
    c.getPNCounter('close:reconnecting').addAndGet(6);
    again = await startServer(['--no-auth', '--data', 'memory', '--addr', srv.addr]);
    // The client backs off about a second; close() does not wait for that.
    const res = await c.close();
    assert.equal(res.delivered, true, String(res.error));
    await serverHas(again.url, 'close:reconnecting', 6);
  } finally {
    await again?.stop();
  }
});

test('close() twice, before start(), and during start() resolve', async () => {
  const a = client({ serverUrl: open.url });
  const r1 = a.close();
  assert.equal(a.close(), r1, 'one close');
  assert.equal((await r1).delivered, true);
  await assert.rejects(a.start(), (e) => e.code === 'CLOSED');
  const b = client({ serverUrl: open.url });
  const starting = b.start();
  const res = await b.close();
  await starting;
  assert.equal(res.delivered, true);
  assert.equal(b.state, 'closed');
});

test('a bad, expired or missing token is reported with the server reason and stops the retries until setToken()', async () => {
  for (const [what, token, code] of [
    ['bad', 'not-a-jwt', 'AUTH_FAILED'],
    ['expired', sign('late', -3600), 'AUTH_FAILED'],
    ['missing', undefined, 'AUTH_REQUIRED'],
  ]) {
    const c = await startClient({ serverUrl: jwt.url, token });
    const errors = [];
    c.onError((e) => errors.push(e));
    const states = [];
    c.onStateChange((s, e) => states.push([s, e?.code]));
    await until(`${what}: error`, () => c.error?.code === code);
    assert.ok(c.error instanceof TopGunError);
    if (code === 'AUTH_FAILED') assert.ok(c.error.reason, `${what}: the server's reason: ${c.error.message}`);
    if (what === 'expired') assert.match(c.error.reason, /expired/i);
    // Held: a client that retried would be connecting again within its
    // backoff (about a second); one that holds never does.
    const seen = states.length;
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(states.slice(seen), [], `${what}: no retry while the token is unchanged`);
    assert.equal(c.state, 'offline');
    assert.ok(errors.some((e) => e.code === code), `${what}: error event`);
    c.setToken(sign('carol'));
    await until(`${what}: ready after setToken`, () => c.state === 'ready');
    assert.equal(c.error, null);
  }
});

test('getToken: after a refusal it is called again and a new token reconnects', async () => {
  let good = false;
  let calls = 0;
  const c = await startClient({
    serverUrl: jwt.url,
    getToken: async () => {
      calls++;
      return good ? sign('dave') : 'stale';
    },
  });
  await until('refused', () => c.error?.code === 'AUTH_FAILED');
  good = true;
  c.retryNow();
  await until('ready', () => c.state === 'ready');
  assert.ok(calls >= 2);
});

test('onSyncedChange: at once, false after a write, true after the confirmation', async () => {
  const c = await startClient({ serverUrl: open.url });
  await until('ready', () => c.state === 'ready');
  const n = c.getPNCounter('close:synced-events');
  const seen = [];
  const off = n.onSyncedChange((s) => seen.push(s));
  assert.deepEqual(seen, [true]);
  n.increment();
  n.increment();
  assert.deepEqual(seen, [true, false]);
  await until('synced event', () => seen.length === 3);
  assert.deepEqual(seen, [true, false, true]);
  assert.equal(n.synced, true);
  off();
  n.increment();
  assert.equal(seen.length, 3);
});

test('SERVER_ERROR frames reach onError with status and reason', async () => {
  // One node id used by two users: the server refuses the second user's
  // writes for it with ERROR 403.
  const nodeId = `shared-node-${Date.now()}`;
  const a = await startClient({ serverUrl: jwt.url, token: sign('erin'), nodeId });
  const na = a.getPNCounter('close:owned');
  na.increment();
  await na.flush();
  const b = await startClient({ serverUrl: jwt.url, token: sign('frank'), nodeId });
  const errors = [];
  b.onError((e) => errors.push(e));
  await until('ready', () => b.state === 'ready');
  b.getPNCounter('close:owned').addAndGet(2);
  await until('an ERROR frame', () => errors.some((e) => e.code === 'SERVER_ERROR'));
  const e = errors.find((x) => x.code === 'SERVER_ERROR');
  assert.equal(e.status, 403);
  assert.ok(e.reason, e.message);
});
