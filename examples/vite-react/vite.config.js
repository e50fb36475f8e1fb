import { defineConfig, searchForWorkspaceRoot } from 'vite';
import react from '@vitejs/plugin-react';

// Nothing topgun-specific is needed in an app that installs the packages
// (npm install topgun-go-*.tgz): `vite build` and Vite 8's dev server emit
// @topgun-go/client's topgun.wasm as an asset by themselves. (With Vite 7's
// dev server add optimizeDeps: { exclude: ['@topgun-go/client'] }.)
//
// The two settings below are there only because package.json links the
// packages from this repository (file:../../js, file:../../react).
export default defineConfig({
  plugins: [react()],
  resolve: {
    // ../../react/node_modules holds a React of its own, for its tests:
    // resolve React from here, one per page.
    dedupe: ['react', 'react-dom', '@topgun-go/client'],
  },
  server: {
    // The dev server serves files outside this app only from allowed
    // directories: the linked client's topgun.wasm is in ../../js/dist.
    fs: { allow: [searchForWorkspaceRoot(process.cwd()), '../../js/dist'] },
  },
});
