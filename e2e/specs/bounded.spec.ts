import { test, expect, type Browser, type Page } from '@playwright/test';
import { base, harness, newHarnessPage, pageProblems, unique, waitReady } from './helpers';

// Bounded counters in real Chromium against the real server: profiles and
// tabs that sell offline never sell more than the stock, and rights held
// survive a reload. See docs/bounded-counters.md.

/** Opens a memory-backed page in a fresh profile and adds stock to name. */
async function addStock(browser: Browser, name: string, stock: number) {
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    await harness(p, 'memory');
    await waitReady(p);
    await p.evaluate(
      async ([n, k]) => {
        const b = (window as any).c.getBoundedCounter(n, { min: 0 });
        await b.loaded;
        b.increment(k);
        await b.flush();
        for (let i = 0; i < 2000 && !b.synced; i++) await new Promise((r) => setTimeout(r, 10));
        if (!b.synced) throw new Error('stock not synced');
      },
      [name, stock] as const,
    );
  } finally {
    await ctx.close();
  }
}

/** The server's value of name, as a fresh replica sees it once it stops changing to want. */
async function expectServerValue(browser: Browser, name: string, want: number) {
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    await harness(p, 'memory');
    await waitReady(p);
    await p.evaluate(async (n) => (window as any).c.getBoundedCounter(n, { min: 0 }).loaded, name);
    await expect.poll(() => p.evaluate((n) => (window as any).c.getBoundedCounter(n).get(), name)).toBe(want);
  } finally {
    await ctx.close();
  }
}

function open(page: Page, name: string) {
  return page.evaluate(async (n) => {
    const b = (window as any).c.getBoundedCounter(n, { min: 0 });
    await b.loaded;
    return { replica: (window as any).c.replicaId as string, available: b.available() as number };
  }, name);
}

function request(page: Page, name: string, n: number): Promise<number> {
  return page.evaluate(([name, n]) => (window as any).c.getBoundedCounter(name).requestRights(n), [name, n] as const);
}

/** Sells one at a time with tryDecrement until it fails (bounded), then stores the sales. */
function sellAll(page: Page, name: string): Promise<number> {
  return page.evaluate(async (n) => {
    const b = (window as any).c.getBoundedCounter(n);
    let sold = 0;
    for (let i = 0; i < 100000 && b.tryDecrement(1); i++) {
      sold++;
      if (sold % 3 === 0) await new Promise((r) => setTimeout(r, 0)); // interleave with the other page
    }
    await b.flush();
    return sold;
  }, name);
}

async function synced(page: Page, name: string) {
  await page.waitForFunction((n) => (window as any).c.getBoundedCounter(n).synced, name);
}

test('two profiles, both offline, sell concurrently and never more than the stock', async ({ browser }) => {
  const name = unique('bstock');
  const stock = 20;
  await addStock(browser, name, stock);
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await newHarnessPage(ca), await newHarnessPage(cb)];
  const problems = [a, b].map((p) => pageProblems(p, /WebSocket|ERR_INTERNET_DISCONNECTED/));
  await Promise.all([waitReady(a), waitReady(b)]);
  await Promise.all([open(a, name), open(b, name)]);
  const [ga, gb] = await Promise.all([request(a, name, 15), request(b, name, 15)]);
  expect(ga + gb, 'the broker grants no more than the stock').toBe(stock);

  await Promise.all([ca.setOffline(true), cb.setOffline(true)]);
  await Promise.all([a, b].map((p) => p.waitForFunction(() => (window as any).c.state !== 'ready')));
  const [sa, sb] = await Promise.all([sellAll(a, name), sellAll(b, name)]);
  expect(sa).toBe(ga);
  expect(sb).toBe(gb);
  expect(sa + sb, 'total sold').toBeLessThanOrEqual(stock);
  for (const p of [a, b]) {
    expect(await p.evaluate((n) => (window as any).c.getBoundedCounter(n).get(), name)).toBeGreaterThanOrEqual(0);
  }

  await Promise.all([ca.setOffline(false), cb.setOffline(false)]);
  await Promise.all([synced(a, name), synced(b, name)]);
  await expectServerValue(browser, name, stock - sa - sb);
  expect(problems.flat()).toEqual([]);
  await Promise.all([ca.close(), cb.close()]);
});

test('two tabs of one profile hold different rights; a closed tab\'s rights go to the next tab', async ({ browser }) => {
  const name = unique('btabs');
  await addStock(browser, name, 10);
  const ctx = await browser.newContext();
  const [a, b] = [await newHarnessPage(ctx), await newHarnessPage(ctx)];
  const problems = [a, b].map((p) => pageProblems(p, /WebSocket|ERR_INTERNET_DISCONNECTED/));
  await Promise.all([waitReady(a), waitReady(b)]);
  const nodeA = await a.evaluate(() => (window as any).c.nodeId);
  expect(await b.evaluate(() => (window as any).c.nodeId), 'tabs share the profile node id').toBe(nodeA);
  const [oa, ob] = await Promise.all([open(a, name), open(b, name)]);
  expect(oa.replica).not.toBe(ob.replica);
  expect([oa.replica, ob.replica].sort()).toEqual([`${nodeA}:r1`, `${nodeA}:r2`]);

  expect(await request(a, name, 6)).toBe(6);
  expect(await request(b, name, 6)).toBe(4);
  await expect.poll(() => a.evaluate((n) => (window as any).c.getBoundedCounter(n).available(), name)).toBe(6);
  expect(await b.evaluate((n) => (window as any).c.getBoundedCounter(n).available(), name)).toBe(4);

  // Both offline, selling at once: each spends its own rights only.
  await ctx.setOffline(true);
  await Promise.all([a, b].map((p) => p.waitForFunction(() => (window as any).c.state !== 'ready')));
  const sellSome = (p: Page, k: number) =>
    p.evaluate(
      async ([n, k]) => {
        const c = (window as any).c.getBoundedCounter(n);
        let sold = 0;
        while (sold < k && c.tryDecrement(1)) sold++;
        await c.flush();
        return sold;
      },
      [name, k] as const,
    );
  const [sa, sb] = await Promise.all([sellSome(a, 2), sellAll(b, name)]);
  expect(sa).toBe(2);
  expect(sb).toBe(4);
  expect(await b.evaluate((n) => (window as any).c.getBoundedCounter(n).tryDecrement(1), name)).toBe(false);

  // A closes with 4 rights; the next tab takes A's identity and its rights.
  await a.evaluate(() => (window as any).c.close());
  await a.close();
  await ctx.setOffline(false); // to load the page
  const c = await newHarnessPage(ctx);
  problems.push(pageProblems(c, /WebSocket|ERR_INTERNET_DISCONNECTED/));
  const oc = await open(c, name);
  expect(oc.replica).toBe(oa.replica);
  expect(oc.available).toBe(4);
  expect(await sellAll(c, name)).toBe(4);

  await Promise.all([synced(b, name), synced(c, name)]);
  await expectServerValue(browser, name, 0);
  expect(problems.flat()).toEqual([]);
  await ctx.close();
});

test('rights held survive a reload', async ({ browser }) => {
  const name = unique('breload');
  await addStock(browser, name, 8);
  const ctx = await browser.newContext();
  const p = await newHarnessPage(ctx);
  const problems = pageProblems(p);
  await waitReady(p);
  const before = await open(p, name);
  expect(await request(p, name, 6)).toBe(6);
  await p.evaluate(async (n) => {
    const b = (window as any).c.getBoundedCounter(n);
    b.tryDecrement(2);
    await b.flush();
  }, name);
  await p.reload();
  await p.waitForFunction(() => (window as any).harnessReady === true);
  await p.evaluate(async () => {
    const { TopGunClient, IDBAdapter } = (window as any).tg;
    const c = new TopGunClient({ serverUrl: 'ws://' + location.host, storage: new IDBAdapter() });
    await c.start();
    c.setOnline(false); // the rights must come from IndexedDB, not the server
    (window as any).c = c;
  });
  const after = await open(p, name);
  expect(after.replica).toBe(before.replica);
  expect(after.available).toBe(4);
  expect(await p.evaluate((n) => (window as any).c.getBoundedCounter(n).get(), name)).toBe(6);
  expect(problems).toEqual([]);
  await ctx.close();
});

test('demo: two offline windows cannot sell more than the stock', async ({ browser }) => {
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await ca.newPage(), await cb.newPage()];
  await a.goto(base() + '/');
  await b.goto(base() + '/');
  for (const p of [a, b]) await expect(p.getByTestId('conn-state')).toHaveText('ready');
  for (let i = 0; i < 6; i++) await a.getByTestId('stock-inc').click();
  // Each window asks for rights on its own (the demo's low-water policy).
  // Earlier specs' windows may hold some for good (their profiles are
  // gone), so only what these two hold is sellable here.
  const avail = async (p: Page) => Number(await p.getByTestId('stock-available').textContent());
  const val = async (p: Page) => Number(await p.getByTestId('stock-value').textContent());
  await expect.poll(async () => (await avail(a)) >= 1 && (await avail(b)) >= 1).toBe(true);
  await Promise.all([ca.setOffline(true), cb.setOffline(true)]);
  for (const p of [a, b]) await expect(p.getByTestId('conn-state')).not.toHaveText('ready');
  const held = (await avail(a)) + (await avail(b));
  const before = Math.min(await val(a), await val(b));
  let sold = 0;
  for (let i = 0; i < held + 3; i++) {
    for (const p of [a, b]) {
      const v = await val(p);
      await p.getByTestId('stock-dec').click();
      if ((await val(p)) < v) sold++;
    }
  }
  expect(sold, 'sold exactly the rights the two windows held').toBe(held);
  expect(sold).toBeLessThanOrEqual(before);
  for (const p of [a, b]) {
    expect(await val(p)).toBeGreaterThanOrEqual(0);
    expect(await avail(p)).toBe(0);
    await expect(p.getByTestId('stock-note')).toHaveText(/no rights here/);
  }
  await Promise.all([ca.setOffline(false), cb.setOffline(false)]);
  await expect.poll(async () => (await val(a)) === (await val(b)) && (await val(a)) >= 0).toBe(true);
  await Promise.all([ca.close(), cb.close()]);
});
