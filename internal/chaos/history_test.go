package chaos

import (
	"strings"
	"testing"
	"time"
)

// TestLostBeforeItsGrant: a lease revoked right after its grant can be
// reported by the client's OnLost before the worker reports the grant; the
// notice ends that grant, so the worker's next grant is not taken for a
// second one while the first is open (a long chaos run reported exactly
// that as two violations).
func TestLostBeforeItsGrant(t *testing.T) {
	h := newHistory()
	step := func(m msg) {
		time.Sleep(time.Microsecond) // distinct stamps
		h.event(0, m)
	}
	step(msg{K: "inv", Op: "acquire", Lock: "l"})
	step(msg{K: "lost", Lock: "l", Res: "revoked"})
	step(msg{K: "ret", Op: "acquire", Lock: "l", Res: resGranted, Token: 7})
	step(msg{K: "inv", Op: "acquire", Lock: "l"})
	step(msg{K: "ret", Op: "acquire", Lock: "l", Res: resGranted, Token: 9})
	step(msg{K: "inv", Op: "release", Lock: "l", Token: 9})
	step(msg{K: "ret", Op: "release", Lock: "l", Token: 9, Res: resConfirmed})
	if len(h.viols) != 0 {
		t.Fatalf("violations %v", h.viols)
	}
	if g := h.grants[0]; !strings.HasPrefix(g.end, "lost:") || g.endAt < g.call || g.endAt > g.ret {
		t.Fatalf("first grant %+v: want ended by the early notice within its acquire", g)
	}
	viols, _, _ := checkLocks(h, t.TempDir(), 10*time.Second)
	if len(viols) != 0 {
		t.Fatalf("checkLocks: %v", viols)
	}

	// A notice older than the acquire belongs to an ended grant: ignored.
	h = newHistory()
	step = func(m msg) {
		time.Sleep(time.Microsecond)
		h.event(0, m)
	}
	step(msg{K: "lost", Lock: "l", Res: "expired"})
	step(msg{K: "inv", Op: "acquire", Lock: "l"})
	step(msg{K: "ret", Op: "acquire", Lock: "l", Res: resGranted, Token: 3})
	if g := h.grants[0]; g.end != "" {
		t.Fatalf("grant ended by a notice from before its acquire: %+v", g)
	}
}
