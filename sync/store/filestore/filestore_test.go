//go:build !js

// The tests run natively only, like the package: bbolt has no js build,
// and the crash test starts the real server, which links etcd's client.

package filestore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/leakcheck"
	"github.com/topgun-go/topgun/internal/testserver"
	"github.com/topgun-go/topgun/server/storage/boltstore"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/store/filestore"
	"github.com/topgun-go/topgun/sync/store/storetest"
)

// Child processes: the test binary re-executed with childEnv set runs the
// child's code from TestMain instead of the tests.
const (
	childEnv = "TOPGUN_FILESTORE_CHILD" // "crash" or "hold"
	pathEnv  = "TOPGUN_FILESTORE_PATH"  // the store file
	urlEnv   = "TOPGUN_FILESTORE_URL"   // crash: the client's server URL
	everyEnv = "TOPGUN_FILESTORE_EVERY" // crash: steps between Persists
)

// TestMain runs the tests and then checks for leaked goroutines, or, in a
// child process (childEnv set), the child's code.
func TestMain(m *testing.M) {
	switch mode := os.Getenv(childEnv); mode {
	case "":
		leakcheck.Main(m, "topgun/sync/store/filestore.", "topgun/sync/client.", "topgun/sync/transport.", "topgun/server.")
	case "crash":
		crashChild()
	case "hold":
		holdChild()
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, mode)
		os.Exit(2)
	}
}

// waitTimeout bounds every wait for a condition or a child process; it
// only matters when a test is about to fail.
const waitTimeout = 60 * time.Second

func open(t *testing.T, path string) *filestore.Store {
	t.Helper()
	s, err := filestore.Open(path, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "client.db"))
	})
	storetest.RunBounded(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "client.db"))
	})
}

// TestReopen checks that everything a closed store held is there after a
// new Open, in missing directories Open created.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state", "worker", "client.db")
	s := open(t, path)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	id, err := s.NodeID(ctx, func() string { return "node-1" })
	if err != nil {
		t.Fatal(err)
	}
	batches := []store.Batch{
		{Own: []store.OwnDelta{{Name: "jobs", Node: id, DP: 3}, {Name: "errors", Node: id, DN: 2}}},
		{Remote: map[string]crdt.State{"jobs": {P: map[string]int64{"peer": 40}, N: map[string]int64{"peer": 1}}}},
		{Own: []store.OwnDelta{{Name: "jobs", Node: id, DP: 1, DN: 1, FloorP: 10}}},
		{Own: []store.OwnDelta{{Name: "max", Node: id, DP: crdt.MaxSafe}}},
	}
	for _, b := range batches {
		if _, err := s.Apply(ctx, b); err != nil {
			t.Fatalf("Apply(%+v): %v", b, err)
		}
	}
	before, err := s.LoadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	again, err := s.NodeID(ctx, func() string { t.Error("newID called on reopen"); return "node-2" })
	if err != nil || again != id {
		t.Fatalf("NodeID after reopen = %q, %v; want %q", again, err, id)
	}
	after, err := s.LoadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]crdt.State{
		"jobs":   {P: map[string]int64{id: 11, "peer": 40}, N: map[string]int64{id: 1, "peer": 1}},
		"errors": {P: map[string]int64{}, N: map[string]int64{id: 2}},
		"max":    {P: map[string]int64{id: crdt.MaxSafe}, N: map[string]int64{}},
	}
	for _, got := range []map[string]crdt.State{before, after} {
		if !statesEqual(got, want) {
			t.Fatalf("LoadCounters = %v, want %v", got, want)
		}
	}
}

func statesEqual(a, b map[string]crdt.State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, s := range a {
		o, ok := b[k]
		if !ok || fmt.Sprint(s) != fmt.Sprint(o) { // fmt sorts map keys
			return false
		}
	}
	return true
}

// TestLocked checks that a second Open of a file in use, by this process
// or another one, fails with ErrLocked after the Timeout it is given, and
// that the file opens again once its holder is gone (closed, or killed
// with SIGKILL).
func TestLocked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// hold keeps the file locked and returns how to release it.
		hold func(t *testing.T, path string) (release func())
	}{
		{"same process", func(t *testing.T, path string) func() {
			s := open(t, path)
			return func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			}
		}},
		{"other process", func(t *testing.T, path string) func() {
			ch := startChild(t, "hold", pathEnv+"="+path)
			if line, ok := ch.next(); !ok || line != "locked" {
				ch.stop()
				t.Fatalf("hold child said %q (%t); stderr:\n%s", line, ok, ch.stderr())
			}
			return ch.stop // SIGKILL: the kernel drops the lock
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "client.db")
			release := tt.hold(t, path)
			const timeout = 100 * time.Millisecond
			s, err := filestore.Open(path, filestore.Options{Timeout: timeout})
			if err == nil {
				s.Close()
				release()
				t.Fatal("second Open succeeded, want ErrLocked")
			}
			var le *filestore.LockedError
			if !errors.Is(err, filestore.ErrLocked) || !errors.As(err, &le) || le.Path != path || le.Timeout != timeout {
				t.Errorf("second Open: %v (%T), want a *LockedError for %s matching ErrLocked", err, err, path)
			}
			if want := "filestore: " + path + " is in use by another process"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			release()
			// The default Timeout covers the moment the kernel takes to
			// drop a killed process's lock.
			s = open(t, path)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCorrupt damages records behind the store's back and checks that
// every read of them fails with ErrCorrupt and changes nothing, while
// intact counters stay usable, and that a client does not start on them.
func TestCorrupt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	good := store.OwnDelta{Name: "good", Node: "a", DP: 1}
	tests := []struct {
		name string
		// damage changes the raw bbolt file.
		damage func(tx *bolt.Tx) error
		// nodeID: NodeID fails too (the damage is to the node id).
		nodeID bool
	}{
		{"garbage record", putRaw("counters", "bad", []byte("not a record")), false},
		{"bit flip", func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("counters"))
			v := append([]byte(nil), b.Get([]byte("bad"))...)
			v[4] ^= 1
			return b.Put([]byte("bad"), v)
		}, false},
		{"nested bucket", func(tx *bolt.Tx) error {
			if err := tx.Bucket([]byte("counters")).Delete([]byte("bad")); err != nil {
				return err
			}
			_, err := tx.Bucket([]byte("counters")).CreateBucket([]byte("bad"))
			return err
		}, false},
		{"empty node id", putRaw("meta", "nodeId", []byte{}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "client.db")
			s := open(t, path)
			if _, err := s.NodeID(ctx, func() string { return "a" }); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Apply(ctx, store.Batch{Own: []store.OwnDelta{good, {Name: "bad", Node: "a", DP: 7}}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, path, tt.damage)

			s = open(t, path)
			defer s.Close()
			if tt.nodeID {
				if id, err := s.NodeID(ctx, func() string { return "new" }); !errors.Is(err, filestore.ErrCorrupt) {
					t.Fatalf("NodeID on a corrupt id = %q, %v; want ErrCorrupt", id, err)
				}
				startFails(t, s)
				return
			}
			if m, err := s.LoadCounters(ctx); !errors.Is(err, filestore.ErrCorrupt) || !strings.Contains(err.Error(), `"bad"`) {
				t.Fatalf("LoadCounters = %v, %v; want ErrCorrupt naming \"bad\"", m, err)
			}
			// A batch touching the damaged counter fails as a whole.
			b := store.Batch{Own: []store.OwnDelta{good, {Name: "bad", Node: "a", DP: 1}}}
			if _, err := s.Apply(ctx, b); !errors.Is(err, filestore.ErrCorrupt) {
				t.Fatalf("Apply touching a corrupt record = %v, want ErrCorrupt", err)
			}
			b = store.Batch{Remote: map[string]crdt.State{"bad": {P: map[string]int64{"z": 1}}}, Own: []store.OwnDelta{good}}
			if _, err := s.Apply(ctx, b); !errors.Is(err, filestore.ErrCorrupt) {
				t.Fatalf("Apply merging into a corrupt record = %v, want ErrCorrupt", err)
			}
			// The intact counter is untouched by the failed batches and
			// still takes writes.
			totals, err := s.Apply(ctx, store.Batch{Own: []store.OwnDelta{good}})
			if err != nil || len(totals) != 1 || totals[0] != (store.OwnTotal{P: 2}) {
				t.Fatalf("Apply to the intact counter = %+v, %v; want [{2 0}]", totals, err)
			}
			startFails(t, s)
		})
	}
}

func putRaw(bucket, key string, v []byte) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucket)).Put([]byte(key), v) }
}

// rawUpdate changes the file at path with bbolt directly.
func rawUpdate(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: waitTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// startFails checks that a client refuses to start on a damaged store
// rather than run on part of it.
func startFails(t *testing.T, s store.Store) {
	t.Helper()
	c, err := client.New(client.Options{URL: testserver.RefusedURL(t), Store: s, CloseTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(t.Context()); !errors.Is(err, filestore.ErrCorrupt) {
		t.Fatalf("client Start on a corrupt store = %v, want ErrCorrupt", err)
	}
}

// TestForeignFile checks that Open refuses files it did not create and
// leaves them as they were.
func TestForeignFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		make   func(t *testing.T, path string)
		format bool // the error wraps ErrFormat (else: bbolt's own error)
	}{
		{"other bbolt file", func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("other"))
				return err
			})
		}, true},
		{"server boltstore", func(t *testing.T, path string) {
			s, err := boltstore.Open(path, boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.MergeCounter(t.Context(), "c", crdt.State{P: map[string]int64{"n": 1}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"newer format", func(t *testing.T, path string) {
			open(t, path).Close()
			rawUpdate(t, path, putRaw("meta", "format", []byte{3}))
		}, true},
		{"no format marker", func(t *testing.T, path string) {
			open(t, path).Close()
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("format")) })
		}, true},
		{"not bbolt", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("plain text\n", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "file.db")
			tt.make(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := filestore.Open(path, filestore.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, filestore.ErrFormat) != tt.format || !strings.HasPrefix(err.Error(), "filestore: ") {
				t.Errorf("Open: %v; want ErrFormat %t and the package prefix", err, tt.format)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.format && string(after) != string(before) {
				t.Error("Open changed the file it refused")
			}
		})
	}
}

// TestCloseDuringApply closes the store while goroutines apply: every
// Apply either commits or returns ErrClosed, and after a reopen the
// stored count is exactly the number of Applies that returned nil.
func TestCloseDuringApply(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "client.db")
	s := open(t, path)
	var ok atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				_, err := s.Apply(ctx, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 1}}})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				ok.Add(1)
			}
		})
	}
	deadline := time.Now().Add(waitTimeout)
	for ok.Load() < 20 && len(errs) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Apply: %v", err)
	}
	if ok.Load() < 20 {
		t.Fatalf("only %d Applies in %v", ok.Load(), waitTimeout)
	}
	s = open(t, path)
	defer s.Close()
	m, err := s.LoadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := m["c"].P["a"]; got != ok.Load() {
		t.Fatalf("stored %d, %d Applies succeeded", got, ok.Load())
	}
}

// TestRefused checks the calls that must fail without writing: a done
// context, and counter names too long for a bbolt key.
func TestRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "client.db")
	s := open(t, path)
	defer s.Close()
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Apply(done, store.Batch{Own: []store.OwnDelta{{Name: "c", Node: "a", DP: 1}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a done context = %v", err)
	}
	if _, err := s.NodeID(done, func() string { return "x" }); !errors.Is(err, context.Canceled) {
		t.Errorf("NodeID with a done context = %v", err)
	}
	if _, err := s.LoadCounters(done); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadCounters with a done context = %v", err)
	}
	long := strings.Repeat("x", bolt.MaxKeySize+1)
	for _, b := range []store.Batch{
		{Own: []store.OwnDelta{{Name: long, Node: "a", DP: 1}}},
		{Remote: map[string]crdt.State{long: {P: map[string]int64{"a": 1}}}},
	} {
		if _, err := s.Apply(t.Context(), b); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Apply with a %d-byte name = %v, want ErrInvalid", len(long), err)
		}
	}
	if m, err := s.LoadCounters(t.Context()); err != nil || len(m) != 0 {
		t.Fatalf("refused calls wrote %v (%v)", m, err)
	}
	if id, err := s.NodeID(t.Context(), func() string { return "fresh" }); err != nil || id != "fresh" {
		t.Fatalf("NodeID = %q, %v; want the id of the first successful call", id, err)
	}
}

// child is a running child process of the test binary.
type child struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines *bufio.Scanner
	errb  *strings.Builder
	once  sync.Once
	state *os.ProcessState
}

// startChild runs the test binary as a child in mode with env added. The
// child is SIGKILLed when the test ends, or after waitTimeout, whichever
// comes first, so a stuck child never outlives its test.
func startChild(t *testing.T, mode string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	ch := &child{t: t, cmd: cmd, errb: &strings.Builder{}}
	cmd.Stderr = ch.errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch.lines = bufio.NewScanner(out)
	watchdog := time.AfterFunc(waitTimeout, func() {
		t.Errorf("child %d still running after %v: killing it", cmd.Process.Pid, waitTimeout)
		_ = cmd.Process.Kill()
	})
	t.Cleanup(func() {
		watchdog.Stop()
		ch.stop()
	})
	return ch
}

// next returns the child's next stdout line; ok is false at EOF.
func (ch *child) next() (line string, ok bool) {
	if !ch.lines.Scan() {
		return "", false
	}
	return ch.lines.Text(), true
}

// kill sends SIGKILL (Process.Kill): no deferred code, Close or flush
// runs in the child.
func (ch *child) kill() {
	if err := ch.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		ch.t.Errorf("kill child %d: %v", ch.cmd.Process.Pid, err)
	}
}

// stop kills the child, drains its stdout and waits for it to exit. Calls
// after the first do nothing.
func (ch *child) stop() {
	ch.once.Do(func() {
		ch.kill()
		for ch.lines.Scan() { // Wait must follow the last read
		}
		_ = ch.cmd.Wait()
		ch.state = ch.cmd.ProcessState
	})
}

func (ch *child) stderr() string { return ch.errb.String() }

// holdChild opens the store and keeps it open until it is killed.
func holdChild() {
	s, err := filestore.Open(os.Getenv(pathEnv), filestore.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold child:", err)
		os.Exit(3)
	}
	fmt.Println("locked")
	// Sleep until killed; the deadline keeps an orphan (its parent died
	// before killing it) from holding the file forever.
	time.Sleep(2 * waitTimeout)
	_ = s.Close()
	fmt.Fprintln(os.Stderr, "hold child: deadline passed")
	os.Exit(4)
}

// TestMigrateFormat1 opens a file of format 1 (meta and counters only,
// as earlier releases wrote): Open adds the indexes, records written by
// the stored node id above their confirmation are pending, and the rest
// can be evicted.
func TestMigrateFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	s := open(t, path)
	node, err := s.NodeID(t.Context(), func() string { return "me" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(t.Context(), store.Batch{
		Own: []store.OwnDelta{{Name: "sent", Node: node, DP: 2}, {Name: "unsent", Node: node, DN: 1}},
		Remote: map[string]crdt.State{
			"sent":  {P: map[string]int64{store.AckNode: 2, "x": 1}},
			"other": {P: map[string]int64{"x": 4}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Back to format 1: no index buckets.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, b := range []string{"own", "pending", "used", "usedby"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte{1})
	})
	s = open(t, path)
	defer s.Close()
	snap, err := s.Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p := snap.States; len(p) != 1 || p["unsent"].N[node] != 1 || !snap.Based["unsent"] {
		t.Fatalf("Pending after migration = %v (based %v), want unsent only, based", p, snap.Based)
	}
	gone, err := s.Evict(t.Context(), 0, nil)
	if err != nil || len(gone) != 2 {
		t.Fatalf("Evict(0) after migration = %v, %v; want sent and other", gone, err)
	}
	all, err := s.LoadCounters(t.Context())
	if err != nil || len(all) != 1 {
		t.Fatalf("left %v, %v", all, err)
	}
}
