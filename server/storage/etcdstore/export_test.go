package etcdstore

// Helpers for the examples in package etcdstore_test, which run against the
// test binary's cluster.

// SharedEndpoints returns the client URLs of the test binary's cluster.
func SharedEndpoints() []string { return shared.Endpoints() }

// UniquePrefix returns a prefix no other store of the test binary uses.
func UniquePrefix() string { return uniquePrefix() }
