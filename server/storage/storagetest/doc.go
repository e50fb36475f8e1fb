// Package storagetest is the one test suite every storage.Store
// implementation runs: the in-memory store, the bbolt store and any later
// one. A new implementation passes Run, and RunDurable if it persists.
//
// The suite only checks outcomes, never timings, so it holds under -race and
// on slow disks.
package storagetest
