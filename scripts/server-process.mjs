// Starts the real server (bin/topgun-server, or $TOPGUN_SERVER_BIN) as a
// process listening on 127.0.0.1 with a free port, for the JS tests, the
// Playwright setup and the browser benchmark. One copy of "spawn it and
// read the address it logs".
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * startServer(args) resolves {proc, addr, url, http, stop} once the server
 * logs its address. args are added after --addr 127.0.0.1:0 (e.g.
 * ['--no-auth', '--data', 'memory']). stop() sends SIGTERM and waits for
 * the exit.
 */
export async function startServer(args) {
  const bin = process.env.TOPGUN_SERVER_BIN || path.join(root, 'bin/topgun-server');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`make build\``);
  const proc = spawn(bin, ['--addr', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const addr = await new Promise((resolve, reject) => {
    let buf = '';
    proc.stderr.on('data', (d) => {
      buf += d;
      const m = /msg=listening addr=(\S+)/.exec(buf);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}): ${buf}`)));
  });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  };
  return { proc, addr, url: `ws://${addr}`, http: `http://${addr}`, stop };
}
