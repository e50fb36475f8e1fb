package wire_test

import (
	"fmt"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// A client sends its full counter state; the server decodes it.
func ExampleEncode() {
	frame, err := wire.Encode(wire.CounterSync{
		Name: "page-views",
		State: crdt.State{
			P: map[string]int64{"node-1": 10, "node-2": 5},
			N: map[string]int64{"node-1": 3},
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes, starting % x (fixmap, fixstr \"type\")\n", len(frame), frame[:2])

	m, err := wire.Decode(frame)
	if err != nil {
		panic(err)
	}
	cs := m.(wire.CounterSync)
	v, _ := cs.State.Value()
	fmt.Println(cs.Type(), cs.Name, cs.State.P, cs.State.N, "value", v)
	// Output:
	// 105 bytes, starting 82 a4 (fixmap, fixstr "type")
	// COUNTER_SYNC page-views map[node-1:10 node-2:5] map[node-1:3] value 12
}

// A bad field still leaves enough in the error to answer the request.
func ExampleAsDecodeError() {
	frame, _ := wire.Encode(wire.LockRequest{RequestID: "req-1", Name: "orders", TTL: new(uint64)})
	if _, err := wire.Decode(frame); err == nil {
		fmt.Println("ttl 0 is well-formed; the server denies it")
	}

	// {"type":"LOCK_REQUEST","payload":{"ttl":1.5,"requestId":"req-2","name":"orders"}}
	bad := []byte("\x82\xa4type\xacLOCK_REQUEST\xa7payload\x83" +
		"\xa3ttl\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00" +
		"\xa9requestId\xa5req-2\xa4name\xa6orders")
	_, err := wire.Decode(bad)
	if de, ok := wire.AsDecodeError(err); ok {
		fmt.Println(de.Type, de.Field, de.RequestID, de.Name)
		fmt.Println(err)
	}
	// Output:
	// ttl 0 is well-formed; the server denies it
	// LOCK_REQUEST payload.ttl req-2 orders
	// LOCK_REQUEST.payload.ttl: wire: invalid field: 1.5 is not a non-negative integer
}
