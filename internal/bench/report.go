package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Print writes the report as tables.
func Print(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "\nramp benchmark — %s, %d CPUs (%s), %d MiB, %s, kernel %s\n", r.Started.Format("2006-01-02 15:04 MST"),
		m.CPUs, m.CPUModel, m.MemoryMiB, m.GoVersion, m.Kernel)
	fmt.Fprintf(w, "load average at start: %s; run took %.0fs; quick=%t\n", m.Load, float64(r.Took), r.Options.Quick)
	if len(r.Options.Experiments) > 0 {
		fmt.Fprintf(w, "EXPERIMENTS (not cmd/manager's configuration): %s\n", strings.Join(r.Options.Experiments, ", "))
	}

	if r.Reaction != nil || r.Rollback != nil {
		fmt.Fprintf(w, "\nLatency (quiet manager, fake analyzer; percentiles from %d samples up, else the maximum alone)\n", MinPercentileSamples)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "measurement\tp50\tp90\tp99\tmax\tn\tfailures\tload (start → end)")
		row := func(name string, d Dist, failures int, load [2]LoadAvg) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.2f → %.2f\n", name, d.pct(d.P50), d.pct(d.P90), d.pct(d.P99), ms(d.Max), d.N, failures, load[0][0], load[1][0])
		}
		for _, x := range []struct {
			name string
			l    *LatencyResult
		}{{"reaction: release → first weight write", r.Reaction}, {"rollback: failed verdict → 100% stable", r.Rollback}} {
			if x.l == nil {
				continue
			}
			row(x.name, x.l.Total, x.l.Failures, x.l.Load)
			for _, k := range sortedKeys(x.l.Parts) {
				row("  "+k, x.l.Parts[k], 0, x.l.Load)
			}
		}
		tw.Flush()
		for _, x := range []struct {
			name string
			l    *LatencyResult
		}{{"reaction", r.Reaction}, {"rollback", r.Rollback}} {
			if x.l != nil {
				f := x.l.Reconcile
				fmt.Fprintf(w, "reconciles during the %s measurement: %d, p50 %s, p99 %s, %.1f%% ≤ 50ms; API requests p50 %s, p99 %s\n",
					x.name, f.Count, qms(f.Count, f.P50), qms(f.Count, f.P99), 100*f.Within50ms, qms(f.API.Count, f.API.P50), qms(f.API.Count, f.API.P99))
			}
		}
	}

	if len(r.Scale) > 0 {
		fmt.Fprintf(w, "\nScale (N rollouts released at once; 3 steps + promotion; analysis: 2 built-in metrics every %.0fs; manager --concurrent=%d)\n",
			r.Scale[0].IntervalSeconds, r.Options.Concurrency)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "N\tpromoted\ttook\tfirst weight (p50 / p99, or max)\treconciles\treconcile p50\tp99\t≤50ms\tRSS idle\tpeak\theap peak\tCPU s\tCPU/rollout\tapiserver+etcd CPU s\treq/rollout\treq/step\t409s\terrors\tqueries/metric/round\tround gap min … max\tsteps missed\tload max\t")
		for _, s := range r.Scale {
			cl := 0.0
			for _, v := range s.ClusterCPUSeconds {
				cl += v
			}
			fmt.Fprintf(tw, "%d\t%d\t%.0fs\t%s\t%d\t%s\t%s\t%.1f%%\t%.0f MiB\t%.0f MiB\t%.0f MiB\t%.1f\t%.0fms\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.2f\t%s … %s\t%d\t%.1f\t\n",
				s.Rollouts, s.Completed, float64(s.Took), firstWeight(s.FirstWeight), s.Reconcile.Count,
				qms(s.Reconcile.Count, s.Reconcile.P50), qms(s.Reconcile.Count, s.Reconcile.P99), 100*s.Reconcile.Within50ms, s.RSSIdleMiB, s.RSSPeakMiB, s.HeapPeakMiB,
				s.CPUSeconds, s.CPUPerRolloutMs, cl, s.RequestsPerRollout, s.RequestsPerStep, s.ResponseCodes[409], s.RequestErrors,
				s.QueriesPerMetricRnd, gap(s.MinRoundGapSeconds), gap(s.MaxRoundGapSeconds), s.MissedSteps, s.MaxLoad1)
		}
		tw.Flush()
		fmt.Fprintln(w, "\nWhat the manager waits for: API request latency (in reconciles) and analysis round duration (off them)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "N\tAPI requests\tp50\tp99\tanalysis rounds\tp50\tp99\t")
		for _, s := range r.Scale {
			a, q := s.Reconcile.API, s.Reconcile.Analysis
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%s\t%s\t\n", s.Rollouts, a.Count, qms(a.Count, a.P50), qms(a.Count, a.P99), q.Count, qms(q.Count, q.P50), qms(q.Count, q.P99))
		}
		tw.Flush()
		s := r.Scale[len(r.Scale)-1]
		fmt.Fprintf(w, "\nAPI requests per rollout at N=%d by verb and resource:\n", s.Rollouts)
		fmt.Fprintln(w, "  "+perRollout(s.RequestsByKind, s.Rollouts))
		var q []string
		for _, k := range sortedKeys(s.QueriesByKind) {
			q = append(q, fmt.Sprintf("%s %d", k, s.QueriesByKind[k]))
		}
		fmt.Fprintf(w, "Prometheus queries at N=%d: %d in %d rounds (%.2f per round): %s\n", s.Rollouts, s.Queries, s.Rounds, s.QueriesPerRound, strings.Join(q, ", "))
	}

	printIsolation(w, r)

	fmt.Fprintf(w, "\nGoals (issue 17; the %d-rollout goals judge smaller runs too, percentiles from %d samples up, else the maximum)\n", GoalScale, MinPercentileSamples)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range r.Goals {
		mark := "MET"
		switch {
		case g.NotRun:
			mark = "NOT RUN"
		case !g.Met:
			mark = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\ttarget %s\tmeasured %s\n", mark, g.Name, g.Target, g.Measured)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
	printComparison(w, r)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func gap(s float64) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", s)
}

// firstWeight is the scale table's release → first weight cell.
func firstWeight(d Dist) string {
	if d.HasPercentiles() {
		return ms(d.P50) + " / " + ms(d.P99)
	}
	return "max " + ms(d.Max)
}

// qms formats a quantile of a histogram of count samples, "-" below MinPercentileSamples
// (a histogram keeps no maximum).
func qms(count int64, v float64) string {
	if count < MinPercentileSamples {
		return "-"
	}
	return ms(v)
}

// perRollout lists request counts per rollout, most first. Kinds under 0.005 a rollout (the
// informers' watches and a few reads, which do not grow with N) would print as 0.00: they are
// listed last with their counts.
func perRollout(byKind map[string]int64, rollouts int) string {
	keys := sortedKeys(byKind)
	sort.SliceStable(keys, func(i, j int) bool { return byKind[keys[i]] > byKind[keys[j]] })
	var parts, few []string
	for _, k := range keys {
		if per := float64(byKind[k]) / float64(rollouts); per >= 0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, per))
		} else {
			few = append(few, fmt.Sprintf("%s %d", k, byKind[k]))
		}
	}
	if len(few) > 0 {
		parts = append(parts, "in all, under 0.01 a rollout: "+strings.Join(few, ", "))
	}
	return strings.Join(parts, "; ")
}
