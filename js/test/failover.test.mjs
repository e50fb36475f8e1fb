// serverUrl as a list: the client fails over to the next server when its
// server dies. The servers are processes (scripts/server-process.mjs) with
// --data memory, which cannot share state: server 2 learns the counter
// from the failed-over client itself, which resyncs every counter on ready.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../scripts/server-process.mjs';
import { startClient, until as untilWithin } from './helpers.mjs';
import { TopGunClient, MemoryAdapter } from '../dist/index.node.js';

const stops = [];
after(async () => {
  await Promise.all(stops.map((stop) => stop()));
});

async function server() {
  const s = await startServer(['--no-auth', '--data', 'memory']);
  stops.push(s.stop);
  return s;
}

const newClient = (serverUrl) => startClient({ serverUrl });
const until = (what, cond) => untilWithin(what, cond, 30000);

test('serverUrl: a ws(s):// URL or a non-empty array of them, else TypeError', () => {
  const rule = /ws:\/\/ or wss:\/\/ URL, or a non-empty array of them/;
  for (const bad of [undefined, '', 'http://x', [], ['ws://a', 'http://b'], ['ws://a', 1], 42, { 0: 'ws://a' }]) {
    assert.throws(
      () => new TopGunClient({ serverUrl: bad }),
      (e) => e instanceof TypeError && rule.test(e.message),
      `serverUrl ${JSON.stringify(bad)}`,
    );
  }
  assert.throws(() => new TopGunClient(), TypeError);
  const list = ['wss://a.example/ws', 'ws://b.example/ws'];
  const c = new TopGunClient({ serverUrl: list });
  assert.equal(c.url, 'wss://a.example/ws', 'url before start() is the first');
  list[0] = 'ws://changed';
  assert.equal(c.url, 'wss://a.example/ws', 'the client keeps its own copy');
  assert.equal(new TopGunClient({ serverUrl: 'ws://one' }).url, 'ws://one');
});

test('the client fails over to the next server when its server dies', async () => {
  const s1 = await server();
  const s2 = await server();
  const c = await newClient([s1.url, s2.url]);
  await until('ready', () => c.state === 'ready');
  assert.equal(c.url, s1.url);

  const counter = c.getPNCounter('failover');
  counter.addAndGet(5);
  await counter.flush();
  const lock = c.getLock('failover');
  assert.equal(await lock.lock(60000), true);
  const lost = new Promise((r) => lock.onLost(r));

  const watcher = await newClient(s2.url);
  const seen = watcher.getPNCounter('failover');
  await until('the watcher ready', () => watcher.state === 'ready');

  let left = false;
  const off = c.onStateChange((s) => {
    if (s !== 'ready') left = true;
  });
  process.kill(s1.proc.pid, 'SIGKILL');
  await until('the client to notice', () => left);
  off();
  assert.equal(await lost, 'disconnected');
  await until('ready on server 2', () => c.state === 'ready');
  assert.equal(c.url, s2.url);

  // Server 2 never saw the first 5 until the client resynced on ready.
  counter.addAndGet(2);
  await counter.flush();
  await until('the watcher on server 2 sees 7', () => seen.get() === 7);
  assert.equal(counter.get(), 7);
  assert.equal(counter.synced, true);
});
