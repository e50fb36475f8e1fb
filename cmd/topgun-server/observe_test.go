package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// freeAddr returns a 127.0.0.1 address nothing listens on (a listener's,
// just closed).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func httpBase(wsURL string) string {
	return "http://" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws://"), "/ws")
}

// TestMetricsListeners: /metrics is on the main listener by default; with
// --metrics-addr it is there instead; --pprof serves the profiles on its
// own loopback listener.
func TestMetricsListeners(t *testing.T) {
	_, url := startProc(t, "--no-auth", "--data", "memory")
	if code, body := get(t, httpBase(url)+"/metrics"); code != 200 || !strings.Contains(body, "topgun_connections_opened_total") {
		t.Fatalf("main /metrics: %d\n%.300s", code, body)
	}

	metrics, pprof := freeAddr(t), freeAddr(t)
	_, url = startProc(t, "--no-auth", "--data", "memory", "--metrics-addr", metrics, "--pprof", pprof)
	if code, body := get(t, "http://"+metrics+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("--metrics-addr /metrics: %d\n%.300s", code, body)
	}
	if code, _ := get(t, httpBase(url)+"/metrics"); code != 404 {
		t.Fatalf("main /metrics with --metrics-addr: %d, want 404", code)
	}
	if code, body := get(t, "http://"+pprof+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("--pprof /debug/pprof/: %d\n%.300s", code, body)
	}
	if code, _ := get(t, httpBase(url)+"/debug/pprof/"); code != 404 {
		t.Fatalf("main /debug/pprof/: %d, want 404", code)
	}
}

// TestPprofLoopbackOnly: profiles are never served on a public address.
func TestPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:6060"} {
		cmd := exec.Command(os.Args[0], "--addr", "127.0.0.1:0", "--data", "memory", "--no-auth", "--pprof", addr)
		cmd.Env = append(os.Environ(), "TOPGUN_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "loopback") {
			t.Errorf("--pprof %s: err %v, output %q; want a refusal that names loopback", addr, err, out)
		}
	}
}
