// Package server is the topgun-go server: it speaks TopGun's wire protocol
// over WebSocket, replicates PN-Counters and grants named leases (locks)
// with durable fencing tokens.
//
// The server is a library; cmd/topgun-server only wires flags to Config.
// Tests start it in-process with New and Serve on a 127.0.0.1 listener.
//
// What it fixes relative to the reference implementation (docs/protocol.md
// lists the differences): counter states and fencing tokens are durable; a lock is released
// only by its holder with the current token; lock denials carry a
// reason, holders are told when they lose a lease (LOCK_LOST), requests may
// wait in a FIFO queue, renewals extend the lease and a missing ttl means a
// bounded default; malformed frames are answered with ERROR 400;
// in no-auth mode AUTH is answered with AUTH_ACK; COUNTER_UPDATE is sent
// to other subscribers only when something changed and carries only the
// changed entries; fencing tokens come from one global sequence, so no
// per-name counter is kept forever.
package server
