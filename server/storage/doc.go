// Package storage defines Store, the server's durable state, and an
// in-memory implementation of it.
//
// The server keeps three kinds of state that must survive restarts:
//
//   - counter states: per counter name, the PN-Counter entries (side, node) →
//     magnitude, merged by per-entry maximum, so writes commute and a stale
//     or repeated write never lowers anything;
//   - node ownership: which user a counter node id is bound to, first claim
//     wins;
//   - the fencing-token high-water mark, so tokens handed out after a crash
//     are still above every token handed out before it.
//
// Every write returns only once it is durable. Implementations are expected
// to group concurrent writes into one sync (group commit) rather than give up
// durability; see package boltstore.
//
// The interface says nothing about the engine: a bbolt store (package
// boltstore), an in-memory store (NewMemory) and, later, an etcd store all
// fit it, and all of them run the one shared suite in package storagetest.
//
// Arguments are checked the same way by every implementation (see
// ValidateMerge, ValidateClaims and ValidateReserve); a bad argument gives an
// error wrapping ErrInvalid and stores nothing.
package storage
