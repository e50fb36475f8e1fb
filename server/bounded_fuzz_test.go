package server

import (
	"fmt"
	"testing"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// FuzzBoundedProtocol drives the bounded-counter protocol without sockets:
// clients restock (handing the new rights to the broker, as the clients
// do), sell with the rights they hold, and send their own rows; the
// server applies them with MergeFrom and grants rights; every client
// merges the views the server builds for it (boundedView, with the others
// aggregated under "*"). Messages both ways are reordered, duplicated or
// dropped. Checked after every step: no client's view and not the
// server's shows a value below the bound, no client holds negative
// rights, and the server never refuses a row a client made honestly.
// After every row and view is delivered, clients and server agree.
func FuzzBoundedProtocol(f *testing.F) {
	f.Add([]byte{0, 0x31, 2, 0, 3, 0, 4, 0x21, 5, 1, 1, 1, 2, 1, 3, 1, 5, 0})
	f.Add([]byte{0, 0xf0, 2, 0, 3, 0, 4, 0xf1, 4, 0xf2, 5, 1, 5, 2, 1, 1, 1, 2, 2, 1, 2, 2, 3, 0, 3, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const clients = 3
		if len(ops) > 400 {
			ops = ops[:400]
		}
		srv, err := crdt.NewBounded(0)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			from int
			st   crdt.BState
		}
		local := make([]*crdt.Bounded, clients)
		sold := make([]int64, clients)
		views := make([][]crdt.BState, clients)
		var rows []row
		name := func(i int) string { return fmt.Sprintf("c%d", i) }
		for i := range local {
			local[i], _ = crdt.NewBounded(0)
		}
		ownRow := func(i int) crdt.BState {
			st := local[i].State()
			n := name(i)
			out := crdt.BState{P: map[string]int64{}, N: map[string]int64{}, T: map[string]map[string]int64{}}
			if v := st.P[n]; v > 0 {
				out.P[n] = v
			}
			if v := st.N[n]; v > 0 {
				out.N[n] = v
			}
			if r := st.T[n]; len(r) > 0 {
				out.T[n] = r
			}
			return out
		}
		deliverRow := func(k int, keep bool) {
			r := rows[k]
			if !keep {
				rows = append(rows[:k], rows[k+1:]...)
			}
			if err := ownRowOnly(name(r.from), r.st); err != nil {
				t.Fatalf("client %d sent more than its row: %v", r.from, err)
			}
			if _, err := srv.MergeFrom(name(r.from), r.st); err != nil {
				t.Fatalf("the server refused client %d's honest row %+v: %v", r.from, r.st, err)
			}
			views[r.from] = append(views[r.from], boundedView(srv, name(r.from)))
		}
		check := func() {
			if v := srv.Value(); v < 0 {
				t.Fatalf("server shows %d", v)
			}
			for i, b := range local {
				if v := b.Value(); v < 0 {
					t.Fatalf("client %d shows %d", i, v)
				}
				if r := b.Rights(name(i)); r < 0 {
					t.Fatalf("client %d holds %d rights", i, r)
				}
			}
		}
		for k := 0; k+1 < len(ops); k += 2 {
			op, arg := ops[k], ops[k+1]
			i := int(arg) % clients
			amount := int64(arg>>4) + 1
			switch op % 6 {
			case 0: // restock: new rights go to the broker at once
				if _, err := local[i].Increment(name(i), amount); err != nil {
					t.Fatal(err)
				}
				if err := local[i].Transfer(name(i), wire.BrokerNode, amount); err != nil {
					t.Fatal(err)
				}
			case 1: // sell one with the rights held
				if local[i].Rights(name(i)) > 0 {
					if _, err := local[i].Decrement(name(i), 1); err != nil {
						t.Fatal(err)
					}
					sold[i]++
				}
			case 2: // send the own row
				rows = append(rows, row{i, ownRow(i)})
			case 3: // the server takes a row, maybe leaving a duplicate
				if len(rows) > 0 {
					deliverRow(int(arg)%len(rows), arg&0x80 != 0)
				}
			case 4: // the server grants what it can
				g := min(amount, srv.Rights(wire.BrokerNode))
				if g > 0 {
					if err := srv.Transfer(wire.BrokerNode, name(i), g); err != nil {
						t.Fatal(err)
					}
				}
				views[i] = append(views[i], boundedView(srv, name(i)))
			case 5: // a client takes a view, maybe leaving a duplicate
				if q := views[i]; len(q) > 0 {
					j := int(arg>>2) % len(q)
					v := q[j]
					if arg&0x80 == 0 {
						views[i] = append(q[:j], q[j+1:]...)
					}
					if _, err := local[i].Merge(v); err != nil {
						t.Fatalf("client %d: view %+v: %v", i, v, err)
					}
				}
			}
			check()
		}
		// Heal: every row, then every client's current view.
		for i := range local {
			rows = append(rows, row{i, ownRow(i)})
		}
		for len(rows) > 0 {
			deliverRow(0, false)
		}
		var total int64
		for i, b := range local {
			if _, err := b.Merge(boundedView(srv, name(i))); err != nil {
				t.Fatal(err)
			}
			total += sold[i]
		}
		check()
		for i, b := range local {
			if b.Value() != srv.Value() {
				t.Fatalf("client %d shows %d, the server %d", i, b.Value(), srv.Value())
			}
		}
		var n int64
		for _, x := range srv.State().N {
			n += x
		}
		if n != total {
			t.Fatalf("the server counts %d sales, the clients made %d", n, total)
		}
	})
}
