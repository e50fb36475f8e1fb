//go:build js && wasm

// The tg_* functions are called from JS (js/src/index.js) through
// //go:wasmexport, which staticcheck cannot see.
//lint:file-ignore U1000 called from JS through //go:wasmexport

package main

import (
	"errors"
	"math"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/client"
)

// Error codes returned by tg_last_error after a hot-path call failed.
const (
	errNone       = 0
	errOutOfRange = 1 // RangeError in JS
	errClosed     = 2
	errHandle     = 3
	errOther      = 4
)

// lastErr is the code of the last failed tg_counter_add.
var lastErr int32

// Hot path: scalar exports. Values are float64 because JS numbers are.

//go:wasmexport tg_counter_add
func tgCounterAdd(h int32, delta float64) float64 {
	ch := getCounter(h)
	if ch == nil {
		lastErr = errHandle
		return math.NaN()
	}
	inLocal = true
	v, err := ch.cnt.AddAndGet(int64(delta))
	inLocal = false
	switch {
	case err == nil:
		lastErr = errNone
		return float64(v)
	case errors.Is(err, crdt.ErrOutOfRange):
		lastErr = errOutOfRange
	case errors.Is(err, client.ErrClosed):
		lastErr = errClosed
	default:
		lastErr = errOther
	}
	return math.NaN()
}

//go:wasmexport tg_counter_get
func tgCounterGet(h int32) float64 {
	if ch := getCounter(h); ch != nil {
		return float64(ch.cnt.Get())
	}
	return math.NaN()
}

//go:wasmexport tg_counter_own_p
func tgCounterOwnP(h int32) float64 {
	if ch := getCounter(h); ch != nil {
		p, _ := ch.cnt.Own()
		return float64(p)
	}
	return math.NaN()
}

//go:wasmexport tg_counter_own_n
func tgCounterOwnN(h int32) float64 {
	if ch := getCounter(h); ch != nil {
		_, n := ch.cnt.Own()
		return float64(n)
	}
	return math.NaN()
}

//go:wasmexport tg_counter_synced
func tgCounterSynced(h int32) int32 {
	if ch := getCounter(h); ch != nil && ch.cnt.Synced() {
		return 1
	}
	return 0
}

//go:wasmexport tg_lock_held
func tgLockHeld(h int32) int32 {
	if h >= 0 && int(h) < len(locks) && locks[h].IsLocked() {
		return 1
	}
	return 0
}

//go:wasmexport tg_lock_token
func tgLockToken(h int32) float64 {
	if h >= 0 && int(h) < len(locks) {
		return float64(locks[h].FencingToken())
	}
	return 0
}

//go:wasmexport tg_last_error
func tgLastError() int32 { return lastErr }
