//go:build !js

package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestDialGivenUpLeavesNoConnection: a client closed while it connects
// gives its dial up; when the TCP connect completes after that, the
// connection is closed, not kept where the server would see a connection
// that never sends its request (net/http pools it for 90 s).
func TestDialGivenUpLeavesNoConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()

	// The TCP connect succeeds at once but is handed to net/http only
	// after the caller has given the dial up.
	release := make(chan struct{})
	hc := newHTTPClient(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).Dial(network, addr)
		<-release
		return c, err
	})
	ctx, cancel := context.WithCancel(t.Context())
	var server net.Conn
	go func() {
		server = <-accepted
		cancel()
	}()
	if _, err := dial(ctx, "ws://"+ln.Addr().String()+"/ws", hc); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial = %v, want context.Canceled", err)
	}
	close(release)
	defer server.Close()

	// The bound is for a failing run only: the old client kept the
	// connection open for net/http's 90 s idle timeout.
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := server.Read(make([]byte, 512))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("server read %d bytes, %v; want EOF: the given-up connection is still open", n, err)
	}
}
