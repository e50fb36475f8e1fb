package server

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/sync/wire"
)

var matchCases = []struct {
	pattern, name string
	want          bool
}{
	{"likes:*", "likes:post-123", true},
	{"likes:*", "likes:", true},
	{"likes:*", "like", false},
	{"likes:*", "xlikes:a", false},
	{"*", "anything/at:all", true},
	{"job-queue:*", "job-queue:a/b:c", true}, // '*' crosses '/' and ':'
	{"a*b*c", "abc", true},
	{"a*b*c", "aXXbYYc", true},
	{"a*b*c", "aXXbYY", false},
	{"a*b", "abab", true},
	{"a*b", "abac", false},
	{"*:post-1", "likes:post-1", true},
	{"*:post-1", "likes:post-12", false},
	{"exact", "exact", true},
	{"exact", "exact2", false},
	{"a**b", "ab", true},
	{"a.b", "aXb", false}, // '.' is literal
	{"room/*/chat", "room/1/2/chat", true},
	{"room/*/chat", "room/1/2/chat/x", false},
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, c := range matchCases {
		if got := match(c.pattern, c.name); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// globRegexp is the reference for match: '*' is ".*", the rest literal.
func globRegexp(pattern string) *regexp.Regexp {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
}

// FuzzMatch checks match against a regular expression built from the
// pattern.
func FuzzMatch(f *testing.F) {
	for _, c := range matchCases {
		f.Add(c.pattern, c.name)
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		// regexp works on UTF-8 text; names and patterns are ASCII.
		if len(pattern) > 64 || len(name) > 256 || !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return
		}
		if want := globRegexp(pattern).MatchString(name); match(pattern, name) != want {
			t.Fatalf("match(%q, %q) = %v, regexp says %v", pattern, name, !want, want)
		}
	})
}

func TestParsePerms(t *testing.T) {
	t.Parallel()
	p, err := parsePerms(map[string]any{"sub": "u"})
	if err != nil || p != nil {
		t.Fatalf("no claim: %v, %v; want nil (everything allowed)", p, err)
	}
	if !p.allows(actLock, "anything") {
		t.Error("nil perms must allow everything")
	}
	p, err = parsePerms(map[string]any{"topgun": map[string]any{
		"read": []any{"public:*"}, "write": []any{"likes:*"}, "future": 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		a    action
		name string
		want bool
	}{
		{actRead, "public:x", true},
		{actRead, "likes:x", true}, // write implies read
		{actWrite, "likes:x", true},
		{actWrite, "public:x", false},
		{actRead, "secret", false},
		{actLock, "likes:x", false}, // a missing list allows nothing
	} {
		if got := p.allows(c.a, c.name); got != c.want {
			t.Errorf("allows(%v, %q) = %v, want %v", c.a, c.name, got, c.want)
		}
	}
	for name, claim := range map[string]any{
		"not an object":   "likes:*",
		"not an array":    map[string]any{"read": "likes:*"},
		"not a string":    map[string]any{"lock": []any{1}},
		"empty pattern":   map[string]any{"read": []any{""}},
		"bad character":   map[string]any{"read": []any{"likes:?"}},
		"too many":        map[string]any{"read": make([]any, maxPatterns+1)},
		"space in a name": map[string]any{"write": []any{"a b"}},
	} {
		if _, err := parsePerms(map[string]any{"topgun": claim}); !errors.Is(err, errClaim) {
			t.Errorf("%s: err %v, want errClaim", name, err)
		}
	}
}

// authed dials url and authenticates with a token for sub carrying perms
// as its topgun claim (none if nil).
func authed(t *testing.T, url, sub string, perms map[string]any) *raw {
	t.Helper()
	claims := valid(sub)
	if perms != nil {
		claims["topgun"] = perms
	}
	r := dial(t, url)
	expect[wire.AuthRequired](r)
	r.send(wire.Auth{Token: hs256(t, testSecret, claims)})
	expect[wire.AuthAck](r)
	return r
}

func errorCode(t *testing.T, m wire.Message) uint32 {
	t.Helper()
	e, ok := m.(wire.Error)
	if !ok {
		t.Fatalf("got %#v, want ERROR", m)
	}
	return e.Code
}

// TestPerNameAuthorization: the topgun claim's patterns decide which
// counters a connection may read and write and which locks it may take
// or release; ERROR 403 and the forbidden denial say no, and the
// connection goes on working.
func TestPerNameAuthorization(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{JWTSecret: testSecret})
	r := authed(t, url, "alice", map[string]any{
		"read": []string{"public:*"}, "write": []string{"likes:*"}, "lock": []string{"job-queue:*"}})
	state := wire.CounterSync{Name: "likes:a"}
	state.State.P = map[string]int64{"node-a": 1}
	state.State.N = map[string]int64{}

	// Reads: the read list, and the write list (write implies read).
	r.send(wire.CounterRequest{Name: "public:x"})
	expect[wire.CounterResponse](r)
	r.send(wire.CounterRequest{Name: "likes:b"})
	expect[wire.CounterResponse](r)
	r.send(wire.CounterRequest{Name: "secret"})
	e := expect[wire.Error](r)
	if e.Code != 403 || !strings.Contains(e.Message, `"secret"`) || !strings.Contains(e.Message, "topgun.read") {
		t.Errorf("forbidden read: %+v", e)
	}
	// Writes: only the write list.
	r.send(state)
	if u := expect[wire.CounterUpdate](r); u.State.P["node-a"] != 1 {
		t.Errorf("allowed write: %+v", u)
	}
	denied := state
	denied.Name = "public:x"
	r.send(denied)
	if e := expect[wire.Error](r); e.Code != 403 || !strings.Contains(e.Message, "topgun.write") {
		t.Errorf("forbidden write: %+v", e)
	}
	// An invalid name is still answered as invalid, not forbidden.
	r.send(wire.CounterRequest{Name: "bad name"})
	if c := errorCode(t, r.next()); c != 400 {
		t.Errorf("invalid name: ERROR %d, want 400", c)
	}
	// Locks.
	r.send(lockReq("l1", "job-queue:p0", 5000, 0))
	g := expect[wire.LockGranted](r)
	r.send(lockReq("l2", "other", 5000, 0))
	if d := expect[wire.LockReleased](r); d.Success || d.Reason != wire.ReasonForbidden || d.RequestID != "l2" {
		t.Errorf("forbidden lock: %+v", d)
	}
	r.send(wire.LockRelease{RequestID: "l3", Name: "other", FencingToken: 1})
	if d := expect[wire.LockReleased](r); d.Success || d.Reason != wire.ReasonForbidden {
		t.Errorf("forbidden release: %+v", d)
	}
	r.send(wire.LockRelease{RequestID: "l4", Name: "job-queue:p0", FencingToken: g.FencingToken})
	if d := expect[wire.LockReleased](r); !d.Success {
		t.Errorf("allowed release: %+v", d)
	}
	// Frames in a BATCH are checked alike.
	r.send(batchOf(t, wire.CounterRequest{Name: "secret"}, lockReq("l5", "other", 5000, 0)))
	if c := errorCode(t, r.next()); c != 403 {
		t.Errorf("batched read: ERROR %d", c)
	}
	if d := expect[wire.LockReleased](r); d.Reason != wire.ReasonForbidden {
		t.Errorf("batched lock: %+v", d)
	}

	// A token without the claim may do everything, as before.
	all := authed(t, url, "bob", nil)
	all.send(wire.CounterRequest{Name: "secret"})
	expect[wire.CounterResponse](all)
	all.send(lockReq("b1", "other", 5000, 0))
	expect[wire.LockGranted](all)

	// A claim of the wrong shape refuses the token.
	bad := dial(t, url)
	expect[wire.AuthRequired](bad)
	claims := valid("eve")
	claims["topgun"] = map[string]any{"read": "likes:*"}
	bad.send(wire.Auth{Token: hs256(t, testSecret, claims)})
	if f := expect[wire.AuthFail](bad); !strings.Contains(f.Error, "invalid topgun claim") {
		t.Errorf("AUTH_FAIL %q", f.Error)
	}
}

// TestNoAuthIgnoresPermissions: in --no-auth mode a token's claims change
// nothing.
func TestNoAuthIgnoresPermissions(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{})
	r := dial(t, url)
	claims := valid("alice")
	claims["topgun"] = map[string]any{"read": []string{"none"}}
	r.send(wire.Auth{Token: hs256(t, testSecret, claims)})
	expect[wire.AuthAck](r)
	r.send(wire.CounterRequest{Name: "secret"})
	expect[wire.CounterResponse](r)
	r.send(lockReq("n1", "other", 5000, 0))
	expect[wire.LockGranted](r)
}

// TestReauthUpdatesPermissions: a new token on an open connection
// replaces its permissions; subscriptions it no longer allows end with
// ERROR 403 and get no more updates.
func TestReauthUpdatesPermissions(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{JWTSecret: testSecret})
	r := authed(t, url, "alice", nil)
	r.send(wire.CounterRequest{Name: "likes:a"})
	expect[wire.CounterResponse](r)
	r.send(wire.CounterRequest{Name: "public:b"})
	expect[wire.CounterResponse](r)

	claims := valid("alice")
	claims["topgun"] = map[string]any{"read": []string{"public:*"}}
	r.send(wire.Auth{Token: hs256(t, testSecret, claims)})
	expect[wire.AuthAck](r)
	if e := expect[wire.Error](r); e.Code != 403 || !strings.Contains(e.Message, `"likes:a"`) {
		t.Errorf("ended subscription: %+v", e)
	}
	r.send(lockReq("r1", "job", 5000, 0))
	if d := expect[wire.LockReleased](r); d.Reason != wire.ReasonForbidden {
		t.Errorf("lock after narrowing: %+v", d)
	}

	// Another writer's changes reach only the subscription still allowed.
	w := authed(t, url, "bob", nil)
	for _, name := range []string{"likes:a", "public:b"} {
		s := wire.CounterSync{Name: name}
		s.State.P = map[string]int64{"node-b": 1}
		s.State.N = map[string]int64{}
		w.send(s)
		expect[wire.CounterUpdate](w)
	}
	u := expect[wire.CounterUpdate](r)
	if u.Name != "public:b" {
		t.Errorf("update for %q after its subscription ended", u.Name)
	}
	for _, m := range r.roundTrip() {
		t.Errorf("unexpected %#v", m)
	}

	// Widening works the same way.
	r.send(wire.Auth{Token: hs256(t, testSecret, valid("alice"))})
	expect[wire.AuthAck](r)
	r.send(lockReq("r2", "job", 5000, 0))
	expect[wire.LockGranted](r)
}

// TestTokenExpiryClosesConnection: when the token's exp (plus the leeway)
// passes, the server closes the connection with 1008 "token expired"; a
// new token sent before then (re-AUTH) moves the deadline.
func TestTokenExpiryClosesConnection(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{JWTSecret: testSecret, TokenLeeway: time.Millisecond})
	short := func(sub string, d time.Duration) string {
		return hs256(t, testSecret, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(d).Unix()})
	}
	r := dial(t, url)
	expect[wire.AuthRequired](r)
	r.send(wire.Auth{Token: short("alice", 2*time.Second)})
	expect[wire.AuthAck](r)
	r.send(lockReq("e1", "job", 60000, 0))
	expect[wire.LockGranted](r)
	err := r.closed()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token expired" {
		t.Fatalf("closed with %v, want 1008 token expired", err)
	}
	// Its lock was freed.
	o := authed(t, url, "bob", nil)
	o.send(lockReq("e2", "job", 60000, 0))
	expect[wire.LockGranted](o)

	// A re-AUTH with a longer token keeps the connection past the first
	// token's expiry: it answers a PING sent after that.
	k := dial(t, url)
	expect[wire.AuthRequired](k)
	first := short("carol", 2*time.Second)
	k.send(wire.Auth{Token: first})
	expect[wire.AuthAck](k)
	k.send(wire.Auth{Token: short("carol", time.Hour)})
	expect[wire.AuthAck](k)
	var end jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(first, &end); err != nil {
		t.Fatal(err)
	}
	exp, _ := end.GetExpirationTime()
	time.Sleep(time.Until(exp.Add(500 * time.Millisecond)))
	k.roundTrip()
}

// batchOf is a C→S BATCH of ms.
func batchOf(t *testing.T, ms ...wire.Message) wire.Batch {
	t.Helper()
	items := make([][]byte, len(ms))
	for i, m := range ms {
		b, err := wire.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		items[i] = b
	}
	return wire.Batch{Count: uint32(len(items)), Data: wire.JoinBatch(items...)}
}
