import { test, expect } from '@playwright/test';
import { harness, unique } from './helpers';

// A page that touched many counters (a feed) and reloads: the counters it
// does not use again cost nothing on the wire. The page counts the
// WebSocket frames it sends (a wrapper around WebSocket.prototype.send
// installed before the client starts) and decodes their type.
test('after a reload, counters the page does not use send no frames', async ({ page }) => {
  test.setTimeout(180_000);
  const prefix = unique('feed');
  const n = 3000;
  await harness(page, 'idb');
  await page.waitForFunction(() => (window as any).c.state === 'ready');
  await page.evaluate(
    async ([prefix, n]) => {
      const c = (window as any).c;
      const handles = [];
      for (let i = 0; i < n; i++) {
        const h = c.getPNCounter(`${prefix}:${i}`);
        h.increment();
        handles.push(h);
      }
      await Promise.all(handles.map((h) => h.flush()));
      const res = await c.close();
      if (!res.delivered) throw new Error(`close did not deliver: ${res.error}`);
    },
    [prefix, n] as const,
  );

  await page.reload();
  await page.waitForFunction(() => (window as any).harnessReady === true);
  const sent = await page.evaluate(async (prefix) => {
    const w = window as any;
    const frames: string[] = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data: any) {
      // Frames are MessagePack maps; the counter frames carry the counter
      // name, so look for the feed's prefix in the bytes.
      const bytes = new Uint8Array(data instanceof ArrayBuffer ? data : data.buffer ?? data);
      frames.push(new TextDecoder().decode(bytes));
      return send.call(this, data);
    };
    const { TopGunClient, IDBAdapter } = w.tg;
    const c = new TopGunClient({ serverUrl: 'ws://' + location.host, storage: new IDBAdapter() });
    await c.start();
    w.c = c;
    while (c.state !== 'ready') await new Promise((r) => setTimeout(r, 10));
    // A round trip on a counter of its own: everything sent before its
    // reply has reached the server.
    const probe = c.getPNCounter(`${prefix}-probe`);
    probe.increment();
    await probe.flush();
    return { total: frames.length, feed: frames.filter((f) => f.includes(`${prefix}:`)).length };
  }, prefix);
  expect(sent.feed, `frames naming one of the ${n} stored counters (of ${sent.total} sent)`).toBe(0);
  expect(sent.total).toBeLessThanOrEqual(10);

  // A stored counter used again is there at once and catches up.
  const v = await page.evaluate(async (name) => {
    const h = (window as any).c.getPNCounter(name);
    const now = h.get();
    await h.flush();
    return { now, synced: h.synced };
  }, `${prefix}:42`);
  expect(v).toEqual({ now: 1, synced: true });
});
