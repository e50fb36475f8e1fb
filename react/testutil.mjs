// Test helpers (outside test/, which node --test runs file by file): the
// real server as a process, clients with MemoryAdapter, polling.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after } from 'node:test';
import { TopGunClient, MemoryAdapter } from '@topgun-go/client';
import { startServer as startProcess } from '../scripts/server-process.mjs';

/**
 * Starts the built server (TOPGUN_SERVER_BIN) on a free port; resolves
 * {proc, url, stop}. Stop it in a top-level after(): one registered inside
 * before() runs at once.
 */
export function startServer() {
  assert.ok(
    process.env.TOPGUN_SERVER_BIN && fs.existsSync(process.env.TOPGUN_SERVER_BIN),
    'TOPGUN_SERVER_BIN must name the built server: `make build`, then TOPGUN_SERVER_BIN=$PWD/../bin/topgun-server npm test',
  );
  return startProcess(['--no-auth', '--data', 'memory', '--lock-ttl-max', '1m']);
}

const clients = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
});

/** A client of url that tests close at the end; started unless start is false. */
export async function newClient(url, { start = true } = {}) {
  const c = new TopGunClient({ serverUrl: url, storage: new MemoryAdapter() });
  clients.push(c);
  if (start) await c.start();
  return c;
}

/** Polls cond every 5 ms until it holds, failing after ms. */
export async function until(what, cond, ms = 20000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
