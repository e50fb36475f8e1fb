package chaos

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if IsWorker() {
		os.Exit(WorkerMain())
	}
	os.Exit(m.Run())
}

// buildServer builds topgun-server with the given build tags.
func buildServer(t *testing.T, tags string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "topgun-server")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, "github.com/topgun-go/topgun/cmd/topgun-server")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build topgun-server: %v\n%s", err, out)
	}
	return bin
}

// TestCatchesBrokenFencing runs a short schedule of server kills against
// a server built with chaosbroken, whose fencing tokens start again from 1
// after a restart: the harness must report violations, a fencing one
// among them.
func TestCatchesBrokenFencing(t *testing.T) {
	bin := buildServer(t, "chaosbroken")
	var out bytes.Buffer
	res, err := Run(Config{ServerBin: bin, Self: []string{os.Args[0], "-test.run=^$"}, Mode: "single",
		Duration: 6 * time.Second, Seed: 12, Clients: 3, Malformed: 0, Faults: []string{FaultKill},
		Dir: t.TempDir(), Out: &out})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Faults[FaultKill] == 0 {
		t.Fatal("no server kill injected")
	}
	if len(res.Violations) == 0 {
		t.Fatal("the harness found nothing wrong with a server whose tokens restart after a kill")
	}
	fencing := false
	for _, v := range res.Violations {
		fencing = fencing || strings.Contains(v, "fencing")
	}
	if !fencing {
		t.Fatalf("no fencing violation among %d: %v", len(res.Violations), res.Violations)
	}
	last := strings.TrimSpace(out.String())
	last = last[strings.LastIndexByte(last, '\n')+1:]
	want := fmt.Sprintf("chaos: %d operations, %d faults, %d violations, seed 12", res.Operations, res.Faults[FaultKill], len(res.Violations))
	if last != want {
		t.Fatalf("last line %q, want %q", last, want)
	}
}
