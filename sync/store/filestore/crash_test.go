//go:build !js

package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/topgun-go/topgun/internal/testserver"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/store/filestore"
)

// The crash child writes to these counters: up only increments, down only
// decrements, mix does both, so every own slot only grows.
var crashCounters = []string{"crash.up", "crash.down", "crash.mix"}

// slots are the child's own p and n entries of every crash counter.
type slots map[string][2]int64

// TestCrash runs a real client on a file store in a child process with no
// server to deliver to. The child writes, calls Persist, reports what it
// persisted and keeps writing until the test SIGKILLs it. The test then
// restarts on the same file with a client of a real server, and checks
// that every value the child reported persisted is there, nothing it
// never wrote is, and Flush delivers it all to the server, where a second
// client reads it.
func TestCrash(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("random kill points from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	type crashCase struct {
		name  string
		every int // the child persists every that many steps
		// killAt is the stdout line after which the test kills the child,
		// counted from its first "persisted" line if afterPersist is set.
		killAt       int
		afterPersist bool
	}
	// After persist: 200 steps, Persist, and the kill once 50 more steps
	// are announced; only background rounds may have stored those.
	tests := []crashCase{{"after persist", 200, 50, true}}
	for i := range 3 {
		tests = append(tests, crashCase{fmt.Sprintf("random %d", i), 25, 1 + rng.IntN(800), false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			crashAndRestart(t, tt.every, tt.killAt, tt.afterPersist)
		})
	}
}

func crashAndRestart(t *testing.T, every, killAt int, afterPersist bool) {
	path := filepath.Join(t.TempDir(), "worker", "client.db")
	ch := startChild(t, "crash",
		pathEnv+"="+path,
		urlEnv+"="+testserver.RefusedURL(t), // nothing is ever delivered
		everyEnv+"="+strconv.Itoa(every))

	// Lines already in the pipe when the kill lands were printed before
	// it, so every line counts: "try" lines bound what the child wrote
	// (it prints one before each step's writes), "persisted" lines what
	// its store must hold.
	var node string
	wrote, persisted := slots{}, slots{}
	lines, persists, killed := 0, 0, false
	killLine := killAt
	if afterPersist {
		killLine = -1 // set by the first "persisted" line
	}
	for {
		line, ok := ch.next()
		if !ok {
			break
		}
		lines++
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "node":
			node = rest
		case "try":
			wrote = parseSlots(t, rest)
		case "persisted":
			persisted = parseSlots(t, rest)
			persists++
			if killLine < 0 {
				killLine = lines + killAt
			}
		default:
			t.Fatalf("unexpected child output %q", line)
		}
		if !killed && killLine >= 0 && lines >= killLine {
			ch.kill()
			killed = true
		}
	}
	ch.stop()
	if !killed || ch.state.Exited() { // Exited: it ended before the kill landed
		t.Fatalf("child ended by itself (%v) after %d lines; stderr:\n%s", ch.state, lines, ch.stderr())
	}
	if node == "" {
		t.Fatalf("child never reported its node id; stderr:\n%s", ch.stderr())
	}
	t.Logf("kill after line %d, %d lines read, %d persisted reports", killLine, lines, persists)

	srv := testserver.StartServer(t, server.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	st := open(t, path)
	t.Cleanup(func() { _ = st.Close() }) // after the clients' cleanups
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	states, err := st.LoadCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, name := range crashCounters {
		s := states[name]
		// The child never reached the server: its counters' bases were
		// unknown, so their writes are stored as unbased amounts.
		got := [2]int64{s.P[node] + s.P[store.UnbasedNode], s.N[node] + s.N[store.UnbasedNode]}
		lo, hi := persisted[name], wrote[name]
		for i, side := range [2]string{"p", "n"} {
			if got[i] < lo[i] || got[i] > hi[i] {
				t.Errorf("%s.%s[%s] = %d after the crash, want %d (persisted) ≤ it ≤ %d (written)", name, side, node, got[i], lo[i], hi[i])
			}
		}
		if nodes := slices.DeleteFunc(s.Nodes(), func(k string) bool { return k == store.UnbasedNode }); len(nodes) > 1 {
			t.Errorf("%s has entries of other nodes: %v", name, s)
		}
		want[name] = got[0] - got[1]
		t.Logf("%s: persisted %v ≤ restored %v ≤ written %v", name, lo, got, hi)
	}

	c := startClient(t, client.Options{URL: srv.URL, Store: st})
	if c.NodeID() != node {
		t.Errorf("restarted client has node id %q, the child had %q", c.NodeID(), node)
	}
	for _, name := range crashCounters {
		if v := counter(t, c, name).Get(); v != want[name] {
			t.Errorf("restarted %s = %d, the store holds %d", name, v, want[name])
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush after restart: %v", err)
	}

	// A fresh replica with nothing stored reads the values from the server.
	reader := startClient(t, client.Options{URL: srv.URL})
	for _, name := range crashCounters {
		cnt := counter(t, reader, name)
		for cnt.Get() != want[name] {
			if ctx.Err() != nil {
				t.Fatalf("server has %s = %d, want %d", name, cnt.Get(), want[name])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := reader.Close(); err != nil {
		t.Errorf("reader Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after Flush: %v", err)
	}
}

// parseSlots parses "name=p/n ..." as the crash child prints it.
func parseSlots(t *testing.T, s string) slots {
	t.Helper()
	out := slots{}
	for f := range strings.FieldsSeq(s) {
		name, pn, ok1 := strings.Cut(f, "=")
		ps, ns, ok2 := strings.Cut(pn, "/")
		p, err1 := strconv.ParseInt(ps, 10, 64)
		n, err2 := strconv.ParseInt(ns, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			t.Fatalf("bad slots %q in child output", f)
		}
		out[name] = [2]int64{p, n}
	}
	return out
}

func formatSlots(s slots) string {
	var b strings.Builder
	for i, name := range crashCounters {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d/%d", name, s[name][0], s[name][1])
	}
	return b.String()
}

// startClient starts a client tuned for quick tests; the test closes it
// (cleanup closes it too if the test fails first).
func startClient(t *testing.T, opts client.Options) *client.Client {
	t.Helper()
	opts.SyncDelay = 2 * time.Millisecond
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	opts.CloseTimeout = time.Second
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func counter(t *testing.T, c *client.Client, name string) *client.Counter {
	t.Helper()
	cnt, err := c.Counter(name)
	if err != nil {
		t.Fatal(err)
	}
	return cnt
}

// maxCrashSteps bounds the child's loop; the test kills it long before.
const maxCrashSteps = 1_000_000

// crashChild is a worker with a file store and an unreachable server: it
// writes step after step, prints "try <slots>" before each step's writes
// and "persisted <slots>" after every everyEnv steps once Persist has
// returned, and never calls Close. It prints unbuffered, so a line the
// parent reads was printed before the kill.
func crashChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	// An orphan (the parent died before killing it) ends by itself.
	time.AfterFunc(2*waitTimeout, func() { fail(errors.New("deadline passed")) })
	every, err := strconv.Atoi(os.Getenv(everyEnv))
	if err != nil || every <= 0 {
		fail(fmt.Errorf("bad %s: %v", everyEnv, err))
	}
	st, err := filestore.Open(os.Getenv(pathEnv), filestore.Options{})
	if err != nil {
		fail(err)
	}
	c, err := client.New(client.Options{
		URL:          os.Getenv(urlEnv),
		Store:        st,
		SyncDelay:    2 * time.Millisecond, // background rounds race the kill too
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
		CloseTimeout: -1, // never used: the child is killed, not closed
	})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		fail(err)
	}
	fmt.Println("node", c.NodeID())
	cnts := make([]*client.Counter, len(crashCounters))
	for i, name := range crashCounters {
		if cnts[i], err = c.Counter(name); err != nil {
			fail(err)
		}
	}
	own := slots{}
	add := func(i int, delta int64) {
		if _, err := cnts[i].AddAndGet(delta); err != nil {
			fail(err)
		}
	}
	for step := 1; step <= maxCrashSteps; step++ {
		up := int64(1 + step%3)
		mixP, mixN := int64(0), int64(0)
		if step%2 == 0 {
			mixP = 2
		} else {
			mixN = 1
		}
		next := slots{
			"crash.up":   {own["crash.up"][0] + up, 0},
			"crash.down": {0, own["crash.down"][1] + 1},
			"crash.mix":  {own["crash.mix"][0] + mixP, own["crash.mix"][1] + mixN},
		}
		fmt.Println("try", formatSlots(next))
		add(0, up)
		add(1, -1)
		add(2, mixP-mixN)
		own = next
		if step%every == 0 {
			if err := c.Persist(ctx); err != nil {
				fail(err)
			}
			fmt.Println("persisted", formatSlots(own))
		}
	}
	select {} // wait for the kill
}
