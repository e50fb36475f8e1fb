// Package fence checks fencing tokens against a topgun-go server: the
// check a downstream store makes before it accepts a write that carries a
// token (POST /v1/locks/{name}/fence of the admin API, docs/admin.md).
//
// A lock holder passes its fencing token with every write. A holder that
// stalled (a GC pause, a stopped process, a partition) may still send
// writes after its lease ran out and another client took the lock; the
// store asks the server whether the token is the current holder's and
// rejects the write when it is not:
//
//	fc := fence.New("http://topgun:8080", os.Getenv("TOPGUN_ADMIN_TOKEN"))
//	if _, err := fc.Check(ctx, "reports/daily", token); err != nil {
//		return err // *fence.StaleError (errors.Is(err, fence.ErrStale)), or the server's refusal
//	}
//
// In cluster mode every server node answers the check from etcd, not from
// its own cache, so it is as current as the lock table itself.
//
// A check is a point in time: a lease may run out right after it. Stores
// that need more also keep the highest token they accepted per lock and
// refuse lower ones; the check adds that a token the store has not seen
// yet is still the holder's.
//
// The package needs only the standard library.
package fence
