//go:build !js

package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// closeGrace bounds the close handshake; a peer that does not answer in
// time (a dead network) gets the TCP connection closed under it.
const closeGrace = 250 * time.Millisecond

// Dial opens a WebSocket connection to url. It is the default Dialer.
func Dial(ctx context.Context, url string) (Conn, error) {
	return dial(ctx, url, dialHTTP)
}

// dialHTTP is the HTTP client of every Dial. A WebSocket takes its TCP
// connection over, so there is nothing to pool; and net/http pools a
// connection whose TCP dial completes after the request was given up
// (a client closed while connecting), where the server sees a
// connection that never sends its request, held until the pool's idle
// timeout. Without keep-alives the transport closes it instead.
var dialHTTP = newHTTPClient((&net.Dialer{}).DialContext)

func newHTTPClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	t.DialContext = dial
	return &http.Client{Transport: t}
}

func dial(ctx context.Context, url string, hc *http.Client) (Conn, error) {
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", url, err)
	}
	ws.SetReadLimit(ReadLimit)
	return &wsConn{ws: ws}, nil
}

type wsConn struct {
	ws        *websocket.Conn
	closeOnce sync.Once
}

func (c *wsConn) Read(ctx context.Context) ([]byte, error) {
	for {
		typ, b, err := c.ws.Read(ctx)
		if err != nil {
			return nil, c.wrap(err)
		}
		if typ == websocket.MessageBinary {
			return b, nil
		}
	}
}

func (c *wsConn) Write(ctx context.Context, frame []byte) error {
	return c.wrap(c.ws.Write(ctx, websocket.MessageBinary, frame))
}

func (c *wsConn) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return err
}

// Close performs the close handshake, bounded by closeGrace.
func (c *wsConn) Close() error {
	c.closeOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.ws.Close(websocket.StatusNormalClosure, "")
		}()
		t := time.NewTimer(closeGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = c.ws.CloseNow()
			<-done
		}
	})
	return nil
}
