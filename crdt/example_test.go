package crdt_test

import (
	"errors"
	"fmt"

	"github.com/topgun-go/topgun/crdt"
)

// Two replicas write independently, exchange full states and converge; later
// they ship only their own entries (Own), which merge like a full state.
func Example() {
	a, b := crdt.New(), crdt.New()

	// Each replica writes on its own behalf only.
	a.Add("a", 5)
	a.Add("a", -2)
	b.Add("b", 10)
	fmt.Println("before exchange:", a.Value(), b.Value())

	// Exchange full states, in any order: both converge.
	if _, err := a.Merge(b.State()); err != nil {
		panic(err)
	}
	if _, err := b.Merge(a.State()); err != nil {
		panic(err)
	}
	fmt.Println("after exchange:", a.Value(), b.Value())

	// From now on, ship only the writer's own entries: O(1) per message.
	a.Add("a", 4)
	b.Add("b", -1)
	delta := a.Own("a")
	fmt.Println("delta from a:", delta.P, delta.N)

	changed, err := b.Merge(delta)
	if err != nil {
		panic(err)
	}
	fmt.Println("changed on b:", changed.P, changed.N)
	if _, err := a.Merge(b.Own("b")); err != nil {
		panic(err)
	}
	fmt.Println("converged:", a.Value(), b.Value())

	// A delta delivered twice (or out of date) changes nothing.
	changed, _ = b.Merge(delta)
	fmt.Println("redelivered delta changes:", changed.Len())

	// Output:
	// before exchange: 3 10
	// after exchange: 13 13
	// delta from a: map[a:9] map[a:2]
	// changed on b: map[a:9] map[]
	// converged: 16 16
	// redelivered delta changes: 0
}

// Entries decoded from the wire (JSON numbers arrive as float64) go through
// Magnitude before they reach a State.
func ExampleMagnitude() {
	for _, v := range []any{float64(42), uint16(7), 1.5, -3, float64(1 << 53), "9"} {
		m, err := crdt.Magnitude(v)
		fmt.Printf("%T %v: %d invalid=%t\n", v, v, m, errors.Is(err, crdt.ErrInvalidEntry))
	}
	// Output:
	// float64 42: 42 invalid=false
	// uint16 7: 7 invalid=false
	// float64 1.5: 0 invalid=true
	// int -3: 0 invalid=true
	// float64 9.007199254740992e+15: 0 invalid=true
	// string 9: 0 invalid=true
}
