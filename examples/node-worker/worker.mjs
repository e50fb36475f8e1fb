// A bounded job worker under Node ≥ 20 with @topgun-go/client: for every
// job it takes the distributed lock, does the job with the lock's fencing
// token, counts it in the PN-Counter "jobs:done" and waits for the server
// to confirm the count before acknowledging the job. After --jobs jobs it
// closes the client, which delivers what is still pending, and prints what
// close() resolved to.
//
//   node worker.mjs --url ws://127.0.0.1:8080 --jobs 3 [--token JWT]
//
// Exit status: 0 when close() delivered everything, 2 when it reported
// undelivered writes, 1 on any other failure.
//
// Under Node there is no IndexedDB: MemoryAdapter keeps counters in memory,
// so writes close() could not deliver are lost when the process ends (a
// worker whose offline writes must survive a restart is written in Go with
// sync/store/filestore, see ../go-worker).
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { TopGunClient, MemoryAdapter } from '@topgun-go/client';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.TOPGUN_URL || 'ws://127.0.0.1:8080' },
    jobs: { type: 'string', default: '3' },
    token: { type: 'string', default: process.env.TOPGUN_TOKEN || '' },
    lock: { type: 'string', default: 'job-queue:partition-0' },
    'ttl-ms': { type: 'string', default: '10000' },
    'wait-ms': { type: 'string', default: '10000' },
  },
});
const jobs = Number(args.jobs);
const ttlMs = Number(args['ttl-ms']);
const waitMs = Number(args['wait-ms']);
if (!Number.isSafeInteger(jobs) || jobs < 0) {
  console.error('node-worker: --jobs must be an integer ≥ 0');
  process.exit(1);
}

// The worker must stop by itself whatever the network does: every wait
// below is bounded, and this is the backstop.
const watchdog = setTimeout(() => {
  console.error('node-worker: still running after 60 s, giving up');
  process.exit(1);
}, 60_000);
watchdog.unref();

const client = new TopGunClient({
  serverUrl: args.url,
  storage: new MemoryAdapter(),
  ...(args.token ? { token: args.token } : {}), // none for a --no-auth server
});
// Every connection problem reaches the app as a TopGunError with a code
// (docs/errors.md); the client keeps retrying by itself, except after
// AUTH_FAILED / AUTH_REQUIRED, which wait for client.setToken().
client.onError((err) => console.error(`node-worker: ${err.code}: ${err.message}`));

await client.start(); // loads the engine; does not wait for the network

let status = 0;
try {
  await runJobs();
} catch (err) {
  console.error(`node-worker: ${err.code ?? err.name}: ${err.message}`);
  status = 1;
}

// close() never rejects: it delivers within closeTimeoutMs (default 3 s) and
// resolves { delivered, undelivered, error }.
const result = await client.close();
if (result.delivered) {
  console.log('delivered');
} else {
  console.log(`undelivered: ${result.undelivered.join(', ')} (${result.error?.code}: ${result.error?.message})`);
  if (status === 0) status = 2;
}
process.exit(status);

async function runJobs() {
  const done = client.getPNCounter('jobs:done');
  const lock = client.getLock(args.lock);
  // A lease can end without unlock(): 'expired' (the job outlived ttlMs),
  // 'disconnected', 'released' or 'unavailable'. A real worker stops
  // writing with the old token then.
  lock.onLost((reason) => console.error(`node-worker: lost ${args.lock}: ${reason}`));

  for (let i = 1; i <= jobs; i++) {
    // Waits for a ready connection, then queues behind the current holder
    // for up to waitMs; false: still held by another client.
    if (!(await withTimeout(lock.lock(ttlMs, { waitMs }), waitMs + 5000, `lock ${args.lock}`))) {
      throw new Error(`job ${i}: ${args.lock} still held by another client after ${waitMs} ms`);
    }
    const fence = lock.fencingToken; // strictly increasing per grant
    try {
      // The job itself: a real one passes fence with every write to the
      // resource it protects, which refuses tokens older than the last.
      await sleep(10);
      const v = done.increment(); // local, synchronous: the new value
      // MemoryAdapter keeps nothing across a crash, so wait for the
      // server's confirmation before acknowledging the job.
      await withTimeout(done.flush(), waitMs, 'flush');
      console.log(`job ${i}/${jobs}: fencing token ${fence}, jobs:done = ${v} (confirmed)`);
      // ... acknowledge the job to the queue here ...
    } finally {
      await lock.unlock();
    }
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
