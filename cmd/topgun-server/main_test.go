package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"

	"github.com/topgun-go/topgun/internal/version"
)

// The test binary doubles as the server binary: with TOPGUN_TEST_MAIN=1 it
// runs main's runMain with its arguments, so the tests below start the real
// command as a separate process they can SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("TOPGUN_TEST_MAIN") == "1" {
		os.Exit(runMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startProc starts the server process and returns its ws URL.
func startProc(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "TOPGUN_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "server:", sc.Text())
			}
		}
		if !sent {
			close(addr)
		}
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("server exited before listening")
		}
		return cmd, "ws://" + a + "/ws"
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return nil, ""
}

type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func connect(t *testing.T, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &client{t: t, ws: ws}
}

func (c *client) call(m wire.Message) wire.Message {
	c.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		c.t.Fatal(err)
	}
	_, rb, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	r, err := wire.Decode(rb)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// TestKill9KeepsAcknowledgedState: counters and fencing tokens that the
// server acknowledged survive SIGKILL; the next token is above every token
// issued before.
func TestKill9KeepsAcknowledgedState(t *testing.T) {
	dir := t.TempDir()
	want := map[string]int64{}
	var maxToken uint64
	for round := 0; round < 3; round++ {
		cmd, url := startProc(t, "--no-auth", "--data", dir)
		c := connect(t, url)
		// Everything written before must be there.
		for name, v := range want {
			r, ok := c.call(wire.CounterRequest{Name: name}).(wire.CounterResponse)
			if !ok {
				t.Fatalf("round %d: no response for %s", round, name)
			}
			if got, _ := r.State.Value(); got != v {
				t.Fatalf("round %d: %s = %d, want %d", round, name, got, v)
			}
		}
		for i := 0; i < 50; i++ {
			name := fmt.Sprintf("c%d", i%5)
			node := fmt.Sprintf("node-%d", round)
			p := int64(i+1) * 3
			st := crdt.State{P: map[string]int64{node: p}, N: map[string]int64{node: int64(i + 1)}}
			if _, ok := c.call(wire.CounterSync{Name: name, State: st}).(wire.CounterUpdate); !ok {
				t.Fatalf("sync not acknowledged")
			}
		}
		// Recompute the expected values: per round node, the last sync per
		// counter carries the cumulative magnitudes.
		for k := 0; k < 5; k++ {
			name := fmt.Sprintf("c%d", k)
			last := 45 + k // largest i with i%5 == k
			want[name] += int64(last+1)*3 - int64(last+1)
		}
		for i := 0; i < 20; i++ {
			ttl := uint64(60000)
			// Names repeat across rounds; odd ones stay held when the
			// process dies, and are free again after the restart.
			name := fmt.Sprintf("l%d", i%4)
			if i%2 == 1 {
				name = fmt.Sprintf("held-%d-%d", round, i)
			}
			g, ok := c.call(wire.LockRequest{RequestID: "r", Name: name, TTL: &ttl}).(wire.LockGranted)
			if !ok {
				t.Fatal("lock not granted")
			}
			if g.FencingToken <= maxToken {
				t.Fatalf("round %d: token %d not above %d", round, g.FencingToken, maxToken)
			}
			maxToken = g.FencingToken
			if i%2 == 0 {
				if r, ok := c.call(wire.LockRelease{Name: g.Name, FencingToken: g.FencingToken}).(wire.LockReleased); !ok || !r.Success {
					t.Fatalf("release: %+v", r)
				}
			}
		}
		if round > 0 { // held by the killed process: free now, with a greater token
			ttl := uint64(1000)
			g, ok := c.call(wire.LockRequest{RequestID: "h", Name: fmt.Sprintf("held-%d-1", round-1), TTL: &ttl}).(wire.LockGranted)
			if !ok || g.FencingToken <= maxToken {
				t.Fatalf("lock held by the killed process: %+v (max token %d)", g, maxToken)
			}
			maxToken = g.FencingToken
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
}

func TestRefusesToStartWithoutSecret(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--addr", "127.0.0.1:0", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "TOPGUN_TEST_MAIN=1", "JWT_SECRET=", "TOPGUN_NO_AUTH=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("started without a secret")
	}
	if !strings.Contains(string(out), "no JWT secret") {
		t.Fatalf("output %q does not say why", out)
	}
}

func TestGracefulShutdown(t *testing.T) {
	cmd, url := startProc(t, "--no-auth", "--data", "memory")
	c := connect(t, url)
	if _, ok := c.call(wire.Ping{Timestamp: 1}).(wire.Pong); !ok {
		t.Fatal("no pong")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func TestRefusesBadLimits(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--max-sync-nodes", "0"}, "", "--max-sync-nodes 0"},
		{[]string{"--max-outbox", "-5"}, "", "--max-outbox -5"},
		{nil, "TOPGUN_MAX_LOCKS=many", `TOPGUN_MAX_LOCKS="many"`},
	} {
		args := append([]string{"--addr", "127.0.0.1:0", "--data", "memory", "--no-auth"}, tc.args...)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "TOPGUN_TEST_MAIN=1")
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v %s: err %v, output %q; want a refusal naming %s", tc.args, tc.env, err, out, tc.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		arg, want string
	}{
		{"--help", "Usage: topgun-server"},
		{"-h", "-max-outbox int"},
		{"--version", "topgun-server " + version.Version},
	} {
		cmd := exec.Command(os.Args[0], tc.arg)
		cmd.Env = append(os.Environ(), "TOPGUN_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v (want exit 0)\n%s", tc.arg, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s printed %q, want it to contain %q", tc.arg, out, tc.want)
		}
	}
}

// TestMakeRunHonoursPortAndAddr: `make run` passes PORT or ADDR to --addr.
func TestMakeRunHonoursPortAndAddr(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is required")
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "--addr 127.0.0.1:8080 "},
		{[]string{"PORT=9123"}, "--addr 127.0.0.1:9123 "},
		{[]string{"ADDR=0.0.0.0:7001"}, "--addr 0.0.0.0:7001 "},
	} {
		cmd := exec.Command("make", "-s", "-n", "-C", "../..", "run")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PORT=") && !strings.HasPrefix(kv, "ADDR=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, tc.env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("make -n run %v: %v", tc.env, err)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("make -n run with %v:\n%s\nwant %q", tc.env, out, tc.want)
		}
	}
}
