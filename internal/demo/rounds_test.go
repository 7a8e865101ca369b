package demo

import (
	"math"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/ramp-dev/ramp/internal/harness"
	"github.com/ramp-dev/ramp/internal/meshsim"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// No analysis round of the story can go wrong by chance: v2 (and act 4's healthy preview)
// fails one with a probability of at most 1e-4, v3 (8% errors) passes one with at most 1e-6.
// Each round is a binomial draw over the requests it judges, counted at their fewest: the
// first round of a step, a window after the step began, sees what Prometheus scraped up to a
// scrape before, from the moment the step's route reached the mesh simulator. The later
// rounds of a rollout judge more (their window also holds the previous step's larger
// share). The demo is run with a 3s interval at the shortest (TestStory); longer intervals
// widen the windows. A release meets a few rounds (--keep's v3 is rolled back after the
// example's failureLimit, 2, failed rounds, and any passing one promotes it), so its risk is
// a few times a round's.
//
// Act 4's preview and --keep's v3 release are judged on the gate's 20 requests/s alone: with
// the 6s window of the canary acts, one error of v3's in about 120 requests read 0.83% and
// promoted it (the TestStory failure under --keep; about one run in a thousand).
func TestRoundsCannotGoWrongByChance(t *testing.T) {
	const (
		interval = 3 * time.Second // TestStory's
		scrape   = time.Second     // the harness's Prometheus scrapes every second
		// A step's status is written before its route, which reaches the simulator with
		// istiod's next push.
		routeLag = 500 * time.Millisecond
		// The gate starts the load once the preview is routed, and the simulator keeps its
		// previous routes for up to 2s while it reads the preview's new pods.
		loadLag    = 2 * time.Second
		maxHealthy = 1e-4
		maxBad     = 1e-6
	)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ex, err := harness.ReadLoadExample(filepath.Join(root, harness.LoadExampleDir))
	if err != nil {
		t.Fatal(err)
	}
	gateRPS, err := strconv.ParseFloat(ex.Rollout.Spec.Gates[0].Metadata["rps"], 64)
	if err != nil {
		t.Fatal(err)
	}
	previewMax := *ex.Rollout.Spec.Analysis.Metrics[0].ThresholdRange.Max

	first := float64(canarySteps[0].SetWeight) / 100
	canary := int(DefaultRPS * (testerShare + (1-testerShare)*first) * (2*interval - scrape - routeLag).Seconds())
	preview := int(gateRPS * (previewWindow(interval) - scrape - loadLag).Seconds())
	for _, tc := range []struct {
		round   string
		n       int
		b       meshsim.Behaviour
		healthy bool
		// maxErrorRate (percent) and maxP99 (ms; 0: not analysed) are the round's thresholds.
		maxErrorRate, maxP99 float64
	}{
		{"act 2, v2 at the first step", canary, releases["v2"], true, maxErrorRate, maxLatencyP99},
		{"act 3, v3 at the first step", canary, releases["v3"], false, maxErrorRate, maxLatencyP99},
		{"act 4, the preview", preview, previewBehaviour, true, previewMax, 0},
		{"--keep, v3's preview", preview, releases["v3"], false, previewMax, 0},
	} {
		// error-rate fails above max% of n: more than floor(max% of n) errors.
		errs := distuv.Binomial{N: float64(tc.n), P: tc.b.ErrorRate}
		allowed := math.Floor(tc.maxErrorRate / 100 * float64(tc.n))
		if !tc.healthy {
			p := errs.CDF(allowed)
			t.Logf("%s: %d requests, passes with probability %.2g", tc.round, tc.n, p)
			if p > maxBad {
				t.Errorf("%s (%.2g%% errors): a round over %d requests passes (%g errors or fewer) with probability %.2g, want at most %g",
					tc.round, 100*tc.b.ErrorRate, tc.n, allowed, p, maxBad)
			}
			continue
		}
		p := errs.Survival(allowed)
		t.Logf("%s: %d requests, fails error-rate with probability %.2g", tc.round, tc.n, p)
		if p > maxHealthy {
			t.Errorf("%s (%.2g%% errors): a round over %d requests fails (more than %g errors) with probability %.2g, want at most %g",
				tc.round, 100*tc.b.ErrorRate, tc.n, allowed, p, maxHealthy)
		}
		if tc.maxP99 == 0 {
			continue
		}
		// latency-p99 interpolates within Istio's buckets: it can read above the threshold
		// only when more than 1% of requests took longer than the last bound below it.
		bound := 0.0
		for _, b := range meshsim.IstioBuckets {
			if b <= tc.maxP99 {
				bound = b
			}
		}
		p50, p99 := float64(tc.b.LatencyP50.Milliseconds()), float64(tc.b.LatencyP99.Milliseconds())
		// meshsim draws latencies from the log-normal with these two quantiles.
		latency := distuv.LogNormal{Mu: math.Log(p50), Sigma: math.Log(p99/p50) / distuv.UnitNormal.Quantile(0.99)}
		slow := distuv.Binomial{N: float64(tc.n), P: latency.Survival(bound)}
		p = slow.Survival(math.Floor(0.01 * float64(tc.n)))
		t.Logf("%s: fails latency-p99 with probability %.2g", tc.round, p)
		if p > maxHealthy {
			t.Errorf("%s (P99 %s): a round over %d requests fails latency-p99 <= %g (more than 1%% slower than %gms) with probability %.2g, want at most %g",
				tc.round, tc.b.LatencyP99, tc.n, tc.maxP99, bound, p, maxHealthy)
		}
	}
}
