//go:build js && wasm

// Command coderws is a size probe: the same program as browserws with
// github.com/coder/websocket's js build (which links net/http).
package main

import (
	"context"

	"github.com/coder/websocket"

	"github.com/topgun-go/topgun/sync/wire"
)

func main() {
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws://127.0.0.1:9/ws", nil)
	if err != nil {
		return
	}
	b, _ := wire.Encode(wire.Ping{Timestamp: 1})
	_ = c.Write(ctx, websocket.MessageBinary, b)
	_, _, _ = c.Read(ctx)
	_ = c.CloseNow()
}
