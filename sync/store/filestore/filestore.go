//go:build !js

package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
const formatVersion = 1

var (
	bucketMeta     = []byte("meta")
	bucketCounters = []byte("counters")
	keyFormat      = []byte("format")
	keyNodeID      = []byte("nodeId")
)

// Store is a store.Store in one bbolt file. It is safe for concurrent use.
type Store struct {
	path string
	// mu guards closed; operations hold it shared and Close exclusively,
	// so Close waits for operations in flight.
	mu     sync.RWMutex
	closed bool
	db     *bolt.DB
}

var _ store.Store = (*Store)(nil)

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
		if err == nil {
			_, err = tx.CreateBucket(bucketCounters)
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
	case !bytes.Equal(v, []byte{formatVersion}):
		return fmt.Errorf("%w: %s has format %x, this package reads %x", ErrFormat, path, v, formatVersion)
	}
	if tx.Bucket(bucketCounters) == nil {
		return fmt.Errorf("%w: %s has no counters bucket", ErrFormat, path)
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
		return applyTx(ctx, tx.Bucket(bucketCounters), b, totals)
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
	return nil
}

// counterRec is one counter touched by a batch: its state being updated
// and the record it had (nil if none).
type counterRec struct {
	st  crdt.State
	old []byte
}

// applyTx applies b to the counters bucket cb inside one transaction and
// fills totals. It reads and checks everything before its first Put.
func applyTx(ctx context.Context, cb *bolt.Bucket, b store.Batch, totals []store.OwnTotal) error {
	touched := make(map[string]*counterRec, len(b.Remote)+len(b.Own))
	cur := cb.Cursor()
	get := func(name string) (*counterRec, error) {
		if r, ok := touched[name]; ok {
			return r, nil
		}
		r := &counterRec{st: crdt.State{P: map[string]int64{}, N: map[string]int64{}}}
		// A cursor, unlike Get, tells a nested bucket (nil value) from a
		// missing key.
		if k, v := cur.Seek([]byte(name)); string(k) == name {
			st, err := decodeRecord(k, v)
			if err != nil {
				return nil, err
			}
			r.st, r.old = st, v
		}
		touched[name] = r
		return r, nil
	}
	for name, rs := range b.Remote {
		r, err := get(name)
		if err != nil {
			return err
		}
		r.st.Raise(rs)
	}
	for i, d := range b.Own {
		r, err := get(d.Name)
		if err != nil {
			return err
		}
		t, err := store.ApplyOwn(r.st.P[d.Node], r.st.N[d.Node], d)
		if err != nil {
			return err
		}
		if t.P > 0 {
			r.st.P[d.Node] = t.P
		}
		if t.N > 0 {
			r.st.N[d.Node] = t.N
		}
		totals[i] = t
	}
	type put struct{ k, v []byte }
	var puts []put
	for name, r := range touched {
		if r.old == nil && r.st.Len() == 0 {
			continue // an empty counter is the same as none
		}
		if v := encodeState(r.st); !bytes.Equal(v, r.old) {
			puts = append(puts, put{[]byte(name), v})
		}
	}
	// The last point where ctx is honoured: once the writes are made the
	// transaction commits, and Apply reports the commit's own outcome.
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range puts {
		if err := cb.Put(p.k, p.v); err != nil {
			return fmt.Errorf("filestore: write counter %q: %w", p.k, err)
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
