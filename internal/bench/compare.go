package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Ratio is one figure measured with both managers of a comparison.
type Ratio struct {
	Name string
	// This is the figure with this manager, Compared with the compared one.
	This, Compared float64
	// Unit formats both: "ms", "MiB", "s", or "" for a plain number.
	Unit string
}

// Of is This / Compared: below 1, this manager does better on a figure where less is better
// (all of them). NaN when Compared is 0.
func (x Ratio) Of() float64 {
	if x.Compared == 0 {
		return math.NaN()
	}
	return x.This / x.Compared
}

// Ratios pairs the figures of r and of the compared report that both runs measured. A tail
// latency is the p99 only when both have at least MinPercentileSamples samples, else the
// maximum of each, as the tables print it.
func Ratios(r, c *Report) []Ratio {
	var out []Ratio
	tail := func(name string, a, b Dist) {
		if a.N == 0 || b.N == 0 {
			return
		}
		what, x, y := "max", a.Max, b.Max
		if a.HasPercentiles() && b.HasPercentiles() {
			what, x, y = "p99", a.P99, b.P99
		}
		out = append(out, Ratio{Name: name + ", " + what, This: x, Compared: y, Unit: "ms"})
	}
	if r.Reaction != nil && c.Reaction != nil {
		tail("reaction: release → first weight", r.Reaction.Total, c.Reaction.Total)
	}
	if r.Rollback != nil && c.Rollback != nil {
		tail("rollback: failed verdict → 100% stable", r.Rollback.Total, c.Rollback.Total)
	}
	// The k-th run of N rollouts with the compared manager's k-th (--scales 300,300 runs N
	// twice; a run that failed early is missing from its report).
	nth := func(scale []ScaleResult, n, k int) (ScaleResult, bool) {
		for _, s := range scale {
			if s.Rollouts == n {
				if k--; k == 0 {
					return s, true
				}
			}
		}
		return ScaleResult{}, false
	}
	seen := map[int]int{}
	for _, a := range r.Scale {
		seen[a.Rollouts]++
		b, ok := nth(c.Scale, a.Rollouts, seen[a.Rollouts])
		if !ok {
			continue
		}
		n := fmt.Sprintf("%d rollouts: ", a.Rollouts)
		if seen[a.Rollouts] > 1 {
			n = fmt.Sprintf("%d rollouts (run %d): ", a.Rollouts, seen[a.Rollouts])
		}
		out = append(out, Ratio{n + "time to promote all", float64(a.Took), float64(b.Took), "s"})
		tail(n+"release → first weight", a.FirstWeight, b.FirstWeight)
		if a.Reconcile.Count >= MinPercentileSamples && b.Reconcile.Count >= MinPercentileSamples {
			out = append(out, Ratio{n + "reconcile p99", a.Reconcile.P99, b.Reconcile.P99, "ms"})
		}
		out = append(out,
			Ratio{n + "RSS peak", a.RSSPeakMiB, b.RSSPeakMiB, "MiB"},
			Ratio{n + "heap peak", a.HeapPeakMiB, b.HeapPeakMiB, "MiB"},
			Ratio{n + "manager CPU per rollout", a.CPUPerRolloutMs, b.CPUPerRolloutMs, "ms"},
			Ratio{n + "API requests per rollout", a.RequestsPerRollout, b.RequestsPerRollout, ""},
			Ratio{n + "409 answers", float64(a.ResponseCodes[409]), float64(b.ResponseCodes[409]), ""},
			Ratio{n + "Prometheus queries per metric per round", a.QueriesPerMetricRnd, b.QueriesPerMetricRnd, ""},
		)
	}
	if r.Isolation != nil && c.Isolation != nil {
		tail("isolation: reaction beside hanging Prometheus", r.Isolation.With, c.Isolation.With)
	}
	return out
}

func (x Ratio) format(v float64) string {
	switch x.Unit {
	case "ms":
		return ms(v)
	case "MiB":
		return fmt.Sprintf("%.0f MiB", v)
	case "s":
		return fmt.Sprintf("%.0fs", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// printComparison writes the compared manager's report, then the ratios.
func printComparison(w io.Writer, r *Report) {
	c := r.Compare
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\n==== The same phases against the compared manager (%s), each run right after this one's ====\n", c.Options.Manager)
	Print(w, c)
	fmt.Fprintf(w, "\nThis manager / the compared one (below 1: this one needs less; latencies depend on the machine's load, counts do not)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tthis\tcompared\tratio\t")
	for _, x := range Ratios(r, c) {
		ratio := "-"
		if v := x.Of(); !math.IsNaN(v) {
			ratio = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", x.Name, x.format(x.This), x.format(x.Compared), ratio)
	}
	tw.Flush()
}
