//go:build js && wasm

// Command browserws is a size probe: it dials with sync/transport's browser
// WebSocket wrapper (dial_js.go) and writes one frame. bench/browser.mjs
// builds it next to coderws to compare the two transports' cost.
package main

import (
	"context"

	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

func main() {
	ctx := context.Background()
	c, err := transport.Dial(ctx, "ws://127.0.0.1:9/ws")
	if err != nil {
		return
	}
	b, _ := wire.Encode(wire.Ping{Timestamp: 1})
	_ = c.Write(ctx, b)
	_, _ = c.Read(ctx)
	_ = c.Close()
}
