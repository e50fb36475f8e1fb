package server

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/topgun-go/topgun/sync/wire"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDebugLogs: at debug level the server logs each connection's open and
// close, its lock events and the frames it refused, with the connection id;
// at info level none of them.
func TestDebugLogs(t *testing.T) {
	t.Parallel()
	run := func(level slog.Level) string {
		var buf syncBuffer
		url, srv := start(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))})
		a, b := dial(t, url), dial(t, url)
		a.send(wire.LockRequest{RequestID: "1", Name: "log:lock", TTL: u64(100)})
		expect[wire.LockGranted](a)
		b.send(wire.LockRequest{RequestID: "2", Name: "log:lock", TTL: u64(100)})
		expect[wire.LockReleased](b)
		expect[wire.LockLost](a)
		a.sendBytes([]byte{0xc1})
		expect[wire.Error](a)
		a.roundTrip()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	debug := run(slog.LevelDebug)
	for _, want := range []string{
		`msg="connection opened"`, `msg="connection closed" conn=`, "code=1001",
		`msg="lock granted" conn=`, "name=log:lock token=",
		`msg="lock denied"`, "reason=busy",
		`msg="lock lost"`, "reason=expired",
		`msg="frame refused"`, "code=400",
	} {
		if !strings.Contains(debug, want) {
			t.Errorf("debug log lacks %q:\n%s", want, debug)
		}
	}
	if info := run(slog.LevelInfo); strings.Contains(info, "connection opened") || strings.Contains(info, "lock granted") || strings.Contains(info, "frame refused") {
		t.Errorf("info log has debug events:\n%s", info)
	}
}
