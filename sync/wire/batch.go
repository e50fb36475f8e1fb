package wire

import (
	"encoding/binary"
	"fmt"
)

// SplitBatch splits the data of a client→server BATCH (docs/protocol.md, "BATCH"):
// items concatenated, each a 4-byte big-endian length and that many bytes of
// a complete frame. The count field is not consulted. A truncated tail is
// ignored, as the reference server does. More than MaxBatchItems items is
// ErrBatchTooLarge.
func SplitBatch(data []byte) ([][]byte, error) {
	var items [][]byte
	for len(data) >= 4 {
		n := binary.BigEndian.Uint32(data)
		if uint64(n) > uint64(len(data)-4) {
			break // truncated tail
		}
		if len(items) == MaxBatchItems {
			return nil, ErrBatchTooLarge
		}
		items = append(items, data[4:4+n])
		data = data[4+n:]
	}
	return items, nil
}

// SplitServerBatch splits the data of a server→client BATCH as the
// reference TS client reads it: a little-endian u32 count, then per item a
// little-endian u32 length and the frame.
func SplitServerBatch(data []byte) ([][]byte, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("%w: batch shorter than its count", ErrMalformed)
	}
	count := binary.LittleEndian.Uint32(data)
	if count > MaxBatchItems {
		return nil, ErrBatchTooLarge
	}
	data = data[4:]
	items := make([][]byte, 0, count)
	for i := uint32(0); i < count; i++ {
		if len(data) < 4 {
			return nil, fmt.Errorf("%w: batch item %d truncated", ErrMalformed, i)
		}
		n := binary.LittleEndian.Uint32(data)
		if uint64(n) > uint64(len(data)-4) {
			return nil, fmt.Errorf("%w: batch item %d truncated", ErrMalformed, i)
		}
		items = append(items, data[4:4+n])
		data = data[4+n:]
	}
	return items, nil
}

// JoinBatch builds client→server BATCH data (big-endian framing).
func JoinBatch(frames ...[]byte) []byte {
	size := 0
	for _, f := range frames {
		size += 4 + len(f)
	}
	out := make([]byte, 0, size)
	for _, f := range frames {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}
