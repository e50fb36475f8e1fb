import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test';

export const base = () => {
  const b = process.env.TOPGUN_E2E_BASE;
  if (!b) throw new Error('TOPGUN_E2E_BASE unset: run through `make e2e` (global setup starts the server)');
  return b;
};

/** A name unique to this run, so specs never see each other's counters. */
export const unique = (prefix: string) => `${prefix}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;

/** Opens the harness page and starts a client on it as window.c. */
export async function harness(page: Page, storage: 'idb' | 'memory' = 'idb') {
  await page.goto(base() + '/harness.html');
  await startClient(page, storage);
}

/**
 * Starts a client as window.c on an already loaded harness page, connected
 * to serverUrl (default: the server that serves the page).
 */
export async function startClient(
  page: Page,
  storage: 'idb' | 'memory' = 'idb',
  serverUrl?: string | string[],
  options: { closeTimeoutMs?: number } = {},
) {
  await page.waitForFunction(() => (window as any).harnessReady === true);
  await page.evaluate(
    async ([storage, serverUrl, options]) => {
      const { TopGunClient, IDBAdapter, MemoryAdapter } = (window as any).tg;
      const c = new TopGunClient({
        ...options,
        serverUrl: serverUrl ?? 'ws://' + location.host,
        storage: storage === 'memory' ? new MemoryAdapter() : new IDBAdapter(),
      });
      await c.start();
      (window as any).c = c;
    },
    [storage, serverUrl, options] as const,
  );
}

export async function waitReady(page: Page) {
  await page.waitForFunction(() => (window as any).c.state === 'ready');
}

export function value(page: Page, name: string): Promise<number> {
  return page.evaluate((n) => (window as any).c.getPNCounter(n).get(), name);
}

/**
 * The counter's value once its stored state has been read from IndexedDB
 * (getPNCounter reads it in the background; `loaded` resolves then).
 */
export function loadedValue(page: Page, name: string): Promise<number> {
  return page.evaluate(async (n) => {
    const h = (window as any).c.getPNCounter(n);
    await h.loaded;
    return h.get();
  }, name);
}

/** Waits until the counter's value on page equals want. */
export async function expectValue(page: Page, name: string, want: number) {
  await expect.poll(() => value(page, name), { message: `${name} on ${page.url()}` }).toBe(want);
}

/** What the server holds: a fresh browser profile (memory storage) loads it. */
export async function serverValue(browser: Browser, name: string, want: number) {
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    await harness(p, 'memory');
    await waitReady(p);
    await p.evaluate((n) => (window as any).c.getPNCounter(n), name);
    await expectValue(p, name, want);
  } finally {
    await ctx.close();
  }
}

/** Increments name n times in page, yielding to the event loop now and then. */
export function incrementMany(page: Page, name: string, n: number) {
  return page.evaluate(
    async ([name, n]) => {
      const k = (window as any).c.getPNCounter(name);
      for (let i = 0; i < n; i++) {
        k.increment();
        if (i % 25 === 0) await new Promise((r) => setTimeout(r, 0));
      }
    },
    [name, n] as const,
  );
}

export async function newHarnessPage(ctx: BrowserContext, storage: 'idb' | 'memory' = 'idb') {
  const p = await ctx.newPage();
  await harness(p, storage);
  return p;
}

/**
 * Records page's uncaught errors and unhandled rejections ('pageerror') and
 * its console errors, except the browser's 404 for /favicon.ico (the
 * harness has none) and those matching ignore (e.g. Chromium's own
 * "WebSocket connection to ... failed" line for an unreachable server).
 * Assert the returned list is empty at the end of the test.
 */
export function pageProblems(page: Page, ignore?: RegExp): string[] {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' || ignore?.test(m.text())) return;
    const at = m.location().url;
    if (/^Failed to load resource/.test(m.text()) && new URL(at, base()).pathname === '/favicon.ico') return;
    problems.push(`console error: ${m.text()}${at ? ` (${at})` : ''}`);
  });
  return problems;
}
