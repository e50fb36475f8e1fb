import { test, expect, type Page } from '@playwright/test';
import { newHarnessPage, unique, waitReady } from './helpers';

const lockCall = (p: Page, name: string, ttl: number, waitMs = 0) =>
  p.evaluate(
    async ([n, ttl, waitMs]) => {
      const l = (window as any).c.getLock(n);
      const ok = await l.lock(ttl, { waitMs });
      return { ok, token: l.fencingToken as number | null };
    },
    [name, ttl, waitMs] as const,
  );

test('five pages lock together: one winner, strictly increasing tokens, release on page close', async ({ browser }) => {
  const name = unique('job-queue');
  const ctx = await browser.newContext();
  const pages = [];
  for (let i = 0; i < 5; i++) pages.push(await newHarnessPage(ctx, 'memory'));
  await Promise.all(pages.map(waitReady));

  const first = await Promise.all(pages.map((p) => lockCall(p, name, 60000)));
  expect(first.filter((r) => r.ok)).toHaveLength(1);
  expect(first.filter((r) => !r.ok).every((r) => r.token === null)).toBe(true);

  // Everyone else queues; each holder releases in turn: grants arrive in
  // order with strictly increasing tokens and never overlap.
  const holder = first.findIndex((r) => r.ok);
  const tokens = [first[holder].token as number];
  const waiters = pages.filter((_, i) => i !== holder);
  const pending = waiters.map((p) => lockCall(p, name, 60000, 60000));
  let current = pages[holder];
  for (let round = 0; round < waiters.length; round++) {
    await current.evaluate((n) => (window as any).c.getLock(n).unlock(), name);
    const next = await Promise.race(
      waiters.map((p, i) => pending[i].then((r) => ({ p, r, i }))).filter((_, i) => !waiters[i].isClosed()),
    );
    // Drop the winner from the race for the next round.
    pending[next.i] = new Promise(() => {});
    expect(next.r.ok).toBe(true);
    expect(next.r.token).toBeGreaterThan(tokens[tokens.length - 1]);
    tokens.push(next.r.token as number);
    const held = await Promise.all(pages.map((p) => p.evaluate((n) => (window as any).c.getLock(n).isLocked(), name)));
    expect(held.filter(Boolean)).toHaveLength(1);
    current = next.p;
  }

  // The holder's page closes: the lock frees and another page gets it.
  const survivor = pages.find((p) => p !== current)!;
  const waiting = lockCall(survivor, name, 60000, 60000);
  await current.close();
  const after = await waiting;
  expect(after.ok).toBe(true);
  expect(after.token).toBeGreaterThan(tokens[tokens.length - 1]);
  await ctx.close();
});

test('TTL expiry reaches the holder as a lost notice and isLocked turns false', async ({ browser }) => {
  const name = unique('ttl');
  const ctx = await browser.newContext();
  const p = await newHarnessPage(ctx, 'memory');
  await waitReady(p);
  const res = await p.evaluate(async (n) => {
    const l = (window as any).c.getLock(n);
    const lost = new Promise((r) => l.onLost(r));
    const ok = await l.lock(200);
    const heldBefore = l.isLocked();
    const reason = await lost;
    return { ok, heldBefore, reason, heldAfter: l.isLocked(), token: l.fencingToken };
  }, name);
  expect(res).toEqual({ ok: true, heldBefore: true, reason: 'expired', heldAfter: false, token: null });
  await ctx.close();
});

test('keepAlive holds a lease past several TTLs; a stalled holder still loses it at its TTL', async ({ browser }) => {
  const name = unique('keepalive');
  const ctx = await browser.newContext();
  const a = await newHarnessPage(ctx, 'memory');
  const b = await newHarnessPage(ctx, 'memory');
  await Promise.all([a, b].map(waitReady));
  const ttl = 600;

  // a holds with keepAlive for five TTLs; b is refused all along.
  const first = await a.evaluate(
    async ([n, ttl]) => {
      const l = (window as any).c.getLock(n);
      (window as any).lost = [];
      l.onLost((r: string) => (window as any).lost.push(r));
      const ok = await l.lock(ttl, { keepAlive: true });
      return { ok, token: l.fencingToken as number };
    },
    [name, ttl] as const,
  );
  expect(first.ok).toBe(true);
  const refused = await b.evaluate(
    async ([n, ttl]) => {
      const l = (window as any).c.getLock(n);
      const results: boolean[] = [];
      const end = Date.now() + 5 * ttl;
      while (Date.now() < end) {
        results.push(await l.lock(ttl));
        await new Promise((r) => setTimeout(r, ttl / 4));
      }
      return results;
    },
    [name, ttl] as const,
  );
  expect(refused.length).toBeGreaterThan(0);
  expect(refused.every((ok) => ok === false)).toBe(true);
  const still = await a.evaluate((n) => {
    const l = (window as any).c.getLock(n);
    return { held: l.isLocked(), token: l.fencingToken, lost: (window as any).lost };
  }, name);
  expect(still).toEqual({ held: true, token: first.token, lost: [] });

  // a's page stalls (its script paused in the debugger, as a frozen tab's
  // would be): its renewals stop, and the server frees the lease one TTL
  // later. b's wait (30 s) is shorter than the server's idle timeout
  // (60 s), so b gets it from the TTL, not from a dropped connection.
  const cdp = await ctx.newCDPSession(a);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  const got = await b.evaluate(
    async ([n, ttl]) => {
      const l = (window as any).c.getLock(n);
      const ok = await l.lock(ttl * 100, { waitMs: 30000 });
      return { ok, token: l.fencingToken as number };
    },
    [name, ttl] as const,
  );
  expect(got.ok).toBe(true);
  expect(got.token).toBeGreaterThan(first.token);

  // Resumed, a learns that it lost the lease.
  await cdp.send('Debugger.resume');
  await cdp.send('Debugger.disable');
  await expect
    .poll(() => a.evaluate((n) => ({ held: (window as any).c.getLock(n).isLocked(), lost: (window as any).lost }), name))
    .toEqual({ held: false, lost: ['expired'] });
  await ctx.close();
});
