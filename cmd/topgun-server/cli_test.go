package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/sync/wire"
)

// cli runs the command (this test binary as topgun-server) with args and
// env, and returns its stdout, stderr and exit status.
func cli(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TOPGUN_TEST_MAIN=1", "TOPGUN_SERVER=", "TOPGUN_ADMIN_TOKEN=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// read returns the next message the server sends c.
func (c *client) read() wire.Message {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := wire.Decode(b)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// TestAdminCommands runs every admin command against the real server
// process: tables, --json, exit statuses, the server's errors, the
// environment variables.
func TestAdminCommands(t *testing.T) {
	_, wsURL := startProc(t, "--no-auth", "--data", "memory", "--admin-token", "ops-secret")
	base := "http://" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws://"), "/ws")
	srv := []string{"--server", base, "--admin-token", "ops-secret"}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return cli(t, nil, append(args, srv...)...)
	}

	c := connect(t, wsURL)
	if _, ok := c.call(wire.CounterSync{Name: "likes", State: crdt.State{P: map[string]int64{"a": 7, "b": 1}}}).(wire.CounterUpdate); !ok {
		t.Fatal("sync not acknowledged")
	}
	ttl := uint64(60000)
	g, ok := c.call(wire.LockRequest{RequestID: "1", Name: "jobs/1", TTL: &ttl}).(wire.LockGranted)
	if !ok {
		t.Fatal("lock not granted")
	}

	out, errs, code := run("counters", "get", "likes")
	if code != 0 || !strings.Contains(out, "likes") || !strings.Contains(out, "8") || !strings.Contains(out, "WRITERS") {
		t.Fatalf("counters get: %d %q %q", code, out, errs)
	}
	out, _, code = run("locks", "ls", "jobs/")
	if code != 0 || !strings.Contains(out, "jobs/1") || !strings.Contains(out, fmt.Sprint(g.FencingToken)) {
		t.Fatalf("locks ls: %d %q", code, out)
	}
	out, _, code = run("locks", "get", "jobs/1", "--json")
	var l server.LockJSON
	if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil || !l.Held || l.FencingToken != g.FencingToken || l.Holder == nil {
		t.Fatalf("locks get --json: %d %q %v", code, out, err)
	}
	// The environment instead of flags.
	env := []string{"TOPGUN_SERVER=" + base, "TOPGUN_ADMIN_TOKEN=ops-secret"}
	if out, errs, code := cli(t, env, "locks", "fence", "jobs/1", fmt.Sprint(g.FencingToken)); code != 0 || !strings.Contains(out, "current") {
		t.Fatalf("fence of the holder's token: %d %q %q", code, out, errs)
	}
	if out, _, code := cli(t, env, "locks", "fence", "jobs/1", fmt.Sprint(g.FencingToken-1)); code != 2 || !strings.Contains(out, fmt.Sprintf("fencing token %d", g.FencingToken)) {
		t.Fatalf("fence of an old token: %d %q, want exit 2", code, out)
	}
	if out, errs, code := run("locks", "release", "jobs/1"); code != 0 || !strings.Contains(out, "released jobs/1") {
		t.Fatalf("release: %d %q %q", code, out, errs)
	}
	if lost, ok := c.read().(wire.LockLost); !ok || lost.Reason != wire.ReasonRevoked || lost.FencingToken != g.FencingToken {
		t.Fatalf("holder notice %+v", lost)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{append([]string{"locks", "release", "jobs/1"}, srv...), 1, "is not held"},
		{append([]string{"locks", "fence", "jobs/1", "5"}, srv...), 2, ""},
		{append([]string{"locks", "get", "bad name"}, srv...), 1, "invalid"},
		{append([]string{"locks", "fence", "jobs/1", "x"}, srv...), 1, "want a positive integer"},
		{[]string{"locks", "get", "jobs/1", "--server", base, "--admin-token", "wrong"}, 1, "wrong admin token"},
		{[]string{"locks", "get", "jobs/1", "--server", base}, 1, "credential required"},
		{append([]string{"locks", "frobnicate"}, srv...), 1, "unknown command"},
		{append([]string{"counters", "get"}, srv...), 1, "wrong number of arguments"},
	} {
		_, errs, code := cli(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
}

// TestAdminCommandUnreachable: no server is an error naming the cause.
func TestAdminCommandUnreachable(t *testing.T) {
	_, errs, code := cli(t, nil, "locks", "ls", "--server", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errs, "refused") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// TestBoundedCommands: bounded get shows who holds a bounded counter's
// rights; bounded reclaim moves a gone replica's rights back to the
// server.
func TestBoundedCommands(t *testing.T) {
	_, wsURL := startProc(t, "--no-auth", "--data", "memory")
	base := "http://" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws://"), "/ws")
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return cli(t, nil, append(args, "--server", base)...)
	}
	replica := func(node string) *client {
		c := connect(t, wsURL)
		if _, ok := c.call(wire.DeviceHello{NodeID: node, Views: wire.ViewsCompact}).(wire.DeviceAck); !ok {
			t.Fatal("no DEVICE_ACK")
		}
		if _, ok := c.call(wire.BCounterRequest{Name: "stock", Min: 0}).(wire.BCounterUpdate); !ok {
			t.Fatal("no BCOUNTER_UPDATE")
		}
		return c
	}
	shop := replica("shop")
	if _, ok := shop.call(wire.BCounterSync{Name: "stock", State: crdt.BState{P: map[string]int64{"shop": 10},
		T: map[string]map[string]int64{"shop": {wire.BrokerNode: 10}}}}).(wire.BCounterUpdate); !ok {
		t.Fatal("stock not acknowledged")
	}
	if g, ok := replica("tab-9").call(wire.BCounterRights{RequestID: "1", Name: "stock", Amount: 3}).(wire.BCounterGrant); !ok || g.Granted != 3 {
		t.Fatalf("grant %+v", g)
	}

	out, errs, code := run("bounded", "get", "stock")
	if code != 0 || !strings.Contains(out, "SERVER RIGHTS") || !strings.Contains(out, "tab-9") {
		t.Fatalf("bounded get: %d %q %q", code, out, errs)
	}
	out, errs, code = run("bounded", "reclaim", "stock", "tab-9")
	if code != 0 || !strings.Contains(out, "reclaimed 3 rights of stock from tab-9") {
		t.Fatalf("bounded reclaim: %d %q %q", code, out, errs)
	}
	out, _, code = run("bounded", "get", "stock", "--json")
	var b server.BoundedJSON
	if err := json.Unmarshal([]byte(out), &b); code != 0 || err != nil || b.BrokerRights != 10 || len(b.Holders) != 0 {
		t.Fatalf("bounded get --json after the reclaim: %d %q %v", code, out, err)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"bounded", "get", "none"}, "no bounded counter"},
		{[]string{"bounded", "reclaim", "stock"}, "wrong number of arguments"},
		{[]string{"bounded", "reclaim", "stock", "@"}, "node"},
	} {
		if _, errs, code := run(tc.args...); code != 1 || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, errs, tc.msg)
		}
	}
}
