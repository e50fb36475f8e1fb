package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"

	"github.com/topgun-go/topgun/sync/wire"
)

// TestCloseCodes: every way the server ends a connection shows the client
// a close frame with a code and a reason (docs/protocol.md, "How the
// server ends connections"), never a dropped socket (1006).
func TestCloseCodes(t *testing.T) {
	t.Parallel()
	t.Run("auth timeout", func(t *testing.T) {
		t.Parallel()
		url, _ := start(t, Config{JWTSecret: testSecret, AuthTimeout: 200 * time.Millisecond})
		r := dial(t, url)
		expect[wire.AuthRequired](r)
		err := r.closed()
		if st := websocket.CloseStatus(err); st != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "authentication timeout") {
			t.Fatalf("got %v, want close 1008 with 'authentication timeout'", err)
		}
	})
	t.Run("auth failure", func(t *testing.T) {
		t.Parallel()
		url, _ := start(t, Config{JWTSecret: testSecret})
		r := dial(t, url)
		expect[wire.AuthRequired](r)
		r.send(wire.Auth{Token: "not-a-token"})
		expect[wire.AuthFail](r)
		if st := websocket.CloseStatus(r.closed()); st != websocket.StatusNormalClosure {
			t.Fatalf("close status %d, want 1000", st)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		t.Parallel()
		url, srv := start(t, Config{})
		r := dial(t, url)
		r.send(wire.Ping{Timestamp: 1})
		expect[wire.Pong](r)
		go srv.Close()
		err := r.closed()
		if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway || !strings.Contains(err.Error(), "server shutting down") {
			t.Fatalf("got %v, want close 1001 'server shutting down'", err)
		}
	})
	// A connection in the middle of a request (or one that has not sent
	// it yet: a browser's preconnect, a client that gave its dial up)
	// does not hold Close: net/http's Shutdown waits for it.
	t.Run("silent connection", func(t *testing.T) {
		t.Parallel()
		url, srv := start(t, Config{})
		addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// The server accepts in order: once a request on a later
		// connection is answered, it holds nc, which has sent nothing.
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := srv.Close(); err != nil {
			t.Fatalf("Close with a silent connection open: %v", err)
		}
		// The deadline bounds a failing run only.
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		var ne net.Error
		if n, err := nc.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("silent connection read %d bytes, %v; want it closed", n, err)
		}
	})
}

// TestProtocolViolations: frames RFC 6455 forbids from a client get a
// close frame 1002 (or 1009 for a message over the limit) with the reason,
// sent over a raw socket since client libraries cannot send them.
func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	ping, _ := wire.Encode(wire.Ping{Timestamp: 1})
	cases := []struct {
		name   string
		frame  []byte
		code   ws.StatusCode
		reason string
	}{
		{"unmasked", frameBytes(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(ping))}, ping), ws.StatusProtocolError, "masked"},
		{"reserved bits", frameBytes(ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpBinary, Masked: true, Length: int64(len(ping))}, ping), ws.StatusProtocolError, "reserved bits"},
		{"reserved opcode", frameBytes(ws.Header{Fin: true, OpCode: 3, Masked: true, Length: 1}, []byte{0}), ws.StatusProtocolError, "reserved opcode"},
		{"fragmented ping", frameBytes(ws.Header{OpCode: ws.OpPing, Masked: true, Length: 1}, []byte{0}), ws.StatusProtocolError, "control frames"},
		{"lone continuation", frameBytes(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Length: 1}, []byte{0}), ws.StatusProtocolError, "continuation"},
		{"too big", frameBytes(ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: wire.MaxFrameSize + 1}, make([]byte, wire.MaxFrameSize+1)), ws.StatusMessageTooBig, "message over"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, br := rawUpgrade(t, addr)
			go nc.Write(tc.frame) // the server may close before it read all of it
			code, reason := readClose(t, nc, br)
			if code != tc.code || !strings.Contains(reason, tc.reason) {
				t.Fatalf("close %d %q, want %d with %q", code, reason, tc.code, tc.reason)
			}
		})
	}
	t.Run("fragments and pings between them", func(t *testing.T) {
		t.Parallel()
		nc, br := rawUpgrade(t, addr)
		var b []byte
		b = append(b, frameBytes(ws.Header{OpCode: ws.OpBinary, Masked: true, Length: 3}, ping[:3])...)
		b = append(b, frameBytes(ws.Header{Fin: true, OpCode: ws.OpPing, Masked: true, Length: 2}, []byte("hi"))...)
		b = append(b, frameBytes(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Length: int64(len(ping) - 3)}, ping[3:])...)
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, err := ws.ReadHeader(br)
		if err != nil || h.OpCode != ws.OpPong {
			t.Fatalf("first frame %+v %v, want the PONG control frame", h, err)
		}
		io.CopyN(io.Discard, br, h.Length)
		h, err = ws.ReadHeader(br)
		if err != nil || h.OpCode != ws.OpBinary {
			t.Fatalf("second frame %+v %v, want a binary message", h, err)
		}
		p := make([]byte, h.Length)
		io.ReadFull(br, p)
		if m, err := wire.Decode(p); err != nil || m.Type() != wire.TypePong {
			t.Fatalf("message %v %v, want PONG", m, err)
		}
	})
}

// frameBytes is a client frame: h's header (masked with a fixed key when
// h.Masked) and the payload.
func frameBytes(h ws.Header, payload []byte) []byte {
	var b bytes.Buffer
	if h.Masked {
		h.Mask = [4]byte{1, 2, 3, 4}
	}
	ws.WriteHeader(&b, h)
	p := bytes.Clone(payload)
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	b.Write(p)
	return b.Bytes()
}

// rawUpgrade opens a WebSocket to addr over a plain TCP connection.
func rawUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return nc, br
}

// readClose reads frames until the server's close frame and returns its
// code and reason.
func readClose(t *testing.T, nc net.Conn, br *bufio.Reader) (ws.StatusCode, string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if h.OpCode == ws.OpClose {
			if len(p) < 2 {
				return ws.StatusNoStatusRcvd, ""
			}
			return ws.StatusCode(binary.BigEndian.Uint16(p)), string(p[2:])
		}
	}
}

// TestIdleConnectionCost: an idle connection holds one goroutine (its
// reader): the writer exits once what was queued is written, and the
// upgrade's HTTP handler has returned. Not parallel, so that the
// goroutine count is this test's alone.
func TestIdleConnectionCost(t *testing.T) {
	url, _ := start(t, Config{})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	settled := func() int { // the count once it stopped changing
		n := runtime.NumGoroutine()
		for range 100 {
			time.Sleep(20 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				return n
			}
			n = m
		}
		return n
	}
	base := settled()
	const conns = 50
	ping, _ := wire.Encode(wire.Ping{Timestamp: 1})
	for range conns {
		nc, br := rawUpgrade(t, addr)
		if _, err := nc.Write(frameBytes(ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: int64(len(ping))}, ping)); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if h, err := ws.ReadHeader(br); err != nil || h.OpCode != ws.OpBinary {
			t.Fatalf("no PONG: %+v %v", h, err)
		}
	}
	if got := settled() - base; got != conns {
		t.Fatalf("%d idle connections hold %d goroutines, want one each", conns, got)
	}
}

// TestSlowReaderGetsEverything: more than a socket buffer holds is queued
// for a peer that reads slowly; the pool's non-blocking write takes part
// of it, a writer goroutine finishes the rest, and the peer reads every
// message whole and in order.
func TestSlowReaderGetsEverything(t *testing.T) {
	t.Parallel()
	c, peer := socketConn(t)
	const n, size = 300, 100 << 10 // 30 MB: far more than the socket buffers
	pad := strings.Repeat("x", size)
	for i := range n {
		c.send(wire.Error{Code: 500, Message: fmt.Sprintf("%d:%s", i, pad)})
	}
	for i := range n {
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond) // read slowly: the socket fills up
		}
		_, b, err := peer.Read(t.Context())
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		m, err := wire.Decode(b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if e, ok := m.(wire.Error); !ok || e.Message != fmt.Sprintf("%d:%s", i, pad) {
			t.Fatalf("message %d is not the %dth sent", i, i)
		}
	}
	if c.s.slowRounds.Load() == 0 {
		t.Fatal("every round went out in one non-blocking write: the test did not fill the socket")
	}
}
