package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/topgun-go/topgun/crdt"
)

// Errors without detail are built once; each still wraps its sentinel.
var (
	errNil          = errors.New("is nil")
	errIsNil        = fmt.Errorf("%w: %v", ErrInvalidField, errNil)
	errKeyNotString = fmt.Errorf("%w: map key is not a string", ErrInvalidField)
	errNotString    = fmt.Errorf("%w: not a string", ErrInvalidField)
	errNotNumber    = fmt.Errorf("%w: not a number", ErrInvalidField)
	errNotBool      = fmt.Errorf("%w: not a bool", ErrInvalidField)
	errNotMap       = fmt.Errorf("%w: frame is not a map", ErrInvalidField)
	errPayloadMap   = fmt.Errorf("%w: not a map", ErrInvalidField)
	errMissing      = fmt.Errorf("%w: missing", ErrInvalidField)
	errStateMap     = fmt.Errorf("%w: state is not a map", ErrInvalidField)
	errStateSides   = fmt.Errorf("%w: state needs both p and n", ErrInvalidField)
)

// Decode parses one frame. Errors are *DecodeError values wrapping a
// sentinel error of this package. Strings and byte slices in the message
// are copies: the caller may reuse b once Decode returns.
func Decode(b []byte) (Message, error) {
	if err := check(b); err != nil {
		return nil, &DecodeError{Err: err}
	}
	d := decoder{b: b}
	k, typ, err := d.findType()
	if err != nil {
		return nil, err
	}
	de := DecodeError{Type: typ}
	var f fieldSet
	if err := d.decodeInto(k, &f, &de); err != nil {
		de.Err = err
		if k.wrapped() && (de.RequestID == "" || de.Name == "") {
			// Key order is free, so the bad field may have come before
			// requestId or name; read them in a second pass.
			d.salvageIDs(&de)
		}
		e := de
		return nil, &e
	}
	return f.build(k), nil
}

// decoder reads MessagePack from a frame that check has accepted. check
// guarantees that the frame is one well-formed value without ext types and
// that every declared length fits the bytes left, so the decoder trusts
// lengths and never runs past the end (Go's bounds checks still apply).
type decoder struct {
	b   []byte
	pos int
}

// findType reads the "type" key of the top-level map, wherever it is.
func (d *decoder) findType() (msgKind, string, error) {
	d.pos = 0
	n, ok := d.mapLen()
	if !ok {
		return 0, "", &DecodeError{Field: "type", Err: errNotMap}
	}
	for i := 0; i < n; i++ {
		key, err := d.key()
		if err != nil {
			return 0, "", &DecodeError{Field: "type", Err: err}
		}
		if string(key) != "type" {
			d.skip()
			continue
		}
		s, err := d.strBytes()
		if err != nil {
			return 0, "", &DecodeError{Field: "type", Err: err}
		}
		k, typ := kindOf(s)
		if typ == "" {
			return 0, "", &DecodeError{Type: string(s), Err: ErrUnknownType}
		}
		return k, typ, nil
	}
	return 0, "", &DecodeError{Field: "type", Err: errMissing}
}

// decodeInto decodes the fields of a message of kind k into f.
func (d *decoder) decodeInto(k msgKind, f *fieldSet, de *DecodeError) error {
	wrapped := k.wrapped()
	d.pos = 0
	n, _ := d.mapLen()
	sawPayload := false
	for i := 0; i < n; i++ {
		key, err := d.key()
		if err != nil {
			return err
		}
		switch {
		case string(key) == "type":
			d.skip()
		case wrapped && string(key) == "payload":
			if d.b[d.pos] == 0xc0 {
				d.pos++
				break
			}
			sawPayload = true
			if err := d.decodePayload(k, f, de); err != nil {
				return err
			}
		case wrapped:
			d.skip()
		default:
			known, err := f.field(k, key, d, de)
			if err != nil {
				de.Field = string(key)
				return err
			}
			if !known {
				d.skip()
			}
		}
	}
	if wrapped && !sawPayload {
		de.Field = "payload"
		return errMissing
	}
	return f.complete(k, de.seen)
}

func (d *decoder) decodePayload(k msgKind, f *fieldSet, de *DecodeError) error {
	n, ok := d.mapLen()
	if !ok {
		de.Field = "payload"
		return errPayloadMap
	}
	for i := 0; i < n; i++ {
		key, err := d.key()
		if err != nil {
			return err
		}
		known, err := f.field(k, key, d, de)
		if err != nil {
			de.Field = "payload." + string(key)
			return err
		}
		if !known {
			d.skip()
		}
	}
	return nil
}

// salvageIDs fills de.RequestID and de.Name, where still empty, from the
// payload of a frame that check accepted but decodeInto rejected: the
// first non-empty string value of each key, in frame order. It stops
// silently at the first key that is not a string.
func (d *decoder) salvageIDs(de *DecodeError) {
	d.pos = 0
	n, _ := d.mapLen()
	for i := 0; i < n; i++ {
		key, err := d.key()
		if err != nil {
			return
		}
		if string(key) != "payload" {
			d.skip()
			continue
		}
		pn, ok := d.mapLen()
		if !ok {
			d.skip()
			continue
		}
		for j := 0; j < pn; j++ {
			pk, err := d.key()
			if err != nil {
				return
			}
			var dst *string
			switch string(pk) {
			case "requestId":
				dst = &de.RequestID
			case "name":
				dst = &de.Name
			}
			if dst != nil && *dst == "" {
				if s, err := d.strBytes(); err == nil {
					*dst = string(s)
					continue
				}
			}
			d.skip()
		}
	}
}

// Primitive readers. Each reads one value; on a type mismatch it returns an
// error and the decoder is not used again.

func (d *decoder) be16() int {
	v := int(binary.BigEndian.Uint16(d.b[d.pos:]))
	d.pos += 2
	return v
}

func (d *decoder) be32() int {
	v := int(binary.BigEndian.Uint32(d.b[d.pos:]))
	d.pos += 4
	return v
}

// skip steps over one value, containers included. A count of values still
// to skip is all the state it needs.
func (d *decoder) skip() {
	for n := 1; n > 0; n-- {
		c := d.b[d.pos]
		d.pos++
		switch {
		case c <= 0x7f || c >= 0xe0: // fixints
		case c <= 0x8f: // fixmap
			n += 2 * int(c&0x0f)
		case c <= 0x9f: // fixarray
			n += int(c & 0x0f)
		case c <= 0xbf: // fixstr
			d.pos += int(c & 0x1f)
		default:
			switch c {
			case 0xcc, 0xd0:
				d.pos++
			case 0xcd, 0xd1:
				d.pos += 2
			case 0xca, 0xce, 0xd2:
				d.pos += 4
			case 0xcb, 0xcf, 0xd3:
				d.pos += 8
			case 0xc4, 0xd9: // bin8, str8
				d.pos += 1 + int(d.b[d.pos])
			case 0xc5, 0xda: // bin16, str16
				d.pos += d.be16()
			case 0xc6, 0xdb: // bin32, str32
				d.pos += d.be32()
			case 0xdc:
				n += d.be16()
			case 0xdd:
				n += d.be32()
			case 0xde:
				n += 2 * d.be16()
			case 0xdf:
				n += 2 * d.be32()
			} // nil, false, true: nothing more; ext and 0xc1 fail check
		}
	}
}

// mapLen reads a map header; ok is false, and nothing is read, when the
// next value is not a map (nil included).
func (d *decoder) mapLen() (n int, ok bool) {
	c := d.b[d.pos]
	switch {
	case c&0xf0 == 0x80:
		d.pos++
		return int(c & 0x0f), true
	case c == 0xde:
		d.pos++
		return d.be16(), true
	case c == 0xdf:
		d.pos++
		return d.be32(), true
	}
	return 0, false
}

// arrayLen is mapLen for arrays.
func (d *decoder) arrayLen() (n int, ok bool) {
	c := d.b[d.pos]
	switch {
	case c&0xf0 == 0x90:
		d.pos++
		return int(c & 0x0f), true
	case c == 0xdc:
		d.pos++
		return d.be16(), true
	case c == 0xdd:
		d.pos++
		return d.be32(), true
	}
	return 0, false
}

// raw reads a string (bin false) or bin (bin true) and returns its bytes,
// aliasing the frame.
func (d *decoder) raw(bin bool) ([]byte, bool) {
	c := d.b[d.pos]
	n := 0
	switch {
	case !bin && c&0xe0 == 0xa0:
		d.pos++
		n = int(c & 0x1f)
	case !bin && c == 0xd9, bin && c == 0xc4:
		n = int(d.b[d.pos+1])
		d.pos += 2
	case !bin && c == 0xda, bin && c == 0xc5:
		d.pos++
		n = d.be16()
	case !bin && c == 0xdb, bin && c == 0xc6:
		d.pos++
		n = d.be32()
	default:
		return nil, false
	}
	s := d.b[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return s, true
}

// strBytes reads a string without copying it; nil gives errIsNil.
func (d *decoder) strBytes() ([]byte, error) {
	if s, ok := d.raw(false); ok {
		return s, nil
	}
	if d.b[d.pos] == 0xc0 {
		return nil, errIsNil
	}
	return nil, errNotString
}

// key reads a map key, which must be a string.
func (d *decoder) key() ([]byte, error) {
	if s, ok := d.raw(false); ok {
		return s, nil
	}
	return nil, errKeyNotString
}

// str reads a string, copied out of the frame; nil gives errIsNil.
func (d *decoder) str() (string, error) {
	s, err := d.strBytes()
	return string(s), err
}

// optStr reads a string or nil (as "").
func (d *decoder) optStr() (string, error) {
	if d.isNil() {
		return "", nil
	}
	return d.str()
}

// isNil consumes a nil and reports whether there was one.
func (d *decoder) isNil() bool {
	if d.b[d.pos] == 0xc0 {
		d.pos++
		return true
	}
	return false
}

func (d *decoder) bool() (bool, error) {
	switch d.b[d.pos] {
	case 0xc2:
		d.pos++
		return false, nil
	case 0xc3:
		d.pos++
		return true, nil
	case 0xc0:
		return false, errIsNil
	}
	return false, errNotBool
}

// bytes reads a bin or a string as a fresh, non-nil []byte.
func (d *decoder) bytes() ([]byte, error) {
	s, ok := d.raw(true)
	if !ok {
		if s, ok = d.raw(false); !ok {
			return nil, fmt.Errorf("%w: data msgpack: invalid code=%x decoding string/bytes length",
				ErrInvalidField, d.b[d.pos])
		}
	}
	out := make([]byte, len(s))
	copy(out, s)
	return out, nil
}

// numKind says which Go type a MessagePack number decodes to.
type numKind uint8

const (
	numInt   numKind = iota + 1 // fixints and int8–int64: int64
	numUint                     // uint8–uint64: uint64
	numFloat                    // float32 and float64: float64
)

// number is any MessagePack int or float, bits holding the int64, uint64
// or float64 bits according to kind.
type number struct {
	kind numKind
	bits uint64
}

func (n number) value() any {
	switch n.kind {
	case numInt:
		return int64(n.bits)
	case numUint:
		return n.bits
	}
	return math.Float64frombits(n.bits)
}

// magnitude is the fast path of crdt.Magnitude: ok is false when
// crdt.Magnitude(n.value()) would fail.
func (n number) magnitude() (int64, bool) {
	switch n.kind {
	case numInt:
		v := int64(n.bits)
		return v, v >= 0 && v <= crdt.MaxSafe
	case numUint:
		return int64(n.bits), n.bits <= crdt.MaxSafe
	}
	f := math.Float64frombits(n.bits)
	if f >= 0 && f <= crdt.MaxSafe && f == math.Trunc(f) { // false for NaN
		return int64(f), true
	}
	return 0, false
}

// number reads any int or float.
func (d *decoder) number() (number, error) {
	b, p := d.b, d.pos
	c := b[p]
	if c <= 0x7f {
		d.pos++
		return number{numInt, uint64(c)}, nil
	}
	if c >= 0xe0 {
		d.pos++
		return number{numInt, uint64(int64(int8(c)))}, nil
	}
	var n number
	switch c {
	case 0xcc:
		n, d.pos = number{numUint, uint64(b[p+1])}, p+2
	case 0xcd:
		n, d.pos = number{numUint, uint64(binary.BigEndian.Uint16(b[p+1:]))}, p+3
	case 0xce:
		n, d.pos = number{numUint, uint64(binary.BigEndian.Uint32(b[p+1:]))}, p+5
	case 0xcf:
		n, d.pos = number{numUint, binary.BigEndian.Uint64(b[p+1:])}, p+9
	case 0xd0:
		n, d.pos = number{numInt, uint64(int64(int8(b[p+1])))}, p+2
	case 0xd1:
		n, d.pos = number{numInt, uint64(int64(int16(binary.BigEndian.Uint16(b[p+1:]))))}, p+3
	case 0xd2:
		n, d.pos = number{numInt, uint64(int64(int32(binary.BigEndian.Uint32(b[p+1:]))))}, p+5
	case 0xd3:
		n, d.pos = number{numInt, binary.BigEndian.Uint64(b[p+1:])}, p+9
	case 0xca:
		f := math.Float32frombits(binary.BigEndian.Uint32(b[p+1:]))
		n, d.pos = number{numFloat, math.Float64bits(float64(f))}, p+5
	case 0xcb:
		n, d.pos = number{numFloat, binary.BigEndian.Uint64(b[p+1:])}, p+9
	case 0xc0:
		return n, errIsNil
	default:
		return n, errNotNumber
	}
	return n, nil
}

// uint64 reads a non-negative integer, accepting integral floats (the
// reference TS client sends timestamps as float64).
func (d *decoder) uint64() (uint64, error) {
	n, err := d.number()
	if err != nil {
		return 0, err
	}
	switch n.kind {
	case numInt:
		if x := int64(n.bits); x < 0 {
			return 0, fmt.Errorf("%w: %d is negative", ErrInvalidField, x)
		}
		return n.bits, nil
	case numUint:
		return n.bits, nil
	}
	x := math.Float64frombits(n.bits)
	if math.IsNaN(x) || math.IsInf(x, 0) || x != math.Trunc(x) || x < 0 || x >= 1<<64 {
		return 0, fmt.Errorf("%w: %v is not a non-negative integer", ErrInvalidField, x)
	}
	return uint64(x), nil
}

// uint32 reads a u32 strictly as an integer, as Rust does for
// protocolVersion and error codes.
func (d *decoder) uint32() (uint32, error) {
	n, err := d.number()
	if err != nil {
		return 0, err
	}
	switch n.kind {
	case numInt:
		if x := int64(n.bits); x >= 0 && x <= math.MaxUint32 {
			return uint32(x), nil
		}
	case numUint:
		if n.bits <= math.MaxUint32 {
			return uint32(n.bits), nil
		}
	case numFloat:
		return 0, fmt.Errorf("%w: %v must be an integer", ErrInvalidField, n.value())
	}
	return 0, fmt.Errorf("%w: %v out of u32 range", ErrInvalidField, n.value())
}

// any reads a loosely typed value (ERROR.details) into canonical Go types,
// so that Decode(Encode(m)) gives m back: nil, bool, int64 (uint64 above
// math.MaxInt64), float64, string, []byte, []any and map[string]any with
// string keys. check has bounded the depth and every declared length.
func (d *decoder) any() (any, error) {
	switch c := d.b[d.pos]; {
	case c == 0xc0:
		d.pos++
		return nil, nil
	case c == 0xc2 || c == 0xc3:
		return d.bool()
	}
	if s, ok := d.raw(false); ok {
		return string(s), nil
	}
	if s, ok := d.raw(true); ok {
		out := make([]byte, len(s))
		copy(out, s)
		return out, nil
	}
	if n, ok := d.arrayLen(); ok {
		s := make([]any, n)
		for i := range s {
			var err error
			if s[i], err = d.any(); err != nil {
				return nil, err
			}
		}
		return s, nil
	}
	if n, ok := d.mapLen(); ok {
		m := make(map[string]any, n)
		for i := 0; i < n; i++ {
			k, err := d.key()
			if err != nil {
				return nil, err
			}
			v, err := d.any()
			if err != nil {
				return nil, err
			}
			m[string(k)] = v
		}
		return m, nil
	}
	n, err := d.number()
	if err != nil {
		return nil, err
	}
	if n.kind == numUint && n.bits <= math.MaxInt64 {
		return int64(n.bits), nil
	}
	return n.value(), nil
}

// state reads {p, n} (or {positive, negative}); both sides required.
func (d *decoder) state() (crdt.State, error) {
	var s crdt.State
	n, ok := d.mapLen()
	if !ok {
		return s, errStateMap
	}
	for i := 0; i < n; i++ {
		k, err := d.key()
		if err != nil {
			return s, err
		}
		var side *map[string]int64
		var name string
		switch string(k) {
		case "p":
			side, name = &s.P, "p"
		case "positive":
			side, name = &s.P, "positive"
		case "n":
			side, name = &s.N, "n"
		case "negative":
			side, name = &s.N, "negative"
		default:
			d.skip()
			continue
		}
		m, err := d.side(name)
		if err != nil {
			return s, err
		}
		if *side == nil {
			*side = m
			continue
		}
		for node, v := range m { // p and positive both present: merge by max
			if v > (*side)[node] {
				(*side)[node] = v
			}
		}
	}
	if s.P == nil || s.N == nil {
		return s, errStateSides
	}
	return s, nil
}

func (d *decoder) side(side string) (map[string]int64, error) {
	n, ok := d.mapLen()
	if !ok {
		return nil, fmt.Errorf("%w: state.%s is not a map", ErrInvalidField, side)
	}
	m := make(map[string]int64, n)
	for i := 0; i < n; i++ {
		node, err := d.key()
		if err != nil {
			return nil, err
		}
		if len(node) == 0 {
			return nil, fmt.Errorf("%w: %w: state.%s has an empty node id",
				ErrInvalidField, crdt.ErrInvalidEntry, side)
		}
		v, err := d.number()
		if err != nil {
			return nil, fmt.Errorf("%w: %w: state.%s[%q]: %v",
				ErrInvalidField, crdt.ErrInvalidEntry, side, node, err)
		}
		x, ok := v.magnitude()
		if !ok {
			_, err := crdt.Magnitude(v.value()) // for its error
			return nil, fmt.Errorf("%w: state.%s[%q]: %w", ErrInvalidField, side, node, err)
		}
		m[string(node)] = x
	}
	return m, nil
}

func fieldErr(what string, err error) error {
	if errors.Is(err, ErrInvalidField) || errors.Is(err, crdt.ErrInvalidEntry) {
		return err
	}
	return fmt.Errorf("%w: %s %v", ErrInvalidField, what, err)
}

func missing(name string) error { return fmt.Errorf("%w: %s is required", ErrInvalidField, name) }
