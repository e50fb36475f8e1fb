// Package etcdtest runs real etcd members (Debian's etcd-server binary) on
// 127.0.0.1 for tests and benchmarks: a cluster of n members with temporary
// data directories, which a test can SIGKILL and restart one by one.
//
// The etcd binary is looked up as $TOPGUN_ETCD_BIN, then etcd on PATH, then
// /usr/bin/etcd; `make deps` installs it (scripts/etcd-setup.sh).
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/topgun-go/topgun/internal/leakcheck"
)

// Timing of the members, in milliseconds: etcd's defaults (heartbeat 100,
// election 1000), so failover figures measured here are what a default
// deployment sees.
const (
	HeartbeatMS = 100
	ElectionMS  = 1000
)

// Cluster is a running etcd cluster.
type Cluster struct {
	bin     string
	dir     string
	logw    io.Writer
	members []*member
}

type member struct {
	name       string
	dataDir    string
	clientURL  string
	peerURL    string
	cmd        *exec.Cmd
	exited     chan struct{}
	initialArg string
}

// Binary returns the path of the etcd binary, or an error saying how to
// install it.
func Binary() (string, error) {
	if p := os.Getenv("TOPGUN_ETCD_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", errors.New("etcdtest: no etcd binary: run `make deps` (installs Debian's etcd-server) or set TOPGUN_ETCD_BIN")
}

// New starts an n-member cluster for the test and stops it when the test
// ends. Member output goes to the test log only if the test fails.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	lw := &testLog{}
	c, err := Start(context.Background(), n, t.TempDir(), lw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("etcd output:\n%s", lw.String())
		}
	})
	return c
}

// Start starts an n-member cluster with its data under dir and waits until
// every member is healthy. Member output goes to logw (nil discards it).
func Start(ctx context.Context, n int, dir string, logw io.Writer) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if logw == nil {
		logw = io.Discard
	}
	c := &Cluster{bin: bin, dir: dir, logw: logw}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			dataDir:   filepath.Join(dir, fmt.Sprintf("m%d", i)),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.initialArg = strings.Join(initial, ",")
		if err := c.launch(m); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for i := range c.members {
		if err := c.waitHealthy(ctx, i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) launch(m *member) error {
	cmd := exec.Command(c.bin,
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.initialArg,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "topgun-etcdtest",
		"--heartbeat-interval", fmt.Sprint(HeartbeatMS),
		"--election-timeout", fmt.Sprint(ElectionMS),
		"--logger", "zap",
		"--log-level", "warn",
	)
	cmd.Stdout = c.logw
	cmd.Stderr = c.logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", m.name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(m.exited) }()
	return nil
}

// waitHealthy polls member i's /health until it reports true.
func (c *Cluster) waitHealthy(ctx context.Context, i int) error {
	m := c.members[i]
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", m.clientURL+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"health":"true"`) {
				return nil
			}
		}
		select {
		case <-m.exited:
			return fmt.Errorf("etcdtest: member %s exited while starting", m.name)
		case <-ctx.Done():
			return fmt.Errorf("etcdtest: member %s not healthy: %w", m.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Endpoints returns the client URLs of all members.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// Client returns a client of the cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the index of the current leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	for {
		for i, m := range c.members {
			if !c.Running(i) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, m.clientURL)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("etcdtest: no leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Running reports whether member i's process is alive.
func (c *Cluster) Running(i int) bool {
	m := c.members[i]
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to member i and waits for it to exit.
func (c *Cluster) Kill(i int) {
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

// Restart starts member i again on its data directory (after Kill) and
// waits until it is healthy.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if c.Running(i) {
		return fmt.Errorf("etcdtest: member %d is running", i)
	}
	if err := c.launch(c.members[i]); err != nil {
		return err
	}
	return c.waitHealthy(ctx, i)
}

// Stop kills every member (by PID) and waits for them.
func (c *Cluster) Stop() {
	for i := range c.members {
		c.Kill(i)
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type testLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Main runs a package's tests (from its TestMain) with one shared
// one-member cluster in *shared, which the tests use each under its own
// prefix; after passing tests it checks that no goroutine of pkg (a
// function name prefix such as "topgun/server/storage/etcdstore.") is
// left running. It returns the exit code for os.Exit.
func Main(m *testing.M, shared **Cluster, pkg string) int {
	dir, err := os.MkdirTemp("", "etcdtest-main")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	c, err := Start(context.Background(), 1, dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Stop()
	*shared = c
	code := m.Run()
	if code == 0 {
		if err := leakcheck.Wait(10*time.Second, pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}
