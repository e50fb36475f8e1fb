// Starts the real server on 127.0.0.1 with a static site made of the demo
// (at /), the built npm package (at /client/) and the harness page, and
// hands its address to the specs through TOPGUN_E2E_BASE. Teardown kills
// the server by PID.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

function need(p: string, hint: string) {
  if (!fs.existsSync(path.join(root, p))) throw new Error(`${p} is missing: ${hint}`);
}

export default async function globalSetup() {
  need('bin/topgun-server', 'run `make build`');
  need('js/dist/index.js', 'run `make wasm`');
  const demo = process.env.TOPGUN_E2E_DEMO_DIR || path.join(root, 'demo/dist');
  if (!fs.existsSync(path.join(demo, 'index.html'))) throw new Error(`${demo}/index.html is missing: run \`make demo\``);
  const site = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-e2e-site-'));
  fs.cpSync(demo, site, { recursive: true });
  fs.cpSync(path.join(root, 'js/dist'), path.join(site, 'client'), { recursive: true });
  fs.cpSync(path.join(root, 'e2e/site'), site, { recursive: true });
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-e2e-data-'));

  const proc = spawn(
    path.join(root, 'bin/topgun-server'),
    ['--no-auth', '--addr', '127.0.0.1:0', '--data', data, '--static', site, '--lock-ttl-max', '10m'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const addr = await new Promise<string>((resolve, reject) => {
    let buf = '';
    proc.stderr!.on('data', (d) => {
      buf += d;
      const m = /msg=listening addr=(\S+)/.exec(buf);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}): ${buf}`)));
  });
  process.env.TOPGUN_E2E_BASE = `http://${addr}`;
  return async () => {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    fs.rmSync(site, { recursive: true, force: true });
    fs.rmSync(data, { recursive: true, force: true });
  };
}
