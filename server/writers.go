package server

import (
	"runtime"
	"sync"
)

// writerPool writes the connections' queued frames: a connection with
// something queued waits in one FIFO queue, and a few writer goroutines
// take the connections in turn, one round each (conn.poolRound). Compared
// with a goroutine per connection and round, fan-out to thousands of
// subscribers creates no goroutines, and every subscriber is served in
// the order it was woken: with a goroutine each, the scheduler runs the
// newest first and moves the overflow of its run queues to a global
// queue that it serves rarely, so some subscribers waited several rounds
// (the tail of write→seen in bench/RESULTS.md). A round never blocks on a
// socket: one that cannot take everything sends its connection to a
// goroutine of its own (wsConn.TryWrite).
type writerPool struct {
	mu     sync.Mutex
	cond   sync.Cond
	q      []*conn // FIFO from head
	head   int
	closed bool
	done   sync.WaitGroup
}

// newWriterPool starts n writers (at least 2).
func newWriterPool(n int) *writerPool {
	p := &writerPool{}
	p.cond.L = &p.mu
	n = max(n, 2)
	p.done.Add(n)
	for range n {
		go p.run()
	}
	return p
}

// poolSize is the number of pool writers: one per core, and more so that
// a round waiting for a counter's mutex does not idle a core.
func poolSize() int { return 2 * runtime.GOMAXPROCS(0) }

// push queues c for a round. After close, c gets a goroutine instead.
func (p *writerPool) push(c *conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		go c.writeLoop(false)
		return
	}
	p.q = append(p.q, c)
	p.mu.Unlock()
	p.cond.Signal()
}

// run is one writer.
func (p *writerPool) run() {
	defer p.done.Done()
	var w writeScratch
	for {
		p.mu.Lock()
		for p.head == len(p.q) && !p.closed {
			p.cond.Wait()
		}
		if p.head == len(p.q) {
			p.mu.Unlock()
			return
		}
		c := p.q[p.head]
		p.q[p.head] = nil
		p.head++
		if p.head == len(p.q) { // empty: start over at the front
			p.q, p.head = p.q[:0], 0
			if cap(p.q) > 1<<16 {
				p.q = nil
			}
		} else if p.head > 1024 && p.head > len(p.q)/2 { // mostly taken: move the rest forward
			n := copy(p.q, p.q[p.head:])
			clear(p.q[n:])
			p.q, p.head = p.q[:n], 0
		}
		p.mu.Unlock()
		c.poolRound(&w)
	}
}

// close stops the writers once the queue is empty.
func (p *writerPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.done.Wait()
}
