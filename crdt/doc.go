// Package crdt implements the PN-Counter that topgun-go replicates.
//
// A PN-Counter keeps, for every replica (node), two cumulative non-negative
// magnitudes: p (everything that node ever added) and n (everything it ever
// subtracted). The value is Σp − Σn. A replica only ever raises its own slots;
// replicas exchange states and merge them by taking the per-node maximum, which
// is commutative, associative and idempotent, so every replica that has seen
// the same writes reads the same value whatever the order of delivery.
//
// All magnitudes and values are integers within JavaScript's safe range
// (|x| ≤ 2^53−1), because browsers read them as float64. An Add that would
// leave that range fails with ErrOutOfRange and changes nothing. Entries that
// arrive from the wire go through Magnitude, which accepts every Go integer
// type and integral floats and rejects negative, fractional, NaN, ±Inf and
// oversized numbers; a state with one bad entry merges nothing.
//
// The package does no I/O and is not safe for concurrent use: callers hold
// their own lock.
package crdt
