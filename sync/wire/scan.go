package wire

import "fmt"

// check walks a frame without decoding it and verifies that it is exactly
// one well-formed MessagePack value without ext types, no larger than
// MaxFrameSize and nested no deeper than MaxDepth. It is iterative and
// allocates at most MaxDepth+1 ints, so hostile frames (a 2 MiB run of
// array headers, a map claiming 2^32 entries) cost nothing beyond their
// size. Every container's declared length is checked against the bytes
// left, so later decoding never preallocates more than the frame holds.
func check(b []byte) error {
	if len(b) > MaxFrameSize {
		return ErrFrameTooLarge
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	var stackBuf [MaxDepth + 2]int
	stack := append(stackBuf[:0], 1) // values still to read at each level
	pos := 0
	need := func(n uint64) error {
		if n > uint64(len(b)-pos) {
			return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, pos)
		}
		return nil
	}
	be := func(n int) uint64 { // big-endian length of n bytes at pos
		var v uint64
		for i := 0; i < n; i++ {
			v = v<<8 | uint64(b[pos+i])
		}
		return v
	}
	for len(stack) > 0 {
		top := len(stack) - 1
		if stack[top] == 0 {
			stack = stack[:top]
			continue
		}
		stack[top]--
		if err := need(1); err != nil {
			return err
		}
		c := b[pos]
		pos++
		var skip uint64    // bytes of payload to skip
		var elems uint64   // child values of a container
		var lenBytes int   // width of a length prefix
		container := false // whether c opens a container
		switch {
		case c <= 0x7f || c >= 0xe0: // positive/negative fixint
		case c&0xf0 == 0x80: // fixmap
			elems, container = 2*uint64(c&0x0f), true
		case c&0xf0 == 0x90: // fixarray
			elems, container = uint64(c&0x0f), true
		case c&0xe0 == 0xa0: // fixstr
			skip = uint64(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xca, 0xce, 0xd2:
				skip = 4
			case 0xcb, 0xcf, 0xd3:
				skip = 8
			case 0xc4, 0xd9: // bin8, str8
				lenBytes = 1
			case 0xc5, 0xda: // bin16, str16
				lenBytes = 2
			case 0xc6, 0xdb: // bin32, str32
				lenBytes = 4
			case 0xdc:
				lenBytes, container = 2, true
			case 0xdd:
				lenBytes, container = 4, true
			case 0xde:
				lenBytes, container = 2, true
			case 0xdf:
				lenBytes, container = 4, true
			case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
				return fmt.Errorf("%w: ext type at byte %d", ErrMalformed, pos-1)
			default: // 0xc1
				return fmt.Errorf("%w: reserved code 0x%02x at byte %d", ErrMalformed, c, pos-1)
			}
		}
		if lenBytes > 0 {
			if err := need(uint64(lenBytes)); err != nil {
				return err
			}
			n := be(lenBytes)
			pos += lenBytes
			switch {
			case !container:
				skip = n
			case c == 0xde || c == 0xdf:
				elems = 2 * n
			default:
				elems = n
			}
		}
		if skip > 0 {
			if err := need(skip); err != nil {
				return err
			}
			pos += int(skip)
		}
		if container {
			if len(stack) > MaxDepth { // root sentinel + MaxDepth levels
				return ErrTooDeep
			}
			if err := need(elems); err != nil { // each value takes ≥ 1 byte
				return err
			}
			stack = append(stack, int(elems))
		}
	}
	if pos != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-pos)
	}
	return nil
}
