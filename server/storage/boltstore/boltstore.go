package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
)

// Default batch settings, chosen with BenchmarkBatchSettings: 128 writers
// each waiting on its own durable merge, ext4 on a shared virtio disk, 2 CPUs,
// 3 interleaved runs of -benchtime=1s plus 2 of 2s. fsync latency on that
// disk varied about 8x between runs, so only the trend is solid. Writes/s
// with MaxBatchSize 1000, mean (range):
//
//	MaxBatchDelay  0.5 ms        1 ms          2 ms          5 ms         10 ms (bbolt default)
//	writes/s       34k (17–63k)  29k (21–46k)  24k (17–32k)  14k (12–18k)  8.6k (8.3–9.1k)
//
// versus 290–2400 writes/s (500 in the 2s run) with one db.Update per write
// (BenchmarkMergeCounterUpdateEach): batching is 20–100x faster.
//
// Below one commit time the delay hardly matters in this closed loop (all
// writers rejoin right after a commit), but with writes arriving spread out a
// delay much shorter than an fsync splits them into many small batches that
// each pay one; 1 ms is the shortest delay near this disk's commit time and
// adds at most 1 ms to a lone write. MaxBatchSize only caps a batch (a full
// batch commits without waiting for the delay); MaxBatchSize 100 was no
// better beyond the noise, and 1000 keeps one batch's transaction modest.
const (
	DefaultMaxBatchSize  = 1000
	DefaultMaxBatchDelay = time.Millisecond
	// DefaultTimeout bounds the wait for the file lock, so a second server on
	// the same data dir fails instead of hanging.
	DefaultTimeout = 5 * time.Second
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("boltstore: data file in use")

// Options tune Open. The zero value gives the tuned defaults.
type Options struct {
	// MaxBatchSize caps how many writes share one commit
	// (DefaultMaxBatchSize if ≤ 0).
	MaxBatchSize int
	// MaxBatchDelay is how long a batch waits for more writes before it
	// commits (DefaultMaxBatchDelay if ≤ 0).
	MaxBatchDelay time.Duration
	// NoSync skips fsync: writes are no longer durable. Tests only.
	NoSync bool
	// Timeout is how long Open waits for the file lock (DefaultTimeout if
	// ≤ 0).
	Timeout time.Duration
}

var (
	bucketCounters = []byte("counters")
	bucketNodes    = []byte("nodes")
	bucketMeta     = []byte("meta")
	bucketBounded  = []byte("bounded")
	keyFence       = []byte("fence")
)

// Store is a storage.Store in a bbolt file.
type Store struct {
	// mu guards closed; operations hold it shared, Close exclusively, so
	// Close waits for operations in flight.
	mu     sync.RWMutex
	closed bool
	db     *bolt.DB
	// write runs a write function: db.Batch, or db.Update in the baseline
	// benchmark.
	write func(func(*bolt.Tx) error) error
}

var (
	_ storage.Store        = (*Store)(nil)
	_ storage.BoundedStore = (*Store)(nil)
)

// brokenReserve, set only by the chaosbroken build, replaces the durable
// fencing reservation (see broken_chaos.go).
var brokenReserve func(n uint64) uint64

// Open opens or creates the store in the file at path, creating missing
// directories.
func Open(path string, opts Options) (*Store, error) {
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	if opts.MaxBatchDelay <= 0 {
		opts.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	_, statErr := os.Stat(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is in use by another process (is another topgun-server running on this data directory?); file lock not acquired within %v",
			ErrLocked, path, opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	db.MaxBatchSize = opts.MaxBatchSize
	db.MaxBatchDelay = opts.MaxBatchDelay
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCounters, bucketNodes, bucketMeta, bucketBounded} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && errors.Is(statErr, os.ErrNotExist) && !opts.NoSync {
		// bbolt syncs the new file but not its directory entry.
		err = syncDir(dir)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	return &Store{db: db, write: db.Batch}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// acquire takes s.mu shared unless ctx is done or s is closed; on success
// the caller must call s.mu.RUnlock.
func (s *Store) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storage.ErrClosed
	}
	return nil
}

// batch runs fn in a shared, durable write transaction. fn must be
// rerunnable (see the package doc).
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.write(fn); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	return nil
}

func entryKey(side byte, node string) []byte {
	k := make([]byte, 2+len(node))
	k[0] = side
	copy(k[2:], node)
	return k
}

func encode(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decode(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("boltstore: corrupt value of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// LoadCounter implements storage.Store.
func (s *Store) LoadCounter(ctx context.Context, name string) (crdt.State, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.State{}, err
	}
	if err := s.acquire(ctx); err != nil {
		return crdt.State{}, err
	}
	defer s.mu.RUnlock()
	st := crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounters).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			x, err := decode(v)
			if err != nil {
				return err
			}
			if len(k) < 3 || k[1] != 0 || x > crdt.MaxSafe {
				return fmt.Errorf("boltstore: corrupt entry %q in counter %q", k, name)
			}
			switch k[0] {
			case 'p':
				st.P[string(k[2:])] = int64(x)
			case 'n':
				st.N[string(k[2:])] = int64(x)
			default:
				return fmt.Errorf("boltstore: corrupt entry %q in counter %q", k, name)
			}
			return nil
		})
	})
	if err != nil {
		return crdt.State{}, err
	}
	return st, nil
}

// MergeCounter implements storage.Store.
func (s *Store) MergeCounter(ctx context.Context, name string, entries crdt.State) error {
	if err := storage.ValidateMerge(name, entries); err != nil {
		return err
	}
	type kv struct {
		k []byte
		v uint64
	}
	kvs := make([]kv, 0, entries.Len())
	for _, side := range [2]struct {
		c byte
		m map[string]int64
	}{{'p', entries.P}, {'n', entries.N}} {
		for node, v := range side.m {
			if v > 0 { // zero is the same as absent
				kvs = append(kvs, kv{entryKey(side.c, node), uint64(v)})
			}
		}
	}
	if len(kvs) == 0 {
		if err := s.acquire(ctx); err != nil {
			return err
		}
		s.mu.RUnlock()
		return nil
	}
	bname := []byte(name)
	return s.batch(ctx, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketCounters).CreateBucketIfNotExists(bname)
		if err != nil {
			return err
		}
		for _, e := range kvs {
			if old := b.Get(e.k); old != nil {
				x, err := decode(old)
				if err != nil {
					return err
				}
				if x >= e.v {
					continue
				}
			}
			if err := b.Put(e.k, encode(e.v)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ClaimNodes implements storage.Store: one write transaction (shared with
// other writers by db.Batch) for every node. It is a write transaction
// even when every node is bound already: a read-only transaction could see
// a binding whose commit has not been fsync'd yet.
func (s *Store) ClaimNodes(ctx context.Context, nodes []string, user string) ([]string, error) {
	if err := storage.ValidateClaims(nodes, user); err != nil {
		return nil, err
	}
	owners := make([]string, len(nodes))
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		for i, node := range nodes {
			if v := b.Get([]byte(node)); v != nil {
				owners[i] = string(v)
				continue
			}
			owners[i] = user
			if err := b.Put([]byte(node), []byte(user)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return owners, nil
}

// ReserveFencing implements storage.Store.
func (s *Store) ReserveFencing(ctx context.Context, n uint64) (uint64, error) {
	if _, err := storage.ValidateReserve(0, n); err != nil {
		return 0, err
	}
	if brokenReserve != nil { // only in the chaosbroken build (broken_chaos.go)
		return brokenReserve(n), nil
	}
	var first uint64
	var invalid error // a full range, reported without failing the batch
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		var hw uint64
		if v := b.Get(keyFence); v != nil {
			x, err := decode(v)
			if err != nil {
				return err
			}
			hw = x
		}
		f, err := storage.ValidateReserve(hw, n)
		first, invalid = f, err
		if err != nil {
			return nil
		}
		return b.Put(keyFence, encode(hw+n))
	})
	if err != nil {
		return 0, err
	}
	if invalid != nil {
		return 0, invalid
	}
	return first, nil
}

// Close implements storage.Store. It waits for operations in flight.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	return nil
}

// LoadBounded implements storage.BoundedStore.
func (s *Store) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.BState{}, false, err
	}
	if err := s.acquire(ctx); err != nil {
		return crdt.BState{}, false, err
	}
	defer s.mu.RUnlock()
	var b []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketBounded).Get([]byte(name)); v != nil {
			b = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil || b == nil {
		return crdt.BState{}, false, err
	}
	st, err := storage.DecodeBounded(b)
	return st, err == nil, err
}

// UpdateBounded implements storage.BoundedStore: one read-modify-write in
// a batched write transaction (bbolt serialises writers, so it is atomic).
func (s *Store) UpdateBounded(ctx context.Context, name string,
	fn func(crdt.BState, bool) (crdt.BState, bool, error)) (crdt.BState, error) {
	if err := storage.ValidateName(name); err != nil {
		return crdt.BState{}, err
	}
	var st crdt.BState
	var fnErr error
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBounded)
		out, next, err := storage.UpdateBoundedBytes(name, b.Get([]byte(name)), fn)
		if err != nil {
			fnErr = err
			return err
		}
		st = next
		if out == nil {
			return nil
		}
		return b.Put([]byte(name), out)
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		return crdt.BState{}, fnErr // fn's own error, unwrapped
	}
	if err != nil {
		return crdt.BState{}, err
	}
	return st, nil
}
