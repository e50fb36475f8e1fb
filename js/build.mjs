// Builds dist/: the ESM bundle (shim + Go's wasm_exec.js), the .d.ts and the
// .wasm that `make wasm` built (../bin/topgun.wasm). It records which Go
// sources the .wasm was built from (dist/build-stamp.json), so tests fail
// on a stale build.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { goSourceHash } from './go-hash.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wasm = path.join(root, 'bin', 'topgun.wasm');
  const stamp = path.join(root, 'bin', 'topgun.wasm.stamp');
  if (!fs.existsSync(wasm) || !fs.existsSync(stamp)) {
    console.error('build: bin/topgun.wasm is missing: run `make wasm`');
    process.exit(1);
  }
  if (fs.readFileSync(stamp, 'utf8').trim() !== goSourceHash()) {
    console.error('build: bin/topgun.wasm is stale (Go sources changed): run `make wasm`');
    process.exit(1);
  }
  const goroot = execFileSync('go', ['env', 'GOROOT'], { encoding: 'utf8' }).trim();
  fs.mkdirSync(path.join(here, 'gen'), { recursive: true });
  fs.copyFileSync(path.join(goroot, 'lib', 'wasm', 'wasm_exec.js'), path.join(here, 'gen', 'wasm_exec.js'));
  fs.rmSync(path.join(here, 'dist'), { recursive: true, force: true });
  // Two bundles of one source: dist/index.js for browsers and bundlers
  // (the Node-only branches are compiled out, so bundlers see no node:
  // imports) and dist/index.node.js for Node (the "node" export condition).
  for (const [out, node] of [['index.js', false], ['index.node.js', true]]) {
    await esbuild.build({
      entryPoints: [path.join(here, 'src', 'index.js')],
      outfile: path.join(here, 'dist', out),
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      target: 'es2022',
      external: ['ws', 'node:*'],
      define: { __TOPGUN_NODE__: String(node) },
      minify: true,
      legalComments: 'inline',
      sourcemap: true,
    });
  }
  fs.copyFileSync(path.join(here, 'src', 'index.d.ts'), path.join(here, 'dist', 'index.d.ts'));
  fs.copyFileSync(wasm, path.join(here, 'dist', 'topgun.wasm'));
  fs.writeFileSync(
    path.join(here, 'dist', 'build-stamp.json'),
    JSON.stringify({ goSources: fs.readFileSync(stamp, 'utf8').trim() }) + '\n',
  );
  console.log('built js/dist');
}
