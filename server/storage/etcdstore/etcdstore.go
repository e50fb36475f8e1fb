package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
)

// DefaultPrefix is the key prefix New uses for an empty prefix.
const DefaultPrefix = "/topgun"

// maxTxnOps is etcd's default --max-txn-ops. etcd checks it per level of a
// transaction and charges a nested transaction against what its parent
// leaves, so the widths along a path from the top level down may add up to
// maxTxnOps. MergeCounter's transaction has one raiseOp per entry, each
// one level deep, so entriesPerTxn entries fit in one transaction (127 pass
// and 128 fail on etcd 3.4.23; TestTxnLimit); a merge of more is split.
const (
	maxTxnOps     = 128
	entriesPerTxn = maxTxnOps - 1
)

// valueLen is the width of a stored counter entry: 2^53-1 has 16 decimal
// digits.
const valueLen = 16

// Backoff between attempts to reload a broken watch.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Store is a storage.Store and storage.CounterWatcher on an etcd cluster.
// Several server nodes may share one cluster and prefix.
type Store struct {
	cli    *clientv3.Client
	prefix string
	lg     *zap.Logger

	closed atomic.Bool
	// done is canceled by Close; watch goroutines stop then.
	done     context.Context
	cancel   context.CancelFunc
	watchers sync.WaitGroup // watch goroutines, for tests

	// Test hooks. beforeWatch, if set, runs before each watch is
	// registered, with the revision the watch starts after; watchBroke runs
	// when a registered watch breaks, with the reason.
	beforeWatch func(rev int64)
	watchBroke  func(err error)
}

var (
	_ storage.Store          = (*Store)(nil)
	_ storage.CounterWatcher = (*Store)(nil)
	_ storage.BoundedStore   = (*Store)(nil)
	_ storage.BoundedWatcher = (*Store)(nil)
)

// New returns a store keeping its keys under prefix (DefaultPrefix if
// empty) in the cluster cli talks to. The prefix must not end in '/'.
// Stores sharing a cluster need prefixes that keep their keys apart: "/a"
// and "/b" do, "/a" and "/a/c" may not. The caller keeps ownership of cli:
// Close does not close it.
func New(cli *clientv3.Client, prefix string) (*Store, error) {
	if cli == nil {
		return nil, fmt.Errorf("etcdstore: %w: nil client", storage.ErrInvalid)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcdstore: %w: prefix %q ends in /", storage.ErrInvalid, prefix)
	}
	lg := cli.GetLogger()
	if lg == nil {
		lg = zap.NewNop()
	}
	done, cancel := context.WithCancel(context.Background())
	return &Store{cli: cli, prefix: prefix, lg: lg.Named("etcdstore"), done: done, cancel: cancel}, nil
}

// Client returns the client the store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the prefix of every key the store uses.
func (s *Store) Prefix() string { return s.prefix }

// check reports why an operation may not start: ctx done or s closed.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("etcdstore: %w", err)
	}
	return nil
}

// counterPrefix is the prefix of every entry key of counter name. The
// length in front of the name keeps it prefix-free: no counter's prefix
// starts with another's.
func (s *Store) counterPrefix(name string) string {
	return s.prefix + "/c/" + strconv.Itoa(len(name)) + ":" + name + "/"
}

func (s *Store) ownerKey(node string) string { return s.prefix + "/o/" + node }

func (s *Store) fenceKey() string { return s.prefix + "/fence" }

// encodeValue formats v (0 ≤ v ≤ MaxSafe) as valueLen zero-padded decimal
// digits, so byte order is numeric order.
func encodeValue(v int64) string {
	var b [valueLen]byte
	for i := valueLen - 1; i >= 0; i-- {
		b[i] = '0' + byte(v%10)
		v /= 10
	}
	return string(b[:])
}

// decodeValue parses a value written by encodeValue.
func decodeValue(b []byte) (int64, error) {
	if len(b) != valueLen {
		return 0, fmt.Errorf("value of %d bytes, want %d digits", len(b), valueLen)
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("value %q is not decimal", b)
		}
		v = 10*v + int64(c-'0')
	}
	if v > crdt.MaxSafe {
		return 0, fmt.Errorf("value %d exceeds 2^53-1", v)
	}
	return v, nil
}

// parseEntry parses the key (below counter prefix cp) and value of a
// counter entry.
func parseEntry(cp string, key, value []byte) (side byte, node string, v int64, err error) {
	rest, ok := strings.CutPrefix(string(key), cp)
	if !ok || len(rest) < 3 || (rest[0] != 'p' && rest[0] != 'n') || rest[1] != '/' || len(rest)-2 > storage.MaxNodeLen {
		return 0, "", 0, fmt.Errorf("etcdstore: %q is not a counter entry key", key)
	}
	v, err = decodeValue(value)
	if err != nil {
		return 0, "", 0, fmt.Errorf("etcdstore: key %q: %w", key, err)
	}
	return rest[0], rest[2:], v, nil
}

// addEntry raises st's entry (side, node) to v.
func addEntry(st crdt.State, side byte, node string, v int64) {
	m := st.P
	if side == 'n' {
		m = st.N
	}
	if v > m[node] {
		m[node] = v
	}
}

func newState() crdt.State {
	return crdt.State{P: map[string]int64{}, N: map[string]int64{}}
}

// get reads counter name (counter prefix cp) at one revision. Entries that
// do not parse fail it if strict, and are logged and skipped otherwise.
func (s *Store) get(ctx context.Context, name, cp string, strict bool) (crdt.State, int64, error) {
	resp, err := s.cli.Get(ctx, cp, clientv3.WithPrefix())
	if err != nil {
		return crdt.State{}, 0, fmt.Errorf("etcdstore: load %q: %w", name, err)
	}
	st := newState()
	for _, kv := range resp.Kvs {
		side, node, v, err := parseEntry(cp, kv.Key, kv.Value)
		if err != nil {
			if strict {
				return crdt.State{}, 0, fmt.Errorf("%w (counter %q)", err, name)
			}
			s.lg.Warn("skipping corrupt counter entry", zap.String("counter", name), zap.Error(err))
			continue
		}
		if v > 0 {
			addEntry(st, side, node, v)
		}
	}
	return st, resp.Header.Revision, nil
}

// LoadCounter implements storage.Store: one linearizable Get of the
// counter's prefix. An entry that does not parse (not written by this
// package) fails it.
func (s *Store) LoadCounter(ctx context.Context, name string) (crdt.State, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.State{}, err
	}
	if err := s.check(ctx); err != nil {
		return crdt.State{}, err
	}
	st, _, err := s.get(ctx, name, s.counterPrefix(name), true)
	return st, err
}

// raiseOp is the operation that stores v at key unless a value at least as
// large is stored:
//
//	if Value(key) > encode(v-1) {} else { Put(key, encode(v)) }
//
// With fixed-width values, "stored > v-1" is "stored ≥ v" (etcd has no ≥).
// A Value compare on a missing key is false, so the Else branch also
// creates missing keys: one compare and one nesting level decide "missing
// or smaller" (see the package doc for why not the If(missing) form).
func raiseOp(key string, v int64) clientv3.Op {
	return clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.Value(key), ">", encodeValue(v-1))},
		nil,
		[]clientv3.Op{clientv3.OpPut(key, encodeValue(v))},
	)
}

// MergeCounter implements storage.Store: one transaction holding one
// raiseOp per non-zero entry, or, for larger calls, several of at most
// entriesPerTxn entries each. Each transaction on its own only raises
// entries, so a failure between them leaves a state that a retry completes.
func (s *Store) MergeCounter(ctx context.Context, name string, entries crdt.State) error {
	if err := storage.ValidateMerge(name, entries); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	cp := s.counterPrefix(name)
	ops := make([]clientv3.Op, 0, entries.Len())
	for _, side := range [2]struct {
		tag string
		m   map[string]int64
	}{{"p/", entries.P}, {"n/", entries.N}} {
		for node, v := range side.m {
			if v > 0 { // zero is the same as absent
				ops = append(ops, raiseOp(cp+side.tag+node, v))
			}
		}
	}
	for len(ops) > 0 {
		chunk := ops[:min(len(ops), entriesPerTxn)]
		ops = ops[len(chunk):]
		if _, err := s.cli.Txn(ctx).Then(chunk...).Commit(); err != nil {
			return fmt.Errorf("etcdstore: merge %q: %w", name, err)
		}
	}
	return nil
}

// claimOp is the operation that binds the owner key k to user unless it
// is bound, and reads it otherwise: one nesting level, one operation per
// branch, like raiseOp.
func claimOp(k, user string) clientv3.Op {
	return clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(k, user)},
		[]clientv3.Op{clientv3.OpGet(k)},
	)
}

// ClaimNodes implements storage.Store: one transaction holding one claimOp
// per distinct node, or, for more nodes, one per entriesPerTxn of them
// (etcd's --max-txn-ops, as MergeCounter). Each claimOp is atomic on its
// own, so a failure between transactions leaves claims a retry completes.
func (s *Store) ClaimNodes(ctx context.Context, nodes []string, user string) ([]string, error) {
	if err := storage.ValidateClaims(nodes, user); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	owner := make(map[string]string, len(nodes))
	distinct := make([]string, 0, len(nodes))
	for _, node := range nodes {
		if _, dup := owner[node]; !dup {
			owner[node] = ""
			distinct = append(distinct, node)
		}
	}
	for len(distinct) > 0 {
		chunk := distinct[:min(len(distinct), entriesPerTxn)]
		distinct = distinct[len(chunk):]
		ops := make([]clientv3.Op, len(chunk))
		for i, node := range chunk {
			ops[i] = claimOp(s.ownerKey(node), user)
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("etcdstore: claim %d nodes: %w", len(chunk), err)
		}
		for i, node := range chunk {
			tr := resp.Responses[i].GetResponseTxn()
			if tr.GetSucceeded() {
				owner[node] = user
				continue
			}
			rs := tr.GetResponses()
			if len(rs) == 0 {
				return nil, fmt.Errorf("etcdstore: claim %q: no owner read", node)
			}
			kvs := rs[0].GetResponseRange().GetKvs()
			if len(kvs) == 0 || len(kvs[0].Value) == 0 {
				return nil, fmt.Errorf("etcdstore: claim %q: owner key %q is empty", node, s.ownerKey(node))
			}
			owner[node] = string(kvs[0].Value)
		}
	}
	owners := make([]string, len(nodes))
	for i, node := range nodes {
		owners[i] = owner[node]
	}
	return owners, nil
}

// ReserveFencing implements storage.Store: a compare-and-swap on the fence
// key, retried while other reservations win the race. A lost race returns
// the winner's value with it, so each retry is one round trip.
func (s *Store) ReserveFencing(ctx context.Context, n uint64) (uint64, error) {
	if _, err := storage.ValidateReserve(0, n); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	k := s.fenceKey()
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return 0, fmt.Errorf("etcdstore: reserve: %w", err)
	}
	kvs := resp.Kvs
	for {
		var hw uint64
		var modRev int64 // 0: no key yet, which a ModRevision compare matches
		if len(kvs) > 0 {
			hw, err = strconv.ParseUint(string(kvs[0].Value), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("etcdstore: reserve: corrupt fence key %q: %w", k, err)
			}
			modRev = kvs[0].ModRevision
		}
		first, err := storage.ValidateReserve(hw, n)
		if err != nil {
			return 0, err
		}
		tr, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", modRev)).
			Then(clientv3.OpPut(k, strconv.FormatUint(hw+n, 10))).
			Else(clientv3.OpGet(k)).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("etcdstore: reserve: %w", err)
		}
		if tr.Succeeded {
			return first, nil
		}
		kvs = tr.Responses[0].GetResponseRange().GetKvs()
	}
}

// Close implements storage.Store. It stops the store's watches but leaves
// the client open.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return storage.ErrClosed
	}
	s.cancel()
	return nil
}

// WatchCounter implements storage.CounterWatcher. It reads the counter at
// some revision R, registers a watch of the counter's prefix from R+1, and
// returns the state read; a goroutine then calls fn with the entries of
// each watch response. When the watch breaks (compaction, no leader, lost
// stream) the goroutine reads the whole counter again, passes it to fn and
// watches from after that read, backing off while etcd is unreachable. It
// stops when ctx is done, the store is closed or the client is closed.
//
// Entries that do not parse are skipped with a warning after the first
// read; in the first read they fail WatchCounter as they fail LoadCounter.
func (s *Store) WatchCounter(ctx context.Context, name string, fn func(crdt.State)) (crdt.State, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.State{}, err
	}
	if fn == nil {
		return crdt.State{}, fmt.Errorf("etcdstore: %w: nil fn", storage.ErrInvalid)
	}
	if err := s.check(ctx); err != nil {
		return crdt.State{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(s.done, cancel)
	stopCli := context.AfterFunc(s.cli.Ctx(), cancel)
	stop := func() { stopClose(); stopCli(); cancel() }

	cp := s.counterPrefix(name)
	st, rev, err := s.get(ctx, name, cp, true)
	if err != nil {
		stop()
		return crdt.State{}, err
	}
	w, err := s.watch(ctx, cp, rev)
	if err != nil {
		stop()
		if s.closed.Load() {
			return crdt.State{}, storage.ErrClosed
		}
		return crdt.State{}, fmt.Errorf("etcdstore: watch %q: %w", name, err)
	}
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		defer stop()
		s.follow(ctx, name, cp, w, fn)
	}()
	return st, nil
}

// registeredWatch is a watch whose creation etcd has confirmed.
type registeredWatch struct {
	ch     clientv3.WatchChan
	cancel context.CancelFunc
}

// watch registers a watch of the prefix cp from revision rev+1 and waits
// until etcd confirms it. WithRequireLeader makes etcd close it when its
// member loses the leader, rather than let it go silent.
func (s *Store) watch(ctx context.Context, cp string, rev int64) (registeredWatch, error) {
	if s.beforeWatch != nil {
		s.beforeWatch(rev)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch := s.cli.Watch(clientv3.WithRequireLeader(wctx), cp,
		clientv3.WithPrefix(), clientv3.WithRev(rev+1),
		clientv3.WithFilterDelete(), clientv3.WithCreatedNotify())
	select {
	case r, ok := <-ch:
		switch {
		case !ok:
			err := ctx.Err()
			if err == nil {
				err = errors.New("watch closed")
			}
			cancel()
			return registeredWatch{}, err
		case r.Err() != nil:
			cancel()
			return registeredWatch{}, r.Err()
		case !r.Created:
			cancel()
			return registeredWatch{}, errors.New("watch response before creation")
		}
		return registeredWatch{ch, cancel}, nil
	case <-ctx.Done():
		cancel()
		return registeredWatch{}, ctx.Err()
	}
}

// follow passes the changes that watch w reports to fn, and reloads and
// re-registers the watch whenever it breaks, until ctx is done.
func (s *Store) follow(ctx context.Context, name, cp string, w registeredWatch, fn func(crdt.State)) {
	var delay time.Duration
	for {
		start := time.Now()
		delivered, err := s.consume(ctx, name, cp, w, fn)
		w.cancel()
		if ctx.Err() != nil {
			return
		}
		s.lg.Info("watch broke; reloading", zap.String("counter", name), zap.Error(err))
		if s.watchBroke != nil {
			s.watchBroke(err)
		}
		if delivered || time.Since(start) >= maxBackoff {
			delay = 0 // it was healthy: retry at once
		}
		for {
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			delay = min(max(2*delay, minBackoff), maxBackoff)
			st, rev, err := s.get(ctx, name, cp, false)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				s.lg.Info("watch: reload failed", zap.String("counter", name), zap.Error(err))
				continue
			}
			if st.Len() > 0 {
				fn(st)
			}
			if w, err = s.watch(ctx, cp, rev); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.lg.Info("watch: re-register failed", zap.String("counter", name), zap.Error(err))
		}
	}
}

// consume calls fn with the entries of each response of w until w breaks
// or ctx is done. It reports whether it passed any entries on, and why w
// broke.
func (s *Store) consume(ctx context.Context, name, cp string, w registeredWatch, fn func(crdt.State)) (delivered bool, err error) {
	for {
		var r clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case r, ok = <-w.ch:
		}
		switch {
		case !ok:
			return delivered, errors.New("watch channel closed")
		case r.Err() != nil:
			return delivered, r.Err()
		case r.Canceled:
			return delivered, errors.New("watch canceled")
		}
		st := newState()
		for _, ev := range r.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			side, node, v, err := parseEntry(cp, ev.Kv.Key, ev.Kv.Value)
			if err != nil {
				s.lg.Warn("watch: skipping corrupt counter entry", zap.String("counter", name), zap.Error(err))
				continue
			}
			if v > 0 {
				addEntry(st, side, node, v)
			}
		}
		if st.Len() == 0 {
			continue
		}
		delivered = true
		if ctx.Err() != nil {
			return delivered, ctx.Err()
		}
		fn(st)
	}
}

// boundedKey is the key of bounded counter name.
func (s *Store) boundedKey(name string) string {
	return s.prefix + "/b/" + strconv.Itoa(len(name)) + ":" + name
}

// LoadBounded implements storage.BoundedStore.
func (s *Store) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.BState{}, false, err
	}
	if err := s.check(ctx); err != nil {
		return crdt.BState{}, false, err
	}
	resp, err := s.cli.Get(ctx, s.boundedKey(name))
	if err != nil {
		return crdt.BState{}, false, fmt.Errorf("etcdstore: load bounded: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return crdt.BState{}, false, nil
	}
	st, err := storage.DecodeBounded(resp.Kvs[0].Value)
	return st, err == nil, err
}

// UpdateBounded implements storage.BoundedStore: a compare-and-swap on the
// counter's key (its mod revision), retried with the winner's value when
// another node wrote first. So two nodes never both grant the same
// rights: the second one's transaction fails and it recomputes from the
// first one's state.
func (s *Store) UpdateBounded(ctx context.Context, name string,
	fn func(crdt.BState, bool) (crdt.BState, bool, error)) (crdt.BState, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.BState{}, err
	}
	if err := s.check(ctx); err != nil {
		return crdt.BState{}, err
	}
	k := s.boundedKey(name)
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return crdt.BState{}, fmt.Errorf("etcdstore: update bounded: %w", err)
	}
	kvs := resp.Kvs
	for {
		var cur []byte
		var modRev int64 // 0: no key yet, which a ModRevision compare matches
		if len(kvs) > 0 {
			cur, modRev = kvs[0].Value, kvs[0].ModRevision
		}
		out, st, err := storage.UpdateBoundedBytes(name, cur, fn)
		if err != nil {
			return crdt.BState{}, err
		}
		if out == nil {
			return st, nil
		}
		tr, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", modRev)).
			Then(clientv3.OpPut(k, string(out))).
			Else(clientv3.OpGet(k)).
			Commit()
		if err != nil {
			return crdt.BState{}, fmt.Errorf("etcdstore: update bounded: %w", err)
		}
		if tr.Succeeded {
			return st, nil
		}
		kvs = tr.Responses[0].GetResponseRange().GetKvs()
	}
}

// WatchBounded implements storage.BoundedWatcher.
func (s *Store) WatchBounded(ctx context.Context, name string, fn func(crdt.BState)) error {
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	k := s.boundedKey(name)
	ctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(s.done, cancel)
	stopCli := context.AfterFunc(s.cli.Ctx(), cancel)
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		defer func() { stopClose(); stopCli(); cancel() }()
		for ctx.Err() == nil {
			resp, err := s.cli.Get(ctx, k)
			if err != nil {
				if !sleepCtx(ctx, time.Second) {
					return
				}
				continue
			}
			if len(resp.Kvs) > 0 {
				if st, err := storage.DecodeBounded(resp.Kvs[0].Value); err == nil {
					fn(st)
				}
			}
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for wr := range s.cli.Watch(wctx, k, clientv3.WithRev(resp.Header.Revision+1)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Kv == nil || len(ev.Kv.Value) == 0 {
						continue
					}
					if st, err := storage.DecodeBounded(ev.Kv.Value); err == nil {
						fn(st)
					}
				}
			}
			cancel()
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
		}
	}()
	return nil
}

// sleepCtx waits d or until ctx is done, reporting whether ctx is still
// live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
