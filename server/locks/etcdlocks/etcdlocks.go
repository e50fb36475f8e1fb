// Package etcdlocks is the locks.Service of a cluster: every server node
// runs one on the same etcd cluster and prefix, and they grant each lock to
// one holder at a time across all of them, with etcd revisions as fencing
// tokens. It runs the shared suite of package locktest, as the in-memory
// service of package locks does.
package etcdlocks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// Service is a locks.Service across the nodes of a cluster, with the lock
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
// is bounded by Config.RequestTimeout, and a key that may have been
// written is deleted by a retry loop (cleanup) until etcd confirms it. After
// a leader loss, the queue therefore moves again at most one request
// timeout after the new leader is elected.
type Service struct {
	opts    locks.Options
	log     *slog.Logger
	cli     *clientv3.Client
	prefix  string // "<Prefix>/l/"
	ttl     int64  // lease TTL, seconds
	timeout time.Duration
	// staleAfter is Config.TurnTimeout.
	staleAfter time.Duration

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	lease    clientv3.LeaseID // 0 while there is none
	leaseUp  chan struct{}    // closed when the first lease is granted
	seq      uint64
	reqs     map[string]*etcdReq // by key
	byHolder map[locks.Holder]map[*etcdReq]struct{}
	waiters  map[string]map[*etcdReq]struct{} // by name: local requests not yet granted
	checking map[string]bool                  // by name: a head check runs; true = run again
	stale    map[string]staleHead             // by name: another node's queued key at the head, not promoted yet
}

var _ locks.Service = (*Service)(nil)

type reqState int

const (
	reqPending reqState = iota // its transaction is in flight
	reqWaiting                 // its key waits behind others
	reqHeld                    // granted
	reqDone                    // denied, released, expired or dropped
)

type etcdReq struct {
	h     locks.Holder
	r     wire.LockRequest
	key   string
	ttl   time.Duration
	state reqState
	token uint64
	timer *time.Timer
	gen   int       // bumped by each grant and renewal, so a stale expiry timer does nothing
	until time.Time // end of the lease, while held

	promoting bool // its key is at the head and being promoted (waiting only)
}

// staleHead is another node's queued key seen at the head of a queue with
// its wait mark: since is when this node first saw it there.
type staleHead struct {
	key   string
	value string
	since time.Time
}

// Defaults of Config.
const (
	DefaultPrefix         = "/topgun"
	DefaultLeaseTTL       = 10 * time.Second
	DefaultRequestTimeout = 2 * time.Second
	DefaultTurnTimeout    = 2 * time.Second
	// MinLeaseTTL is the shortest lease accepted: it must outlast an etcd
	// leader election (1–2 s with etcd's defaults) by a margin.
	MinLeaseTTL = 3 * time.Second
	// startTimeout bounds New's wait for the node's first lease.
	startTimeout = 30 * time.Second
)

// Config is what the etcd implementation takes besides locks.Options. The
// zero value of each field is replaced by its default.
type Config struct {
	// Prefix is the key prefix of the locks (DefaultPrefix); the keys are
	// under Prefix + "/l/".
	Prefix string
	// LeaseTTL is the lease of the locks granted through this node
	// (DefaultLeaseTTL, whole seconds, at least MinLeaseTTL): when the node
	// dies, its holders' locks are freed once it runs out. The node keeps
	// it alive every third of it and gives its locks up when no
	// keep-alive succeeded for a whole TTL.
	LeaseTTL time.Duration
	// RequestTimeout bounds one etcd request made for a lock
	// (DefaultRequestTimeout). After an etcd leader loss, lock handoff
	// resumes at most this long after the new leader is elected.
	RequestTimeout time.Duration
	// TurnTimeout is how long a queued request of another node may stay
	// at the head of a queue without its node taking its turn
	// (DefaultTurnTimeout); a node with requests waiting behind it then
	// deletes it: its node is gone (a live node takes its turn within
	// milliseconds). It bounds how long live waiters wait behind each
	// queued request of a dead node, which otherwise stays until the dead
	// node's lease runs out.
	TurnTimeout time.Duration
}

// Backend is the locks.Backend of New on cli with cfg.
func Backend(cli *clientv3.Client, cfg Config) locks.Backend {
	return func(o locks.Options) (locks.Service, error) { return New(cli, cfg, o) }
}

// New starts the lock service of one node on the etcd cluster cli talks
// to, and waits for the node's first lease. The caller keeps ownership of
// cli; Close revokes the lease but does not close cli.
func New(cli *clientv3.Client, cfg Config, opts locks.Options) (*Service, error) {
	if cli == nil {
		return nil, errors.New("etcdlocks: nil client")
	}
	if err := opts.SetDefaults(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < MinLeaseTTL {
		return nil, fmt.Errorf("etcdlocks: etcd lease ttl %v is below %v: it must outlast an etcd leader election", cfg.LeaseTTL, MinLeaseTTL)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.TurnTimeout <= 0 {
		cfg.TurnTimeout = DefaultTurnTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Service{
		opts:    opts,
		log:     opts.Logger,
		cli:     cli,
		prefix:  strings.TrimSuffix(cfg.Prefix, "/") + "/l/",
		ttl:     int64((cfg.LeaseTTL + time.Second - 1) / time.Second),
		timeout: cfg.RequestTimeout,

		staleAfter: cfg.TurnTimeout,
		ctx:        ctx,
		cancel:     cancel,
		leaseUp:    make(chan struct{}),
		reqs:       make(map[string]*etcdReq),
		byHolder:   make(map[locks.Holder]map[*etcdReq]struct{}),
		waiters:    make(map[string]map[*etcdReq]struct{}),
		checking:   make(map[string]bool),
		stale:      make(map[string]staleHead),
	}
	l.wg.Add(2)
	go l.leaseLoop()
	go l.watchLoop()
	// Serve lock requests from the first holder on.
	wctx, wcancel := context.WithTimeout(context.Background(), startTimeout)
	err := l.waitLease(wctx)
	wcancel()
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// waitLease waits until the node has its first lease (server start).
func (l *Service) waitLease(ctx context.Context) error {
	select {
	case <-l.leaseUp:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("etcdlocks: no etcd lease: %w", ctx.Err())
	}
}

// namePrefix is the key prefix of name's queue. The length prefix keeps
// names that contain '/' apart.
func (l *Service) namePrefix(name string) string {
	return l.prefix + strconv.Itoa(len(name)) + ":" + name + "/"
}

// keyName returns the lock name of a queue key.
func (l *Service) keyName(key string) (string, bool) {
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
func (l *Service) goLocked(fn func()) {
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
func (l *Service) leaseLoop() {
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
				l.log.Warn("etcd lease", "err", err)
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
		l.log.Error("etcd lease lost: every lock granted through this node ends", "lease", fmt.Sprintf("%x", g.ID))
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
func (l *Service) loseAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.reqs {
		l.endLocked(q, wire.ReasonUnavailable, true)
	}
}

// Acquire implements locks.Service.
func (l *Service) Acquire(h locks.Holder, r wire.LockRequest) {
	ttl, reason := locks.Params(r, l.opts)
	if reason != "" {
		h.Send(locks.Deny(r, reason))
		return
	}
	l.mu.Lock()
	q, renewed := l.enqueueLocked(h, r, ttl)
	lease := l.lease
	l.mu.Unlock()
	if q != nil && !renewed {
		// In the reader's goroutine, like single-node mode: frames after
		// this one see the request queued.
		l.put(q, lease)
	}
}

// enqueueLocked renews h's lock on r.Name (renewed), or denies r (nil), or
// registers a new request whose key the caller writes. l.mu held.
func (l *Service) enqueueLocked(h locks.Holder, r wire.LockRequest, ttl time.Duration) (q *etcdReq, renewed bool) {
	for q := range l.byHolder[h] {
		if q.state == reqHeld && q.r.Name == r.Name { // renewal: same token
			q.ttl = ttl
			l.expireLocked(q)
			h.Send(wire.LockGranted{RequestID: r.RequestID, Name: r.Name, FencingToken: q.token, TTL: uint64(ttl / time.Millisecond)})
			return q, true
		}
	}
	switch {
	case l.lease == 0 || l.closed:
		h.Send(locks.Deny(r, wire.ReasonUnavailable))
		return nil, false
	case len(l.byHolder[h]) >= l.opts.MaxLocks:
		h.Send(locks.Deny(r, wire.ReasonTooMany))
		return nil, false
	}
	l.seq++
	q = &etcdReq{h: h, r: r, ttl: ttl, key: l.namePrefix(r.Name) + fmt.Sprintf("%x-%x", int64(l.lease), l.seq)}
	l.reqs[q.key] = q
	if l.byHolder[h] == nil {
		l.byHolder[h] = make(map[*etcdReq]struct{})
	}
	l.byHolder[h][q] = struct{}{}
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
func (l *Service) put(q *etcdReq, lease clientv3.LeaseID) {
	pfx := l.namePrefix(q.r.Name)
	free := clientv3.Compare(clientv3.CreateRevision(pfx), "=", 0).WithPrefix()
	put := clientv3.OpPut(q.key, q.h.User(), clientv3.WithLease(lease))
	var queued []clientv3.Op
	if q.r.Wait > 0 {
		wait := clientv3.OpPut(q.key, waitMark+q.h.User(), clientv3.WithLease(lease))
		queued = []clientv3.Op{wait, clientv3.OpGet(pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
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
			l.log.Warn("etcd lock request", "conn", q.h.ID(), "name", q.r.Name, "err", err)
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
		if len(kvs) > 0 && string(kvs[0].Key) == q.key {
			l.promoteLocked(q, uint64(kvs[0].CreateRevision))
			return
		}
		// A delete may have come between the transaction and now.
		l.checkHeadLocked(q.r.Name)
	}
}

// promoteLocked grants q, a waiting request whose key is at the head of
// its queue with token, once its key's wait mark is gone: other nodes
// delete a marked head after staleHead (its node is gone), so a key they
// deleted cannot be granted, and one this node promoted is not deleted.
// l.mu held.
func (l *Service) promoteLocked(q *etcdReq, token uint64) {
	if q.state != reqWaiting || q.promoting {
		return
	}
	q.promoting = true
	l.goLocked(func() {
		ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
		resp, err := l.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(q.key), "=", int64(token))).
			Then(clientv3.OpPut(q.key, q.h.User(), clientv3.WithIgnoreLease())).Commit()
		cancel()
		l.mu.Lock()
		defer l.mu.Unlock()
		q.promoting = false
		switch {
		case q.state != reqWaiting: // ended meanwhile: its key is deleted by whoever ended it
		case err != nil:
			// Unknown: the head check runs again (the key keeps its mark
			// or lost it; both are safe to promote again).
			// (Not by marking l.checking: that map says a check runs, and
			// an entry without one would stop every later check of the
			// name, so no waiter here would ever take its turn again.)
			if l.ctx.Err() == nil {
				l.log.Debug("etcd lock promote, retrying", "name", q.r.Name, "err", err)
				l.recheckLocked(q.r.Name, 100*time.Millisecond)
			}
		case !resp.Succeeded:
			// Deleted as the head of a node thought gone (it took longer
			// than staleHead): this request lost its place.
			l.endLocked(q, wire.ReasonUnavailable, false)
		default:
			l.grantLocked(q, token)
		}
	})
}

// recheckLocked checks name's head again after d, if local requests still
// wait for it. l.mu held.
func (l *Service) recheckLocked(name string, d time.Duration) {
	l.goLocked(func() {
		sleepCtx(l.ctx, d)
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.waiters[name]) > 0 && l.ctx.Err() == nil {
			l.checkHeadLocked(name)
		}
	})
}

// deleteStaleLocked deletes h, the marked head of name's queue, unless its
// node promoted it meanwhile. l.mu held.
func (l *Service) deleteStaleLocked(name string, h staleHead) {
	l.log.Info("etcd lock: deleting a queued request of a node that did not take its turn", "name", name, "waited", time.Since(h.since).Round(time.Millisecond))
	l.goLocked(func() {
		ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
		_, err := l.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(h.key), "=", h.value)).
			Then(clientv3.OpDelete(h.key)).Commit()
		cancel()
		if err != nil && l.ctx.Err() == nil {
			l.log.Debug("etcd lock: stale head delete", "name", name, "err", err)
			l.mu.Lock()
			l.recheckLocked(name, 100*time.Millisecond)
			l.mu.Unlock()
		}
	})
}

// grantLocked makes q a holder with token. l.mu held.
func (l *Service) grantLocked(q *etcdReq, token uint64) {
	if q.state != reqPending && q.state != reqWaiting {
		return
	}
	if q.timer != nil {
		q.timer.Stop()
	}
	l.unwaitLocked(q)
	q.state, q.token = reqHeld, token
	l.expireLocked(q)
	q.h.Send(wire.LockGranted{RequestID: q.r.RequestID, Name: q.r.Name, FencingToken: token, TTL: uint64(q.ttl / time.Millisecond)})
}

// expireLocked (re)starts q's lease timer. l.mu held.
func (l *Service) expireLocked(q *etcdReq) {
	if q.timer != nil {
		q.timer.Stop()
	}
	q.gen++
	q.until = time.Now().Add(q.ttl)
	gen := q.gen
	q.timer = time.AfterFunc(q.ttl, func() { l.expire(q, gen) })
}

// expire ends lease generation gen of q. A timer that fired while a
// renewal held l.mu finds a newer generation and does nothing (a renewal
// keeps the token, so the token alone cannot tell the leases apart).
func (l *Service) expire(q *etcdReq, gen int) {
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
		q.h.Send(wire.LockLost{Name: q.r.Name, FencingToken: q.token, Reason: wire.ReasonExpired})
	})
}

func (l *Service) unwaitLocked(q *etcdReq) {
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
func (l *Service) endLocked(q *etcdReq, reason string, del bool) {
	switch q.state {
	case reqDone:
		return
	case reqHeld:
		q.h.Send(wire.LockLost{Name: q.r.Name, FencingToken: q.token, Reason: reason})
	default:
		q.h.Send(locks.Deny(q.r, reason))
	}
	l.dropLocked(q, del)
}

// dropLocked forgets q without a message. l.mu held.
func (l *Service) dropLocked(q *etcdReq, del bool) {
	pending := q.state == reqPending
	q.state = reqDone
	if q.timer != nil {
		q.timer.Stop()
	}
	l.unwaitLocked(q)
	delete(l.reqs, q.key)
	if m := l.byHolder[q.h]; m != nil {
		delete(m, q)
		if len(m) == 0 {
			delete(l.byHolder, q.h)
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
func (l *Service) cleanupLocked(key string) {
	l.goLocked(func() {
		for {
			ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
			_, err := l.cli.Delete(ctx, key)
			cancel()
			if err == nil || l.ctx.Err() != nil {
				return
			}
			l.log.Debug("etcd lock key delete, retrying", "key", key, "err", err)
			sleepCtx(l.ctx, 50*time.Millisecond)
		}
	})
}

// Release implements locks.Service: only the holder (same holder, or same
// user, on any node) with the current token succeeds.
func (l *Service) Release(h locks.Holder, r wire.LockRelease) {
	if d := locks.InvalidRelease(r); d != nil {
		h.Send(*d)
		return
	}
	out := wire.LockReleased{RequestID: r.RequestID, Name: r.Name}
	user := h.User()
	sameUser := user != ""
	l.mu.Lock()
	var q *etcdReq
	for x := range l.byHolder[h] {
		if x.state == reqHeld && x.r.Name == r.Name && x.token == r.FencingToken {
			q = x
		}
	}
	if q == nil && sameUser {
		for _, x := range l.reqs {
			if x.state == reqHeld && x.r.Name == r.Name && x.token == r.FencingToken && x.h.User() == user {
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
		if q.h != h { // released by the same user through another holder here
			q.h.Send(wire.LockLost{Name: q.r.Name, FencingToken: q.token, Reason: wire.ReasonReleased})
		}
		// The reply waits for the delete, so a request sent after it does
		// not find the lock busy. The lock is no longer held here either
		// way: the delete is retried through an etcd leader election (a
		// lease TTL outlasts one), and only a delete still unconfirmed
		// then is answered unavailable (cleanup goes on deleting the key).
		// The wait runs apart from the holder's connection, which goes on
		// reading meanwhile.
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			out.Reason = wire.ReasonUnavailable
			h.Send(out)
			return
		}
		l.goLocked(func() {
			if err := l.deleteWithin(q.key, time.Duration(l.ttl)*time.Second); err != nil {
				l.log.Warn("etcd lock release", "conn", h.ID(), "name", r.Name, "err", err)
				out.Reason = wire.ReasonUnavailable
			} else {
				out.Success = true
			}
			h.Send(out)
		})
		l.mu.Unlock()
	case sameUser: // perhaps held by the same user through another node
		h.Send(l.releaseRemote(r, user))
	default:
		out.Reason = wire.ReasonNotHolder
		h.Send(out)
	}
}

// deleteWithin deletes key, trying again until etcd confirms it or bound
// passes; it then leaves it to cleanup.
func (l *Service) deleteWithin(key string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		ctx, cancel := context.WithTimeout(l.ctx, min(l.timeout, max(time.Until(deadline), time.Millisecond)))
		_, err := l.cli.Delete(ctx, key)
		cancel()
		if err == nil {
			return nil
		}
		if l.ctx.Err() != nil || time.Now().Add(50*time.Millisecond).After(deadline) {
			l.mu.Lock()
			l.cleanupLocked(key)
			l.mu.Unlock()
			return err
		}
		l.log.Debug("etcd lock release, retrying", "key", key, "err", err)
		sleepCtx(l.ctx, 50*time.Millisecond)
	}
}

// deleteOnce tries to delete key once, and leaves it to cleanup if that
// fails.
func (l *Service) deleteOnce(key string) error {
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
func (l *Service) releaseRemote(r wire.LockRelease, user string) wire.LockReleased {
	out := wire.LockReleased{RequestID: r.RequestID, Name: r.Name, Reason: wire.ReasonNotHolder}
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	pfx := l.namePrefix(r.Name)
	resp, err := l.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		out.Reason = wire.ReasonUnavailable
		return out
	}
	if len(resp.Kvs) == 0 || uint64(resp.Kvs[0].CreateRevision) != r.FencingToken || keyUser(resp.Kvs[0].Value) != user {
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

// Disconnect implements locks.Service: it drops h's requests and frees its
// locks.
func (l *Service) Disconnect(h locks.Holder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for q := range l.byHolder[h] {
		l.dropLocked(q, true)
	}
}

// watchLoop follows deletes under the lock prefix: a delete of a key held
// here that this node did not make means the lock was released elsewhere
// (same user on another node) or its lease ran out; a delete in a queue
// with local waiters may have moved its head.
func (l *Service) watchLoop() {
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
		wch := l.cli.Watch(ctx, l.prefix, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithPrevKV(), clientv3.WithRev(rev+1))
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
				l.deletedLocked(string(ev.Kv.Key), ev.PrevKv != nil && revokedValue(ev.PrevKv.Value))
				rev = ev.Kv.ModRevision
			}
			l.mu.Unlock()
		}
		cancel()
		sleepCtx(l.ctx, 50*time.Millisecond)
	}
}

// deletedLocked handles the delete of key (revoked: by Revoke). l.mu
// held.
func (l *Service) deletedLocked(key string, revoked bool) {
	if q := l.reqs[key]; q != nil {
		switch q.state {
		case reqHeld:
			reason := wire.ReasonReleased
			if revoked {
				reason = wire.ReasonRevoked
			}
			l.endLocked(q, reason, false)
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
func (l *Service) checkHeadLocked(name string) {
	if _, running := l.checking[name]; running {
		l.checking[name] = true
		return
	}
	l.checking[name] = false
	l.goLocked(func() {
		pfx := l.namePrefix(name)
		for {
			ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
			resp, err := l.cli.Get(ctx, pfx, clientv3.WithPrefix(),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
			cancel()
			l.mu.Lock()
			switch {
			case l.ctx.Err() != nil:
			case err != nil:
				l.checking[name] = true // try again
			case len(resp.Kvs) == 0:
				delete(l.stale, name)
			default:
				l.headLocked(name, resp.Kvs[0].Key, resp.Kvs[0].Value, uint64(resp.Kvs[0].CreateRevision))
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

// headLocked acts on the head of name's queue, read by checkHeadLocked:
// a local request is promoted and granted; another node's key still
// marked as waiting is deleted once it has stayed so for staleHead (its
// node did not take its turn: it is gone), and checked again until then.
// l.mu held.
func (l *Service) headLocked(name string, key, value []byte, token uint64) {
	if q := l.reqs[string(key)]; q != nil {
		delete(l.stale, name)
		switch {
		case q.state == reqWaiting && waitingValue(value):
			l.promoteLocked(q, token)
		case q.state == reqWaiting:
			l.grantLocked(q, token) // promoted by an earlier try
		}
		return
	}
	if !waitingValue(value) || len(l.waiters[name]) == 0 {
		delete(l.stale, name) // held, or nobody here waits for it
		return
	}
	h, seen := l.stale[name]
	if !seen || h.key != string(key) || h.value != string(value) {
		h = staleHead{key: string(key), value: string(value), since: time.Now()}
		l.stale[name] = h
	}
	if wait := l.staleAfter - time.Since(h.since); wait > 0 {
		l.recheckLocked(name, wait)
		return
	}
	delete(l.stale, name)
	l.deleteStaleLocked(name, h)
}

// Close implements locks.Service: it revokes the node's lease, which frees
// every key it still has at once, and stops the node's goroutines.
func (l *Service) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	for _, q := range l.reqs {
		l.dropLocked(q, false)
	}
	l.closed = true
	lease := l.lease
	l.mu.Unlock()
	if lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		if _, err := l.cli.Revoke(ctx, lease); err != nil {
			l.log.Warn("etcd lease revoke", "err", err)
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
