//go:build js && wasm

// Package idb is the IndexedDB implementation of store.Store, the client
// engine's persistence in the browser. It builds only for GOOS=js
// GOARCH=wasm; native code uses store.NewMemory (or a server-side store).
//
// # Layout
//
// Open(ctx, name) opens database name ("topgun-go" when empty) at version 3
// with six object stores, all with out-of-line keys:
//
//	meta       "nodeId" -> string: this profile's node id
//	meta       "layout" -> 2 once every record is indexed
//	meta       "gen"    -> number: the eviction generation (store.OwnDelta.Gen)
//	counters   counter name -> {p: {node: number}, n: {node: number}}
//	pending    counter name -> 1, for every pending record (store.Record.Pending)
//	index      counter name -> {o: node of the last own delta, b: based, u: recency}
//	           with the index byUse on u
//	bounded    [replica, counter name] -> {min, p, n, t}: a bounded counter
//	           (store.BoundedStore); replica "" for the Store's own, else a
//	           Replica view (one per bounded-replica identity: a tab's)
//	replicas   replica id -> {u: ms of its last claim}: the profile's pool
//	           of bounded-replica identities
//
// Pending reads the keys of pending, then those records only; Evict counts
// counters, reads the names in recency order from byUse (one getAllKeys
// request each) and deletes the oldest that may go. Apply keeps pending and
// index in step with counters in its transaction. A database of version 1
// gets the new stores in its upgrade, and Open then indexes its records
// once, taking them as based and written by the stored node id. A database
// of version 1 or 2 gets bounded and replicas in its upgrade; nothing else
// changes.
//
// Bounded records are read and written (merged by per-entry maximum,
// store.MergeBounded) in one transaction each; they cross the boundary as
// JSON text, which is fine off the hot path (the JS client's tryDecrement
// never waits for a write; see docs/bounded-counters.md).
//
// A counter record holds plain JS objects and numbers (structured-clone
// friendly, readable from JS and DevTools). Every number is a magnitude in
// [0, 2^53-1]; zero entries are omitted, and p or n may be an empty object.
// Records are validated on read (crdt.Magnitude): a corrupt record (a
// non-number, negative, fractional or unsafe entry, a non-object) is an
// error, never silently used or repaired.
//
// # Transactions
//
// NodeID reads and, if absent, creates the node id inside one readwrite
// transaction, so tabs of one browser profile racing on first start all
// get the same id (IndexedDB serialises readwrite transactions on a store).
//
// Apply runs a whole batch in one readwrite transaction: it reads every
// touched counter and its index entry (all reads issued at once), applies
// the batch with store.ApplyRecords (remote states merged by per-entry
// maximum, own deltas as read-modify-write), and only then writes the
// changed records. Every check,
// including the 2^53-1 bound, happens before the first write; if a write
// still fails the transaction is aborted, so a batch lands entirely or not
// at all. Because own deltas are added to what is stored, tabs that share a
// node id never lose each other's increments.
//
// Apply honours ctx until its writes are issued; after that it waits for
// the commit and reports its outcome, so a result is never ambiguous (an
// Apply that returns an error did not commit).
//
// IndexedDB commits a transaction as soon as it has no pending request when
// control returns to the event loop. This package relies on the Go wasm
// scheduler running woken goroutines before a JS callback returns: the
// goroutine waiting on a read issues the writes within the read's success
// event, while the transaction is still active. Code inside a transaction
// (including the newID func given to NodeID) must therefore not block.
//
// # Cross-tab notices
//
// After an Apply that changed at least one record commits, the store posts
// the changed counter names, as a sorted JS array of strings, on the
// BroadcastChannel "topgun-go:"+name (when the browser has
// BroadcastChannel). OnChange delivers the names posted by other Store
// instances on the same database: other tabs, and other Stores in the same
// page, but never the Store's own posts. A notice is a hint to reload those
// counters with Load; notices are best effort and may be lost (a
// tab that was asleep must reload everything).
//
// # Errors
//
// Where IndexedDB is unavailable (no globalThis.indexedDB, or access denied
// as in some private modes and sandboxed frames) Open returns an error
// wrapping ErrUnavailable; the caller should fall back to the in-memory
// store. JS exceptions are caught at the boundary and returned as Go errors
// prefixed "idb: "; DOMExceptions from go-indexeddb match with errors.Is
// against indexeddb.NewDOMException(name). If another tab deletes or
// upgrades the database, go-indexeddb closes this connection and later
// calls fail.
package idb
