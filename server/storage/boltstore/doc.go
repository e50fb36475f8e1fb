// Package boltstore is a storage.Store kept in one go.etcd.io/bbolt file.
//
// Every write is its own small transaction, run through bbolt's DB.Batch so
// that concurrent writes share one commit and one fsync (group commit):
// durability costs one fsync per batch, not one per write. A write returns
// only after the batch holding it has been fsync'd, so an acknowledged write
// survives a crash (see TestCrash).
//
// Layout:
//
//	counters/<name>/"p\x00"+node → 8-byte big-endian magnitude
//	counters/<name>/"n\x00"+node → 8-byte big-endian magnitude
//	nodes/<node>                 → user
//	meta/"fence"                 → 8-byte big-endian high-water mark
//
// DB.Batch may run a write function more than once (after another function
// in the same batch fails it rolls back and retries), so every function here
// is rerunnable: it reads and writes only inside its transaction and its
// result variables are overwritten by each run. Arguments are validated
// before Batch, so in practice functions fail only on a corrupt file.
package boltstore
