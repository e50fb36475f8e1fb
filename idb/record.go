//go:build js && wasm

package idb

import (
	"fmt"
	"syscall/js"

	"github.com/topgun-go/topgun/crdt"
)

var (
	jsObject = js.Global().Get("Object")
	jsArray  = js.Global().Get("Array")
)

// decodeState reads a counter record {p: {node: number}, n: {node:
// number}}. It returns an empty state (non-nil maps) and ok=false for
// undefined (no record). Anything else that is not a valid record is an
// error wrapping crdt.ErrInvalidEntry.
func decodeState(v js.Value) (st crdt.State, ok bool, err error) {
	defer catch(&err)
	st = crdt.State{P: map[string]int64{}, N: map[string]int64{}}
	if v.IsUndefined() {
		return st, false, nil
	}
	if !isPlainObject(v) {
		return crdt.State{}, false, fmt.Errorf("%w: record is not an object", crdt.ErrInvalidEntry)
	}
	if err := decodeSide(v, "p", st.P); err != nil {
		return crdt.State{}, false, err
	}
	if err := decodeSide(v, "n", st.N); err != nil {
		return crdt.State{}, false, err
	}
	if err := st.Validate(); err != nil {
		return crdt.State{}, false, err
	}
	return st, true, nil
}

func decodeSide(rec js.Value, side string, into map[string]int64) error {
	obj := rec.Get(side)
	if obj.IsUndefined() {
		return nil
	}
	if !isPlainObject(obj) {
		return fmt.Errorf("%w: %s is not an object", crdt.ErrInvalidEntry, side)
	}
	keys := jsObject.Call("keys", obj)
	for i, n := 0, keys.Length(); i < n; i++ {
		node := keys.Index(i).String()
		x := obj.Get(node)
		if x.Type() != js.TypeNumber {
			return fmt.Errorf("%w: %s[%q] is a %s", crdt.ErrInvalidEntry, side, node, x.Type())
		}
		m, err := crdt.Magnitude(x.Float())
		if err != nil {
			return fmt.Errorf("%s[%q]: %w", side, node, err)
		}
		if m != 0 {
			into[node] = m
		}
	}
	return nil
}

func isPlainObject(v js.Value) bool {
	return v.Type() == js.TypeObject && !jsArray.Call("isArray", v).Bool()
}

// encodeState builds the record of st, leaving out zero entries. Entries
// are in [0, 2^53-1] (the batch was validated), so float64 is exact.
func encodeState(st crdt.State) (rec js.Value, err error) {
	defer catch(&err)
	side := func(m map[string]int64) js.Value {
		// No prototype: a node named "__proto__" stays a plain entry.
		o := jsObject.Call("create", js.Null())
		for k, v := range m {
			if v != 0 {
				o.Set(k, float64(v))
			}
		}
		return o
	}
	rec = jsObject.New()
	rec.Set("p", side(st.P))
	rec.Set("n", side(st.N))
	return rec, nil
}
