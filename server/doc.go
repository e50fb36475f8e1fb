// Package server is the topgun-go server: it speaks TopGun's wire protocol
// over WebSocket, replicates PN-Counters and grants named leases (locks)
// with durable fencing tokens.
//
// The server is a library and the protocol adapter over two backends,
// which the caller chooses (cmd/topgun-server from its flags) and passes in
// Config:
//
//   - Config.Store (package storage: bbolt, etcd or in memory) holds counter
//     states, node owners and the fencing high-water mark;
//   - Config.Locks (package locks) opens the lock service: in memory on one
//     node (the default, locks.Memory on Store), or across the nodes of a
//     cluster on etcd (package locks/etcdlocks).
//
// Package server imports neither etcd nor bbolt, so programs and tests that
// start a server in-process without them (the client's tests, through
// internal/testserver) do not link them.
//
// Inside, each connection (conn.go) is the only part that knows the
// socket. The lock service sees it as a locks.Holder and the counter hub
// (counters.go) as a subscriber (peer.go): an identity, a way to send it
// messages, and for the hub the connection's counter update queue.
// Tests start the server in-process with New and Serve on a 127.0.0.1
// listener.
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
