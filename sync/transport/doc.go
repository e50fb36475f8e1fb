// Package transport carries whole binary frames between the client engine
// and a TopGun server.
//
// The engine talks to a Conn and obtains it from a Dialer, so tests and other
// platforms can substitute their own. Dial is the default Dialer: a
// WebSocket client that sends and receives binary messages only (text
// messages from the server are skipped, as the protocol says they carry
// nothing) and accepts messages up to ReadLimit bytes. A larger message
// ends the connection: Read returns an error saying so and later Reads
// fail. Natively Dial is built on github.com/coder/websocket.
//
// # Wasm
//
// With GOOS=js Dial (dial_js.go) is a thin wrapper of the browser's
// WebSocket through syscall/js instead, with the same exported API.
// coder/websocket's js build wraps the same browser WebSocket but links
// net/http; leaving it out makes the client's wasm about 370 KiB smaller
// brotli-compressed (1.7 MB raw). The differences:
//
//   - Dial's ctx bounds the opening handshake only, as natively. Why a dial
//     failed is not visible to Go: browsers hide it (it is in the console).
//   - Cancelling Read's ctx does not close the connection; natively it does.
//     Read returns frames that arrived before the server closed the
//     connection, then an error wrapping ErrClosed that carries the close
//     status.
//   - The browser buffers received messages without bound (it has no
//     receive backpressure), and sends without blocking. Write waits, in
//     5 ms steps, while more than 1 MiB (writeHighWater) is buffered for
//     sending, until the buffer drains, the connection ends or ctx ends, in
//     which case the frame is not sent. Natively ctx bounds the write
//     itself, and cancelling it closes the connection.
//   - A message over ReadLimit ends the connection with status 1000 and a
//     reason, not 1009, which browsers may not send; the error Read returns
//     wraps ErrClosed and wire.ErrFrameTooLarge.
//   - Close starts the close handshake (status 1000) and returns at once;
//     natively it waits up to 250 ms for the handshake. Every error after
//     the connection ended wraps ErrClosed.
//   - The browser answers server pings itself; the protocol's own PING
//     frames are unaffected.
package transport
