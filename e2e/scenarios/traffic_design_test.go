package scenarios

import (
	"io"
	"math"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/ramp-dev/ramp/internal/harness"
	"github.com/ramp-dev/ramp/internal/loadgen"
)

// scrapeInterval is how often the scenarios' Prometheus scrapes the mesh simulators
// (prometheustest's default).
const scrapeInterval = time.Second

// A healthy release must not fail an analysis round by chance. The healthy images answer
// 0.1% errors; a round fails above 1%. The fewest canary requests a round judges are those
// of the first round of a 10% step: the canary gets traffic from the step's start, and the
// round, one interval later, sees what Prometheus scraped up to a scrape interval before.
// At 200 req/s that was 40 requests, where a single 500 (a 3.9% chance) reads 2.5%; with
// Seed 1 v2's first canary 500 fell about 5.5 s into the 10% step, so the round that ends
// the step judged it over about 100 requests: 0.83%, or 1.02% (a rollback) when Prometheus
// had counted two fewer.
func TestHealthyImagesCannotFailARound(t *testing.T) {
	const smallestWeight = 10 // the scenarios' first steps
	n := int(rps * smallestWeight / 100 * (interval - scrapeInterval).Seconds())
	for _, img := range []string{imgV1, imgV2, imgV3, imgSlow} {
		p := behaviours[img].ErrorRate
		// The round fails when k/n > max%: k > floor(max% of n).
		allowed := math.Floor(maxErrorRate / 100 * float64(n))
		if tail := (distuv.Binomial{N: float64(n), P: p}).Survival(allowed); tail > 1e-4 {
			t.Errorf("%s (%.2g%% errors): a round over %d requests fails (more than %g errors) with probability %.2g, want at most 1e-4: raise rps (%d)",
				img, 100*p, n, allowed, tail, rps)
		}
	}
}

// The load scenarios' preview is judged on the load generator's requests alone. Every round
// that counts holds at least previewMinRequests of them and at most a window's: over that
// whole range v2 (0.1% errors) must not fail a round by chance, and an image with 10% errors
// must not pass one. The example's 20 requests/s over the test's former 3s interval and 6s
// window judged rounds of 50 to 110 requests: one error in fewer than 100 reads above 1%, so
// the first round failed about one time in 15, and two failed rounds (failureLimit) rolled
// a healthy preview back about one run in 200.
func TestPreviewRoundsCannotGoWrongByChance(t *testing.T) {
	const (
		maxHealthy = 1e-4
		maxBad     = 1e-6
		// The gate starts the load once the preview is routed, and the simulator keeps its
		// previous routes for up to 2s while it reads the preview's new pods (as in the demo).
		loadLag = 2 * time.Second
	)
	ex, err := harness.ReadLoadExample(loadExample)
	if err != nil {
		t.Fatal(err)
	}
	f, err := loadgen.ParseFlags(ex.LoadArgs[1:], io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if previewRPS > f.MaxRPS {
		t.Errorf("previewRPS %d: the example's load generator allows at most %v (--max-rps)", previewRPS, f.MaxRPS)
	}
	max := *ex.Rollout.Spec.Analysis.Metrics[0].ThresholdRange.Max
	healthy, bad := behaviours[imgV2].ErrorRate, behaviours[imgErrors].ErrorRate
	// increase() extrapolates a little past the window's requests; beyond, the tails only fall.
	most := int(previewRPS * (previewWindow + interval).Seconds())
	worstHealthy, worstBad := 0.0, 0.0
	for n := previewMinRequests; n <= most; n++ {
		// error-rate fails above max% of n: more than floor(max% of n) errors.
		allowed := math.Floor(max / 100 * float64(n))
		worstHealthy = math.Max(worstHealthy, distuv.Binomial{N: float64(n), P: healthy}.Survival(allowed))
		worstBad = math.Max(worstBad, distuv.Binomial{N: float64(n), P: bad}.CDF(allowed))
	}
	t.Logf("rounds of %d to %d requests: v2 fails one with probability at most %.2g, 10%% errors pass one with at most %.2g",
		previewMinRequests, most, worstHealthy, worstBad)
	if worstHealthy > maxHealthy {
		t.Errorf("a round of %d to %d requests fails v2 (%.2g%% errors) with probability up to %.2g, want at most %g: raise previewMinRequests",
			previewMinRequests, most, 100*healthy, worstHealthy, maxHealthy)
	}
	if worstBad > maxBad {
		t.Errorf("a round of %d to %d requests passes 10%% errors with probability up to %.2g, want at most %g",
			previewMinRequests, most, worstBad, maxBad)
	}
	// A full window holds previewMinRequests, and the rounds waiting for the load to reach it
	// (Inconclusive) stay below the limit, with as many again to spare on a busy machine.
	if full := int(previewRPS * (previewWindow - scrapeInterval).Seconds()); full < previewMinRequests {
		t.Errorf("a %s window holds about %d of the load's requests, fewer than previewMinRequests (%d)", previewWindow, full, previewMinRequests)
	}
	waiting := time.Duration(previewMinRequests/previewRPS)*time.Second + scrapeInterval + loadLag
	if rounds := int(math.Ceil(waiting.Seconds() / interval.Seconds())); 2*rounds > previewInconclusiveLimit {
		t.Errorf("the load reaches previewMinRequests after about %s, %d rounds of %s: previewInconclusiveLimit (%d) leaves too little margin",
			waiting, rounds, interval, previewInconclusiveLimit)
	}
}
