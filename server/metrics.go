package server

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/sync/wire"
)

// metrics are the server's Prometheus metrics (docs/metrics.md). Every
// label takes values from a small fixed set (message types, error codes,
// close codes, denial reasons, store operations), never from what a client
// names.
type metrics struct {
	reg *prometheus.Registry

	connsOpened prometheus.Counter
	connsClosed *prometheus.CounterVec // code: the close code the server sent, or "none"
	connsAuth   prometheus.Gauge       // waiting for AUTH
	connsOpen   prometheus.Gauge       // authenticated (or no-auth), serving

	// The counters of the per-frame paths are hotCounters.
	in, out    map[string]*hotCounter // by message type
	inInvalid  prometheus.Counter     // frames that did not decode
	errorsSent *prometheus.CounterVec // code

	merges          *hotCounter
	fanoutUpdates   *hotCounter
	fanoutCoalesced *hotCounter

	lockGrants    prometheus.Counter
	lockReleases  prometheus.Counter
	lockDenials   *prometheus.CounterVec // reason
	lockLost      *prometheus.CounterVec // reason
	leaseExpiries prometheus.Counter
	lockWaiting   prometheus.Gauge

	boundedGranted prometheus.Counter

	storeSeconds *prometheus.HistogramVec // op
	storeMerges  prometheus.Histogram     // client merges stored by one write
}

// messageTypes are the label values of the frame counters.
var messageTypes = []string{
	wire.TypeAuthRequired, wire.TypeAuth, wire.TypeAuthAck, wire.TypeAuthFail,
	wire.TypeDeviceHello, wire.TypeDeviceAck, wire.TypePing, wire.TypePong,
	wire.TypeError, wire.TypeBatch, wire.TypeCounterRequest, wire.TypeCounterResponse,
	wire.TypeCounterSync, wire.TypeCounterUpdate, wire.TypeCounterUnsubscribe,
	wire.TypeLockRequest, wire.TypeLockGranted, wire.TypeLockRelease,
	wire.TypeLockReleased, wire.TypeLockLost,
	wire.TypeBCounterRequest, wire.TypeBCounterSync, wire.TypeBCounterUpdate, wire.TypeBCounterRights,
	wire.TypeBCounterGrant, wire.TypeBCounterUnsubscribe,
}

// newMetrics registers the server's metrics, with Go runtime and process
// metrics, on reg (a new registry if nil). s reports the outbox and the
// connections' states when scraped.
func newMetrics(reg *prometheus.Registry, s *Server) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := factory{reg}
	m := &metrics{
		reg: reg,
		connsOpened: f.counter("topgun_connections_opened_total",
			"WebSocket connections accepted."),
		connsClosed: f.counterVec("topgun_connections_closed_total",
			`Connections ended, by the close code the server sent ("1000" normal, "1001" shutdown, "1002" protocol error, "1008" policy: idle, auth timeout, slow consumer, "1009" message too big; "none": the socket broke first).`,
			"code"),
		in:        map[string]*hotCounter{},
		out:       map[string]*hotCounter{},
		inInvalid: f.counter("topgun_frames_invalid_total", "Frames received that did not decode (each answered with ERROR 400)."),
		errorsSent: f.counterVec("topgun_errors_sent_total",
			"ERROR messages sent, by code.", "code"),
		merges: f.hot("topgun_counter_merges_total",
			"COUNTER_SYNC states merged into counters."),
		fanoutUpdates: f.hot("topgun_fanout_updates_total",
			"Counter updates written to subscribers (a BATCH counts each update it carries)."),
		fanoutCoalesced: f.hot("topgun_fanout_coalesced_total",
			"Counter changes folded into an update already waiting for the same subscriber: the subscriber gets the newest value once."),
		lockGrants: f.counter("topgun_lock_grants_total",
			"LOCK_GRANTED sent (grants and renewals)."),
		lockReleases: f.counter("topgun_lock_releases_total",
			"Successful LOCK_RELEASE answers."),
		lockDenials: f.counterVec("topgun_lock_denials_total",
			"LOCK_RELEASED with success false: denied requests and refused releases, by reason.", "reason"),
		lockLost: f.counterVec("topgun_lock_lost_total",
			"LOCK_LOST sent to holders, by reason.", "reason"),
		leaseExpiries: f.counter("topgun_lock_lease_expiries_total",
			"Leases that ran out while their holder was connected (LOCK_LOST expired)."),
		lockWaiting: f.gauge("topgun_lock_waiting",
			"LOCK_REQUESTs with a wait that this node's clients sent and that are not answered yet: the requests queued behind holders."),
		boundedGranted: f.counter("topgun_bounded_rights_granted_total",
			"Rights of bounded counters the server (the broker) handed to clients that asked (BCOUNTER_GRANT)."),
		storeSeconds: f.histogramVec("topgun_store_request_seconds",
			"Latency of the server's store requests (bbolt, memory, or etcd in cluster mode), by operation.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, "op"),
		storeMerges: f.histogram("topgun_store_batch_merges",
			"Client merges of one counter made durable by one store write (they wait and join while a write runs).",
			prometheus.ExponentialBuckets(1, 2, 12)),
	}
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "topgun_connections",
		Help: `Open WebSocket connections, by state ("authenticating": waiting for AUTH; "open": serving).`}, []string{"state"})
	reg.MustRegister(conns)
	m.connsAuth, m.connsOpen = conns.WithLabelValues("authenticating"), conns.WithLabelValues("open")
	in := f.hotVec("topgun_frames_received_total",
		"Messages received, by type (a BATCH counts once and each of its items once more).", "type")
	out := f.hotVec("topgun_frames_sent_total",
		"Messages sent, by type (counter updates to subscribers count each; see topgun_fanout_updates_total).", "type")
	for _, t := range messageTypes {
		m.in[t], m.out[t] = in.with(t), out.with(t)
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "topgun_outbox_bytes",
			Help: "Bytes encoded and waiting to be written to connections, summed over all connections."},
			func() float64 { return float64(s.outboxBytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "topgun_slow_write_rounds_total",
			Help: "Writer rounds whose socket could not take everything at once (the connection then got a goroutine of its own)."},
			func() float64 { return float64(s.slowRounds.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// factory registers metrics on one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// received counts a decoded message of connection id.
func (m *metrics) received(id uint64, typ string) {
	if c := m.in[typ]; c != nil {
		c.add(id, 1)
	}
}

// sent counts a message queued for connection id, and what it says about
// locks and errors.
func (m *metrics) sent(id uint64, msg wire.Message) {
	if c := m.out[msg.Type()]; c != nil {
		c.add(id, 1)
	}
	switch msg := msg.(type) {
	case wire.Error:
		m.errorsSent.WithLabelValues(strconv.FormatUint(uint64(msg.Code), 10)).Inc()
	case wire.LockGranted:
		m.lockGrants.Inc()
	case wire.LockReleased:
		if msg.Success {
			m.lockReleases.Inc()
		} else {
			m.lockDenials.WithLabelValues(msg.Reason).Inc()
		}
	case wire.LockLost:
		m.lockLost.WithLabelValues(msg.Reason).Inc()
		if msg.Reason == wire.ReasonExpired {
			m.leaseExpiries.Inc()
		}
	}
}

// updatesWritten counts n counter updates written to subscriber id.
func (m *metrics) updatesWritten(id uint64, n int) {
	if n > 0 {
		m.out[wire.TypeCounterUpdate].add(id, uint64(n))
		m.fanoutUpdates.add(id, uint64(n))
	}
}

// closed counts a connection that ended with close code sent (0: none).
func (m *metrics) closed(sent int) {
	code := "none"
	if sent != 0 {
		code = strconv.Itoa(sent)
	}
	m.connsClosed.WithLabelValues(code).Inc()
}

// hotCounter is a counter for the per-frame paths. A Prometheus counter
// is one atomic word, which the cores fight over when every frame adds to
// it (5% of the CPU of BenchmarkServerMerge on 2 cores went to the
// increments); a hotCounter spreads the adds over stripes, a cache line
// each, chosen by connection, and sums them when scraped.
type hotCounter struct {
	stripes [hotStripes]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

const hotStripes = 16

func (h *hotCounter) add(key, n uint64) { h.stripes[key%hotStripes].n.Add(n) }

func (h *hotCounter) value() float64 {
	var n uint64
	for i := range h.stripes {
		n += h.stripes[i].n.Load()
	}
	return float64(n)
}

// hotFamily exports hotCounters of one metric family, each with its label
// values.
type hotFamily struct {
	desc   *prometheus.Desc
	labels [][]string
	ctrs   []*hotCounter
}

func (f *hotFamily) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *hotFamily) Collect(ch chan<- prometheus.Metric) {
	for i, c := range f.ctrs {
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, c.value(), f.labels[i]...)
	}
}

// with adds the counter of the family's label values.
func (f *hotFamily) with(values ...string) *hotCounter {
	c := new(hotCounter)
	f.labels = append(f.labels, values)
	f.ctrs = append(f.ctrs, c)
	return c
}

func (f factory) hotVec(name, help string, labels ...string) *hotFamily {
	fam := &hotFamily{desc: prometheus.NewDesc(name, help, labels, nil)}
	f.reg.MustRegister(fam)
	return fam
}

func (f factory) hot(name, help string) *hotCounter { return f.hotVec(name, help).with() }

// handler serves the metrics in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// outboxBytes sums what waits to be written to every connection.
func (s *Server) outboxBytes() int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		c.mu.Lock()
		n += c.outBytes
		c.mu.Unlock()
	}
	return n
}

// timedStore is a storage.Store whose requests are timed.
type timedStore struct {
	storage.Store
	m *metrics
}

// timedWatcher is a timedStore over a store that watches counters.
type timedWatcher struct {
	timedStore
	w storage.CounterWatcher
}

// timeStore wraps st so that its requests are timed, keeping its
// storage.CounterWatcher if it has one.
func timeStore(st storage.Store, m *metrics) storage.Store {
	t := timedStore{st, m}
	if w, ok := st.(storage.CounterWatcher); ok {
		return &timedWatcher{t, w}
	}
	return &t
}

// storeRequest records a store request of kind op begun at start.
func (m *metrics) storeRequest(op string, start time.Time) {
	m.storeSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (t *timedStore) LoadCounter(ctx context.Context, name string) (crdt.State, error) {
	defer t.m.storeRequest("load_counter", time.Now())
	return t.Store.LoadCounter(ctx, name)
}

func (t *timedStore) MergeCounter(ctx context.Context, name string, entries crdt.State) error {
	defer t.m.storeRequest("merge_counter", time.Now())
	return t.Store.MergeCounter(ctx, name, entries)
}

func (t *timedStore) ClaimNodes(ctx context.Context, nodes []string, user string) ([]string, error) {
	defer t.m.storeRequest("claim_nodes", time.Now())
	return t.Store.ClaimNodes(ctx, nodes, user)
}

func (t *timedStore) ReserveFencing(ctx context.Context, n uint64) (uint64, error) {
	defer t.m.storeRequest("reserve_fencing", time.Now())
	return t.Store.ReserveFencing(ctx, n)
}

// timedBounded is a storage.BoundedStore whose requests are timed.
type timedBounded struct {
	storage.BoundedStore
	m *metrics
}

func (t *timedBounded) LoadBounded(ctx context.Context, name string) (crdt.BState, bool, error) {
	defer t.m.storeRequest("load_bounded", time.Now())
	return t.BoundedStore.LoadBounded(ctx, name)
}

func (t *timedBounded) UpdateBounded(ctx context.Context, name string,
	fn func(cur crdt.BState, ok bool) (crdt.BState, bool, error)) (crdt.BState, error) {
	defer t.m.storeRequest("update_bounded", time.Now())
	return t.BoundedStore.UpdateBounded(ctx, name, fn)
}

func (t *timedWatcher) WatchCounter(ctx context.Context, name string, fn func(crdt.State)) (crdt.State, error) {
	defer t.m.storeRequest("watch_counter", time.Now())
	return t.w.WatchCounter(ctx, name, fn)
}
