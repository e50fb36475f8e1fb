package wire

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/topgun-go/topgun/crdt"
)

// Bits of DecodeError.seen for required fields.
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
)

func need(seen, want uint32, names ...string) error {
	for i, bit := 0, uint32(1); bit <= want; bit <<= 1 {
		if want&bit == 0 {
			continue
		}
		if seen&bit == 0 {
			return missing(names[i])
		}
		i++
	}
	return nil
}

// str decodes a required string and marks it seen.
func str(d *msgpack.Decoder, de *DecodeError, bit uint32, dst *string) error {
	s, err := readString(d)
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

func (m *AuthRequired) field(string, *msgpack.Decoder, *DecodeError) (bool, error) {
	return false, nil
}
func (m *AuthRequired) complete(uint32) error { return nil }

func (m *Auth) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "token":
		err = str(d, de, seenToken, &m.Token)
	case "protocolVersion":
		if !isNil(d) {
			m.ProtocolVersion, err = readUint32(d)
		}
	case "deviceToken":
		m.DeviceToken, err = readOptString(d)
	default:
		return false, nil
	}
	return true, err
}
func (m *Auth) complete(seen uint32) error { return need(seen, seenToken, "token") }

func (m *AuthAck) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "userId":
		m.UserID, err = readOptString(d)
	case "deviceId":
		m.DeviceID, err = readOptString(d)
	case "deviceToken":
		m.DeviceToken, err = readOptString(d)
	case "protocolVersion":
		if !isNil(d) {
			m.ProtocolVersion, err = readUint32(d)
		}
	default:
		return false, nil
	}
	return true, err
}
func (m *AuthAck) complete(uint32) error { return nil }

func (m *AuthFail) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "error":
		err = str(d, de, seenError, &m.Error)
	case "code":
		if !isNil(d) {
			m.Code, err = readUint32(d)
		}
	default:
		return false, nil
	}
	return true, err
}
func (m *AuthFail) complete(seen uint32) error { return need(seen, seenError, "error") }

func (m *DeviceHello) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	if k != "deviceToken" {
		return false, nil
	}
	var err error
	m.DeviceToken, err = readOptString(d)
	return true, err
}
func (m *DeviceHello) complete(uint32) error { return nil }

func (m *DeviceAck) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "deviceId":
		m.DeviceID, err = readOptString(d)
	case "deviceToken":
		m.DeviceToken, err = readOptString(d)
	default:
		return false, nil
	}
	return true, err
}
func (m *DeviceAck) complete(uint32) error { return nil }

func (m *Ping) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	if k != "timestamp" {
		return false, nil
	}
	var err error
	m.Timestamp, err = readUint64(d)
	de.seen |= seenTimestamp
	return true, err
}
func (m *Ping) complete(seen uint32) error { return need(seen, seenTimestamp, "timestamp") }

func (m *Pong) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "timestamp":
		m.Timestamp, err = readUint64(d)
		de.seen |= seenTimestamp
	case "serverTime":
		m.ServerTime, err = readUint64(d)
		de.seen |= seenServerTime
	default:
		return false, nil
	}
	return true, err
}
func (m *Pong) complete(seen uint32) error {
	return need(seen, seenTimestamp|seenServerTime, "timestamp", "serverTime")
}

func (m *Error) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "code":
		m.Code, err = readUint32(d)
		de.seen |= seenCode
	case "message":
		err = str(d, de, seenMessage, &m.Message)
	case "details":
		m.Details, err = readAny(d)
		if err != nil {
			err = fieldErr("details", err)
		}
	default:
		return false, nil
	}
	return true, err
}
func (m *Error) complete(seen uint32) error {
	return need(seen, seenCode|seenMessage, "code", "message")
}

func (m *Batch) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "count":
		m.Count, err = readUint32(d)
		de.seen |= seenCount
	case "data":
		if isNil(d) { // DecodeBytes would take nil as an empty value
			return true, fmt.Errorf("%w: %v", ErrInvalidField, errNil)
		}
		m.Data, err = d.DecodeBytes()
		if err != nil {
			err = fieldErr("data", err)
		}
		de.seen |= seenData
	default:
		return false, nil
	}
	return true, err
}
func (m *Batch) complete(seen uint32) error {
	return need(seen, seenCount|seenData, "count", "data")
}

func (m *CounterRequest) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	if k != "name" {
		return false, nil
	}
	return true, str(d, de, seenName, &m.Name)
}
func (m *CounterRequest) complete(seen uint32) error { return need(seen, seenName, "name") }

// counterField decodes the shared {name, state} payload.
func counterField(k string, d *msgpack.Decoder, de *DecodeError, name *string, st *crdt.State) (bool, error) {
	switch k {
	case "name":
		return true, str(d, de, seenName, name)
	case "state":
		s, err := readState(d)
		if err != nil {
			return true, err
		}
		*st = s
		de.seen |= seenState
		return true, nil
	}
	return false, nil
}

func (m *CounterResponse) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	return counterField(k, d, de, &m.Name, &m.State)
}
func (m *CounterResponse) complete(seen uint32) error { return needCounter(seen) }

func (m *CounterSync) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	return counterField(k, d, de, &m.Name, &m.State)
}
func (m *CounterSync) complete(seen uint32) error { return needCounter(seen) }

func (m *CounterUpdate) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	return counterField(k, d, de, &m.Name, &m.State)
}
func (m *CounterUpdate) complete(seen uint32) error { return needCounter(seen) }

func needCounter(seen uint32) error {
	return need(seen, seenName|seenState, "name", "state")
}

func (m *LockRequest) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "requestId":
		err = str(d, de, seenRequestID, &m.RequestID)
	case "name":
		err = str(d, de, seenName, &m.Name)
	case "ttl":
		if !isNil(d) {
			var v uint64
			v, err = readUint64(d)
			m.TTL = &v
		}
	case "wait":
		if !isNil(d) {
			m.Wait, err = readUint64(d)
		}
	default:
		return false, nil
	}
	return true, err
}
func (m *LockRequest) complete(seen uint32) error {
	return need(seen, seenName|seenRequestID, "name", "requestId")
}

func (m *LockGranted) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "requestId":
		err = str(d, de, seenRequestID, &m.RequestID)
	case "name":
		err = str(d, de, seenName, &m.Name)
	case "fencingToken":
		m.FencingToken, err = readUint64(d)
		de.seen |= seenFencing
	case "ttl":
		if !isNil(d) {
			m.TTL, err = readUint64(d)
		}
	default:
		return false, nil
	}
	return true, err
}
func (m *LockGranted) complete(seen uint32) error {
	return need(seen, seenName|seenRequestID|seenFencing, "name", "requestId", "fencingToken")
}

func (m *LockRelease) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "requestId":
		m.RequestID, err = readOptString(d)
		de.RequestID = m.RequestID
	case "name":
		err = str(d, de, seenName, &m.Name)
	case "fencingToken":
		m.FencingToken, err = readUint64(d)
		de.seen |= seenFencing
	default:
		return false, nil
	}
	return true, err
}
func (m *LockRelease) complete(seen uint32) error {
	return need(seen, seenName|seenFencing, "name", "fencingToken")
}

func (m *LockReleased) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "requestId":
		err = str(d, de, seenRequestID, &m.RequestID)
	case "name":
		err = str(d, de, seenName, &m.Name)
	case "success":
		m.Success, err = readBool(d)
		de.seen |= seenSuccess
	case "reason":
		m.Reason, err = readOptString(d)
	default:
		return false, nil
	}
	return true, err
}
func (m *LockReleased) complete(seen uint32) error {
	return need(seen, seenName|seenRequestID|seenSuccess, "name", "requestId", "success")
}

func (m *LockLost) field(k string, d *msgpack.Decoder, de *DecodeError) (bool, error) {
	var err error
	switch k {
	case "name":
		err = str(d, de, seenName, &m.Name)
	case "fencingToken":
		m.FencingToken, err = readUint64(d)
		de.seen |= seenFencing
	case "reason":
		m.Reason, err = readOptString(d)
	default:
		return false, nil
	}
	return true, err
}
func (m *LockLost) complete(seen uint32) error {
	return need(seen, seenName|seenFencing, "name", "fencingToken")
}
