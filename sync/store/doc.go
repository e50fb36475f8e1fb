// Package store is the client engine's local persistence: the replica's
// node id and the state of every counter it holds.
//
// The engine writes through Apply, one batch per round, so a store sees few,
// coarse transactions. Own deltas are added to the stored slot
// (read-modify-write inside the batch's transaction), never written as
// absolute values: two writers sharing a node id and a store (two browser
// tabs) therefore never erase each other's increments in storage. Remote
// states merge by per-entry maximum, so a store never goes backwards.
//
// # What a client reads
//
// A client's cost follows the counters it uses. Start reads Pending: the
// records with own writes the server has not confirmed (own entries above
// the AckNode entries, or UnbasedNode amounts), which every store keeps in
// an index so that the others are not read. A handle reads its own record
// with Load when first asked for. LoadCounters, which reads everything, is
// for tools and tests.
//
// # Records
//
// Besides node entries a record holds pseudo-node entries, none a valid
// node id and none ever sent: AckNode (the server's confirmation of the own
// entries), UnbasedNode (own writes whose base is unknown) and RestNode
// (the aggregate of a compact view). A record also remembers the node of its
// last own delta. ApplyRecords is the one implementation of a batch's
// effect on records, shared by every store, so they agree exactly.
//
// # Eviction and unknown bases
//
// Evict deletes least recently used records (written, or named in
// Batch.Touch) beyond a cap, never pending ones, and raises the store's
// generation. A counter's own entries only grow and the server merges them
// by maximum; so a replica that no longer has a counter's record does not
// know its own entries on the server (its base), and must not write
// absolute ones, which the server would merge away. Its writes are unbased
// OwnDeltas: added to the record's UnbasedNode slot while the record is not
// based, and moved into the own slot, on top of the floors, by the first
// based OwnDelta, which the client sends once the server's full state has
// given it the base. A record is based once a based delta wrote it: its own
// entries then hold everything the node sent, and every later own write of
// every tab; it stays based until evicted.
//
// A writer's knowledge of a base is only as good as the record it came
// from: another tab may have written more, had it confirmed and the record
// evicted since. So a based delta carries the generation at which its
// knowledge was gained, and on a record that is not based (missing, or
// holding unbased amounts) a delta older than the latest eviction is
// refused: it is stored as an unbased write, and the client learns its base
// again. A based record accepts any based delta, since its own slot holds
// the base (ApplyOwn takes the maximum).
//
// NewMemory is the in-memory implementation (tests, and clients that need no
// persistence). Every implementation must pass storetest.Run.
package store
