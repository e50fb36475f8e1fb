package server

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// scrape reads the server's /metrics in the Prometheus text format:
// "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetrics: every family the server exports moves when the server does
// the work it counts, scraped from GET /metrics on the main listener.
func TestMetrics(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{JWTSecret: testSecret})
	token := func(sub string) string {
		return hs256(t, testSecret, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	}
	before := scrape(t, url)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "topgun_outbox_bytes",
		`topgun_connections{state="open"}`, `topgun_frames_received_total{type="PING"}`} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	// moved waits until each metric has grown by at least its delta
	// since before (store writes and closes finish after the replies).
	moved := func(want map[string]float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := scrape(t, url)
			var missing []string
			for name, d := range want {
				if now[name]-before[name] < d {
					missing = append(missing, name+" "+strconv.FormatFloat(now[name]-before[name], 'g', -1, 64)+" < "+strconv.FormatFloat(d, 'g', -1, 64))
				}
			}
			if len(missing) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics did not move: %v", missing)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	gauge := func(name string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := scrape(t, url)[name]; got != want; got = scrape(t, url)[name] {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %g, want %g", name, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a := dial(t, url)
	expect[wire.AuthRequired](a)
	gauge(`topgun_connections{state="authenticating"}`, 1)
	a.send(wire.Auth{Token: token("alice"), NodeID: "node-a", Views: wire.ViewsCompact})
	expect[wire.AuthAck](a)
	gauge(`topgun_connections{state="authenticating"}`, 0)
	gauge(`topgun_connections{state="open"}`, 1)

	// Counters: a subscriber, a write by another connection, fan-out.
	a.send(wire.CounterRequest{Name: "m:likes"})
	expect[wire.CounterResponse](a)
	b := dial(t, url)
	expect[wire.AuthRequired](b)
	b.send(wire.Auth{Token: token("bob"), NodeID: "node-b", Views: wire.ViewsCompact})
	expect[wire.AuthAck](b)
	b.send(wire.CounterSync{Name: "m:likes", State: crdt.State{P: map[string]int64{"node-b": 3}, N: map[string]int64{}}})
	expect[wire.CounterUpdate](b) // the reply
	expect[wire.CounterUpdate](a) // fan-out

	// Locks: a grant, a denial, an expiry, a release.
	a.send(wire.LockRequest{RequestID: "1", Name: "m:lock", TTL: u64(1500)})
	expect[wire.LockGranted](a)
	b.send(wire.LockRequest{RequestID: "2", Name: "m:lock", TTL: u64(1000)})
	if d := expect[wire.LockReleased](b); d.Reason != wire.ReasonBusy {
		t.Fatalf("denial %+v, want busy", d)
	}
	b.send(wire.LockRequest{RequestID: "3", Name: "m:lock", TTL: u64(1000), Wait: 10000})
	gauge("topgun_lock_waiting", 1)
	if l := expect[wire.LockLost](a); l.Reason != wire.ReasonExpired {
		t.Fatalf("LOCK_LOST %+v, want expired", l)
	}
	g := expect[wire.LockGranted](b)
	gauge("topgun_lock_waiting", 0)
	b.send(wire.LockRelease{RequestID: "4", Name: "m:lock", FencingToken: g.FencingToken})
	expect[wire.LockReleased](b)

	// A frame that does not decode.
	a.sendBytes([]byte{0xc1})
	if e := expect[wire.Error](a); e.Code != 400 {
		t.Fatalf("ERROR %d, want 400", e.Code)
	}
	a.roundTrip()
	a.ws.Close(1000, "")

	moved(map[string]float64{
		"topgun_connections_opened_total":                        2,
		`topgun_connections_closed_total{code="1000"}`:           1,
		`topgun_frames_received_total{type="AUTH"}`:              2,
		`topgun_frames_received_total{type="COUNTER_SYNC"}`:      1,
		`topgun_frames_received_total{type="LOCK_REQUEST"}`:      3,
		`topgun_frames_received_total{type="PING"}`:              1,
		`topgun_frames_sent_total{type="AUTH_ACK"}`:              2,
		`topgun_frames_sent_total{type="COUNTER_UPDATE"}`:        1,
		`topgun_frames_sent_total{type="PONG"}`:                  1,
		"topgun_frames_invalid_total":                            1,
		`topgun_errors_sent_total{code="400"}`:                   1,
		"topgun_counter_merges_total":                            1,
		"topgun_fanout_updates_total":                            1,
		"topgun_lock_grants_total":                               2,
		"topgun_lock_releases_total":                             1,
		`topgun_lock_denials_total{reason="busy"}`:               1,
		`topgun_lock_lost_total{reason="expired"}`:               1,
		"topgun_lock_lease_expiries_total":                       1,
		`topgun_store_request_seconds_count{op="merge_counter"}`: 1,
		"topgun_store_batch_merges_count":                        1,
	})
	gauge(`topgun_connections{state="open"}`, 1)
}

// TestMetricsBounded: rights the broker grants are counted, and the
// bounded store's requests timed.
func TestMetricsBounded(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	before := scrape(t, url)
	r := dial(t, url)
	r.send(wire.DeviceHello{NodeID: "shop", Views: wire.ViewsCompact})
	expect[wire.DeviceAck](r)
	r.send(wire.BCounterRequest{Name: "m:stock", Min: 0})
	expect[wire.BCounterUpdate](r)
	// Stock of 5 added here, its rights handed to the broker.
	r.send(wire.BCounterSync{Name: "m:stock", State: crdt.BState{P: map[string]int64{"shop": 5},
		T: map[string]map[string]int64{"shop": {wire.BrokerNode: 5}}}})
	expect[wire.BCounterUpdate](r)
	r.send(wire.BCounterRights{RequestID: "1", Name: "m:stock", Amount: 2})
	if g := expect[wire.BCounterGrant](r); g.Granted != 2 {
		t.Fatalf("granted %d, want 2", g.Granted)
	}
	after := scrape(t, url)
	for name, want := range map[string]float64{
		"topgun_bounded_rights_granted_total":                     2,
		`topgun_frames_received_total{type="BCOUNTER_RIGHTS"}`:    1,
		`topgun_store_request_seconds_count{op="update_bounded"}`: 2,
	} {
		if d := after[name] - before[name]; d < want {
			t.Errorf("%s moved by %g, want ≥ %g", name, d, want)
		}
	}
}

// TestMetricsCoalesced: changes to a counter that reach a subscriber
// while its update waits are folded into it and counted.
func TestMetricsCoalesced(t *testing.T) {
	t.Parallel()
	url, srv := start(t, Config{})
	before := scrape(t, url)
	sub := dial(t, url)
	sub.send(wire.DeviceHello{NodeID: "sub", Views: wire.ViewsCompact})
	expect[wire.DeviceAck](sub)
	sub.send(wire.CounterRequest{Name: "m:c"})
	expect[wire.CounterResponse](sub)
	// The subscriber's writer is held, so every write waits for it.
	srv.mu.Lock()
	var sc *conn
	for c := range srv.conns {
		sc = c
	}
	srv.mu.Unlock()
	sc.mu.Lock()
	sc.hold = true
	sc.mu.Unlock()
	w := dial(t, url)
	w.send(wire.DeviceHello{NodeID: "w", Views: wire.ViewsCompact})
	expect[wire.DeviceAck](w)
	for i := range 5 {
		w.send(wire.CounterSync{Name: "m:c", State: crdt.State{P: map[string]int64{"w": int64(i + 1)}, N: map[string]int64{}}})
		expect[wire.CounterUpdate](w) // the reply, once durable
	}
	// 4 of the 5 changes join the first one's update; 3 if a round of
	// the writer that was ending when it was held took the first. Fan-out
	// follows the replies, so it may take a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := scrape(t, url)["topgun_fanout_coalesced_total"] - before["topgun_fanout_coalesced_total"]
		if d >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coalesced %g, want ≥ 3 (5 writes, the subscriber's writer held)", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sc.startWriter()
	for {
		u := expect[wire.CounterUpdate](sub)
		if v, _ := u.State.Value(); v == 5 {
			break
		}
	}
}
