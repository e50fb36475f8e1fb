//go:build js && wasm

// Command wasm is the browser build of the topgun-go engine: the
// WebAssembly module that the npm package @topgun-go/client loads.
//
// The boundary has two kinds of crossing (see js/src/index.d.ts, which
// mirrors this package):
//
//   - Hot paths are scalar //go:wasmexport functions taking and returning
//     numbers (handle ids, deltas, values): about 20 ns a call, like plain
//     JS. The shim batches a tick's increments per counter into one
//     tg_counter_add call, so increment() costs a few JS operations.
//   - Setup and asynchronous work (creating a client, naming a counter or
//     lock, subscribing, lock/unlock/flush, closing) go through functions
//     made with js.FuncOf, handed to the shim once at start-up through
//     globalThis.__topgunGoReady. They never block: async work returns a
//     Promise settled from a goroutine.
//
// Go panics in those goroutines reject their Promise; a panic that escapes
// ends the Go program, and the shim treats go.run() returning as fatal.
package main
