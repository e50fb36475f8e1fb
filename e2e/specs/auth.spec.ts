import { test, expect } from '@playwright/test';
import crypto from 'node:crypto';
// Plain ESM helper shared with the JS tests and the global setup.
import { startServer } from '../../scripts/server-process.mjs';
import { base } from './helpers';

const SECRET = 'e2e-auth-secret';

function sign(sub: string, expSeconds = 3600, claims: object = {}) {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + expSeconds, ...claims })}`;
  return `${body}.${crypto.createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

// In the browser, a refused or missing token is an error the page can see
// (client.error, an 'error' event, the state change), with the server's
// reason; the client stops retrying until the page gives it a new token.
test('a bad, expired or missing token is reported to the page and stops the retries until setToken()', async ({
  browser,
}) => {
  const jwt = await startServer(['--jwt-secret', SECRET, '--data', 'memory']);
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(base() + '/harness.html');
    await page.waitForFunction(() => (window as any).harnessReady === true);
    for (const [what, token, code] of [
      ['bad', 'not-a-jwt', 'AUTH_FAILED'],
      ['expired', sign('late', -3600), 'AUTH_FAILED'],
      ['missing', undefined, 'AUTH_REQUIRED'],
    ] as const) {
      await page.evaluate(
        async ([url, token]) => {
          const { TopGunClient, MemoryAdapter } = (window as any).tg;
          const w = window as any;
          w.events = [];
          w.states = [];
          w.c = new TopGunClient({ serverUrl: url, storage: new MemoryAdapter(), token });
          w.c.onError((e: any) => w.events.push(e.code));
          w.c.onStateChange((s: string, e: any) => w.states.push([s, e?.code ?? null]));
          await w.c.start();
        },
        [jwt.url, token] as const,
      );
      await page.waitForFunction((code) => (window as any).c.error?.code === code, code);
      const seen = await page.evaluate(() => {
        const w = window as any;
        return { reason: w.c.error.reason ?? '', name: w.c.error.name, events: w.events, states: w.states.length };
      });
      expect(seen.name, what).toBe('TopGunError');
      expect(seen.events, what).toContain(code);
      if (code === 'AUTH_FAILED') expect(seen.reason, what).not.toBe('');
      if (what === 'expired') expect(seen.reason).toMatch(/expired/i);
      // Held: a client that retried would be connecting again within its
      // backoff (about a second); one that holds never does.
      await page.waitForTimeout(1500);
      const after = await page.evaluate(() => ({ n: (window as any).states.length, state: (window as any).c.state }));
      expect(after, `${what}: no retry with the same token`).toEqual({ n: seen.states, state: 'offline' });
      await page.evaluate((t) => (window as any).c.setToken(t), sign('page-user'));
      await page.waitForFunction(() => (window as any).c.state === 'ready' && (window as any).c.error === null);
      const res = await page.evaluate(() => (window as any).c.close());
      expect(res.delivered).toBe(true);
    }
    expect(pageErrors).toEqual([]);
  } finally {
    await ctx.close();
    await jwt.stop();
  }
});

// Bounded counters run on a second connection of the tab (its bounded-
// replica identity): what the server refuses there reaches the page's
// onError like any other refusal, never silently. Here the token may read
// stock:* but not write it, so the restock is refused with 403.
test('a refusal on the connection of the bounded counters reaches onError', async ({ browser }) => {
  const jwt = await startServer(['--jwt-secret', SECRET, '--data', 'memory']);
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    await page.goto(base() + '/harness.html');
    await page.waitForFunction(() => (window as any).harnessReady === true);
    const token = sign('eve', 3600, { topgun: { read: ['stock:*'], write: ['likes:*'] } });
    await page.evaluate(
      async ([url, token]) => {
        const { TopGunClient, IDBAdapter } = (window as any).tg;
        const w = window as any;
        w.events = [];
        w.c = new TopGunClient({ serverUrl: url, storage: new IDBAdapter({ name: 'bounded-refusal' }), token });
        w.c.onError((e: any) =>
          w.events.push({ code: e.code, status: e.status ?? null, message: `${e.message ?? ''} ${e.reason ?? ''}` }),
        );
        await w.c.start();
        const b = w.c.getBoundedCounter('stock:refused');
        await b.loaded;
        b.increment(5); // written behind, then refused: the token may not write stock:*
      },
      [jwt.url, token] as const,
    );
    await page.waitForFunction(() =>
      (window as any).events.some((e: any) => e.status === 403 && e.message.includes('stock:refused')),
    );
  } finally {
    await ctx.close();
    await jwt.stop();
  }
});
