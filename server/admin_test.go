package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// httpBase turns a server's ws URL into its http base URL.
func httpBase(wsURL string) string {
	return "http://" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws://"), "/ws")
}

// adminCall makes an admin request and decodes the JSON answer into out
// (nil: into a map); it returns the status and the decoded error, if any.
func adminCall(t *testing.T, method, u, bearer, body string, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %s", method, u, ct, b)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s %s: %v in %s", method, u, err, b)
	}
	if out != nil && e.Error == "" {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, u, err, b)
		}
	}
	return resp.StatusCode, e.Error
}

// TestAdminAccess: the admin token, or a JWT with the admin claim; 401
// without a credential, 403 with a wrong or insufficient one; a --no-auth
// server without an admin token answers loopback clients only.
func TestAdminAccess(t *testing.T) {
	t.Parallel()
	const adminToken = "admin-token-for-tests"
	jwtURL, _ := start(t, Config{JWTSecret: testSecret, AdminToken: adminToken})
	jwtOnly, _ := start(t, Config{JWTSecret: testSecret})
	open, _ := start(t, Config{})
	tokenOnly, _ := start(t, Config{AdminToken: adminToken})

	admin := valid("ops")
	admin[AdminClaim] = true
	notAdmin := valid("alice")
	notAdmin[AdminClaim] = "yes" // only the boolean true grants it
	expired := valid("ops")
	expired[AdminClaim] = true
	expired["exp"] = time.Now().Add(-time.Hour).Unix()

	for _, tc := range []struct {
		name, url, bearer string
		want              int
		msg               string
	}{
		{"admin token", jwtURL, adminToken, 200, ""},
		{"admin JWT", jwtURL, hs256(t, testSecret, admin), 200, ""},
		{"admin JWT without admin token", jwtOnly, hs256(t, testSecret, admin), 200, ""},
		{"nothing", jwtURL, "", 401, "credential required"},
		{"wrong token", jwtURL, "guess", 403, "wrong admin token"},
		{"admin token prefix", jwtURL, adminToken[:5], 403, "wrong admin token"},
		{"JWT without the claim", jwtURL, hs256(t, testSecret, notAdmin), 403, "lacks the \"topgun_admin\""},
		{"expired admin JWT", jwtURL, hs256(t, testSecret, expired), 403, "token expired"},
		{"admin JWT, wrong key", jwtURL, hs256(t, "other-secret", admin), 403, "invalid signature"},
		{"no-auth from loopback", open, "", 200, ""},
		{"no-auth, token set, nothing", tokenOnly, "", 401, "credential required"},
		{"no-auth, token set", tokenOnly, adminToken, 200, ""},
		{"no-auth, token set, a JWT", tokenOnly, hs256(t, testSecret, admin), 403, "wrong admin token"},
	} {
		code, msg := adminCall(t, "GET", httpBase(tc.url)+"/v1/locks/x", tc.bearer, "", nil)
		if code != tc.want || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, msg, tc.want, tc.msg)
		}
	}

	// A --no-auth server without an admin token refuses other addresses.
	_, srv := start(t, Config{})
	req := httptest.NewRequest("GET", "/v1/locks/x", nil) // from 192.0.2.1
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "only loopback") {
		t.Errorf("no-auth from %s: %d %s", req.RemoteAddr, rec.Code, rec.Body)
	}
	for _, a := range []string{"127.0.0.1:5", "[::1]:5"} {
		if !isLoopback(a) {
			t.Errorf("%s is loopback", a)
		}
	}
}

// TestAdminBadRequests: every error is JSON with a reason: invalid names,
// bad bodies and limits, wrong methods, unknown paths.
func TestAdminBadRequests(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	base := httpBase(url)
	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		method, path, body string
		want               int
		msg                string
	}{
		{"GET", "/v1/locks/bad%20name", "", 400, "invalid"},
		{"GET", "/v1/counters/" + long, "", 400, ""},
		{"POST", "/v1/locks/ok/fence", "", 400, "want {\"token\""},
		{"POST", "/v1/locks/ok/fence", `{"token": -1}`, 400, "want {\"token\""},
		{"POST", "/v1/locks/ok/fence", `{"token": 1.5}`, 400, ""},
		{"POST", "/v1/locks/ok/fence", `{}`, 400, "no token"},
		{"POST", "/v1/locks/ok/fence", `{"token": "` + strings.Repeat("1", 5000) + `"}`, 400, ""},
		{"GET", "/v1/locks?prefix=a%20b", "", 400, "prefix"},
		{"GET", "/v1/locks?limit=0", "", 400, "limit"},
		{"GET", "/v1/locks?limit=1001", "", 400, "--admin-list-max"},
		{"POST", "/v1/locks/ok", "", 405, "use GET"},
		{"GET", "/v1/locks/ok/release", "", 405, "use POST"},
		{"GET", "/v1/nothing", "", 404, "no such admin endpoint"},
		{"POST", "/v1/locks/free/release", "", 404, "not held"},
	} {
		code, msg := adminCall(t, tc.method, base+tc.path, "", tc.body, nil)
		if code != tc.want || msg == "" || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s %s: %d %q, want %d %q", tc.method, tc.path, tc.body, code, msg, tc.want, tc.msg)
		}
	}
}

// TestAdminLocks: inspection, force-release (the holder gets LOCK_LOST
// revoked, the waiter the lock) and the fence check, on one node and on a
// node of a cluster.
func TestAdminLocks(t *testing.T) {
	eachLockMode(t, func(t *testing.T, mode lockMode) {
		wsURL, _ := start(t, mode(t, Config{}))
		base := httpBase(wsURL)
		a, b := dial(t, wsURL), dial(t, wsURL)
		a.send(lockReq("1", "jobs/1", 60000, 0))
		ga := expect[wire.LockGranted](a)
		b.send(lockReq("2", "jobs/1", 60000, 60000))
		b.roundTrip()

		lockURL := base + "/v1/locks/" + url.PathEscape("jobs/1")
		var in LockJSON
		if code, msg := adminCall(t, "GET", lockURL, "", "", &in); code != 200 {
			t.Fatalf("GET: %d %s", code, msg)
		}
		if !in.Held || in.Name != "jobs/1" || in.FencingToken != ga.FencingToken || in.Waiters != 1 ||
			in.Holder == nil || in.Holder.Conn == 0 || in.ExpiresInMs == nil || *in.ExpiresInMs <= 0 || *in.ExpiresInMs > 60000 {
			t.Fatalf("GET: %+v (holder %+v)", in, in.Holder)
		}
		var free LockJSON
		if code, _ := adminCall(t, "GET", base+"/v1/locks/free", "", "", &free); code != 200 || free.Held || free.Holder != nil || free.ExpiresInMs != nil {
			t.Fatalf("GET of a free lock: %d %+v", code, free)
		}
		var list LockListJSON
		if code, msg := adminCall(t, "GET", base+"/v1/locks?prefix=jobs/", "", "", &list); code != 200 || len(list.Locks) != 1 || list.Locks[0].FencingToken != ga.FencingToken || list.Truncated {
			t.Fatalf("list: %d %s %+v", code, msg, list)
		}

		fence := func(token uint64) (int, FenceJSON) {
			var f FenceJSON
			code, msg := adminCall(t, "POST", lockURL+"/fence", "", fmt.Sprintf(`{"token": %d}`, token), &f)
			if msg != "" {
				t.Fatalf("fence: %d %s", code, msg)
			}
			return code, f
		}
		if code, f := fence(ga.FencingToken); code != 200 || !f.Current {
			t.Fatalf("fence of the holder's token: %d %+v", code, f)
		}

		var rel ReleaseJSON
		if code, msg := adminCall(t, "POST", lockURL+"/release", "", "", &rel); code != 200 || !rel.Released || rel.Lock.FencingToken != ga.FencingToken {
			t.Fatalf("release: %d %s %+v", code, msg, rel)
		}
		if l := expect[wire.LockLost](a); l.Reason != wire.ReasonRevoked || l.FencingToken != ga.FencingToken || l.Name != "jobs/1" {
			t.Fatalf("holder notice %+v", l)
		}
		gb := expect[wire.LockGranted](b)
		if gb.FencingToken <= ga.FencingToken {
			t.Fatalf("waiter's token %d after %d", gb.FencingToken, ga.FencingToken)
		}
		if code, f := fence(ga.FencingToken); code != 409 || f.Current || f.FencingToken != gb.FencingToken {
			t.Fatalf("fence of the revoked token: %d %+v, want 409 with %d", code, f, gb.FencingToken)
		}
		if code, f := fence(gb.FencingToken); code != 200 || !f.Current || f.FencingToken != gb.FencingToken {
			t.Fatalf("fence of the new token: %d %+v", code, f)
		}
		b.send(wire.LockRelease{RequestID: "r", Name: "jobs/1", FencingToken: gb.FencingToken})
		expect[wire.LockReleased](b)
		if code, f := fence(gb.FencingToken); code != 409 || f.Current || f.FencingToken != 0 {
			t.Fatalf("fence of a free lock: %d %+v", code, f)
		}
	})
}

// TestAdminLocksAcrossNodes: a node answers for a lock held through
// another node from etcd: the token and user, the holder's node, no
// connection id or lease time (only the holder's node knows them); the
// fence check and the force-release work from any node.
func TestAdminLocksAcrossNodes(t *testing.T) {
	t.Parallel()
	cfg := withEtcd(t, Config{})
	url1, _ := start(t, cfg)
	url2, _ := start(t, cfg)
	a := dial(t, url1)
	a.send(lockReq("1", "x", 60000, 0))
	ga := expect[wire.LockGranted](a)
	var in LockJSON
	if code, msg := adminCall(t, "GET", httpBase(url2)+"/v1/locks/x", "", "", &in); code != 200 {
		t.Fatalf("GET: %d %s", code, msg)
	}
	if !in.Held || in.FencingToken != ga.FencingToken || in.Holder == nil || in.Holder.Node == "" || in.Holder.Conn != 0 || in.ExpiresInMs != nil {
		t.Fatalf("node 2's view: %+v (holder %+v)", in, in.Holder)
	}
	var f FenceJSON
	if code, _ := adminCall(t, "POST", httpBase(url2)+"/v1/locks/x/fence", "", fmt.Sprintf(`{"token": %d}`, ga.FencingToken), &f); code != 200 || !f.Current {
		t.Fatalf("fence on node 2: %d %+v", code, f)
	}
	if code, msg := adminCall(t, "POST", httpBase(url2)+"/v1/locks/x/release", "", "", nil); code != 200 {
		t.Fatalf("release on node 2: %d %s", code, msg)
	}
	if l := expect[wire.LockLost](a); l.Reason != wire.ReasonRevoked || l.FencingToken != ga.FencingToken {
		t.Fatalf("holder notice on node 1: %+v", l)
	}
}

// TestAdminCounter: value and writers, from memory or the store; an
// unknown counter is 0 with no writers.
func TestAdminCounter(t *testing.T) {
	t.Parallel()
	wsURL, _ := start(t, Config{})
	c := dial(t, wsURL)
	c.send(wire.CounterSync{Name: "likes", State: crdt.State{P: map[string]int64{"a": 5, "b": 2}, N: map[string]int64{"c": 1}}})
	expect[wire.CounterUpdate](c)
	var got CounterJSON
	if code, msg := adminCall(t, "GET", httpBase(wsURL)+"/v1/counters/likes", "", "", &got); code != 200 || got != (CounterJSON{"likes", 6, 3}) {
		t.Fatalf("GET: %d %s %+v", code, msg, got)
	}
	c.ws.CloseNow() // the counter leaves memory: read from the store
	if code, msg := adminCall(t, "GET", httpBase(wsURL)+"/v1/counters/likes", "", "", &got); code != 200 || got != (CounterJSON{"likes", 6, 3}) {
		t.Fatalf("GET from the store: %d %s %+v", code, msg, got)
	}
	if code, _ := adminCall(t, "GET", httpBase(wsURL)+"/v1/counters/none", "", "", &got); code != 200 || got != (CounterJSON{"none", 0, 0}) {
		t.Fatalf("GET of an unknown counter: %d %+v", code, got)
	}
}

// TestAdminCounterAcrossNodes: a node holding a counter in memory, whose
// watch lags behind a write made through another node, answers with the
// write: it reads the store first (refresh).
func TestAdminCounterAcrossNodes(t *testing.T) {
	t.Parallel()
	url1, url2, lag := laggingNodes(t, "admin")

	held := dial(t, url2)
	held.send(wire.CounterSync{Name: "c", State: crdt.State{P: map[string]int64{"n2": 1}}})
	expect[wire.CounterUpdate](held)
	lag.pause()
	w := dial(t, url1)
	w.send(wire.CounterSync{Name: "c", State: crdt.State{P: map[string]int64{"n1": 4}}})
	expect[wire.CounterUpdate](w)

	var got CounterJSON
	if code, msg := adminCall(t, "GET", httpBase(url2)+"/v1/counters/c", "", "", &got); code != 200 || got != (CounterJSON{"c", 5, 2}) {
		t.Fatalf("node 2: %d %s %+v, want value 5 from 2 writers", code, msg, got)
	}
}
