// Diagnostic, not part of make bench: where start() spends its time, in
// fresh browser profiles — fetch+compile of Automerge's and our wasm, Go
// instantiate, Go init until the API is handed to JS (toMain: until main
// starts, if the build sets __tgMainAt), createClient with IndexedDB on a
// new and on an existing database.
//
//   make wasm build
//   GOROOT_WASM=$(go env GOROOT)/lib/wasm N=7 node bench/startprobe.mjs
//   EMPTY=other.wasm ... runs another Go program in place of topgun.wasm
//   (one that calls __topgunGoReady), e.g. an empty one for the floor.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from '@playwright/test';
import { startServer } from '../scripts/server-process.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const site = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-probe-'));
fs.cpSync(path.join(root, 'js/dist'), path.join(site, 'client'), { recursive: true });
fs.copyFileSync(path.join(root, 'node_modules/@automerge/automerge/dist/automerge.wasm'), path.join(site, 'automerge.wasm'));
if (process.env.EMPTY) fs.copyFileSync(process.env.EMPTY, path.join(site, 'client/topgun.wasm'));
fs.copyFileSync(path.join(process.env.GOROOT_WASM ?? '/usr/local/go/lib/wasm', 'wasm_exec.js'), path.join(site, 'wasm_exec.js'));
fs.writeFileSync(path.join(site, 'p.html'), `<!doctype html><meta charset="utf-8"><script src="/wasm_exec.js"></script>`);
const server = await startServer(['--no-auth', '--data', 'memory', '--static', site]);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [...(process.env.JSFLAGS ? ['--js-flags=' + process.env.JSFLAGS] : []), '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const rows = [];
for (let i = 0; i < Number(process.env.N ?? 5); i++) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(server.http + '/p.html');
  rows.push(await page.evaluate(async (PREOPEN) => {
    const r = {};
    let t = performance.now();
    await WebAssembly.compileStreaming(fetch('/automerge.wasm'));
    r.amCompile = performance.now() - t;
    t = performance.now();
    const preopen = !PREOPEN ? null : new Promise((res) => {
      const req = indexedDB.open('probe', 1);
      req.onupgradeneeded = () => { for (const n of ['meta', 'counters']) req.result.createObjectStore(n); };
      req.onsuccess = () => { req.result.close(); res(); };
      req.onerror = req.onblocked = () => res();
    });
    const mod = await WebAssembly.compileStreaming(fetch('/client/topgun.wasm'));
    r.tgCompile = performance.now() - t;
    if (preopen) { await preopen; r.preopenDone = performance.now() - t; }
    const go = new Go();
    const ready = new Promise((res) => { globalThis.__topgunGoReady = res; });
    t = performance.now();
    const inst = await WebAssembly.instantiate(mod, go.importObject);
    r.instantiate = performance.now() - t;
    t = performance.now();
    go.run(inst);
    const api = await ready;
    r.goInit = performance.now() - t;
    if (globalThis.__tgMainAt) r.toMain = globalThis.__tgMainAt - t;
    if (!api.createClient) return r;
    t = performance.now();
    await api.createClient({ serverUrl: ['ws://127.0.0.1:9'], storage: { kind: 'idb', name: 'probe' }, syncDelayMs: 1 });
    r.createClientIDB = performance.now() - t;
    t = performance.now();
    await api.createClient({ serverUrl: ['ws://127.0.0.1:9'], storage: { kind: 'idb', name: 'probe' }, syncDelayMs: 1 });
    r.createClientIDB2 = performance.now() - t;
    return r;
  }, !!process.env.PREOPEN));
  await ctx.close();
}
await browser.close();
await server.stop();
const keys = Object.keys(rows[0]);
for (const k of keys) {
  const xs = rows.map((r) => r[k]).sort((a, b) => a - b);
  console.log(k.padEnd(18), 'median', xs[Math.floor(xs.length / 2)].toFixed(1), 'ms  all', xs.map((x) => x.toFixed(0)).join(' '));
}
