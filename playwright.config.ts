// Real-browser tests: Debian's Chromium driven by Playwright. The global
// setup starts the real server (bin/topgun-server) with the demo and a test
// harness page as its static site; `make e2e` builds what it needs first.
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: './e2e/specs',
  globalSetup: './e2e/global-setup.ts',
  timeout: 90_000,
  expect: { timeout: 30_000 },
  workers: 1, // 2 cores: one browser at a time keeps timings sane
  retries: 0,
  reporter: [['list']],
  use: {
    headless: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // The offline spec serves its reload from a Playwright route (as a
        // service worker would); such pages have no IP address space, and
        // Local Network Access checks would then block their WebSocket to
        // the 127.0.0.1 test server.
        '--disable-features=LocalNetworkAccessChecks',
      ],
    },
  },
});
