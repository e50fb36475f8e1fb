package wire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/topgun-go/topgun/crdt"
)

var errNil = errors.New("is nil")

var readerPool = sync.Pool{New: func() any { return new(bytes.Reader) }}

// Decode parses one frame. Errors are *DecodeError values wrapping a
// sentinel error of this package.
func Decode(b []byte) (Message, error) {
	if err := check(b); err != nil {
		return nil, &DecodeError{Err: err}
	}
	r := readerPool.Get().(*bytes.Reader)
	r.Reset(b)
	d := msgpack.GetDecoder()
	d.Reset(r)
	defer func() {
		msgpack.PutDecoder(d)
		r.Reset(nil)
		readerPool.Put(r)
	}()

	typ, err := peekType(d)
	if err != nil {
		return nil, &DecodeError{Field: "type", Err: err}
	}
	m := newMessage(typ)
	if m == nil {
		return nil, &DecodeError{Type: typ, Err: ErrUnknownType}
	}
	r.Reset(b)
	d.Reset(r)
	de := &DecodeError{Type: typ}
	if err := decodeInto(d, m, de); err != nil {
		de.Err = err
		if deref(m).wrapped() && (de.RequestID == "" || de.Name == "") {
			// Key order is free, so the bad field may have come before
			// requestId or name; read them in a second pass.
			r.Reset(b)
			d.Reset(r)
			salvageIDs(d, de)
		}
		return nil, de
	}
	return deref(m), nil
}

// salvageIDs fills de.RequestID and de.Name, where still empty, from the
// payload of a frame that check accepted but decodeInto rejected. It
// reads only string values and gives up silently on anything unexpected.
func salvageIDs(d *msgpack.Decoder, de *DecodeError) {
	n, err := d.DecodeMapLen()
	if err != nil {
		return
	}
	for i := 0; i < n; i++ {
		k, err := readKey(d)
		if err != nil {
			return
		}
		c, err := d.PeekCode()
		if err != nil {
			return
		}
		if k != "payload" || !(msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32) {
			if d.Skip() != nil {
				return
			}
			continue
		}
		pn, err := d.DecodeMapLen()
		if err != nil {
			return
		}
		for j := 0; j < pn; j++ {
			pk, err := readKey(d)
			if err != nil {
				return
			}
			var dst *string
			switch pk {
			case "requestId":
				dst = &de.RequestID
			case "name":
				dst = &de.Name
			}
			if vc, _ := d.PeekCode(); dst != nil && *dst == "" && msgpcode.IsString(vc) {
				if *dst, err = d.DecodeString(); err != nil {
					return
				}
				continue
			}
			if d.Skip() != nil {
				return
			}
		}
	}
}

// peekType reads the "type" key of the top-level map.
func peekType(d *msgpack.Decoder) (string, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return "", fmt.Errorf("%w: frame is not a map", ErrInvalidField)
	}
	for i := 0; i < n; i++ {
		k, err := readKey(d)
		if err != nil {
			return "", err
		}
		if k == "type" {
			s, err := readString(d)
			if err != nil {
				return "", fieldErr("", err)
			}
			return s, nil
		}
		if err := d.Skip(); err != nil {
			return "", fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	return "", fmt.Errorf("%w: missing", ErrInvalidField)
}

// fieldDecoder is implemented by pointers to the message types.
type fieldDecoder interface {
	// field decodes the value of key; unknown keys are skipped by the caller
	// when known is false.
	field(key string, d *msgpack.Decoder, de *DecodeError) (known bool, err error)
	// complete reports a missing required field.
	complete(seen uint32) error
}

func decodeInto(d *msgpack.Decoder, m fieldDecoder, de *DecodeError) error {
	wrapped := deref(m).wrapped()
	n, _ := d.DecodeMapLen()
	sawPayload := false
	for i := 0; i < n; i++ {
		k, err := readKey(d)
		if err != nil {
			return err
		}
		switch {
		case k == "type":
			err = d.Skip()
		case wrapped && k == "payload":
			if c, _ := d.PeekCode(); c == msgpcode.Nil {
				err = d.Skip()
				break
			}
			sawPayload = true
			err = decodeFields(d, m, de, "payload.")
		case wrapped:
			err = d.Skip()
		default:
			var known bool
			known, err = m.field(k, d, de)
			if err != nil {
				de.Field = k
			} else if !known {
				err = d.Skip()
			}
		}
		if err != nil {
			return err
		}
	}
	if wrapped && !sawPayload {
		de.Field = "payload"
		return fmt.Errorf("%w: missing", ErrInvalidField)
	}
	if err := m.complete(de.seen); err != nil {
		return err
	}
	return nil
}

func decodeFields(d *msgpack.Decoder, m fieldDecoder, de *DecodeError, prefix string) error {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		de.Field = "payload"
		return fmt.Errorf("%w: not a map", ErrInvalidField)
	}
	for i := 0; i < n; i++ {
		k, err := readKey(d)
		if err != nil {
			return err
		}
		known, err := m.field(k, d, de)
		if err != nil {
			de.Field = prefix + k
			return err
		}
		if !known {
			if err := d.Skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

func readKey(d *msgpack.Decoder) (string, error) {
	c, err := d.PeekCode()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !msgpcode.IsString(c) {
		return "", fmt.Errorf("%w: map key is not a string", ErrInvalidField)
	}
	return d.DecodeString()
}

func fieldErr(what string, err error) error {
	if errors.Is(err, ErrInvalidField) || errors.Is(err, crdt.ErrInvalidEntry) {
		return err
	}
	if what != "" {
		return fmt.Errorf("%w: %s %v", ErrInvalidField, what, err)
	}
	return fmt.Errorf("%w: %v", ErrInvalidField, err)
}

// readString reads a string; nil gives errNil.
func readString(d *msgpack.Decoder) (string, error) {
	c, err := d.PeekCode()
	if err != nil {
		return "", err
	}
	if c == msgpcode.Nil {
		_ = d.Skip()
		return "", fmt.Errorf("%w: %v", ErrInvalidField, errNil)
	}
	if !msgpcode.IsString(c) {
		return "", fmt.Errorf("%w: not a string", ErrInvalidField)
	}
	return d.DecodeString()
}

// readOptString reads a string or nil (as "").
func readOptString(d *msgpack.Decoder) (string, error) {
	if c, _ := d.PeekCode(); c == msgpcode.Nil {
		return "", d.Skip()
	}
	return readString(d)
}

// isNil consumes a nil and reports whether there was one.
func isNil(d *msgpack.Decoder) bool {
	if c, _ := d.PeekCode(); c == msgpcode.Nil {
		_ = d.Skip()
		return true
	}
	return false
}

// readNumber reads any int or float as int64/uint64/float64.
func readNumber(d *msgpack.Decoder) (any, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Int8, c == msgpcode.Int16,
		c == msgpcode.Int32, c == msgpcode.Int64:
		return d.DecodeInt64()
	case c == msgpcode.Uint8, c == msgpcode.Uint16, c == msgpcode.Uint32, c == msgpcode.Uint64:
		return d.DecodeUint64()
	case c == msgpcode.Float, c == msgpcode.Double:
		return d.DecodeFloat64()
	case c == msgpcode.Nil:
		_ = d.Skip()
		return nil, fmt.Errorf("%w: %v", ErrInvalidField, errNil)
	}
	return nil, fmt.Errorf("%w: not a number", ErrInvalidField)
}

// readUint64 reads a non-negative integer, accepting integral floats
// (the reference TS client sends timestamps as float64).
func readUint64(d *msgpack.Decoder) (uint64, error) {
	v, err := readNumber(d)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("%w: %d is negative", ErrInvalidField, x)
		}
		return uint64(x), nil
	case uint64:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) || x < 0 || x >= 1<<64 {
			return 0, fmt.Errorf("%w: %v is not a non-negative integer", ErrInvalidField, x)
		}
		return uint64(x), nil
	}
	return 0, fmt.Errorf("%w: not a number", ErrInvalidField)
}

// readUint32 reads a u32 strictly as an integer, as Rust does for
// protocolVersion and error codes.
func readUint32(d *msgpack.Decoder) (uint32, error) {
	v, err := readNumber(d)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int64:
		if x >= 0 && x <= math.MaxUint32 {
			return uint32(x), nil
		}
	case uint64:
		if x <= math.MaxUint32 {
			return uint32(x), nil
		}
	case float64:
		return 0, fmt.Errorf("%w: %v must be an integer", ErrInvalidField, x)
	}
	return 0, fmt.Errorf("%w: %v out of u32 range", ErrInvalidField, v)
}

func readBool(d *msgpack.Decoder) (bool, error) {
	c, err := d.PeekCode()
	if err != nil {
		return false, err
	}
	if c != msgpcode.True && c != msgpcode.False {
		if c == msgpcode.Nil {
			_ = d.Skip()
			return false, fmt.Errorf("%w: %v", ErrInvalidField, errNil)
		}
		return false, fmt.Errorf("%w: not a bool", ErrInvalidField)
	}
	return d.DecodeBool()
}

// readAny reads a loosely typed value (ERROR.details) into canonical Go
// types, so that Decode(Encode(m)) gives m back: nil, bool, int64 (uint64
// above math.MaxInt64), float64, string, []byte, []any and map[string]any
// with string keys. check has bounded the depth and every declared length.
func readAny(d *msgpack.Decoder) (any, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, d.Skip()
	case c == msgpcode.True || c == msgpcode.False:
		return d.DecodeBool()
	case msgpcode.IsString(c):
		return d.DecodeString()
	case msgpcode.IsBin(c):
		return d.DecodeBytes()
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		s := make([]any, n)
		for i := range s {
			if s[i], err = readAny(d); err != nil {
				return nil, err
			}
		}
		return s, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, n)
		for i := 0; i < n; i++ {
			k, err := readKey(d)
			if err != nil {
				return nil, err
			}
			if m[k], err = readAny(d); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	v, err := readNumber(d)
	if u, ok := v.(uint64); ok && u <= math.MaxInt64 {
		v = int64(u)
	}
	return v, err
}

// readState reads {p, n} (or {positive, negative}); both sides required.
func readState(d *msgpack.Decoder) (crdt.State, error) {
	var s crdt.State
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return s, fmt.Errorf("%w: state is not a map", ErrInvalidField)
	}
	for i := 0; i < n; i++ {
		k, err := readKey(d)
		if err != nil {
			return s, err
		}
		var side *map[string]int64
		switch k {
		case "p", "positive":
			side = &s.P
		case "n", "negative":
			side = &s.N
		default:
			if err := d.Skip(); err != nil {
				return s, err
			}
			continue
		}
		if *side != nil { // p and positive both present: merge by max
			m, err := readSide(d, k)
			if err != nil {
				return s, err
			}
			for node, v := range m {
				if v > (*side)[node] {
					(*side)[node] = v
				}
			}
			continue
		}
		if *side, err = readSide(d, k); err != nil {
			return s, err
		}
	}
	if s.P == nil || s.N == nil {
		return s, fmt.Errorf("%w: state needs both p and n", ErrInvalidField)
	}
	return s, nil
}

func readSide(d *msgpack.Decoder, side string) (map[string]int64, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%w: state.%s is not a map", ErrInvalidField, side)
	}
	m := make(map[string]int64, n)
	for i := 0; i < n; i++ {
		node, err := readKey(d)
		if err != nil {
			return nil, err
		}
		if node == "" {
			return nil, fmt.Errorf("%w: %w: state.%s has an empty node id",
				ErrInvalidField, crdt.ErrInvalidEntry, side)
		}
		v, err := readNumber(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: state.%s[%q]: %v",
				ErrInvalidField, crdt.ErrInvalidEntry, side, node, err)
		}
		x, err := crdt.Magnitude(v)
		if err != nil {
			return nil, fmt.Errorf("%w: state.%s[%q]: %w", ErrInvalidField, side, node, err)
		}
		m[node] = x
	}
	return m, nil
}

func newMessage(typ string) fieldDecoder {
	switch typ {
	case TypeAuthRequired:
		return &AuthRequired{}
	case TypeAuth:
		return &Auth{}
	case TypeAuthAck:
		return &AuthAck{}
	case TypeAuthFail:
		return &AuthFail{}
	case TypeDeviceHello:
		return &DeviceHello{}
	case TypeDeviceAck:
		return &DeviceAck{}
	case TypePing:
		return &Ping{}
	case TypePong:
		return &Pong{}
	case TypeError:
		return &Error{}
	case TypeBatch:
		return &Batch{}
	case TypeCounterRequest:
		return &CounterRequest{}
	case TypeCounterResponse:
		return &CounterResponse{}
	case TypeCounterSync:
		return &CounterSync{}
	case TypeCounterUpdate:
		return &CounterUpdate{}
	case TypeLockRequest:
		return &LockRequest{}
	case TypeLockGranted:
		return &LockGranted{}
	case TypeLockRelease:
		return &LockRelease{}
	case TypeLockReleased:
		return &LockReleased{}
	case TypeLockLost:
		return &LockLost{}
	}
	return nil
}

func deref(m fieldDecoder) Message {
	switch x := m.(type) {
	case *AuthRequired:
		return *x
	case *Auth:
		return *x
	case *AuthAck:
		return *x
	case *AuthFail:
		return *x
	case *DeviceHello:
		return *x
	case *DeviceAck:
		return *x
	case *Ping:
		return *x
	case *Pong:
		return *x
	case *Error:
		return *x
	case *Batch:
		return *x
	case *CounterRequest:
		return *x
	case *CounterResponse:
		return *x
	case *CounterSync:
		return *x
	case *CounterUpdate:
		return *x
	case *LockRequest:
		return *x
	case *LockGranted:
		return *x
	case *LockRelease:
		return *x
	case *LockReleased:
		return *x
	case *LockLost:
		return *x
	}
	panic(fmt.Sprintf("wire: unknown message %T", m))
}

func missing(name string) error { return fmt.Errorf("%w: %s is required", ErrInvalidField, name) }

// encoding

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Encode returns the MessagePack frame of m.
func Encode(m Message) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := EncodeTo(buf, m); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// EncodeTo appends the frame of m to buf. On error buf is left as it was.
// States that crdt.State.Validate rejects are not encoded: every peer,
// Decode included, would drop the frame.
func EncodeTo(buf *bytes.Buffer, m Message) error {
	start := buf.Len()
	if err := encodeTo(buf, m); err != nil {
		buf.Truncate(start)
		return err
	}
	return nil
}

func encodeTo(buf *bytes.Buffer, m Message) error {
	e := msgpack.GetEncoder()
	defer msgpack.PutEncoder(e)
	e.Reset(buf)
	e.UseCompactInts(true)
	e.SetSortMapKeys(true) // deterministic ERROR.details
	switch x := m.(type) {
	case CounterResponse:
		if err := x.State.Validate(); err != nil {
			return fmt.Errorf("wire: encode %s: %w", m.Type(), err)
		}
	case CounterSync:
		if err := x.State.Validate(); err != nil {
			return fmt.Errorf("wire: encode %s: %w", m.Type(), err)
		}
	case CounterUpdate:
		if err := x.State.Validate(); err != nil {
			return fmt.Errorf("wire: encode %s: %w", m.Type(), err)
		}
	}
	var fb fields
	switch x := m.(type) {
	case AuthRequired:
	case Auth:
		fb.str("token", x.Token, true)
		fb.uint("protocolVersion", uint64(x.ProtocolVersion), false)
		fb.str("deviceToken", x.DeviceToken, false)
	case AuthAck:
		fb.str("userId", x.UserID, false)
		fb.str("deviceId", x.DeviceID, false)
		fb.str("deviceToken", x.DeviceToken, false)
		fb.uint("protocolVersion", uint64(x.ProtocolVersion), false)
	case AuthFail:
		fb.str("error", x.Error, true)
		fb.uint("code", uint64(x.Code), false)
	case DeviceHello:
		fb.str("deviceToken", x.DeviceToken, false)
	case DeviceAck:
		fb.str("deviceId", x.DeviceID, false)
		fb.str("deviceToken", x.DeviceToken, false)
	case Ping:
		fb.uint("timestamp", x.Timestamp, true)
	case Pong:
		fb.uint("timestamp", x.Timestamp, true)
		fb.uint("serverTime", x.ServerTime, true)
	case Batch:
		fb.uint("count", uint64(x.Count), true)
		fb.add(field{key: "data", kind: kBytes, b: x.Data})
	case Error:
		fb.uint("code", uint64(x.Code), true)
		fb.str("message", x.Message, true)
		if x.Details != nil {
			fb.add(field{key: "details", kind: kAny, a: x.Details})
		}
	case CounterRequest:
		fb.str("name", x.Name, true)
	case CounterResponse:
		fb.str("name", x.Name, true)
		fb.add(field{key: "state", kind: kState, st: x.State})
	case CounterSync:
		fb.str("name", x.Name, true)
		fb.add(field{key: "state", kind: kState, st: x.State})
	case CounterUpdate:
		fb.str("name", x.Name, true)
		fb.add(field{key: "state", kind: kState, st: x.State})
	case LockRequest:
		fb.str("requestId", x.RequestID, true)
		fb.str("name", x.Name, true)
		if x.TTL != nil {
			fb.uint("ttl", *x.TTL, true)
		}
		fb.uint("wait", x.Wait, false)
	case LockGranted:
		fb.str("requestId", x.RequestID, true)
		fb.str("name", x.Name, true)
		fb.uint("fencingToken", x.FencingToken, true)
		fb.uint("ttl", x.TTL, false)
	case LockRelease:
		fb.str("requestId", x.RequestID, false)
		fb.str("name", x.Name, true)
		fb.uint("fencingToken", x.FencingToken, true)
	case LockReleased:
		fb.str("requestId", x.RequestID, true)
		fb.str("name", x.Name, true)
		fb.add(field{key: "success", kind: kBool, t: x.Success})
		fb.str("reason", x.Reason, false)
	case LockLost:
		fb.str("name", x.Name, true)
		fb.uint("fencingToken", x.FencingToken, true)
		fb.str("reason", x.Reason, false)
	default:
		return fmt.Errorf("wire: cannot encode %T", m)
	}
	if m.wrapped() {
		_ = e.EncodeMapLen(2)
		_ = e.EncodeString("type")
		_ = e.EncodeString(m.Type())
		_ = e.EncodeString("payload")
		return fb.write(e)
	}
	_ = e.EncodeMapLen(1 + len(fb.f))
	_ = e.EncodeString("type")
	_ = e.EncodeString(m.Type())
	return fb.writeFields(e)
}

type fieldKind uint8

const (
	kStr fieldKind = iota
	kUint
	kBool
	kBytes
	kState
	kAny
)

type field struct {
	key  string
	kind fieldKind
	s    string
	u    uint64
	t    bool
	b    []byte
	st   crdt.State
	a    any
}

type fields struct {
	buf [6]field
	f   []field
}

func (fb *fields) add(f field) {
	if fb.f == nil {
		fb.f = fb.buf[:0]
	}
	fb.f = append(fb.f, f)
}

func (fb *fields) str(k, v string, required bool) {
	if v != "" || required {
		fb.add(field{key: k, kind: kStr, s: v})
	}
}

func (fb *fields) uint(k string, v uint64, required bool) {
	if v != 0 || required {
		fb.add(field{key: k, kind: kUint, u: v})
	}
}

func (fb *fields) write(e *msgpack.Encoder) error {
	if err := e.EncodeMapLen(len(fb.f)); err != nil {
		return err
	}
	return fb.writeFields(e)
}

func (fb *fields) writeFields(e *msgpack.Encoder) error {
	for _, f := range fb.f {
		if err := e.EncodeString(f.key); err != nil {
			return err
		}
		var err error
		switch f.kind {
		case kStr:
			err = e.EncodeString(f.s)
		case kUint:
			err = e.EncodeUint(f.u)
		case kBool:
			err = e.EncodeBool(f.t)
		case kBytes:
			// A nil slice would be msgpack nil, which peers reject for the
			// required BATCH.data; send an empty bin instead.
			if err = e.EncodeBytesLen(len(f.b)); err == nil {
				_, err = e.Writer().Write(f.b)
			}
		case kState:
			err = encodeState(e, f.st)
		case kAny:
			err = e.Encode(f.a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// encodeState writes {p, n} with float64 entries, as the Rust server does
// and the TS client expects. Node ids are sorted so frames are
// deterministic.
func encodeState(e *msgpack.Encoder, s crdt.State) error {
	_ = e.EncodeMapLen(2)
	for _, side := range [2]struct {
		k string
		m map[string]int64
	}{{"p", s.P}, {"n", s.N}} {
		_ = e.EncodeString(side.k)
		if err := e.EncodeMapLen(len(side.m)); err != nil {
			return err
		}
		keys := make([]string, 0, len(side.m))
		for k := range side.m {
			keys = append(keys, k)
		}
		if len(keys) > 1 {
			sort.Strings(keys)
		}
		for _, k := range keys {
			_ = e.EncodeString(k)
			if err := e.EncodeFloat64(float64(side.m[k])); err != nil {
				return err
			}
		}
	}
	return nil
}
