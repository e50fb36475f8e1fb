// Command chaosreport turns the output of `make chaos` (read from stdin)
// into the "Chaos harness" section of bench/RESULTS.md: per mode, the
// operations, faults by kind with the time until grants and counter
// acknowledgements came back after each, and violations. It replaces the
// section if the file has one (make bench keeps it), or appends it.
//
// Usage: make chaos CHAOS_TIME=330s 2>&1 | tee chaos.log; go run ./bench/chaosreport -cmd "…" < chaos.log
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/topgun-go/topgun/bench/resultsmd"
)

var (
	modeRE  = regexp.MustCompile(`^chaos:\s+\S+ mode (\S+), seed (\d+), (\d+) clients, (\d+) malformed, (\S+) of faults`)
	faultRE = regexp.MustCompile(`^chaos: fault (\S+)\s+(\d+)\s+grants back p50 (\S+) max (\S+)\s+acks back p50 (\S+) max (\S+)`)
	lastRE  = regexp.MustCompile(`^chaos: (\d+) operations, (\d+) faults, (\d+) violations, seed (\d+)$`)
	violRE  = regexp.MustCompile(`^chaos: VIOLATION (.*)`)
)

func main() {
	results := flag.String("results", "bench/RESULTS.md", "the results file to update")
	cmd := flag.String("cmd", "make chaos", "the command that produced the input, quoted in the section")
	flag.Parse()

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%s\n\n", resultsmd.ChaosHeading)
	p("Produced by `%s` on %s (docs/chaos.md): the real server binary, client worker processes and raw\n", *cmd, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	p("malformed-frame clients on the same 2 cores, a nemesis injecting one fault at a time from a seeded schedule;\n")
	p("every history checked (porcupine lock model, fencing, counter totals and convergence). Recovery: from the\n")
	p("heal of a fault to the first lock grant (and counter acknowledgement) asked for after it.\n\n")
	sc := bufio.NewScanner(os.Stdin)
	runs := 0
	inTable := false
	for sc.Scan() {
		line := sc.Text()
		if m := modeRE.FindStringSubmatch(line); m != nil {
			runs++
			p("### %s mode: %s of faults, %s client processes, %s malformed clients, seed %s\n\n", m[1], m[5], m[3], m[4], m[2])
			inTable = false
			continue
		}
		if m := faultRE.FindStringSubmatch(line); m != nil {
			if !inTable {
				p("| fault | injected | grants back p50 | max | acks back p50 | max |\n|---|---|---|---|---|---|\n")
				inTable = true
			}
			p("| %s | %s | %s | %s | %s | %s |\n", m[1], m[2], m[3], m[4], m[5], m[6])
			continue
		}
		if m := violRE.FindStringSubmatch(line); m != nil {
			p("\nViolation: %s\n", m[1])
			continue
		}
		if m := lastRE.FindStringSubmatch(line); m != nil {
			p("\n`%s`: %s operations, %s faults, **%s violations** (target 0).\n\n", line, m[1], m[2], m[3])
			inTable = false
		}
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	if runs == 0 {
		log.Fatal("chaosreport: no chaos run in the input")
	}
	old, err := os.ReadFile(*results)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*results, []byte(resultsmd.Splice(string(old), resultsmd.ChaosHeading, b.String())), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "chaosreport: %d runs written to %s\n", runs, *results)
}
