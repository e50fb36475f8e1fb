import { test, expect } from '@playwright/test';
import { expectValue, harness, incrementMany, loadedValue, newHarnessPage, serverValue, startClient, unique, value, waitReady } from './helpers';

test('two browser profiles increment concurrently and converge to the exact total', async ({ browser }) => {
  const name = unique('converge');
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await newHarnessPage(ca), await newHarnessPage(cb)];
  await Promise.all([waitReady(a), waitReady(b)]);
  const nodes = await Promise.all([a, b].map((p) => p.evaluate(() => (window as any).c.nodeId)));
  expect(nodes[0]).not.toBe(nodes[1]);
  await Promise.all([incrementMany(a, name, 300), incrementMany(b, name, 200)]);
  await a.evaluate((n) => (window as any).c.getPNCounter(n).addAndGet(-50), name);
  await expectValue(a, name, 450);
  await expectValue(b, name, 450);
  await serverValue(browser, name, 450);
  await ca.close();
  await cb.close();
});

test('offline: writes persist across a reload and reach the server when back online', async ({ browser }) => {
  const name = unique('offline');
  const ctx = await browser.newContext();
  const other = await browser.newContext();
  const watcher = await newHarnessPage(other);
  await waitReady(watcher);
  await watcher.evaluate((n) => (window as any).c.getPNCounter(n), name);

  const page = await newHarnessPage(ctx);
  await waitReady(page);
  await incrementMany(page, name, 3);
  await expectValue(watcher, name, 3);

  // Serve the app shell from a cache while offline, as a service worker
  // would: the reload below must not need the network.
  const cache = new Map<string, { body: Buffer; headers: Record<string, string> }>();
  await ctx.route('**/*', async (route) => {
    const url = route.request().url();
    const hit = cache.get(url);
    if (hit) return route.fulfill({ body: hit.body, headers: hit.headers });
    const resp = await route.fetch();
    cache.set(url, { body: await resp.body(), headers: resp.headers() });
    return route.fulfill({ response: resp });
  });
  await page.reload();
  await ctx.setOffline(true);
  await startClient(page);
  await page.waitForFunction(() => (window as any).c.state !== 'ready');
  await incrementMany(page, name, 7);
  // The stored 3 is read from IndexedDB when the counter is first asked
  // for; the 7 writes made meanwhile count on top of it.
  expect(await loadedValue(page, name)).toBe(10);

  await page.reload(); // offline: served from the cache above
  await startClient(page);
  expect(await loadedValue(page, name), 'the offline writes survived the reload').toBe(10);
  expect(await watcher.evaluate((n) => (window as any).c.getPNCounter(n).get(), name)).toBe(3);

  await ctx.setOffline(false);
  await waitReady(page);
  await expectValue(watcher, name, 10);
  await serverValue(browser, name, 10);
  await ctx.close();
  await other.close();
});

test('two tabs of one profile increment the same counter 500 times each at once', async ({ browser }) => {
  const name = unique('tabs');
  const ctx = await browser.newContext();
  const [t1, t2] = [await newHarnessPage(ctx), await newHarnessPage(ctx)];
  await Promise.all([waitReady(t1), waitReady(t2)]);
  const nodes = await Promise.all([t1, t2].map((p) => p.evaluate(() => (window as any).c.nodeId)));
  expect(nodes[0], 'tabs share the profile node id').toBe(nodes[1]);
  await Promise.all([incrementMany(t1, name, 500), incrementMany(t2, name, 500)]);
  await expectValue(t1, name, 1000);
  await expectValue(t2, name, 1000);
  await serverValue(browser, name, 1000);
  for (const t of [t1, t2]) {
    await t.reload();
    await harness(t);
    expect(await loadedValue(t, name), 'after reload, from IndexedDB').toBe(1000);
  }
  await ctx.close();
});

test('bad input throws the documented errors and changes nothing', async ({ page }) => {
  await harness(page);
  const res = await page.evaluate(async () => {
    const c = (window as any).c;
    const k = c.getPNCounter('bad-input');
    const before = k.get();
    const out: string[] = [];
    for (const d of [1.5, NaN, Infinity, -Infinity, 2 ** 53, '1']) {
      try {
        k.addAndGet(d);
        out.push('no error');
      } catch (e: any) {
        out.push(e.name);
      }
    }
    for (const n of ['', 'a b', 'x'.repeat(257)]) {
      try {
        c.getPNCounter(n);
        out.push('no error');
      } catch (e: any) {
        out.push(e.name + (/A-Z a-z 0-9/.test(e.message) ? ':rule' : ''));
      }
    }
    try {
      await c.getLock('l').lock(0);
      out.push('no error');
    } catch (e: any) {
      out.push(e.name);
    }
    return { out, unchanged: k.get() === before };
  });
  expect(res.out).toEqual([
    'RangeError', 'RangeError', 'RangeError', 'RangeError', 'RangeError', 'RangeError',
    'TypeError:rule', 'TypeError:rule', 'TypeError:rule', 'RangeError',
  ]);
  expect(res.unchanged).toBe(true);
});
