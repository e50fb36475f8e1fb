package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/server/storage/storagetest"
)

// shared is the one-member cluster most tests share, each under its own
// prefix; tests that compact, count revisions or kill members start their
// own.
var shared *etcdtest.Cluster

func TestMain(m *testing.M) {
	os.Exit(etcdtest.Main(m, &shared, "topgun/server/storage/etcdstore."))
}

// newClient returns a client of endpoints, closed when the test ends.
func newClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var prefixes atomic.Int64

// uniquePrefix returns a prefix no other store of this test binary uses.
func uniquePrefix() string { return fmt.Sprintf("/test%d", prefixes.Add(1)) }

// newStore returns a store on cli under prefix, closed when the test ends.
func newStore(t testing.TB, cli *clientv3.Client, prefix string) *Store {
	t.Helper()
	s, err := New(cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStore(t *testing.T) {
	cli := newClient(t, shared.Endpoints())
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := New(cli, uniquePrefix())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestStoreDurable maps the suite's directory to a prefix: a reopened store
// on the same prefix sees the same keys.
func TestStoreDurable(t *testing.T) {
	cli := newClient(t, shared.Endpoints())
	storagetest.RunDurable(t, func(t *testing.T, dir string) storage.Store {
		s, err := New(cli, "/durable"+strings.TrimSuffix(dir, "/"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestNew(t *testing.T) {
	t.Parallel()
	cli := newClient(t, shared.Endpoints())
	s, err := New(cli, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Prefix() != DefaultPrefix || s.Client() != cli {
		t.Errorf("New(cli, \"\"): Prefix() = %q, Client() = %p; want %q, %p", s.Prefix(), s.Client(), DefaultPrefix, cli)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close left the client open.
	if _, err := cli.Get(context.Background(), "x"); err != nil {
		t.Errorf("Get after Store.Close: %v", err)
	}
	for _, c := range []struct {
		cli    *clientv3.Client
		prefix string
	}{{nil, "/x"}, {cli, "/x/"}, {cli, "/"}} {
		if _, err := New(c.cli, c.prefix); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("New(%p, %q) = %v, want ErrInvalid", c.cli, c.prefix, err)
		}
	}
}

// TestKeyLayout checks the keys and values the package doc promises.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cli := newClient(t, shared.Endpoints())
	prefix := uniquePrefix()
	s := newStore(t, cli, prefix)
	err := s.MergeCounter(ctx, "a/b", crdt.State{
		P: map[string]int64{"x/y": 5, "z": 0},
		N: map[string]int64{"x/y": crdt.MaxSafe},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimNodes(ctx, []string{"x/y"}, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReserveFencing(ctx, 3); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	want := map[string]string{
		prefix + "/c/3:a/b/p/x/y": "0000000000000005",
		prefix + "/c/3:a/b/n/x/y": "9007199254740991",
		prefix + "/o/x/y":         "alice",
		prefix + "/fence":         "3",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("keys:\n got %v\nwant %v", got, want)
	}
}

func TestValueEncoding(t *testing.T) {
	t.Parallel()
	prev := ""
	for _, v := range []int64{0, 1, 9, 10, 99, 100, 12345678, 1 << 40, crdt.MaxSafe - 1, crdt.MaxSafe} {
		e := encodeValue(v)
		if len(e) != valueLen {
			t.Errorf("encodeValue(%d) = %q, want %d bytes", v, e, valueLen)
		}
		if e <= prev {
			t.Errorf("encodeValue(%d) = %q sorts before %q", v, e, prev)
		}
		prev = e
		if d, err := decodeValue([]byte(e)); err != nil || d != v {
			t.Errorf("decodeValue(%q) = %d, %v; want %d", e, d, err, v)
		}
	}
	for _, bad := range []string{"", "1", "000000000000001x", "9007199254740992", "9999999999999999", "-000000000000001", "00000000000000001"} {
		if v, err := decodeValue([]byte(bad)); err == nil {
			t.Errorf("decodeValue(%q) = %d, want error", bad, v)
		}
	}
}

// FuzzParseEntry: parseEntry never panics, and accepts exactly what
// encodeValue and the key layout produce.
func FuzzParseEntry(f *testing.F) {
	const cp = "/t/c/1:c/"
	f.Add([]byte(cp+"p/x"), []byte("0000000000000005"))
	f.Add([]byte(cp+"n/x/y"), []byte("9007199254740991"))
	f.Add([]byte(cp+"q/x"), []byte("0000000000000005"))
	f.Add([]byte(cp+"p/"), []byte("0000000000000005"))
	f.Add([]byte("/t/c/2:c//p/x"), []byte("0000000000000005"))
	f.Add([]byte(cp+"p/x"), []byte("garbage"))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		side, node, v, err := parseEntry(cp, key, value)
		if err != nil {
			return
		}
		if string(key) != cp+string(side)+"/"+node || node == "" || len(node) > storage.MaxNodeLen {
			t.Fatalf("parseEntry(%q) = %c, %q", key, side, node)
		}
		if v < 0 || v > crdt.MaxSafe || encodeValue(v) != string(value) {
			t.Fatalf("parseEntry(value %q) = %d", value, v)
		}
	})
}

// revision returns the cluster's current revision.
func revision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), "/revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestOneTxnPerMerge checks on a cluster of its own that a merge of up to
// entriesPerTxn entries is one transaction: the revision advances by
// exactly one and every key written shares that ModRevision. Larger merges
// take one transaction per entriesPerTxn entries, and a merge that raises
// nothing writes nothing.
func TestOneTxnPerMerge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cli := etcdtest.New(t, 1).Client(t)
	s := newStore(t, cli, "")
	want := map[string]crdt.State{}
	for i, c := range []struct {
		name    string
		entries int
		base    int64 // values are base+1, base+2, ...
		txns    int64
	}{
		{"a", 1, 0, 1},
		{"b", 10, 0, 1},
		{"c", 64, 0, 1},
		{"c", 64, 1000, 1}, // raise every entry
		{"c", 64, 1000, 0}, // the same values again: nothing to raise
		{"c", 64, 500, 0},  // lower values: nothing to raise
		{"d", entriesPerTxn, 0, 1},
		{"d", entriesPerTxn + 1, 1000, 2},
		{"e", 300, 0, 3},
	} {
		st := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
		for j := range c.entries {
			v := c.base + int64(j+1)
			if j%2 == 0 {
				st.P[fmt.Sprintf("node-%d", j)] = v
			} else {
				st.N[fmt.Sprintf("node-%d", j)] = v
			}
		}
		before := revision(t, cli)
		if err := s.MergeCounter(ctx, c.name, st); err != nil {
			t.Fatalf("step %d: %d entries: %v", i, c.entries, err)
		}
		if got := revision(t, cli) - before; got != c.txns {
			t.Errorf("step %d: merge of %d entries advanced the revision by %d, want %d", i, c.entries, got, c.txns)
		}
		resp, err := cli.Get(ctx, s.counterPrefix(c.name), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		revs := map[int64]int{}
		for _, kv := range resp.Kvs {
			if kv.ModRevision > before {
				revs[kv.ModRevision]++
			}
		}
		if int64(len(revs)) != c.txns {
			t.Errorf("step %d: keys written at %d revisions (%v), want %d", i, len(revs), revs, c.txns)
		}
		got, err := s.LoadCounter(ctx, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if want[c.name].P == nil {
			want[c.name] = crdt.State{P: map[string]int64{}, N: map[string]int64{}}
		}
		want[c.name].Raise(st)
		if fmt.Sprint(got) != fmt.Sprint(want[c.name]) {
			t.Errorf("step %d: loaded %v, want %v", i, got, want[c.name])
		}
	}
}

// TestTxnLimit pins the etcd rule entriesPerTxn relies on: under the
// default --max-txn-ops a transaction holds entriesPerTxn raiseOps (or
// claimOps) and no more, as a nested transaction counts against its
// parent's budget.
func TestTxnLimit(t *testing.T) {
	t.Parallel()
	cli := newClient(t, shared.Endpoints())
	prefix := uniquePrefix()
	for _, c := range []struct {
		name string
		op   func(key string) clientv3.Op
	}{
		{"raiseOp", func(key string) clientv3.Op { return raiseOp(key, 1) }},
		{"claimOp", func(key string) clientv3.Op { return claimOp(key, "alice") }},
	} {
		txn := func(n int) error {
			ops := make([]clientv3.Op, n)
			for i := range ops {
				ops[i] = c.op(fmt.Sprintf("%s/%s/%d", prefix, c.name, i))
			}
			_, err := cli.Txn(context.Background()).Then(ops...).Commit()
			return err
		}
		if err := txn(entriesPerTxn); err != nil {
			t.Errorf("txn of %d %ss: %v", entriesPerTxn, c.name, err)
		}
		// Matched by text: importing go.etcd.io/etcd/api/v3 for rpctypes
		// would make it a direct dependency for one test.
		if err := txn(entriesPerTxn + 1); err == nil || !strings.Contains(err.Error(), "too many operations in txn request") {
			t.Errorf("txn of %d %ss = %v, want \"too many operations in txn request\"", entriesPerTxn+1, c.name, err)
		}
	}
}

// TestOneTxnPerClaim checks on a cluster of its own that ClaimNodes of up
// to entriesPerTxn new nodes is one transaction, and of more one per
// entriesPerTxn of them (repeats count once); a claim of bound nodes only
// reads.
func TestOneTxnPerClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cli := etcdtest.New(t, 1).Client(t)
	s := newStore(t, cli, "")
	nodes := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		return out
	}
	for i, c := range []struct {
		nodes []string
		txns  int64
	}{
		{nodes("a", 1), 1},
		{nodes("b", entriesPerTxn), 1},
		{append(nodes("c", entriesPerTxn), nodes("c", 5)...), 1}, // repeats
		{nodes("d", entriesPerTxn+1), 2},
		{nodes("e", 300), 3},
		{nodes("e", 300), 0}, // bound already
	} {
		before := revision(t, cli)
		owners, err := s.ClaimNodes(ctx, c.nodes, "alice")
		if err != nil {
			t.Fatalf("step %d: %d nodes: %v", i, len(c.nodes), err)
		}
		if got := revision(t, cli) - before; got != c.txns {
			t.Errorf("step %d: claim of %d nodes advanced the revision by %d, want %d", i, len(c.nodes), got, c.txns)
		}
		if len(owners) != len(c.nodes) {
			t.Fatalf("step %d: %d owners for %d nodes", i, len(owners), len(c.nodes))
		}
		for j, o := range owners {
			if o != "alice" {
				t.Fatalf("step %d: owner of %s is %q", i, c.nodes[j], o)
			}
		}
	}
}
