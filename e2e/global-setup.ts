// Starts the real server on 127.0.0.1 with a static site made of the demo
// (at /), the built npm package (at /client/) and the harness page, and
// hands its address to the specs through TOPGUN_E2E_BASE. Teardown kills
// the server by PID.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../scripts/server-process.mjs';

const root = path.resolve(import.meta.dirname, '..');

function need(p: string, hint: string) {
  if (!fs.existsSync(path.join(root, p))) throw new Error(`${p} is missing: ${hint}`);
}

export default async function globalSetup() {
  need('js/dist/index.js', 'run `make wasm`');
  const demo = process.env.TOPGUN_E2E_DEMO_DIR || path.join(root, 'demo/dist');
  if (!fs.existsSync(path.join(demo, 'index.html'))) throw new Error(`${demo}/index.html is missing: run \`make demo\``);
  const site = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-e2e-site-'));
  fs.cpSync(demo, site, { recursive: true });
  fs.cpSync(path.join(root, 'js/dist'), path.join(site, 'client'), { recursive: true });
  fs.cpSync(path.join(root, 'e2e/site'), site, { recursive: true });
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-e2e-data-'));

  const server = await startServer(['--no-auth', '--data', data, '--static', site, '--lock-ttl-max', '10m']);
  process.env.TOPGUN_E2E_BASE = server.http;
  return async () => {
    await server.stop();
    fs.rmSync(site, { recursive: true, force: true });
    fs.rmSync(data, { recursive: true, force: true });
  };
}
