// Package clustertest tests cluster mode end to end with real processes:
// three etcd members (Debian's etcd-server), topgun-server nodes built from
// cmd/topgun-server, and Go clients (sync/client) spread over the nodes.
// Processes are ended by PID (SIGKILL where a test kills them).
package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/topgun-go/topgun/internal/leakcheck"
	"github.com/topgun-go/topgun/sync/client"
)

// leaseTTL is the nodes' etcd lease in these tests: a killed node's locks
// are freed this long after it dies. It must outlast an etcd election (the
// server refuses less than 3 s).
const leaseTTL = "3s"

var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "topgun-cluster")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "topgun-server")
	build := exec.Command("go", "build", "-o", serverBin, "github.com/topgun-go/topgun/cmd/topgun-server")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build topgun-server: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := leakcheck.Wait(10*time.Second, "topgun/sync/client."); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// node is a topgun-server process in cluster mode.
type node struct {
	URL    string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	out    strings.Builder
}

// startNode starts a server node on the etcd endpoints and waits until it
// listens.
func startNode(t *testing.T, endpoints []string, args ...string) *node {
	t.Helper()
	args = append([]string{
		"--addr", "127.0.0.1:0",
		"--etcd", strings.Join(endpoints, ","),
		"--etcd-lease-ttl", leaseTTL,
		"--no-auth",
		"--log-level", "info",
	}, args...)
	n := &node{cmd: exec.Command(serverBin, args...), exited: make(chan struct{})}
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			if n.out.Len() < 1<<20 {
				n.out.WriteString(line + "\n")
			}
			n.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_ = n.cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			n.mu.Lock()
			t.Logf("server %s output:\n%s", n.URL, n.out.String())
			n.mu.Unlock()
		}
	})
	select {
	case a := <-addr:
		n.URL = "ws://" + a + "/ws"
	case <-n.exited:
		t.Fatalf("server exited: %s", n.output())
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start within 60s")
	}
	return n
}

func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// kill sends SIGKILL and waits for the process to exit.
func (n *node) kill() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// newClient starts a client that tries urls in order and fails over to
// the next on disconnect.
func newClient(t *testing.T, urls ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{
		URLs:         urls,
		MinBackoff:   50 * time.Millisecond,
		MaxBackoff:   500 * time.Millisecond,
		PingInterval: time.Second,
		PingTimeout:  3 * time.Second,
		SyncDelay:    5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// spread gives client i both nodes' URLs, starting with node 1 for even i
// and node 2 for odd i, so clients split evenly and can fail over.
func spread(i int, n1, n2 *node) []string {
	if i%2 == 0 {
		return []string{n1.URL, n2.URL}
	}
	return []string{n2.URL, n1.URL}
}

// waitFor polls cond until it holds. The bound is a liveness guard
// against hangs, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resource is the fenced resource the lock protects: it accepts a write
// only with a token above every token it has seen, and records any
// overlap of two holders.
type resource struct {
	mu     sync.Mutex
	inside int
	last   uint64
	tokens []uint64
	at     []time.Time
	errs   []string
}

// enter is a holder's write with its token; exit ends its critical
// section.
func (r *resource) enter(token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inside > 0 {
		r.errs = append(r.errs, fmt.Sprintf("two holders: token %d entered while another holder was inside", token))
	}
	r.inside++
	if token <= r.last {
		r.errs = append(r.errs, fmt.Sprintf("write rejected: token %d from a live holder is not above %d", token, r.last))
		return
	}
	r.last = token
	r.tokens = append(r.tokens, token)
	r.at = append(r.at, time.Now())
}

func (r *resource) exit() {
	r.mu.Lock()
	r.inside--
	r.mu.Unlock()
}

func (r *resource) grants() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tokens)
}

func (r *resource) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Error(e)
	}
	for i := 1; i < len(r.tokens); i++ {
		if r.tokens[i] <= r.tokens[i-1] {
			t.Errorf("token %d after %d", r.tokens[i], r.tokens[i-1])
		}
	}
}

// worker acquires lock name through c until stop closes, writing to res
// while it holds it; errors (a node or etcd down) are retried.
func worker(c *client.Client, name string, res *resource, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	lk, err := c.Lock(name)
	if err != nil {
		panic(err)
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ok, err := lk.Acquire(ctx, 30*time.Second, client.WithWait(10*time.Second))
		if err != nil || !ok {
			cancel()
			if err != nil {
				time.Sleep(20 * time.Millisecond)
			}
			continue
		}
		tok := lk.FencingToken()
		if tok == 0 { // lost again before we could use it: not a holder
			cancel()
			continue
		}
		res.enter(tok)
		time.Sleep(time.Millisecond)
		res.exit()
		_ = lk.Unlock(ctx)
		cancel()
	}
}

// metricValues are the samples of a /metrics page: "name{labels}" → value.
type metricValues map[string]float64

// sum adds the samples of family name (every label set).
func (m metricValues) sum(name string) float64 {
	var total float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			total += v
		}
	}
	return total
}

// metrics scrapes the node's /metrics.
func (n *node) metrics(t *testing.T) metricValues {
	t.Helper()
	resp, err := http.Get("http://" + strings.TrimSuffix(strings.TrimPrefix(n.URL, "ws://"), "/ws") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := metricValues{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
