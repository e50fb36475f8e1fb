// Command topgun-chaos runs the chaos harness (internal/chaos,
// docs/chaos.md) against the real topgun-server and prints, last,
// "chaos: N operations, F faults, V violations, seed S". It exits 0 only
// when V is 0.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/topgun-go/topgun/internal/chaos"
)

func main() {
	if chaos.IsWorker() {
		os.Exit(chaos.WorkerMain())
	}
	var (
		mode      = flag.String("mode", "single", "single (one bbolt server) or cluster (3 etcd members, 2 nodes)")
		duration  = flag.Duration("duration", 30*time.Second, "how long the nemesis injects faults")
		seed      = flag.Uint64("seed", 0, "seed of the fault schedule and the clients' choices (0: from the clock)")
		clients   = flag.Int("clients", 4, "Go client worker processes")
		malformed = flag.Int("malformed", 2, "raw clients sending malformed frames")
		faults    = flag.String("faults", "", "comma-separated fault kinds (default: every kind of the mode)")
		serverBin = flag.String("server-bin", "", "topgun-server binary (default: built from this module into a temp dir)")
		dir       = flag.String("dir", "", "directory for logs and the porcupine visualization (default: a temp dir)")
	)
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano() % 1e9)
	}
	if *serverBin == "" {
		tmp, err := os.MkdirTemp("", "topgun-chaos-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer os.RemoveAll(tmp)
		*serverBin = filepath.Join(tmp, "topgun-server")
		if out, err := exec.Command("go", "build", "-o", *serverBin, "github.com/topgun-go/topgun/cmd/topgun-server").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build topgun-server: %v\n%s", err, out)
			os.Exit(2)
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var kinds []string
	if *faults != "" {
		kinds = strings.Split(*faults, ",")
	}
	res, err := chaos.Run(chaos.Config{ServerBin: *serverBin, Self: []string{self}, Mode: *mode, Duration: *duration,
		Seed: *seed, Clients: *clients, Malformed: *malformed, Faults: kinds, Dir: *dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		fmt.Printf("chaos: 0 operations, 0 faults, 1 violations, seed %d\n", *seed)
		os.Exit(1)
	}
	if len(res.Violations) > 0 {
		os.Exit(1)
	}
}
