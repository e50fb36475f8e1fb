package main

// Fan-out: one writer, S subscribers of its counter, over WebSocket on
// 127.0.0.1. The process limit of 20,000 open files rules out one process
// holding both ends of 10,000 connections, so the server runs in a child
// process of its own (this binary re-executed with TOPGUN_BENCH_ROLE) and
// the subscribers in further children of at most 4,000 connections each,
// which report their measurements on stdout as JSON. Every child is ended
// by its PID; every wait is bounded.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/storage/boltstore"
	"github.com/topgun-go/topgun/sync/wire"
)

const (
	roleEnv = "TOPGUN_BENCH_ROLE" // "fanout-server" or "fanout-subs" in a child

	fanoutRate     = 50   // writes per second
	fanoutWrites   = 150  // writes per run
	perChild       = 4000 // most connections per subscriber process
	dialParallel   = 32   // connection attempts in flight per child
	fanoutPings    = 500  // PING round trips of the baseline
	latencyBucket  = 10 * time.Microsecond
	childTimeout   = 2 * time.Minute // any one wait for a child
	deliverTimeout = time.Minute     // from the last write until every subscriber saw it
)

// childMain runs this process as a fan-out child if the environment says
// so, and reports whether it did.
func childMain() bool {
	switch os.Getenv(roleEnv) {
	case "fanout-server":
		fanoutServer()
	case "fanout-subs":
		fanoutSubs()
	case "idle-subs":
		idleSubs()
	default:
		return false
	}
	return true
}

// emitJSON writes v as one line on stdout.
func emitJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(append(b, '\n'))
}

// fanoutServer serves on a free 127.0.0.1 port with the bbolt store in
// TOPGUN_BENCH_DIR, prints {"addr": …} and serves until stdin closes,
// answering each line "mem" with its memory figures (reportMem).
func fanoutServer() {
	store, err := boltstore.Open(filepath.Join(os.Getenv("TOPGUN_BENCH_DIR"), "fanout.db"), boltstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Store: store, NoAuth: true,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit: 1e9, RateBurst: 1 << 30,
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	// TOPGUN_BENCH_CPUPROFILE=file profiles the server process of every run
	// (the last run's profile is what stays in file).
	if f := os.Getenv("TOPGUN_BENCH_CPUPROFILE"); f != "" {
		w, _ := os.Create(f)
		pprof.StartCPUProfile(w)
		defer pprof.StopCPUProfile()
	}
	emitJSON(map[string]string{"addr": ln.Addr().String()})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() { // until the parent closes it
		if sc.Text() == "mem" {
			reportMem()
		}
	}
	srv.Close()
	store.Close()
}

// subsReport is what a subscriber process reports at the end.
type subsReport struct {
	Conns    int        `json:"conns"`
	Frames   int64      `json:"frames"`   // WebSocket messages after the subscription's response
	Batches  int64      `json:"batches"`  // of which server BATCHes
	Updates  int64      `json:"updates"`  // COUNTER_UPDATE messages, BATCH items included
	Missing  int64      `json:"missing"`  // (subscriber, write) pairs never seen
	Latency  [][2]int64 `json:"latency"`  // (bucket, count): write → seen, latencyBucket wide
	Complete int        `json:"complete"` // connections that saw the last write
}

// subscriber is one subscriber connection of a child: a raw TCP socket
// speaking WebSocket (RFC 6455) by hand, read by the child's one epoll
// loop. The load generator shares the server's cores, so it should cost as
// little as it can: one read per readiness event for any number of frames,
// no goroutine per connection (coder/websocket cost as much CPU per update
// as the server).
type subscriber struct {
	fd                      int
	in                      []byte  // bytes read, not yet a complete frame
	last                    int64   // highest value seen
	seen                    []int64 // seen[k-1]: unix nanos when a value ≥ k arrived
	frames, batches, update int64
	closed                  bool
}

// fanoutSubs opens TOPGUN_BENCH_CONNS subscribers of TOPGUN_BENCH_COUNTER
// on TOPGUN_BENCH_ADDR (compact views, node ids sub-<first+i>), prints
// {"ready": true}, then {"done": true} once every connection saw value
// TOPGUN_BENCH_WRITES, then reads the writes' times as one JSON line on
// stdin and prints its subsReport.
func fanoutSubs() {
	addr, prefix := os.Getenv("TOPGUN_BENCH_ADDR"), os.Getenv("TOPGUN_BENCH_COUNTER")
	counters, _ := strconv.Atoi(os.Getenv("TOPGUN_BENCH_COUNTERS"))
	name := counterName(prefix, 0) // the counter whose writes are timed
	n, _ := strconv.Atoi(os.Getenv("TOPGUN_BENCH_CONNS"))
	first, _ := strconv.Atoi(os.Getenv("TOPGUN_BENCH_FIRST"))
	writes, _ := strconv.Atoi(os.Getenv("TOPGUN_BENCH_WRITES"))
	subs, err := subscribeAll(n, func(i int) (*subscriber, error) {
		return subscribe(addr, prefix, counters, fmt.Sprintf("sub-%06d", first+i), writes)
	})
	if err != nil {
		log.Fatalf("fanout subscribers: %v", err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatalf("fanout subscribers: epoll: %v", err)
	}
	byFD := make(map[int32]*subscriber, n)
	for _, s := range subs {
		if err := syscall.SetNonblock(s.fd, true); err != nil {
			log.Fatal(err)
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(s.fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
			log.Fatalf("fanout subscribers: epoll_ctl: %v", err)
		}
		byFD[int32(s.fd)] = s
	}
	complete := 0
	for _, s := range subs {
		if s.last >= int64(writes) {
			complete++
		}
	}
	done := make(chan struct{})
	if complete == n {
		close(done)
	}
	var stop atomic.Bool
	loopDone := make(chan struct{})
	go func() { // the event loop: bounded by stop, checked every 100 ms
		defer close(loopDone)
		events := make([]syscall.EpollEvent, 512)
		buf := make([]byte, 64<<10)
		for !stop.Load() {
			k, err := syscall.EpollWait(ep, events, 100)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				log.Fatalf("fanout subscribers: epoll_wait: %v", err)
			}
			for _, ev := range events[:k] {
				s := byFD[ev.Fd]
				if s.closed {
					continue
				}
				was := s.last
				s.readable(buf, name)
				if was < int64(writes) && s.last >= int64(writes) {
					if complete++; complete == n {
						close(done)
					}
				}
			}
		}
	}()
	emitJSON(map[string]bool{"ready": true})
	times := make(chan []int64, 1)
	go func() {
		var w struct {
			Writes []int64 `json:"writes"`
		}
		if err := json.NewDecoder(os.Stdin).Decode(&w); err != nil {
			log.Fatalf("fanout subscribers: write times: %v", err)
		}
		times <- w.Writes
	}()
	var wt []int64
	select {
	case <-done:
		emitJSON(map[string]bool{"done": true})
		wt = <-times
	case wt = <-times: // the parent gave up waiting
	}
	stop.Store(true)
	<-loopDone
	for _, s := range subs {
		syscall.Close(s.fd)
	}
	syscall.Close(ep)
	rep := subsReport{Conns: n}
	hist := map[int64]int64{}
	for _, s := range subs {
		if s.last >= int64(writes) {
			rep.Complete++
		}
		rep.Frames += s.frames
		rep.Batches += s.batches
		rep.Updates += s.update
		for k, t := range s.seen {
			if t == 0 || k >= len(wt) {
				rep.Missing++
				continue
			}
			hist[max(0, t-wt[k])/int64(latencyBucket)]++
		}
	}
	for b, c := range hist {
		rep.Latency = append(rep.Latency, [2]int64{b, c})
	}
	emitJSON(rep)
}

// subscribeAll makes n connections with dial, dialParallel at a time, and
// returns them, or the first error.
func subscribeAll(n int, dial func(i int) (*subscriber, error)) ([]*subscriber, error) {
	subs := make([]*subscriber, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, dialParallel)
	for i := range subs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s, err := dial(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			subs[i] = s
		}()
	}
	wg.Wait()
	return subs, first
}

// wsKey is the Sec-WebSocket-Key of every subscriber (any 16 bytes in
// base64 will do) and wsAccept the answer RFC 6455 prescribes for it.
const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

var wsAccept = func() string {
	h := sha1.Sum([]byte(wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}()

// subscribe connects, upgrades to WebSocket, negotiates compact views and
// subscribes to the counters named prefix-0 … prefix-(counters-1) through
// a net.Conn, reading until the DEVICE_ACK and every COUNTER_RESPONSE
// arrived; then it keeps a duplicate of the socket for
// the epoll loop and closes the net.Conn (and with it the Go runtime's
// interest in the socket).
func subscribe(addr, prefix string, counters int, node string, writes int) (*subscriber, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	fail := func(err error) (*subscriber, error) {
		return nil, fmt.Errorf("subscriber %s: %w", node, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + wsKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fail(err)
	}
	buf := make([]byte, 4096)
	var head []byte
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		k, err := c.Read(buf)
		if err != nil {
			return fail(fmt.Errorf("upgrade: %w", err))
		}
		head = append(head, buf[:k]...)
	}
	end := bytes.Index(head, []byte("\r\n\r\n")) + 4
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) || !bytes.Contains(head[:end], []byte(wsAccept)) {
		return fail(fmt.Errorf("upgrade refused: %q", head[:end]))
	}
	s := &subscriber{seen: make([]int64, writes)}
	s.in = append(s.in, head[end:]...)
	hello := []wire.Message{wire.DeviceHello{NodeID: node, Views: wire.ViewsCompact}}
	for j := range counters {
		hello = append(hello, wire.CounterRequest{Name: counterName(prefix, j)})
	}
	for _, m := range hello {
		b, err := wire.Encode(m)
		if err != nil {
			return fail(err)
		}
		if _, err := c.Write(maskedFrame(b)); err != nil {
			return fail(err)
		}
	}
	acked, subscribed := false, 0
	for !acked || subscribed < counters {
		for {
			payload, rest, ok, err := nextFrame(s.in)
			if err != nil {
				return fail(err)
			}
			if !ok {
				break
			}
			ms, _, err := openFrame(payload)
			if err != nil {
				return fail(err)
			}
			s.in = rest
			for _, m := range ms {
				switch m := m.(type) {
				case wire.DeviceAck:
					if m.Views != wire.ViewsCompact {
						return fail(errors.New("compact views not acknowledged"))
					}
					acked = true
				case wire.CounterResponse:
					if m.Name == counterName(prefix, 0) {
						s.observe(m.State, 0)
					}
					subscribed++
				}
			}
		}
		if acked && subscribed == counters {
			break
		}
		k, err := c.Read(buf)
		if err != nil {
			return fail(fmt.Errorf("handshake: %w", err))
		}
		s.in = append(s.in, buf[:k]...)
	}
	s.in = append([]byte(nil), s.in...)
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if s.fd, err = syscall.Dup(int(f.Fd())); err != nil {
		return fail(err)
	}
	syscall.CloseOnExec(s.fd)
	return s, nil
}

// maskedFrame is b as one binary client→server WebSocket frame (clients
// must mask; the key is fixed, which RFC 6455 allows the server to accept).
func maskedFrame(b []byte) []byte {
	key := [4]byte{0x5a, 0xa5, 0x3c, 0xc3}
	f := []byte{0x82}
	switch {
	case len(b) < 126:
		f = append(f, 0x80|byte(len(b)))
	case len(b) <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(len(b)))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(len(b)))
	}
	f = append(f, key[:]...)
	for i, c := range b {
		f = append(f, c^key[i%4])
	}
	return f
}

// nextFrame splits the first complete server→client frame (unmasked,
// unfragmented binary; the server sends nothing else but a close) off in.
func nextFrame(in []byte) (payload, rest []byte, ok bool, err error) {
	if len(in) < 2 {
		return nil, in, false, nil
	}
	if in[1]&0x80 != 0 {
		return nil, nil, false, errors.New("masked frame from the server")
	}
	n, h := uint64(in[1]&0x7f), 2
	switch n {
	case 126:
		if len(in) < 4 {
			return nil, in, false, nil
		}
		n, h = uint64(binary.BigEndian.Uint16(in[2:])), 4
	case 127:
		if len(in) < 10 {
			return nil, in, false, nil
		}
		n, h = binary.BigEndian.Uint64(in[2:]), 10
	}
	if n > 4<<20 {
		return nil, nil, false, fmt.Errorf("frame of %d bytes", n)
	}
	if uint64(len(in)-h) < n {
		return nil, in, false, nil
	}
	switch op := in[0] & 0x0f; {
	case in[0]&0x80 == 0:
		return nil, nil, false, errors.New("fragmented frame")
	case op == 0x8:
		return nil, nil, false, errors.New("closed by the server")
	case op != 0x2:
		return nil, nil, false, fmt.Errorf("opcode %#x", op)
	}
	return in[h : h+int(n)], in[h+int(n):], true, nil
}

// readable reads what arrived on s (one read: the buffer holds many
// frames) and handles every complete frame; name is the timed counter.
func (s *subscriber) readable(buf []byte, name string) {
	k, err := syscall.Read(s.fd, buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil || k == 0 {
		s.closed = true
		return
	}
	now := time.Now().UnixNano()
	data := buf[:k]
	if len(s.in) > 0 {
		s.in = append(s.in, data...)
		data = s.in
	}
	for {
		payload, rest, ok, err := nextFrame(data)
		if err != nil {
			log.Fatalf("fanout subscriber: %v", err)
		}
		if !ok {
			break
		}
		data = rest
		s.frames++
		ms, batch, err := openFrame(payload)
		if err != nil {
			log.Fatalf("fanout subscriber: %v", err)
		}
		if batch {
			s.batches++
		}
		for _, m := range ms {
			if u, ok := m.(wire.CounterUpdate); ok {
				s.update++
				if u.Name == name {
					s.observe(u.State, now)
				}
			}
		}
	}
	s.in = append(s.in[:0], data...) // a partial frame waits for the next read
}

func counterName(prefix string, j int) string { return fmt.Sprintf("%s-%d", prefix, j) }

// openFrame decodes a frame, opening a server BATCH.
func openFrame(b []byte) ([]wire.Message, bool, error) {
	m, err := wire.Decode(b)
	if err != nil {
		return nil, false, err
	}
	bm, ok := m.(wire.Batch)
	if !ok {
		return []wire.Message{m}, false, nil
	}
	items, err := wire.SplitServerBatch(bm.Data)
	if err != nil {
		return nil, true, err
	}
	ms := make([]wire.Message, 0, len(items))
	for _, it := range items {
		im, err := wire.Decode(it)
		if err != nil {
			return nil, true, err
		}
		ms = append(ms, im)
	}
	return ms, true, nil
}

// observe records a view of the counter seen at unix nanos now: every
// write up to its value is seen.
func (s *subscriber) observe(st crdt.State, now int64) {
	v, err := st.Value()
	if err != nil {
		log.Fatalf("fanout subscriber: %v", err)
	}
	for k := s.last + 1; k <= min(v, int64(len(s.seen))); k++ {
		s.seen[k-1] = now
	}
	s.last = max(s.last, v)
}

// children are the child processes running, killed by PID by fatalf.
var children struct {
	sync.Mutex
	m map[*child]bool
}

// fatalf ends every child process by its PID, then logs and exits.
func fatalf(format string, args ...any) {
	children.Lock()
	for c := range children.m {
		c.cmd.Process.Kill()
	}
	children.Unlock()
	log.Fatalf(format, args...)
}

// child is a started child process and its stdout lines.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte
}

func startChild(env ...string) *child {
	exe, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fatalf("%v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatalf("%v", err)
	}
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan []byte, 8)}
	children.Lock()
	if children.m == nil {
		children.m = map[*child]bool{}
	}
	children.m[c] = true
	children.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			c.lines <- slices.Clone(sc.Bytes())
		}
		close(c.lines)
	}()
	return c
}

// line returns the child's next stdout line, decoded into v.
func (c *child) line(v any, timeout time.Duration) error {
	select {
	case b, ok := <-c.lines:
		if !ok {
			return fmt.Errorf("child %d exited", c.cmd.Process.Pid)
		}
		return json.Unmarshal(b, v)
	case <-time.After(timeout):
		return fmt.Errorf("child %d: nothing within %v", c.cmd.Process.Pid, timeout)
	}
}

// end closes the child's stdin and waits for it to exit, killing it by
// PID if it does not within a few seconds.
func (c *child) end() {
	c.stdin.Close()
	exited := make(chan struct{})
	go func() { c.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-exited
	}
	children.Lock()
	delete(children.m, c)
	children.Unlock()
}

// cpuTicks is utime+stime of process pid from /proc/<pid>/stat, in clock
// ticks (USER_HZ, 100 per second on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		fatalf("%v", err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of stat
	s, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return u + s
}

const tick = 10 * time.Millisecond // one clock tick at USER_HZ 100

// fanoutRow is one run of the fan-out benchmark.
type fanoutRow struct {
	subs, counters       int
	children             int
	ping50, ping99       time.Duration
	seen50, seen99       time.Duration
	ack50, ack99         time.Duration // write → the writer's own reply
	max                  time.Duration
	framesPerWrite       float64 // per subscriber per write
	updatesPerWrite      float64
	batches              int64
	serverCPU, loadCPU   time.Duration
	cpuPerUpdate         time.Duration // server CPU per delivered update
	missing, incompleted int64
}

// startServerChild starts a server process (fanoutServer) with a data
// directory of its own under dir and returns it and its address.
func startServerChild(dir, name string) (*child, string) {
	srvDir, err := os.MkdirTemp(dir, name)
	if err != nil {
		fatalf("%v", err)
	}
	srv := startChild(roleEnv+"=fanout-server", "TOPGUN_BENCH_DIR="+srvDir)
	var addr struct{ Addr string }
	if err := srv.line(&addr, childTimeout); err != nil {
		srv.end()
		fatalf("%v", err)
	}
	return srv, addr.Addr
}

// fanoutRun starts a server process and ceil(S/perChild) subscriber
// processes, writes fanoutWrites times at fanoutRate and measures.
func fanoutRun(dir string, subs, counters int) fanoutRow {
	srv, addr := startServerChild(dir, "fanout-")
	defer srv.end()
	url := "ws://" + addr + "/ws"
	prefix := fmt.Sprintf("fanout-%d-%d", subs, counters)
	name := counterName(prefix, 0)

	nch := (subs + perChild - 1) / perChild
	kids := make([]*child, nch)
	for i := range kids {
		lo, hi := i*subs/nch, (i+1)*subs/nch
		kids[i] = startChild(roleEnv+"=fanout-subs", "TOPGUN_BENCH_ADDR="+addr, "TOPGUN_BENCH_COUNTER="+prefix, fmt.Sprintf("TOPGUN_BENCH_COUNTERS=%d", counters),
			fmt.Sprintf("TOPGUN_BENCH_CONNS=%d", hi-lo), fmt.Sprintf("TOPGUN_BENCH_FIRST=%d", lo),
			fmt.Sprintf("TOPGUN_BENCH_WRITES=%d", fanoutWrites))
		defer kids[i].end()
	}
	for _, k := range kids {
		var ready struct{ Ready bool }
		if err := k.line(&ready, childTimeout); err != nil || !ready.Ready {
			fatalf("fanout: subscribers not ready: %v", err)
		}
	}

	w := dialRaw(url)
	defer w.ws.CloseNow()
	w.send(wire.DeviceHello{NodeID: "bench-writer", Views: wire.ViewsCompact})
	w.next()
	row := fanoutRow{subs: subs, counters: counters, children: nch}
	// Baseline: PING round trips on the idle writer connection, the
	// subscribers connected and idle.
	var pings []time.Duration
	for i := 0; i < fanoutPings; i++ {
		t0 := time.Now()
		w.send(wire.Ping{Timestamp: uint64(i)})
		if _, m := w.next(); m.Type() != wire.TypePong {
			fatalf("fanout: %s, want PONG", m.Type())
		}
		pings = append(pings, time.Since(t0))
	}
	row.ping50, row.ping99 = pct(pings, 0.5), pct(pings, 0.99)

	acks := &subscriber{seen: make([]int64, fanoutWrites)} // the writer's replies: each write acknowledged
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for acks.last < fanoutWrites {
			_, b, err := w.ws.Read(context.Background())
			if err != nil {
				return
			}
			now := time.Now().UnixNano()
			ms, _, err := openFrame(b)
			if err != nil {
				fatalf("fanout: writer: %v", err)
			}
			for _, m := range ms {
				if u, ok := m.(wire.CounterUpdate); ok && u.Name == name {
					acks.observe(u.State, now)
				}
			}
		}
	}()
	cpu0 := cpuTicks(srv.cmd.Process.Pid)
	load0 := int64(0)
	for _, k := range kids {
		load0 += cpuTicks(k.cmd.Process.Pid)
	}
	writes := make([]int64, fanoutWrites)
	start := time.Now()
	for k := range writes {
		time.Sleep(time.Until(start.Add(time.Duration(k) * time.Second / fanoutRate)))
		// One frame carrying a write to each counter.
		var m wire.Message = wire.CounterSync{Name: name, State: crdt.State{P: map[string]int64{"bench-writer": int64(k + 1)}, N: map[string]int64{}}}
		if counters > 1 {
			frames := make([][]byte, counters)
			for j := range frames {
				var err error
				frames[j], err = wire.Encode(wire.CounterSync{Name: counterName(prefix, j),
					State: crdt.State{P: map[string]int64{"bench-writer": int64(k + 1)}, N: map[string]int64{}}})
				if err != nil {
					fatalf("%v", err)
				}
			}
			m = wire.Batch{Count: uint32(counters), Data: wire.JoinBatch(frames...)} // client→server layout
		}
		writes[k] = time.Now().UnixNano()
		w.send(m)
	}
	deadline := time.Now().Add(deliverTimeout)
	for _, k := range kids {
		var done struct{ Done bool }
		if err := k.line(&done, time.Until(deadline)); err != nil {
			log.Printf("fanout S=%d: not every subscriber saw the last write: %v", subs, err)
			break
		}
	}
	select {
	case <-acked:
	case <-time.After(time.Until(deadline)):
		fatalf("fanout S=%d: the writer's writes were not all acknowledged", subs)
	}
	if acks.last < fanoutWrites {
		fatalf("fanout S=%d: the writer's connection ended after %d acknowledgements", subs, acks.last)
	}
	var ackLat []time.Duration
	for k, t := range acks.seen {
		ackLat = append(ackLat, time.Duration(t-writes[k]))
	}
	row.ack50, row.ack99 = pct(ackLat, 0.5), pct(ackLat, 0.99)
	row.serverCPU = time.Duration(cpuTicks(srv.cmd.Process.Pid)-cpu0) * tick
	load1 := int64(0)
	for _, k := range kids {
		load1 += cpuTicks(k.cmd.Process.Pid)
	}
	row.loadCPU = time.Duration(load1-load0) * tick

	wt, _ := json.Marshal(map[string][]int64{"writes": writes})
	hist := map[int64]int64{}
	var frames, updates, samples int64
	for _, k := range kids {
		k.stdin.Write(append(wt, '\n'))
		var rep subsReport
		for {
			if err := k.line(&rep, childTimeout); err != nil {
				fatalf("fanout: subscriber report: %v", err)
			}
			if rep.Conns > 0 {
				break // skip a late {"done": true}
			}
		}
		frames += rep.Frames
		updates += rep.Updates
		row.batches += rep.Batches
		row.missing += rep.Missing
		row.incompleted += int64(rep.Conns - rep.Complete)
		for _, b := range rep.Latency {
			hist[b[0]] += b[1]
			samples += b[1]
		}
	}
	pairs := float64(subs) * fanoutWrites
	row.framesPerWrite = float64(frames) / pairs
	row.updatesPerWrite = float64(updates) / pairs
	if updates > 0 {
		row.cpuPerUpdate = row.serverCPU / time.Duration(updates)
	}
	row.seen50, row.seen99, row.max = histPct(hist, samples, 0.5), histPct(hist, samples, 0.99), histPct(hist, samples, 1)
	return row
}

// histPct is the q-quantile of a latency histogram (the bucket's upper
// edge).
func histPct(hist map[int64]int64, n int64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	keys := make([]int64, 0, len(hist))
	for k := range hist {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rank := int64(math.Ceil(q * float64(n)))
	var acc int64
	for _, k := range keys {
		acc += hist[k]
		if acc >= max(rank, 1) {
			return time.Duration(k+1) * latencyBucket
		}
	}
	return time.Duration(keys[len(keys)-1]+1) * latencyBucket
}

// serverFanout runs the server package's in-process fan-out benchmark and
// returns, per S, CPU ns per delivered update and per PONG.
func serverFanout() map[int][2]float64 {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkFanout$", "-benchtime", "200x", "./server")
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		fatalf("bench: go test -bench BenchmarkFanout ./server: %v\n%s", err, b)
	}
	res := map[int][2]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], "BenchmarkFanout/S=") {
			continue
		}
		s, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f[0], "BenchmarkFanout/S="), "-", 2)[0])
		var r [2]float64
		for i := 1; i+1 < len(f); i++ {
			switch f[i+1] {
			case "cpu-ns/update":
				r[0], _ = strconv.ParseFloat(f[i], 64)
			case "cpu-ns/pong":
				r[1], _ = strconv.ParseFloat(f[i], 64)
			}
		}
		res[s] = r
	}
	for _, s := range fanoutSizes {
		if res[s][0] == 0 || res[s][1] == 0 {
			fatalf("bench: no BenchmarkFanout result for S=%d in:\n%s", s, b)
		}
	}
	return res
}

var fanoutSizes = []int{100, 1000, 5000, 10000}

// fanoutRuns are the (subscribers, counters) of the runs over WebSocket:
// one counter at every size, and 10 counters written together, where
// server BATCH has frames to join.
var fanoutRuns = [][2]int{{100, 1}, {1000, 1}, {5000, 1}, {10000, 1}, {1000, 10}, {5000, 10}}

// fanoutOnly, when set, keeps the runs of fanoutRuns with these S×C
// ("5000x1,1000x10"), for looking into one of them.
var fanoutOnly = flag.String("fanout-runs", "", `fan-out runs to make, as SxC pairs ("5000x1,1000x10"); default all`)

// fanoutBench measures fan-out to S subscribers over WebSocket, and the
// server's own cost per delivered update without sockets.
func fanoutBench(rep *report, dir string) {
	var rows []fanoutRow
	for _, r := range fanoutRuns {
		if *fanoutOnly != "" && !slices.Contains(strings.Split(*fanoutOnly, ","), fmt.Sprintf("%dx%d", r[0], r[1])) {
			continue
		}
		rows = append(rows, fanoutRun(dir, r[0], r[1]))
	}
	inproc := serverFanout()

	rep.p("## Fan-out: one writer, S subscribers of its counter\n\n")
	rep.p("The server (bbolt store, durable) runs in a process of its own; the S subscribers (compact views: DEVICE_HELLO\n")
	rep.p("with a node id and `views: \"compact\"`, then COUNTER_REQUEST) run in processes of at most %d connections each,\n", perChild)
	rep.p("each read by one epoll loop (WebSocket by hand, so that the load generator costs little); all on 127.0.0.1 and\n")
	rep.p("the same %d cores. One writer sends %d COUNTER_SYNCs at %d/s (values 1, 2, …); with C = 10 counters, each write\n", runtime.NumCPU(), fanoutWrites, fanoutRate)
	rep.p("is one client BATCH of a COUNTER_SYNC per counter, and every subscriber subscribes to all 10. write→seen: for each\n")
	rep.p("write and each subscriber, the time from sending the write until the subscriber read a value ≥ it (of the first\n")
	rep.p("counter); write→ack: until the writer got its own reply (stored, acknowledged). Baseline: %d PING round trips on\n", fanoutPings)
	rep.p("the writer's idle connection just before the writes, the subscribers connected.\n\n")
	rep.p("| S | C | write→seen p50 | p99 | max | write→ack p50 | p99 | baseline: PING p50 | p99 | ratio seen / PING p50 | p99 |\n")
	rep.p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	var at5k fanoutRow
	for _, r := range rows {
		rep.p("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %.0f× | %.0f× |\n", r.subs, r.counters, ms(r.seen50), ms(r.seen99), ms(r.max),
			ms(r.ack50), ms(r.ack99), ms(r.ping50), ms(r.ping99), float64(r.seen50)/float64(r.ping50), float64(r.seen99)/float64(r.ping99))
		if r.subs == 5000 && r.counters == 1 {
			at5k = r
		}
	}
	rep.p("\nWhat it costs. A subscriber that falls behind gets only the newest view of the counter (never a lost update),\n")
	rep.p("so it may receive fewer frames than there were writes. Server CPU: utime+stime of the server process over the\n")
	rep.p("writes (/proc/<pid>/stat, 10 ms ticks), per update delivered; the subscribers' processes likewise.\n\n")
	rep.p("| S | C | subscriber processes | frames per subscriber per write | of them BATCH | updates per subscriber per write | server CPU | server CPU per delivered update | subscribers' CPU |\n")
	rep.p("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		rep.p("| %d | %d | %d | %.3f | %d | %.3f | %s | %.1f µs | %s |\n", r.subs, r.counters, r.children, r.framesPerWrite, r.batches, r.updatesPerWrite,
			r.serverCPU.Round(10*time.Millisecond), float64(r.cpuPerUpdate)/1e3, r.loadCPU.Round(10*time.Millisecond))
	}
	for _, r := range rows {
		if r.missing > 0 || r.incompleted > 0 {
			rep.p("\nS=%d, C=%d: %d (subscriber, write) pairs never seen, %d subscribers without the last write.\n", r.subs, r.counters, r.missing, r.incompleted)
		}
	}
	rep.p("\nTarget write→seen p99 ≤ 100 ms at 5,000 subscribers of one counter: %s (%s). With one counter a subscriber\n", verdict(at5k.seen99 > 0 && at5k.seen99 <= 100*time.Millisecond), ms(at5k.seen99))
	rep.p("needs a frame per write, so BATCH has nothing to join (C = 10 shows what it joins); once the %d cores are\n", runtime.NumCPU())
	rep.p("saturated (server and subscribers share them), updates coalesce and latency is the time one round of S socket\n")
	rep.p("writes and reads takes.\n\n")
	rep.p("### The same without the network\n\n")
	rep.p("`go test -run '^$' -bench '^BenchmarkFanout$' -benchtime 200x ./server`: S subscribers with compact views without\n")
	rep.p("sockets (each connection's writer runs; its socket write is replaced by a counter), in-memory store; each write is\n")
	rep.p("delivered to every subscriber before the next. Process CPU (user+system) per delivered update, against the CPU per\n")
	rep.p("PONG when each subscriber answers a PING (one frame in, one out, no state) in the same run.\n\n")
	rep.p("| S | CPU per delivered update | baseline: CPU per PONG | ratio |\n|---|---|---|---|\n")
	worst := 0.0
	for _, s := range fanoutSizes {
		r := inproc[s]
		rep.p("| %d | %.2f µs | %.2f µs | %.2f× |\n", s, r[0]/1e3, r[1]/1e3, r[0]/r[1])
		worst = max(worst, r[0])
	}
	rep.p("\nTarget server CPU per delivered update ≤ 10 µs in-process: %s (largest %.2f µs).\n\n", verdict(worst <= 10e3), worst/1e3)
}
