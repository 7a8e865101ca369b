package bench

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentilesOnlyFrom100Samples(t *testing.T) {
	for _, tc := range []struct {
		d         Dist
		tail      float64
		what, str string
	}{
		{Dist{}, 0, "max", "-"},
		{Dist{N: 20, P50: 60, P90: 80, P99: 85, Max: 85}, 85, "max", "max 85.0ms  (n=20)"},
		{Dist{N: 99, P50: 60, P99: 90, Max: 120}, 120, "max", "max 120ms  (n=99)"},
		{Dist{N: 100, P50: 60, P99: 90, Max: 120}, 90, "p99", "p50 60.0ms  p99 90.0ms  max 120ms  (n=100)"},
	} {
		if v, what := tc.d.Tail(); v != tc.tail || what != tc.what {
			t.Errorf("%+v: Tail() = %v %s, want %v %s", tc.d, v, what, tc.tail, tc.what)
		}
		if got := tc.d.String(); got != tc.str {
			t.Errorf("%+v: String() = %q, want %q", tc.d, got, tc.str)
		}
	}
	if got := (Dist{N: 50, P99: 85}).pct(85); got != "-" {
		t.Errorf("p99 of 50 samples printed as %q", got)
	}
	if got := qms(99, 12); got != "-" {
		t.Errorf("quantile of a 99-sample histogram printed as %q", got)
	}
	if got := qms(100, 12); got != "12.0ms" {
		t.Errorf("quantile of a 100-sample histogram printed as %q", got)
	}
	if got := firstWeight(Dist{N: 50, P50: 3000, P99: 4000, Max: 4100}); got != "max 4100ms" {
		t.Errorf("first weight of 50 rollouts: %q, want the maximum", got)
	}
	if got := firstWeight(Dist{N: 300, P50: 3000, P99: 4000, Max: 4100}); got != "3000ms / 4000ms" {
		t.Errorf("first weight of 300 rollouts: %q, want p50 / p99", got)
	}
	// The goals say which figure they judge.
	r := &Report{Reaction: &LatencyResult{Total: Dist{N: 50, P99: 85, Max: 900}}}
	if g := goals(r); len(g) == 0 || !strings.HasSuffix(g[0].Name, ", max") || g[0].Measured != "900ms" {
		t.Errorf("reaction goal from 50 samples: %+v, want judged on the maximum", g)
	}
}

// Every goal of issue 17 is in the table, met or missed on the figures it names, and the
// scales a run did not measure are there as not run.
func TestScaleGoals(t *testing.T) {
	good := ScaleResult{Rollouts: 1000, Completed: 1000, IntervalSeconds: 10,
		Reconcile:   ReconcileFigures{Count: 9000, P99: 45, Within50ms: 0.995},
		RSSPeakMiB:  110,
		FirstWeight: Dist{N: 1000, P50: 4000, P99: 9000, Max: 9500},
		Rounds:      3000, QueriesPerMetricRnd: 1, MinRoundGapSeconds: 10, MaxRoundGapSeconds: 10.8,
		RequestsPerRollout: 19.5,
	}
	judged := func(rs ...ScaleResult) map[string]Goal {
		out := map[string]Goal{}
		for _, g := range goals(&Report{Scale: rs}) {
			out[g.Name] = g
		}
		return out
	}
	g := judged(good)
	for _, name := range []string{
		"1000 rollouts: reconcile p99", "1000 rollouts: manager RSS peak", "1000 rollouts: Prometheus queries per metric per round",
		"1000 rollouts: analysis rounds of a step: gap", "1000 rollouts: API requests per rollout",
		"burst of 1000 releases: release → first weight, p99", "1000 rollouts: all promoted",
		"1000 rollouts: API request errors (other than 409)", "1000 rollouts: rollouts with a step not routed",
	} {
		if x, ok := g[name]; !ok || !x.Met || x.NotRun {
			t.Errorf("%q: %+v, want met", name, x)
		}
	}
	if x := g["10000 rollouts: all promoted, RSS peak, request errors, missed steps"]; !x.NotRun {
		t.Errorf("the 10,000-rollout goals without such a run: %+v, want not run", x)
	}

	for _, tc := range []struct {
		goal  string
		spoil func(*ScaleResult)
	}{
		{"1000 rollouts: reconcile p99", func(s *ScaleResult) { s.Reconcile.P99 = 60 }},
		{"1000 rollouts: reconcile p99", func(s *ScaleResult) { s.Reconcile.Count = 99 }},
		{"1000 rollouts: manager RSS peak", func(s *ScaleResult) { s.RSSPeakMiB = 121 }},
		{"1000 rollouts: Prometheus queries per metric per round", func(s *ScaleResult) { s.QueriesPerMetricRnd = 1.5 }},
		{"1000 rollouts: analysis rounds of a step: gap", func(s *ScaleResult) { s.RoundsFasterThanIntv = 1 }},
		{"1000 rollouts: analysis rounds of a step: gap", func(s *ScaleResult) { s.RoundsLaterThanIntv = 1 }},
		{"1000 rollouts: API requests per rollout", func(s *ScaleResult) { s.RequestsPerRollout = 20.1 }},
		{"burst of 1000 releases: release → first weight, p99", func(s *ScaleResult) { s.FirstWeight.P99 = 10000 }},
		{"1000 rollouts: all promoted", func(s *ScaleResult) { s.Completed = 999 }},
		{"1000 rollouts: API request errors (other than 409)", func(s *ScaleResult) { s.RequestErrors = 1 }},
		{"1000 rollouts: rollouts with a step not routed", func(s *ScaleResult) { s.MissedSteps = 1 }},
	} {
		s := good
		tc.spoil(&s)
		if x := judged(s)[tc.goal]; x.Met {
			t.Errorf("%q met with %+v", tc.goal, s)
		}
	}

	// 10,000 rollouts: their own goals; the 1,000-rollout goals not run.
	large := ScaleResult{Rollouts: 10000, Completed: 10000, RSSPeakMiB: 590}
	g = judged(large)
	for _, name := range []string{"10000 rollouts: all promoted", "10000 rollouts: manager RSS peak",
		"10000 rollouts: API request errors (other than 409)", "10000 rollouts: rollouts with a step not routed"} {
		if x, ok := g[name]; !ok || !x.Met {
			t.Errorf("%q: %+v, want met", name, x)
		}
	}
	large.RSSPeakMiB = 610
	if judged(large)["10000 rollouts: manager RSS peak"].Met {
		t.Error("610 MiB at 10,000 rollouts met the goal")
	}
	if x := g["1000 rollouts: reconcile p99, RSS peak, queries per metric per round, round spacing, requests per rollout, burst → first weight"]; !x.NotRun {
		t.Errorf("the 1,000-rollout goals without such a run: %+v, want not run", x)
	}

	var out bytes.Buffer
	r := &Report{Scale: []ScaleResult{good}}
	r.Goals = goals(r)
	Print(&out, r)
	if !strings.Contains(out.String(), "NOT RUN") || !strings.Contains(out.String(), "MET") {
		t.Errorf("the goals table:\n%s", out.String())
	}
}

func TestRatios(t *testing.T) {
	scale := func(n int, took Seconds, rss, req float64, conflicts int64, fw Dist) ScaleResult {
		return ScaleResult{Rollouts: n, Took: took, RSSPeakMiB: rss, HeapPeakMiB: rss / 2, RequestsPerRollout: req,
			CPUPerRolloutMs: 40, QueriesPerMetricRnd: 1.5, ResponseCodes: map[int]int64{409: conflicts}, FirstWeight: fw,
			Reconcile: ReconcileFigures{Count: 1000, P99: 200}}
	}
	this := &Report{
		Reaction: &LatencyResult{Total: Dist{N: 50, P99: 80, Max: 100}},
		Scale: []ScaleResult{
			scale(100, 50, 60, 27, 0, Dist{N: 100, P99: 3000, Max: 3500}),
			scale(300, 100, 80, 27, 0, Dist{N: 300, P99: 9000, Max: 9500}),
		},
	}
	compared := &Report{
		Reaction: &LatencyResult{Total: Dist{N: 50, P99: 160, Max: 200}},
		Scale:    []ScaleResult{scale(300, 200, 100, 30, 17, Dist{N: 300, P99: 18000, Max: 20000})},
	}
	got := map[string]Ratio{}
	for _, x := range Ratios(this, compared) {
		got[x.Name] = x
	}
	for name, want := range map[string]float64{
		"reaction: release → first weight, max":     0.5, // 50 samples: the maxima
		"300 rollouts: time to promote all":         0.5,
		"300 rollouts: release → first weight, p99": 0.5,
		"300 rollouts: RSS peak":                    0.8,
		"300 rollouts: API requests per rollout":    0.9,
		"300 rollouts: reconcile p99":               1,
	} {
		x, ok := got[name]
		if !ok {
			t.Errorf("no ratio %q in %v", name, got)
			continue
		}
		if v := x.Of(); math.Abs(v-want) > 1e-9 {
			t.Errorf("%s: %v / %v = %v, want %v", name, x.This, x.Compared, v, want)
		}
	}
	if _, ok := got["100 rollouts: RSS peak"]; ok {
		t.Error("a ratio for N=100, which only one run measured")
	}
	if x := got["300 rollouts: 409 answers"]; x.Compared != 17 || x.This != 0 || x.Of() != 0 {
		t.Errorf("409s: %+v", x)
	}
	// The same N twice (--scales 300,300): paired run by run, not each with each.
	twice := &Report{Scale: []ScaleResult{this.Scale[1], this.Scale[1]}}
	twiceC := &Report{Scale: []ScaleResult{compared.Scale[0], compared.Scale[0]}}
	var names []string
	for _, x := range Ratios(twice, twiceC) {
		if strings.HasSuffix(x.Name, "RSS peak") {
			names = append(names, x.Name)
		}
	}
	if want := []string{"300 rollouts: RSS peak", "300 rollouts (run 2): RSS peak"}; !slices.Equal(names, want) {
		t.Errorf("repeated N paired as %q, want %q", names, want)
	}
	if v := (Ratio{This: 3}).Of(); !math.IsNaN(v) {
		t.Errorf("ratio over 0 = %v, want NaN (printed as -)", v)
	}

	// The printed report carries both runs and the ratios.
	this.Compare = compared
	compared.Options.Manager = "/tmp/ramp-bench-old"
	var buf bytes.Buffer
	Print(&buf, this)
	out := buf.String()
	for _, want := range []string{"compared manager (/tmp/ramp-bench-old)", "This manager / the compared one", "300 rollouts: RSS peak", "0.80"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// The compared binary gets the same arguments as this one's manager: its subcommand once,
// then the flags (a second subcommand would make it ignore them).
func TestOtherCommand(t *testing.T) {
	cmd := otherCommand("/tmp/ramp-bench-old")(ManagerSubcommand, "--analyzer=prometheus")
	if want := []string{"/tmp/ramp-bench-old", ManagerSubcommand, "--analyzer=prometheus"}; !slices.Equal(cmd.Args, want) {
		t.Errorf("args %q, want %q", cmd.Args, want)
	}
	if code := RunManager([]string{ManagerSubcommand, "--analyzer=prometheus"}); code != 2 {
		t.Errorf("a manager given a stray argument ran (exit %d), want a usage error", code)
	}
}

// A rollout misses a step when its VirtualService never carried that step's weight after the
// release, in order.
func TestRoutedInOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := newTracker()
	at := func(s int, w int32) weightAt { return weightAt{at: t0.Add(time.Duration(s) * time.Second), weight: w} }
	steps := []int32{5, 25, 100, 0}
	for _, tc := range []struct {
		name string
		seen []weightAt
		want bool
	}{
		{"every step", []weightAt{at(0, 0), at(1, 5), at(2, 25), at(3, 100), at(4, 0)}, true},
		{"a repeated weight between", []weightAt{at(1, 5), at(2, 5), at(3, 25), at(4, 100), at(5, 0)}, true},
		{"25% never routed", []weightAt{at(1, 5), at(3, 100), at(4, 0)}, false},
		{"out of order", []weightAt{at(1, 5), at(2, 100), at(3, 25), at(4, 0)}, false},
		{"before the release", []weightAt{at(-3, 5), at(2, 25), at(3, 100), at(4, 0)}, false},
		{"not promoted", []weightAt{at(1, 5), at(2, 25), at(3, 100)}, false},
	} {
		tr.weights["web"] = tc.seen
		if got := tr.routedInOrder("web", t0, steps); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Kinds that would print as 0.00 a rollout are given as counts instead.
func TestPerRollout(t *testing.T) {
	for _, tc := range []struct {
		byKind   map[string]int64
		rollouts int
		want     string
	}{
		{map[string]int64{"patch rollouts/status": 9330, "apply virtualservices": 4000}, 1000,
			"patch rollouts/status 9.33; apply virtualservices 4.00"},
		{map[string]int64{"patch rollouts/status": 93315, "watch rollouts": 3, "get deployments": 49, "create events": 40628}, 10000,
			"patch rollouts/status 9.33; create events 4.06; in all, under 0.01 a rollout: get deployments 49, watch rollouts 3"},
		{map[string]int64{"get rollouts": 5}, 100, "get rollouts 0.05"},
	} {
		if got := perRollout(tc.byKind, tc.rollouts); got != tc.want {
			t.Errorf("perRollout(%v, %d) = %q, want %q", tc.byKind, tc.rollouts, got, tc.want)
		}
	}
}
