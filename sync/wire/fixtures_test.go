package wire_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// fixtureDir holds the upstream cross-language fixtures ,
// relative to this package's directory.
var fixtureDir = filepath.Join("testdata", "fixtures")

// fixtureWant is what each upstream fixture decodes to.
var fixtureWant = map[string]wire.Message{
	"AUTH":            wire.Auth{Token: "eyJhbGciOiJIUzI1NiJ9.test-jwt-token", ProtocolVersion: 1},
	"AUTH_ACK":        wire.AuthAck{ProtocolVersion: 1},
	"AUTH_FAIL":       wire.AuthFail{Error: "invalid token", Code: 401},
	"AUTH_REQUIRED":   wire.AuthRequired{},
	"BATCH":           wire.Batch{Count: 3, Data: []byte{0xde, 0xad, 0xbe, 0xef}},
	"COUNTER_REQUEST": wire.CounterRequest{Name: "page-views"},
	"COUNTER_SYNC": wire.CounterSync{Name: "page-views", State: crdt.State{
		P: map[string]int64{"node-1": 10}, N: map[string]int64{}}},
	"ERROR":         wire.Error{Code: 500, Message: "internal server error", Details: "stack trace here"},
	"LOCK_GRANTED":  wire.LockGranted{RequestID: "lock-1", Name: "my-lock", FencingToken: 42},
	"LOCK_RELEASE":  wire.LockRelease{RequestID: "lock-req-1", Name: "my-lock", FencingToken: 7},
	"LOCK_RELEASED": wire.LockReleased{RequestID: "lock-1", Name: "my-lock", Success: true},
	"LOCK_REQUEST":  wire.LockRequest{RequestID: "lock-req-1", Name: "my-lock", TTL: u64p(30000)},
	"PING":          wire.Ping{Timestamp: 1700000000000},
	"PONG":          wire.Pong{Timestamp: 1700000000000, ServerTime: 1700000000005},
}

// fixtureIgnored lists JSON keys a fixture carries that the protocol does
// not (AUTH_REQUIRED.reason is in neither schema nor server).
var fixtureIgnored = map[string][]string{"AUTH_REQUIRED": {"reason"}}

type fixture struct {
	name    string
	msgpack []byte
	json    []byte
}

// loadFixtures reads every X.msgpack with its X.json twin.
func loadFixtures(tb testing.TB) []fixture {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.msgpack"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		abs, _ := filepath.Abs(fixtureDir)
		tb.Fatalf("no fixtures: expected upstream *.msgpack files in %s (TopGun's cross-language fixtures)", abs)
	}
	var fs []fixture
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".msgpack")
		mp, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		js, err := os.ReadFile(strings.TrimSuffix(p, ".msgpack") + ".json")
		if err != nil {
			tb.Fatalf("fixture %s has no JSON twin: %v", name, err)
		}
		fs = append(fs, fixture{name, mp, js})
	}
	return fs
}

func TestFixturesDecode(t *testing.T) {
	t.Parallel()
	fs := loadFixtures(t)
	names := map[string]bool{}
	for _, f := range fs {
		names[f.name] = true
	}
	for name := range fixtureWant {
		if !names[name] {
			t.Errorf("fixture %s is missing from %s", name, fixtureDir)
		}
	}
	for _, f := range fs {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			want, ok := fixtureWant[f.name]
			if !ok {
				t.Fatalf("new fixture %s: add it to fixtureWant", f.name)
			}
			got, err := wire.Decode(f.msgpack)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode = %#v, want %#v", got, want)
			}
			checkAgainstJSON(t, f.name, got, f.json)
		})
	}
}

// checkAgainstJSON compares every key of the JSON twin with the struct
// field of the same name (case-insensitive: requestId ~ RequestID), so the
// expected table above cannot drift from the upstream JSON.
func checkAgainstJSON(t *testing.T, name string, m wire.Message, raw []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	if top["type"] != m.Type() {
		t.Errorf("json type %v, decoded %s", top["type"], m.Type())
	}
	delete(top, "type")
	fields := top
	if p, ok := top["payload"]; ok {
		if len(top) != 1 {
			t.Errorf("wrapped fixture has keys beside payload: %v", top)
		}
		fields, ok = p.(map[string]any)
		if !ok {
			t.Fatalf("payload is %T", p)
		}
	}
	v := reflect.ValueOf(m)
	carried := 0
	for key, jv := range fields {
		f := v.FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, key) })
		if !f.IsValid() {
			ignored := false
			for _, k := range fixtureIgnored[name] {
				ignored = ignored || k == key
			}
			if !ignored {
				t.Errorf("json key %q has no field in %T", key, m)
			}
			continue
		}
		carried++
		if err := jsonMatches(f, jv); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	// No non-zero field may be absent from the JSON.
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsZero() {
			continue
		}
		fn := v.Type().Field(i).Name
		found := false
		for key := range fields {
			found = found || strings.EqualFold(fn, key)
		}
		if !found {
			t.Errorf("field %s = %v is not in the JSON", fn, v.Field(i))
		}
	}
	if carried == 0 && v.NumField() > 0 {
		t.Errorf("no JSON key matched a field of %T", m)
	}
}

func jsonMatches(f reflect.Value, jv any) error {
	if f.Kind() == reflect.Pointer {
		if f.IsNil() {
			if jv != nil {
				return fmt.Errorf("nil, json %v", jv)
			}
			return nil
		}
		f = f.Elem()
	}
	switch f.Kind() {
	case reflect.Uint32, reflect.Uint64:
		n, ok := jv.(json.Number)
		if !ok {
			return fmt.Errorf("json %T for number", jv)
		}
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil || u != f.Uint() {
			return fmt.Errorf("%d, json %s", f.Uint(), n)
		}
	case reflect.String:
		if jv != f.String() {
			return fmt.Errorf("%q, json %v", f.String(), jv)
		}
	case reflect.Bool:
		if jv != f.Bool() {
			return fmt.Errorf("%v, json %v", f.Bool(), jv)
		}
	case reflect.Slice: // []byte; JSON has Node's {"type":"Buffer","data":[…]}
		buf, ok := jv.(map[string]any)
		if !ok || buf["type"] != "Buffer" {
			return fmt.Errorf("json %v is not a Buffer", jv)
		}
		arr, _ := buf["data"].([]any)
		b := make([]byte, len(arr))
		for i, x := range arr {
			n, err := strconv.ParseUint(x.(json.Number).String(), 10, 8)
			if err != nil {
				return err
			}
			b[i] = byte(n)
		}
		if !bytes.Equal(b, f.Bytes()) {
			return fmt.Errorf("% x, json % x", f.Bytes(), b)
		}
	case reflect.Struct: // crdt.State
		st := f.Interface().(crdt.State)
		js, ok := jv.(map[string]any)
		if !ok {
			return fmt.Errorf("json %T for state", jv)
		}
		for side, m := range map[string]map[string]int64{"p": st.P, "n": st.N} {
			jm, ok := js[side].(map[string]any)
			if !ok || len(jm) != len(m) {
				return fmt.Errorf("state.%s %v, json %v", side, m, js[side])
			}
			for node, x := range jm {
				n, err := strconv.ParseInt(x.(json.Number).String(), 10, 64)
				if v, ok := m[node]; err != nil || !ok || v != n {
					return fmt.Errorf("state.%s[%q] = %d, json %v", side, node, v, x)
				}
			}
		}
	case reflect.Interface: // Error.Details
		if !reflect.DeepEqual(f.Interface(), jv) {
			return fmt.Errorf("%#v, json %#v", f.Interface(), jv)
		}
	default:
		return fmt.Errorf("unhandled kind %s", f.Kind())
	}
	return nil
}

func TestFixturesReencode(t *testing.T) {
	t.Parallel()
	for _, f := range loadFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			m, err := wire.Decode(f.msgpack)
			if err != nil {
				t.Fatal(err)
			}
			b, err := wire.Encode(m)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			back, err := wire.Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode): %v; frame % x", err, b)
			}
			if !reflect.DeepEqual(back, m) {
				t.Fatalf("re-encoded %#v, want %#v", back, m)
			}
			// Like rmp_serde, the encoder emits fixmaps, not msgpackr's map16.
			if b[0]&0xf0 != 0x80 {
				t.Errorf("frame starts % x, want a fixmap", b[:1])
			}
			if m.Type() != wire.TypeAuthRequired && bytes.Contains(b, []byte{0xde, 0x00}) {
				t.Errorf("frame has a map16 header: % x", b)
			}
		})
	}
}

func TestEncodeCompactForms(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		m    wire.Message
		want []byte // exact frame
	}{
		{"COUNTER_UPDATE entries as float64", wire.CounterUpdate{Name: "c", State: crdt.State{
			P: map[string]int64{"b": 2, "a": 1}, N: nil}},
			join(
				[]byte{0x82, 0xa4}, "type", []byte{0xae}, "COUNTER_UPDATE", []byte{0xa7}, "payload",
				[]byte{0x82, 0xa4}, "name", []byte{0xa1}, "c", []byte{0xa5}, "state",
				[]byte{0x82, 0xa1}, "p", []byte{0x82},
				[]byte{0xa1}, "a", []byte{0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0},
				[]byte{0xa1}, "b", []byte{0xcb, 0x40, 0x00, 0, 0, 0, 0, 0, 0},
				[]byte{0xa1}, "n", []byte{0x80},
			)},
		{"LOCK_GRANTED fixint token", wire.LockGranted{RequestID: "r", Name: "l", FencingToken: 42},
			join(
				[]byte{0x82, 0xa4}, "type", []byte{0xac}, "LOCK_GRANTED", []byte{0xa7}, "payload",
				[]byte{0x83, 0xa9}, "requestId", []byte{0xa1}, "r", []byte{0xa4}, "name", []byte{0xa1}, "l",
				[]byte{0xac}, "fencingToken", []byte{0x2a},
			)},
		{"PONG uint64 clock, uint16 time", wire.Pong{Timestamp: 1700000000000, ServerTime: 30000},
			join(
				[]byte{0x83, 0xa4}, "type", []byte{0xa4}, "PONG",
				[]byte{0xa9}, "timestamp", []byte{0xcf, 0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00},
				[]byte{0xaa}, "serverTime", []byte{0xcd, 0x75, 0x30},
			)},
		{"ERROR uint16 code", wire.Error{Code: 500, Message: "m"},
			join(
				[]byte{0x82, 0xa4}, "type", []byte{0xa5}, "ERROR", []byte{0xa7}, "payload",
				[]byte{0x82, 0xa4}, "code", []byte{0xcd, 0x01, 0xf4}, []byte{0xa7}, "message", []byte{0xa1}, "m",
			)},
		{"AUTH_REQUIRED type only", wire.AuthRequired{},
			join([]byte{0x81, 0xa4}, "type", []byte{0xad}, "AUTH_REQUIRED")},
	} {
		got, err := wire.Encode(c.m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s:\n got % x\nwant % x", c.name, got, c.want)
		}
	}
}

// join concatenates []byte and string parts.
func join(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch x := p.(type) {
		case []byte:
			b = append(b, x...)
		case string:
			b = append(b, x...)
		}
	}
	return b
}
