package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// wsConn is the server side of one WebSocket (RFC 6455) on a hijacked
// connection. It is built on gobwas/ws's handshake and frame header
// functions rather than on a message-level library for two reasons that
// the fan-out and idle-connection benchmarks measure: everything queued
// for a connection goes out as one vectored write (a message-level Write
// costs a syscall per frame), and an idle connection holds no buffers
// beyond a small read buffer (net/http's 4 KiB reader and writer are
// dropped after the upgrade).
//
// One goroutine reads (ReadMessage); frames are written under wmu by the
// connection's writer or, for control frames, by the reader.
type wsConn struct {
	nc    net.Conn
	br    *bufio.Reader
	limit int64 // longest message accepted

	closeRecv bool // the peer's close frame was read (reader only)

	wmu       sync.Mutex
	closeSent bool          // a close frame was written: nothing more is
	sentCode  ws.StatusCode // the code of the close frame written (metrics)
	vec       net.Buffers
	deadline  time.Time       // the write deadline set last
	raw       syscall.RawConn // the socket, for TryWrite (nil: not a socket)
	rest      []byte          // what TryWrite could not write: goes first
}

// wsReadBuffer is the read buffer of a connection: headers and small
// frames are read through it; a payload larger than it is read straight
// into the message.
const wsReadBuffer = 512

// closeWait bounds how long a close handshake waits for the peer's close
// frame before the TCP connection is closed anyway.
const closeWait = 5 * time.Second

// errOrigin refuses a browser page from an origin not allowed.
var errOrigin = errors.New("websocket: origin not allowed")

// acceptWS upgrades r to a WebSocket. origins, when not empty, are the
// allowed Origin host patterns (path.Match syntax); a request whose
// Origin host matches none is refused with 403 before the upgrade.
// Requests without an Origin header (not from a browser) are accepted.
func acceptWS(w http.ResponseWriter, r *http.Request, origins []string, limit int64) (*wsConn, error) {
	if err := checkOrigin(r, origins); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return nil, err
	}
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: 10 * time.Second}.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, err
	}
	c := &wsConn{nc: nc, limit: limit}
	var src io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 { // frames the client sent with its request
		early, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc)
	}
	c.br = bufio.NewReaderSize(src, wsReadBuffer)
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, nil
}

// checkOrigin applies the origin patterns to r (as browsers send Origin
// on every WebSocket handshake, a page elsewhere cannot borrow the
// user's connection).
func checkOrigin(r *http.Request, patterns []string) error {
	o := r.Header.Get("Origin")
	if len(patterns) == 0 || o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil {
		return fmt.Errorf("%w: bad Origin %q", errOrigin, o)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", errOrigin, o)
}

// closeError is a close frame received from the peer, or one the
// connection sent because the peer broke the protocol.
type closeError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("websocket closed: status %d %q", e.Code, e.Reason)
}

// ReadMessage returns the next data message (its opcode and payload),
// answering pings and the peer's close on the way. A protocol violation
// or a message over the limit is answered with a close frame (1002 or
// 1009) and returned as a *closeError.
func (c *wsConn) ReadMessage() (ws.OpCode, []byte, error) {
	var (
		op  ws.OpCode
		msg []byte
		in  bool // inside a fragmented message
	)
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case h.Rsv != 0:
			return 0, nil, c.fail(ws.StatusProtocolError, "reserved bits set (no extension was negotiated)")
		case !h.Masked:
			return 0, nil, c.fail(ws.StatusProtocolError, "client frames must be masked")
		case h.OpCode.IsReserved():
			return 0, nil, c.fail(ws.StatusProtocolError, fmt.Sprintf("reserved opcode %d", h.OpCode))
		case h.OpCode.IsControl() && (h.Length > ws.MaxControlFramePayloadSize || !h.Fin):
			return 0, nil, c.fail(ws.StatusProtocolError, "control frames must be whole and at most 125 bytes")
		case h.OpCode == ws.OpContinuation && !in:
			return 0, nil, c.fail(ws.StatusProtocolError, "continuation frame without a message")
		case h.OpCode != ws.OpContinuation && !h.OpCode.IsControl() && in:
			return 0, nil, c.fail(ws.StatusProtocolError, "new message inside a fragmented one")
		case !h.OpCode.IsControl() && int64(len(msg))+h.Length > c.limit:
			err := c.fail(ws.StatusMessageTooBig, fmt.Sprintf("message over %d bytes", c.limit))
			// Skip the payload, so that Linger reads the frames after it.
			_, _ = io.CopyN(io.Discard, c.br, h.Length)
			return 0, nil, err
		}
		start := len(msg)
		var p []byte
		if h.OpCode.IsControl() {
			p = make([]byte, h.Length)
		} else {
			msg = slices.Grow(msg, int(h.Length))[:start+int(h.Length)]
			p = msg[start:]
		}
		if _, err := io.ReadFull(c.br, p); err != nil {
			return 0, nil, err
		}
		ws.Cipher(p, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			if err := c.writeControl(ws.OpPong, p); err != nil {
				return 0, nil, err
			}
		case ws.OpPong:
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			if code.Empty() {
				code = ws.StatusNoStatusRcvd
			}
			echo := code
			if code == ws.StatusNoStatusRcvd {
				echo = ws.StatusNormalClosure
			}
			_ = c.writeControl(ws.OpClose, ws.NewCloseFrameBody(echo, ""))
			c.closeRecv = true
			return 0, nil, &closeError{Code: code, Reason: reason}
		default:
			if h.OpCode != ws.OpContinuation {
				op = h.OpCode
			}
			if !h.Fin {
				in = true
				continue
			}
			return op, msg, nil
		}
	}
}

// fail answers a protocol violation with a close frame and returns it as
// the read's error.
func (c *wsConn) fail(code ws.StatusCode, reason string) error {
	_ = c.Close(code, reason)
	return &closeError{Code: code, Reason: reason}
}

// writeControl writes one control frame, bounded by closeWait.
func (c *wsConn) writeControl(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	if op == ws.OpClose {
		c.closeSent = true
		if len(p) >= 2 {
			c.sentCode = ws.StatusCode(binary.BigEndian.Uint16(p))
		}
	}
	hdr := getBuf()
	defer putBuf(hdr)
	hdr.Write(c.rest) // a partly written frame is finished first
	c.rest = nil
	_ = ws.WriteHeader(hdr, ws.Header{Fin: true, OpCode: op, Length: int64(len(p))})
	hdr.Write(p)
	c.deadline = time.Now().Add(closeWait)
	c.nc.SetWriteDeadline(c.deadline)
	_, err := c.nc.Write(hdr.Bytes())
	return err
}

// bufs holds the buffers writes are assembled in: a connection keeps none
// between writes, so one that received a large burst once does not hold
// its size while idle.
var bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer { return bufs.Get().(*bytes.Buffer) }

// putBuf returns b to the pool unless it grew large (a burst's size is not
// kept).
func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		b.Reset()
		bufs.Put(b)
	}
}

// smallFrame is the largest payload copied into the header buffer; larger
// ones are their own element of the vectored write.
const smallFrame = 1024

// WriteFrames writes frames as binary messages, in order, with one
// (vectored) write, which must end within timeout, or half of it to
// timeout (the deadline is moved only when less than half of it is left:
// setting one costs as much as a small write's bookkeeping), or at the
// end of ctx. A cancel of ctx is expected to set a past write deadline
// (the connection's context does, see newConn).
func (c *wsConn) WriteFrames(ctx context.Context, frames [][]byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	hdr := getBuf()
	defer putBuf(hdr)
	vec := c.vec[:0]
	if len(c.rest) > 0 { // a partly written frame is finished first
		vec = append(vec, c.rest)
		c.rest = nil
	}
	from := 0 // start of the part of hdr not yet in vec
	for _, b := range frames {
		_ = ws.WriteHeader(hdr, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(b))})
		if len(b) <= smallFrame {
			hdr.Write(b)
			continue
		}
		vec = append(vec, hdr.Bytes()[from:], b)
		from = hdr.Len()
	}
	if from < hdr.Len() {
		vec = append(vec, hdr.Bytes()[from:])
	}
	// The parts of hdr in vec stay valid when hdr grows: bytes.Buffer
	// copies into a new array and never changes bytes already written.
	if now := time.Now(); c.deadline.Sub(now) < timeout/2 {
		c.deadline = now.Add(timeout)
		c.nc.SetWriteDeadline(c.deadline)
	}
	if err := ctx.Err(); err != nil { // after the deadline: a later cancel overrides it
		return err
	}
	c.vec = vec
	var err error
	if len(vec) == 1 {
		_, err = c.nc.Write(vec[0])
	} else {
		_, err = c.vec.WriteTo(c.nc)
	}
	clear(c.vec[:cap(c.vec)])
	c.vec = c.vec[:0]
	if cap(c.vec) > 64 {
		c.vec = nil // what a burst needed is not kept per connection
	}
	return err
}

// TryWrite writes frames as binary messages with one non-blocking write:
// done is false when the socket took only part of them (its buffer is
// full: the peer reads slowly), and what it did not take is kept to be
// written first by the next WriteFrames, which blocks.
func (c *wsConn) TryWrite(frames [][]byte) (done bool, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return false, net.ErrClosed
	}
	hdr := getBuf()
	defer putBuf(hdr)
	for _, b := range frames {
		_ = ws.WriteHeader(hdr, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(b))})
		hdr.Write(b)
	}
	b := hdr.Bytes()
	n := 0
	if len(c.rest) == 0 && c.raw != nil {
		var werr error
		if err := c.raw.Write(func(fd uintptr) bool {
			n, werr = tryWrite(fd, b)
			return true // never wait for the socket here
		}); err != nil {
			return false, err
		}
		if werr != nil {
			return false, werr
		}
	}
	if n == len(b) {
		return true, nil
	}
	c.rest = append(c.rest, b[n:]...)
	return false, nil
}

// Close starts the close handshake: it writes a close frame with code and
// reason, and makes the reader's wait for the peer's answer end within
// closeWait. It does not close the TCP connection (CloseNow does, once
// the reader is done).
func (c *wsConn) Close(code ws.StatusCode, reason string) error {
	err := c.writeControl(ws.OpClose, ws.NewCloseFrameBody(code, reason))
	c.nc.SetReadDeadline(time.Now().Add(closeWait))
	return err
}

// Linger discards what the peer sends until it closes or the deadline set
// by Close passes: the peer has read everything before the close frame
// when it answers, and closing a socket with unread input would reset it.
func (c *wsConn) Linger() {
	for !c.closeRecv {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

// closeCode is the code of the close frame sent, 0 if none was.
func (c *wsConn) closeCode() ws.StatusCode {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sentCode
}

// CloseNow closes the TCP connection.
func (c *wsConn) CloseNow() error { return c.nc.Close() }
