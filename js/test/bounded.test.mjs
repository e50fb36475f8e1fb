// Bounded counters through the npm package under Node (MemoryAdapter: each
// client is its own replica), against the real server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../scripts/server-process.mjs';
import { startClient, until as untilWithin } from './helpers.mjs';
import { TopGunError } from '../dist/index.node.js';

let server;

before(async () => {
  server = await startServer(['--no-auth', '--data', 'memory']);
});

after(async () => {
  await server?.stop();
});

const newClient = (opts = {}) => startClient({ serverUrl: server.url, ...opts });
const until = (what, cond) => untilWithin(what, cond, 20000);

test('bounded counter: same handle, rights from the server, tryDecrement only with rights, never below min', async () => {
  const owner = await newClient();
  await until('owner ready', () => owner.state === 'ready');
  const stock = owner.getBoundedCounter('stock:js-1', { min: 0 });
  assert.equal(owner.getBoundedCounter('stock:js-1', { min: 0 }), stock);
  assert.equal(owner.getBoundedCounter('stock:js-1'), stock);
  await stock.loaded;
  assert.equal(stock.increment(10), 10);
  assert.equal(stock.get(), 10);
  assert.equal(stock.available(), 0, 'increments hand their rights to the server');
  assert.equal(stock.tryDecrement(), false);
  await until('stock synced', () => stock.synced);

  const seller = await newClient();
  await until('seller ready', () => seller.state === 'ready');
  const s = seller.getBoundedCounter('stock:js-1');
  const seen = [];
  const unsub = s.subscribe((v) => seen.push(v));
  await s.loaded;
  assert.equal(await s.requestRights(4), 4);
  assert.equal(s.available(), 4);
  seller.setOnline(false);
  let sold = 0;
  for (let i = 0; i < 100 && s.tryDecrement(); i++) sold++;
  assert.equal(sold, 4, 'sells exactly the rights held, offline');
  assert.equal(s.available(), 0);
  assert.equal(s.get(), 6);
  assert.ok(seen.includes(6), 'local spends reach subscribers');
  await s.flush();
  seller.setOnline(true);
  await until('sales synced', () => s.synced);
  await until('owner sees the sales (a remote change)', () => stock.get() === 6);

  // Return rights: they go back to the server for others.
  assert.equal(await s.requestRights(3), 3);
  s.returnRights(2);
  assert.equal(s.available(), 1);
  assert.throws(() => s.returnRights(5), RangeError);
  // The return is written behind: the server has it once it is synced.
  await s.flush();
  await until('returned rights synced', () => s.synced);
  assert.equal(await stock.requestRights(100), 5, 'the broker holds 6 - 1 = 5');
  unsub();
});

test('bounded counter: bad input gives clear errors', async () => {
  const c = await newClient();
  assert.throws(() => c.getBoundedCounter('bad name'), TypeError);
  assert.throws(() => c.getBoundedCounter('b:1', { min: 1.5 }), RangeError);
  const b = c.getBoundedCounter('b:1', { min: 5 });
  assert.throws(() => c.getBoundedCounter('b:1', { min: 0 }), (e) => e instanceof TopGunError && e.code === 'BOUND_MISMATCH');
  assert.throws(() => b.tryDecrement(0), RangeError);
  assert.throws(() => b.increment(-1), RangeError);
  await assert.rejects(b.requestRights(0), RangeError);
  await b.loaded;
  assert.equal(b.get(), 5);
  assert.equal(b.tryDecrement(1), false);
});

// A disposed handle gives way at once: getBoundedCounter right after
// dispose() (a React remount) is a new, live handle of the same counter,
// which sees the old one's sales and spends only the rights left.
test('bounded counter: dispose, then a new handle at once', async () => {
  const c = await newClient();
  await until('ready', () => c.state === 'ready');
  const a = c.getBoundedCounter('stock:js-remount');
  await a.loaded;
  a.increment(5);
  await a.flush();
  await until('stock synced', () => a.synced);
  assert.equal(await a.requestRights(3), 3);
  assert.equal(a.tryDecrement(), true); // pushed to Go by dispose, not yet by a tick
  const gone = a.dispose();
  const b = c.getBoundedCounter('stock:js-remount');
  assert.notEqual(b, a, 'a new handle, not the disposed one');
  assert.throws(() => a.increment(1), (e) => e instanceof TopGunError && e.code === 'CLOSED');
  await b.loaded;
  await gone;
  assert.equal(b.get(), 4);
  assert.equal(b.available(), 2);
  assert.equal(b.tryDecrement(2), true);
  assert.equal(b.tryDecrement(), false);
  await b.flush();
  await until('sales synced', () => b.synced);
  assert.equal(b.get(), 2);
});
