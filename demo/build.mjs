// Builds dist/, the page `make run` serves: index.html, app.js (React in
// production mode, minified) and topgun.wasm next to app.js, where the
// client looks for it by default (new URL('./topgun.wasm', import.meta.url)
// resolves against the bundle's URL).
//
// @topgun-go/react and @topgun-go/client are file: links to ../react and
// ../js; ../react/node_modules has a React of its own (for its tests), so
// every import of React resolves from here: one React per page.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
const require = createRequire(import.meta.url);

for (const [pkg, file, fix] of [
  ['@topgun-go/react', 'dist/index.js', 'cd react && npm ci && npm run build'],
  ['@topgun-go/client', 'dist/topgun.wasm', 'make wasm'],
]) {
  const dir = path.join(here, 'node_modules', pkg);
  if (!fs.existsSync(path.join(dir, file))) {
    console.error(`demo build: ${pkg}/${file} is missing: run \`${fix}\` (and \`npm ci\` here)`);
    process.exit(1);
  }
}

const oneReact = {
  name: 'one-react',
  setup(build) {
    build.onResolve({ filter: /^(react|react-dom|scheduler)(\/|$)/ }, (args) => {
      if (args.pluginData?.oneReact) return undefined;
      return build.resolve(args.path, { kind: args.kind, resolveDir: here, pluginData: { oneReact: true } });
    });
  },
};

fs.rmSync(dist, { recursive: true, force: true });
const result = await esbuild.build({
  entryPoints: [path.join(here, 'src', 'main.jsx')],
  outfile: path.join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  jsx: 'automatic',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  define: { 'process.env.NODE_ENV': '"production"' },
  // The client's Node-only imports (never taken in a browser).
  external: ['ws', 'node:*'],
  plugins: [oneReact],
  metafile: true,
  logLevel: 'warning',
});
const reacts = new Set(
  Object.keys(result.metafile.inputs)
    .map((f) => /(.*node_modules\/react)\/index\.js$/.exec(f)?.[1])
    .filter(Boolean),
);
if (reacts.size > 1) {
  console.error(`demo build: more than one React in the bundle: ${[...reacts].join(', ')}`);
  process.exit(1);
}
fs.copyFileSync(path.join(here, 'src', 'index.html'), path.join(dist, 'index.html'));
fs.copyFileSync(require.resolve('@topgun-go/client/topgun.wasm'), path.join(dist, 'topgun.wasm'));
const kb = (f) => `${Math.round(fs.statSync(path.join(dist, f)).size / 1024)} KiB`;
console.log(`built demo/dist: app.js ${kb('app.js')}, topgun.wasm ${kb('topgun.wasm')}`);
