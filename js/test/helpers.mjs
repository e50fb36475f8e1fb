// Shared by the node:test files: a client starter whose clients are closed
// after the file's tests, and a polling wait.
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { TopGunClient, MemoryAdapter } from '../dist/index.node.js';

const clients = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
});

/** Starts a client with a MemoryAdapter; opts (serverUrl at least) override. */
export async function startClient(opts) {
  const c = new TopGunClient({ storage: new MemoryAdapter(), ...opts });
  await c.start();
  clients.push(c);
  return c;
}

/**
 * Polls cond every 5 ms until it holds. ms bounds the wait against hangs;
 * it is not a timing assertion.
 */
export async function until(what, cond, ms) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
