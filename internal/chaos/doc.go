// Package chaos is topgun-go's chaos harness (issue 12; docs/chaos.md): it
// starts the real server (one bbolt node, or two nodes on three real etcd
// members), client worker processes running the project's Go client
// (sync/client) behind fault-injecting proxies (internal/faultproxy), and
// raw protocol clients sending malformed frames; a nemesis injects faults
// chosen with a seed; every event is stamped with the harness's one
// monotonic clock, and the history is checked at the end: locks with a
// porcupine model plus direct fencing checks, counters with exact totals
// and convergence against the servers' full states.
//
// Workers are this program started again with $TOPGUN_CHAOS_WORKER=1: a
// main (or TestMain) calls WorkerMain when IsWorker reports true.
package chaos
