// Builds dist/: the ESM modules (not bundled: react and @topgun-go/client
// stay imports of the app's copies, and index.js keeps importing
// ./store.js, so the two entry points share one store cache) and the
// hand-kept .d.ts files.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');

fs.rmSync(dist, { recursive: true, force: true });
await esbuild.build({
  entryPoints: ['index.js', 'store.js'].map((f) => path.join(here, 'src', f)),
  outdir: dist,
  bundle: false,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  sourcemap: true,
});
for (const f of ['index.d.ts', 'store.d.ts']) {
  fs.copyFileSync(path.join(here, 'src', f), path.join(dist, f));
}
console.log('built react/dist');
