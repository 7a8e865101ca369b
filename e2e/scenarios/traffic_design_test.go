package scenarios

import (
	"math"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
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
