//go:build !js

package filestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/store"
)

// DefaultTimeout is how long Open waits for the file lock by default: long
// enough for a previous run of the program to finish closing, short enough
// that a second instance on the same file fails instead of hanging.
const DefaultTimeout = 5 * time.Second

// Options tune Open. The zero value gives the defaults.
type Options struct {
	// Timeout is how long Open waits for the file lock, held while another
	// Store (in this or another process) has the file open, before it
	// fails with a *LockedError (DefaultTimeout if ≤ 0).
	Timeout time.Duration
}

// Sentinel errors; returned errors wrap them.
var (
	// ErrLocked: the file is in use by another Store (matched by a
	// *LockedError).
	ErrLocked = errors.New("filestore: file in use by another process")
	// ErrCorrupt: a stored record is not one this package wrote. The
	// record is never used or repaired; the operation fails.
	ErrCorrupt = errors.New("filestore: corrupt record")
	// ErrFormat: the file is a bbolt database but not a filestore (another
	// program's, such as the server's boltstore, or a newer format).
	ErrFormat = errors.New("filestore: not a filestore file")
)

// LockedError is what Open returns when the file lock was not acquired
// within Options.Timeout: another process (or another Store in this one)
// has the file open. It matches ErrLocked.
type LockedError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("filestore: %s is in use by another process (file lock not acquired within %v)", e.Path, e.Timeout)
}

// Is matches ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// formatVersion is the value of meta/"format": the layout of the buckets
// and of the records in them (see the package doc).
// Format 1 had only meta and counters; Open migrates it.
const formatVersion = 2

var (
	bucketMeta     = []byte("meta")
	bucketCounters = []byte("counters")
	bucketOwn      = []byte("own")     // name → based flag byte + node of the last own delta
	bucketPending  = []byte("pending") // name → nothing: the pending index
	bucketUsed     = []byte("used")    // seq → name: recency, oldest first
	bucketUsedBy   = []byte("usedby")  // name → seq
	bucketBounded  = []byte("bounded") // name → bounded counter (JSON)
	keyFormat      = []byte("format")
	keyNodeID      = []byte("nodeId")
	keyGen         = []byte("gen") // the eviction generation, big-endian uint64
)

// indexBuckets are the buckets of format 2 beside meta and counters.
var indexBuckets = [][]byte{bucketOwn, bucketPending, bucketUsed, bucketUsedBy}

// Store is a store.Store in one bbolt file. It is safe for concurrent use.
type Store struct {
	path string
	// mu guards closed; operations hold it shared and Close exclusively,
	// so Close waits for operations in flight.
	mu     sync.RWMutex
	closed bool
	db     *bolt.DB
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.BoundedStore = (*Store)(nil)
)

// Open opens the store in the file at path, creating the file and its
// missing parent directories. While the Store is open the file is locked:
// a second Open of it, from any process, waits up to Options.Timeout and
// then fails with a *LockedError (errors.Is(err, ErrLocked)). The lock is
// released by Close or when the process exits, even by SIGKILL.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	dir := filepath.Dir(path)
	created, err := mkdirAll(dir)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	_, statErr := os.Stat(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &LockedError{Path: path, Timeout: opts.Timeout}
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: open %s: %w", path, err)
	}
	s := &Store{path: path, db: db}
	err = s.update(func(tx *bolt.Tx) error { return initFile(tx, path) })
	if err == nil && errors.Is(statErr, os.ErrNotExist) {
		// bbolt syncs the new file but not its directory entry, nor the
		// entries of the directories created for it.
		if err = syncDirs(dir, created); err != nil {
			err = fmt.Errorf("filestore: sync directory of %s: %w", path, err)
		}
	}
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// initFile creates the buckets of a new file, or checks that an existing
// one is a filestore of this format.
func initFile(tx *bolt.Tx, path string) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A file this package never initialised must be empty: a bbolt
		// file with buckets of its own belongs to another program.
		err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			return fmt.Errorf("%w: %s has bucket %q", ErrFormat, path, name)
		})
		if err != nil {
			return err
		}
		meta, err = tx.CreateBucket(bucketMeta)
		for _, b := range append([][]byte{bucketCounters}, indexBuckets...) {
			if err == nil {
				_, err = tx.CreateBucket(b)
			}
		}
		if err == nil {
			_, err = tx.CreateBucket(bucketBounded)
		}
		if err == nil {
			err = meta.Put(keyFormat, []byte{formatVersion})
		}
		if err != nil {
			return fmt.Errorf("filestore: init %s: %w", path, err)
		}
		return nil
	}
	switch v := meta.Get(keyFormat); {
	case v == nil:
		return fmt.Errorf("%w: %s has no format marker", ErrFormat, path)
	case bytes.Equal(v, []byte{1}) && tx.Bucket(bucketCounters) != nil:
		if err := migrate1(tx); err != nil {
			return fmt.Errorf("filestore: migrate %s from format 1: %w", path, err)
		}
	case !bytes.Equal(v, []byte{formatVersion}):
		return fmt.Errorf("%w: %s has format %x, this package reads %x", ErrFormat, path, v, formatVersion)
	}
	for _, b := range append([][]byte{bucketCounters}, indexBuckets...) {
		if tx.Bucket(b) == nil {
			return fmt.Errorf("%w: %s has no %s bucket", ErrFormat, path, b)
		}
	}
	// Bounded counters came later within format 2: an older file of that
	// format simply has none yet.
	if _, err := tx.CreateBucketIfNotExists(bucketBounded); err != nil {
		return fmt.Errorf("filestore: init %s: %w", path, err)
	}
	return nil
}

// migrate1 adds format 2's index buckets to a format 1 file: every record
// is recorded as written by the stored node id (the client's, unless it
// ran with client.Options.NodeID), marked pending by that rule and given
// a recency in key order.
func migrate1(tx *bolt.Tx) error {
	for _, b := range indexBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	own := string(tx.Bucket(bucketMeta).Get(keyNodeID))
	cb := tx.Bucket(bucketCounters)
	var names [][]byte
	err := cb.ForEach(func(k, v []byte) error {
		names = append(names, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range names {
		st, err := decodeRecord(k, cb.Get(k))
		if err != nil {
			return err
		}
		// Earlier releases wrote the own entries with every write.
		if err := putIndex(tx, string(k), &store.Record{State: st, Own: own, Based: true}, true); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyFormat, []byte{formatVersion})
}

// putIndex records r (of counter name) in the index buckets: its own node
// (if ownChanged), its pending mark and, as the most recent, its recency.
func putIndex(tx *bolt.Tx, name string, r *store.Record, ownChanged bool) error {
	k := []byte(name)
	if ownChanged {
		flag := byte(0)
		if r.Based {
			flag = 1
		}
		if err := tx.Bucket(bucketOwn).Put(k, append([]byte{flag}, r.Own...)); err != nil {
			return err
		}
	}
	pb := tx.Bucket(bucketPending)
	var err error
	if r.Pending() {
		if pb.Get(k) == nil {
			err = pb.Put(k, []byte{})
		}
	} else {
		err = pb.Delete(k)
	}
	if err != nil {
		return err
	}
	return touch(tx, k)
}

// readOwn returns the own node and based flag of counter k.
func readOwn(tx *bolt.Tx, k []byte) (own string, based bool) {
	v := tx.Bucket(bucketOwn).Get(k)
	if len(v) == 0 {
		return "", false
	}
	return string(v[1:]), v[0] == 1
}

// readGen returns the store's eviction generation.
func readGen(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyGen); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// touch makes counter k the most recently used.
func touch(tx *bolt.Tx, k []byte) error {
	ub, byb := tx.Bucket(bucketUsed), tx.Bucket(bucketUsedBy)
	if old := byb.Get(k); old != nil {
		if err := ub.Delete(old); err != nil {
			return err
		}
	}
	seq, err := ub.NextSequence()
	if err != nil {
		return err
	}
	sk := binary.BigEndian.AppendUint64(nil, seq)
	if err := ub.Put(sk, k); err != nil {
		return err
	}
	return byb.Put(k, sk)
}

// dropIndex removes counter k from the index buckets.
func dropIndex(tx *bolt.Tx, k []byte) error {
	byb := tx.Bucket(bucketUsedBy)
	if old := byb.Get(k); old != nil {
		if err := tx.Bucket(bucketUsed).Delete(old); err != nil {
			return err
		}
	}
	for _, b := range [][]byte{bucketUsedBy, bucketOwn, bucketPending} {
		if err := tx.Bucket(b).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// mkdirAll is os.MkdirAll returning the directories it created, deepest
// first.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return missing, nil
}

// syncDirs fsyncs dir, which holds a new file, and the parent of every
// directory in created, so that the new path survives a power loss.
func syncDirs(dir string, created []string) error {
	dirs := []string{dir}
	for _, d := range created {
		dirs = append(dirs, filepath.Dir(d))
	}
	for _, d := range dirs {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Path returns the path of the file.
func (s *Store) Path() string { return s.path }

// acquire takes s.mu shared unless ctx is done or s is closed; on success
// the caller must call s.mu.RUnlock.
func (s *Store) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

// update runs fn in one durable read-write transaction. Errors of fn are
// returned as they are (this package's own, store's sentinels, ctx's);
// bbolt's commit errors get the package prefix.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		fnErr = fn(tx)
		return fnErr
	})
	if err != nil && err != fnErr {
		return fmt.Errorf("filestore: commit %s: %w", s.path, err)
	}
	return err
}

// NodeID implements store.Store. Reading and creating the id happen in one
// read-write transaction, so concurrent callers get the same id. It is a
// write transaction even when the id exists: a read-only one could return
// an id whose creating commit has not been fsync'd yet. newID runs inside
// the transaction, which blocks other writers until it returns.
func (s *Store) NodeID(ctx context.Context, newID func() string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	var id string
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyNodeID); v != nil {
			if len(v) == 0 {
				return fmt.Errorf("%w: empty node id", ErrCorrupt)
			}
			id = string(v)
			return nil
		}
		id = newID()
		if id == "" {
			return fmt.Errorf("filestore: %w: empty node id", store.ErrInvalid)
		}
		if err := meta.Put(keyNodeID, []byte(id)); err != nil {
			return fmt.Errorf("filestore: node id: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// LoadCounters implements store.Store. Every record is decoded into new
// maps, so the result is the caller's. One corrupt record fails the call.
func (s *Store) LoadCounters(ctx context.Context) (map[string]crdt.State, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out map[string]crdt.State
	err := s.db.View(func(tx *bolt.Tx) error {
		out = make(map[string]crdt.State)
		return tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			st, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			out[string(k)] = st
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Load implements store.Store: it reads the named records only.
func (s *Store) Load(ctx context.Context, names []string) (store.Snapshot, error) {
	return s.view(ctx, func(tx *bolt.Tx, add func(k []byte) error) error {
		for _, name := range names {
			if err := add([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Pending implements store.Store: it walks the pending index and reads
// those records only.
func (s *Store) Pending(ctx context.Context) (store.Snapshot, error) {
	return s.view(ctx, func(tx *bolt.Tx, add func(k []byte) error) error {
		return tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			if tx.Bucket(bucketCounters).Get(k) == nil {
				return fmt.Errorf("%w: pending counter %q has no record", ErrCorrupt, k)
			}
			return add(k)
		})
	})
}

// view runs fn in a read-only transaction; fn adds records to the result
// with add (a missing one is left out).
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx, add func(k []byte) error) error) (store.Snapshot, error) {
	if err := s.acquire(ctx); err != nil {
		return store.Snapshot{}, err
	}
	defer s.mu.RUnlock()
	out := store.Snapshot{States: map[string]crdt.State{}, Based: map[string]bool{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		out.Gen = readGen(tx)
		cb := tx.Bucket(bucketCounters)
		return fn(tx, func(k []byte) error {
			v := cb.Get(k)
			if v == nil {
				return nil
			}
			st, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			out.States[string(k)] = st
			if _, based := readOwn(tx, k); based {
				out.Based[string(k)] = true
			}
			return nil
		})
	})
	if err != nil {
		return store.Snapshot{}, err
	}
	return out, nil
}

// Evict implements store.Store: one read-write transaction walks the
// recency index from the oldest record.
func (s *Store) Evict(ctx context.Context, max int, keep func(string) bool) ([]string, error) {
	if max < 0 {
		return nil, fmt.Errorf("filestore: %w: Evict max %d", store.ErrInvalid, max)
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []string
	err := s.update(func(tx *bolt.Tx) error {
		out = nil
		excess := tx.Bucket(bucketCounters).Stats().KeyN - max
		if excess <= 0 {
			return nil
		}
		pb := tx.Bucket(bucketPending)
		var victims [][]byte
		c := tx.Bucket(bucketUsed).Cursor()
		for k, name := c.First(); k != nil && len(victims) < excess; k, name = c.Next() {
			if pb.Get(name) != nil || (keep != nil && keep(string(name))) {
				continue
			}
			victims = append(victims, bytes.Clone(name))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, k := range victims {
			if err := tx.Bucket(bucketCounters).Delete(k); err != nil {
				return err
			}
			if err := dropIndex(tx, k); err != nil {
				return err
			}
			out = append(out, string(k))
		}
		if len(victims) == 0 {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keyGen, binary.BigEndian.AppendUint64(nil, readGen(tx)+1))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// decodeRecord decodes the record v of counter name, wrapping a defect
// with ErrCorrupt. A nil v is a nested bucket, which this package never
// creates.
func decodeRecord(name, v []byte) (crdt.State, error) {
	if v == nil {
		return crdt.State{}, fmt.Errorf("%w: counter %q is a bucket", ErrCorrupt, name)
	}
	st, err := decodeState(v)
	if err != nil {
		return crdt.State{}, fmt.Errorf("%w: counter %q: %w", ErrCorrupt, name, err)
	}
	return st, nil
}

// Apply implements store.Store: the whole batch is one bbolt read-write
// transaction, committed and fsync'd before Apply returns. Remote states
// are merged by per-entry max, then own deltas are added with
// store.ApplyOwn to what the transaction read. Every check happens before
// the first write and any error rolls the transaction back, so a failed
// Apply (ErrInvalid, a corrupt record, ctx done) changes nothing. A
// counter whose record would not change is not rewritten. Errors from
// Batch.Validate and store.ApplyOwn are returned unchanged.
func (s *Store) Apply(ctx context.Context, b store.Batch) ([]store.OwnTotal, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if err := checkKeys(b); err != nil {
		return nil, err
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	totals := make([]store.OwnTotal, len(b.Own))
	if b.Empty() {
		return totals, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		return applyTx(ctx, tx, b, totals)
	})
	if err != nil {
		return nil, err
	}
	return totals, nil
}

// checkKeys rejects counter names bbolt cannot store as keys, so that
// such a batch fails as invalid rather than in the middle of a write.
func checkKeys(b store.Batch) error {
	bad := func(name string) error {
		return fmt.Errorf("filestore: %w: counter name of %d bytes (at most %d)", store.ErrInvalid, len(name), bolt.MaxKeySize)
	}
	for _, d := range b.Own {
		if len(d.Name) > bolt.MaxKeySize {
			return bad(d.Name)
		}
	}
	for name := range b.Remote {
		if len(name) > bolt.MaxKeySize {
			return bad(name)
		}
	}
	for _, name := range append(slices.Clip(b.Fold), b.Touch...) {
		if len(name) > bolt.MaxKeySize {
			return bad(name)
		}
	}
	return nil
}

// applyTx applies b inside one transaction with store.ApplyRecords and
// fills totals. It reads and checks everything before its first Put.
func applyTx(ctx context.Context, tx *bolt.Tx, b store.Batch, totals []store.OwnTotal) error {
	cb := tx.Bucket(bucketCounters)
	names := b.Names()
	recs := make(map[string]*store.Record, len(names))
	olds := make(map[string][]byte, len(names))
	owns := make(map[string]store.Record, len(names)) // Own and Based as read
	cur := cb.Cursor()
	for _, name := range names {
		recs[name] = nil
		// A cursor, unlike Get, tells a nested bucket (nil value) from a
		// missing key.
		if k, v := cur.Seek([]byte(name)); string(k) == name {
			st, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			own, based := readOwn(tx, k)
			recs[name] = &store.Record{State: st, Own: own, Based: based}
			olds[name], owns[name] = v, store.Record{Own: own, Based: based}
		}
	}
	t, changed, err := store.ApplyRecords(b, recs, readGen(tx))
	if err != nil {
		return err
	}
	copy(totals, t)
	// The last point where ctx is honoured: once the writes are made the
	// transaction commits, and Apply reports the commit's own outcome.
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, name := range names {
		k, r := []byte(name), recs[name]
		switch {
		case !changed[name]:
			if olds[name] != nil && slices.Contains(b.Touch, name) {
				if err := touch(tx, k); err != nil {
					return err
				}
			}
			continue
		case r == nil:
			if olds[name] != nil {
				if err := cb.Delete(k); err != nil {
					return fmt.Errorf("filestore: delete counter %q: %w", k, err)
				}
				if err := dropIndex(tx, k); err != nil {
					return err
				}
			}
			continue
		}
		if v := encodeState(r.State); !bytes.Equal(v, olds[name]) {
			if err := cb.Put(k, v); err != nil {
				return fmt.Errorf("filestore: write counter %q: %w", k, err)
			}
		}
		was := owns[name]
		if err := putIndex(tx, name, r, r.Own != was.Own || r.Based != was.Based || olds[name] == nil); err != nil {
			return fmt.Errorf("filestore: index counter %q: %w", k, err)
		}
	}
	return nil
}

// Close implements store.Store. It waits for operations in flight, then
// closes the file and releases its lock. Later calls return
// store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("filestore: close: %w", err)
	}
	return nil
}

// LoadBounded implements store.BoundedStore.
func (s *Store) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	if err := s.acquire(ctx); err != nil {
		return crdt.BState{}, false, err
	}
	defer s.mu.RUnlock()
	var b []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(bucketBounded); bk != nil {
			if v := bk.Get([]byte(name)); v != nil {
				b = append([]byte(nil), v...)
			}
		}
		return nil
	})
	if err != nil || b == nil {
		return crdt.BState{}, false, err
	}
	st, err := store.DecodeBounded(b)
	return st, err == nil, err
}

// SaveBounded implements store.BoundedStore: one durable read-write
// transaction merging st into the stored state.
func (s *Store) SaveBounded(ctx context.Context, name string, st crdt.BState) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBounded)
		out, changed, err := store.MergeBounded(name, bk.Get([]byte(name)), st)
		if err != nil || !changed {
			return err
		}
		return bk.Put([]byte(name), out)
	})
}
