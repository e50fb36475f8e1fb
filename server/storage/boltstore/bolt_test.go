package boltstore

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
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/server/storage/storagetest"
)

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(dir, "data", "topgun.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBolt(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, t.TempDir(), Options{}) })
}

// TestBoltSmallBatches runs the suite with batches split often, so that
// writes racing on one key land in different transactions.
func TestBoltSmallBatches(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, t.TempDir(), Options{MaxBatchSize: 3, NoSync: true})
	})
}

func TestBoltDurable(t *testing.T) {
	storagetest.RunDurable(t, func(t *testing.T, dir string) storage.Store { return open(t, dir, Options{}) })
}

// TestLocked checks that a second Open of a file in use fails after
// Options.Timeout rather than hanging.
func TestLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, Options{})
	defer s.Close()
	s2, err := Open(filepath.Join(dir, "data", "topgun.db"), Options{Timeout: 50e6})
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded, want a lock timeout")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: %v, want ErrLocked saying the file is in use", err)
	}
}

// TestBatchRetry makes one write function fail inside shared batches (a
// corrupt stored value) and checks that bbolt's rerun of the other functions
// in those batches stores each of them exactly as a single run would.
func TestBatchRetry(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), Options{NoSync: true})
	defer s.Close()
	ctx := context.Background()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketCounters).CreateBucket([]byte("bad"))
		if err != nil {
			return err
		}
		return b.Put(entryKey('p', "a"), []byte{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 10 {
				if g%4 == 0 {
					if err := s.MergeCounter(ctx, "bad", crdt.State{P: map[string]int64{"a": int64(i + 1)}}); err == nil {
						t.Error("MergeCounter on a corrupt entry succeeded")
					}
					continue
				}
				if err := s.MergeCounter(ctx, "good", crdt.State{P: map[string]int64{fmt.Sprint(g): int64(i + 1)}}); err != nil {
					t.Errorf("MergeCounter: %v", err)
				}
				if _, err := s.ReserveFencing(ctx, 1); err != nil {
					t.Errorf("ReserveFencing: %v", err)
				}
			}
		})
	}
	wg.Wait()
	got, err := s.LoadCounter(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	for g := range 20 {
		if v := got.P[fmt.Sprint(g)]; g%4 != 0 && v != 10 {
			t.Errorf("good.P[%d] = %d, want 10", g, v)
		}
	}
	// 15 goroutines reserved 10 tokens each: exactly 150, none twice.
	if first, err := s.ReserveFencing(ctx, 1); err != nil || first != 151 {
		t.Errorf("ReserveFencing = %d, %v; want 151", first, err)
	}
	if _, err := s.LoadCounter(ctx, "bad"); err == nil {
		t.Error("LoadCounter of a corrupt counter succeeded")
	}
}

const (
	crashEnv  = "TOPGUN_BOLTSTORE_CRASH_DIR"
	crashAcks = 300
)

// TestCrash runs crashChild in a child process that writes from
// several goroutines and prints a line after each write returns, SIGKILLs
// it mid-stream, and checks that every acknowledged write survived.
func TestCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type node struct{ counter, node string }
	acked := map[node]int64{}
	var fenceEnd uint64 // last token of any acknowledged range
	acks, killed := 0, false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var (
			kind, counter, nd string
			v                 int64
			first, n          uint64
		)
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "ACK M "):
			if _, err := fmt.Sscanf(line, "ACK %s %s %s %d", &kind, &counter, &nd, &v); err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			acked[node{counter, nd}] = max(acked[node{counter, nd}], v)
		case strings.HasPrefix(line, "ACK F "):
			if _, err := fmt.Sscanf(line, "ACK %s %d %d", &kind, &first, &n); err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			fenceEnd = max(fenceEnd, first+n-1)
		default:
			continue // test framework output
		}
		acks++
		if acks == crashAcks && !killed {
			// Process.Kill sends SIGKILL: no deferred code or Close runs.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		// Keep reading: lines already in the pipe were acknowledged too.
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d acknowledgements; stderr:\n%s", acks, stderr.String())
	}
	t.Logf("%d acknowledged writes before SIGKILL took effect", acks)

	s := open(t, dir, Options{})
	defer s.Close()
	ctx := context.Background()
	for k, v := range acked {
		st, err := s.LoadCounter(ctx, k.counter)
		if err != nil {
			t.Fatal(err)
		}
		if st.P[k.node] < v {
			t.Errorf("%s.P[%s] = %d after crash, acknowledged %d", k.counter, k.node, st.P[k.node], v)
		}
	}
	first, err := s.ReserveFencing(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if first <= fenceEnd {
		t.Errorf("ReserveFencing after crash = %d, acknowledged ranges reach %d", first, fenceEnd)
	}
}

// TestMain runs the tests, or, in the child process TestCrash starts (with
// crashEnv set), crashChild instead.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild writes from several goroutines, printing a line after each
// write returns, until it is killed.
func crashChild(dir string) {
	s, err := Open(filepath.Join(dir, "data", "topgun.db"), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	var mu sync.Mutex
	ack := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "ACK "+format+"\n", args...)
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		os.Exit(3)
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			counter, nd := fmt.Sprintf("crash-%d", g%2), fmt.Sprintf("g%d", g)
			for i := int64(1); ; i++ {
				if err := s.MergeCounter(ctx, counter, crdt.State{P: map[string]int64{nd: i}}); err != nil {
					fail(err)
				}
				ack("M %s %s %d", counter, nd, i)
			}
		})
	}
	for g := range 3 {
		wg.Go(func() {
			for i := uint64(0); ; i++ {
				n := 1 + (i+uint64(g))%3
				first, err := s.ReserveFencing(ctx, n)
				if err != nil {
					fail(err)
				}
				ack("F %d %d", first, n)
			}
		})
	}
	wg.Wait()
}
