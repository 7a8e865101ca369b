// Command ramp-bench measures ramp against a real API server (envtest): reaction to a Git
// change, rollback after a failing verdict, and 100/300/1000 rollouts progressing at once in
// one manager. It prints tables and writes JSON; see docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/ramp-dev/ramp/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.ManagerSubcommand {
		os.Exit(bench.RunManager(os.Args[2:]))
	}
	var (
		o        bench.Options
		jsonPath = flag.String("json", "", "write the report as JSON to this file")
		phases   = flag.String("phases", "latency,scale,isolation", "phases to run: latency (reaction and rollback), scale, isolation (reaction beside rollouts whose Prometheus hangs)")
		scales   = flag.String("scales", "", "comma-separated rollout counts of the scale phase (default 100,300,1000; --quick: 100)")
	)
	flag.BoolVar(&o.Quick, "quick", false, "N=100 only and fewer samples (about two minutes)")
	flag.IntVar(&o.ReactionSamples, "reaction-samples", 0, "releases timed for the reaction latency (default 50; --quick: 20)")
	flag.IntVar(&o.RollbackSamples, "rollback-samples", 0, "rollouts failed for the rollback latency (default 20; --quick: 10)")
	flag.DurationVar(&o.Interval, "interval", 0, "analysis interval of the scale phase's rollouts (default 10s; --quick: 3s)")
	flag.IntVar(&o.IsolationSamples, "isolation-samples", 0, "releases timed by the isolation phase, with and without hanging rollouts each (default 20; --quick: 10)")
	flag.IntVar(&o.IsolationHanging, "isolation-hanging", 0, "rollouts of the isolation phase whose Prometheus never answers (default: --concurrent)")
	flag.IntVar(&o.Concurrency, "concurrent", 4, "the manager's --concurrent")
	flag.DurationVar(&o.SubsetSettle, "subset-settle", 0, "the manager's --subset-settle (default 2s)")
	flag.StringVar(&o.CPUProfile, "cpuprofile", "", "write the manager's CPU profile of each scale run to this path (suffixed -<N>)")
	flag.StringVar(&o.MemProfile, "memprofile", "", "write the manager's heap profile at the end of each scale run to this path (suffixed -<N>)")
	flag.StringVar(&o.MemoryLimit, "manager-memlimit", "", "experiment: GOMEMLIMIT of the manager process, e.g. 100MiB")
	flag.StringVar(&o.CompareManager, "compare-manager", "", "also run every phase against the manager of this ramp-bench binary (built from another commit: go build -o /tmp/ramp-bench-old ./cmd/ramp-bench), each right after this one's, and print both reports and their ratios")
	flag.StringVar(&o.LogDir, "logdir", "", "keep the processes' logs here (default: a temporary directory, removed after a successful run)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [flags]\n\nBenchmarks ramp against a real API server (envtest); see docs/performance.md.\n\nFlags:\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	o.Phases = strings.Split(*phases, ",")
	if *scales != "" {
		for _, s := range strings.Split(*scales, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "--scales: %q is not a positive number\n", s)
				os.Exit(2)
			}
			o.Scales = append(o.Scales, n)
		}
	}
	o.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := bench.Run(ctx, o)
	if r != nil {
		bench.Print(os.Stdout, r)
		if *jsonPath != "" {
			b, jerr := json.MarshalIndent(r, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(*jsonPath, append(b, '\n'), 0o644)
			}
			if jerr != nil {
				fmt.Fprintln(os.Stderr, "writing", *jsonPath+":", jerr)
				os.Exit(1)
			}
			fmt.Fprintln(os.Stderr, "report written to", *jsonPath)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ramp-bench:", err)
		os.Exit(1)
	}
	if r != nil && len(r.Errors) > 0 {
		os.Exit(1)
	}
}
