package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/time/rate"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

const (
	// maxQueued is how many reader-originated replies may wait for the
	// writer before the reader stops reading (backpressure, not drops).
	maxQueued = 256
	// maxPending bounds replies waiting for durability per connection; the
	// reader stops reading at the bound.
	maxPending = 1024
	// writeTimeout bounds one frame write; a peer that does not read is
	// disconnected.
	writeTimeout = 10 * time.Second
)

// conn is one WebSocket connection. The reader runs in a goroutine of its
// own (started once the upgrade's HTTP handler returned) and owns subs.
// The writer runs only while something is queued: an idle connection
// holds one goroutine and a small read buffer.
type conn struct {
	s       *Server
	id      uint64
	ws      *wsConn
	ctx     context.Context
	cancel  context.CancelFunc
	log     *slog.Logger
	limiter *rate.Limiter
	user    string // JWT subject; "" in no-auth mode
	perms   *perms // what the token allows; nil: everything (reader goroutine only)
	// expiry closes the connection when its token expires (watchExpiry);
	// reader goroutine only.
	expiry *time.Timer

	opened        time.Time                // when the upgrade completed
	readErr       error                    // why the reader stopped (reader only, then serveConn)
	lastSeen      atomic.Int64             // unix nanos of the last frame read
	policyClosing atomic.Bool              // closing for a policy (idle, token expired): closePolicy
	pending       atomic.Int64             // replies waiting for durability
	subs          map[string]*counterEntry // reader goroutine only
	bsubs         map[string]*boundedEntry // reader goroutine only

	// view is the node id of a connection that negotiated compact views
	// (nil: full states). Set once by the reader before any subscription.
	view atomic.Pointer[string]

	// writeFrame, if set, replaces the socket write (in-process
	// benchmarks without sockets).
	writeFrame   func(b []byte) error
	writeTimeout time.Duration // bound of one write to the socket (writeTimeout; tests shorten it)
	stuck        atomic.Bool   // a write did not end within writeTimeout

	mu       sync.Mutex
	waits    map[string]struct{}        // request ids of LOCK_REQUESTs with wait > 0 not answered yet (metrics)
	out      [][]byte                   // encoded frames for the writer
	outBytes int                        // bytes in out
	slow     bool                       // closed as a slow consumer
	updates  map[string]crdt.State      // coalesced COUNTER_UPDATE deltas
	order    []string                   // names in updates, first-in order
	views    map[*counterEntry]struct{} // vorder as a set, once it is long (addViewLocked)
	vorder   []*counterEntry            // entries of views, first-in order
	space    chan struct{}
	wrote    chan struct{} // closed when the writer is done for good
	closing  bool          // close after flushing out
	running  bool          // a round is queued in the writer pool or a writer goroutine runs
	ended    bool          // wrote is closed
	hold     bool          // the writer starts only at startWriter (tests)
	pooled   bool          // rounds are written by the server's writer pool

	// batching is set once the acknowledgement of compact views is queued:
	// from out[batchFrom] on (batchFrom resets to 0 at every take), frames
	// may share a server→client BATCH. The acknowledgement itself and what
	// was queued before it go one frame each. Under mu.
	batching  bool
	batchFrom int
}

func newConn(s *Server, wc *wsConn, id uint64) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		s:       s,
		id:      id,
		ws:      wc,
		ctx:     ctx,
		cancel:  cancel,
		log:     s.log.With("conn", id),
		limiter: rate.NewLimiter(rate.Limit(s.cfg.RateLimit), s.cfg.RateBurst),
		subs:    make(map[string]*counterEntry),
		bsubs:   make(map[string]*boundedEntry),
		updates: make(map[string]crdt.State),
		space:   make(chan struct{}, 1),
		wrote:   make(chan struct{}),

		writeTimeout: writeTimeout,
		pooled:       wc != nil,
	}
	c.opened = time.Now()
	c.lastSeen.Store(c.opened.UnixNano())
	context.AfterFunc(ctx, func() {
		if wc != nil { // a blocked read or write ends now
			wc.nc.SetDeadline(time.Now())
		}
		c.signal() // the writer ends and closes wrote
	})
	return c
}

// send queues m for the writer. It never blocks: callers other than the
// reader are bounded elsewhere, and the reader waits for space before it
// reads the next frame.
func (c *conn) send(m wire.Message) {
	c.s.metrics.sent(c.id, m)
	c.logSent(m)
	b, err := wire.Encode(m)
	if err != nil {
		c.log.Error("encode", "type", m.Type(), "err", err)
		return
	}
	if len(b) > wire.MaxFrameSize {
		b = c.tooLarge(m.Type(), counterName(m), len(b))
	}
	c.mu.Lock()
	if len(c.waits) > 0 {
		c.answeredLocked(m)
	}
	c.out = append(c.out, b)
	c.outBytes += len(b)
	if !c.batching && compactAck(m) {
		c.batching, c.batchFrom = true, len(c.out)
	}
	slow := c.outBytes > 2*c.s.cfg.MaxOutbox && !c.slow
	if slow {
		c.slow = true
	}
	n := c.outBytes
	c.mu.Unlock()
	if slow {
		c.slowConsumer(n)
		return
	}
	c.signalReply()
}

// waiting counts a LOCK_REQUEST that may wait in a queue until it is
// answered (topgun_lock_waiting).
func (c *conn) waiting(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.waits[id]; dup {
		return
	}
	if c.waits == nil {
		c.waits = map[string]struct{}{}
	}
	c.waits[id] = struct{}{}
	c.s.metrics.lockWaiting.Inc()
}

// answeredLocked stops counting the request m answers. c.mu held.
func (c *conn) answeredLocked(m wire.Message) {
	var id string
	switch m := m.(type) {
	case wire.LockGranted:
		id = m.RequestID
	case wire.LockReleased:
		id = m.RequestID
	default:
		return
	}
	if _, ok := c.waits[id]; ok {
		delete(c.waits, id)
		c.s.metrics.lockWaiting.Dec()
	}
}

// forgetWaits stops counting the requests of a connection that ended
// (the lock service dropped them without an answer).
func (c *conn) forgetWaits() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.metrics.lockWaiting.Sub(float64(len(c.waits)))
	c.waits = nil
}

// logSent logs, at debug level, what m tells the client about its locks
// and the frames the server refused.
func (c *conn) logSent(m wire.Message) {
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	switch m := m.(type) {
	case wire.Error:
		c.log.Debug("frame refused", "code", m.Code, "message", m.Message)
	case wire.LockGranted:
		c.log.Debug("lock granted", "name", m.Name, "token", m.FencingToken, "ttl_ms", m.TTL, "request", m.RequestID)
	case wire.LockReleased:
		if m.Success {
			c.log.Debug("lock released", "name", m.Name, "request", m.RequestID)
		} else {
			c.log.Debug("lock denied", "name", m.Name, "reason", m.Reason, "request", m.RequestID)
		}
	case wire.LockLost:
		c.log.Debug("lock lost", "name", m.Name, "token", m.FencingToken, "reason", m.Reason)
	}
}

// slowConsumer closes a connection whose peer does not read what the
// server must send it (the reader stops at MaxOutbox; this is for what
// other clients' writes and lock events queue for it).
func (c *conn) slowConsumer(queued int) {
	c.log.Warn("closing slow consumer", "queued_bytes", queued, "max_outbox", c.s.cfg.MaxOutbox)
	if c.ws == nil {
		c.cancel()
		return
	}
	go func() {
		_ = c.ws.Close(ws.StatusPolicyViolation,
			fmt.Sprintf("slow consumer: %d bytes queued, over twice --max-outbox", queued))
		c.cancel()
	}()
}

// tooLarge logs a frame over the protocol's limit, which the peer would
// refuse, and returns the ERROR frame sent instead.
func (c *conn) tooLarge(typ, name string, size int) []byte {
	c.log.Warn("frame over the 2 MiB limit not sent", "type", typ, "name", name, "bytes", size)
	b, _ := wire.Encode(wire.Error{Code: 413, Message: fmt.Sprintf(
		"%s for %q is %d bytes, over the 2 MiB frame limit: the counter has too many writers for a full "+
			"state; clients that negotiate compact views (views: \"compact\") get it in one small frame",
		typ, name, size)})
	return b
}

// compactAck reports whether m acknowledges compact views: the client
// reads server→client BATCH frames from the next frame on.
func compactAck(m wire.Message) bool {
	switch m := m.(type) {
	case wire.AuthAck:
		return m.Views == wire.ViewsCompact
	case wire.DeviceAck:
		return m.Views == wire.ViewsCompact
	}
	return false
}

// counterName is the counter a message is about, or "".
func counterName(m wire.Message) string {
	switch m := m.(type) {
	case wire.CounterResponse:
		return m.Name
	case wire.CounterUpdate:
		return m.Name
	}
	return ""
}

// viewNode returns the node id of a connection that negotiated compact
// views.
func (c *conn) viewNode() (string, bool) {
	if p := c.view.Load(); p != nil {
		return *p, true
	}
	return "", false
}

// negotiate answers an AUTH or DEVICE_HELLO's request for compact views:
// it turns them on when the node id is valid and no counter was
// subscribed yet (a connection's views never change kind), and reports
// whether they are on.
func (c *conn) negotiate(views, node string) bool {
	if views != wire.ViewsCompact {
		_, on := c.viewNode()
		return on
	}
	if _, on := c.viewNode(); on {
		return true
	}
	if err := wire.ValidNode(node); err != nil {
		c.sendError(400, "compact views need a valid nodeId: %v", err)
		return false
	}
	if len(c.subs) > 0 {
		return false
	}
	c.view.Store(&node)
	return true
}

// ackViews is the views field of an AUTH_ACK or DEVICE_ACK.
func ackViews(on bool) string {
	if on {
		return wire.ViewsCompact
	}
	return ""
}

// signal makes the writer run: it starts one unless one is running (it
// takes what is queued before it exits) or the writing is over.
func (c *conn) signal() { c.wake(false) }

// signalReply is signal for a reply, an error or a lock event queued in
// out: the connection's round goes ahead of fan-out rounds in the writer
// pool, so a client's requests are answered promptly while the server
// delivers other clients' writes to thousands.
func (c *conn) signalReply() { c.wake(true) }

func (c *conn) wake(reply bool) {
	c.mu.Lock()
	start := !c.running && !c.ended && !c.hold
	c.running = c.running || start
	c.mu.Unlock()
	if start {
		c.startRound(reply)
	}
}

// startRound has a writer take what is queued: one of the server's
// writer pool (writerPool) for a connection on a socket, else a goroutine
// of its own. c.running is set.
func (c *conn) startRound(reply bool) {
	if c.pooled {
		c.s.writers.push(c, reply)
		return
	}
	go c.writeLoop(false)
}

// startWriter lets the writer run after newConn's caller held it (tests
// that queue before any write).
func (c *conn) startWriter() {
	c.mu.Lock()
	c.hold = false
	c.mu.Unlock()
	c.signal()
}

// sendError queues an ERROR frame.
func (c *conn) sendError(code uint32, format string, args ...any) {
	c.send(wire.Error{Code: code, Message: fmt.Sprintf(format, args...)})
}

// pushUpdate tells c that e changed by delta: a connection with compact
// views gets e's newest durable view when its writer runs; others get
// delta merged into the pending COUNTER_UPDATE for the counter. A slow
// subscriber thus holds at most one pending update per counter, however
// many changes it has not read yet: nothing is dropped and memory stays
// bounded by what it subscribed to.
func (c *conn) pushUpdate(e *counterEntry, delta crdt.State) {
	name := e.name
	if _, ok := c.viewNode(); ok {
		c.mu.Lock()
		added := c.addViewLocked(e)
		c.mu.Unlock()
		if !added {
			c.s.metrics.fanoutCoalesced.add(c.id, 1)
		}
		c.signal()
		return
	}
	c.mu.Lock()
	cur, ok := c.updates[name]
	if ok {
		c.s.metrics.fanoutCoalesced.add(c.id, 1)
	} else {
		cur = crdt.State{P: make(map[string]int64, len(delta.P)), N: make(map[string]int64, len(delta.N))}
		c.updates[name] = cur
		c.order = append(c.order, name)
	}
	cur.Raise(delta)
	c.mu.Unlock()
	c.signal()
}

// viewSet is the length of vorder from which addViewLocked keeps it as a
// set too: below it a scan is cheaper than a map (fan-out touches one or
// a few counters per connection and round).
const viewSet = 16

// addViewLocked queues e's view once; it reports false when it was
// queued already.
func (c *conn) addViewLocked(e *counterEntry) bool {
	if c.views != nil {
		if _, dup := c.views[e]; dup {
			return false
		}
		c.views[e] = struct{}{}
	} else if slices.Contains(c.vorder, e) {
		return false
	}
	c.vorder = append(c.vorder, e)
	if c.views == nil && len(c.vorder) >= viewSet {
		c.views = make(map[*counterEntry]struct{}, 2*viewSet)
		for _, x := range c.vorder {
			c.views[x] = struct{}{}
		}
	}
	return true
}

// dropPending forgets the updates of e queued for c (it unsubscribed).
func (c *conn) dropPending(e *counterEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.vorder, e); i >= 0 {
		delete(c.views, e)
		c.vorder = slices.Delete(c.vorder, i, i+1)
	}
	if _, ok := c.updates[e.name]; ok {
		delete(c.updates, e.name)
		for i, x := range c.order {
			if x == e.name {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	}
}

// signalSpace wakes a reader waiting in waitSpace.
func (c *conn) signalSpace() {
	select {
	case c.space <- struct{}{}:
	default:
	}
}

// waitSpace blocks the reader while too many replies are queued or wait
// for durability.
func (c *conn) waitSpace() error {
	for {
		c.mu.Lock()
		n, bytes := len(c.out), c.outBytes
		c.mu.Unlock()
		if n < maxQueued && bytes < c.s.cfg.MaxOutbox && c.pending.Load() < maxPending {
			return nil
		}
		select {
		case <-c.space:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
}

// writeScratch holds what one writer reuses from round to round.
type writeScratch struct {
	frames [][]byte
	out    [][]byte // what goes to the socket
	ups    []wire.CounterUpdate
	views  []*counterEntry
	buf    []byte // BATCH frames are built here
}

// collect takes everything queued for c and returns it as the frames of
// one socket write: for a connection with compact views in as few frames
// as the limits allow (server→client BATCH, wire.ServerBatches); other
// connections (TopGun's clients, which do not read BATCH) get one frame
// per message. ok is false when there was nothing to take: the writing
// is then idle (c.running false) or over (wrote closed).
func (c *conn) collect(w *writeScratch) (out [][]byte, ok bool) {
	c.mu.Lock()
	queued := c.queuedLocked()
	if c.ctx.Err() != nil || (c.closing && !queued) {
		c.endLocked()
		c.mu.Unlock()
		return nil, false
	}
	if !queued {
		c.running = false
		c.mu.Unlock()
		return nil, false
	}
	frames := append(w.frames[:0], c.out...)
	plain := len(frames) // frames that go one each
	if c.batching {
		plain = min(c.batchFrom, plain)
		c.batchFrom = 0
	}
	clear(c.out)
	c.out = c.out[:0]
	c.outBytes = 0
	ups := w.ups[:0]
	for _, name := range c.order {
		ups = append(ups, wire.CounterUpdate{Name: name, State: c.updates[name]})
		delete(c.updates, name)
	}
	c.order = c.order[:0]
	views := append(w.views[:0], c.vorder...)
	clear(c.vorder)
	c.vorder = c.vorder[:0]
	if c.views != nil {
		clear(c.views)
	}
	batching := c.batching
	c.mu.Unlock()
	c.signalSpace()
	c.s.metrics.updatesWritten(c.id, len(ups)+len(views))
	for _, u := range ups {
		b, err := wire.Encode(u)
		if err != nil {
			c.log.Error("encode update", "err", err)
			continue
		}
		if len(b) > wire.MaxFrameSize {
			b = c.tooLarge(u.Type(), u.Name, len(b))
		}
		frames = append(frames, b)
	}
	clear(ups)
	if node, ok := c.viewNode(); ok {
		for _, e := range views {
			e.mu.Lock()
			b, err := e.encodedUpdateLocked(node)
			e.mu.Unlock()
			if err != nil {
				c.log.Error("encode view", "name", e.name, "err", err)
				continue
			}
			frames = append(frames, b)
		}
	}
	clear(views)
	out = append(w.out[:0], frames[:plain]...)
	if batching {
		w.buf, _ = wire.ServerBatches(w.buf[:0], frames[plain:], func(f []byte) error {
			out = append(out, f)
			return nil
		})
	} else {
		out = append(out, frames[plain:]...)
	}
	clear(frames)
	w.frames, w.ups, w.views, w.out = frames[:0], ups[:0], views[:0], out
	return out, true
}

// queuedLocked reports whether anything waits to be written to c. c.mu
// held.
func (c *conn) queuedLocked() bool {
	return len(c.out) > 0 || len(c.order) > 0 || len(c.vorder) > 0
}

// reset forgets a round's frames; what a burst needed is not kept.
func (w *writeScratch) reset() {
	clear(w.out)
	w.out = w.out[:0]
	if cap(w.buf) > 64<<10 || cap(w.frames) > 1024 {
		*w = writeScratch{}
	}
}

// writeLoop writes what is queued until nothing is, then exits (signal
// starts a writer again); at the end of the connection, or once closing
// and everything is written, it closes wrote. Each round is one socket
// write (wsConn.WriteFrames), bounded by c.writeTimeout. rest: first
// write what a pool round left unwritten (wsConn.TryWrite).
func (c *conn) writeLoop(rest bool) {
	var w writeScratch
	if rest {
		if err := c.flush(nil); err != nil {
			c.writeFailed(err)
			return
		}
	}
	for {
		out, ok := c.collect(&w)
		if !ok {
			return
		}
		err := c.flush(out)
		w.reset()
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

// poolRound is one round of a pool writer for c: what is queued goes out
// in one non-blocking write; c goes back to the pool's tail while more is
// queued (every connection gets a round in turn), and to a goroutine of
// its own when the socket cannot take it all (a peer reading slowly must
// not hold up a pool writer).
func (c *conn) poolRound(w *writeScratch) {
	out, ok := c.collect(w)
	if !ok {
		return
	}
	var done bool
	var err error
	if c.writeFrame != nil {
		done, err = true, c.flush(out)
	} else {
		done, err = c.ws.TryWrite(out)
	}
	w.reset()
	switch {
	case err != nil:
		c.writeFailed(err)
	case !done:
		c.s.slowRounds.Add(1)
		go c.writeLoop(true)
	default:
		c.mu.Lock()
		more := c.queuedLocked() || c.closing || c.ctx.Err() != nil
		c.running = more
		c.mu.Unlock()
		if more {
			c.startRound(false)
		}
	}
}

// writeFailed ends the connection after a failed write.
func (c *conn) writeFailed(err error) {
	if c.ctx.Err() == nil {
		c.log.Info("write failed; closing (a peer that does not read for the write timeout is a slow consumer)",
			"err", err, "timeout", c.writeTimeout)
	}
	c.cancel()
	c.mu.Lock()
	c.endLocked()
	c.mu.Unlock()
}

// endLocked marks the writing over and closes wrote.
func (c *conn) endLocked() {
	c.running = false
	if !c.ended {
		c.ended = true
		close(c.wrote)
	}
}

// flush writes frames, one WebSocket message each, in one socket write
// bounded by c.writeTimeout (a peer that does not read for that long is
// disconnected) and by the end of the connection.
func (c *conn) flush(frames [][]byte) error {
	if c.writeFrame != nil {
		for _, b := range frames {
			if err := c.writeFrame(b); err != nil {
				return err
			}
		}
		return nil
	}
	err := c.ws.WriteFrames(c.ctx, frames, c.writeTimeout)
	if errors.Is(err, os.ErrDeadlineExceeded) && c.ctx.Err() == nil {
		c.stuck.Store(true)
		return fmt.Errorf("write blocked for %v: %w", c.writeTimeout, err)
	}
	return err
}

// closeAfterFlush makes the writer exit once everything queued is written;
// the reader then closes the socket.
func (c *conn) closeAfterFlush() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.signal()
}

// read returns the next binary frame. Text frames are answered with an
// ERROR and skipped.
func (c *conn) read() ([]byte, error) {
	for {
		op, b, err := c.ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		c.lastSeen.Store(time.Now().UnixNano())
		if op == ws.OpBinary {
			return b, nil
		}
		c.sendError(400, "text frames are not part of the protocol: send one MessagePack map per binary frame")
	}
}

var errAuthFailed = errors.New("authentication failed")

// run is the reader: the auth phase, then frames until the socket ends.
func (c *conn) run() {
	if !c.s.cfg.NoAuth {
		if err := c.authenticate(); err != nil {
			c.readErr = err
			return
		}
	}
	for {
		if err := c.waitSpace(); err != nil {
			c.readErr = err
			return
		}
		b, err := c.read()
		if err != nil {
			c.readErr = err
			return
		}
		c.handleFrame(b, true)
	}
}

// authenticate runs the JWT handshake (docs/protocol.md, "JWT mode") with a deadline from
// connect. Frames other than AUTH get ERROR 401 instead of silence; no
// AUTH in time gets a close frame 1008 that says so.
func (c *conn) authenticate() error {
	c.send(wire.AuthRequired{})
	c.ws.nc.SetReadDeadline(time.Now().Add(c.s.cfg.AuthTimeout))
	for {
		b, err := c.read()
		if errors.Is(err, os.ErrDeadlineExceeded) && c.ctx.Err() == nil {
			_ = c.ws.Close(ws.StatusPolicyViolation, fmt.Sprintf("authentication timeout: no AUTH within %v", c.s.cfg.AuthTimeout))
			return err
		}
		if err != nil {
			return err
		}
		m, err := wire.Decode(b)
		if err != nil {
			c.s.metrics.inInvalid.Inc()
			c.sendError(400, "%v", err)
			continue
		}
		c.s.metrics.received(c.id, m.Type())
		a, ok := m.(wire.Auth)
		if !ok {
			c.sendError(401, "authenticate first: send AUTH with a token (got %s)", m.Type())
			continue
		}
		id, err := c.s.verifier.verify(a.Token)
		if err != nil {
			c.send(wire.AuthFail{Error: "Authentication failed: " + authReason(err), Code: 401})
			c.closeAfterFlush()
			<-c.wrote
			return fmt.Errorf("%w: %v", errAuthFailed, err)
		}
		c.ws.nc.SetReadDeadline(time.Time{})
		c.user = id.user
		c.log = c.log.With("user", id.user)
		c.perms = id.perms
		c.watchExpiry(id.end)
		c.s.metrics.connsAuth.Dec()
		c.s.metrics.connsOpen.Inc()
		c.log.Debug("authenticated")
		c.send(wire.AuthAck{UserID: id.user, Views: ackViews(c.negotiate(a.Views, a.NodeID))})
		return nil
	}
}

// handleFrame dispatches one frame. top is false for BATCH items.
func (c *conn) handleFrame(b []byte, top bool) {
	if !c.limiter.Allow() {
		// A lock request still gets its own answer, so the client does not
		// wait for a reply that never comes.
		if m, err := wire.Decode(b); err == nil {
			if r, ok := m.(wire.LockRequest); ok {
				c.send(deny(r, wire.ReasonRateLimited))
				return
			}
		}
		c.sendError(429, "rate limit exceeded: %.0f frames/s", c.s.cfg.RateLimit)
		return
	}
	m, err := wire.Decode(b)
	if err != nil {
		c.s.metrics.inInvalid.Inc()
		c.decodeFailed(err)
		return
	}
	c.s.metrics.received(c.id, m.Type())
	switch m := m.(type) {
	case wire.Ping:
		c.send(wire.Pong{Timestamp: m.Timestamp, ServerTime: uint64(time.Now().UnixMilli())})
	case wire.Auth:
		c.reauth(m)
	case wire.DeviceHello:
		c.send(wire.DeviceAck{Views: ackViews(c.negotiate(m.Views, m.NodeID))})
	case wire.CounterRequest:
		if c.forbidden(actRead, m.Type(), m.Name) {
			return
		}
		c.s.counters.request(c, m.Name)
	case wire.CounterSync:
		if c.forbidden(actWrite, m.Type(), m.Name) {
			return
		}
		c.s.counters.sync(c, m)
	case wire.CounterUnsubscribe:
		c.s.counters.unsubscribe(c, m.Name) // always allowed: it only narrows
	case wire.BCounterRequest:
		if c.forbidden(actRead, m.Type(), m.Name) {
			return
		}
		c.s.bounded.request(c, m)
	case wire.BCounterSync:
		if c.forbidden(actWrite, m.Type(), m.Name) {
			return
		}
		c.s.bounded.sync(c, m)
	case wire.BCounterRights:
		if c.forbidden(actWrite, m.Type(), m.Name) {
			return
		}
		c.s.bounded.rights(c, m)
	case wire.BCounterUnsubscribe:
		c.s.bounded.unsubscribe(c, m.Name)
	case wire.LockRequest:
		if !c.allowed(actLock, m.Name) {
			c.send(deny(m, wire.ReasonForbidden))
			return
		}
		if m.Wait > 0 {
			c.waiting(m.RequestID)
		}
		c.s.acquireLock(c, m)
	case wire.LockRelease:
		if !c.allowed(actLock, m.Name) {
			c.send(wire.LockReleased{RequestID: m.RequestID, Name: m.Name, Reason: wire.ReasonForbidden})
			return
		}
		c.s.releaseLock(c, m)
	case wire.Batch:
		if !top {
			c.sendError(400, "BATCH inside BATCH is not allowed")
			return
		}
		items, err := wire.SplitBatch(m.Data)
		if err != nil {
			c.sendError(413, "%v", err)
			return
		}
		if len(items) == 0 {
			c.sendError(400, "BATCH carries no complete item: each item is a 4-byte big-endian length and that many bytes of a frame")
			return
		}
		for _, it := range items {
			c.handleFrame(it, false)
		}
	default:
		c.sendError(400, "%s is a server-to-client message", m.Type())
	}
}

// reauth answers AUTH after the handshake: in no-auth mode with AUTH_ACK,
// in JWT mode with AUTH_ACK when the token is valid for the same user. An
// accepted token replaces the connection's permissions and expiry;
// subscriptions the new permissions do not allow end (ERROR 403 each).
func (c *conn) reauth(a wire.Auth) {
	if c.s.cfg.NoAuth {
		c.send(wire.AuthAck{Views: ackViews(c.negotiate(a.Views, a.NodeID))})
		return
	}
	id, err := c.s.verifier.verify(a.Token)
	switch {
	case err != nil:
		c.send(wire.AuthFail{Error: "Authentication failed: " + authReason(err), Code: 401})
	case id.user != c.user:
		c.sendError(400, "this connection is authenticated as another user; reconnect to switch users")
	default:
		c.perms = id.perms
		c.watchExpiry(id.end)
		c.send(wire.AuthAck{UserID: id.user, Views: ackViews(c.negotiate(a.Views, a.NodeID))})
		var dropped []string
		for name := range c.subs {
			if !c.perms.allows(actRead, name) {
				dropped = append(dropped, name)
			}
		}
		slices.Sort(dropped)
		for _, name := range dropped {
			c.s.counters.unsubscribe(c, name)
			c.sendError(403, "COUNTER_REQUEST %q: subscription ended: the new token does not allow reading this counter (claim %s.read)",
				name, claimName)
		}
	}
}

// allowed reports whether the connection's token allows a on name. An
// invalid name is left to the service, which answers it as invalid.
func (c *conn) allowed(a action, name string) bool {
	return c.perms.allows(a, name) || wire.ValidName(name) != nil
}

// forbidden answers a counter frame the token does not allow with ERROR
// 403 and reports whether it did.
func (c *conn) forbidden(a action, typ, name string) bool {
	if c.allowed(a, name) {
		return false
	}
	c.log.Debug("forbidden", "type", typ, "name", name, "action", a.String())
	c.sendError(403, "%s %q: forbidden: the token does not allow %s on this counter (claim %s.%s)",
		typ, name, actionVerb(a), claimName, a.String())
	return true
}

func actionVerb(a action) string {
	if a == actWrite {
		return "writes"
	}
	return "reads"
}

// watchExpiry (re)arms the close of the connection at end, when its token
// stops being accepted. Reader goroutine only.
func (c *conn) watchExpiry(end time.Time) {
	if c.expiry != nil {
		c.expiry.Stop()
	}
	log := c.log // c.log is the reader's
	c.expiry = time.AfterFunc(time.Until(end), func() {
		log.Info("closing connection: token expired")
		c.closePolicy("token expired")
	})
}

// stopExpiry disarms watchExpiry once the connection has ended.
func (c *conn) stopExpiry() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
}

// closePolicy ends the connection for a policy (idle, token expired): its
// locks are freed at once, so the limit holds for them whatever the peer
// does, and then the close handshake starts (1008 with reason); the
// reader waits for the peer's answer, bounded by closeWait. A close
// handshake, not a cancelled read, which drops the TCP connection and
// shows as 1006 to the client. Only the first call does anything.
func (c *conn) closePolicy(reason string) {
	if !c.policyClosing.CompareAndSwap(false, true) {
		return
	}
	s := c.s
	s.mu.Lock()
	if s.closed { // Shutdown closes every connection anyway
		s.mu.Unlock()
		return
	}
	s.wg.Add(1) // the lock service must not close under Disconnect
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.locks.Disconnect(c)
		_ = c.ws.Close(ws.StatusPolicyViolation, reason)
	}()
}

// decodeFailed answers a frame that could not be decoded: always ERROR
// 400, and for lock frames whose requestId could be read also the denial
// the client is waiting for.
func (c *conn) decodeFailed(err error) {
	c.sendError(400, "%v", err)
	de, ok := wire.AsDecodeError(err)
	if errors.Is(err, wire.ErrUnknownType) {
		typ := ""
		if ok {
			typ = de.Type
		}
		c.log.Debug("unknown message type", "type", typ)
	}
	if !ok || de.RequestID == "" {
		return
	}
	switch de.Type {
	case wire.TypeLockRequest:
		// A name that is malformed or missing (de.Name holds the name
		// whenever one could be read) is the name's fault, whatever else
		// the frame gets wrong.
		reason := wire.ReasonInvalidTTL
		if de.Field == "payload.name" || de.Name == "" {
			reason = wire.ReasonInvalidName
		}
		c.send(wire.LockReleased{RequestID: de.RequestID, Name: de.Name, Reason: reason})
	case wire.TypeLockRelease:
		c.send(wire.LockReleased{RequestID: de.RequestID, Name: de.Name, Reason: wire.ReasonNotHolder})
	}
}
