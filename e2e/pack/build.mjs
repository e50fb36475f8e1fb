// Builds the "installed from npm pack" check of e2e/specs/pack.spec.ts: packs
// js/ (@topgun-go/client) and react/ (@topgun-go/react) with `npm pack`,
// installs both tarballs into a fresh Vite + React app made from
// e2e/pack/template/ (in e2e/pack/.app, gitignored) and runs `vite build`
// there. The spec serves e2e/pack/.app/dist.
//
// Idempotent: every run starts the app from the template again. The
// template's own dependencies come from its package-lock.json (`npm ci`);
// the tarballs change with every build, so they are installed on top with
// `npm install --no-save` and never enter the lock.
//
// Needs js/dist and react/dist: `make wasm react` first.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const template = path.join(here, 'template');
const app = path.join(here, '.app');
const tarballs = path.join(app, 'tarballs');
const t0 = Date.now();

function fail(msg) {
  console.error(`e2e/pack/build.mjs: ${msg}`);
  process.exit(1);
}

function run(cmd, args, cwd, opts = {}) {
  console.log(`$ (cd ${path.relative(root, cwd) || '.'} && ${cmd} ${args.join(' ')})`);
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: opts.capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
  });
}

for (const [f, hint] of [
  ['js/dist/index.js', 'make wasm'],
  ['js/dist/topgun.wasm', 'make wasm'],
  ['js/dist/build-stamp.json', 'make wasm'],
  ['react/dist/index.js', 'make react'],
]) {
  if (!fs.existsSync(path.join(root, f))) fail(`${f} is missing: run \`${hint}\``);
}

// 1. The app directory, from the template again (node_modules is left for
//    npm ci, which replaces it anyway).
fs.mkdirSync(app, { recursive: true });
for (const e of fs.readdirSync(app)) {
  if (e !== 'node_modules') fs.rmSync(path.join(app, e), { recursive: true, force: true });
}
fs.cpSync(template, app, { recursive: true, filter: (src) => !src.split(path.sep).includes('node_modules') });
fs.mkdirSync(tarballs);

// 2. The tarballs, with a check that they hold what the app needs.
const packed = {};
for (const [dir, must] of [
  ['js', ['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/topgun.wasm']],
  ['react', ['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/store.js', 'dist/store.d.ts']],
]) {
  const out = run('npm', ['pack', '--json', '--pack-destination', tarballs], path.join(root, dir), { capture: true });
  const [info] = JSON.parse(out);
  const files = new Set(info.files.map((f) => f.path));
  const missing = must.filter((f) => !files.has(f));
  if (missing.length) fail(`the ${info.name} tarball lacks ${missing.join(', ')} (check "files" in ${dir}/package.json)`);
  console.log(`  ${info.filename}: ${info.files.length} files, ${(info.size / 1e6).toFixed(2)} MB packed`);
  packed[info.name] = path.join(tarballs, info.filename);
}

// 3. Install: the template's pinned deps, then the two tarballs.
run('npm', ['ci', '--no-audit', '--no-fund'], app);
run('npm', ['install', '--no-save', '--no-audit', '--no-fund', ...Object.values(packed)], app);
for (const name of Object.keys(packed)) {
  const installed = path.join(app, 'node_modules', name);
  if (!fs.existsSync(installed) || fs.lstatSync(installed).isSymbolicLink()) {
    fail(`${name} was not installed from its tarball into ${installed}`);
  }
}

// 4. Build, as the app's own `npm run build` would.
run('npx', ['--no-install', 'vite', 'build'], app);

// 5. The built app must carry the engine as a Vite asset, byte for byte.
const dist = path.join(app, 'dist');
const assets = path.join(dist, 'assets');
const wasmWant = fs.readFileSync(path.join(root, 'js/dist/topgun.wasm'));
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const wasmAssets = fs.existsSync(assets) ? fs.readdirSync(assets).filter((f) => f.endsWith('.wasm')) : [];
if (wasmAssets.length !== 1) {
  fail(
    `vite build emitted ${wasmAssets.length} .wasm assets in dist/assets (want 1): ` +
      "new URL('./topgun.wasm', import.meta.url) in @topgun-go/client was not turned into an asset",
  );
}
const wasmAsset = wasmAssets[0];
if (sha(fs.readFileSync(path.join(assets, wasmAsset))) !== sha(wasmWant)) {
  fail(`dist/assets/${wasmAsset} differs from js/dist/topgun.wasm`);
}
const js = fs.readdirSync(assets).filter((f) => f.endsWith('.js'));
if (!js.some((f) => fs.readFileSync(path.join(assets, f), 'utf8').includes(wasmAsset))) {
  fail(`no script in dist/assets refers to ${wasmAsset}`);
}
if (fs.existsSync(path.join(dist, 'topgun.wasm'))) fail('dist/topgun.wasm exists: the wasm should be under assets/ only');

// 6. What the spec checks against: where the wasm is, and what it was built
//    from (so a stale app fails there instead of testing old code).
const info = {
  wasmAsset: `/assets/${wasmAsset}`,
  wasmSha256: sha(wasmWant),
  clientBuildStamp: JSON.parse(fs.readFileSync(path.join(root, 'js/dist/build-stamp.json'), 'utf8')),
  vite: JSON.parse(fs.readFileSync(path.join(app, 'node_modules/vite/package.json'), 'utf8')).version,
  tarballs: Object.fromEntries(Object.entries(packed).map(([n, p]) => [n, path.basename(p)])),
};
fs.writeFileSync(path.join(dist, 'pack-info.json'), JSON.stringify(info, null, 2) + '\n');
console.log(`built ${path.relative(root, dist)} (wasm at ${info.wasmAsset}, vite ${info.vite}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
