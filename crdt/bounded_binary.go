package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The binary form of a BState, for stores (the browser's IndexedDB and the
// Go file store): a version byte, Min as a varint, then P and N as counted
// (node, uvarint) entries and T as counted rows of them. It is small, and
// needs no reflection (encoding/json would add about 170 KB brotli to the
// WebAssembly client).
const bstateBinaryVersion = 1

// AppendBinary appends the binary form of s to b.
func (s BState) AppendBinary(b []byte) []byte {
	b = append(b, bstateBinaryVersion)
	b = binary.AppendVarint(b, s.Min)
	b = appendEntries(b, s.P)
	b = appendEntries(b, s.N)
	b = binary.AppendUvarint(b, uint64(len(s.T)))
	for from, row := range s.T {
		b = appendString(b, from)
		b = appendEntries(b, row)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEntries(b []byte, m map[string]int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, v := range m {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(v))
	}
	return b
}

// ErrCorrupt: bytes that are not the binary form of a valid BState.
var ErrCorrupt = errors.New("crdt: corrupt bounded counter")

// DecodeBState parses what AppendBinary wrote and validates it.
func DecodeBState(b []byte) (BState, error) {
	d := binReader{b: b}
	if v := d.byte(); v != bstateBinaryVersion {
		return BState{}, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	s := BState{Min: d.varint()}
	s.P, s.N = d.entries(), d.entries()
	rows := d.count()
	s.T = make(map[string]map[string]int64, rows)
	for range rows {
		from := d.string()
		s.T[from] = d.entries()
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d bytes after the end", ErrCorrupt, len(d.b))
	}
	if d.err != nil {
		return BState{}, d.err
	}
	if err := s.Validate(); err != nil {
		return BState{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return s, nil
}

// binReader reads the binary form; the first error sticks and every later
// read returns zero values.
type binReader struct {
	b   []byte
	err error
}

func (d *binReader) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or bad %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *binReader) byte() byte {
	if len(d.b) == 0 {
		d.fail("version")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *binReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length, bounded by the bytes left (each item takes at
// least one), so a corrupt length cannot make a huge allocation.
func (d *binReader) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *binReader) string() string {
	n := d.count()
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *binReader) entries() map[string]int64 {
	n := d.count()
	m := make(map[string]int64, n)
	for range n {
		k := d.string()
		v := d.uvarint()
		if v > MaxSafe {
			d.fail("entry")
			return m
		}
		if _, dup := m[k]; dup {
			d.fail("duplicate entry")
			return m
		}
		m[k] = int64(v)
	}
	return m
}
