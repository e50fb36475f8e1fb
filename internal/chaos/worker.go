package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

// IsWorker reports whether this process was started by the harness as a
// client worker; its main (or TestMain) then calls WorkerMain.
func IsWorker() bool { return os.Getenv(envWorker) == "1" }

// WorkerMain runs a client worker: the project's Go client doing counter
// writes and fenced lock work against the URLs in its configuration,
// reporting every event to the harness over stdout until the harness
// says exit. It returns the process exit code.
func WorkerMain() int {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker: config:", err)
		return 2
	}
	w := &worker{cfg: cfg, out: bufio.NewWriter(os.Stdout), replies: map[uint64]chan msg{},
		stop: make(chan struct{}), expect: make(chan msg, 8), exit: make(chan struct{}),
		sniff: &sniffer{releases: map[string]relKey{}, confirmed: map[relKey]bool{}, granted: map[string]uint64{}}}
	go w.readHarness()
	if err := w.run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		return 1
	}
	return 0
}

type worker struct {
	cfg   workerConfig
	sniff *sniffer

	mu      sync.Mutex
	out     *bufio.Writer
	nextID  uint64
	replies map[uint64]chan msg

	stop, exit chan struct{}
	expect     chan msg
}

// readHarness dispatches the harness's lines; a closed stdin (the harness
// died) ends the process.
func (w *worker) readHarness() {
	sc := bufio.NewScanner(os.Stdin)
	stopped := false
	for sc.Scan() {
		var m msg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		switch m.K {
		case "reply":
			w.mu.Lock()
			ch := w.replies[m.ID]
			delete(w.replies, m.ID)
			w.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case "stop":
			if !stopped {
				stopped = true
				close(w.stop)
			}
		case "expect":
			w.expect <- m
		case "exit":
			close(w.exit)
			return
		}
	}
	os.Exit(3)
}

func (w *worker) send(m msg) {
	b, _ := json.Marshal(m)
	w.mu.Lock()
	w.out.Write(append(b, '\n'))
	w.out.Flush()
	w.mu.Unlock()
}

// call sends m and waits for the harness's reply.
func (w *worker) call(m msg) msg {
	ch := make(chan msg, 1)
	w.mu.Lock()
	w.nextID++
	m.ID = w.nextID
	w.replies[m.ID] = ch
	w.mu.Unlock()
	w.send(m)
	return <-ch
}

func (w *worker) violation(format string, args ...any) {
	w.send(msg{K: "viol", Err: fmt.Sprintf(format, args...)})
}

func (w *worker) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *worker) run() error {
	c, err := client.New(client.Options{
		URLs:         w.cfg.URLs,
		Dialer:       w.sniff.dial,
		MinBackoff:   50 * time.Millisecond,
		MaxBackoff:   500 * time.Millisecond,
		PingInterval: 500 * time.Millisecond,
		PingTimeout:  2 * time.Second,
		SyncDelay:    5 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = c.Start(ctx)
	cancel()
	if err != nil {
		return err
	}
	w.send(msg{K: "hello", Node: c.NodeID()})
	inc, err := c.Counter(w.cfg.IncCounter)
	if err != nil {
		return err
	}
	pn, err := c.Counter(w.cfg.PNCounter)
	if err != nil {
		return err
	}
	stock, err := c.BoundedCounter(w.cfg.Stock, 0)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(w.cfg.Seed), uint64(w.cfg.Index)))
	lrng := rand.New(rand.NewPCG(uint64(w.cfg.Seed), uint64(w.cfg.Index)+1<<32))
	brng := rand.New(rand.NewPCG(uint64(w.cfg.Seed), uint64(w.cfg.Index)+2<<32))
	var wg sync.WaitGroup
	var counterOps int
	var maxInc, restocked, sold int64
	wg.Add(3)
	go func() { defer wg.Done(); counterOps, maxInc = w.counters(c, inc, pn, rng) }()
	go func() { defer wg.Done(); w.locks(c, lrng) }()
	go func() { defer wg.Done(); restocked, sold = w.sell(stock, brng) }()
	wg.Wait()

	// The stock's changes are sent as they are made: wait until the
	// server has them all (a liveness bound).
	deadline := time.Now().Add(30 * time.Second)
	for !stock.Synced() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	w.send(msg{K: "bfinal", Counter: stock.Name(), P: restocked, N: sold, OK: stock.Synced(), Value: stock.Get(), Node: c.NodeID()})

	// After the faults: deliver everything, then report.
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	ferr := c.Flush(fctx)
	fcancel()
	for _, cnt := range []*client.Counter{inc, pn} {
		p, n := cnt.Own()
		m := msg{K: "final", Counter: cnt.Name(), P: p, N: n, Value: cnt.Get(), OK: ferr == nil, Node: c.NodeID()}
		if cnt == inc {
			m.Max, m.Ops = maxInc, counterOps
		}
		w.send(m)
	}
	for {
		select {
		case m := <-w.expect:
			cnt := inc
			if m.Counter == pn.Name() {
				cnt = pn
			}
			deadline := time.Now().Add(20 * time.Second)
			for cnt.Get() != m.Value && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			v := cnt.Get()
			w.send(msg{K: "converged", Counter: m.Counter, OK: v == m.Value, Value: v})
		case <-w.exit:
			c.Close()
			return nil
		}
	}
}

// counters writes the two counters until stop: the inc-only counter only
// grows, so every value this client shows must be at least the last one
// (its knowledge of the other writers never goes backwards) and at least
// its own increments; every few writes a Flush tells the harness what the
// server acknowledged.
func (w *worker) counters(c *client.Client, inc, pn *client.Counter, rng *rand.Rand) (ops int, maxSeen int64) {
	last := int64(0)
	for !w.stopped() {
		time.Sleep(time.Duration(10+rng.IntN(60)) * time.Millisecond)
		inc.Increment()
		if rng.IntN(2) == 0 {
			pn.Increment()
		} else {
			pn.Decrement()
		}
		ops += 2
		v := inc.Get()
		p, _ := inc.Own()
		if v < last {
			w.violation("counter %s: value %d shown after %d (inc-only: knowledge went backwards)", inc.Name(), v, last)
		}
		if v < p {
			w.violation("counter %s: value %d below own increments %d", inc.Name(), v, p)
		}
		last = max(last, v)
		if rng.IntN(8) == 0 {
			ip, in := inc.Own()
			pp, pn2 := pn.Own()
			w.call(msg{K: "inv", Op: "flush"})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.Flush(ctx)
			cancel()
			if err == nil {
				w.send(msg{K: "acked", Counter: inc.Name(), P: ip, N: in})
				w.send(msg{K: "acked", Counter: pn.Name(), P: pp, N: pn2})
				w.send(msg{K: "ret", Op: "flush", Res: resConfirmed})
			} else {
				w.send(msg{K: "ret", Op: "flush", Res: resError, Err: err.Error()})
			}
			ops++
		}
	}
	return ops, last
}

// sell works the stock until stop: worker 0 restocks it a little at a
// time; every worker sells one unit at a time with the rights it holds
// (TryDecrement must succeed exactly when it holds some, offline too)
// and asks the server for more when it runs out. No value it shows may
// be below the bound. It returns what it restocked and what it sold.
func (w *worker) sell(b *client.BoundedCounter, rng *rand.Rand) (restocked, sold int64) {
	for !w.stopped() {
		time.Sleep(time.Duration(5+rng.IntN(40)) * time.Millisecond)
		if w.cfg.Index == 0 && rng.IntN(8) == 0 {
			if err := b.Increment(10); err != nil {
				w.violation("stock: restock: %v", err)
			} else {
				restocked += 10
			}
		}
		held := b.Available()
		switch {
		case held > 0:
			if !b.TryDecrement(1) {
				w.violation("stock: TryDecrement failed with %d rights held", held)
			} else {
				sold++
			}
		default:
			if b.TryDecrement(1) {
				w.violation("stock: TryDecrement succeeded with no rights held")
				sold++
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = b.RequestRights(ctx, int64(1+rng.IntN(5))) // refused or cut by faults: tried again
			cancel()
		}
		if v := b.Get(); v < b.Min() {
			w.violation("stock: the client shows %d, below the bound %d", v, b.Min())
		}
	}
	return restocked, sold
}

// locks acquires random locks until stop, writes to the fenced resource
// (in the harness) with the grant's token, and releases. About one grant
// in ten is held past its lease, to see it expire.
func (w *worker) locks(c *client.Client, rng *rand.Rand) {
	handles := map[string]*client.Lock{}
	var mu sync.Mutex
	told := map[string]bool{} // OnLost fired for the current grant
	for _, name := range w.cfg.Locks {
		lk, err := c.Lock(name)
		if err != nil {
			w.violation("lock handle %s: %v", name, err)
			return
		}
		handles[name] = lk
		lk.OnLost(func(reason string) {
			mu.Lock()
			told[name] = true
			mu.Unlock()
			w.send(msg{K: "lost", Lock: name, Res: reason})
		})
	}
	for !w.stopped() {
		name := w.cfg.Locks[rng.IntN(len(w.cfg.Locks))]
		lk := handles[name]
		ttl := time.Duration(1000+rng.IntN(2000)) * time.Millisecond
		wait := time.Duration(rng.IntN(1500)) * time.Millisecond
		mu.Lock()
		told[name] = false
		mu.Unlock()
		w.call(msg{K: "inv", Op: "acquire", Lock: name})
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		ok, err := lk.Acquire(ctx, ttl, client.WithWait(wait))
		cancel()
		tok := lk.FencingToken()
		if ok && tok == 0 {
			tok = w.sniff.grantedToken(name) // lost before we looked
		}
		switch {
		case err != nil:
			w.send(msg{K: "ret", Op: "acquire", Lock: name, Res: resError, Err: err.Error()})
			time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
			continue
		case !ok:
			w.send(msg{K: "ret", Op: "acquire", Lock: name, Res: resDenied})
			continue
		}
		w.send(msg{K: "ret", Op: "acquire", Lock: name, Res: resGranted, Token: tok})
		for range 1 + rng.IntN(3) {
			hold := time.Duration(rng.IntN(int(ttl/time.Millisecond)/3)) * time.Millisecond
			if rng.IntN(10) == 0 {
				hold = ttl + 300*time.Millisecond
			}
			time.Sleep(hold)
			if !lk.IsLocked() {
				break
			}
			w.call(msg{K: "write", Lock: name, Token: tok})
		}
		if !lk.IsLocked() {
			// OnLost runs right after the handle clears: a bounded wait
			// for it (a liveness bound, not a timing assertion).
			t := false
			for i := 0; i < 200 && !t; i++ {
				mu.Lock()
				t = told[name]
				mu.Unlock()
				if !t {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if !t {
				w.violation("lock %s token %d: the lease ended and the holder was not told", name, tok)
			}
			continue
		}
		w.call(msg{K: "inv", Op: "release", Lock: name, Token: tok})
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		err = lk.Unlock(ctx)
		cancel()
		res := resUnknown
		switch {
		case err != nil:
			res = resFailed
		case w.sniff.releaseConfirmed(name, tok):
			res = resConfirmed
		}
		m := msg{K: "ret", Op: "release", Lock: name, Token: tok, Res: res}
		if err != nil {
			m.Err = err.Error()
		}
		w.send(m)
	}
}

// sniffer wraps the client's connections to see the lock frames on the
// wire: which release the server confirmed (Unlock returns nil both for a
// confirmed release and for a connection that dropped first), and the
// token of a grant lost before the worker could read it.
type sniffer struct {
	mu        sync.Mutex
	releases  map[string]relKey // LOCK_RELEASE requestId → lock and token
	confirmed map[relKey]bool
	granted   map[string]uint64 // lock → last granted token
}

type relKey struct {
	name  string
	token uint64
}

func (s *sniffer) dial(ctx context.Context, url string) (transport.Conn, error) {
	cn, err := transport.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: cn, s: s}, nil
}

func (s *sniffer) releaseConfirmed(name string, token uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmed[relKey{name, token}]
}

func (s *sniffer) grantedToken(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.granted[name]
}

type sniffConn struct {
	transport.Conn
	s *sniffer
}

func (c *sniffConn) Write(ctx context.Context, frame []byte) error {
	if m, err := wire.Decode(frame); err == nil {
		if r, ok := m.(wire.LockRelease); ok {
			c.s.mu.Lock()
			c.s.releases[r.RequestID] = relKey{r.Name, r.FencingToken}
			c.s.mu.Unlock()
		}
	}
	return c.Conn.Write(ctx, frame)
}

func (c *sniffConn) Read(ctx context.Context) ([]byte, error) {
	b, err := c.Conn.Read(ctx)
	if err == nil {
		c.s.see(b, 0)
	}
	return b, err
}

func (s *sniffer) see(frame []byte, depth int) {
	m, err := wire.Decode(frame)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m := m.(type) {
	case wire.LockGranted:
		s.granted[m.Name] = m.FencingToken
	case wire.LockReleased:
		if k, ok := s.releases[m.RequestID]; ok {
			delete(s.releases, m.RequestID)
			if m.Success {
				s.confirmed[k] = true
			}
		}
	case wire.Batch:
		if depth < 4 {
			if items, err := wire.SplitServerBatch(m.Data); err == nil {
				s.mu.Unlock()
				for _, it := range items {
					s.see(it, depth+1)
				}
				s.mu.Lock()
			}
		}
	}
}
