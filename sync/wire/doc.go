// Package wire is TopGun's wire protocol for counters and locks: the message
// types of PROTOCOL.md §2–§4 plus topgun-go's extensions, and their
// MessagePack codec.
//
// Every frame is one MessagePack map with a string key "type". AUTH*,
// DEVICE_*, PING, PONG and BATCH carry their fields beside "type" (flat); the
// others carry them in a "payload" map (wrapped). Decode is lenient where the
// protocol says so and strict everywhere else:
//
//   - frames larger than MaxFrameSize or nested deeper than MaxDepth, and
//     frames that are not well-formed MessagePack, are rejected before any
//     field is decoded, so a hostile frame costs at most its own size;
//   - numbers may use any int or float width; integer fields accept a float
//     only when it is integral and in range;
//   - unknown keys are ignored, unknown types and missing required fields are
//     errors (a *DecodeError; see AsDecodeError);
//   - counter states accept {positive, negative} as an alias of {p, n} (the
//     reference TypeScript client sends that, PROTOCOL.md D1) and every entry
//     must be a magnitude accepted by crdt.Magnitude; a bad entry is an
//     error wrapping both ErrInvalidField and crdt.ErrInvalidEntry.
//
// Encode emits what the reference Rust server emits: compact ints, counter
// entries as float64, optional fields omitted, never ext types.
//
// Extensions over TopGun: LOCK_REQUEST.wait, LOCK_GRANTED.ttl,
// LOCK_RELEASED.reason and the LOCK_LOST message.
package wire
