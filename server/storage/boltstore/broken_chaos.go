//go:build chaosbroken

package boltstore

import "sync/atomic"

// A deliberately broken store for the chaos harness's own test
// (internal/chaos): fencing tokens come from memory instead of the durable
// reservation, so they start again from 1 after a restart. The harness
// must report it.
func init() {
	var hw atomic.Uint64
	brokenReserve = func(n uint64) uint64 { return hw.Add(n) - n + 1 }
}
