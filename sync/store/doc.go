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
// NewMemory is the in-memory implementation (tests, and clients that need no
// persistence). Every implementation must pass storetest.Run.
package store
