import { test, expect } from '@playwright/test';
import { expectValue, newHarnessPage, pageProblems, serverValue, unique, value, waitReady } from './helpers';

// Tabs of one browser profile share IndexedDB and a node id. A write an
// offline tab stores is announced to the other tabs (BroadcastChannel),
// and an online one delivers it to the server: before that fix, it stayed
// pending until the offline tab came back or a tab reloaded.
test('any online tab of a profile delivers writes made by an offline tab', async ({ browser }) => {
  const shared = unique('tabs-shared'); // B has a handle for it
  const unopened = unique('tabs-unopened'); // B never opens it (until the end)
  const ctx = await browser.newContext();
  const [a, b] = [await newHarnessPage(ctx), await newHarnessPage(ctx)];
  const problems = [a, b].map((p) => pageProblems(p));
  await Promise.all([waitReady(a), waitReady(b)]);
  await b.evaluate((n) => (window as any).c.getPNCounter(n), shared);

  // A goes offline, records every state it moves to from now on, and writes.
  await a.evaluate(() => (window as any).c.setOnline(false));
  await a.waitForFunction(() => (window as any).c.state === 'offline');
  await a.evaluate(
    ([shared, unopened]) => {
      const w = window as any;
      w.statesSinceOffline = [] as string[];
      w.c.onStateChange((s: string) => w.statesSinceOffline.push(s));
      w.c.getPNCounter(shared).addAndGet(7);
      w.c.getPNCounter(unopened).addAndGet(7);
    },
    [shared, unopened] as const,
  );
  expect(await value(a, shared)).toBe(7);
  expect(await value(a, unopened)).toBe(7);

  // B, online, picks A's writes up from IndexedDB and delivers them.
  await expect
    .poll(
      () =>
        b.evaluate((n) => {
          const k = (window as any).c.getPNCounter(n);
          return { value: k.get(), synced: k.synced };
        }, shared),
      { message: `B's handle of ${shared}` },
    )
    .toEqual({ value: 7, synced: true });
  await serverValue(browser, shared, 7);
  await serverValue(browser, unopened, 7);

  // ...while A never left 'offline'.
  expect(await a.evaluate(() => (window as any).c.state)).toBe('offline');
  expect(await a.evaluate(() => (window as any).c.online)).toBe(false);
  expect(await a.evaluate(() => (window as any).statesSinceOffline), 'A state changes while offline').toEqual([]);

  // B loaded the counter it never opened, and it is confirmed there.
  expect(
    await b.evaluate((n) => {
      const k = (window as any).c.getPNCounter(n);
      return { value: k.get(), synced: k.synced };
    }, unopened),
  ).toEqual({ value: 7, synced: true });

  // A back online sends the same entries (same node id): no double count.
  await a.evaluate(() => (window as any).c.setOnline(true));
  await waitReady(a);
  await a.evaluate(
    async ([shared, unopened]) => {
      const c = (window as any).c;
      await c.getPNCounter(shared).flush();
      await c.getPNCounter(unopened).flush();
    },
    [shared, unopened] as const,
  );
  for (const n of [shared, unopened]) {
    await expect
      .poll(() => a.evaluate((n) => (window as any).c.getPNCounter(n).synced, n), { message: `A's ${n} synced` })
      .toBe(true);
    await expectValue(a, n, 7);
    await expectValue(b, n, 7);
    await serverValue(browser, n, 7);
  }
  expect(problems.flat()).toEqual([]);
  await ctx.close();
});
