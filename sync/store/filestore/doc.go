//go:build !js

// Package filestore is a durable store.Store in one file on disk, for
// native Go programs that use the client engine (sync/client): services,
// workers and command-line tools whose offline writes must survive a
// restart or a crash. It is the Go twin of the browser's IndexedDB store
// (idb): the same two stores (meta and counters), one transaction per
// call, validation on read and the same conformance suite
// (storetest.Run). Pass it as client.Options.Store; the client does not
// close a store it was given, so close it after the client.
//
// The file is a go.etcd.io/bbolt database. It is not built for GOOS=js
// (bbolt does not support it); browsers use idb.
//
// # Durability
//
// Apply runs one batch in one bbolt read-write transaction (db.Update)
// and returns after it has been fsync'd, so what Apply acknowledged
// survives a crash of the process (TestCrash kills one with SIGKILL) and,
// as far as the disk honours fsync, of the machine. The client makes one
// Apply per debounce round (client.Options.SyncDelay); a program that must
// not lose a write it is about to act on calls client.Client.Persist,
// which returns once that write is in the store. A new file's directory
// entry, and those of the directories Open created for it, are fsync'd
// before Open returns.
//
// # One process at a time
//
// An open Store holds bbolt's exclusive lock (flock) on the file. A second
// Open of the same file, from another process or this one, waits up to
// Options.Timeout and then fails with a *LockedError matching ErrLocked.
// The operating system releases the lock when the process exits, however
// it dies, so a restarted worker opens the file at once. The node id lives
// in the file: never give a copy of the file to a second, live replica,
// as two writers with one node id and separate stores lose each other's
// increments (see client.Options.NodeID).
//
// # Layout
//
// Six buckets; meta and counters are named like idb's object stores:
//
//	meta      "format"    → 0x02, the version of this layout
//	meta      "nodeId"    → the replica's node id (non-empty)
//	counters  <name>      → counter record
//	meta      "gen"       → the eviction generation, a big-endian uint64
//	own       <name>      → based (1 byte: 0 or 1), then the node of the last own delta
//	pending   <name>      → empty: the counter is pending (store.Record.Pending)
//	used      <seq>       → name, seq a big-endian uint64 (recency: oldest first)
//	usedby    <name>      → seq
//
// Pending reads the pending bucket and those records only; Evict walks
// used from the oldest. A file of format 1 (meta and counters only) is
// migrated by Open in one transaction: its records are taken as based and
// written by the stored node id.
//
// A counter record is compact binary, all integers unsigned varints in
// their shortest form (encoding/binary.AppendUvarint):
//
//	record = version:byte(1) side(p) side(n) crc:uint32
//	side   = count { len(node) node magnitude }
//
// Entries are sorted by node id (bytewise), zero entries are left out (a
// counter with no entries has no record), and crc is the big-endian
// CRC-32C (Castagnoli) of everything before it. An entry of a 26-byte node
// id (the client's) takes 28 to 35 bytes, so the record of a counter
// written by one replica, with one p and one n entry, takes 63 to 77.
//
// Records are validated on read, by LoadCounters and by every Apply that
// touches them: the checksum, the version, every field's bounds and
// shortest form, node ids non-empty and strictly increasing (so each state
// has exactly one record), magnitudes in [1, 2^53-1] (crdt.Magnitude), no
// trailing bytes, then crdt.State.Validate. A record that fails is an
// error wrapping ErrCorrupt, never used or repaired, so a damaged file
// stops the client (Start fails) instead of silently losing or inventing
// counts. Open refuses a bbolt file it did not create, such as the
// server's boltstore, with ErrFormat.
package filestore
