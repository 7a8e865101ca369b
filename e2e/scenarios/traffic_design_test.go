package scenarios

import (
	"math"
	"testing"
	"time"
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
		k := int(math.Floor(maxErrorRate/100*float64(n))) + 1
		if tail := binomialTail(n, k, p); tail > 1e-4 {
			t.Errorf("%s (%.2g%% errors): a round over %d requests fails (%d or more errors) with probability %.2g, want at most 1e-4: raise rps (%d)",
				img, 100*p, n, k, tail, rps)
		}
	}
}

// binomialTail is P(X >= k) for X ~ Binomial(n, p).
func binomialTail(n, k int, p float64) float64 {
	sum := 0.0
	for i := k; i <= n; i++ {
		lc, _ := math.Lgamma(float64(n + 1))
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(n - i + 1))
		sum += math.Exp(lc - li - lr + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return sum
}
