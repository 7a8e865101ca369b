package bench

import (
	"math"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Histogram is a snapshot of a Prometheus histogram: its classic buckets and, when the
// histogram also keeps native (exponential) buckets, those, which resolve quantiles to a few
// percent. controller-runtime's reconcile-time histogram keeps both.
type Histogram struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	// Bounds and Cumulative are the classic buckets (upper bound, cumulative count).
	Bounds     []float64 `json:"bounds,omitempty"`
	Cumulative []uint64  `json:"cumulative,omitempty"`
	// Native buckets: index i covers (2^((i-1)·2^-Schema), 2^(i·2^-Schema)].
	Schema        int32          `json:"schema"`
	ZeroThreshold float64        `json:"zeroThreshold,omitempty"`
	ZeroCount     uint64         `json:"zeroCount,omitempty"`
	Native        map[int]uint64 `json:"native,omitempty"`
}

// histogramFrom converts a gathered histogram.
func histogramFrom(h *dto.Histogram) Histogram {
	out := Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
	for _, b := range h.GetBucket() {
		out.Bounds = append(out.Bounds, b.GetUpperBound())
		out.Cumulative = append(out.Cumulative, b.GetCumulativeCount())
	}
	if len(h.GetPositiveSpan()) > 0 || h.GetZeroCount() > 0 {
		out.Schema = h.GetSchema()
		out.ZeroThreshold = h.GetZeroThreshold()
		out.ZeroCount = h.GetZeroCount()
		out.Native = map[int]uint64{}
		idx, k := 0, 0
		var count int64
		deltas := h.GetPositiveDelta()
		for si, s := range h.GetPositiveSpan() {
			if si == 0 {
				idx = int(s.GetOffset())
			} else {
				idx += int(s.GetOffset())
			}
			for j := uint32(0); j < s.GetLength(); j++ {
				if k < len(deltas) {
					count += deltas[k]
				}
				k++
				if count > 0 {
					out.Native[idx] = uint64(count)
				}
				idx++
			}
		}
	}
	return out
}

// reduce returns the native buckets at a lower schema (coarser buckets merge).
func reduceNative(b map[int]uint64, from, to int32) map[int]uint64 {
	if from == to {
		return b
	}
	d := uint(from - to)
	out := make(map[int]uint64, len(b))
	for i, c := range b {
		out[(i+(1<<d)-1)>>d] += c // floor division: bucket i lies within the coarse bucket
	}
	return out
}

// Sub returns what was observed between base and h (base taken earlier from the same
// histogram).
func (h Histogram) Sub(base Histogram) Histogram {
	out := Histogram{Count: h.Count - base.Count, Sum: h.Sum - base.Sum, Bounds: h.Bounds}
	if len(base.Cumulative) == len(h.Cumulative) {
		for i := range h.Cumulative {
			out.Cumulative = append(out.Cumulative, h.Cumulative[i]-base.Cumulative[i])
		}
	} else {
		out.Cumulative = h.Cumulative
	}
	if h.Native != nil {
		out.Schema, out.ZeroThreshold = h.Schema, h.ZeroThreshold
		out.ZeroCount = h.ZeroCount - base.ZeroCount
		bb := base.Native
		if bb != nil && base.Schema > h.Schema {
			bb = reduceNative(bb, base.Schema, h.Schema)
		}
		out.Native = map[int]uint64{}
		for i, c := range h.Native {
			if d := c - bb[i]; c > bb[i] && d > 0 {
				out.Native[i] = d
			}
		}
		if base.Schema < h.Schema && base.Native != nil {
			// Cannot subtract finer from coarser buckets; fall back to the classic ones.
			out.Native = nil
		}
	}
	return out
}

// Quantile estimates the q-quantile (0..1) in the histogram's unit, from the native buckets
// (interpolating exponentially within a bucket) or else the classic ones (linearly).
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	if h.Native != nil {
		cum := float64(h.ZeroCount)
		if cum >= rank && h.ZeroCount > 0 {
			return h.ZeroThreshold
		}
		idx := make([]int, 0, len(h.Native))
		for i := range h.Native {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		base := math.Exp2(math.Exp2(-float64(h.Schema)))
		for _, i := range idx {
			c := float64(h.Native[i])
			if cum+c >= rank {
				upper := math.Pow(base, float64(i))
				lower := upper / base
				f := (rank - cum) / c
				return lower * math.Pow(upper/lower, f)
			}
			cum += c
		}
		if len(idx) > 0 {
			return math.Pow(base, float64(idx[len(idx)-1]))
		}
	}
	prevBound, prevCum := 0.0, 0.0
	for i, b := range h.Bounds {
		c := float64(h.Cumulative[i])
		if c >= rank {
			if c == prevCum {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCum)/(c-prevCum)
		}
		prevBound, prevCum = b, c
	}
	return math.Inf(1)
}

// FractionAtMost is the share of observations at or below bound, which must be a classic
// bucket boundary (exact), else NaN.
func (h Histogram) FractionAtMost(bound float64) float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	for i, b := range h.Bounds {
		if b == bound {
			return float64(h.Cumulative[i]) / float64(h.Count)
		}
	}
	return math.NaN()
}

// Mean of the observations.
func (h Histogram) Mean() float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	return h.Sum / float64(h.Count)
}

// latencyHistogram accumulates durations in exponential buckets (schema 3: about 9% wide),
// as a Histogram snapshot can carry them.
type latencyHistogram struct {
	mu    sync.Mutex
	count uint64
	sum   float64
	b     map[int]uint64
}

const latencySchema = 3

func (h *latencyHistogram) observe(d time.Duration) {
	v := d.Seconds()
	if v <= 0 {
		v = 1e-9
	}
	i := int(math.Ceil(math.Log2(v) * (1 << latencySchema)))
	h.mu.Lock()
	if h.b == nil {
		h.b = map[int]uint64{}
	}
	h.count++
	h.sum += v
	h.b[i]++
	h.mu.Unlock()
}

func (h *latencyHistogram) snapshot() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Histogram{Count: h.count, Sum: h.sum, Schema: latencySchema, Native: make(map[int]uint64, len(h.b))}
	for i, c := range h.b {
		out.Native[i] = c
	}
	return out
}
