// Hash of every Go source the wasm build can depend on. `make wasm` writes it
// next to bin/topgun.wasm; the JS build and the tests compare it with the
// tree, so a stale .wasm fails loudly instead of testing old code.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// goSourceHash hashes every Go file the wasm build can depend on.
export function goSourceHash() {
  const h = createHash('sha256');
  const files = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'testdata') walk(p);
      } else if (e.name.endsWith('.go') && !e.name.endsWith('_test.go')) {
        files.push(p);
      }
    }
  };
  for (const d of ['crdt', 'sync', 'idb', 'wasm']) {
    if (fs.existsSync(path.join(root, d))) walk(path.join(root, d));
  }
  files.push(path.join(root, 'go.mod'), path.join(root, 'go.sum'));
  files.sort();
  for (const f of files) {
    h.update(path.relative(root, f));
    h.update('\0');
    h.update(fs.readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(goSourceHash());
}
