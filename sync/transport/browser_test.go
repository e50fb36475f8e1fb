//go:build !js

package transport_test

import (
	"context"
	"errors"
	"github.com/topgun-go/topgun/internal/testserver"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/topgun-go/topgun/server"
)

// TestBrowserTransport runs this package's js/wasm tests (dial_js_test.go)
// in headless Chromium through wasmbrowsertest, against the real server
// started here in-process. It is the only way those tests run: they fail
// without the URLs this test hands them in the environment.
func TestBrowserTransport(t *testing.T) {
	exe := findWasmBrowserTest(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}

	env := append(cleanEnv(os.Environ()),
		"GOOS=js", "GOARCH=wasm",
		"TOPGUN_TEST_WS_URL="+startServer(t, server.Config{}),
		"TOPGUN_TEST_WS_IDLE_URL="+startServer(t, server.Config{IdleTimeout: 300 * time.Millisecond}),
		"TOPGUN_TEST_WS_HANG_URL="+startSilent(t),
		"TOPGUN_TEST_WS_CLOSED_URL="+testserver.RefusedURL(t),
	)
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-exec="+exe, "-run=^TestJS", ".")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("js/wasm tests failed: %v\n%s\n"+
			"(Chromium and wasmbrowsertest are installed by scripts/browser-test-setup.sh)", err, out)
	}
	passed := regexp.MustCompile(`(?m)^--- PASS: TestJS`).FindAll(out, -1)
	if len(passed) == 0 {
		t.Fatalf("no js/wasm test passed:\n%s", out)
	}
	// Drop chromedp's complaints about CDP events newer than it knows.
	noise := regexp.MustCompile(`(?m)^.*ERROR: could not unmarshal event:.*\n`)
	t.Logf("%d js/wasm tests passed in Chromium:\n%s", len(passed), noise.ReplaceAll(out, nil))
}

// findWasmBrowserTest returns wasmbrowsertest from PATH, or from the bin/
// directory scripts/browser-test-setup.sh installs it to.
func findWasmBrowserTest(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"wasmbrowsertest", "go_js_wasm_exec"} {
		if p, err := exec.LookPath(name); err == nil && (name == "wasmbrowsertest" || isWasmBrowserTest(p)) {
			return p
		}
	}
	if p, err := filepath.Abs(filepath.Join("..", "..", "bin", "wasmbrowsertest")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("wasmbrowsertest is neither on PATH (as wasmbrowsertest or go_js_wasm_exec) nor in bin/: " +
		"run scripts/browser-test-setup.sh, which installs it and Chromium")
	return ""
}

// isWasmBrowserTest reports whether the go_js_wasm_exec at p is a link to
// wasmbrowsertest rather than Go's Node.js runner.
func isWasmBrowserTest(p string) bool {
	r, err := filepath.EvalSymlinks(p)
	return err == nil && strings.HasPrefix(filepath.Base(r), "wasmbrowsertest")
}

// cleanEnv drops variables that should not reach the browser page, which
// wasmbrowsertest hands the whole environment to.
func cleanEnv(env []string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		u := strings.ToUpper(k)
		if strings.HasPrefix(u, "GITHUB") || strings.Contains(u, "TOKEN") || strings.Contains(u, "SECRET") ||
			strings.HasPrefix(u, "TOPGUN_TEST_") || k == "GOOS" || k == "GOARCH" {
			continue
		}
		out = append(out, e)
	}
	return out
}

// startServer starts the real server in no-auth mode on a free port and
// returns its WebSocket URL.
func startServer(t *testing.T, cfg server.Config) string {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return "ws://" + testserver.Start(t, cfg) + "/ws"
}

// startSilent listens on a free port, accepts connections and never
// answers them: a WebSocket handshake there hangs until the dialer gives
// up.
func startSilent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("accept: %v", err)
				}
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "ws://" + ln.Addr().String() + "/ws"
}
