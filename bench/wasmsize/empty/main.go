//go:build js && wasm

// Command empty is the size floor of a Go program in the browser: the
// runtime and syscall/js, one call into JS.
package main

import "syscall/js"

func main() {
	js.Global().Get("console").Call("log", "empty")
}
