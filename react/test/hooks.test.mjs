// The hooks under react-dom/server: the first render (what a page shows
// before effects run) and the provider errors. What the hooks do after
// effects, in a browser, the demo page's Playwright specs check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createElement as h } from 'react';
import { renderToString } from 'react-dom/server';
import {
  TopGunProvider,
  TopGunReactError,
  useClient,
  useClientStatus,
  useLock,
  usePNCounter,
} from '../dist/index.js';
import { getLockStore } from '../dist/store.js';
import { startServer, newClient } from '../testutil.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => server?.stop());

// render renders f's JSON under a provider of client (none when null).
function render(client, f, props = {}) {
  function Probe() {
    return h('pre', null, JSON.stringify(f()));
  }
  const tree = client ? h(TopGunProvider, { client, ...props }, h(Probe)) : h(Probe);
  const html = renderToString(tree);
  const m = /<pre>(.*)<\/pre>/s.exec(html);
  return m ? JSON.parse(m[1].replaceAll('&quot;', '"').replaceAll('&amp;', '&')) : html;
}

test('every hook outside a provider throws NO_PROVIDER with the fix', () => {
  for (const [name, f] of [
    ['useClient', () => useClient()],
    ['useClientStatus', () => useClientStatus()],
    ['usePNCounter', () => usePNCounter('x')],
    ['useLock', () => useLock('x')],
  ]) {
    assert.throws(
      () => render(null, f),
      (e) =>
        e instanceof TopGunReactError &&
        e instanceof Error &&
        e.code === 'NO_PROVIDER' &&
        e.message.startsWith(`${name} must be used inside <TopGunProvider client={...}>; wrap your app: `) &&
        e.message.includes('<TopGunProvider client={client}><App /></TopGunProvider>'),
      name,
    );
  }
});

test('the provider needs a client', () => {
  assert.throws(() => renderToString(h(TopGunProvider, {}, 'x')), TypeError);
});

test('client={null} (server-side rendering): every hook is loading, nothing touches IndexedDB', () => {
  // Node has no indexedDB: a hook that reached for it would throw.
  assert.equal(typeof globalThis.indexedDB, 'undefined');
  const tree = (f) => h(TopGunProvider, { client: null }, h(() => h('pre', null, JSON.stringify(f()))));
  const out = (f) => JSON.parse(/<pre>(.*)<\/pre>/s.exec(renderToString(tree(f)))[1].replaceAll('&quot;', '"'));
  assert.deepEqual(out(() => useClientStatus()), { state: 'idle', loading: true, error: null });
  assert.deepEqual(out(() => usePNCounter('ssr:a')), { value: 0, loading: true, synced: false });
  assert.deepEqual(out(() => useLock('ssr:l')), {
    held: false,
    fencingToken: null,
    state: 'idle',
    error: null,
    lostReason: null,
  });
  assert.equal(out(() => useClient()), null);
  assert.equal(
    renderToString(h(TopGunProvider, { client: null, fallback: h('i', null, 'loading') }, h('b', null, 'app'))),
    '<i>loading</i>',
  );
});

test('before start: loading, value 0, lock idle, fallback', async () => {
  const c = await newClient(server.url, { start: false });
  assert.equal(
    render(c, () => useClient() === c),
    true,
  );
  assert.deepEqual(render(c, () => useClientStatus()), { state: 'idle', loading: true, error: null });
  assert.deepEqual(render(c, () => usePNCounter('hooks:a')), { value: 0, loading: true, synced: false });
  assert.deepEqual(render(c, () => useLock('hooks:l')), {
    held: false,
    fencingToken: null,
    state: 'idle',
    error: null,
    lostReason: null,
  });
  const html = renderToString(h(TopGunProvider, { client: c, fallback: h('i', null, 'starting') }, h('b', null, 'app')));
  assert.equal(html, '<i>starting</i>');
});

test('a started client: values at once, stable callbacks, lock state', async () => {
  const c = await newClient(server.url);
  const n = c.getPNCounter('hooks:b');
  n.addAndGet(5);
  await n.loaded; // the stored state is read in the background: loading until then
  const got = [];
  const r = render(c, () => {
    const x = usePNCounter('hooks:b');
    got.push(x);
    return x;
  });
  assert.deepEqual({ value: r.value, loading: r.loading }, { value: 5, loading: false });
  assert.deepEqual(render(c, () => useClientStatus().loading), false);
  render(c, () => got.push(usePNCounter('hooks:b')));
  assert.equal(got[0].increment, got[1].increment, 'increment is stable');
  assert.equal(got[0].add, got[1].add, 'add is stable');
  assert.equal(got[0].increment(), 6);
  assert.equal(got[0].add(-2), 4);
  assert.equal(n.get(), 4);

  assert.equal(await getLockStore(c, 'hooks:l2').lock(5000), true);
  const l = render(c, () => useLock('hooks:l2'));
  assert.equal(l.held, true);
  assert.equal(l.state, 'held');
  assert.ok(l.fencingToken > 0);
  await getLockStore(c, 'hooks:l2').unlock();
  assert.equal(render(c, () => useLock('hooks:l2')).state, 'idle');
  const html = renderToString(h(TopGunProvider, { client: c, fallback: 'starting' }, 'app'));
  assert.equal(html, 'app');
});
