// Package etcdstore is a storage.Store kept in an etcd cluster, which
// several server nodes can share. It also implements
// storage.CounterWatcher, so a node learns of counter writes made through
// the others.
//
// Every write is one etcd transaction (or, for a merge of more than 127
// entries, one per 127) and returns once etcd has committed it, that is once
// a majority of members has it on disk: an acknowledged write survives the
// loss of any minority, leader included (see TestKillLeader). A write in
// flight when the leader fails may return an error ("request timed out,
// possibly due to previous leader failure") although it was applied; every
// write here is safe to retry.
//
// # Layout
//
// All keys start with the store's prefix (DefaultPrefix, "/topgun", unless
// New is given another):
//
//	<prefix>/c/<len(name)>:<name>/p/<node>   counter entry: increments of node
//	<prefix>/c/<len(name)>:<name>/n/<node>   counter entry: decrements of node
//	<prefix>/o/<node>                        owner of node id: the user
//	<prefix>/fence                           fencing high-water mark, decimal
//
// Counter names and node ids may contain '/' or any other byte. The name's
// byte length in decimal, followed by ':', keeps counter prefixes
// unambiguous: no counter's key prefix starts with another's, so a Get or a
// watch with the prefix of counter "c" never sees counter "c/d". The node id
// is the rest of the key.
//
// An entry's value is its magnitude (0..2^53-1) as 16 zero-padded decimal
// digits, so that byte order is numeric order and etcd's byte-wise Value
// compare decides "stored < new" inside a transaction. Zero entries are not
// stored.
//
// Two stores on one cluster need prefixes that keep their keys apart, such
// as "/a" and "/b"; a prefix ending in '/' is refused.
//
// # Transactions
//
// One counter entry per key spreads concurrent writers of one counter over
// many keys; a single key holding the whole state would be a hot spot where
// every writer's compare fails against every other's. MergeCounter sends one
// transaction with, per entry, a nested transaction that raises the stored
// value in one round trip without reading it first:
//
//	Txn().Then(
//	    OpTxn(If(Value(k1) > encode(v1-1)), Then(), Else(Put(k1, encode(v1)))),
//	    OpTxn(If(Value(k2) > encode(v2-1)), Then(), Else(Put(k2, encode(v2)))),
//	    ...)
//
// etcd has no ≥ compare, but with fixed-width values "stored > v-1" is
// "stored ≥ v", and etcd evaluates a Value compare on a missing key as
// false, so the Else branch runs exactly when the key is missing or holds
// less. The more obvious If(Value(k) < v) Then(Put) needs a second nested
// transaction, If(CreateRevision(k) = 0) Then(Put), for missing keys.
// Values already stored write nothing, so a merge that raises nothing does
// not advance the revision or wake watchers.
//
// etcd (3.4.23 here) limits a transaction to --max-txn-ops operations per
// level, 128 by default, and charges a nested transaction against what its
// parent leaves, so the single level of nesting allows 127 entries per
// transaction (two levels would allow 126); MergeCounter splits larger
// merges, and as each transaction only raises values, a failure between
// them is repaired by a retry. etcd also refuses a transaction that puts
// one key in two sibling operations ("duplicate key given in txn request";
// a put in both branches of one nested transaction is allowed), which
// cannot happen here as each entry has its own key.
//
// ClaimNodes holds one nested transaction per node, If(CreateRevision(owner
// key) = 0) Then(Put) Else(Get), split like MergeCounter's (distinct nodes
// only, so no key comes twice). ReserveFencing is a compare-and-swap on the fence
// key's ModRevision whose Else branch reads the key, so a lost race costs
// one more round trip.
//
// # Watches
//
// WatchCounter reads a counter's prefix at revision R and watches it from
// R+1, so no write falls between the read and the watch. Watches carry
// clientv3.WithRequireLeader: a member that loses its leader closes them
// instead of letting them go quiet. When a watch breaks (its start revision
// was compacted, its member lost the leader or went away, the stream was
// canceled) the store reads the whole counter again, passes it to the
// callback and watches from after that read; merging by maximum makes the
// repeated entries harmless. Values in etcd that this package did not write
// are logged (through the client's zap logger) and skipped by watches;
// LoadCounter reports them as errors.
package etcdstore
