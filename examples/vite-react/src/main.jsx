// A like button on a PN-Counter, offline-first: clicks count at once, are
// kept in IndexedDB and reach the server whenever it is reachable.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { IDBAdapter, TopGunClient } from '@topgun-go/client';
import { TopGunProvider, useClientStatus, usePNCounter } from '@topgun-go/react';

// Where the topgun-server is: VITE_TOPGUN_URL at build time
// (VITE_TOPGUN_URL=ws://localhost:8080 npm run dev), else the page's own
// host, as when topgun-server --static serves this app's dist/.
const serverUrl =
  import.meta.env.VITE_TOPGUN_URL || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;

// One client for the page, created at module load: this file only runs in
// the browser. With server-side rendering (Next.js, Remix, renderToString)
// IndexedDB does not exist on the server and new IDBAdapter() throws there:
// create the client in the browser only and give the provider client={null}
// until then; every hook renders its loading state meanwhile.
//
//   const [client] = useState(() =>
//     typeof window === 'undefined' ? null : new TopGunClient({ serverUrl, storage: new IDBAdapter() }));
//   return <TopGunProvider client={client}>{children}</TopGunProvider>;
//
// (In Next.js's app router, in a 'use client' component.)
const client = new TopGunClient({
  serverUrl,
  storage: new IDBAdapter(),
  // token: jwt, or getToken: async () => (await fetch('/api/topgun-token')).text(),
  // for a server started with --jwt-secret (docs/getting-started.md).
});

function Status() {
  // error: why start() failed or the last connection attempt failed, a
  // TopGunError with a code (docs/errors.md); null while ready.
  const { state, loading, error } = useClientStatus();
  return (
    <p>
      server: <span data-testid="state">{loading ? 'loading' : state}</span>
      {error && (
        <>
          {' '}
          <code data-testid="error-code">{error.code ?? 'ERROR'}</code>{' '}
          <span data-testid="error">{error.reason ?? error.message}</span>
        </>
      )}
    </p>
  );
}

function LikeButton({ name }) {
  const { value, increment, loading, synced } = usePNCounter(name);
  return (
    <button data-testid="like" disabled={loading} onClick={() => increment()}>
      ♥ <output data-testid="value">{loading ? '…' : value}</output>
      {/* synced: the server has confirmed every click of this browser */}
      {!loading && !synced && <small title="not yet confirmed by the server"> (pending)</small>}
    </button>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    {/* The provider starts the client (client.start()); it never closes it. */}
    <TopGunProvider client={client}>
      <h1>topgun-go</h1>
      <Status />
      <LikeButton name="likes:example" />
    </TopGunProvider>
  </StrictMode>,
);
