// A fresh Vite + React app using the packages as a user would: installed
// from their `npm pack` tarballs, imported by package name, with no
// topgun-specific Vite config and no explicit wasmURL (the client finds
// topgun.wasm through new URL('./topgun.wasm', import.meta.url), which
// `vite build` must emit as an asset).
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { IDBAdapter, TopGunClient } from '@topgun-go/client';
import { TopGunProvider, useClientStatus, usePNCounter } from '@topgun-go/react';

const params = new URLSearchParams(location.search);
const counter = params.get('counter') || 'pack:clicks';
// The page's own host serves the WebSocket too (topgun-server --static);
// under `vite` (dev) the spec passes ?server=ws://its-topgun-server.
const serverUrl = params.get('server') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;

const client = new TopGunClient({
  serverUrl,
  storage: new IDBAdapter(),
});

function Status() {
  const { state, loading, error } = useClientStatus();
  return (
    <p>
      <span data-testid="state">{loading ? 'loading' : state}</span>
      {error && <span data-testid="error"> {String(error.message ?? error)}</span>}
    </p>
  );
}

function Counter({ name }) {
  const { value, loading, synced, increment } = usePNCounter(name);
  return (
    <p>
      {name}: <output data-testid="value">{loading ? '' : value}</output>{' '}
      <button data-testid="increment" disabled={loading} onClick={() => increment()}>
        +1
      </button>{' '}
      <span data-testid="synced">{synced ? 'synced' : 'pending'}</span>
    </p>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <TopGunProvider client={client}>
      <Status />
      <Counter name={counter} />
    </TopGunProvider>
  </StrictMode>,
);
