package main

// Idle connections: what N connected, idle clients cost the server, and
// how a PING round trip of one active client fares among them. The
// server runs in a child process (fanoutServer, which answers "mem" on
// stdin with its memory figures); the idle clients in children of at most
// perChild connections each (raw sockets, no goroutine per connection).

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/topgun-go/topgun/sync/wire"
)

// idleSizes are the numbers of idle connections measured, after a
// baseline with none.
var idleSizes = []int{5000, 19000}

const idlePings = 2000 // PING round trips of the active client per size

// serverMem is what fanoutServer reports for "mem": after a GC, the
// process's resident set and the Go runtime's view of it.
type serverMem struct {
	RSS        int64 `json:"rss"`        // VmRSS, bytes
	Heap       int64 `json:"heap"`       // HeapInuse
	Stack      int64 `json:"stack"`      // StackInuse
	Sys        int64 `json:"sys"`        // Sys: everything the runtime took from the OS
	Goroutines int   `json:"goroutines"` // runtime.NumGoroutine
}

// reportMem answers one "mem" request of the parent.
func reportMem() {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	emitJSON(serverMem{RSS: vmRSS(os.Getpid()), Heap: int64(ms.HeapInuse), Stack: int64(ms.StackInuse),
		Sys: int64(ms.Sys), Goroutines: runtime.NumGoroutine()})
}

// vmRSS is the resident set of process pid, in bytes.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fatalf("%v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	fatalf("no VmRSS for %d", pid)
	return 0
}

// idleSubs opens TOPGUN_BENCH_CONNS connections to TOPGUN_BENCH_ADDR
// (compact views negotiated, no counters), prints {"ready": true} and
// holds them without a goroutine each until stdin closes.
func idleSubs() {
	addr := os.Getenv("TOPGUN_BENCH_ADDR")
	n, _ := strconv.Atoi(os.Getenv("TOPGUN_BENCH_CONNS"))
	first, _ := strconv.Atoi(os.Getenv("TOPGUN_BENCH_FIRST"))
	subs, err := subscribeAll(n, func(i int) (*subscriber, error) {
		return subscribe(addr, "", 0, fmt.Sprintf("idle-%06d", first+i), 0)
	})
	if err != nil {
		fatalf("idle clients: %v", err)
	}
	emitJSON(map[string]bool{"ready": true})
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
	for _, s := range subs {
		syscall.Close(s.fd)
	}
}

// idleRow is one size of the idle-connections benchmark.
type idleRow struct {
	conns          int
	mem            serverMem
	ping50, ping99 time.Duration
}

// idleBench measures the server with 0 and then idleSizes idle
// connections: one server process for the whole run, idle clients added
// between sizes.
func idleBench(rep *report, dir string) {
	srv, addr := startServerChild(dir, "idle-")
	defer srv.end()
	active := dialRaw("ws://" + addr + "/ws")
	defer active.ws.CloseNow()
	active.send(wire.DeviceHello{NodeID: "bench-active", Views: wire.ViewsCompact})
	active.next()

	measure := func(conns int) idleRow {
		if _, err := io.WriteString(srv.stdin, "mem\n"); err != nil {
			fatalf("idle: %v", err)
		}
		row := idleRow{conns: conns}
		if err := srv.line(&row.mem, childTimeout); err != nil {
			fatalf("idle: %v", err)
		}
		var pings []time.Duration
		for i := 0; i < idlePings+idlePings/10; i++ { // the first tenth warms up
			t0 := time.Now()
			active.send(wire.Ping{Timestamp: uint64(i)})
			if _, m := active.next(); m.Type() != wire.TypePong {
				fatalf("idle: %s, want PONG", m.Type())
			}
			if i >= idlePings/10 {
				pings = append(pings, time.Since(t0))
			}
		}
		row.ping50, row.ping99 = pct(pings, 0.5), pct(pings, 0.99)
		return row
	}
	rows := []idleRow{measure(0)}
	var kids []*child
	defer func() {
		for _, k := range kids {
			k.end()
		}
	}()
	have := 0
	for _, size := range idleSizes {
		for have < size {
			k := min(perChild, size-have)
			c := startChild(roleEnv+"=idle-subs", "TOPGUN_BENCH_ADDR="+addr,
				fmt.Sprintf("TOPGUN_BENCH_CONNS=%d", k), fmt.Sprintf("TOPGUN_BENCH_FIRST=%d", have))
			kids = append(kids, c)
			var ready struct{ Ready bool }
			if err := c.line(&ready, childTimeout); err != nil || !ready.Ready {
				fatalf("idle: clients not ready: %v", err)
			}
			have += k
		}
		rows = append(rows, measure(size))
	}

	base := rows[0]
	rep.p("## Idle connections\n\n")
	rep.p("The server (bbolt store) runs in a process of its own; N clients connect over WebSocket, negotiate compact\n")
	rep.p("views (DEVICE_HELLO) and stay idle, held by processes of at most %d raw sockets each (`-only idle`). Memory: the\n", perChild)
	rep.p("server process's resident set (VmRSS) after a GC and `debug.FreeOSMemory`, minus the same with no idle client,\n")
	rep.p("per connection; the Go heap and goroutine stacks likewise. PING: %d sequential round trips of one active\n", idlePings)
	rep.p("client among the idle ones; baseline: the same with none, same server, same run.\n\n")
	rep.p("| idle connections | server RSS | per connection | of it heap | of it stacks | goroutines | PING p50 | p99 | ratio p99 / baseline |\n")
	rep.p("|---|---|---|---|---|---|---|---|---|\n")
	worstKB, worstPing := 0.0, time.Duration(0)
	for _, r := range rows {
		per, heap, stack := "—", "—", "—"
		if r.conns > 0 {
			kb := float64(r.mem.RSS-base.mem.RSS) / float64(r.conns) / 1024
			per = fmt.Sprintf("%.1f KB", kb)
			heap = fmt.Sprintf("%.1f KB", float64(r.mem.Heap-base.mem.Heap)/float64(r.conns)/1024)
			stack = fmt.Sprintf("%.1f KB", float64(r.mem.Stack-base.mem.Stack)/float64(r.conns)/1024)
			worstKB = max(worstKB, kb)
		}
		if r.conns == idleSizes[len(idleSizes)-1] {
			worstPing = r.ping99
		}
		rep.p("| %d | %.1f MB | %s | %s | %s | %d | %s | %s | %.2f× |\n", r.conns, float64(r.mem.RSS)/(1<<20), per, heap, stack,
			r.mem.Goroutines, ms(r.ping50), ms(r.ping99), float64(r.ping99)/float64(base.ping99))
	}
	rep.p("\nTarget ≤ 16 KB of server memory per idle connection: %s (largest %.1f KB). Target PING p99 ≤ 5 ms with %d idle\n",
		verdict(worstKB > 0 && worstKB <= 16), worstKB, idleSizes[len(idleSizes)-1])
	rep.p("connections: %s (%s).\n\n", verdict(worstPing > 0 && worstPing <= 5*time.Millisecond), ms(worstPing))
}
