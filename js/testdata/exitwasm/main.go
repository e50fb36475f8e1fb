//go:build js && wasm

// Command exitwasm stands in for the engine in js/test/fatal.test.mjs: it
// hands the shim a minimal API, lets it create a client, and then returns
// from main, which ends the Go program as a crash would.
package main

import (
	"syscall/js"
	"time"
)

func main() {
	api := js.Global().Get("Object").New()
	set := func(name string, fn func(args []js.Value) any) {
		api.Set(name, js.FuncOf(func(_ js.Value, args []js.Value) any { return fn(args) }))
	}
	set("createClient", func([]js.Value) any { return js.Global().Get("Promise").Call("resolve", 0) })
	set("clientState", func([]js.Value) any { return "connecting" })
	set("onState", func([]js.Value) any { return js.FuncOf(func(js.Value, []js.Value) any { return nil }) })
	set("onError", func([]js.Value) any { return js.FuncOf(func(js.Value, []js.Value) any { return nil }) })
	set("clientError", func([]js.Value) any { return js.Null() })
	js.Global().Get("__topgunGoReady").Invoke(api)
	time.Sleep(200 * time.Millisecond)
}
