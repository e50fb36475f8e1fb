package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// discardConn is a net.Conn whose writes go nowhere (the close and pong
// frames ReadMessage answers with) and whose reads end at once.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (discardConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (discardConn) Close() error                { return nil }

func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReadMessage: whatever bytes a client sends, reading them as
// WebSocket frames never panics, never returns a message over the limit,
// and returns only binary or text messages.
func FuzzReadMessage(f *testing.F) {
	ping := []byte{0x81, 0x00}
	f.Add(frameBytes(ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: 3}, []byte{1, 2, 3}))
	f.Add(frameBytes(ws.Header{OpCode: ws.OpText, Masked: true, Length: 1}, []byte{'a'}))
	f.Add(append(frameBytes(ws.Header{OpCode: ws.OpBinary, Masked: true, Length: 1}, []byte{1}),
		frameBytes(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Length: 1}, []byte{2})...))
	f.Add(frameBytes(ws.Header{Fin: true, OpCode: ws.OpPing, Masked: true, Length: 2}, []byte("hi")))
	f.Add(frameBytes(ws.Header{Fin: true, OpCode: ws.OpClose, Masked: true, Length: 2}, []byte{3, 232}))
	f.Add(ping)
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	const limit = 1 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &wsConn{nc: discardConn{}, limit: limit, br: bufio.NewReaderSize(bytes.NewReader(in), wsReadBuffer)}
		for range 64 {
			op, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if op != ws.OpBinary && op != ws.OpText {
				t.Fatalf("message with opcode %d", op)
			}
			if len(msg) > limit {
				t.Fatalf("message of %d bytes, over the limit %d", len(msg), limit)
			}
		}
	})
}
