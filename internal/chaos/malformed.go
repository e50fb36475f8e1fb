package chaos

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

// A malformed frame and what the server must answer before the PING
// that follows it: an ERROR with one of codes, or a lock denial with
// reason. oversized frames end the connection (1009) instead.
type badFrame struct {
	kind      string
	frame     []byte
	codes     []uint32
	reason    string
	oversized bool
}

func mp(v map[string]any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func beBatch(items ...[]byte) []byte {
	var out []byte
	for _, it := range items {
		out = binary.BigEndian.AppendUint32(out, uint32(len(it)))
		out = append(out, it...)
	}
	return out
}

func makeBad(rng *rand.Rand) badFrame {
	ping := mp(map[string]any{"type": "PING", "timestamp": 1})
	switch rng.IntN(9) {
	case 0:
		g := make([]byte, 1+rng.IntN(64))
		for i := range g {
			g[i] = byte(rng.UintN(256))
		}
		return badFrame{kind: "garbage", frame: append([]byte{0xc1}, g...), codes: []uint32{400}}
	case 1:
		inner := []byte{0xc1, 0x00, 0x01}
		return badFrame{kind: "batch-garbage-item", frame: mp(map[string]any{"type": "BATCH", "count": 1, "data": beBatch(inner)}), codes: []uint32{400}}
	case 2:
		in := mp(map[string]any{"type": "BATCH", "count": 1, "data": beBatch(ping)})
		return badFrame{kind: "batch-nested", frame: mp(map[string]any{"type": "BATCH", "count": 1, "data": beBatch(in)}), codes: []uint32{400}}
	case 3:
		items := make([][]byte, 8193)
		for i := range items {
			items[i] = ping
		}
		return badFrame{kind: "batch-too-many", frame: mp(map[string]any{"type": "BATCH", "count": 8193, "data": beBatch(items...)}), codes: []uint32{413}}
	case 4:
		return badFrame{kind: "lock-name-too-long", frame: mp(map[string]any{"type": "LOCK_REQUEST", "payload": map[string]any{
			"requestId": "bad", "name": strings.Repeat("x", 257+rng.IntN(1000)), "ttl": 1000}}), reason: wire.ReasonInvalidName}
	case 5:
		ttl := uint64(0)
		if rng.IntN(2) == 0 {
			ttl = uint64(2 * time.Hour / time.Millisecond)
		}
		return badFrame{kind: "lock-invalid-ttl", frame: mp(map[string]any{"type": "LOCK_REQUEST", "payload": map[string]any{
			"requestId": "bad", "name": "chaos-lock-0", "ttl": ttl}}), reason: wire.ReasonInvalidTTL}
	case 6:
		return badFrame{kind: "counter-negative", frame: mp(map[string]any{"type": "COUNTER_SYNC", "payload": map[string]any{
			"name": "chaos-inc", "state": map[string]any{"p": map[string]any{"evil": -5}, "n": map[string]any{}}}}), codes: []uint32{400}}
	case 7:
		return badFrame{kind: "counter-bad-node", frame: mp(map[string]any{"type": "COUNTER_SYNC", "payload": map[string]any{
			"name": "chaos-inc", "state": map[string]any{"p": map[string]any{"*": 1 << 40}, "n": map[string]any{}}}}), codes: []uint32{400}}
	default:
		if rng.IntN(4) == 0 {
			return badFrame{kind: "oversized", frame: make([]byte, 2<<20+1), oversized: true}
		}
		return badFrame{kind: "unknown-type", frame: mp(map[string]any{"type": "NOPE", "payload": map[string]any{}}), codes: []uint32{400}}
	}
}

// malformed sends bad frames to the server at addr() until stop, each
// followed by a PING, and checks the answers. A connection broken by a
// fault is not a finding; an answer that accepts a bad frame, or a PONG
// with no answer before it, is. It returns the frames sent.
func malformed(seed uint64, id int, addr func() string, stop <-chan struct{}, h *history) int {
	rng := rand.New(rand.NewPCG(seed, uint64(id)+1<<40))
	sent := 0
	for {
		select {
		case <-stop:
			return sent
		case <-time.After(time.Duration(50+rng.IntN(200)) * time.Millisecond):
		}
		bad := makeBad(rng)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		err := sendBad(ctx, addr(), bad)
		cancel()
		sent++
		if err != nil && !isTransient(err) {
			h.violation("malformed %s: %v", bad.kind, err)
		}
	}
}

// errFault marks failures a fault explains (connection refused, reset,
// timed out).
type errFault struct{ error }

func isTransient(err error) bool { _, ok := err.(errFault); return ok }

func sendBad(ctx context.Context, addr string, bad badFrame) error {
	cn, err := transport.Dial(ctx, "ws://"+addr+"/ws")
	if err != nil {
		return errFault{err}
	}
	defer cn.Close()
	if err := cn.Write(ctx, bad.frame); err != nil {
		return errFault{err}
	}
	if bad.oversized {
		_, err := cn.Read(ctx)
		if err == nil {
			return fmt.Errorf("answered a frame over 2 MiB instead of closing")
		}
		return nil
	}
	ping, _ := wire.Encode(wire.Ping{Timestamp: 7})
	if err := cn.Write(ctx, ping); err != nil {
		return errFault{err}
	}
	answered := false
	for {
		b, err := cn.Read(ctx)
		if err != nil {
			return errFault{err}
		}
		m, err := wire.Decode(b)
		if err != nil {
			return fmt.Errorf("server sent an undecodable frame: %v", err)
		}
		switch m := m.(type) {
		case wire.Error:
			for _, c := range bad.codes {
				if m.Code == c {
					answered = true
				}
			}
			if !answered {
				return fmt.Errorf("ERROR %d %q, want code %v", m.Code, m.Message, bad.codes)
			}
		case wire.LockGranted:
			return fmt.Errorf("granted %s a lock (token %d)", m.Name, m.FencingToken)
		case wire.LockReleased:
			if bad.reason != "" && !m.Success && m.Reason == bad.reason {
				answered = true
			} else {
				return fmt.Errorf("lock answer success=%v reason=%q, want denial %q", m.Success, m.Reason, bad.reason)
			}
		case wire.Pong:
			if !answered {
				return fmt.Errorf("PONG before any answer to the bad frame")
			}
			return nil
		}
	}
}
