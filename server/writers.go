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
	mu      sync.Mutex
	cond    sync.Cond
	replies fifo // connections with replies: served first
	rounds  fifo // the others (fan-out, and the rounds after the first)
	closed  bool
	done    sync.WaitGroup
}

// fifo is a queue of connections.
type fifo struct {
	q    []*conn // from head
	head int
}

func (f *fifo) empty() bool { return f.head == len(f.q) }

func (f *fifo) push(c *conn) { f.q = append(f.q, c) }

// pop takes the first connection; f is not empty.
func (f *fifo) pop() *conn {
	c := f.q[f.head]
	f.q[f.head] = nil
	f.head++
	if f.head == len(f.q) { // empty: start over at the front
		f.q, f.head = f.q[:0], 0
		if cap(f.q) > 1<<16 {
			f.q = nil
		}
	} else if f.head > 1024 && f.head > len(f.q)/2 { // mostly taken: move the rest forward
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	return c
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

// push queues c for a round, ahead of fan-out when it has a reply
// queued. After close, c gets a goroutine instead.
func (p *writerPool) push(c *conn, reply bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		go c.writeLoop(false)
		return
	}
	if reply {
		p.replies.push(c)
	} else {
		p.rounds.push(c)
	}
	p.mu.Unlock()
	p.cond.Signal()
}

// run is one writer.
func (p *writerPool) run() {
	defer p.done.Done()
	var w writeScratch
	for {
		p.mu.Lock()
		for p.replies.empty() && p.rounds.empty() && !p.closed {
			p.cond.Wait()
		}
		var c *conn
		switch {
		case !p.replies.empty():
			c = p.replies.pop()
		case !p.rounds.empty():
			c = p.rounds.pop()
		default:
			p.mu.Unlock()
			return
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
