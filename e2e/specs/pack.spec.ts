// The packages as a user gets them: @topgun-go/client and @topgun-go/react
// installed from their `npm pack` tarballs into a fresh Vite + React app
// and built with `vite build` (e2e/pack/build.mjs makes e2e/pack/.app/dist).
// This spec serves that build from its own server (bin/topgun-server
// --static), opens it in two browser profiles and checks that the counter
// converges and that the engine was loaded from the asset Vite emitted.
import { test, expect, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { unique } from './helpers';

const root = path.resolve(import.meta.dirname, '../..');
const dist = path.join(root, 'e2e/pack/.app/dist');
const rebuild = 'run `node e2e/pack/build.mjs` (after `make wasm react`)';

interface PackInfo {
  wasmAsset: string;
  wasmSha256: string;
  clientBuildStamp: unknown;
  vite: string;
}

const procs: ChildProcess[] = [];
let base = '';
let info: PackInfo;

test.beforeAll(async () => {
  const infoFile = path.join(dist, 'pack-info.json');
  if (!fs.existsSync(path.join(dist, 'index.html')) || !fs.existsSync(infoFile)) {
    throw new Error(`${path.relative(root, dist)} is missing: ${rebuild}`);
  }
  info = JSON.parse(fs.readFileSync(infoFile, 'utf8'));
  const wasm = fs.readFileSync(path.join(root, 'js/dist/topgun.wasm'));
  const stamp = JSON.parse(fs.readFileSync(path.join(root, 'js/dist/build-stamp.json'), 'utf8'));
  if (
    crypto.createHash('sha256').update(wasm).digest('hex') !== info.wasmSha256 ||
    JSON.stringify(stamp) !== JSON.stringify(info.clientBuildStamp)
  ) {
    throw new Error(`${path.relative(root, dist)} was built from an older js/dist: ${rebuild}`);
  }

  const bin = path.join(root, 'bin/topgun-server');
  if (!fs.existsSync(bin)) throw new Error('bin/topgun-server is missing: run `make build`');
  const addr = await start(bin, ['--no-auth', '--data', 'memory', '--addr', '127.0.0.1:0', '--static', dist], 'stderr', /msg=listening addr=(\S+)/);
  base = `http://${addr}`;
});

test.afterAll(async () => {
  // By PID, newest first.
  for (const p of procs.reverse()) {
    if (p.exitCode !== null || p.signalCode !== null) continue;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  }
});

/** Spawns cmd and resolves with the first match of re's group in its output. */
async function start(cmd: string, args: string[], stream: 'stdout' | 'stderr', re: RegExp, cwd = root) {
  const proc = spawn(cmd, args, {
    cwd,
    stdio: ['ignore', stream === 'stdout' ? 'pipe' : 'ignore', stream === 'stderr' ? 'pipe' : 'ignore'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  procs.push(proc);
  return new Promise<string>((resolve, reject) => {
    let buf = '';
    proc[stream]!.on('data', (d) => {
      buf += d;
      const m = re.exec(buf.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) resolve(m[1]);
    });
    proc.on('error', reject);
    proc.on('exit', (code) => reject(new Error(`${path.basename(cmd)} exited (${code}): ${buf}`)));
  });
}

/** Opens the app at url on counter name, recording .wasm responses and every error. */
async function openApp(page: Page, name: string, url = base, server = '') {
  const wasm: { url: string; status: number; type: string }[] = [];
  const problems: string[] = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.pathname.endsWith('.wasm')) wasm.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'] ?? '' });
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  const q = new URLSearchParams({ counter: name });
  if (server) q.set('server', server);
  await page.goto(`${url}/?${q}`);
  // Until 'ready', or the start error the app shows (e.g. a wasm that did
  // not load): that fails at once, with its message.
  const status = async () => {
    const err = page.getByTestId('error');
    if (await err.count()) return `start failed: ${await err.textContent()}`;
    return (await page.getByTestId('state').textContent()) ?? '';
  };
  const where = `the app's client on ${page.url()}`;
  await expect.poll(status, { message: where }).not.toMatch(/^(loading|idle|connecting|authenticating)$/);
  expect(await status(), where).toBe('ready');
  return { wasm, problems };
}

test('a Vite app built from the npm pack tarballs loads the wasm asset and its counter converges', async ({ browser }) => {
  const name = unique('pack');
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await ca.newPage(), await cb.newPage()];
  const [ra, rb] = await Promise.all([openApp(a, name), openApp(b, name)]);

  // The engine came from the asset `vite build` emitted for
  // new URL('./topgun.wasm', import.meta.url), once per page.
  for (const r of [ra, rb]) {
    expect(r.wasm.map((w) => new URL(w.url).pathname)).toEqual([info.wasmAsset]);
    expect(r.wasm[0].status).toBe(200);
    expect(r.wasm[0].type).toMatch(/^application\/wasm/);
  }
  expect(info.wasmAsset).toMatch(/^\/assets\/topgun-[\w-]+\.wasm$/);

  const va = a.getByTestId('value');
  const vb = b.getByTestId('value');
  await expect(va).toHaveText('0');
  await expect(vb).toHaveText('0');

  // Clicks in both profiles, interleaved: each sees the other's.
  for (let i = 0; i < 3; i++) {
    await a.getByTestId('increment').click();
    await b.getByTestId('increment').click();
  }
  await a.getByTestId('increment').click();
  await expect(va).toHaveText('7');
  await expect(vb).toHaveText('7');
  await expect(a.getByTestId('synced')).toHaveText('synced');
  await expect(b.getByTestId('synced')).toHaveText('synced');

  // A third profile gets the total from the server.
  const cc = await browser.newContext();
  const c = await cc.newPage();
  const rc = await openApp(c, name);
  await expect(c.getByTestId('value')).toHaveText('7');

  expect([...ra.problems, ...rb.problems, ...rc.problems]).toEqual([]);
  await Promise.all([ca.close(), cb.close(), cc.close()]);
});

test('the same app under the Vite dev server loads the wasm and converges with the built one', async ({ browser }) => {
  // `npm run dev` of the app: Vite serves the client from node_modules
  // (pre-bundled); the wasm must still be found.
  const vite = path.join(root, 'e2e/pack/.app/node_modules/vite/bin/vite.js');
  if (!fs.existsSync(vite)) throw new Error(`${path.relative(root, vite)} is missing: ${rebuild}`);
  const devURL = await start(
    process.execPath,
    [vite, '--host', '127.0.0.1', '--port', '0', '--strictPort', '--clearScreen', 'false'],
    'stdout',
    /Local:\s+(http:\/\/\S+?)\/?\s/,
    path.join(root, 'e2e/pack/.app'),
  );
  const name = unique('packdev');
  const [ca, cb] = [await browser.newContext(), await browser.newContext()];
  const [a, b] = [await ca.newPage(), await cb.newPage()];
  const ra = await openApp(a, name, devURL, base.replace(/^http/, 'ws'));
  const rb = await openApp(b, name);
  expect(ra.wasm.length).toBeGreaterThan(0);
  for (const w of ra.wasm) {
    expect(w.status).toBe(200);
    expect(w.type, `${w.url} must be the wasm, not a fallback page`).toMatch(/^application\/wasm/);
  }

  await a.getByTestId('increment').click();
  await a.getByTestId('increment').click();
  await b.getByTestId('increment').click();
  await expect(a.getByTestId('value')).toHaveText('3');
  await expect(b.getByTestId('value')).toHaveText('3');
  expect([...ra.problems, ...rb.problems]).toEqual([]);
  await Promise.all([ca.close(), cb.close()]);
});
