import { test, expect } from '@playwright/test';
import { base } from './helpers';

test('demo: a like in one window shows in the other', async ({ browser }) => {
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await ca.newPage(), await cb.newPage()];
  await a.goto(base() + '/');
  await b.goto(base() + '/');
  for (const p of [a, b]) await expect(p.getByTestId('conn-state')).toHaveText('ready');
  const before = Number(await b.getByTestId('like-count').textContent());
  await a.getByTestId('like-button').click();
  await expect(b.getByTestId('like-count')).toHaveText(String(before + 1));
  await expect(a.getByTestId('like-count')).toHaveText(String(before + 1));

  await b.getByTestId('stock-inc').click();
  await b.getByTestId('stock-inc').click();
  await b.getByTestId('stock-dec').click();
  const stock = await b.getByTestId('stock-value').textContent();
  await expect(a.getByTestId('stock-value')).toHaveText(stock!);

  // Lock panel: lock in one window; the other is refused; the token shows.
  await a.getByTestId('lock-ttl').fill('60000');
  await a.getByTestId('lock-acquire').click();
  await expect(a.getByTestId('lock-token')).toHaveText(/^\d+$/);
  await b.getByTestId('lock-acquire').click();
  await expect(b.getByTestId('lock-token')).toHaveText('');
  await a.getByTestId('lock-release').click();
  await expect(a.getByTestId('lock-token')).toHaveText('');

  // The offline switch: likes made offline count at once and reach the
  // other window when back online.
  const likes = Number(await a.getByTestId('like-count').textContent());
  await a.getByTestId('offline-toggle').check();
  await expect(a.getByTestId('conn-state')).toHaveText('offline');
  await a.getByTestId('like-button').click();
  await a.getByTestId('like-button').click();
  await expect(a.getByTestId('like-count')).toHaveText(String(likes + 2));
  await expect(b.getByTestId('like-count')).toHaveText(String(likes));
  await a.getByTestId('offline-toggle').uncheck();
  await expect(a.getByTestId('conn-state')).toHaveText('ready');
  await expect(b.getByTestId('like-count')).toHaveText(String(likes + 2));
  await ca.close();
  await cb.close();
});
