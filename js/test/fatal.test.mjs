// go.run() returning is fatal: the shim fails every client instead of
// calling into a dead Go program. Its own file, because the runtime is
// loaded once per process. The stand-in engine is js/testdata/exitwasm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TopGunClient, TopGunError } from '../dist/index.node.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('the Go program ending makes every client fail with FATAL', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-exitwasm-'));
  const wasm = path.join(dir, 'exit.wasm');
  execFileSync('go', ['build', '-o', wasm, './js/testdata/exitwasm'], {
    cwd: root,
    env: { ...process.env, GOOS: 'js', GOARCH: 'wasm' },
  });
  const c = new TopGunClient({ serverUrl: 'ws://127.0.0.1:1', wasmURL: pathToFileURL(wasm) });
  await c.start();
  const closed = new Promise((r) => c.onStateChange((s) => s === 'closed' && r()));
  await closed;
  assert.throws(() => c.getPNCounter('x'), (e) => e instanceof TopGunError && e.code === 'FATAL');
  const other = new TopGunClient({ serverUrl: 'ws://127.0.0.1:1' });
  await assert.rejects(other.start(), (e) => e.code === 'FATAL' && /exited/.test(e.message));
  fs.rmSync(dir, { recursive: true, force: true });
});
