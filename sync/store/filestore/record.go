//go:build !js

package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/topgun-go/topgun/crdt"
)

// recordVersion is the first byte of every counter record. A record with
// another version is corrupt (or from a newer release) and is not read.
const recordVersion = 1

// crcLen is the size of the CRC-32C that ends every record.
const crcLen = 4

// castagnoli is the CRC-32C table; most CPUs compute it in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeState returns the record of st (see the package doc): version,
// the p side, the n side, CRC-32C. Zero entries are left out and nodes
// are sorted, so equal states have equal records and Apply can skip a
// write that changes nothing. st must be valid (entries in [0, 2^53-1]).
func encodeState(st crdt.State) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+crcLen+recordSize(st.P)+recordSize(st.N))
	b = append(b, recordVersion)
	b = appendSide(b, st.P)
	b = appendSide(b, st.N)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// recordSize bounds the encoded size of the entries of one side.
func recordSize(m map[string]int64) int {
	n := 0
	for node := range m {
		n += 2*binary.MaxVarintLen64 + len(node)
	}
	return n
}

func appendSide(b []byte, m map[string]int64) []byte {
	nodes := make([]string, 0, len(m))
	for node, v := range m {
		if v != 0 {
			nodes = append(nodes, node)
		}
	}
	slices.Sort(nodes)
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	for _, node := range nodes {
		b = binary.AppendUvarint(b, uint64(len(node)))
		b = append(b, node...)
		b = binary.AppendUvarint(b, uint64(m[node]))
	}
	return b
}

// errShort is the detail of a record that ends inside a field.
var errShort = errors.New("record truncated")

// decodeState parses a record written by encodeState. Anything else — a
// wrong checksum or version, a truncated field, trailing bytes, an empty,
// repeated or unsorted node id, a magnitude of zero or outside
// [0, 2^53-1] (crdt.Magnitude) — is an error describing the defect; the
// caller wraps it with ErrCorrupt. The state returned has non-nil maps and
// shares no memory with rec, which bbolt owns.
func decodeState(rec []byte) (crdt.State, error) {
	if len(rec) < 1+crcLen {
		return crdt.State{}, errShort
	}
	body, sum := rec[:len(rec)-crcLen], binary.BigEndian.Uint32(rec[len(rec)-crcLen:])
	if crc32.Checksum(body, castagnoli) != sum {
		return crdt.State{}, errors.New("checksum mismatch")
	}
	if body[0] != recordVersion {
		return crdt.State{}, fmt.Errorf("unknown record version %d", body[0])
	}
	d := decoder{b: body[1:]}
	st := crdt.State{P: d.side("p"), N: d.side("n")}
	switch {
	case d.err != nil:
		return crdt.State{}, d.err
	case len(d.b) != 0:
		return crdt.State{}, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	// The checks above cover every rule of Validate; it stays as the
	// contract every state handed to the client must meet.
	if err := st.Validate(); err != nil {
		return crdt.State{}, err
	}
	return st, nil
}

// decoder reads fields from b until the first error, which it keeps.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n <= 0:
		d.err = errShort // n < 0 is an overflow, also a broken record
		return 0
	case n > 1 && d.b[n-1] == 0:
		// A padded varint (0x80 0x00 for 0) reads as a valid number, but
		// encodeState never writes one: each state has one record.
		d.err = errors.New("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) side(name string) map[string]int64 {
	count := d.uvarint()
	// Each entry takes at least 3 bytes: cap the allocation by what the
	// record can hold, not by a count that may be garbage.
	m := make(map[string]int64, min(count, uint64(len(d.b)/3)))
	prev := ""
	for i := uint64(0); i < count && d.err == nil; i++ {
		l := d.uvarint()
		if d.err != nil {
			break
		}
		if l > uint64(len(d.b)) {
			d.err = errShort
			break
		}
		node := string(d.b[:l])
		d.b = d.b[l:]
		v := d.uvarint()
		switch {
		case d.err != nil:
		case node == "":
			d.err = fmt.Errorf("%w: empty node id in %s", crdt.ErrInvalidEntry, name)
		case i > 0 && node <= prev:
			d.err = fmt.Errorf("%s[%q] out of order or repeated", name, node)
		case v == 0:
			d.err = fmt.Errorf("%s[%q] is zero (never written)", name, node)
		default:
			x, err := crdt.Magnitude(v)
			if err != nil {
				d.err = fmt.Errorf("%s[%q]: %w", name, node, err)
				break
			}
			m[node] = x
			prev = node
		}
	}
	return m
}
