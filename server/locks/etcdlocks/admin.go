package etcdlocks

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/topgun-go/topgun/server/locks"
)

// The operator's side of the service (package server's admin API): every
// answer is read from etcd with a linearizable read, so any node answers
// for every lock. What only the granting node knows (the holder's
// connection id and the time left on its lease) is filled in when the
// answering node is that node.

// revokeMark starts the value of a key that Revoke is deleting: the node
// holding it finds the mark in the delete event's previous value and tells
// its holder "revoked" rather than "released". A key's value is otherwise
// its holder's user.
const revokeMark = "\x00revoked\x00"

// waitMark starts the value of a key queued behind others. When the key
// reaches the head of its queue, its node rewrites the value without the
// mark before it grants the lock (promote); a head that keeps the mark for
// staleHead belongs to a node that is gone, and any node deletes it.
const waitMark = "\x00wait\x00"

// revokedValue reports whether a key's value carries the revoke mark.
func revokedValue(v []byte) bool { return bytes.HasPrefix(v, []byte(revokeMark)) }

// waitingValue reports whether a key's value carries the wait mark.
func waitingValue(v []byte) bool { return bytes.HasPrefix(v, []byte(waitMark)) }

// keyUser is the user a key was written for.
func keyUser(v []byte) string {
	return strings.TrimPrefix(strings.TrimPrefix(string(v), revokeMark), waitMark)
}

// listPage is how many keys one read of List takes.
const listPage = 512

// info describes the lock whose queue head is head, with n keys queued
// (head included). l.mu is not held.
func (l *Service) info(name string, head *mvccpb.KeyValue, n int64) locks.Info {
	in := locks.Info{Name: name}
	if head == nil {
		return in
	}
	key := string(head.Key)
	in.Held, in.FencingToken, in.Waiters = true, uint64(head.CreateRevision), int(n-1)
	in.Holder.User = keyUser(head.Value)
	// The key ends in <lease>-<seq>: the lease names the node.
	suffix := strings.TrimPrefix(key, l.namePrefix(name))
	in.Holder.Node, _, _ = strings.Cut(suffix, "-")
	l.mu.Lock()
	if q := l.reqs[key]; q != nil && q.state == reqHeld && q.token == in.FencingToken {
		in.Holder.Conn = q.h.ID()
		in.ExpiresIn, in.Expiry = max(time.Until(q.until), 0), true
	}
	l.mu.Unlock()
	return in
}

// head reads the head of name's queue (nil when empty) and the number of
// keys in it.
func (l *Service) head(ctx context.Context, name string) (*mvccpb.KeyValue, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := l.cli.Get(ctx, l.namePrefix(name), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0], resp.Count, nil
}

// Info implements locks.Service.
func (l *Service) Info(ctx context.Context, name string) (locks.Info, error) {
	head, n, err := l.head(ctx, name)
	if err != nil {
		return locks.Info{Name: name}, err
	}
	return l.info(name, head, n), nil
}

// Fence implements locks.Service, with a linearizable read of the queue's
// head: a token is current only while its key is the head.
func (l *Service) Fence(ctx context.Context, name string, token uint64) (bool, uint64, error) {
	head, _, err := l.head(ctx, name)
	if err != nil || head == nil {
		return false, 0, err
	}
	t := uint64(head.CreateRevision)
	return t == token, t, nil
}

// List implements locks.Service. Keys are ordered by length-prefixed
// name in etcd, so it reads the whole lock table (in pages, at one
// revision) and sorts the names matching prefix.
func (l *Service) List(ctx context.Context, prefix string, limit int) ([]locks.Info, bool, error) {
	type acc struct {
		head *mvccpb.KeyValue
		n    int64
	}
	byName := make(map[string]*acc)
	end := clientv3.GetPrefixRangeEnd(l.prefix)
	from, rev := l.prefix, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, l.timeout)
		resp, err := l.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return nil, false, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			name, ok := l.keyName(string(kv.Key))
			if !ok || !strings.HasPrefix(name, prefix) {
				continue
			}
			a := byName[name]
			if a == nil {
				a = &acc{}
				byName[name] = a
			}
			a.n++
			if a.head == nil || kv.CreateRevision < a.head.CreateRevision {
				a.head = kv
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	slices.Sort(names)
	more := len(names) > limit
	if more {
		names = names[:limit]
	}
	out := make([]locks.Info, 0, len(names))
	for _, name := range names {
		out = append(out, l.info(name, byName[name].head, byName[name].n))
	}
	return out, more, nil
}

// errRevokeRace is Revoke's error when the head kept changing under it.
var errRevokeRace = errors.New("etcdlocks: the lock changed hands during the revoke; try again")

// Revoke implements locks.Service. It marks the head's key (revokeMark,
// keeping its lease), then deletes it, both only if the key is still the
// one it read: the holder's node sees the delete with the mark and sends
// LOCK_LOST "revoked"; every node with waiters re-reads the head, as
// after a release.
func (l *Service) Revoke(ctx context.Context, name string) (locks.Info, error) {
	for range 3 {
		head, n, err := l.head(ctx, name)
		if err != nil {
			return locks.Info{Name: name}, err
		}
		if head == nil {
			return locks.Info{Name: name}, locks.ErrNotHeld
		}
		in := l.info(name, head, n)
		key := string(head.Key)
		same := clientv3.Compare(clientv3.CreateRevision(key), "=", head.CreateRevision)
		tctx, cancel := context.WithTimeout(ctx, l.timeout)
		mark, err := l.cli.Txn(tctx).If(same).
			Then(clientv3.OpPut(key, revokeMark+keyUser(head.Value), clientv3.WithIgnoreLease())).Commit()
		cancel()
		if err != nil {
			return in, err
		}
		if !mark.Succeeded {
			continue // released or expired meanwhile: look again
		}
		tctx, cancel = context.WithTimeout(ctx, l.timeout)
		del, err := l.cli.Txn(tctx).If(same).Then(clientv3.OpDelete(key)).Commit()
		cancel()
		if err != nil {
			return in, err
		}
		if !del.Succeeded {
			return in, locks.ErrNotHeld // its holder let it go first
		}
		return in, nil
	}
	return locks.Info{Name: name}, errRevokeRace
}
