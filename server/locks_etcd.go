package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topgun-go/topgun/sync/wire"
)

// etcdLocks grants leases across the nodes of a cluster, with the lock
// table in etcd.
//
// Every LOCK_REQUEST writes one key, <prefix>/l/<len>:<name>/<lease>-<seq>,
// attached to this node's etcd lease. The holder of a name is the key with
// the lowest CreateRevision under the name's prefix, and that revision is
// the fencing token: a later key always has a higher revision, and the head
// only moves to keys created after it, so tokens strictly increase for each
// new grant, cluster-wide, and survive every restart (etcd revisions never
// go back). Waiters queue in CreateRevision order, which is FIFO across
// nodes. One watch per node on <prefix>/l/ (deletes only) tells it when a
// head may have moved; it then reads the head once for names it has local
// waiters for.
//
// The lease is kept alive by this node. When the node dies the lease runs
// out and etcd deletes its keys, which frees its clients' locks. A lease
// this node loses (etcd unreachable for longer than the TTL) ends every
// lock it granted with LOCK_LOST.
//
// Unlike concurrency.Mutex, whose error path deletes its key with the
// client's context and so can leave it behind until the server-side
// request timeout (5–8 s measured after a leader loss), every request here
// is bounded by Config.EtcdRequestTimeout, and a key that may have been
// written is deleted by a retry loop (cleanup) until etcd confirms it. After
// a leader loss, the queue therefore moves again at most one request
// timeout after the new leader is elected.
type etcdLocks struct {
	s       *Server
	cli     *clientv3.Client
	prefix  string // "<EtcdPrefix>/l/"
	ttl     int64  // lease TTL, seconds
	timeout time.Duration

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	lease    clientv3.LeaseID // 0 while there is none
	leaseUp  chan struct{}    // closed when the first lease is granted
	seq      uint64
	reqs     map[string]*etcdReq // by key
	byConn   map[*conn]map[*etcdReq]struct{}
	waiters  map[string]map[*etcdReq]struct{} // by name: local requests not yet granted
	checking map[string]bool                  // by name: a head check runs; true = run again
}

type reqState int

const (
	reqPending reqState = iota // its transaction is in flight
	reqWaiting                 // its key waits behind others
	reqHeld                    // granted
	reqDone                    // denied, released, expired or dropped
)

type etcdReq struct {
	c     *conn
	r     wire.LockRequest
	key   string
	ttl   time.Duration
	state reqState
	token uint64
	timer *time.Timer
	gen   int // bumped by each renewal, so a stale expiry timer does nothing
}

func newEtcdLocks(s *Server) *etcdLocks {
	ctx, cancel := context.WithCancel(context.Background())
	l := &etcdLocks{
		s:        s,
		cli:      s.cfg.Etcd,
		prefix:   strings.TrimSuffix(s.cfg.EtcdPrefix, "/") + "/l/",
		ttl:      int64((s.cfg.EtcdLeaseTTL + time.Second - 1) / time.Second),
		timeout:  s.cfg.EtcdRequestTimeout,
		ctx:      ctx,
		cancel:   cancel,
		leaseUp:  make(chan struct{}),
		reqs:     make(map[string]*etcdReq),
		byConn:   make(map[*conn]map[*etcdReq]struct{}),
		waiters:  make(map[string]map[*etcdReq]struct{}),
		checking: make(map[string]bool),
	}
	l.wg.Add(2)
	go l.leaseLoop()
	go l.watchLoop()
	return l
}

// waitLease waits until the node has its first lease (server start).
func (l *etcdLocks) waitLease(ctx context.Context) error {
	select {
	case <-l.leaseUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: no etcd lease: %w", ctx.Err())
	}
}

// namePrefix is the key prefix of name's queue. The length prefix keeps
// names that contain '/' apart.
func (l *etcdLocks) namePrefix(name string) string {
	return l.prefix + strconv.Itoa(len(name)) + ":" + name + "/"
}

// keyName returns the lock name of a queue key.
func (l *etcdLocks) keyName(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, l.prefix)
	if !ok {
		return "", false
	}
	ns, rest, ok := strings.Cut(rest, ":")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n <= 0 || n > len(rest) {
		return "", false
	}
	return rest[:n], true
}

// goLocked runs fn in a goroutine that close waits for. l.mu held.
func (l *etcdLocks) goLocked(fn func()) {
	if l.closed {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn()
	}()
}

// leaseLoop keeps a lease for this node's keys, and replaces it when it is
// lost.
func (l *etcdLocks) leaseLoop() {
	defer l.wg.Done()
	first := true
	for l.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
		g, err := l.cli.Grant(ctx, l.ttl)
		cancel()
		var ka <-chan *clientv3.LeaseKeepAliveResponse
		if err == nil {
			ka, err = l.cli.KeepAlive(l.ctx, g.ID)
		}
		if err != nil {
			if l.ctx.Err() == nil {
				l.s.log.Warn("etcd lease", "err", err)
			}
			sleepCtx(l.ctx, 200*time.Millisecond)
			continue
		}
		l.mu.Lock()
		l.lease = g.ID
		if first {
			close(l.leaseUp)
			first = false
		}
		l.mu.Unlock()
		for range ka { // until the lease is lost or the node closes
		}
		l.mu.Lock()
		l.lease = 0
		l.mu.Unlock()
		if l.ctx.Err() != nil {
			return
		}
		l.s.log.Error("etcd lease lost: every lock granted through this node ends", "lease", fmt.Sprintf("%x", g.ID))
		l.loseAll()
		go func(id clientv3.LeaseID) { // in case etcd still has it
			ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
			_, _ = l.cli.Revoke(ctx, id)
			cancel()
		}(g.ID)
	}
}

// loseAll ends every request after the lease was lost: holders get
// LOCK_LOST, the others a denial.
func (l *etcdLocks) loseAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.reqs {
		l.endLocked(q, wire.ReasonUnavailable, true)
	}
}

// acquire grants, queues or denies a valid LOCK_REQUEST.
func (l *etcdLocks) acquire(c *conn, r wire.LockRequest, ttl time.Duration) {
	l.mu.Lock()
	q, renewed := l.enqueueLocked(c, r, ttl)
	lease := l.lease
	l.mu.Unlock()
	if q != nil && !renewed {
		// In the reader's goroutine, like single-node mode: frames after
		// this one see the request queued.
		l.put(q, lease)
	}
}

// enqueueLocked renews c's lock on r.Name (renewed), or denies r (nil), or
// registers a new request whose key the caller writes. l.mu held.
func (l *etcdLocks) enqueueLocked(c *conn, r wire.LockRequest, ttl time.Duration) (q *etcdReq, renewed bool) {
	for q := range l.byConn[c] {
		if q.state == reqHeld && q.r.Name == r.Name { // renewal: same token
			q.ttl = ttl
			l.expireLocked(q)
			c.send(wire.LockGranted{RequestID: r.RequestID, Name: r.Name, FencingToken: q.token, TTL: uint64(ttl / time.Millisecond)})
			return q, true
		}
	}
	switch {
	case l.lease == 0 || l.closed:
		c.send(deny(r, wire.ReasonUnavailable))
		return nil, false
	case len(l.byConn[c]) >= l.s.cfg.MaxLocks:
		c.send(deny(r, wire.ReasonTooMany))
		return nil, false
	}
	l.seq++
	q = &etcdReq{c: c, r: r, ttl: ttl, key: l.namePrefix(r.Name) + fmt.Sprintf("%x-%x", int64(l.lease), l.seq)}
	l.reqs[q.key] = q
	if l.byConn[c] == nil {
		l.byConn[c] = make(map[*etcdReq]struct{})
	}
	l.byConn[c][q] = struct{}{}
	if r.Wait > 0 {
		if l.waiters[r.Name] == nil {
			l.waiters[r.Name] = make(map[*etcdReq]struct{})
		}
		l.waiters[r.Name][q] = struct{}{}
	}
	return q, false
}

// put writes q's key in one transaction: granted at once when the name's
// queue is empty; otherwise busy (no wait; nothing is written) or queued.
func (l *etcdLocks) put(q *etcdReq, lease clientv3.LeaseID) {
	pfx := l.namePrefix(q.r.Name)
	free := clientv3.Compare(clientv3.CreateRevision(pfx), "=", 0).WithPrefix()
	put := clientv3.OpPut(q.key, q.c.user, clientv3.WithLease(lease))
	var queued []clientv3.Op
	if q.r.Wait > 0 {
		queued = []clientv3.Op{put, clientv3.OpGet(pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))}
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	resp, err := l.cli.Txn(ctx).If(free).Then(put).Else(queued...).Commit()
	cancel()

	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		// The key may have been written: end q, and delete the key.
		if l.ctx.Err() == nil {
			q.c.log.Warn("etcd lock request", "name", q.r.Name, "err", err)
		}
		l.endLocked(q, wire.ReasonUnavailable, false)
		l.cleanupLocked(q.key)
	case q.state == reqDone: // dropped meanwhile (disconnect, lost lease)
		if resp.Succeeded || q.r.Wait > 0 {
			l.cleanupLocked(q.key)
		}
	case resp.Succeeded:
		l.grantLocked(q, uint64(resp.Header.Revision))
	case q.r.Wait == 0:
		l.endLocked(q, wire.ReasonBusy, false)
	default:
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) > 0 && string(kvs[0].Key) == q.key {
			l.grantLocked(q, uint64(kvs[0].CreateRevision))
			return
		}
		if q.state == reqPending {
			q.state = reqWaiting
			q.timer = time.AfterFunc(time.Duration(q.r.Wait)*time.Millisecond, func() {
				l.mu.Lock()
				defer l.mu.Unlock()
				if q.state == reqWaiting {
					l.endLocked(q, wire.ReasonTimeout, true)
				}
			})
		}
		// A delete may have come between the transaction and now.
		l.checkHeadLocked(q.r.Name)
	}
}

// grantLocked makes q a holder with token. l.mu held.
func (l *etcdLocks) grantLocked(q *etcdReq, token uint64) {
	if q.state != reqPending && q.state != reqWaiting {
		return
	}
	if q.timer != nil {
		q.timer.Stop()
	}
	l.unwaitLocked(q)
	q.state, q.token = reqHeld, token
	l.expireLocked(q)
	q.c.send(wire.LockGranted{RequestID: q.r.RequestID, Name: q.r.Name, FencingToken: token, TTL: uint64(q.ttl / time.Millisecond)})
}

// expireLocked (re)starts q's lease timer. l.mu held.
func (l *etcdLocks) expireLocked(q *etcdReq) {
	if q.timer != nil {
		q.timer.Stop()
	}
	q.gen++
	gen := q.gen
	q.timer = time.AfterFunc(q.ttl, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if q.state != reqHeld || q.gen != gen {
			return
		}
		// Like a release: LOCK_LOST follows the first delete try, so a
		// request made on receiving it does not find the lock busy.
		l.dropLocked(q, false)
		l.goLocked(func() {
			_ = l.deleteOnce(q.key)
			q.c.send(wire.LockLost{Name: q.r.Name, FencingToken: q.token, Reason: wire.ReasonExpired})
		})
	})
}

func (l *etcdLocks) unwaitLocked(q *etcdReq) {
	if w := l.waiters[q.r.Name]; w != nil {
		delete(w, q)
		if len(w) == 0 {
			delete(l.waiters, q.r.Name)
		}
	}
}

// endLocked ends q: a holder gets LOCK_LOST with reason, a request not yet
// granted a denial with reason (none for reqDone). With del, q's key is
// deleted. l.mu held.
func (l *etcdLocks) endLocked(q *etcdReq, reason string, del bool) {
	switch q.state {
	case reqDone:
		return
	case reqHeld:
		q.c.send(wire.LockLost{Name: q.r.Name, FencingToken: q.token, Reason: reason})
	default:
		q.c.send(deny(q.r, reason))
	}
	l.dropLocked(q, del)
}

// dropLocked forgets q without a message. l.mu held.
func (l *etcdLocks) dropLocked(q *etcdReq, del bool) {
	pending := q.state == reqPending
	q.state = reqDone
	if q.timer != nil {
		q.timer.Stop()
	}
	l.unwaitLocked(q)
	delete(l.reqs, q.key)
	if m := l.byConn[q.c]; m != nil {
		delete(m, q)
		if len(m) == 0 {
			delete(l.byConn, q.c)
		}
	}
	// A pending request's put cleans up after itself when it returns.
	if del && !pending {
		l.cleanupLocked(q.key)
	}
}

// cleanupLocked deletes key, retrying until etcd confirms it or the node
// closes (then its lease is revoked). Each try is bounded by the request
// timeout. l.mu held.
func (l *etcdLocks) cleanupLocked(key string) {
	l.goLocked(func() {
		for {
			ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
			_, err := l.cli.Delete(ctx, key)
			cancel()
			if err == nil || l.ctx.Err() != nil {
				return
			}
			l.s.log.Debug("etcd lock key delete, retrying", "key", key, "err", err)
			sleepCtx(l.ctx, 50*time.Millisecond)
		}
	})
}

// release answers LOCK_RELEASE: only the holder (same connection, or same
// user in JWT mode, on any node) with the current token succeeds.
func (l *etcdLocks) release(c *conn, r wire.LockRelease) {
	out := wire.LockReleased{RequestID: r.RequestID, Name: r.Name}
	sameUser := !l.s.cfg.NoAuth && c.user != ""
	l.mu.Lock()
	var q *etcdReq
	for x := range l.byConn[c] {
		if x.state == reqHeld && x.r.Name == r.Name && x.token == r.FencingToken {
			q = x
		}
	}
	if q == nil && sameUser {
		for _, x := range l.reqs {
			if x.state == reqHeld && x.r.Name == r.Name && x.token == r.FencingToken && x.c.user == c.user {
				q = x
			}
		}
	}
	if q != nil {
		l.dropLocked(q, false)
	}
	l.mu.Unlock()
	switch {
	case q != nil:
		// The reply waits for the delete, so a request sent after it does
		// not find the lock busy. If etcd does not confirm it, the lock is
		// no longer held here either way and cleanup deletes the key.
		if err := l.deleteOnce(q.key); err != nil {
			c.log.Warn("etcd lock release", "name", r.Name, "err", err)
			out.Reason = wire.ReasonUnavailable
		} else {
			out.Success = true
		}
		c.send(out)
	case sameUser: // perhaps held by the same user through another node
		c.send(l.releaseRemote(r, c.user))
	default:
		out.Reason = wire.ReasonNotHolder
		c.send(out)
	}
}

// deleteOnce tries to delete key once, and leaves it to cleanup if that
// fails.
func (l *etcdLocks) deleteOnce(key string) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	_, err := l.cli.Delete(ctx, key)
	cancel()
	if err != nil {
		l.mu.Lock()
		l.cleanupLocked(key)
		l.mu.Unlock()
	}
	return err
}

// releaseRemote deletes the head of r.Name's queue if it carries r's token
// and belongs to user (a lock held through another node).
func (l *etcdLocks) releaseRemote(r wire.LockRelease, user string) wire.LockReleased {
	out := wire.LockReleased{RequestID: r.RequestID, Name: r.Name, Reason: wire.ReasonNotHolder}
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	pfx := l.namePrefix(r.Name)
	resp, err := l.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		out.Reason = wire.ReasonUnavailable
		return out
	}
	if len(resp.Kvs) == 0 || uint64(resp.Kvs[0].CreateRevision) != r.FencingToken || string(resp.Kvs[0].Value) != user {
		return out
	}
	key := string(resp.Kvs[0].Key)
	tr, err := l.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", resp.Kvs[0].CreateRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	switch {
	case err != nil:
		out.Reason = wire.ReasonUnavailable
	case tr.Succeeded:
		out.Success, out.Reason = true, ""
	}
	return out
}

// disconnect drops c's requests and frees its locks.
func (l *etcdLocks) disconnect(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for q := range l.byConn[c] {
		l.dropLocked(q, true)
	}
}

// watchLoop follows deletes under the lock prefix: a delete of a key held
// here that this node did not make means the lock was released elsewhere
// (same user on another node) or its lease ran out; a delete in a queue
// with local waiters may have moved its head.
func (l *etcdLocks) watchLoop() {
	defer l.wg.Done()
	var rev int64 // last revision seen; 0: none yet
	for l.ctx.Err() == nil {
		if rev == 0 {
			ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
			resp, err := l.cli.Get(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			cancel()
			if err != nil {
				sleepCtx(l.ctx, 100*time.Millisecond)
				continue
			}
			rev = resp.Header.Revision
		}
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(l.ctx))
		wch := l.cli.Watch(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithRev(rev+1))
		// Deletes up to rev are in the past: re-read every queue with
		// waiters in case one was missed while not watching.
		l.mu.Lock()
		for name := range l.waiters {
			l.checkHeadLocked(name)
		}
		l.mu.Unlock()
		for wr := range wch {
			if wr.CompactRevision != 0 {
				rev = 0
				break
			}
			if err := wr.Err(); err != nil {
				break
			}
			l.mu.Lock()
			for _, ev := range wr.Events {
				l.deletedLocked(string(ev.Kv.Key))
				rev = ev.Kv.ModRevision
			}
			l.mu.Unlock()
		}
		cancel()
		sleepCtx(l.ctx, 50*time.Millisecond)
	}
}

// deletedLocked handles the delete of key. l.mu held.
func (l *etcdLocks) deletedLocked(key string) {
	if q := l.reqs[key]; q != nil {
		switch q.state {
		case reqHeld:
			l.endLocked(q, wire.ReasonReleased, false)
		case reqWaiting:
			l.endLocked(q, wire.ReasonUnavailable, false)
		}
	}
	if name, ok := l.keyName(key); ok && len(l.waiters[name]) > 0 {
		l.checkHeadLocked(name)
	}
}

// checkHeadLocked reads the head of name's queue and grants it if it is a
// local request. Checks of one name are coalesced. l.mu held.
func (l *etcdLocks) checkHeadLocked(name string) {
	if _, running := l.checking[name]; running {
		l.checking[name] = true
		return
	}
	l.checking[name] = false
	l.goLocked(func() {
		pfx := l.namePrefix(name)
		for {
			ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
			resp, err := l.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
			cancel()
			l.mu.Lock()
			switch {
			case l.ctx.Err() != nil:
			case err != nil:
				l.checking[name] = true // try again
			case len(resp.Kvs) > 0:
				if q := l.reqs[string(resp.Kvs[0].Key)]; q != nil {
					l.grantLocked(q, uint64(resp.Kvs[0].CreateRevision))
				}
			}
			again := l.checking[name] && len(l.waiters[name]) > 0 && l.ctx.Err() == nil
			if !again {
				delete(l.checking, name)
				l.mu.Unlock()
				return
			}
			l.checking[name] = false
			l.mu.Unlock()
			if err != nil {
				sleepCtx(l.ctx, 100*time.Millisecond)
			}
		}
	})
}

// close revokes the node's lease, which frees every key it still has at
// once, and stops the node's goroutines.
func (l *etcdLocks) close() {
	l.mu.Lock()
	for _, q := range l.reqs {
		l.dropLocked(q, false)
	}
	l.closed = true
	lease := l.lease
	l.mu.Unlock()
	if lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		if _, err := l.cli.Revoke(ctx, lease); err != nil {
			l.s.log.Warn("etcd lease revoke", "err", err)
		}
		cancel()
	}
	l.cancel()
	l.wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
