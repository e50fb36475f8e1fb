package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

// outQueue is the per-connection send buffer, in frames.
const outQueue = 256

// maxBatchDepth bounds BATCH-in-BATCH recursion from the server.
const maxBatchDepth = 4

// connection is one transport connection and what depends on it: pending
// lock requests and counter subscriptions.
type connection struct {
	c      *Client
	t      transport.Conn
	ctx    context.Context // cancelled by kill
	cancel context.CancelFunc
	out    chan []byte
	hs     chan wire.Message // messages seen during the handshake
	hsDone atomic.Bool
	views  atomic.Bool  // the server acknowledged compact views (and unsubscription)
	pong   atomic.Int64 // unix nanos of the last PONG (or of ready)
	wg     sync.WaitGroup

	mu         sync.Mutex
	dead       bool
	err        error
	pending    map[string]*pendingReq
	subscribed map[*Counter]bool
	grants     map[string]chan wire.BCounterGrant // RequestRights waiting, by requestId
}

func newConnection(c *Client, t transport.Conn) *connection {
	cn := &connection{
		c:          c,
		t:          t,
		out:        make(chan []byte, outQueue),
		hs:         make(chan wire.Message, 16),
		pending:    make(map[string]*pendingReq),
		subscribed: make(map[*Counter]bool),
		grants:     make(map[string]chan wire.BCounterGrant),
	}
	cn.ctx, cn.cancel = context.WithCancel(c.ctx)
	cn.wg.Add(2)
	go cn.reader()
	go cn.writer()
	return cn
}

// kill marks the connection dead with err (the first error wins).
func (cn *connection) kill(err error) {
	cn.mu.Lock()
	if !cn.dead {
		cn.dead = true
		cn.err = err
	}
	cn.mu.Unlock()
	cn.cancel()
}

// cause returns why the connection died.
func (cn *connection) cause() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err == nil {
		return ErrDisconnected
	}
	return cn.err
}

func (cn *connection) isDead() bool {
	select {
	case <-cn.ctx.Done():
		return true
	default:
		return false
	}
}

func (cn *connection) reader() {
	defer cn.wg.Done()
	for {
		b, err := cn.t.Read(cn.ctx)
		if err != nil {
			cn.kill(fmt.Errorf("%w: %w", ErrDisconnected, err))
			return
		}
		m, err := wire.Decode(b)
		if err != nil {
			cn.c.log.Warn("client: dropping undecodable frame", "err", err)
			continue
		}
		cn.dispatch(m, 0)
	}
}

func (cn *connection) writer() {
	defer cn.wg.Done()
	for {
		select {
		case <-cn.ctx.Done():
			return
		case b := <-cn.out:
			ctx, cancel := context.WithTimeout(cn.ctx, cn.c.opts.PingTimeout)
			err := cn.t.Write(ctx, b)
			cancel()
			if err != nil {
				cn.kill(fmt.Errorf("%w: %w", ErrDisconnected, err))
				return
			}
		}
	}
}

// send queues m. It fails with ErrDisconnected once the connection is
// dead, or with ctx's error.
func (cn *connection) send(ctx context.Context, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		cn.c.log.Error("client: encode", "type", m.Type(), "err", err)
		return err
	}
	if cn.isDead() {
		return ErrDisconnected
	}
	select {
	case cn.out <- b:
		return nil
	case <-cn.ctx.Done():
		return ErrDisconnected
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unsubscribe ends cn's subscription to cnt, if the server supports it
// (it acknowledged compact views); others keep sending updates.
func (cn *connection) unsubscribe(cnt *Counter) {
	if !cn.views.Load() {
		return
	}
	cn.mu.Lock()
	if !cn.subscribed[cnt] || cn.dead {
		cn.mu.Unlock()
		return
	}
	delete(cn.subscribed, cnt)
	cn.mu.Unlock()
	_ = cn.send(cn.c.ctx, wire.CounterUnsubscribe{Name: cnt.name})
}

// subscribe sends the subscribing frame of cnt unless cn already did; it
// reports whether it sent one.
func (cn *connection) subscribe(cnt *Counter) bool {
	cn.mu.Lock()
	if cn.subscribed[cnt] || cn.dead {
		cn.mu.Unlock()
		return false
	}
	cn.subscribed[cnt] = true
	cn.mu.Unlock()
	_ = cn.send(cn.c.ctx, cnt.subscribeMessage(cn))
	return true
}

func (cn *connection) dispatch(m wire.Message, depth int) {
	if !cn.hsDone.Load() {
		select {
		case cn.hs <- m:
		default:
		}
	}
	c := cn.c
	switch m := m.(type) {
	case wire.Pong:
		cn.pong.Store(time.Now().UnixNano())
	case wire.Batch:
		if depth >= maxBatchDepth {
			c.log.Warn("client: BATCH nested too deeply")
			return
		}
		items, err := wire.SplitServerBatch(m.Data)
		if err != nil {
			c.log.Warn("client: dropping malformed BATCH", "err", err)
			return
		}
		for _, b := range items {
			im, err := wire.Decode(b)
			if err != nil {
				c.log.Warn("client: dropping undecodable BATCH item", "err", err)
				continue
			}
			cn.dispatch(im, depth+1)
		}
	case wire.Error:
		c.log.Warn("client: server error", "code", m.Code, "message", m.Message)
		if cn.hsDone.Load() {
			// During the handshake the handshake's outcome is reported
			// instead (a no-token client gets ERROR 401 for its
			// DEVICE_HELLO along with AUTH_REQUIRED).
			c.report(&ServerError{Code: int(m.Code), Message: m.Message})
		}
	case wire.CounterResponse:
		c.onCounterState(m.Name, m)
	case wire.CounterUpdate:
		c.onCounterState(m.Name, m)
	case wire.LockGranted:
		cn.onLockReply(m.RequestID, lockReply{granted: true, token: m.FencingToken, ttl: m.TTL})
	case wire.LockReleased:
		cn.onLockReply(m.RequestID, lockReply{success: m.Success, reason: m.Reason})
	case wire.LockLost:
		c.onLockLost(cn, m)
	case wire.BCounterUpdate:
		c.onBounded(m.Name, m.State)
	case wire.BCounterGrant:
		cn.onGrant(m)
	case wire.AuthRequired, wire.AuthAck, wire.AuthFail, wire.DeviceAck:
		// Handshake messages; later ones are ignored.
	default:
		c.log.Debug("client: ignoring message", "type", m.Type())
	}
}

func (c *Client) onCounterState(name string, m wire.Message) {
	c.mu.Lock()
	cnt := c.counters[name]
	c.mu.Unlock()
	if cnt == nil {
		c.log.Debug("client: state for unknown counter", "counter", name)
		return
	}
	switch m := m.(type) {
	case wire.CounterResponse:
		cnt.merge(m.State, true)
	case wire.CounterUpdate:
		cnt.merge(m.State, false)
	}
}

// run is the connection manager: connect, serve, back off, repeat.
func (c *Client) run() {
	defer c.wg.Done()
	attempt := 0
	for {
		for c.paused.Load() { // SetOnline(false): no connection until resumed
			c.setState(Offline, ErrOffline)
			select {
			case <-c.ctx.Done():
				return
			case <-c.retry:
			}
		}
		url := c.URL()
		wasReady, err := c.connectOnce(url)
		if c.ctx.Err() != nil {
			return
		}
		if wasReady {
			attempt = 0
		}
		c.log.Info("client: connection ended", "url", url, "err", err, "ready", wasReady)
		if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrAuthRequired) {
			// Retrying with the token the server refused would fail the
			// same way: wait for a new one (SetToken, RetryNow, or a
			// TokenFunc that returns another token).
			c.setState(Offline, err)
			c.report(err)
			c.holdForToken()
			attempt = 0
			continue
		}
		if !errors.Is(err, ErrOffline) {
			c.report(err)
		}
		// Every failed attempt and lost connection moves on to the next URL,
		// except going offline on purpose, which says nothing about the
		// server.
		switched := !errors.Is(err, ErrOffline) && c.nextURL()
		c.setState(Offline, err)
		var d time.Duration
		if wasReady && switched {
			// Failover: the next server is probably up, so try it at once
			// (with jitter), and keep the backoff for when it is not.
			d = c.failoverDelay()
			c.log.Info("client: failing over", "url", c.URL(), "delay", d)
		} else {
			d = c.backoff(attempt)
			if attempt < 32 {
				attempt++
			}
		}
		t := time.NewTimer(d)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.retry:
			t.Stop()
			attempt = 0
		}
	}
}

// holdForToken waits, after the server refused the last token or asked
// for one the client does not have, until there is reason to believe a new
// attempt could succeed: SetToken or RetryNow was called (SetOnline too),
// or, with a TokenFunc, it returns a token other than the refused one. It
// polls TokenFunc with the reconnect backoff; a token it returns is used by
// the next attempt, not fetched again.
func (c *Client) holdForToken() {
	c.authHeld.Store(true)
	defer c.authHeld.Store(false)
	c.mu.Lock()
	refused := c.usedToken
	c.mu.Unlock()
	for n := 0; ; n++ {
		var t *time.Timer
		var tick <-chan time.Time
		if c.opts.TokenFunc != nil {
			t = time.NewTimer(c.backoff(n))
			tick = t.C
		}
		select {
		case <-c.ctx.Done():
			stopTimer(t)
			return
		case <-c.retry:
			stopTimer(t)
			return
		case <-tick:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
		tok, err := c.opts.TokenFunc(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.report(fmt.Errorf("%w: %w", ErrToken, err))
			}
			continue
		}
		if tok != "" && tok != refused {
			c.mu.Lock()
			c.stashedToken, c.hasStash = tok, true
			c.mu.Unlock()
			return
		}
	}
}

// attemptToken returns the token for a connection attempt: the one
// holdForToken fetched, else TokenFunc's, else Options.Token or SetToken's.
func (c *Client) attemptToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.hasStash {
		tok := c.stashedToken
		c.stashedToken, c.hasStash = "", false
		c.usedToken = tok
		c.mu.Unlock()
		return tok, nil
	}
	tok := c.token
	c.mu.Unlock()
	if c.opts.TokenFunc != nil {
		var err error
		if tok, err = c.opts.TokenFunc(ctx); err != nil {
			return "", fmt.Errorf("%w: %w", ErrToken, err)
		}
	}
	c.mu.Lock()
	c.usedToken = tok
	c.mu.Unlock()
	return tok, nil
}

// SetOnline(false) takes the client offline on purpose: the connection is
// closed (its locks are freed by the server and lost here, pending lock
// requests fail) and no new one is dialled, while counters keep working,
// persisting and queueing their syncs. SetOnline(true) reconnects at once.
func (c *Client) SetOnline(online bool) {
	c.paused.Store(!online)
	if !online {
		if cn := c.cur.Load(); cn != nil {
			cn.kill(ErrOffline)
		}
	}
	c.RetryNow()
}

// Online reports whether the client may connect (see SetOnline).
func (c *Client) Online() bool { return !c.paused.Load() }

// RetryNow ends the current reconnect wait, if any, and resets the
// backoff: for when the network is known to be back (the browser's
// "online" event). A no-op while connected.
func (c *Client) RetryNow() {
	select {
	case c.retry <- struct{}{}:
	default:
	}
}

// connectOnce dials url, handshakes and serves one connection until it
// ends.
func (c *Client) connectOnce(url string) (wasReady bool, err error) {
	c.setState(Connecting, nil)
	hctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	defer cancel()
	t, err := c.opts.Dialer(hctx, url)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	cn := newConnection(c, t)
	defer c.teardown(cn)
	c.cur.Store(cn)
	defer c.cur.Store(nil)
	if c.paused.Load() { // SetOnline(false) while dialling
		return false, ErrOffline
	}
	c.setState(Authenticating, nil)
	if err := cn.handshake(hctx); err != nil {
		return false, err
	}
	cn.hsDone.Store(true)
	cancel()
	c.becomeReady(cn)
	return true, c.heartbeat(cn)
}

func (cn *connection) handshake(ctx context.Context) error {
	c := cn.c
	token, err := c.attemptToken(ctx)
	if err != nil {
		return err
	}
	fail := func() error {
		if cn.isDead() {
			if err := cn.refusal(token != ""); err != nil {
				return err
			}
			return cn.cause()
		}
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return ErrHandshakeTimeout
	}
	if token != "" {
		if err := cn.send(ctx, wire.Auth{Token: token, NodeID: c.nodeID, Views: wire.ViewsCompact}); err != nil {
			return fail()
		}
		for {
			select {
			case m := <-cn.hs:
				switch m := m.(type) {
				case wire.AuthAck:
					cn.views.Store(m.Views == wire.ViewsCompact)
					return nil
				case wire.AuthFail:
					return &AuthError{Message: m.Error}
				}
			case <-cn.ctx.Done():
				return fail()
			case <-ctx.Done():
				return fail()
			}
		}
	}
	if err := cn.send(ctx, wire.DeviceHello{NodeID: c.nodeID, Views: wire.ViewsCompact}); err != nil {
		return fail()
	}
	grace := time.NewTimer(c.opts.HelloTimeout)
	defer grace.Stop()
	for {
		select {
		case m := <-cn.hs:
			if _, ok := m.(wire.AuthRequired); ok {
				return ErrAuthRequired
			}
			if a, ok := m.(wire.DeviceAck); ok {
				cn.views.Store(a.Views == wire.ViewsCompact)
			}
			return nil // DEVICE_ACK or any other message
		case <-grace.C:
			return nil
		case <-cn.ctx.Done():
			return fail()
		case <-ctx.Done():
			return fail()
		}
	}
}

// refusal returns the refusal among the handshake frames the reader
// handed over before the connection ended: the server sends AUTH_FAIL (to
// a token) or AUTH_REQUIRED (to a DEVICE_HELLO) and then closes, so both
// can be waiting when the handshake looks, and the refusal is the outcome,
// not the close.
func (cn *connection) refusal(withToken bool) error {
	for {
		select {
		case m := <-cn.hs:
			switch m := m.(type) {
			case wire.AuthFail:
				if withToken {
					return &AuthError{Message: m.Error}
				}
			case wire.AuthRequired:
				if !withToken {
					return ErrAuthRequired
				}
			}
		default:
			return nil
		}
	}
}

// becomeReady publishes cn and resubscribes every counter on it: each
// sends its persisted own entries (COUNTER_SYNC) or COUNTER_REQUEST, so
// offline writes reach the server and handles created offline load the
// server's state.
func (c *Client) becomeReady(cn *connection) {
	cn.pong.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.conn = cn
	list := make([]*Counter, 0, len(c.counters))
	for _, cnt := range c.counters {
		list = append(list, cnt)
	}
	c.mu.Unlock()
	for _, cnt := range list {
		if cnt.idle() && cn.views.Load() {
			continue // released and delivered: nothing to resync
		}
		cn.subscribe(cnt)
	}
	if cn.views.Load() {
		c.resyncBounded(cn)
	}
	c.setState(Ready, nil)
}

// heartbeat pings until the connection dies or stays silent too long.
func (c *Client) heartbeat(cn *connection) error {
	tk := time.NewTicker(c.opts.PingInterval)
	defer tk.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return ErrClosed
		case <-cn.ctx.Done():
			return cn.cause()
		case now := <-tk.C:
			if now.Sub(time.Unix(0, cn.pong.Load())) > c.opts.PingTimeout {
				cn.kill(ErrHeartbeat)
				return ErrHeartbeat
			}
			_ = cn.send(c.ctx, wire.Ping{Timestamp: uint64(time.Now().UnixMilli())})
		}
	}
}

// teardown closes cn, waits for its goroutines, fails its pending lock
// requests and marks the locks it held lost.
func (c *Client) teardown(cn *connection) {
	cn.kill(ErrDisconnected)
	_ = cn.t.Close()
	cn.wg.Wait()
	c.mu.Lock()
	if c.conn == cn {
		c.conn = nil
	}
	locks := make([]*Lock, 0, len(c.locks))
	for _, l := range c.locks {
		locks = append(locks, l)
	}
	c.mu.Unlock()
	cn.failPending()
	for _, l := range locks {
		l.connLost(cn)
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
