//go:build js && wasm

package idb

import (
	"sync"
	"syscall/js"
)

// newChannel returns a BroadcastChannel named name, or undefined when the
// browser has none.
func newChannel(name string) (ch js.Value, err error) {
	defer catch(&err)
	ctor := js.Global().Get("BroadcastChannel")
	if ctor.Type() != js.TypeFunction {
		return js.Undefined(), nil
	}
	return ctor.New(name), nil
}

func closeChannel(ch js.Value) (err error) {
	defer catch(&err)
	ch.Call("close")
	return nil
}

// post tells other Stores on this database that names changed. Notices are
// hints: a failure to post is dropped (the batch has committed).
func (s *Store) post(names []string) {
	if s.ch.IsUndefined() || len(names) == 0 {
		return
	}
	arr := make([]any, len(names))
	for i, n := range names {
		arr[i] = n
	}
	var err error
	func() {
		defer catch(&err)
		s.ch.Call("postMessage", js.ValueOf(arr))
	}()
	_ = err
}

// OnChange calls fn with the counter names that another Store on the same
// database (another tab, or another Store in this page) changed. fn runs on
// its own goroutine, one notice at a time in arrival order; it may block
// and may call the Store. The returned func unsubscribes and releases the
// JS listener; a call of fn already running may finish after it returns.
// Without BroadcastChannel, or after Close, OnChange does nothing.
func (s *Store) OnChange(fn func(names []string)) (unsubscribe func()) {
	if err := s.acquire(); err != nil {
		return func() {}
	}
	defer s.mu.RUnlock()
	if s.ch.IsUndefined() {
		return func() {}
	}
	l := &listener{s: s, fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	// The JS callback only decodes and queues: it never blocks.
	l.jsFn = js.FuncOf(func(this js.Value, args []js.Value) any {
		if len(args) == 0 {
			return nil
		}
		if names, ok := decodeNames(args[0].Get("data")); ok {
			l.push(names)
		}
		return nil
	})
	var err error
	func() {
		defer catch(&err)
		s.ch.Call("addEventListener", "message", l.jsFn)
	}()
	if err != nil {
		l.jsFn.Release()
		return func() {}
	}
	s.lmu.Lock()
	s.listeners[l] = struct{}{}
	s.lmu.Unlock()
	go l.run()
	return l.release
}

// decodeNames accepts a JS array of non-empty strings; anything else (a
// message from an incompatible version) is ignored.
func decodeNames(v js.Value) (names []string, ok bool) {
	defer func() {
		if recover() != nil {
			names, ok = nil, false
		}
	}()
	if v.Type() != js.TypeObject || !jsArray.Call("isArray", v).Bool() {
		return nil, false
	}
	n := v.Length()
	names = make([]string, 0, n)
	for i := range n {
		e := v.Index(i)
		if e.Type() != js.TypeString || e.String() == "" {
			return nil, false
		}
		names = append(names, e.String())
	}
	return names, len(names) > 0
}

// listener is one OnChange subscription: a JS message listener feeding an
// unbounded queue that a goroutine drains into fn.
type listener struct {
	s    *Store
	fn   func([]string)
	jsFn js.Func

	mu    sync.Mutex
	queue [][]string
	wake  chan struct{} // capacity 1
	done  chan struct{}
	once  sync.Once
}

func (l *listener) push(names []string) {
	l.mu.Lock()
	l.queue = append(l.queue, names)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *listener) run() {
	for {
		select {
		case <-l.done:
			return
		case <-l.wake:
		}
		for {
			l.mu.Lock()
			if len(l.queue) == 0 {
				l.mu.Unlock()
				break
			}
			names := l.queue[0]
			l.queue = l.queue[1:]
			l.mu.Unlock()
			select {
			case <-l.done:
				return
			default:
			}
			l.fn(names)
		}
	}
}

// release removes the JS listener, releases its js.Func and stops the
// goroutine. It is idempotent.
func (l *listener) release() {
	l.once.Do(func() {
		func() {
			var err error
			defer catch(&err)
			l.s.ch.Call("removeEventListener", "message", l.jsFn)
		}()
		l.jsFn.Release()
		close(l.done)
		l.s.lmu.Lock()
		delete(l.s.listeners, l)
		l.s.lmu.Unlock()
	})
}
