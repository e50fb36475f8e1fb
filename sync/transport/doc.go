// Package transport carries whole binary frames between the client engine
// and a TopGun server.
//
// The engine talks to a Conn and obtains it from a Dialer, so tests and other
// platforms can substitute their own. Dial is the default Dialer: a
// WebSocket client built on github.com/coder/websocket that sends and
// receives binary messages only (text messages from the server are skipped,
// as the protocol says they carry nothing) and accepts messages up to
// ReadLimit bytes.
//
// # Wasm
//
// coder/websocket wraps the browser's WebSocket when built with GOOS=js, so
// Dial works unchanged there for now. A browser-specific twin (dial_js.go)
// may replace it later with the same exported API.
package transport
