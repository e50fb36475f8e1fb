import { test, expect } from '@playwright/test';
// Plain ESM helper shared with the JS tests and the global setup.
import { startServer } from '../../scripts/server-process.mjs';
import { base, startClient, unique } from './helpers';

// A page whose serverUrl lists two servers keeps working when the first one
// dies: the client moves to the second and re-sends its counters there.
// (Two standalone servers with their own stores; in cluster mode they would
// share etcd — the client side is the same.)
test('serverUrl list: the browser client fails over to the next server', async ({ browser }) => {
  const name = unique('failover');
  const a = await startServer(['--no-auth', '--data', 'memory']);
  const b = await startServer(['--no-auth', '--data', 'memory']);
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    await page.goto(base() + '/harness.html');
    await startClient(page, 'idb', [a.url, b.url]);
    await page.waitForFunction((u) => (window as any).c.state === 'ready' && (window as any).c.url === u, a.url);
    await page.evaluate((n) => (window as any).c.getPNCounter(n).addAndGet(5), name);
    await page.evaluate((n) => (window as any).c.getPNCounter(n).flush(), name);

    a.proc.kill('SIGKILL'); // the first server dies
    await page.waitForFunction((u) => (window as any).c.state === 'ready' && (window as any).c.url === u, b.url);
    await page.evaluate((n) => (window as any).c.getPNCounter(n).addAndGet(2), name);

    // Another browser profile on the second server sees everything.
    const other = await (await browser.newContext()).newPage();
    await other.goto(base() + '/harness.html');
    await startClient(other, 'memory', b.url);
    await expect.poll(() => other.evaluate((n) => (window as any).c.getPNCounter(n).get(), name)).toBe(7);
    await other.context().close();
  } finally {
    await ctx.close();
    await a.stop();
    await b.stop();
  }
});
