package chaos

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// history is everything the harness saw, stamped with one monotonic
// clock (nanoseconds since the run started): no check compares clocks of
// two processes.
// earlyLost is a lost notice waiting for its grant's report.
type earlyLost struct {
	reason string
	at     int64
}

type history struct {
	start time.Time

	mu     sync.Mutex
	grants []*grant
	open   map[openKey]*grant // a worker's current grant of a lock
	// early holds a LOCK_LOST notice that came before the grant it ends:
	// OnLost runs on the client's goroutine and can report a lease
	// revoked or expired right after its grant before the worker's loop
	// reports the grant itself.
	early    map[openKey]earlyLost
	inv      map[invKey]int64 // worker's pending operation → its call stamp
	resource map[string]*fenced
	acks     []int64 // return stamps of successful flushes, by their call stamps (ackCalls)
	ackCalls []int64
	acked    map[nodeCounter][2]int64 // highest acknowledged own (p, n)
	finals   map[nodeCounter]msg
	bfinals  map[string]msg // by node: the stock's final report
	nodes    map[int]string // worker → node id
	conv     []msg
	viols    []string
	ops      int
}

type openKey struct {
	worker int
	lock   string
}

type invKey struct {
	worker int
	op     string
	lock   string
}

type nodeCounter struct {
	node, counter string
}

// grant is one lease: its acquire's call and return stamps, its token, how
// it ended (release confirmed by the server, or the holder told otherwise)
// and the fenced writes made with it.
type grant struct {
	worker       int
	lock         string
	token        uint64
	call, ret    int64
	end          string // "" while open; resConfirmed, resFailed, resUnknown, "lost:<reason>"
	endCall      int64  // release's call (for a confirmed release)
	endAt        int64  // when the harness learnt the end
	rejected     int    // writes the fenced resource refused
	rejectedBy   uint64 // the highest token it had seen then
	writesPassed int
}

// fenced is the resource a lock protects: it accepts a write only with a
// token at least the highest it has seen.
type fenced struct {
	highest  uint64
	accepted []uint64
}

func newHistory() *history {
	return &history{start: time.Now(), open: map[openKey]*grant{}, early: map[openKey]earlyLost{}, inv: map[invKey]int64{},
		resource: map[string]*fenced{}, acked: map[nodeCounter][2]int64{}, finals: map[nodeCounter]msg{}, bfinals: map[string]msg{},
		nodes: map[int]string{}}
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) violation(format string, args ...any) {
	h.mu.Lock()
	h.viols = append(h.viols, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// event records one line from worker w and returns the reply to send, if
// any. The stamp is taken before anything else.
func (h *history) event(w int, m msg) (reply *msg) {
	t := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	switch m.K {
	case "hello":
		h.nodes[w] = m.Node
	case "inv":
		h.inv[invKey{w, m.Op, m.Lock}] = t
		return &msg{K: "reply", ID: m.ID, OK: true}
	case "ret":
		h.ops++
		call := h.inv[invKey{w, m.Op, m.Lock}]
		switch m.Op {
		case "flush":
			if m.Res == resConfirmed {
				h.ackCalls = append(h.ackCalls, call)
				h.acks = append(h.acks, t)
			}
		case "acquire":
			if m.Res == resGranted {
				g := &grant{worker: w, lock: m.Lock, token: m.Token, call: call, ret: t}
				h.grants = append(h.grants, g)
				if old := h.open[openKey{w, m.Lock}]; old != nil && old.end == "" {
					h.viols = append(h.viols, fmt.Sprintf("lock %s: worker %d granted token %d while its grant %d had not ended", m.Lock, w, m.Token, old.token))
				}
				h.open[openKey{w, m.Lock}] = g
				// A notice stamped after this acquire's call and before its
				// return ends this grant; an older one was late for an
				// ended grant.
				if e, ok := h.early[openKey{w, m.Lock}]; ok {
					delete(h.early, openKey{w, m.Lock})
					if e.at >= call {
						g.end, g.endAt = "lost:"+e.reason, e.at
					}
				}
			}
		case "release":
			if g := h.open[openKey{w, m.Lock}]; g != nil && g.end == "" {
				g.end, g.endCall, g.endAt = m.Res, call, t
			}
		}
	case "lost":
		if g := h.open[openKey{w, m.Lock}]; g != nil && g.end == "" {
			g.end, g.endAt = "lost:"+m.Res, t
		} else {
			h.early[openKey{w, m.Lock}] = earlyLost{m.Res, t}
		}
	case "write":
		h.ops++
		r := h.resource[m.Lock]
		if r == nil {
			r = &fenced{}
			h.resource[m.Lock] = r
		}
		ok := m.Token >= r.highest
		g := h.open[openKey{w, m.Lock}]
		if ok {
			r.highest = m.Token
			r.accepted = append(r.accepted, m.Token)
			if g != nil {
				g.writesPassed++
			}
		} else if g != nil {
			g.rejected++
			g.rejectedBy = r.highest
		}
		return &msg{K: "reply", ID: m.ID, OK: ok}
	case "acked":
		k := nodeCounter{h.nodes[w], m.Counter}
		a := h.acked[k]
		h.acked[k] = [2]int64{max(a[0], m.P), max(a[1], m.N)}
	case "final":
		h.finals[nodeCounter{m.Node, m.Counter}] = m
	case "bfinal":
		h.bfinals[m.Node] = m
		h.ops += m.Ops
	case "converged":
		h.conv = append(h.conv, m)
	case "viol":
		h.viols = append(h.viols, fmt.Sprintf("worker %d: %s", w, m.Err))
	}
	return nil
}

// grantRecovery returns, for a heal at t, the time until the first grant
// whose acquire was invoked at or after t, and whether there was one.
func (h *history) grantRecovery(t int64) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	best := int64(math.MaxInt64)
	for _, g := range h.grants {
		if g.call >= t && g.ret < best {
			best = g.ret
		}
	}
	if best == math.MaxInt64 {
		return 0, false
	}
	return time.Duration(best - t), true
}

// ackRecovery is grantRecovery for acknowledged counter flushes.
func (h *history) ackRecovery(t int64) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	best := int64(math.MaxInt64)
	for i, c := range h.ackCalls {
		if c >= t && h.acks[i] < best {
			best = h.acks[i]
		}
	}
	if best == math.MaxInt64 {
		return 0, false
	}
	return time.Duration(best - t), true
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(math.Ceil(p*float64(len(s))))-1]
}
