package wire

import "github.com/topgun-go/topgun/crdt"

// msgKind numbers the message types; the flat ones come first.
type msgKind uint8

const (
	kAuthRequired msgKind = iota
	kAuth
	kAuthAck
	kAuthFail
	kDeviceHello
	kDeviceAck
	kPing
	kPong
	kBatch
	kError // first wrapped kind
	kCounterRequest
	kCounterResponse
	kCounterSync
	kCounterUpdate
	kLockRequest
	kLockGranted
	kLockRelease
	kLockReleased
	kLockLost
	kCounterUnsubscribe
	kBCounterRequest
	kBCounterSync
	kBCounterUpdate
	kBCounterRights
	kBCounterGrant
	kBCounterUnsubscribe
)

func (k msgKind) wrapped() bool { return k >= kError }

// kindOf maps a "type" value to its kind and constant; typ is "" for an
// unknown type.
func kindOf(s []byte) (k msgKind, typ string) {
	switch string(s) {
	case TypeAuthRequired:
		return kAuthRequired, TypeAuthRequired
	case TypeAuth:
		return kAuth, TypeAuth
	case TypeAuthAck:
		return kAuthAck, TypeAuthAck
	case TypeAuthFail:
		return kAuthFail, TypeAuthFail
	case TypeDeviceHello:
		return kDeviceHello, TypeDeviceHello
	case TypeDeviceAck:
		return kDeviceAck, TypeDeviceAck
	case TypePing:
		return kPing, TypePing
	case TypePong:
		return kPong, TypePong
	case TypeBatch:
		return kBatch, TypeBatch
	case TypeError:
		return kError, TypeError
	case TypeCounterRequest:
		return kCounterRequest, TypeCounterRequest
	case TypeCounterResponse:
		return kCounterResponse, TypeCounterResponse
	case TypeCounterSync:
		return kCounterSync, TypeCounterSync
	case TypeCounterUpdate:
		return kCounterUpdate, TypeCounterUpdate
	case TypeLockRequest:
		return kLockRequest, TypeLockRequest
	case TypeLockGranted:
		return kLockGranted, TypeLockGranted
	case TypeLockRelease:
		return kLockRelease, TypeLockRelease
	case TypeLockReleased:
		return kLockReleased, TypeLockReleased
	case TypeLockLost:
		return kLockLost, TypeLockLost
	case TypeCounterUnsubscribe:
		return kCounterUnsubscribe, TypeCounterUnsubscribe
	case TypeBCounterRequest:
		return kBCounterRequest, TypeBCounterRequest
	case TypeBCounterSync:
		return kBCounterSync, TypeBCounterSync
	case TypeBCounterUpdate:
		return kBCounterUpdate, TypeBCounterUpdate
	case TypeBCounterRights:
		return kBCounterRights, TypeBCounterRights
	case TypeBCounterGrant:
		return kBCounterGrant, TypeBCounterGrant
	case TypeBCounterUnsubscribe:
		return kBCounterUnsubscribe, TypeBCounterUnsubscribe
	}
	return 0, ""
}

// Bits of DecodeError.seen for required fields, in the order their
// absence is reported.
const (
	seenToken uint32 = 1 << iota
	seenError
	seenTimestamp
	seenServerTime
	seenCode
	seenMessage
	seenCount
	seenData
	seenName
	seenState
	seenRequestID
	seenFencing
	seenSuccess
	seenMin
	seenAmount
	seenGranted
)

// seenNames names the bits above.
var seenNames = [...]string{"token", "error", "timestamp", "serverTime", "code", "message",
	"count", "data", "name", "state", "requestId", "fencingToken", "success",
	"min", "amount", "granted"}

// required lists each kind's required fields.
var required = [...]uint32{
	kAuth:                seenToken,
	kAuthFail:            seenError,
	kPing:                seenTimestamp,
	kPong:                seenTimestamp | seenServerTime,
	kBatch:               seenCount | seenData,
	kError:               seenCode | seenMessage,
	kCounterRequest:      seenName,
	kCounterResponse:     seenName | seenState,
	kCounterSync:         seenName | seenState,
	kCounterUpdate:       seenName | seenState,
	kLockRequest:         seenName | seenRequestID,
	kLockGranted:         seenName | seenRequestID | seenFencing,
	kLockRelease:         seenName | seenFencing,
	kLockReleased:        seenName | seenRequestID | seenSuccess,
	kLockLost:            seenName | seenFencing,
	kCounterUnsubscribe:  seenName,
	kBCounterRequest:     seenName | seenMin,
	kBCounterSync:        seenName | seenState,
	kBCounterUpdate:      seenName | seenState,
	kBCounterRights:      seenName | seenRequestID | seenAmount,
	kBCounterGrant:       seenName | seenRequestID | seenGranted | seenState,
	kBCounterUnsubscribe: seenName,
}

// Sets of kinds, for the keys each kind knows.
const (
	bAuth         = 1 << kAuth
	bAuthAck      = 1 << kAuthAck
	bAuthFail     = 1 << kAuthFail
	bDeviceHello  = 1 << kDeviceHello
	bDeviceAck    = 1 << kDeviceAck
	bPing         = 1 << kPing
	bPong         = 1 << kPong
	bBatch        = 1 << kBatch
	bError        = 1 << kError
	bLockRequest  = 1 << kLockRequest
	bLockGranted  = 1 << kLockGranted
	bLockRelease  = 1 << kLockRelease
	bLockReleased = 1 << kLockReleased
	bLockLost     = 1 << kLockLost
	bCounterState = 1<<kCounterResponse | 1<<kCounterSync | 1<<kCounterUpdate
	bBRequest     = 1 << kBCounterRequest
	bBRights      = 1 << kBCounterRights
	bBGrant       = 1 << kBCounterGrant
	bBState       = 1<<kBCounterSync | 1<<kBCounterUpdate | bBGrant
	bBounded      = bBRequest | bBState | bBRights | 1<<kBCounterUnsubscribe
	bNamed        = 1<<kCounterRequest | bCounterState | bLockRequest | bLockGranted |
		bLockRelease | bLockReleased | bLockLost | 1<<kCounterUnsubscribe | bBounded
)

// fieldSet holds the decoded fields of any message; build makes the
// message of a kind from it.
type fieldSet struct {
	token, deviceToken, userID, deviceID, error, message string
	nodeID, views                                        string
	name, requestID, reason                              string
	protocolVersion, code, count                         uint32
	timestamp, serverTime, ttl, wait, fencingToken       uint64
	hasTTL, success                                      bool
	details                                              any
	data                                                 []byte
	state                                                crdt.State
	min, amount, granted                                 int64
	bstate                                               crdt.BState
}

// field decodes the value of key for a message of kind k. known is false
// for a key that kind does not have; the caller skips its value.
func (f *fieldSet) field(k msgKind, key []byte, d *decoder, de *DecodeError) (known bool, err error) {
	in := func(set uint32) bool { return uint32(1)<<k&set != 0 }
	switch string(key) {
	case "name":
		if in(bNamed) {
			return true, f.required(d, de, seenName, &f.name)
		}
	case "requestId":
		if in(bLockRelease) { // optional there
			f.requestID, err = d.optStr()
			de.RequestID = f.requestID
			return true, err
		}
		if in(bLockRequest | bLockGranted | bLockReleased | bBRights | bBGrant) {
			return true, f.required(d, de, seenRequestID, &f.requestID)
		}
	case "state":
		if in(bCounterState) {
			f.state, err = d.state()
			de.seen |= seenState
			return true, err
		}
		if in(bBState) {
			f.bstate, err = d.bstate()
			de.seen |= seenState
			return true, err
		}
	case "min":
		if in(bBRequest) {
			f.min, err = d.bound()
			de.seen |= seenMin
			return true, err
		}
	case "amount":
		if in(bBRights) {
			f.amount, err = d.magnitude("amount")
			de.seen |= seenAmount
			return true, err
		}
	case "granted":
		if in(bBGrant) {
			f.granted, err = d.magnitude("granted")
			de.seen |= seenGranted
			return true, err
		}
	case "fencingToken":
		if in(bLockGranted | bLockRelease | bLockLost) {
			f.fencingToken, err = d.uint64()
			de.seen |= seenFencing
			return true, err
		}
	case "ttl":
		if in(bLockRequest | bLockGranted) {
			if !d.isNil() {
				f.ttl, err = d.uint64()
				f.hasTTL = true
			}
			return true, err
		}
	case "wait":
		if in(bLockRequest) {
			if !d.isNil() {
				f.wait, err = d.uint64()
			}
			return true, err
		}
	case "success":
		if in(bLockReleased) {
			f.success, err = d.bool()
			de.seen |= seenSuccess
			return true, err
		}
	case "reason":
		if in(bLockReleased | bLockLost) {
			f.reason, err = d.optStr()
			return true, err
		}
	case "timestamp":
		if in(bPing | bPong) {
			f.timestamp, err = d.uint64()
			de.seen |= seenTimestamp
			return true, err
		}
	case "serverTime":
		if in(bPong) {
			f.serverTime, err = d.uint64()
			de.seen |= seenServerTime
			return true, err
		}
	case "code":
		if in(bError) { // required, and nil is not absent
			f.code, err = d.uint32()
			de.seen |= seenCode
			return true, err
		}
		if in(bAuthFail) {
			if !d.isNil() {
				f.code, err = d.uint32()
			}
			return true, err
		}
	case "message":
		if in(bError) {
			return true, f.required(d, de, seenMessage, &f.message)
		}
	case "details":
		if in(bError) {
			if f.details, err = d.any(); err != nil {
				err = fieldErr("details", err)
			}
			return true, err
		}
	case "count":
		if in(bBatch) {
			f.count, err = d.uint32()
			de.seen |= seenCount
			return true, err
		}
	case "data":
		if in(bBatch) {
			if d.isNil() {
				return true, errIsNil
			}
			f.data, err = d.bytes()
			de.seen |= seenData
			return true, err
		}
	case "token":
		if in(bAuth) {
			return true, f.required(d, de, seenToken, &f.token)
		}
	case "protocolVersion":
		if in(bAuth | bAuthAck) {
			if !d.isNil() {
				f.protocolVersion, err = d.uint32()
			}
			return true, err
		}
	case "deviceToken":
		if in(bAuth | bAuthAck | bDeviceHello | bDeviceAck) {
			f.deviceToken, err = d.optStr()
			return true, err
		}
	case "nodeId":
		if in(bAuth | bDeviceHello) {
			f.nodeID, err = d.optStr()
			return true, err
		}
	case "views":
		if in(bAuth | bAuthAck | bDeviceHello | bDeviceAck) {
			f.views, err = d.optStr()
			return true, err
		}
	case "deviceId":
		if in(bAuthAck | bDeviceAck) {
			f.deviceID, err = d.optStr()
			return true, err
		}
	case "userId":
		if in(bAuthAck) {
			f.userID, err = d.optStr()
			return true, err
		}
	case "error":
		if in(bAuthFail) {
			return true, f.required(d, de, seenError, &f.error)
		}
	}
	return false, nil
}

// required decodes a required string and marks it seen.
func (f *fieldSet) required(d *decoder, de *DecodeError, bit uint32, dst *string) error {
	s, err := d.str()
	if err != nil {
		return err
	}
	*dst = s
	de.seen |= bit
	switch bit {
	case seenRequestID:
		de.RequestID = s
	case seenName:
		de.Name = s
	}
	return nil
}

// complete reports the first missing required field of kind k.
func (f *fieldSet) complete(k msgKind, seen uint32) error {
	if int(k) >= len(required) {
		return nil
	}
	want := required[k]
	for i, bit := 0, uint32(1); bit <= want; i, bit = i+1, bit<<1 {
		if want&bit != 0 && seen&bit == 0 {
			return missing(seenNames[i])
		}
	}
	return nil
}

// build returns the message of kind k.
func (f *fieldSet) build(k msgKind) Message {
	switch k {
	case kAuthRequired:
		return AuthRequired{}
	case kAuth:
		return Auth{Token: f.token, ProtocolVersion: f.protocolVersion, DeviceToken: f.deviceToken,
			NodeID: f.nodeID, Views: f.views}
	case kAuthAck:
		return AuthAck{UserID: f.userID, DeviceID: f.deviceID, DeviceToken: f.deviceToken,
			ProtocolVersion: f.protocolVersion, Views: f.views}
	case kAuthFail:
		return AuthFail{Error: f.error, Code: f.code}
	case kDeviceHello:
		return DeviceHello{DeviceToken: f.deviceToken, NodeID: f.nodeID, Views: f.views}
	case kDeviceAck:
		return DeviceAck{DeviceID: f.deviceID, DeviceToken: f.deviceToken, Views: f.views}
	case kPing:
		return Ping{Timestamp: f.timestamp}
	case kPong:
		return Pong{Timestamp: f.timestamp, ServerTime: f.serverTime}
	case kBatch:
		return Batch{Count: f.count, Data: f.data}
	case kError:
		return Error{Code: f.code, Message: f.message, Details: f.details}
	case kCounterRequest:
		return CounterRequest{Name: f.name}
	case kCounterUnsubscribe:
		return CounterUnsubscribe{Name: f.name}
	case kCounterResponse:
		return CounterResponse{Name: f.name, State: f.state}
	case kCounterSync:
		return CounterSync{Name: f.name, State: f.state}
	case kCounterUpdate:
		return CounterUpdate{Name: f.name, State: f.state}
	case kLockRequest:
		m := LockRequest{RequestID: f.requestID, Name: f.name, Wait: f.wait}
		if f.hasTTL {
			ttl := f.ttl
			m.TTL = &ttl
		}
		return m
	case kLockGranted:
		return LockGranted{RequestID: f.requestID, Name: f.name, FencingToken: f.fencingToken, TTL: f.ttl}
	case kLockRelease:
		return LockRelease{RequestID: f.requestID, Name: f.name, FencingToken: f.fencingToken}
	case kLockReleased:
		return LockReleased{RequestID: f.requestID, Name: f.name, Success: f.success, Reason: f.reason}
	case kBCounterRequest:
		return BCounterRequest{Name: f.name, Min: f.min}
	case kBCounterSync:
		return BCounterSync{Name: f.name, State: f.bstate}
	case kBCounterUpdate:
		return BCounterUpdate{Name: f.name, State: f.bstate}
	case kBCounterRights:
		return BCounterRights{RequestID: f.requestID, Name: f.name, Amount: f.amount}
	case kBCounterGrant:
		return BCounterGrant{RequestID: f.requestID, Name: f.name, Granted: f.granted, State: f.bstate}
	case kBCounterUnsubscribe:
		return BCounterUnsubscribe{Name: f.name}
	}
	return LockLost{Name: f.name, FencingToken: f.fencingToken, Reason: f.reason}
}
