package wire

import (
	"encoding/binary"
	"fmt"
	"math"
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

// serverBatchEnvelope is the most bytes a server→client BATCH frame adds
// to its data: {"type": "BATCH", "count": u16 (≤ MaxBatchItems), "data":
// bin32 header}.
const serverBatchEnvelope = 1 + 5 + 6 + 6 + 3 + 5 + 5

// serverBatchDataSize is the size of the server→client BATCH data
// carrying frames.
func serverBatchDataSize(frames [][]byte) int {
	n := 4
	for _, f := range frames {
		n += 4 + len(f)
	}
	return n
}

func appendServerBatchData(dst []byte, frames [][]byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(frames)))
	for _, f := range frames {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f)))
		dst = append(dst, f...)
	}
	return dst
}

// JoinServerBatch builds server→client BATCH data, the layout
// SplitServerBatch reads: a little-endian u32 count, then per frame a
// little-endian u32 length and the frame.
func JoinServerBatch(frames ...[]byte) []byte {
	return appendServerBatchData(make([]byte, 0, serverBatchDataSize(frames)), frames)
}

// AppendServerBatch appends to dst the BATCH frame that carries frames in
// the server→client layout: the bytes of Encode(Batch{Count:
// len(frames), Data: JoinServerBatch(frames...)}), built without the
// intermediate copy. It does not check the limits (see ServerBatches).
func AppendServerBatch(dst []byte, frames [][]byte) []byte {
	w := begin(dst, TypeBatch, false)
	w.uint("count", uint64(len(frames)), true)
	w.key("data")
	n := serverBatchDataSize(frames)
	switch {
	case n < 256:
		w.b = append(w.b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		w.b = binary.BigEndian.AppendUint16(append(w.b, 0xc5), uint16(n))
	default:
		w.b = binary.BigEndian.AppendUint32(append(w.b, 0xc6), uint32(n))
	}
	return appendServerBatchData(w.b, frames)
}

// ServerBatches hands frames, in order, to emit in as few frames as the
// limits allow: consecutive frames share a server→client BATCH of at most
// MaxBatchItems items and MaxFrameSize bytes in all, and a frame that
// shares with no other (a lone frame, or one too large to share) is
// emitted as it is. The BATCH frames are appended to buf one after
// another, so each stays valid until the caller reuses the storage that
// is returned (a writer can collect them all for one socket write). The
// first error from emit stops the walk and is returned.
func ServerBatches(buf []byte, frames [][]byte, emit func(frame []byte) error) ([]byte, error) {
	for len(frames) > 0 {
		n, size := 0, serverBatchEnvelope+4
		for n < len(frames) && n < MaxBatchItems && size+4+len(frames[n]) <= MaxFrameSize {
			size += 4 + len(frames[n])
			n++
		}
		if n <= 1 {
			if err := emit(frames[0]); err != nil {
				return buf, err
			}
			frames = frames[1:]
			continue
		}
		start := len(buf)
		buf = AppendServerBatch(buf, frames[:n])
		if err := emit(buf[start:len(buf):len(buf)]); err != nil {
			return buf, err
		}
		frames = frames[n:]
	}
	return buf, nil
}
