// `make examples`: builds the three examples and runs the two workers
// against a real server started for the run, then checks what they did.
//
//   1. go build ./examples/go-worker; npm ci in examples/node-worker and
//      examples/vite-react (only when their node_modules is missing or older
//      than their package-lock.json); vite build in examples/vite-react,
//      which must emit @topgun-go/client's topgun.wasm as one asset.
//   2. bin/topgun-server --no-auth --data memory on 127.0.0.1 with a free
//      port; the address is read from its "listening" log line (as
//      scripts/server-process.mjs does), its log goes to a file.
//   3. go-worker -jobs 3, go-worker -jobs 2 again with the same store file
//      (its second run starts from the 3 it kept), node-worker --jobs 3:
//      each must print one line per job and "delivered", and the fencing
//      tokens of all 8 jobs (one lock, taken in turn) must strictly increase.
//   4. A third client reads jobs:done from the server: it must be 8.
//
// The server is stopped by its PID (SIGTERM, then SIGKILL) whatever
// happens, and every step has a time limit, so the run always ends. Work
// files live in a temporary directory removed at the end: running it again
// starts from scratch (idempotent).
//
// Needs bin/topgun-server, js/dist and react/dist: `make build react`
// (which `make examples` runs first). Env: GO (default go),
// TOPGUN_SERVER_BIN (default bin/topgun-server).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const here = import.meta.dirname;
const root = path.resolve(here, '..');
const GO = process.env.GO || 'go';
const serverBin = process.env.TOPGUN_SERVER_BIN || path.join(root, 'bin/topgun-server');
const t0 = Date.now();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'topgun-examples-'));

let server = null; // { proc, addr, log }
const children = new Set(); // every process started here, ended by PID on exit

function log(msg) {
  console.log(`examples: ${msg}`);
}

class Failure extends Error {}
function fail(msg) {
  throw new Failure(msg);
}

// Ends every process this script started, by PID, and removes the work
// directory. Synchronous, so it also runs from the 'exit' handler.
function cleanupSync() {
  for (const p of children) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
  }
  children.clear();
  fs.rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.error(`examples: ${sig}, stopping`);
    process.exit(130);
  });
}

/**
 * Runs cmd and resolves {code, signal, stdout, stderr}. Output is captured
 * (capture) or passed through. After timeoutMs the process is killed by its
 * PID and the run fails.
 */
function run(cmd, args, { cwd = root, timeoutMs = 120_000, capture = false, env = {} } = {}) {
  console.log(`$ (cd ${path.relative(root, cwd) || '.'} && ${cmd} ${args.join(' ')})`);
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, {
      cwd,
      stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
      env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...env },
    });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout?.on('data', (d) => (stdout += d));
    p.stderr?.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
      reject(new Failure(`${cmd} ${args.join(' ')}: still running after ${timeoutMs / 1000} s, killed\n${stdout}${stderr}`));
    }, timeoutMs);
    p.on('error', (err) => {
      clearTimeout(timer);
      children.delete(p);
      reject(new Failure(`${cmd}: ${err.message}`));
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(p);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function mustRun(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) fail(`${cmd} ${args.join(' ')} exited with ${r.code ?? r.signal}`);
  return r;
}

// npm ci where node_modules is missing or older than package-lock.json
// (the rule of `make deps`).
async function npmCi(dir) {
  const lock = path.join(dir, 'package-lock.json');
  const stamp = path.join(dir, 'node_modules/.package-lock.json');
  if (fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= fs.statSync(lock).mtimeMs) return;
  await mustRun('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: dir, timeoutMs: 300_000 });
}

// Starts the server on 127.0.0.1 with a free port, its log in a file, and
// waits for the "listening" line that carries the address.
async function startServer() {
  const logPath = path.join(work, 'server.log');
  const fd = fs.openSync(logPath, 'w');
  const proc = spawn(serverBin, ['--addr', '127.0.0.1:0', '--no-auth', '--data', 'memory'], {
    cwd: work,
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  children.add(proc);
  server = { proc, addr: null, log: logPath };
  const end = Date.now() + 15_000;
  for (;;) {
    const m = /msg=listening addr=(\S+)/.exec(fs.readFileSync(logPath, 'utf8'));
    if (m) {
      server.addr = m[1];
      log(`server pid ${proc.pid} listening on ${server.addr}`);
      return;
    }
    if (proc.exitCode !== null || proc.signalCode !== null) {
      fail(`the server exited (${proc.exitCode ?? proc.signalCode}):\n${fs.readFileSync(logPath, 'utf8')}`);
    }
    if (Date.now() > end) fail(`the server logged no address within 15 s:\n${fs.readFileSync(logPath, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// SIGTERM by PID, SIGKILL after 5 s.
async function stopServer() {
  if (!server) return;
  const { proc } = server;
  server = null;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  process.kill(proc.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {}
  }, 5000);
  await exited;
  clearTimeout(timer);
  children.delete(proc);
}

// Runs a worker and checks its output: `jobs` lines "job i/jobs: fencing
// token T, jobs:done = V ..." then "delivered", exit status 0. Returns the
// tokens and values.
async function runWorker(name, cmd, args, jobs, opts) {
  const r = await run(cmd, args, { capture: true, timeoutMs: 60_000, ...opts });
  for (const line of r.stdout.split('\n').filter(Boolean)) console.log(`  [${name}] ${line}`);
  for (const line of r.stderr.split('\n').filter(Boolean)) console.log(`  [${name} stderr] ${line}`);
  if (r.code !== 0) fail(`${name} exited with ${r.code ?? r.signal}`);
  // Every worker runs against a live server: an error it reports (its
  // clients log every onError / OnError) is a defect, not noise.
  if (r.stderr.trim() !== '') fail(`${name} reported errors on stderr`);
  const re = /^job (\d+)\/(\d+): fencing token (\d+), jobs:done = (-?\d+)/;
  const lines = r.stdout.split('\n').filter((l) => re.test(l));
  if (lines.length !== jobs) fail(`${name} reported ${lines.length} jobs, want ${jobs}`);
  const jobsOut = lines.map((l) => {
    const [, i, n, token, value] = re.exec(l).map(Number);
    return { i, n, token, value };
  });
  jobsOut.forEach((j, k) => {
    if (j.i !== k + 1 || j.n !== jobs) fail(`${name}: job line ${k + 1} is "${lines[k]}"`);
  });
  if (!/^delivered$/m.test(r.stdout)) fail(`${name} did not print "delivered" (close/Close reported undelivered writes?)`);
  return jobsOut;
}

// The third read: a fresh client, which loads jobs:done from the server.
async function readCounter(url, name, want) {
  const { TopGunClient, MemoryAdapter } = await import(pathToFileURL(path.join(root, 'js/dist/index.node.js')));
  const c = new TopGunClient({ serverUrl: url, storage: new MemoryAdapter() });
  try {
    await c.start();
    const cnt = c.getPNCounter(name);
    const end = Date.now() + 15_000;
    while (cnt.get() !== want && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return cnt.get();
  } finally {
    await c.close();
  }
}

async function main() {
  for (const [f, hint] of [
    [serverBin, 'make build'],
    [path.join(root, 'js/dist/index.node.js'), 'make wasm'],
    [path.join(root, 'js/dist/topgun.wasm'), 'make wasm'],
    [path.join(root, 'react/dist/index.js'), 'make react'],
  ]) {
    if (!fs.existsSync(f)) fail(`${path.relative(root, f)} is missing: run \`${hint}\` (or \`make examples\`)`);
  }

  // 1. Build.
  const goWorker = path.join(work, 'go-worker');
  await mustRun(GO, ['build', '-o', goWorker, './examples/go-worker'], { timeoutMs: 300_000 });
  const nodeWorkerDir = path.join(here, 'node-worker');
  await npmCi(nodeWorkerDir);
  const viteDir = path.join(here, 'vite-react');
  await npmCi(viteDir);
  await mustRun('npx', ['--no-install', 'vite', 'build'], { cwd: viteDir });
  const assets = path.join(viteDir, 'dist/assets');
  const wasm = fs.readdirSync(assets).filter((f) => f.endsWith('.wasm'));
  const sha = (f) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  if (wasm.length !== 1) fail(`vite build emitted ${wasm.length} .wasm assets in examples/vite-react/dist/assets, want 1`);
  if (sha(path.join(assets, wasm[0])) !== sha(path.join(root, 'js/dist/topgun.wasm'))) {
    fail(`examples/vite-react/dist/assets/${wasm[0]} differs from js/dist/topgun.wasm`);
  }
  log(`vite-react built: dist/assets/${wasm[0]}`);

  // 2. The server.
  await startServer();
  const url = `ws://${server.addr}`;

  // 3. The workers, one after the other, on one lock.
  const store = path.join(work, 'go-worker.db');
  const go1 = await runWorker('go-worker', goWorker, ['-url', `${url}/ws`, '-store', store, '-jobs', '3'], 3);
  const go2 = await runWorker('go-worker again', goWorker, ['-url', `${url}/ws`, '-store', store, '-jobs', '2'], 2);
  if (go2[0].value !== 4) fail(`the second go-worker run counted its first job as ${go2[0].value}, want 4 (3 kept in its store + 1)`);
  const node = await runWorker('node-worker', process.execPath, ['worker.mjs', '--url', url, '--jobs', '3'], 3, {
    cwd: nodeWorkerDir,
  });
  const tokens = [...go1, ...go2, ...node].map((j) => j.token);
  for (let k = 1; k < tokens.length; k++) {
    if (!(tokens[k] > tokens[k - 1])) fail(`fencing tokens do not strictly increase: ${tokens.join(', ')}`);
  }
  log(`fencing tokens strictly increase: ${tokens.join(', ')}`);

  // 4. The third read.
  const want = 3 + 2 + 3;
  const got = await readCounter(url, 'jobs:done', want);
  if (got !== want) fail(`a third client reads jobs:done = ${got} from the server, want ${want}`);
  log(`a third client reads jobs:done = ${got} from the server`);
}

let status = 0;
try {
  await main();
} catch (err) {
  status = 1;
  console.error(`examples: FAILED: ${err instanceof Failure ? err.message : err.stack}`);
  if (server?.log && fs.existsSync(server.log)) {
    console.error(`--- server log ---\n${fs.readFileSync(server.log, 'utf8')}--- end of server log ---`);
  }
} finally {
  await stopServer().catch(() => {});
}
if (status === 0) log(`ok in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(status);
