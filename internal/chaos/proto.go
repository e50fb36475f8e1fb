package chaos

// msg is one line of JSON between the harness and a client worker: the
// worker reports events on its stdout, the harness answers on the
// worker's stdin. The harness stamps every event with its own monotonic
// clock when it reads it; workers send no times.
type msg struct {
	// K is the kind. Worker to harness: "hello" (Node), "inv" (an
	// operation starts: the worker waits for the reply before it acts, so
	// the stamp precedes the operation), "ret" (it ended: Res, Token,
	// Err), "write" (a fenced write with Token; the reply says whether
	// the resource accepted it), "lost" (OnLost fired: Res is the reason),
	// "acked" (a Flush succeeded: own P and N of Counter were confirmed),
	// "final" (after stop: own P, N, Value, OK = the last Flush
	// succeeded, Max = highest value seen), "converged" (OK, Value),
	// "viol" (a violation seen in the worker: Err), "bfinal" (after stop,
	// the stock: P restocked, N sold, OK = synced, Value shown). Harness to worker:
	// "reply" (ID, OK), "stop", "expect" (Counter, Value), "exit".
	K       string `json:"k"`
	ID      uint64 `json:"id,omitempty"`
	Op      string `json:"op,omitempty"`
	Lock    string `json:"lock,omitempty"`
	Token   uint64 `json:"token,omitempty"`
	OK      bool   `json:"ok,omitempty"`
	Res     string `json:"res,omitempty"`
	Err     string `json:"err,omitempty"`
	Counter string `json:"counter,omitempty"`
	P       int64  `json:"p,omitempty"`
	N       int64  `json:"n,omitempty"`
	Value   int64  `json:"value,omitempty"`
	Max     int64  `json:"max,omitempty"`
	Ops     int    `json:"ops,omitempty"`
	Node    string `json:"node,omitempty"`
}

// Results of lock operations ("ret".Res).
const (
	resGranted   = "granted"
	resDenied    = "denied"
	resError     = "error"
	resConfirmed = "confirmed" // release: the server answered success
	resFailed    = "failed"    // release: refused (the holder is told)
	resUnknown   = "unknown"   // release: no answer (connection lost)
)

// workerConfig is what a worker process gets in $TOPGUN_CHAOS_CONFIG.
type workerConfig struct {
	Index      int      `json:"index"`
	Seed       int64    `json:"seed"`
	URLs       []string `json:"urls"`
	Locks      []string `json:"locks"`
	IncCounter string   `json:"incCounter"`
	PNCounter  string   `json:"pnCounter"`
	// Stock is a bounded counter (min 0): worker 0 restocks it, every
	// worker sells from it with the rights it holds.
	Stock string `json:"stock"`
}

// Environment switches of a worker process: the harness (the runner
// binary, or a test binary) re-executes itself with them set.
const (
	envWorker = "TOPGUN_CHAOS_WORKER"
	envConfig = "TOPGUN_CHAOS_CONFIG"
)
