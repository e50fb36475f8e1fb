import net from 'node:net';
import { test, expect, type Page } from '@playwright/test';
import { base, harness, pageProblems, serverValue, startClient, unique, value, waitReady } from './helpers';

// close() in Chromium at every moment of the connection's life: it
// delivers within closeTimeoutMs, never rejects, and what it could not
// deliver stays in IndexedDB for the next start().

// Chromium logs a refused WebSocket itself; that line is not the client's.
const wsRefused = /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/?' failed/;

let problems: string[] = [];

test.beforeEach(async ({ page }) => {
  problems = pageProblems(page, wsRefused);
  // close() resolves an object holding a TopGunError, which does not survive
  // page.evaluate's serialization: tests return closeResult(r) instead.
  await page.addInitScript(() => {
    (window as any).closeResult = (r: any) => ({
      delivered: r.delivered,
      undelivered: r.undelivered,
      error: r.error && { name: r.error.name, code: r.error.code, kept: r.error.kept, counters: r.error.counters },
    });
  });
});

test.afterEach(() => {
  expect(problems, 'page errors (an unhandled rejection is one) and console errors').toEqual([]);
});

const delivered = { delivered: true, undelivered: [], error: null };

/** Calls window.c.close() and returns its result and the state after it. */
function close(page: Page) {
  return page.evaluate(async () => {
    const w = window as any;
    const r = await w.c.close();
    return { ...w.closeResult(r), state: w.c.state };
  });
}

/** A ws:// URL on 127.0.0.1 where nothing listens. */
async function refusedUrl() {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return `ws://127.0.0.1:${port}`;
}

test('close() at once after start() and a write delivers it (before the socket opened)', async ({ page, browser }) => {
  const name = unique('close-at-start');
  await page.goto(base() + '/harness.html');
  await page.waitForFunction(() => (window as any).harnessReady === true);
  // All in one task chain: a round trip to the test between start() and the
  // write would give the socket time to open.
  const res = await page.evaluate(async (name) => {
    const w = window as any;
    const { TopGunClient, IDBAdapter } = w.tg;
    const c = new TopGunClient({ serverUrl: 'ws://' + location.host, storage: new IDBAdapter() });
    await c.start();
    const stateAtClose = c.state;
    c.getPNCounter(name).addAndGet(5);
    const r = await c.close();
    return { ...w.closeResult(r), stateAtClose, state: c.state };
  }, name);
  expect(res.stateAtClose, 'closed before the connection was ready').not.toBe('ready');
  expect(res).toEqual({ ...delivered, stateAtClose: res.stateAtClose, state: 'closed' });
  await serverValue(browser, name, 5);
});

test('close() when ready delivers the last writes', async ({ page, browser }) => {
  const name = unique('close-ready');
  await harness(page);
  await waitReady(page);
  await page.evaluate((n) => (window as any).c.getPNCounter(n).addAndGet(3), name);
  expect(await close(page)).toEqual({ ...delivered, state: 'closed' });
  const afterClose = await page.evaluate((n) => {
    try {
      (window as any).c.getPNCounter(n).increment();
      return 'no error';
    } catch (e: any) {
      return e.code;
    }
  }, name);
  expect(afterClose, 'a write after close()').toBe('CLOSED');
  await serverValue(browser, name, 3);
});

test('close() with the server unreachable keeps the writes in IndexedDB; the next start() sends them', async ({ page, browser }) => {
  const name = unique('close-unreachable');
  await page.goto(base() + '/harness.html');
  await startClient(page, 'idb', await refusedUrl(), { closeTimeoutMs: 300 });
  const res = await page.evaluate(async (n) => {
    const w = window as any;
    w.reported = [] as string[];
    w.c.onError((e: any) => w.reported.push(e.code));
    w.c.getPNCounter(n).addAndGet(4);
    const r = await w.c.close();
    return { ...w.closeResult(r), state: w.c.state };
  }, name);
  expect(res).toEqual({
    delivered: false,
    undelivered: [name],
    error: { name: 'TopGunError', code: 'UNDELIVERED', kept: true, counters: [name] },
    state: 'closed',
  });
  expect(await page.evaluate(() => (window as any).reported), "'error' events").toContain('UNDELIVERED');

  // Same page, same IndexedDB: a new client on the real server sends them.
  await startClient(page, 'idb');
  expect(await value(page, name), 'loaded from IndexedDB').toBe(4);
  await waitReady(page);
  await serverValue(browser, name, 4);
  await expect
    .poll(() => page.evaluate((n) => (window as any).c.getPNCounter(n).synced, name), { message: `${name} synced` })
    .toBe(true);
  expect(await close(page)).toEqual({ ...delivered, state: 'closed' });
});

test('close() called twice returns the same promise and delivers once', async ({ page, browser }) => {
  const name = unique('close-twice');
  await harness(page);
  await waitReady(page);
  const res = await page.evaluate(async (n) => {
    const w = window as any;
    w.c.getPNCounter(n).addAndGet(2);
    const p1 = w.c.close();
    const p2 = w.c.close();
    const [r1, r2] = await Promise.all([p1, p2]);
    const p3 = w.c.close(); // after it resolved, too
    return { same: p1 === p2 && p2 === p3, r1: w.closeResult(r1), r2: w.closeResult(r2), r3: w.closeResult(await p3) };
  }, name);
  expect(res).toEqual({ same: true, r1: delivered, r2: delivered, r3: delivered });
  await serverValue(browser, name, 2);
});

test('close() before start() resolves, and start() after it rejects with CLOSED', async ({ page }) => {
  await page.goto(base() + '/harness.html');
  await page.waitForFunction(() => (window as any).harnessReady === true);
  const res = await page.evaluate(async () => {
    const w = window as any;
    const { TopGunClient, IDBAdapter } = w.tg;
    const c = new TopGunClient({ serverUrl: 'ws://' + location.host, storage: new IDBAdapter() });
    const r = w.closeResult(await c.close());
    let start = 'resolved';
    try {
      await c.start();
    } catch (e: any) {
      start = e.code;
    }
    return { r, state: c.state, start };
  });
  expect(res).toEqual({ r: delivered, state: 'closed', start: 'CLOSED' });
});
