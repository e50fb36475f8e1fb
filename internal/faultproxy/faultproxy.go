// Package faultproxy is a fault-injecting TCP proxy on 127.0.0.1 for the
// chaos harness (internal/chaos): it forwards every connection it accepts
// to a target address and, on demand, adds latency, drops every
// connection, stalls the current connections without closing them
// (half-open), or partitions: stalls every connection, current and new,
// until healed.
//
// It is written for the harness rather than taken from Toxiproxy
// (github.com/Shopify/toxiproxy/v2): Toxiproxy's in-process API is its
// HTTP server's internals (toxic collections, a metrics registry, zerolog),
// it has no "stall current connections only" fault and no partition that
// keeps connections open and then resumes them, and the harness needs
// those exactly, with no other dependency.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from Addr to a target.
type Proxy struct {
	ln net.Listener

	mu          sync.Mutex
	cond        *sync.Cond
	target      string
	latency     time.Duration
	partitioned bool
	closed      bool
	links       map[*link]struct{}
	wg          sync.WaitGroup
}

// link is one proxied connection: the accepted one and the dialed one.
type link struct {
	in, out net.Conn
	stalled bool // half-open: never forwards again; ended by Drop or Heal
}

// New listens on a free 127.0.0.1 port and forwards to target (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections go (a restarted server that
// listens on another port); current connections are not moved.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// SetLatency delays every chunk forwarded from now on by d, in both
// directions (0 removes it).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Drop closes every current connection, both sides.
func (p *Proxy) Drop() {
	p.mu.Lock()
	links := p.takeLinks(func(*link) bool { return true })
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// HalfOpen stalls every current connection for good: nothing more is
// forwarded either way and neither side is closed, so each peer sees a
// connection that is open and silent. New connections are not affected.
// Heal (or Drop) closes the stalled ones.
func (p *Proxy) HalfOpen() {
	p.mu.Lock()
	for l := range p.links {
		l.stalled = true
	}
	p.mu.Unlock()
}

// Partition stalls every connection, current and new (new ones are
// accepted but not forwarded) until Heal, which resumes them.
func (p *Proxy) Partition() {
	p.mu.Lock()
	p.partitioned = true
	p.mu.Unlock()
}

// Heal ends every fault: latency 0, the partition lifted (its stalled
// connections resume), half-open connections closed.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.latency = 0
	p.partitioned = false
	stalled := p.takeLinks(func(l *link) bool { return l.stalled })
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, l := range stalled {
		l.close()
	}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	links := p.takeLinks(func(*link) bool { return true })
	p.cond.Broadcast()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

// takeLinks removes and returns the links for which pick is true. p.mu
// is held.
func (p *Proxy) takeLinks(pick func(*link) bool) []*link {
	var out []*link
	for l := range p.links {
		if pick(l) {
			out = append(out, l)
			delete(p.links, l)
		}
	}
	if len(out) > 0 {
		p.cond.Broadcast() // pumps waiting on a stall see their link gone
	}
	return out
}

func (l *link) close() {
	l.in.Close()
	if l.out != nil {
		l.out.Close()
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(in)
	}
}

func (p *Proxy) serve(in net.Conn) {
	defer p.wg.Done()
	l := &link{in: in}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		in.Close()
		return
	}
	p.links[l] = struct{}{}
	// A partition holds a new connection before it is dialed, like a SYN
	// that gets no answer (the client's dial timeout ends it).
	for p.partitioned && p.live(l) {
		p.cond.Wait()
	}
	live, target := p.live(l), p.target
	p.mu.Unlock()
	if !live {
		in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", target, 2*time.Second)
	p.mu.Lock()
	if err != nil || !p.live(l) {
		p.mu.Unlock()
		p.remove(l)
		in.Close()
		if out != nil {
			out.Close()
		}
		return
	}
	l.out = out
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pump(l, out, in); done <- struct{}{} }()
	p.pump(l, in, out)
	<-done
}

// live reports whether l is still the proxy's. p.mu is held.
func (p *Proxy) live(l *link) bool {
	_, ok := p.links[l]
	return ok && !p.closed
}

func (p *Proxy) remove(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.cond.Broadcast()
	p.mu.Unlock()
}

// pump copies src to dst chunk by chunk, each chunk waiting out a stall
// or partition and the latency; when either side ends, it ends the link.
func (p *Proxy) pump(l *link, src, dst net.Conn) {
	defer func() {
		p.remove(l)
		l.close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for (l.stalled || p.partitioned) && p.live(l) {
				p.cond.Wait()
			}
			live, lat := p.live(l), p.latency
			p.mu.Unlock()
			if !live {
				return
			}
			if lat > 0 {
				time.Sleep(lat)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // EOF too: the protocol has no use for half-closes
			return
		}
	}
}
