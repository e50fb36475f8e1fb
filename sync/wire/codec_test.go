package wire_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// A tiny DSL to build frames byte by byte. Every value type says exactly how
// it is encoded, so tests control the MessagePack families on the wire.
type (
	M   []any // map, key/value alternating, fixmap/map16/map32 by size
	M16 []any // map with a map16 header even when small
	A   []any // array
	Raw []byte

	U8  uint8
	U16 uint16
	U32 uint32
	U64 uint64
	I8  int8
	I16 int16
	I32 int32
	I64 int64
	F32 float32
	F64 float64
)

// enc encodes v; int is written in its most compact form.
func enc(v any) []byte {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	e.UseCompactInts(true)
	put(e, v)
	return buf.Bytes()
}

func put(e *msgpack.Encoder, v any) {
	var err error
	switch x := v.(type) {
	case nil:
		err = e.EncodeNil()
	case bool:
		err = e.EncodeBool(x)
	case string:
		err = e.EncodeString(x)
	case []byte:
		err = e.EncodeBytes(x)
	case int:
		err = e.EncodeInt(int64(x))
	case U8:
		err = e.EncodeUint8(uint8(x))
	case U16:
		err = e.EncodeUint16(uint16(x))
	case U32:
		err = e.EncodeUint32(uint32(x))
	case U64:
		err = e.EncodeUint64(uint64(x))
	case I8:
		err = e.EncodeInt8(int8(x))
	case I16:
		err = e.EncodeInt16(int16(x))
	case I32:
		err = e.EncodeInt32(int32(x))
	case I64:
		err = e.EncodeInt64(int64(x))
	case F32:
		err = e.EncodeFloat32(float32(x))
	case F64:
		err = e.EncodeFloat64(float64(x))
	case Raw:
		_, err = e.Writer().Write(x)
	case A:
		err = e.EncodeArrayLen(len(x))
		for _, el := range x {
			put(e, el)
		}
	case M:
		err = e.EncodeMapLen(len(x) / 2)
		for _, el := range x {
			put(e, el)
		}
	case M16:
		_, err = e.Writer().Write([]byte{0xde, byte(len(x) / 2 >> 8), byte(len(x) / 2)})
		for _, el := range x {
			put(e, el)
		}
	default:
		panic("enc: unsupported " + reflect.TypeOf(v).String())
	}
	if err != nil {
		panic(err)
	}
}

// flat builds {type, kv...}; wrapped builds {type, payload: {kv...}}.
func flat(typ string, kv ...any) M    { return append(M{"type", typ}, kv...) }
func wrapped(typ string, kv ...any) M { return M{"type", typ, "payload", M(kv)} }

// without returns kv with key and its value removed.
func without(kv []any, key string) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] != key {
			out = append(out, kv[i], kv[i+1])
		}
	}
	return out
}

// with returns kv with key's value replaced by v.
func with(kv []any, key string, v any) []any {
	out := slices.Clone(kv)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] == key {
			out[i+1] = v
		}
	}
	return out
}

func u64p(v uint64) *uint64 { return &v }

func state(p, n map[string]int64) crdt.State {
	if p == nil {
		p = map[string]int64{}
	}
	if n == nil {
		n = map[string]int64{}
	}
	return crdt.State{P: p, N: n}
}

// typeCases lists, for every message type, a frame with every field set,
// the message it decodes to and its required fields.
var typeCases = []struct {
	typ      string
	wrapped  bool
	kv       []any
	required []string
	want     wire.Message
}{
	{wire.TypeAuthRequired, false, nil, nil, wire.AuthRequired{}},
	{wire.TypeAuth, false, []any{"token", "t", "protocolVersion", 1, "deviceToken", "dt"},
		[]string{"token"}, wire.Auth{Token: "t", ProtocolVersion: 1, DeviceToken: "dt"}},
	{wire.TypeAuthAck, false, []any{"userId", "u", "deviceId", "di", "deviceToken", "dt", "protocolVersion", 2},
		nil, wire.AuthAck{UserID: "u", DeviceID: "di", DeviceToken: "dt", ProtocolVersion: 2}},
	{wire.TypeAuthFail, false, []any{"error", "bad", "code", U16(401)},
		[]string{"error"}, wire.AuthFail{Error: "bad", Code: 401}},
	{wire.TypeDeviceHello, false, []any{"deviceToken", "dt"}, nil, wire.DeviceHello{DeviceToken: "dt"}},
	{wire.TypeDeviceAck, false, []any{"deviceId", "di", "deviceToken", "dt"}, nil,
		wire.DeviceAck{DeviceID: "di", DeviceToken: "dt"}},
	{wire.TypePing, false, []any{"timestamp", F64(1700000000000)}, []string{"timestamp"},
		wire.Ping{Timestamp: 1700000000000}},
	{wire.TypePong, false, []any{"timestamp", F64(1700000000000), "serverTime", U64(1700000000005)},
		[]string{"timestamp", "serverTime"}, wire.Pong{Timestamp: 1700000000000, ServerTime: 1700000000005}},
	{wire.TypeBatch, false, []any{"count", 3, "data", []byte{0xde, 0xad}}, []string{"count", "data"},
		wire.Batch{Count: 3, Data: []byte{0xde, 0xad}}},
	{wire.TypeError, true, []any{"code", U16(500), "message", "m", "details", M{"k", A{1, "x"}}},
		[]string{"code", "message"},
		wire.Error{Code: 500, Message: "m", Details: map[string]any{"k": []any{int64(1), "x"}}}},
	{wire.TypeCounterRequest, true, []any{"name", "c"}, []string{"name"}, wire.CounterRequest{Name: "c"}},
	{wire.TypeCounterResponse, true, []any{"name", "c", "state", M{"p", M{"a", 1}, "n", M{"b", F64(2)}}},
		[]string{"name", "state"},
		wire.CounterResponse{Name: "c", State: state(map[string]int64{"a": 1}, map[string]int64{"b": 2})}},
	{wire.TypeCounterSync, true, []any{"name", "c", "state", M{"p", M{"a", 1}, "n", M{}}},
		[]string{"name", "state"}, wire.CounterSync{Name: "c", State: state(map[string]int64{"a": 1}, nil)}},
	{wire.TypeCounterUpdate, true, []any{"name", "c", "state", M{"p", M{}, "n", M{}}},
		[]string{"name", "state"}, wire.CounterUpdate{Name: "c", State: state(nil, nil)}},
	{wire.TypeLockRequest, true, []any{"requestId", "r", "name", "l", "ttl", U16(30000), "wait", 7},
		[]string{"requestId", "name"}, wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(30000), Wait: 7}},
	{wire.TypeLockGranted, true, []any{"requestId", "r", "name", "l", "fencingToken", 42, "ttl", 9},
		[]string{"requestId", "name", "fencingToken"},
		wire.LockGranted{RequestID: "r", Name: "l", FencingToken: 42, TTL: 9}},
	{wire.TypeLockRelease, true, []any{"requestId", "r", "name", "l", "fencingToken", 7},
		[]string{"name", "fencingToken"}, wire.LockRelease{RequestID: "r", Name: "l", FencingToken: 7}},
	{wire.TypeLockReleased, true, []any{"requestId", "r", "name", "l", "success", false, "reason", "busy"},
		[]string{"requestId", "name", "success"},
		wire.LockReleased{RequestID: "r", Name: "l", Success: false, Reason: "busy"}},
	{wire.TypeLockLost, true, []any{"name", "l", "fencingToken", 3, "reason", "expired"},
		[]string{"name", "fencingToken"}, wire.LockLost{Name: "l", FencingToken: 3, Reason: "expired"}},
	{wire.TypeCounterUnsubscribe, true, []any{"name", "c"}, []string{"name"}, wire.CounterUnsubscribe{Name: "c"}},
	{wire.TypeBCounterRequest, true, []any{"name", "b", "min", -3}, []string{"name", "min"},
		wire.BCounterRequest{Name: "b", Min: -3}},
	{wire.TypeBCounterSync, true, []any{"name", "b", "state", M{"min", 0, "p", M{"x", 5}, "n", M{"x", F64(2)}, "t", M{"x", M{"@", 3}}}},
		[]string{"name", "state"}, wire.BCounterSync{Name: "b", State: bstate(0, map[string]int64{"x": 5}, map[string]int64{"x": 2}, map[string]map[string]int64{"x": {"@": 3}})}},
	{wire.TypeBCounterUpdate, true, []any{"name", "b", "state", M{"min", 1}},
		[]string{"name", "state"}, wire.BCounterUpdate{Name: "b", State: bstate(1, nil, nil, nil)}},
	{wire.TypeBCounterRights, true, []any{"requestId", "r", "name", "b", "amount", F64(10)},
		[]string{"requestId", "name", "amount"}, wire.BCounterRights{RequestID: "r", Name: "b", Amount: 10}},
	{wire.TypeBCounterGrant, true, []any{"requestId", "r", "name", "b", "granted", 0, "state", M{"min", 0, "t", M{"@", M{"x", 4}}}},
		[]string{"requestId", "name", "granted", "state"}, wire.BCounterGrant{RequestID: "r", Name: "b", State: bstate(0, nil, nil, map[string]map[string]int64{"@": {"x": 4}})}},
	{wire.TypeBCounterUnsubscribe, true, []any{"name", "b"}, []string{"name"}, wire.BCounterUnsubscribe{Name: "b"}},
}

func bstate(min int64, p, n map[string]int64, t map[string]map[string]int64) crdt.BState {
	if p == nil {
		p = map[string]int64{}
	}
	if n == nil {
		n = map[string]int64{}
	}
	if t == nil {
		t = map[string]map[string]int64{}
	}
	return crdt.BState{Min: min, P: p, N: n, T: t}
}

func frameOf(typ string, isWrapped bool, kv []any) []byte {
	if isWrapped {
		return enc(wrapped(typ, kv...))
	}
	return enc(flat(typ, kv...))
}

func TestDecodeEveryType(t *testing.T) {
	t.Parallel()
	if len(typeCases) != 26 {
		t.Fatalf("typeCases covers %d types, want 26", len(typeCases))
	}
	for _, tc := range typeCases {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			if tc.want.Type() != tc.typ {
				t.Fatalf("want.Type() = %q", tc.want.Type())
			}
			got, err := wire.Decode(frameOf(tc.typ, tc.wrapped, tc.kv))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decode = %#v, want %#v", got, tc.want)
			}
			for _, k := range tc.required {
				for _, f := range []struct {
					how   string
					frame []byte
				}{
					{"missing", frameOf(tc.typ, tc.wrapped, without(tc.kv, k))},
					{"nil", frameOf(tc.typ, tc.wrapped, with(tc.kv, k, nil))},
				} {
					_, err := wire.Decode(f.frame)
					if !errors.Is(err, wire.ErrInvalidField) {
						t.Errorf("%s %s: err = %v, want ErrInvalidField", f.how, k, err)
						continue
					}
					if de, ok := wire.AsDecodeError(err); !ok || de.Type != tc.typ {
						t.Errorf("%s %s: DecodeError = %#v, want Type %s", f.how, k, de, tc.typ)
					}
				}
			}
			// Optional fields: nil or absent is the zero value.
			for i := 0; i < len(tc.kv); i += 2 {
				k := tc.kv[i].(string)
				if slices.Contains(tc.required, k) {
					continue
				}
				for _, kv := range [][]any{with(tc.kv, k, nil), without(tc.kv, k)} {
					if _, err := wire.Decode(frameOf(tc.typ, tc.wrapped, kv)); err != nil {
						t.Errorf("optional %s nil/absent: %v", k, err)
					}
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []wire.Message{
		wire.AuthRequired{},
		wire.Auth{Token: "jwt"},
		wire.Auth{Token: "jwt", ProtocolVersion: math.MaxUint32, DeviceToken: "dt"},
		wire.Auth{}, // token is required but may be empty
		wire.AuthAck{},
		wire.AuthAck{UserID: "u", DeviceID: "d", DeviceToken: "t", ProtocolVersion: 1},
		wire.AuthFail{Error: "Authentication failed"},
		wire.AuthFail{Error: "e", Code: 401},
		wire.DeviceHello{},
		wire.DeviceHello{DeviceToken: "t"},
		wire.DeviceAck{},
		wire.DeviceAck{DeviceID: "d", DeviceToken: "t"},
		wire.Ping{},
		wire.Ping{Timestamp: 1700000000000},
		wire.Pong{Timestamp: math.MaxUint64, ServerTime: 1},
		wire.Error{Code: 429, Message: "rate limited"},
		wire.Error{Code: 500, Message: "m", Details: "stack"},
		wire.Error{Code: 501, Message: "m", Details: map[string]any{
			"int": int64(-3), "small": int64(5), "mid": int64(300), "big": uint64(math.MaxUint64),
			"f": 1.5, "s": "x", "b": []byte{1, 2}, "e": []byte{}, "t": true, "nil": nil,
			"arr": []any{int64(1), []any{}, map[string]any{}}, "m": map[string]any{"k": "v"},
		}},
		wire.Batch{Count: 0, Data: []byte{}},
		wire.Batch{Count: 3, Data: []byte{0xde, 0xad, 0xbe, 0xef}},
		wire.CounterRequest{Name: "c"},
		wire.CounterRequest{},
		wire.CounterResponse{Name: "c", State: state(nil, nil)},
		wire.CounterResponse{Name: "c", State: state(map[string]int64{"a": 1, "b": crdt.MaxSafe}, map[string]int64{"a": 0})},
		wire.CounterSync{Name: "c", State: state(map[string]int64{"n1": 10}, nil)},
		wire.CounterUpdate{Name: "c", State: state(nil, map[string]int64{"n1": 10, "n2": 7})},
		wire.LockRequest{RequestID: "r", Name: "l"},               // TTL nil: server default
		wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(0)}, // TTL 0: invalid, but distinct
		wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(10000), Wait: 5000},
		wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(math.MaxUint64)},
		wire.LockGranted{RequestID: "r", Name: "l", FencingToken: 1},
		wire.LockGranted{RequestID: "r", Name: "l", FencingToken: math.MaxUint64, TTL: 10000},
		wire.LockRelease{Name: "l", FencingToken: 7},
		wire.LockRelease{RequestID: "r", Name: "l", FencingToken: 0},
		wire.LockReleased{RequestID: "r", Name: "l", Success: true},
		wire.LockReleased{RequestID: "", Name: "l", Reason: wire.ReasonBusy},
		wire.LockLost{Name: "l", FencingToken: 3},
		wire.LockLost{Name: "l", FencingToken: 3, Reason: wire.ReasonExpired},
		wire.CounterUnsubscribe{Name: "c"},
		wire.DeviceHello{NodeID: "n", Views: wire.ViewsCompact},
		wire.DeviceAck{Views: wire.ViewsCompact},
		wire.Auth{Token: "t", NodeID: "n", Views: wire.ViewsCompact},
		wire.AuthAck{UserID: "u", Views: wire.ViewsCompact},
		wire.BCounterRequest{Name: "b", Min: -crdt.MaxSafe},
		wire.BCounterRequest{Name: "b", Min: crdt.MaxSafe},
		wire.BCounterSync{Name: "b", State: bstate(0, map[string]int64{"x": crdt.MaxSafe}, nil, map[string]map[string]int64{"x": {"@": 1, "y": 2}})},
		wire.BCounterUpdate{Name: "b", State: bstate(-5, map[string]int64{"x": 1, "*": 9}, map[string]int64{"*": 2}, map[string]map[string]int64{"@": {"x": 1}})},
		wire.BCounterRights{RequestID: "r", Name: "b", Amount: 1},
		wire.BCounterGrant{RequestID: "r", Name: "b", Granted: 0, State: bstate(0, nil, nil, nil)},
		wire.BCounterUnsubscribe{Name: "b"},
	}
	seen := map[string]bool{}
	for _, m := range cases {
		seen[m.Type()] = true
	}
	if len(seen) != 26 {
		t.Fatalf("round trip covers %d types, want 26", len(seen))
	}
	for _, m := range cases {
		t.Run(m.Type(), func(t *testing.T) {
			t.Parallel()
			b, err := wire.Encode(m)
			if err != nil {
				t.Fatalf("Encode(%#v): %v", m, err)
			}
			got, err := wire.Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(%#v)) = %v; frame % x", m, err, b)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip = %#v, want %#v", got, m)
			}
			b2, _ := wire.Encode(got)
			if !bytes.Equal(b, b2) {
				t.Fatalf("Encode not deterministic:\n% x\n% x", b, b2)
			}
		})
	}
}

func TestLockRequestTTLNilVsZero(t *testing.T) {
	t.Parallel()
	noTTL, _ := wire.Encode(wire.LockRequest{RequestID: "r", Name: "l"})
	zero, _ := wire.Encode(wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(0)})
	if bytes.Contains(noTTL, []byte("ttl")) {
		t.Errorf("TTL nil encodes a ttl key: % x", noTTL)
	}
	if !bytes.Contains(zero, append([]byte{0xa3}, "ttl\x00"...)) {
		t.Errorf("TTL 0 does not encode ttl: 0: % x", zero)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  *uint64
	}{
		{"absent", enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l")), nil},
		{"nil", enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", nil)), nil},
		{"zero", enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", 0)), u64p(0)},
		{"zero float", enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", F64(0))), u64p(0)},
	} {
		m, err := wire.Decode(c.frame)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := m.(wire.LockRequest).TTL; !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: TTL = %v, want %v", c.name, got, c.want)
		}
	}
}

// numEncodings are the families of the number 5 a peer may send.
var numEncodings = []struct {
	name  string
	v     any
	float bool
}{
	{"fixint", 5, false},
	{"uint8", U8(5), false},
	{"uint16", U16(5), false},
	{"uint32", U32(5), false},
	{"uint64", U64(5), false},
	{"int8", I8(5), false},
	{"int16", I16(5), false},
	{"int32", I32(5), false},
	{"int64", I64(5), false},
	{"float32", F32(5), true},
	{"float64", F64(5), true},
}

// numFields are numeric fields: a frame with the field set to v, and how
// to read the field back. u32 fields accept integers only.
var numFields = []struct {
	name  string
	u32   bool
	frame func(v any) M
	get   func(wire.Message) uint64
}{
	{"LOCK_REQUEST.ttl", false,
		func(v any) M { return wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", v) },
		func(m wire.Message) uint64 { return *m.(wire.LockRequest).TTL }},
	{"LOCK_REQUEST.wait", false,
		func(v any) M { return wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "wait", v) },
		func(m wire.Message) uint64 { return m.(wire.LockRequest).Wait }},
	{"LOCK_GRANTED.fencingToken", false,
		func(v any) M { return wrapped("LOCK_GRANTED", "requestId", "r", "name", "l", "fencingToken", v) },
		func(m wire.Message) uint64 { return m.(wire.LockGranted).FencingToken }},
	{"LOCK_GRANTED.ttl", false,
		func(v any) M {
			return wrapped("LOCK_GRANTED", "requestId", "r", "name", "l", "fencingToken", 1, "ttl", v)
		},
		func(m wire.Message) uint64 { return m.(wire.LockGranted).TTL }},
	{"LOCK_RELEASE.fencingToken", false,
		func(v any) M { return wrapped("LOCK_RELEASE", "name", "l", "fencingToken", v) },
		func(m wire.Message) uint64 { return m.(wire.LockRelease).FencingToken }},
	{"LOCK_LOST.fencingToken", false,
		func(v any) M { return wrapped("LOCK_LOST", "name", "l", "fencingToken", v) },
		func(m wire.Message) uint64 { return m.(wire.LockLost).FencingToken }},
	{"PING.timestamp", false,
		func(v any) M { return flat("PING", "timestamp", v) },
		func(m wire.Message) uint64 { return m.(wire.Ping).Timestamp }},
	{"PONG.serverTime", false,
		func(v any) M { return flat("PONG", "timestamp", 1, "serverTime", v) },
		func(m wire.Message) uint64 { return m.(wire.Pong).ServerTime }},
	{"COUNTER_SYNC.state.p", false,
		func(v any) M { return wrapped("COUNTER_SYNC", "name", "c", "state", M{"p", M{"a", v}, "n", M{}}) },
		func(m wire.Message) uint64 { return uint64(m.(wire.CounterSync).State.P["a"]) }},
	{"COUNTER_UPDATE.state.n", false,
		func(v any) M { return wrapped("COUNTER_UPDATE", "name", "c", "state", M{"p", M{}, "n", M{"a", v}}) },
		func(m wire.Message) uint64 { return uint64(m.(wire.CounterUpdate).State.N["a"]) }},
	{"ERROR.code", true,
		func(v any) M { return wrapped("ERROR", "code", v, "message", "m") },
		func(m wire.Message) uint64 { return uint64(m.(wire.Error).Code) }},
	{"AUTH.protocolVersion", true,
		func(v any) M { return flat("AUTH", "token", "t", "protocolVersion", v) },
		func(m wire.Message) uint64 { return uint64(m.(wire.Auth).ProtocolVersion) }},
	{"AUTH_FAIL.code", true,
		func(v any) M { return flat("AUTH_FAIL", "error", "e", "code", v) },
		func(m wire.Message) uint64 { return uint64(m.(wire.AuthFail).Code) }},
	{"BATCH.count", true,
		func(v any) M { return flat("BATCH", "count", v, "data", []byte{}) },
		func(m wire.Message) uint64 { return uint64(m.(wire.Batch).Count) }},
}

func TestDecodeNumericLeniency(t *testing.T) {
	t.Parallel()
	for _, f := range numFields {
		for _, n := range numEncodings {
			t.Run(f.name+"/"+n.name, func(t *testing.T) {
				t.Parallel()
				m, err := wire.Decode(enc(f.frame(n.v)))
				if f.u32 && n.float {
					if !errors.Is(err, wire.ErrInvalidField) {
						t.Fatalf("float for u32 field: err = %v, want ErrInvalidField", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if got := f.get(m); got != 5 {
					t.Fatalf("value = %d, want 5", got)
				}
			})
		}
	}
}

func TestDecodeNumericLimits(t *testing.T) {
	t.Parallel()
	ttl := func(v any) []byte {
		return enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", v))
	}
	entry := func(v any) []byte {
		return enc(wrapped("COUNTER_SYNC", "name", "c", "state", M{"p", M{"a", v}, "n", M{}}))
	}
	code := func(v any) []byte { return enc(wrapped("ERROR", "code", v, "message", "m")) }
	for _, c := range []struct {
		name  string
		frame []byte
		want  uint64
	}{
		{"ttl max uint64", ttl(U64(math.MaxUint64)), math.MaxUint64},
		{"ttl max int64", ttl(I64(math.MaxInt64)), math.MaxInt64},
		{"ttl 2^63 float64", ttl(F64(1 << 63)), 1 << 63},
		{"ttl 1.7e12 float64", ttl(F64(1.7e12)), 1.7e12},
		{"ttl -0.0", ttl(F64(math.Copysign(0, -1))), 0},
		{"entry 2^53-1 float64", entry(F64(crdt.MaxSafe)), crdt.MaxSafe},
		{"entry 2^53-1 uint64", entry(U64(crdt.MaxSafe)), crdt.MaxSafe},
		{"code max uint32", code(U32(math.MaxUint32)), math.MaxUint32},
	} {
		m, err := wire.Decode(c.frame)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var got uint64
		switch x := m.(type) {
		case wire.LockRequest:
			got = *x.TTL
		case wire.CounterSync:
			got = uint64(x.State.P["a"])
		case wire.Error:
			got = uint64(x.Code)
		}
		if got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}

// rejectCase is a frame Decode must refuse with every error in want.
type rejectCase struct {
	name  string
	frame []byte
	want  []error
	typ   string // expected DecodeError.Type
	field string // expected DecodeError.Field, if not ""
}

var (
	invalid = []error{wire.ErrInvalidField}
	entry   = []error{wire.ErrInvalidField, crdt.ErrInvalidEntry}
)

func lockReq(ttl any) []byte {
	return enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", ttl))
}

func granted(tok any) []byte {
	return enc(wrapped("LOCK_GRANTED", "requestId", "r", "name", "l", "fencingToken", tok))
}

func release(tok any) []byte {
	return enc(wrapped("LOCK_RELEASE", "name", "l", "fencingToken", tok))
}

func syncState(st any) []byte {
	return enc(wrapped("COUNTER_SYNC", "name", "c", "state", st))
}

func syncEntry(v any) []byte { return syncState(M{"p", M{"node", v}, "n", M{}}) }

func rejectCases() []rejectCase {
	var cs []rejectCase
	bad := []struct {
		name string
		v    any
	}{
		{"fractional", F64(1.5)},
		{"fractional float32", F32(0.5)},
		{"negative int8", I8(-1)},
		{"negative int64", I64(math.MinInt64)},
		{"negative fixint", -3},
		{"negative float", F64(-1)},
		{"NaN", F64(math.NaN())},
		{"NaN float32", F32(float32(math.NaN()))},
		{"+Inf", F64(math.Inf(1))},
		{"-Inf", F64(math.Inf(-1))},
		{"2^64", F64(1 << 64)},
		{"string", "5"},
		{"bool", true},
		{"array", A{1}},
		{"map", M{}},
		{"bin", []byte{5}},
	}
	for _, b := range bad {
		cs = append(cs,
			rejectCase{"ttl " + b.name, lockReq(b.v), invalid, "LOCK_REQUEST", "payload.ttl"},
			rejectCase{"LOCK_GRANTED fencingToken " + b.name, granted(b.v), invalid, "LOCK_GRANTED", "payload.fencingToken"},
			rejectCase{"LOCK_RELEASE fencingToken " + b.name, release(b.v), invalid, "LOCK_RELEASE", "payload.fencingToken"},
			rejectCase{"PING timestamp " + b.name, enc(flat("PING", "timestamp", b.v)), invalid, "PING", "timestamp"},
		)
	}
	for _, b := range []struct {
		name string
		v    any
	}{
		{"float64", F64(500)}, {"float32", F32(500)}, {"negative", I8(-1)},
		{"2^32", U64(1 << 32)}, {"string", "500"},
	} {
		cs = append(cs,
			rejectCase{"ERROR code " + b.name, enc(wrapped("ERROR", "code", b.v, "message", "m")),
				invalid, "ERROR", "payload.code"},
			rejectCase{"AUTH protocolVersion " + b.name, enc(flat("AUTH", "token", "t", "protocolVersion", b.v)),
				invalid, "AUTH", "protocolVersion"},
			rejectCase{"AUTH_FAIL code " + b.name, enc(flat("AUTH_FAIL", "error", "e", "code", b.v)),
				invalid, "AUTH_FAIL", "code"},
		)
	}
	for _, b := range []struct {
		name string
		v    any
	}{
		{"negative", I8(-1)}, {"negative float", F64(-2)}, {"fractional", F64(1.5)},
		{"NaN", F64(math.NaN())}, {"+Inf", F64(math.Inf(1))}, {"-Inf", F64(math.Inf(-1))},
		{"2^53 float64", F64(1 << 53)}, {"2^53 uint64", U64(1 << 53)}, {"max uint64", U64(math.MaxUint64)},
		{"string", "10"}, {"nil", nil}, {"bool", false}, {"map", M{}},
	} {
		cs = append(cs, rejectCase{"counter entry " + b.name, syncEntry(b.v), entry, "COUNTER_SYNC", "payload.state"})
	}
	cs = append(cs,
		rejectCase{"counter empty node id", syncState(M{"p", M{"", 1}, "n", M{}}), entry, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state missing p", syncState(M{"n", M{}}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state missing n", syncState(M{"p", M{}}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state only positive", syncState(M{"positive", M{}}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state empty", syncState(M{}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state nil", syncState(nil), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state array", syncState(A{M{}, M{}}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state p nil", syncState(M{"p", nil, "n", M{}}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state n string", syncState(M{"p", M{}, "n", "x"}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter state int key", syncState(M{1, M{}, "p", M{}, "n", M{}}), invalid, "COUNTER_SYNC", "payload.state"},
		rejectCase{"counter node int key", syncState(M{"p", M{7, 1}, "n", M{}}), invalid, "COUNTER_SYNC", "payload.state"},

		// wrong types
		rejectCase{"name number", enc(wrapped("COUNTER_REQUEST", "name", 5)), invalid, "COUNTER_REQUEST", "payload.name"},
		rejectCase{"name bin", enc(wrapped("COUNTER_REQUEST", "name", []byte("c"))), invalid, "COUNTER_REQUEST", "payload.name"},
		rejectCase{"requestId bool", enc(wrapped("LOCK_REQUEST", "requestId", true, "name", "l")), invalid, "LOCK_REQUEST", "payload.requestId"},
		rejectCase{"optional requestId number", enc(wrapped("LOCK_RELEASE", "requestId", 1, "name", "l", "fencingToken", 1)), invalid, "LOCK_RELEASE", "payload.requestId"},
		rejectCase{"token array", enc(flat("AUTH", "token", A{"t"})), invalid, "AUTH", "token"},
		rejectCase{"deviceToken number", enc(flat("DEVICE_HELLO", "deviceToken", 1)), invalid, "DEVICE_HELLO", "deviceToken"},
		rejectCase{"success int", enc(wrapped("LOCK_RELEASED", "requestId", "r", "name", "l", "success", 1)), invalid, "LOCK_RELEASED", "payload.success"},
		rejectCase{"success string", enc(wrapped("LOCK_RELEASED", "requestId", "r", "name", "l", "success", "true")), invalid, "LOCK_RELEASED", "payload.success"},
		rejectCase{"timestamp string", enc(flat("PING", "timestamp", "1")), invalid, "PING", "timestamp"},
		rejectCase{"batch data number", enc(flat("BATCH", "count", 1, "data", 1)), invalid, "BATCH", "data"},
		rejectCase{"batch data nil", enc(flat("BATCH", "count", 1, "data", nil)), invalid, "BATCH", "data"},
		rejectCase{"details int key", enc(wrapped("ERROR", "code", 1, "message", "m", "details", M{1, 2})), invalid, "ERROR", "payload.details"},
		rejectCase{"details nested int key", enc(wrapped("ERROR", "code", 1, "message", "m", "details", A{M{"a", M{F64(1), 2}}})), invalid, "ERROR", "payload.details"},

		// envelope
		rejectCase{"non-string top-level key", enc(M{1, "x", "type", "PING", "timestamp", 1}), invalid, "", ""},
		rejectCase{"non-string key after type", enc(M{"type", "PING", "timestamp", 1, F64(1), 2}), invalid, "PING", ""},
		rejectCase{"non-string payload key", enc(M{"type", "COUNTER_REQUEST", "payload", M{"name", "c", 1, 2}}), invalid, "COUNTER_REQUEST", ""},
		rejectCase{"frame is array", enc(A{"type", "PING"}), invalid, "", ""},
		rejectCase{"frame is string", enc("PING"), invalid, "", ""},
		rejectCase{"frame is int", enc(1), invalid, "", ""},
		rejectCase{"frame is nil", enc(nil), invalid, "", ""},
		rejectCase{"missing type", enc(M{"timestamp", 1}), invalid, "", ""},
		rejectCase{"empty map", enc(M{}), invalid, "", ""},
		rejectCase{"type nil", enc(M{"type", nil}), invalid, "", ""},
		rejectCase{"type number", enc(M{"type", 1}), invalid, "", ""},
		rejectCase{"type bin", enc(M{"type", []byte("PING"), "timestamp", 1}), invalid, "", ""},
		rejectCase{"unknown type", enc(M{"type", "NOPE"}), []error{wire.ErrUnknownType}, "NOPE", ""},
		rejectCase{"lower-case type", enc(flat("ping", "timestamp", 1)), []error{wire.ErrUnknownType}, "ping", ""},
		rejectCase{"wrapped type sent flat", enc(M{"type", "COUNTER_SYNC", "name", "c", "state", M{"p", M{}, "n", M{}}}), invalid, "COUNTER_SYNC", "payload"},
		rejectCase{"wrapped without payload", enc(M{"type", "COUNTER_REQUEST"}), invalid, "COUNTER_REQUEST", "payload"},
		rejectCase{"wrapped with nil payload", enc(M{"type", "LOCK_LOST", "payload", nil}), invalid, "LOCK_LOST", "payload"},
		rejectCase{"wrapped with string payload", enc(M{"type", "ERROR", "payload", "x"}), invalid, "ERROR", "payload"},
		rejectCase{"wrapped with array payload", enc(M{"type", "ERROR", "payload", A{}}), invalid, "ERROR", "payload"},
	)
	return cs
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, c := range rejectCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, err := wire.Decode(c.frame)
			if err == nil {
				t.Fatalf("Decode = %#v, want error", m)
			}
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want errors.Is %v", err, w)
				}
			}
			if !slices.Contains(c.want, crdt.ErrInvalidEntry) && errors.Is(err, crdt.ErrInvalidEntry) {
				t.Errorf("err = %v unexpectedly wraps crdt.ErrInvalidEntry", err)
			}
			de, ok := wire.AsDecodeError(err)
			if !ok {
				t.Fatalf("err %T is not a *DecodeError", err)
			}
			if de.Type != c.typ {
				t.Errorf("DecodeError.Type = %q, want %q", de.Type, c.typ)
			}
			if c.field != "" && de.Field != c.field {
				t.Errorf("DecodeError.Field = %q, want %q", de.Field, c.field)
			}
			if de.Error() == "" || !strings.HasPrefix(de.Error(), c.typ) {
				t.Errorf("Error() = %q, want prefix %q", de.Error(), c.typ)
			}
		})
	}
}

func TestDecodeCounterAlias(t *testing.T) {
	t.Parallel()
	want := state(map[string]int64{"a": 3, "b": 1}, map[string]int64{"a": 2})
	for _, c := range []struct {
		name string
		st   M
	}{
		{"p n", M{"p", M{"a", 3, "b", 1}, "n", M{"a", 2}}},
		{"positive negative", M{"positive", M{"a", 3, "b", 1}, "negative", M{"a", 2}}},
		{"reversed order", M{"negative", M{"a", 2}, "positive", M{"b", 1, "a", 3}}},
		{"mixed", M{"p", M{"a", 3, "b", 1}, "negative", M{"a", F64(2)}}},
		{"both, merged by max", M{"p", M{"a", 1, "b", 1}, "positive", M{"a", 3}, "n", M{"a", 2}, "negative", M{"a", 1}}},
		{"unknown state keys", M{"x", A{1}, "p", M{"a", 3, "b", 1}, "n", M{"a", 2}, "y", nil}},
	} {
		for _, typ := range []string{"COUNTER_SYNC", "COUNTER_RESPONSE", "COUNTER_UPDATE"} {
			m, err := wire.Decode(enc(wrapped(typ, "name", "c", "state", c.st)))
			if err != nil {
				t.Errorf("%s %s: %v", c.name, typ, err)
				continue
			}
			var got crdt.State
			switch x := m.(type) {
			case wire.CounterSync:
				got = x.State
			case wire.CounterResponse:
				got = x.State
			case wire.CounterUpdate:
				got = x.State
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: state = %v, want %v", c.name, typ, got, want)
			}
		}
	}
}

func TestDecodeErrorCarriesIDs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		frame M
		typ   string
		field string
		reqID string
		lock  string
	}{
		{"ttl last", wrapped("LOCK_REQUEST", "requestId", "req-1", "name", "my-lock", "ttl", F64(0.5)),
			"LOCK_REQUEST", "payload.ttl", "req-1", "my-lock"},
		{"ttl first", wrapped("LOCK_REQUEST", "ttl", I8(-5), "name", "my-lock", "requestId", "req-1"),
			"LOCK_REQUEST", "payload.ttl", "req-1", "my-lock"},
		{"ttl between", wrapped("LOCK_REQUEST", "name", "my-lock", "ttl", "x", "requestId", "req-1"),
			"LOCK_REQUEST", "payload.ttl", "req-1", "my-lock"},
		{"payload before type", M{"payload", M{"ttl", F64(math.NaN()), "requestId", "req-1", "name", "my-lock"}, "type", "LOCK_REQUEST"},
			"LOCK_REQUEST", "payload.ttl", "req-1", "my-lock"},
		{"missing name", wrapped("LOCK_REQUEST", "requestId", "req-1"),
			"LOCK_REQUEST", "", "req-1", ""},
		{"bad requestId keeps name", wrapped("LOCK_REQUEST", "requestId", 5, "name", "my-lock"),
			"LOCK_REQUEST", "payload.requestId", "", "my-lock"},
		{"release token", wrapped("LOCK_RELEASE", "fencingToken", F64(1.5), "requestId", "req-2", "name", "n"),
			"LOCK_RELEASE", "payload.fencingToken", "req-2", "n"},
		{"counter entry", wrapped("COUNTER_SYNC", "state", M{"p", M{"a", -1}, "n", M{}}, "name", "views"),
			"COUNTER_SYNC", "payload.state", "", "views"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := wire.Decode(enc(c.frame))
			de, ok := wire.AsDecodeError(err)
			if !ok {
				t.Fatalf("err = %v, want *DecodeError", err)
			}
			if !errors.Is(err, wire.ErrInvalidField) {
				t.Errorf("err = %v, want ErrInvalidField", err)
			}
			if de.Type != c.typ || de.Field != c.field || de.RequestID != c.reqID || de.Name != c.lock {
				t.Errorf("DecodeError{Type %q Field %q RequestID %q Name %q}, want {%q %q %q %q}",
					de.Type, de.Field, de.RequestID, de.Name, c.typ, c.field, c.reqID, c.lock)
			}
		})
	}
}

func TestDecodeIgnoresUnknownKeysAndOrder(t *testing.T) {
	t.Parallel()
	want := wire.LockRequest{RequestID: "r", Name: "l", TTL: u64p(100)}
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"canonical", enc(wrapped("LOCK_REQUEST", "requestId", "r", "name", "l", "ttl", 100))},
		{"type last", enc(M{"payload", M{"requestId", "r", "name", "l", "ttl", 100}, "type", "LOCK_REQUEST"})},
		{"type in the middle", enc(M{"x", 1, "type", "LOCK_REQUEST", "payload", M{"ttl", 100, "name", "l", "requestId", "r"}})},
		{"unknown top-level keys", enc(M{"v", A{M{"a", nil}}, "type", "LOCK_REQUEST", "payload", M{"requestId", "r", "name", "l", "ttl", 100}, "extra", []byte{1}, "ts", F64(1.5)})},
		{"unknown payload keys", enc(wrapped("LOCK_REQUEST", "zzz", M{"deep", A{1, 2}}, "requestId", "r", "x", nil, "name", "l", "ttl", 100, "payload", "p"))},
		{"map16 everywhere", enc(M16{"type", "LOCK_REQUEST", "payload", M16{"requestId", "r", "name", "l", "ttl", U16(100)}})},
		{"str8 keys", enc(M{Raw{0xd9, 4, 't', 'y', 'p', 'e'}, "LOCK_REQUEST", "payload", M{"requestId", "r", "name", "l", Raw{0xda, 0, 3, 't', 't', 'l'}, 100}})},
	} {
		m, err := wire.Decode(c.frame)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("%s: %#v, want %#v", c.name, m, want)
		}
	}
	// Flat messages ignore a payload key; AUTH_REQUIRED ignores everything.
	m, err := wire.Decode(enc(flat("PING", "payload", M{"timestamp", 9}, "timestamp", 1)))
	if err != nil || m != (wire.Ping{Timestamp: 1}) {
		t.Errorf("PING with payload key = %#v, %v", m, err)
	}
	m, err = wire.Decode(enc(M{"reason", "token expired", "type", "AUTH_REQUIRED", "n", A{}}))
	if err != nil || m != (wire.AuthRequired{}) {
		t.Errorf("AUTH_REQUIRED with extra keys = %#v, %v", m, err)
	}
}

func TestEncodeRejectsInvalidState(t *testing.T) {
	t.Parallel()
	for _, st := range []crdt.State{
		{P: map[string]int64{"a": -1}},
		{N: map[string]int64{"a": crdt.MaxSafe + 1}},
		{P: map[string]int64{"": 1}},
	} {
		for _, m := range []wire.Message{
			wire.CounterSync{Name: "c", State: st},
			wire.CounterResponse{Name: "c", State: st},
			wire.CounterUpdate{Name: "c", State: st},
		} {
			if _, err := wire.Encode(m); !errors.Is(err, crdt.ErrInvalidEntry) {
				t.Errorf("Encode(%#v) = %v, want crdt.ErrInvalidEntry", m, err)
			}
		}
	}
}

func TestEncodeToAppendsAndRollsBack(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	buf.WriteString("prefix")
	if err := wire.EncodeTo(&buf, wire.Ping{Timestamp: 1}); err != nil {
		t.Fatal(err)
	}
	frame, _ := wire.Encode(wire.Ping{Timestamp: 1})
	if want := append([]byte("prefix"), frame...); !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("EncodeTo wrote % x, want % x", buf.Bytes(), want)
	}
	before := bytes.Clone(buf.Bytes())
	for _, m := range []wire.Message{
		wire.Error{Code: 1, Message: "m", Details: make(chan int)},
		wire.CounterSync{Name: "c", State: crdt.State{P: map[string]int64{"a": -1}}},
		(*wire.Ping)(nil), // pointers are not messages the codec knows
	} {
		if err := wire.EncodeTo(&buf, m); err == nil {
			t.Errorf("EncodeTo(%#v) succeeded", m)
		}
		if !bytes.Equal(buf.Bytes(), before) {
			t.Errorf("EncodeTo(%#v) left % x in buf", m, buf.Bytes()[len(before):])
		}
	}
}

func TestEncodeBatchNilData(t *testing.T) {
	t.Parallel()
	b, err := wire.Encode(wire.Batch{Count: 0})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte{0xa4, 'd', 'a', 't', 'a', 0xc4, 0x00}) {
		t.Fatalf("nil Data encoded as % x, want an empty bin", b)
	}
	m, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.(wire.Batch).Data; d == nil || len(d) != 0 {
		t.Fatalf("Data = %#v, want empty non-nil", d)
	}
}
