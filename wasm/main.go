//go:build js && wasm

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall/js"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/idb"
	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store"
)

// handles are indices into these tables; the shim keeps them as numbers.
var (
	mu       sync.Mutex
	clients  []*clientHandle
	counters []*counterHandle
	locks    []*client.Lock
	inLocal  bool // a tg_counter_add call is running: its notification is local
	funcs    []js.Func
	undef    = js.Undefined()
)

type clientHandle struct {
	c    *client.Client
	idb  *idb.Store // nil with MemoryAdapter: the client owns its memory store
	stop []func()

	opts   client.Options // as created: the bounded client copies them
	online bool           // the last SetOnline

	bmu  sync.Mutex
	bc   *client.Client // runs the bounded counters (bounded.go), or nil
	bmem store.Store    // bc's memory store

	// The page's onError callbacks: the bounded client's errors reach
	// them too (its refusals are the page's errors as much as the main
	// client's).
	emu   sync.Mutex
	ecbs  map[int]js.Value
	nextE int
}

// reportBounded hands an error of the bounded client to every onError
// callback of the page.
func (h *clientHandle) reportBounded(err error) {
	h.emu.Lock()
	cbs := make([]js.Value, 0, len(h.ecbs))
	for _, cb := range h.ecbs {
		cbs = append(cbs, cb)
	}
	h.emu.Unlock()
	for _, cb := range cbs {
		cb.Invoke(errObject(err))
	}
}

// each calls f with the client and, once started, the bounded client.
func (h *clientHandle) each(f func(*client.Client)) {
	f(h.c)
	h.bmu.Lock()
	bc := h.bc
	h.bmu.Unlock()
	if bc != nil {
		f(bc)
	}
}

type counterHandle struct {
	cnt    *client.Counter
	notify js.Value // JS function called with the value after remote changes
	synced js.Value // JS function called with Synced() when it changes
}

func main() {
	goReady := js.Global().Get("__topgunGoReady")
	if goReady.Type() != js.TypeFunction {
		fmt.Fprintln(os.Stderr, "topgun: load this module through @topgun-go/client")
		return
	}
	api := js.Global().Get("Object").New()
	def := func(name string, fn func(args []js.Value) any) {
		f := apiFunc(name, fn)
		funcs = append(funcs, f)
		api.Set(name, f)
	}
	def("createClient", createClient)
	def("closeClient", closeClient)
	def("clientState", clientState)
	def("onState", onState)
	def("onError", onError)
	def("clientError", func(a []js.Value) any { return errValue(getClient(a[0]).c.Err()) })
	def("setToken", func(a []js.Value) any {
		getClient(a[0]).each(func(c *client.Client) { c.SetToken(a[1].String()) })
		return nil
	})
	def("nodeId", func(a []js.Value) any { return getClient(a[0]).c.NodeID() })
	def("clientUrl", func(a []js.Value) any { return getClient(a[0]).c.URL() })
	def("retryNow", func(a []js.Value) any { getClient(a[0]).each((*client.Client).RetryNow); return nil })
	def("setOnline", func(a []js.Value) any {
		h := getClient(a[0])
		h.bmu.Lock()
		h.online = a[1].Bool()
		h.bmu.Unlock()
		h.each(func(c *client.Client) { c.SetOnline(a[1].Bool()) })
		return nil
	})
	// kick is called once per tick after the tick's tg_counter_add calls:
	// goroutines woken by a //go:wasmexport call do not run until Go gets
	// control again, and a js.FuncOf call runs them before it returns, so
	// the worker issues the tick's IndexedDB transaction right here.
	def("kick", func(a []js.Value) any { getClient(a[0]).c.Kick(); return nil })
	def("counter", counter)
	def("counterNotify", counterNotify)
	def("flush", flush)
	def("counterLoaded", counterLoaded)
	// counterHold(h, false) releases a counter handle (Counter.Close);
	// counterHold(h, true) takes it back.
	def("counterHold", func(a []js.Value) any {
		mu.Lock()
		ch := getCounter(int32(a[0].Int()))
		mu.Unlock()
		if ch == nil {
			return errObject(fmt.Errorf("topgun: no counter handle %d", a[0].Int()))
		}
		if a[1].Bool() {
			ch.cnt.Acquire()
		} else {
			ch.cnt.Close()
		}
		return nil
	})
	def("boundedClient", boundedClient)
	def("bounded", boundedOpen)
	def("boundedNotify", boundedNotify)
	def("boundedRequest", boundedRequest)
	def("boundedFlush", boundedFlush)
	def("boundedClose", boundedClose)
	def("lock", lock)
	def("lockAcquire", lockAcquire)
	def("lockUnlock", lockUnlock)
	def("lockOnLost", lockOnLost)
	goReady.Invoke(api)
	select {} // serve calls until the page goes away
}

// apiFunc wraps fn for JS: a Go panic becomes an {error, code} result
// instead of ending the program.
func apiFunc(name string, fn func(args []js.Value) any) js.Func {
	return js.FuncOf(func(this js.Value, args []js.Value) (ret any) {
		defer func() {
			if r := recover(); r != nil {
				ret = errObject(fmt.Errorf("topgun: Go panic in %s: %v", name, r))
			}
		}()
		return fn(args)
	})
}

// errObject is a plain {error, code} result the shim turns into an
// exception or an error event (js.FuncOf cannot throw). The codes are the
// documented TopGunError codes (js/src/index.d.ts, docs/errors.md); some
// carry details: reason (the server's words on AUTH_FAIL), status (an
// ERROR frame's code), counters and kept (writes Close did not deliver).
func errObject(err error) js.Value {
	o := js.Global().Get("Object").New()
	o.Set("error", err.Error())
	code := "ERROR"
	var (
		authErr  *client.AuthError
		srvErr   *client.ServerError
		undelErr *client.UndeliveredError
	)
	switch {
	case errors.As(err, &undelErr):
		code = "UNDELIVERED"
		names := make([]any, len(undelErr.Counters))
		for i, n := range undelErr.Counters {
			names[i] = n
		}
		o.Set("counters", js.ValueOf(names))
		o.Set("kept", undelErr.Kept)
	case errors.As(err, &authErr):
		code = "AUTH_FAILED"
		o.Set("reason", authErr.Message)
	case errors.Is(err, client.ErrAuthRequired):
		code = "AUTH_REQUIRED"
	case errors.As(err, &srvErr):
		code = "SERVER_ERROR"
		o.Set("status", srvErr.Code)
		o.Set("reason", srvErr.Message)
	case errors.Is(err, client.ErrToken):
		code = "TOKEN_FAILED"
	case errors.Is(err, client.ErrConnect):
		code = "CONNECT_FAILED"
	case errors.Is(err, client.ErrHandshakeTimeout):
		code = "HANDSHAKE_TIMEOUT"
	case errors.Is(err, client.ErrHeartbeat):
		code = "HEARTBEAT_TIMEOUT"
	case errors.Is(err, idb.ErrUnavailable):
		code = "STORAGE_UNAVAILABLE"
	case errors.Is(err, client.ErrStorage):
		code = "STORAGE_FAILED"
	case errors.Is(err, client.ErrInvalidName):
		code = "INVALID_NAME"
	case errors.Is(err, client.ErrClosed):
		code = "CLOSED"
	case errors.Is(err, client.ErrNotReady):
		code = "NOT_READY"
	case errors.Is(err, client.ErrBoundMismatch):
		code = "BOUND_MISMATCH"
	case errors.Is(err, client.ErrNotStarted):
		code = "NOT_STARTED"
	case errors.Is(err, client.ErrInvalidTTL):
		code = "INVALID_TTL"
	case errors.Is(err, client.ErrNotHolder):
		code = "NOT_HOLDER"
	case errors.Is(err, client.ErrRateLimited):
		code = "RATE_LIMITED"
	case errors.Is(err, client.ErrUnavailable):
		code = "UNAVAILABLE"
	case errors.Is(err, client.ErrTooManyLocks):
		code = "TOO_MANY_LOCKS"
	case errors.Is(err, client.ErrForbidden): // a lock; a counter's 403 is SERVER_ERROR above
		code = "FORBIDDEN"
	case errors.Is(err, client.ErrOffline):
		code = "OFFLINE"
	case errors.Is(err, client.ErrDisconnected):
		code = "DISCONNECTED"
	case errors.Is(err, crdt.ErrOutOfRange):
		code = "OUT_OF_RANGE"
	}
	o.Set("code", code)
	return o
}

// errValue is errObject(err), or null for a nil error.
func errValue(err error) js.Value {
	if err == nil {
		return js.Null()
	}
	return errObject(err)
}

// promise runs f in a goroutine and settles a JS Promise with its result.
func promise(f func() (any, error)) js.Value {
	var executor js.Func
	executor = js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer executor.Release()
			v, err := func() (v any, err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("topgun: Go panic: %v", r)
					}
				}()
				return f()
			}()
			if err != nil {
				reject.Invoke(errObject(err))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(executor)
}

// await blocks the calling goroutine (never a js.FuncOf callback) until
// the JS promise p settles.
func await(ctx context.Context, p js.Value) (js.Value, error) {
	if p.Type() != js.TypeObject || p.Get("then").Type() != js.TypeFunction {
		return p, nil
	}
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var ok, fail js.Func
	ok = js.FuncOf(func(this js.Value, args []js.Value) any {
		ch <- result{v: args[0]}
		return nil
	})
	fail = js.FuncOf(func(this js.Value, args []js.Value) any {
		msg := "rejected"
		if len(args) > 0 && !args[0].IsUndefined() && !args[0].IsNull() {
			msg = args[0].Call("toString").String()
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer ok.Release()
	defer fail.Release()
	p.Call("then", ok, fail)
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return js.Value{}, ctx.Err()
	}
}

func getClient(v js.Value) *clientHandle {
	mu.Lock()
	defer mu.Unlock()
	i := v.Int()
	if i < 0 || i >= len(clients) || clients[i] == nil {
		panic(fmt.Sprintf("no client %d", i))
	}
	return clients[i]
}

func getCounter(h int32) *counterHandle {
	if h < 0 || int(h) >= len(counters) {
		return nil
	}
	return counters[h]
}

func getLock(v js.Value) *client.Lock {
	mu.Lock()
	defer mu.Unlock()
	i := v.Int()
	if i < 0 || i >= len(locks) {
		panic(fmt.Sprintf("no lock %d", i))
	}
	return locks[i]
}

// createClient(options) → Promise<id>. options: serverUrl (a string or an
// array of strings: Options.URLs), token, getToken (function returning a
// string or a Promise of one), nodeId, storage {kind: "memory"|"idb", name},
// syncDelayMs, closeTimeoutMs (Options.CloseTimeout; 0: do not wait),
// maxStoredCounters (Options.MaxStoredCounters; negative: never evict),
// debug.
func createClient(args []js.Value) any {
	o := args[0]
	str := func(k string) string {
		if v := o.Get(k); v.Type() == js.TypeString {
			return v.String()
		}
		return ""
	}
	urls, urlErr := stringList(o.Get("serverUrl"))
	opts := client.Options{URLs: urls, Token: str("token"), NodeID: str("nodeId")}
	if o.Get("debug").Truthy() {
		opts.Logger = consoleLogger{}
	}
	if d := o.Get("syncDelayMs"); d.Type() == js.TypeNumber {
		opts.SyncDelay = time.Duration(d.Float() * float64(time.Millisecond))
	}
	if d := o.Get("closeTimeoutMs"); d.Type() == js.TypeNumber {
		opts.CloseTimeout = time.Duration(d.Float() * float64(time.Millisecond))
		if d.Float() == 0 {
			opts.CloseTimeout = -1 // 0 in JS: do not wait
		}
	}
	if m := o.Get("maxStoredCounters"); m.Type() == js.TypeNumber {
		opts.MaxStoredCounters = m.Int()
	}
	if gt := o.Get("getToken"); gt.Type() == js.TypeFunction {
		opts.TokenFunc = func(ctx context.Context) (string, error) {
			v, err := await(ctx, gt.Invoke())
			if err != nil {
				return "", fmt.Errorf("getToken: %w", err)
			}
			if v.Type() != js.TypeString {
				return "", errors.New("getToken must return a string (or a Promise of one)")
			}
			return v.String(), nil
		}
	}
	storage := o.Get("storage")
	useIDB := storage.Type() == js.TypeObject && storage.Get("kind").String() == "idb"
	dbName := ""
	if useIDB && storage.Get("name").Type() == js.TypeString {
		dbName = storage.Get("name").String()
	}
	return promise(func() (any, error) {
		if urlErr != nil {
			return nil, fmt.Errorf("topgun: serverUrl: %w", urlErr)
		}
		h := &clientHandle{opts: opts, online: true}
		if useIDB {
			s, err := idb.Open(context.Background(), dbName)
			if err != nil {
				return nil, err
			}
			h.idb = s
			opts.Store = s
		}
		// Without IndexedDB opts.Store stays nil: the client makes a memory
		// store, closes it with itself, and Close says undelivered writes
		// are lost rather than kept.
		c, err := client.New(opts)
		if err == nil {
			err = c.Start(context.Background())
			if err != nil {
				c.Close()
			}
		}
		if err != nil {
			if h.idb != nil {
				h.idb.Close()
			}
			return nil, err
		}
		h.c = c
		if h.idb != nil {
			// Another tab wrote to the shared database: fold it in.
			h.stop = append(h.stop, h.idb.OnChange(func(names []string) {
				_ = c.Reload(context.Background(), names)
			}))
		}
		mu.Lock()
		defer mu.Unlock()
		clients = append(clients, h)
		return len(clients) - 1, nil
	})
}

// stringList reads a string or an array of strings.
func stringList(v js.Value) ([]string, error) {
	if v.Type() == js.TypeString {
		return []string{v.String()}, nil
	}
	if !js.Global().Get("Array").Call("isArray", v).Bool() {
		return nil, fmt.Errorf("want a string or an array of strings, got %s", v.Type())
	}
	list := make([]string, v.Length())
	for i := range list {
		e := v.Index(i)
		if e.Type() != js.TypeString {
			return nil, fmt.Errorf("element %d is a %s, not a string", i, e.Type())
		}
		list[i] = e.String()
	}
	return list, nil
}

// closeClient(id) → Promise<{error}>: Close's outcome, never a rejection
// (error is null, or an {error, code} object: UNDELIVERED, or the store's
// failure to close).
func closeClient(args []js.Value) any {
	h := getClient(args[0])
	id := args[0].Int()
	return promise(func() (any, error) {
		for _, f := range h.stop {
			f()
		}
		h.bmu.Lock()
		bc, bmem := h.bc, h.bmem
		h.bmu.Unlock()
		var err error
		if bc != nil {
			// The shim flushed its bounded counters' spends before this.
			err = bc.Close()
			bmem.Close()
		}
		err = errors.Join(err, h.c.Close())
		if h.idb != nil {
			if cerr := h.idb.Close(); cerr != nil && !errors.Is(cerr, store.ErrClosed) {
				err = errors.Join(err, fmt.Errorf("topgun: closing the store: %w", cerr))
			}
		}
		mu.Lock()
		clients[id] = nil
		mu.Unlock()
		res := js.Global().Get("Object").New()
		res.Set("error", errValue(err))
		return res, nil
	})
}

func clientState(args []js.Value) any { return getClient(args[0]).c.State().String() }

// onState(id, cb) → unsubscribe function; cb(state, error) where error
// is Err() at the change (null once ready).
func onState(args []js.Value) any {
	h, cb := getClient(args[0]), args[1]
	unsub := h.c.OnStateChange(func(s client.State) { cb.Invoke(s.String(), errValue(h.c.Err())) })
	return releaser(unsub)
}

// onError(id, cb) → unsubscribe function; cb({error, code, ...}) for
// every error the client reports (Client.OnError).
func onError(args []js.Value) any {
	h, cb := getClient(args[0]), args[1]
	unsub := h.c.OnError(func(err error) { cb.Invoke(errObject(err)) })
	h.emu.Lock()
	if h.ecbs == nil {
		h.ecbs = map[int]js.Value{}
	}
	id := h.nextE
	h.nextE++
	h.ecbs[id] = cb
	h.emu.Unlock()
	return releaser(func() {
		unsub()
		h.emu.Lock()
		delete(h.ecbs, id)
		h.emu.Unlock()
	})
}

// releaser wraps unsub in a JS function that also releases itself.
func releaser(unsub func()) js.Func {
	var f js.Func
	var once sync.Once
	f = js.FuncOf(func(this js.Value, args []js.Value) any {
		once.Do(func() {
			unsub()
			go f.Release() // not while it is running
		})
		return nil
	})
	return f
}

// counter(id, name) → handle number, or {error, code}. The counter's
// stored state is read in the background (Client.OpenCounter): a JS call
// cannot wait for IndexedDB; counterLoaded tells when it is in.
func counter(args []js.Value) any {
	h := getClient(args[0])
	cnt, err := h.c.OpenCounter(args[1].String())
	if err != nil {
		return errObject(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, ch := range counters {
		if ch.cnt == cnt {
			return i
		}
	}
	ch := &counterHandle{cnt: cnt, notify: undef, synced: undef}
	counters = append(counters, ch)
	// Local writes come through tg_counter_add and the shim has already
	// told its listeners (and knows it is not synced); only remote changes
	// and confirmations cross back.
	cnt.Subscribe(func(v int64) {
		if inLocal || ch.notify.IsUndefined() {
			return
		}
		ch.notify.Invoke(float64(v))
	})
	cnt.OnSynced(func(s bool) {
		if inLocal || ch.synced.IsUndefined() {
			return
		}
		ch.synced.Invoke(s)
	})
	return len(counters) - 1
}

// counterNotify(h, fn, syncedFn) sets the functions called after remote
// changes (with the value) and when Synced() changes (with it).
func counterNotify(args []js.Value) any {
	mu.Lock()
	ch := getCounter(int32(args[0].Int()))
	mu.Unlock()
	if ch == nil {
		return errObject(fmt.Errorf("topgun: no counter handle %d", args[0].Int()))
	}
	ch.notify = args[1]
	if len(args) > 2 {
		ch.synced = args[2]
	}
	return nil
}

// counterLoaded(h) → Promise resolved once the counter's stored state has
// been read (Counter.Loaded).
func counterLoaded(args []js.Value) any {
	mu.Lock()
	ch := getCounter(int32(args[0].Int()))
	mu.Unlock()
	return promise(func() (any, error) {
		if ch == nil {
			return nil, errors.New("topgun: no such counter")
		}
		<-ch.cnt.Loaded()
		return nil, nil
	})
}

// flush(h) → Promise.
func flush(args []js.Value) any {
	ch := getCounter(int32(args[0].Int()))
	return promise(func() (any, error) {
		if ch == nil {
			return nil, errors.New("topgun: no such counter")
		}
		return nil, ch.cnt.Flush(context.Background())
	})
}

// lock(id, name) → handle number, or {error, code}.
func lock(args []js.Value) any {
	h := getClient(args[0])
	l, err := h.c.Lock(args[1].String())
	if err != nil {
		return errObject(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, x := range locks {
		if x == l {
			return i
		}
	}
	locks = append(locks, l)
	return len(locks) - 1
}

// lockAcquire(h, ttlMs, waitMs, keepAlive) → Promise<boolean>.
func lockAcquire(args []js.Value) any {
	l := getLock(args[0])
	ttl := time.Duration(args[1].Float() * float64(time.Millisecond))
	wait := time.Duration(args[2].Float() * float64(time.Millisecond))
	keepAlive := len(args) > 3 && args[3].Truthy()
	return promise(func() (any, error) {
		var opts []client.LockOption
		if wait > 0 {
			opts = append(opts, client.WithWait(wait))
		}
		if keepAlive {
			opts = append(opts, client.KeepAlive())
		}
		// Bounded so a client that never connects does not hang forever.
		ctx, cancel := context.WithTimeout(context.Background(), ttl+wait+30*time.Second)
		defer cancel()
		return l.Acquire(ctx, ttl, opts...)
	})
}

// lockUnlock(h) → Promise.
func lockUnlock(args []js.Value) any {
	l := getLock(args[0])
	return promise(func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return nil, l.Unlock(ctx)
	})
}

// lockOnLost(h, cb) → unsubscribe function.
func lockOnLost(args []js.Value) any {
	l, cb := getLock(args[0]), args[1]
	return releaser(l.OnLost(func(reason string) { cb.Invoke(reason) }))
}

// consoleLogger prints the engine's diagnostics to the browser console
// (Go's stderr) when the client is created with debug: true.
type consoleLogger struct{}

func (consoleLogger) Debug(msg string, args ...any) { logLine("DEBUG", msg, args) }
func (consoleLogger) Info(msg string, args ...any)  { logLine("INFO", msg, args) }
func (consoleLogger) Warn(msg string, args ...any)  { logLine("WARN", msg, args) }
func (consoleLogger) Error(msg string, args ...any) { logLine("ERROR", msg, args) }

func logLine(level, msg string, args []any) {
	line := "topgun " + level + " " + msg
	for i := 0; i+1 < len(args); i += 2 {
		line += fmt.Sprintf(" %v=%v", args[i], args[i+1])
	}
	fmt.Fprintln(os.Stderr, line)
}
