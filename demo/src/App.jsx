// The demo page: every hook of @topgun-go/react on one screen. Open it in
// two windows (or two browser profiles) to watch them converge.
import { useEffect, useState } from 'react';
import { IDBAdapter, MemoryAdapter, TopGunClient } from '@topgun-go/client';
import { TopGunProvider, useBoundedCounter, useClient, useClientStatus, useLock, usePNCounter } from '@topgun-go/react';

// The server of this page (make run serves both), or ?server=ws://...
function serverURL() {
  const q = new URLSearchParams(location.search).get('server');
  if (q) return q;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function makeStorage() {
  try {
    return { storage: new IDBAdapter(), persistent: true };
  } catch {
    return { storage: new MemoryAdapter(), persistent: false };
  }
}
const { storage, persistent } = makeStorage();

const client = new TopGunClient({ serverUrl: serverURL(), storage });

export function App() {
  const [online, setOnline] = useState(true);

  // Free this tab's locks at once when it goes away.
  useEffect(() => {
    const bye = () => client.close();
    addEventListener('pagehide', bye);
    return () => removeEventListener('pagehide', bye);
  }, []);

  function toggleOnline() {
    client.setOnline(!online); // offline: counters keep working, locks are lost
    setOnline(!online);
  }

  return (
    <TopGunProvider client={client}>
      <Header online={online} onToggle={toggleOnline} />
      <main>
        <Likes />
        <Stock />
        <LockPanel />
      </main>
      <footer className="muted">
        {persistent ? 'Counters persist in IndexedDB. ' : 'IndexedDB is unavailable: counters live in memory. '}
        Open this page in a second window to watch the counters converge.
      </footer>
    </TopGunProvider>
  );
}

function Header({ online, onToggle }) {
  const { state, loading, error } = useClientStatus();
  const client = useClient();
  let nodeId = '';
  try {
    nodeId = loading ? '' : client.nodeId;
  } catch {}
  return (
    <header>
      <h1>
        topgun-go<small>offline-first counters and locks</small>
      </h1>
      <span className="muted">
        connection{' '}
        <span className={`pill ${state}`} data-testid="conn-state" id="conn-state">
          {state}
        </span>
      </span>
      {nodeId && (
        <span className="muted" title="this replica's node id">
          node {nodeId.slice(0, 8)}
        </span>
      )}
      <label className="switch muted">
        <input
          type="checkbox"
          data-testid="offline-toggle"
          id="offline-toggle"
          checked={!online}
          onChange={onToggle}
        />
        offline
      </label>
      {error && error.code !== 'OFFLINE' && (
        <div className="note bad" data-testid="client-error" style={{ flexBasis: '100%' }}>
          {loading ? 'The client did not start: ' : `Connection problem (${error.code}): `}
          {error.message}
        </div>
      )}
    </header>
  );
}

function Synced({ testid, synced, loading }) {
  const s = loading ? 'loading' : synced ? 'synced' : 'pending';
  return (
    <span className={`pill ${s}`} data-testid={testid} id={testid} data-synced={String(synced)}>
      {s}
    </span>
  );
}

function Likes() {
  const { value, increment, loading, synced } = usePNCounter('likes:demo');
  return (
    <section>
      <h2>Likes</h2>
      <div className="row">
        <button
          className="primary like"
          data-testid="like-button"
          id="like-button"
          disabled={loading}
          onClick={increment}
        >
          ♥ Like
        </button>
        <span className="big" data-testid="like-count" id="like-count">
          {value}
        </span>
      </div>
      <p className="muted">
        usePNCounter('likes:demo') <Synced testid="like-synced" synced={synced} loading={loading} />
      </p>
      <p className="muted">Likes made offline count here at once and reach the server when you are back online.</p>
    </section>
  );
}

// Stock is a bounded counter: it never goes below 0, even when windows sell
// offline at once. Each window sells only rights it holds ("available
// here"). Policy: while connected, a window that holds fewer than
// STOCK_LOW rights asks for STOCK_CHUNK more (one request at a time), so
// rights spread in small batches and little is stranded in a window that
// goes away; "request rights" asks at once.
const STOCK_LOW = 2;
const STOCK_CHUNK = 5;

function Stock() {
  const { value, available, increment, tryDecrement, requestRights, loading, synced } = useBoundedCounter('stock:demo', { min: 0 });
  const { state } = useClientStatus();
  const [asking, setAsking] = useState(false);
  const [note, setNote] = useState('');
  // emptyAt: the value at which the server last had no rights to give; the
  // automatic policy waits for the value to change before asking again.
  const [emptyAt, setEmptyAt] = useState(null);
  const ask = (n) => {
    if (asking) return;
    setAsking(true);
    requestRights(n)
      .then((g) => {
        setNote(g === 0 ? 'no stock left to hand out' : '');
        setEmptyAt(g === 0 ? value : null);
      })
      .catch((e) => setNote(e.message))
      .finally(() => setAsking(false));
  };
  useEffect(() => {
    if (loading || state !== 'ready' || asking || available >= STOCK_LOW) return;
    if (value > available && emptyAt !== value) ask(STOCK_CHUNK);
  }, [loading, state, available, value, asking, emptyAt]);
  const sell = () => setNote(tryDecrement() ? '' : 'no rights here: request some (online)');
  return (
    <section>
      <h2>Stock</h2>
      <div className="row">
        <button className="round" aria-label="sell one" data-testid="stock-dec" id="stock-dec" disabled={loading} onClick={sell}>
          −
        </button>
        <span className="big" data-testid="stock-value" id="stock-value">
          {value}
        </span>
        <button className="round" aria-label="one more" data-testid="stock-inc" id="stock-inc" disabled={loading} onClick={() => increment()}>
          +
        </button>
      </div>
      <p className="muted">
        available here: <span data-testid="stock-available">{available}</span>{' '}
        <button data-testid="stock-request" disabled={loading || asking || state !== 'ready'} onClick={() => ask(STOCK_CHUNK)}>
          request rights
        </button>{' '}
        <span data-testid="stock-note">{note}</span>
      </p>
      <p className="muted">
        useBoundedCounter('stock:demo', {'{'} min: 0 {'}'}) <Synced testid="stock-synced" synced={synced} loading={loading} />
      </p>
      <p className="muted">
        A bounded counter never goes below 0: a window sells only the rights it holds, offline too, so two offline windows
        cannot sell more than the stock.
      </p>
    </section>
  );
}

function LockPanel() {
  const [ttl, setTTL] = useState('10000');
  const [busy, setBusy] = useState(false);
  const { held, fencingToken, state, error, lostReason, lock, unlock } = useLock('demo-lock');
  const { loading } = useClientStatus();

  async function acquire() {
    setBusy(false);
    try {
      setBusy(!(await lock(Number(ttl))));
    } catch {
      // shown from the hook's error
    }
  }

  return (
    <section>
      <h2>Lock “demo-lock”</h2>
      <div className="row">
        <label className="muted" htmlFor="lock-ttl">
          TTL ms
        </label>
        <input
          type="number"
          min="1"
          step="1000"
          id="lock-ttl"
          data-testid="lock-ttl"
          value={ttl}
          onChange={(e) => setTTL(e.target.value)}
        />
      </div>
      <div className="row" style={{ marginTop: 10 }}>
        <button className="primary" data-testid="lock-acquire" id="lock-acquire" disabled={loading} onClick={acquire}>
          {held ? 'Renew' : 'Lock'}
        </button>
        <button data-testid="lock-release" id="lock-release" disabled={loading || !held} onClick={() => unlock().catch(() => {})}>
          Unlock
        </button>
      </div>
      <dl>
        <dt>state</dt>
        <dd>
          <span className={`pill ${state}`} data-testid="lock-state" id="lock-state">
            {state}
          </span>
        </dd>
        <dt>fencing token</dt>
        <dd data-testid="lock-token" id="lock-token">
          {held && fencingToken !== null ? String(fencingToken) : ''}
        </dd>
      </dl>
      {lostReason && (
        <p className="note bad" data-testid="lock-lost" id="lock-lost">
          Lock lost ({lostReason}): another client may hold it now.
        </p>
      )}
      {busy && state === 'idle' && (
        <p className="note warn" data-testid="lock-busy" id="lock-busy">
          Another client holds the lock.
        </p>
      )}
      {state === 'error' && error && (
        <p className="note bad" data-testid="lock-error" id="lock-error">
          {error.message}
        </p>
      )}
    </section>
  );
}
