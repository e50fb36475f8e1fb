package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/topgun-go/topgun/crdt"
)

// Encode returns the MessagePack frame of m.
func Encode(m Message) ([]byte, error) {
	b, err := AppendEncode(make([]byte, 0, sizeHint(m)), m)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// EncodeTo appends the frame of m to buf. On error buf is left as it was.
// States that crdt.State.Validate rejects are not encoded: every peer,
// Decode included, would drop the frame.
func EncodeTo(buf *bytes.Buffer, m Message) error {
	if n := sizeHint(m); buf.Available() < n {
		buf.Grow(n)
	}
	b, err := AppendEncode(buf.AvailableBuffer(), m)
	if err != nil {
		return err
	}
	buf.Write(b) // no copy: b is buf's own spare capacity unless it grew
	return nil
}

// AppendEncode appends the frame of m to dst and returns the extended
// slice, as append does. On error it returns dst with its length
// unchanged, though bytes beyond len(dst) may have been overwritten.
// States that crdt.State.Validate rejects are not encoded.
func AppendEncode(dst []byte, m Message) ([]byte, error) {
	b, err := appendMessage(dst, m)
	if err != nil {
		return dst, err
	}
	return b, nil
}

// sizeHint is an upper bound of m's frame size, except for ERROR.details.
func sizeHint(m Message) int {
	n := 128 // envelope, keys, numbers
	switch x := m.(type) {
	case Auth:
		n += len(x.Token) + len(x.DeviceToken)
	case AuthAck:
		n += len(x.UserID) + len(x.DeviceID) + len(x.DeviceToken)
	case AuthFail:
		n += len(x.Error)
	case DeviceHello:
		n += len(x.DeviceToken)
	case DeviceAck:
		n += len(x.DeviceID) + len(x.DeviceToken)
	case Batch:
		n += len(x.Data)
	case Error:
		n += len(x.Message)
		if x.Details != nil {
			n += 64
		}
	case CounterRequest:
		n += len(x.Name)
	case CounterUnsubscribe:
		n += len(x.Name)
	case CounterResponse:
		n += len(x.Name) + stateSize(x.State)
	case CounterSync:
		n += len(x.Name) + stateSize(x.State)
	case CounterUpdate:
		n += len(x.Name) + stateSize(x.State)
	case LockRequest:
		n += len(x.RequestID) + len(x.Name)
	case LockGranted:
		n += len(x.RequestID) + len(x.Name)
	case LockRelease:
		n += len(x.RequestID) + len(x.Name)
	case LockReleased:
		n += len(x.RequestID) + len(x.Name) + len(x.Reason)
	case LockLost:
		n += len(x.Name) + len(x.Reason)
	case BCounterRequest:
		n += len(x.Name)
	case BCounterUnsubscribe:
		n += len(x.Name)
	case BCounterRights:
		n += len(x.Name) + len(x.RequestID)
	case BCounterSync:
		n += len(x.Name) + bstateSize(x.State)
	case BCounterUpdate:
		n += len(x.Name) + bstateSize(x.State)
	case BCounterGrant:
		n += len(x.Name) + len(x.RequestID) + bstateSize(x.State)
	}
	return n
}

func stateSize(s crdt.State) int {
	n := 2 * 5 // map headers
	for k := range s.P {
		n += len(k) + 5 + 9 // str32 header at most, float64
	}
	for k := range s.N {
		n += len(k) + 5 + 9
	}
	return n
}

// frameWriter appends a frame whose field map has its fixmap header at h;
// each field increments it (no message has 15 fields).
type frameWriter struct {
	b []byte
	h int
}

// begin writes the envelope of a message of type typ: {type, …fields} or
// {type, payload: {…fields}}.
func begin(b []byte, typ string, wrapped bool) frameWriter {
	if wrapped {
		b = append(b, 0x82)
		b = appendStr(b, "type")
		b = appendStr(b, typ)
		b = appendStr(b, "payload")
		return frameWriter{append(b, 0x80), len(b)}
	}
	w := frameWriter{append(b, 0x81), len(b)}
	w.b = appendStr(w.b, "type")
	w.b = appendStr(w.b, typ)
	return w
}

func (w *frameWriter) key(k string) {
	w.b = appendStr(w.b, k)
	w.b[w.h]++
}

func (w *frameWriter) str(k, v string, required bool) {
	if v != "" || required {
		w.key(k)
		w.b = appendStr(w.b, v)
	}
}

func (w *frameWriter) uint(k string, v uint64, required bool) {
	if v != 0 || required {
		w.key(k)
		w.b = appendUint(w.b, v)
	}
}

func appendMessage(b []byte, m Message) ([]byte, error) {
	var st *crdt.State
	switch x := m.(type) {
	case CounterResponse:
		st = &x.State
	case CounterSync:
		st = &x.State
	case CounterUpdate:
		st = &x.State
	}
	if st != nil {
		if err := st.Validate(); err != nil {
			return b, fmt.Errorf("wire: encode %s: %w", m.Type(), err)
		}
	}
	var bs *crdt.BState
	switch x := m.(type) {
	case BCounterSync:
		bs = &x.State
	case BCounterUpdate:
		bs = &x.State
	case BCounterGrant:
		bs = &x.State
	case BCounterRequest:
		bs = &crdt.BState{Min: x.Min}
	case BCounterRights:
		if x.Amount < 0 || x.Amount > crdt.MaxSafe {
			return b, fmt.Errorf("wire: encode %s: amount %d out of range", m.Type(), x.Amount)
		}
	}
	if bs != nil {
		if err := bs.Validate(); err != nil {
			return b, fmt.Errorf("wire: encode %s: %w", m.Type(), err)
		}
	}
	if g, ok := m.(BCounterGrant); ok && (g.Granted < 0 || g.Granted > crdt.MaxSafe) {
		return b, fmt.Errorf("wire: encode %s: granted %d out of range", m.Type(), g.Granted)
	}
	var w frameWriter
	switch x := m.(type) {
	case AuthRequired:
		w = begin(b, TypeAuthRequired, false)
	case Auth:
		w = begin(b, TypeAuth, false)
		w.str("token", x.Token, true)
		w.uint("protocolVersion", uint64(x.ProtocolVersion), false)
		w.str("deviceToken", x.DeviceToken, false)
		w.str("nodeId", x.NodeID, false)
		w.str("views", x.Views, false)
	case AuthAck:
		w = begin(b, TypeAuthAck, false)
		w.str("userId", x.UserID, false)
		w.str("deviceId", x.DeviceID, false)
		w.str("deviceToken", x.DeviceToken, false)
		w.uint("protocolVersion", uint64(x.ProtocolVersion), false)
		w.str("views", x.Views, false)
	case AuthFail:
		w = begin(b, TypeAuthFail, false)
		w.str("error", x.Error, true)
		w.uint("code", uint64(x.Code), false)
	case DeviceHello:
		w = begin(b, TypeDeviceHello, false)
		w.str("deviceToken", x.DeviceToken, false)
		w.str("nodeId", x.NodeID, false)
		w.str("views", x.Views, false)
	case DeviceAck:
		w = begin(b, TypeDeviceAck, false)
		w.str("deviceId", x.DeviceID, false)
		w.str("deviceToken", x.DeviceToken, false)
		w.str("views", x.Views, false)
	case Ping:
		w = begin(b, TypePing, false)
		w.uint("timestamp", x.Timestamp, true)
	case Pong:
		w = begin(b, TypePong, false)
		w.uint("timestamp", x.Timestamp, true)
		w.uint("serverTime", x.ServerTime, true)
	case Batch:
		w = begin(b, TypeBatch, false)
		w.uint("count", uint64(x.Count), true)
		w.key("data")
		// A nil slice would be msgpack nil, which peers reject for the
		// required BATCH.data; send an empty bin instead.
		w.b = appendBin(w.b, x.Data)
	case Error:
		w = begin(b, TypeError, true)
		w.uint("code", uint64(x.Code), true)
		w.str("message", x.Message, true)
		if x.Details != nil {
			w.key("details")
			var err error
			if w.b, err = appendAny(w.b, x.Details, 0); err != nil {
				return b, fmt.Errorf("wire: encode %s: details: %w", m.Type(), err)
			}
		}
	case CounterRequest:
		w = begin(b, TypeCounterRequest, true)
		w.str("name", x.Name, true)
	case CounterUnsubscribe:
		w = begin(b, TypeCounterUnsubscribe, true)
		w.str("name", x.Name, true)
	case CounterResponse:
		w = begin(b, TypeCounterResponse, true)
		w.str("name", x.Name, true)
		w.key("state")
		w.b = appendState(w.b, x.State)
	case CounterSync:
		w = begin(b, TypeCounterSync, true)
		w.str("name", x.Name, true)
		w.key("state")
		w.b = appendState(w.b, x.State)
	case CounterUpdate:
		w = begin(b, TypeCounterUpdate, true)
		w.str("name", x.Name, true)
		w.key("state")
		w.b = appendState(w.b, x.State)
	case LockRequest:
		w = begin(b, TypeLockRequest, true)
		w.str("requestId", x.RequestID, true)
		w.str("name", x.Name, true)
		if x.TTL != nil {
			w.uint("ttl", *x.TTL, true)
		}
		w.uint("wait", x.Wait, false)
	case LockGranted:
		w = begin(b, TypeLockGranted, true)
		w.str("requestId", x.RequestID, true)
		w.str("name", x.Name, true)
		w.uint("fencingToken", x.FencingToken, true)
		w.uint("ttl", x.TTL, false)
	case LockRelease:
		w = begin(b, TypeLockRelease, true)
		w.str("requestId", x.RequestID, false)
		w.str("name", x.Name, true)
		w.uint("fencingToken", x.FencingToken, true)
	case LockReleased:
		w = begin(b, TypeLockReleased, true)
		w.str("requestId", x.RequestID, true)
		w.str("name", x.Name, true)
		w.key("success")
		w.b = appendBool(w.b, x.Success)
		w.str("reason", x.Reason, false)
	case LockLost:
		w = begin(b, TypeLockLost, true)
		w.str("name", x.Name, true)
		w.uint("fencingToken", x.FencingToken, true)
		w.str("reason", x.Reason, false)
	case BCounterRequest:
		w = begin(b, TypeBCounterRequest, true)
		w.str("name", x.Name, true)
		w.key("min")
		w.b = appendInt(w.b, x.Min)
	case BCounterSync:
		w = begin(b, TypeBCounterSync, true)
		w.str("name", x.Name, true)
		w.key("state")
		w.b = appendBState(w.b, x.State)
	case BCounterUpdate:
		w = begin(b, TypeBCounterUpdate, true)
		w.str("name", x.Name, true)
		w.key("state")
		w.b = appendBState(w.b, x.State)
	case BCounterRights:
		w = begin(b, TypeBCounterRights, true)
		w.str("requestId", x.RequestID, true)
		w.str("name", x.Name, true)
		w.uint("amount", uint64(x.Amount), true)
	case BCounterGrant:
		w = begin(b, TypeBCounterGrant, true)
		w.str("requestId", x.RequestID, true)
		w.str("name", x.Name, true)
		w.uint("granted", uint64(x.Granted), true)
		w.key("state")
		w.b = appendBState(w.b, x.State)
	case BCounterUnsubscribe:
		w = begin(b, TypeBCounterUnsubscribe, true)
		w.str("name", x.Name, true)
	default:
		return b, fmt.Errorf("wire: cannot encode %T", m)
	}
	return w.b, nil
}

// appendState writes {p, n} with float64 entries, as the Rust server does
// and the TS client expects. Node ids are sorted so frames are
// deterministic.
func appendState(b []byte, s crdt.State) []byte {
	b = append(b, 0x82)
	b = appendStr(b, "p")
	b = appendSide(b, s.P)
	b = appendStr(b, "n")
	return appendSide(b, s.N)
}

func appendSide(b []byte, m map[string]int64) []byte {
	b = appendMapLen(b, len(m))
	if len(m) == 1 {
		for k, v := range m {
			b = appendStr(b, k)
			b = appendFloat64(b, float64(v))
		}
		return b
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendFloat64(b, float64(m[k]))
	}
	return b
}

// Append helpers writing MessagePack in the forms msgpack/v5 chooses with
// compact ints: the smallest header or int family that fits.

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// appendBin writes p as bin; nil is an empty bin.
func appendBin(b, p []byte) []byte {
	switch n := len(p); {
	case n < 256:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func appendUint(b []byte, u uint64) []byte {
	switch {
	case u <= math.MaxInt8:
		return append(b, byte(u))
	case u <= math.MaxUint8:
		return append(b, 0xcc, byte(u))
	case u <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(u))
	case u <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(u))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), u)
}

func appendInt(b []byte, i int64) []byte {
	switch {
	case i >= 0:
		return appendUint(b, uint64(i))
	case i >= -32:
		return append(b, byte(i))
	case i >= math.MinInt8:
		return append(b, 0xd0, byte(i))
	case i >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(i))
	case i >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(i))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(i))
}

func appendFloat64(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}

func appendBool(b []byte, t bool) []byte {
	if t {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// maxDetailsDepth is the deepest ERROR.details container whose frame
// Decode still accepts: the frame and payload maps take two levels.
const maxDetailsDepth = MaxDepth - 2

// appendAny writes an ERROR.details value: nil, bool, any int, uint or
// float type, string, []byte, []any and map[string]any (keys sorted).
// Nil slices and maps are nil; depth counts enclosing containers.
func appendAny(b []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case bool:
		return appendBool(b, x), nil
	case string:
		return appendStr(b, x), nil
	case []byte:
		if x == nil {
			return append(b, 0xc0), nil
		}
		return appendBin(b, x), nil
	case int:
		return appendInt(b, int64(x)), nil
	case int8:
		return appendInt(b, int64(x)), nil
	case int16:
		return appendInt(b, int64(x)), nil
	case int32:
		return appendInt(b, int64(x)), nil
	case int64:
		return appendInt(b, x), nil
	case uint:
		return appendUint(b, uint64(x)), nil
	case uint8:
		return appendUint(b, uint64(x)), nil
	case uint16:
		return appendUint(b, uint64(x)), nil
	case uint32:
		return appendUint(b, uint64(x)), nil
	case uint64:
		return appendUint(b, x), nil
	case uintptr:
		return appendUint(b, uint64(x)), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0xca), math.Float32bits(x)), nil
	case float64:
		return appendFloat64(b, x), nil
	case []any:
		if x == nil {
			return append(b, 0xc0), nil
		}
		if depth >= maxDetailsDepth {
			return b, ErrTooDeep
		}
		b = appendArrayLen(b, len(x))
		for _, e := range x {
			var err error
			if b, err = appendAny(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		if x == nil {
			return append(b, 0xc0), nil
		}
		if depth >= maxDetailsDepth {
			return b, ErrTooDeep
		}
		b = appendMapLen(b, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendStr(b, k)
			var err error
			if b, err = appendAny(b, x[k], depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return b, fmt.Errorf("unsupported type %T", v)
}
