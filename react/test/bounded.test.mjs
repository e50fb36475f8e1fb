// useBoundedCounter's store against the real client and server, and the
// hook itself rendered (server rendering, then the store it reads).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createElement as h } from 'react';
import { renderToString } from 'react-dom/server';
import { TopGunProvider, TopGunReactError, useBoundedCounter } from '../dist/index.js';
import { getBoundedStore } from '../dist/store.js';
import { startServer, newClient, until } from '../testutil.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => server?.stop());

function render(client, f) {
  const tree = h(TopGunProvider, { client }, h(() => h('pre', null, JSON.stringify(f()))));
  return JSON.parse(/<pre>(.*)<\/pre>/s.exec(renderToString(tree))[1].replaceAll('&quot;', '"'));
}

test('useBoundedCounter: outside a provider NO_PROVIDER; without a client loading at min', () => {
  assert.throws(
    () => renderToString(h(() => useBoundedCounter('x'))),
    (e) => e instanceof TopGunReactError && e.code === 'NO_PROVIDER' && e.message.startsWith('useBoundedCounter must be used inside'),
  );
  assert.deepEqual(render(null, () => useBoundedCounter('ssr:b', { min: 3 })), {
    value: 3,
    available: 0,
    loading: true,
    synced: false,
  });
});

test('bounded store: loading, then value, available and synced follow local and remote changes', async () => {
  const owner = await newClient(server.url);
  const seller = await newClient(server.url);
  await until('both ready', () => owner.state === 'ready' && seller.state === 'ready');
  const name = 'react:stock-1';
  const os = getBoundedStore(owner, name, 0);
  assert.equal(getBoundedStore(owner, name, 0), os, 'one store per client and name');
  assert.throws(() => getBoundedStore(owner, name, 1), (e) => e.code === 'BOUND_MISMATCH');
  const ss = getBoundedStore(seller, name);
  const seen = [];
  const off = ss.subscribe(() => seen.push(ss.getSnapshot()));
  const offOwner = os.subscribe(() => {});
  await until('owner loaded', () => !os.getSnapshot().loading);
  assert.equal(os.increment(5), 5);
  await until('stock synced', () => os.getSnapshot().synced);
  await until('seller sees the stock', () => ss.getSnapshot().value === 5 && !ss.getSnapshot().loading);
  assert.equal(ss.tryDecrement(), false, 'no rights yet');
  assert.equal(await ss.requestRights(2), 2);
  await until('available 2', () => ss.getSnapshot().available === 2);
  assert.equal(ss.tryDecrement(), true);
  assert.equal(ss.tryDecrement(), true);
  assert.equal(ss.tryDecrement(), false);
  assert.deepEqual({ ...ss.getSnapshot(), synced: undefined }, { value: 3, available: 0, loading: false, synced: undefined });
  assert.equal(ss.getSnapshot(), ss.getSnapshot(), 'stable snapshots');
  await until('sales synced', () => ss.getSnapshot().synced);
  await until('owner sees the sales', () => os.getSnapshot().value === 3);
  assert.ok(seen.some((s) => s.value === 3 && s.available === 0));
  assert.equal(render(seller, () => useBoundedCounter(name).value), 3);
  off();
  offOwner();
});

// When its last subscriber leaves (the component unmounts) the store
// disposes its handle, and the next subscriber (a remount) reads and sells
// through a new one: the value and the rights carry over, nothing is sold
// twice.
test('bounded store: unmount disposes the handle, a remount carries on', async () => {
  const c = await newClient(server.url);
  await until('ready', () => c.state === 'ready');
  const name = 'stock:react-remount';
  const s = getBoundedStore(c, name);
  let off = s.subscribe(() => {});
  await until('loaded', () => !s.getSnapshot().loading);
  assert.equal(s.increment(4), 4);
  await until('stock synced', () => s.getSnapshot().synced);
  assert.equal(await s.requestRights(3), 3);
  assert.equal(s.tryDecrement(), true);
  const first = c.getBoundedCounter(name);
  off(); // unmount
  assert.notEqual(c.getBoundedCounter(name), first, 'the unmounted handle was disposed');
  off = s.subscribe(() => {}); // remount
  await until('loaded again', () => !s.getSnapshot().loading && s.getSnapshot().available === 2);
  assert.equal(s.getSnapshot().value, 3);
  assert.equal(s.tryDecrement(), true);
  assert.equal(s.tryDecrement(), true);
  assert.equal(s.tryDecrement(), false);
  await until('sales synced', () => s.getSnapshot().synced && s.getSnapshot().value === 1);
  off();
});
