// Package leakcheck finds goroutines that tests left running. Tests call it
// from TestMain after m.Run.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and then fails the run if goroutines whose stacks
// mention any of markers (e.g. "topgun/server.") are still running after a
// grace period. It calls os.Exit.
func Main(m *testing.M, markers ...string) {
	code := m.Run()
	if code == 0 {
		if err := Wait(10*time.Second, markers...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// Wait polls until no goroutine (other than the caller's) mentions one of
// markers, or returns an error listing them after timeout.
func Wait(timeout time.Duration, markers ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		leaked := find(markers)
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked %d goroutines:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func find(markers []string) []string {
	buf := make([]byte, 4<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	var leaked []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "leakcheck.") || strings.Contains(g, "testing.(*M).Run") {
			continue
		}
		for _, m := range markers {
			if strings.Contains(g, m) {
				leaked = append(leaked, g)
				break
			}
		}
	}
	return leaked
}
