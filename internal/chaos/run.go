package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/internal/etcdtest"
	"github.com/topgun-go/topgun/internal/faultproxy"
)

// Config is one run.
type Config struct {
	// ServerBin is the topgun-server binary.
	ServerBin string
	// Self is the command that starts this program again as a worker
	// (os.Args[0] of the runner or of a test binary, plus arguments).
	Self []string
	// Mode is "single" (one server on bbolt) or "cluster" (3 etcd
	// members, 2 server nodes).
	Mode string
	// Duration of the fault schedule; the run takes longer (start, heal,
	// final checks).
	Duration time.Duration
	Seed     uint64
	// Clients is the number of Go client worker processes; Malformed the
	// number of raw clients sending bad frames.
	Clients, Malformed int
	// Faults restricts the fault kinds (nil: every kind of the mode).
	Faults []string
	// Dir keeps logs and, on failure, porcupine's visualization.
	Dir string
	// Out receives progress lines and the summary.
	Out io.Writer
}

// Result is what a run found.
type Result struct {
	Operations int
	Faults     map[string]int
	Violations []string
	// Recovery: per fault kind, the time from the heal to the first lock
	// grant (and counter acknowledgement) asked for after it.
	GrantRecovery, AckRecovery map[string][]time.Duration
	VizPath                    string
}

// Fault kinds.
const (
	FaultKill          = "kill-server"
	FaultPauseServer   = "pause-server"
	FaultPauseClient   = "pause-client"
	FaultLatency       = "latency"
	FaultDrop          = "drop"
	FaultHalfOpen      = "half-open"
	FaultPartition     = "partition-clients"
	FaultKillNode      = "kill-node"
	FaultKillLeader    = "kill-etcd-leader"
	FaultKillFollower  = "kill-etcd-follower"
	FaultPartitionEtcd = "partition-node-etcd"
	// FaultRevoke force-releases a lock through the admin API (an
	// operator's `topgun-server locks release`): its holder must be told.
	FaultRevoke = "revoke-lock"
)

var singleFaults = []string{FaultKill, FaultPauseServer, FaultPauseClient, FaultLatency, FaultDrop, FaultHalfOpen, FaultPartition, FaultRevoke}
var clusterFaults = []string{FaultKillNode, FaultKillLeader, FaultKillFollower, FaultPartitionEtcd, FaultPauseServer, FaultPauseClient, FaultLatency, FaultDrop, FaultHalfOpen, FaultPartition, FaultRevoke}

// Names the workers use.
const (
	incCounter = "chaos-inc"
	pnCounter  = "chaos-pn"
	stockName  = "chaos-stock"
)

var lockNames = []string{"chaos-lock-0", "chaos-lock-1"}

type run struct {
	cfg     Config
	h       *history
	out     io.Writer
	servers []*server
	etcd    *etcdtest.Cluster
	// proxies[w][n]: worker w's proxy to server node n; etcdProxies[n]:
	// node n's proxies to the etcd members.
	proxies     [][]*faultproxy.Proxy
	etcdProxies [][]*faultproxy.Proxy
	workers     []*workerProc
	logw        io.Writer
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "chaos: %7.2fs "+format+"\n", append([]any{time.Duration(r.h.now()).Seconds()}, args...)...)
}

// Run runs the harness once. Every process it starts is ended by PID
// before it returns, also on failure.
func Run(cfg Config) (res Result, err error) {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Mode == "" {
		cfg.Mode = "single"
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "topgun-chaos"); err != nil {
			return res, err
		}
	}
	logf, err := os.Create(filepath.Join(cfg.Dir, "processes.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	r := &run{cfg: cfg, h: newHistory(), out: cfg.Out, logw: &syncWriter{w: logf}}
	defer r.teardown()
	res = Result{Faults: map[string]int{}, GrantRecovery: map[string][]time.Duration{}, AckRecovery: map[string][]time.Duration{}}
	r.logf("mode %s, seed %d, %d clients, %d malformed, %v of faults; logs in %s", cfg.Mode, cfg.Seed, cfg.Clients, cfg.Malformed, cfg.Duration, cfg.Dir)
	if err := r.startServers(); err != nil {
		return res, err
	}
	if err := r.startWorkers(); err != nil {
		return res, err
	}
	stopBad := make(chan struct{})
	var badWG sync.WaitGroup
	var badSent int
	var badMu sync.Mutex
	for i := range cfg.Malformed {
		badWG.Add(1)
		go func() {
			defer badWG.Done()
			n := malformed(cfg.Seed, i, func() string { return r.servers[i%len(r.servers)].Addr() }, stopBad, r.h)
			badMu.Lock()
			badSent += n
			badMu.Unlock()
		}()
	}

	// Let the clients get going, then the nemesis.
	warm := time.Now().Add(30 * time.Second)
	for time.Now().Before(warm) {
		if _, ok := r.h.grantRecovery(0); ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	heals := r.nemesis(res.Faults)

	r.logf("faults over: healing, stopping the clients")
	close(stopBad)
	badWG.Wait()
	r.finish()

	// Checks.
	for _, hl := range heals {
		if d, ok := r.h.grantRecovery(hl.at); ok {
			res.GrantRecovery[hl.kind] = append(res.GrantRecovery[hl.kind], d)
		}
		if d, ok := r.h.ackRecovery(hl.at); ok {
			res.AckRecovery[hl.kind] = append(res.AckRecovery[hl.kind], d)
		}
	}
	lv, viz, unknown := checkLocks(r.h, cfg.Dir, 60*time.Second)
	res.VizPath = viz
	if unknown {
		r.logf("locks: porcupine gave up within its time limit (no verdict; not counted)")
	}
	var cv []string
	for _, name := range []string{incCounter, pnCounter} {
		var states []crdt.State
		for i, s := range r.servers {
			st, err := readState(s.Addr(), name)
			if err != nil {
				cv = append(cv, fmt.Sprintf("counter %s: node %d: read: %v", name, i, err))
				continue
			}
			states = append(states, st)
		}
		v, value := checkCounters(r.h, name, states)
		cv = append(cv, v...)
		for _, w := range r.workers {
			w.send(msg{K: "expect", Counter: name, Value: value})
		}
	}
	cv = append(cv, r.checkStock()...)
	// Convergence: every client shows the servers' value.
	r.waitReports(func() int { return len(r.h.conv) }, 30*time.Second)
	r.h.mu.Lock()
	for _, c := range r.h.conv {
		if !c.OK {
			cv = append(cv, fmt.Sprintf("counter %s: a client still shows %d after the faults healed (did not converge)", c.Counter, c.Value))
		}
	}
	if len(r.h.conv) < 2*len(r.workers) {
		cv = append(cv, fmt.Sprintf("convergence: %d of %d client reports arrived", len(r.h.conv), 2*len(r.workers)))
	}
	r.h.mu.Unlock()
	for _, w := range r.workers {
		w.send(msg{K: "exit"})
	}
	for _, w := range r.workers {
		w.end(15 * time.Second)
	}

	r.h.mu.Lock()
	res.Violations = append(append(append([]string(nil), r.h.viols...), lv...), cv...)
	res.Operations = r.h.ops + badSent
	r.h.mu.Unlock()
	r.summary(res)
	return res, nil
}

type heal struct {
	kind string
	at   int64
}

// nemesis injects one fault at a time, chosen with the seed, until the
// duration is over, and returns when each fault healed.
func (r *run) nemesis(counts map[string]int) []heal {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x6e656d))
	kinds := singleFaults
	if r.cfg.Mode == "cluster" {
		kinds = clusterFaults
	}
	if len(r.cfg.Faults) > 0 {
		kinds = r.cfg.Faults
	}
	var heals []heal
	end := time.Now().Add(r.cfg.Duration)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		kind := kinds[rng.IntN(len(kinds))]
		hold := time.Duration(300+rng.IntN(2700)) * time.Millisecond
		// A subset of the clients for the client faults: each with
		// probability one half, at least one.
		var subset []int
		for i := range r.workers {
			if rng.IntN(2) == 0 {
				subset = append(subset, i)
			}
		}
		if len(subset) == 0 {
			subset = []int{rng.IntN(len(r.workers))}
		}
		node := rng.IntN(len(r.servers))
		latency := time.Duration(20+rng.IntN(300)) * time.Millisecond
		counts[kind]++
		r.logf("fault %s (hold %v, node %d, clients %v)", kind, hold, node, subset)
		if err := r.inject(kind, hold, node, subset, latency); err != nil {
			r.h.violation("nemesis %s: %v", kind, err)
		}
		heals = append(heals, heal{kind, r.h.now()})
	}
	return heals
}

func (r *run) inject(kind string, hold time.Duration, node int, subset []int, latency time.Duration) error {
	proxiesOf := func(f func(p *faultproxy.Proxy)) {
		for _, w := range subset {
			for _, p := range r.proxies[w] {
				f(p)
			}
		}
	}
	switch kind {
	case FaultKill, FaultKillNode:
		s := r.servers[node]
		s.kill()
		time.Sleep(hold)
		return r.restartServer(node)
	case FaultPauseServer:
		r.servers[node].signal(syscall.SIGSTOP)
		time.Sleep(hold)
		r.servers[node].signal(syscall.SIGCONT)
	case FaultPauseClient:
		for _, w := range subset {
			r.workers[w].signal(syscall.SIGSTOP)
		}
		time.Sleep(hold)
		for _, w := range subset {
			r.workers[w].signal(syscall.SIGCONT)
		}
	case FaultLatency:
		proxiesOf(func(p *faultproxy.Proxy) { p.SetLatency(latency) })
		time.Sleep(hold)
		proxiesOf((*faultproxy.Proxy).Heal)
	case FaultDrop:
		proxiesOf((*faultproxy.Proxy).Drop)
	case FaultHalfOpen:
		proxiesOf((*faultproxy.Proxy).HalfOpen)
		time.Sleep(hold)
		proxiesOf((*faultproxy.Proxy).Heal)
	case FaultPartition:
		proxiesOf((*faultproxy.Proxy).Partition)
		time.Sleep(hold)
		proxiesOf((*faultproxy.Proxy).Heal)
	case FaultKillLeader, FaultKillFollower:
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		leader, err := r.etcd.Leader(ctx)
		if err != nil {
			return err
		}
		m := leader
		if kind == FaultKillFollower {
			m = (leader + 1 + node) % 3
		}
		r.etcd.Kill(m)
		time.Sleep(hold)
		return r.etcd.Restart(ctx, m)
	case FaultRevoke:
		// Through node (loopback, --no-auth: the admin API needs no
		// token); a lock nobody holds answers 404, which is fine.
		name := lockNames[subset[0]%len(lockNames)]
		hc := http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Post("http://"+r.servers[node].Addr()+"/v1/locks/"+name+"/release", "application/json", nil)
		if err != nil {
			return nil // the node may be down or paused: nothing revoked
		}
		resp.Body.Close()
		r.logf("revoke %s through node %d: %s", name, node, resp.Status)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("revoke %s: %s", name, resp.Status)
		}
		time.Sleep(hold)
	case FaultPartitionEtcd:
		for _, p := range r.etcdProxies[node] {
			p.Partition()
		}
		time.Sleep(hold)
		for _, p := range r.etcdProxies[node] {
			p.Heal()
		}
	default:
		return fmt.Errorf("unknown fault kind %q", kind)
	}
	return nil
}

func (r *run) startServers() error {
	base := []string{"--addr", "127.0.0.1:0", "--no-auth", "--log-level", "info"}
	if r.cfg.Mode == "single" {
		s := &server{bin: r.cfg.ServerBin, logw: r.logw, args: append(base, "--data", filepath.Join(r.cfg.Dir, "data"))}
		r.servers = []*server{s}
		return s.start()
	}
	if r.cfg.Mode != "cluster" {
		return fmt.Errorf("chaos: unknown mode %q (single or cluster)", r.cfg.Mode)
	}
	c, err := etcdtest.Start(context.Background(), 3, filepath.Join(r.cfg.Dir, "etcd"), r.logw)
	if err != nil {
		return err
	}
	r.etcd = c
	for range 2 {
		var eps []string
		var ps []*faultproxy.Proxy
		for _, ep := range c.Endpoints() {
			p, err := faultproxy.New(hostPort(ep))
			if err != nil {
				return err
			}
			ps = append(ps, p)
			eps = append(eps, "http://"+p.Addr())
		}
		r.etcdProxies = append(r.etcdProxies, ps)
		s := &server{bin: r.cfg.ServerBin, logw: r.logw,
			args: append(append([]string(nil), base...), "--etcd", strings.Join(eps, ","), "--etcd-lease-ttl", "3s")}
		r.servers = append(r.servers, s)
		if err := s.start(); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) restartServer(n int) error {
	if err := r.servers[n].start(); err != nil {
		return err
	}
	for _, ps := range r.proxies {
		ps[n].SetTarget(r.servers[n].Addr())
	}
	return nil
}

func (r *run) startWorkers() error {
	for i := range r.cfg.Clients {
		var ps []*faultproxy.Proxy
		var addrs []string
		for n := range r.servers {
			p, err := faultproxy.New(r.servers[n].Addr())
			if err != nil {
				return err
			}
			ps = append(ps, p)
			addrs = append(addrs, p.Addr())
		}
		// Half the clients start on the second node.
		if i%2 == 1 && len(addrs) > 1 {
			addrs[0], addrs[1] = addrs[1], addrs[0]
		}
		r.proxies = append(r.proxies, ps)
		w, err := startWorker(r.cfg.Self, workerConfig{Index: i, Seed: int64(r.cfg.Seed), URLs: urlsOf(addrs),
			Locks: lockNames, IncCounter: incCounter, PNCounter: pnCounter, Stock: stockName}, r.h, r.logw)
		if err != nil {
			return err
		}
		r.workers = append(r.workers, w)
	}
	return nil
}

// finish heals everything and stops the workers, which flush and report
// their finals.
func (r *run) finish() {
	for _, ps := range append(r.proxies, r.etcdProxies...) {
		for _, p := range ps {
			p.Heal()
		}
	}
	for _, s := range r.servers {
		s.signal(syscall.SIGCONT)
	}
	for _, w := range r.workers {
		w.signal(syscall.SIGCONT)
		w.send(msg{K: "stop"})
	}
	if r.waitReports(func() int { return len(r.h.finals) }, 60*time.Second) {
		return
	}
	r.h.violation("%d clients did not report after stop within 60s", len(r.workers))
}

func (r *run) teardown() {
	for _, w := range r.workers {
		w.signal(syscall.SIGCONT)
		w.signal(syscall.SIGKILL)
		<-w.exited
	}
	for _, s := range r.servers {
		s.signal(syscall.SIGCONT)
		s.kill()
	}
	if r.etcd != nil {
		r.etcd.Stop()
	}
	for _, ps := range append(r.proxies, r.etcdProxies...) {
		for _, p := range ps {
			p.Close()
		}
	}
}

// waitReports waits until count (read under the history's lock) reaches
// two reports per worker (one per counter), or bound passes; it reports
// whether they all came.
func (r *run) waitReports(count func() int, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		r.h.mu.Lock()
		n := count()
		r.h.mu.Unlock()
		if n >= 2*len(r.workers) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *run) summary(res Result) {
	var kinds []string
	total := 0
	for k, n := range res.Faults {
		kinds = append(kinds, k)
		total += n
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		g, a := res.GrantRecovery[k], res.AckRecovery[k]
		fmt.Fprintf(r.out, "chaos: fault %-20s %3d  grants back p50 %v max %v  acks back p50 %v max %v\n", k, res.Faults[k],
			percentile(g, 0.5).Round(time.Millisecond), percentile(g, 1).Round(time.Millisecond),
			percentile(a, 0.5).Round(time.Millisecond), percentile(a, 1).Round(time.Millisecond))
	}
	for _, v := range res.Violations {
		fmt.Fprintf(r.out, "chaos: VIOLATION %s\n", v)
	}
	if res.VizPath != "" {
		fmt.Fprintf(r.out, "chaos: porcupine visualization: %s\n", res.VizPath)
	}
	fmt.Fprintf(r.out, "chaos: %d operations, %d faults, %d violations, seed %d\n", res.Operations, total, len(res.Violations), r.cfg.Seed)
}

// syncWriter serialises writes from several processes' pipes.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
