package demo

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
)

// Picture is the story as a chart: the canary's weight, and the error rate and P99 of stable
// and canary over time, with each release and each analysis round's verdict marked.
type Picture struct {
	// End is how long the story ran: the time axis goes from 0 to End.
	End      time.Duration
	Releases []ReleaseMark
	// Weight is the live VirtualService's canary weight (percent) each time it changed.
	Weight []Point
	// ErrorRate (percent) and P99 (milliseconds) by track ("stable", "canary").
	ErrorRate, P99 map[string][]Point
	Rounds         []Round
	// Thresholds of the analysis, by metric name (ErrorRateMetric, P99Metric), drawn dashed.
	Thresholds map[string]float64
}

// The metric names whose rounds go on the error-rate and P99 panels.
const (
	ErrorRateMetric = "error-rate"
	P99Metric       = "latency-p99"
)

// ReleaseMark is a commit of a release and how its rollout ended.
type ReleaseMark struct {
	Name    string
	At      time.Duration
	Outcome string // the phase it ended in
}

// Point is a value at a time since the story began.
type Point struct {
	At time.Duration
	V  float64
}

// Round is one metric's result in one analysis round.
type Round struct {
	At      time.Duration
	Metric  string
	Value   float64
	Verdict string
}

var trackColours = map[string]string{"stable": "#1f77b4", "canary": "#ff7f0e"}

var verdictColours = map[string]string{"Passed": "#2ca02c", "Failed": "#d62728", "Inconclusive": "#7f7f7f"}

const (
	chartWidth  = 960
	panelHeight = 170
	marginLeft  = 70
	marginRight = 20
	marginTop   = 70
	panelGap    = 45
)

// SVG draws the picture: three panels sharing the time axis.
func (p *Picture) SVG() []byte {
	end := p.End.Seconds()
	if end <= 0 {
		end = 1
	}
	var b bytes.Buffer
	height := marginTop + 3*panelHeight + 3*panelGap
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="16" font-weight="bold">ramp demo: each release's canary weight, error rate and P99 over time</text>`+"\n", marginLeft)
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">markers: analysis rounds (green passed, red failed, grey inconclusive); dashed red: the Rollout's thresholds; dotted: a release committed</text>`+"\n", marginLeft)

	panels := []struct {
		title  string
		unit   string
		series map[string][]Point
		metric string
		max    float64
	}{
		{title: "canary weight (VirtualService)", unit: "%", series: map[string][]Point{"canary": stepped(p.Weight, p.End)}, max: 100},
		{title: "error rate (5xx, as the workloads' proxies report it)", unit: "%", series: p.ErrorRate, metric: ErrorRateMetric},
		{title: "P99 latency", unit: "ms", series: p.P99, metric: P99Metric},
	}
	for i, pn := range panels {
		top := marginTop + i*(panelHeight+panelGap)
		ymax := pn.max
		if ymax == 0 {
			ymax = p.Thresholds[pn.metric] * 1.5
			for _, pts := range pn.series {
				for _, pt := range pts {
					ymax = math.Max(ymax, pt.V)
				}
			}
			for _, r := range p.Rounds {
				if r.Metric == pn.metric {
					ymax = math.Max(ymax, r.Value)
				}
			}
			ymax = niceCeil(ymax)
		}
		x := func(t time.Duration) float64 {
			return marginLeft + t.Seconds()/end*float64(chartWidth-marginLeft-marginRight)
		}
		y := func(v float64) float64 {
			return float64(top+panelHeight) - math.Min(v, ymax)/ymax*panelHeight
		}
		fmt.Fprintf(&b, `<g class="panel" data-title="%s">`+"\n", html.EscapeString(pn.title))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", marginLeft, top-8, html.EscapeString(pn.title))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`+"\n", marginLeft, top, chartWidth-marginLeft-marginRight, panelHeight)
		for k := 0; k <= 4; k++ {
			v := ymax * float64(k) / 4
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`, marginLeft, y(v), chartWidth-marginRight, y(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s%s</text>`+"\n", marginLeft-6, y(v)+4, trim(v), pn.unit)
		}
		for t := 0.0; t <= end; t += tickEvery(end) {
			at := time.Duration(t * float64(time.Second))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#666">%ss</text>`, x(at), top+panelHeight+14, trim(t))
		}
		b.WriteString("\n")
		if th, ok := p.Thresholds[pn.metric]; ok && pn.metric != "" {
			fmt.Fprintf(&b, `<line class="threshold" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/>`, marginLeft, y(th), chartWidth-marginRight, y(th))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#d62728">threshold %s%s</text>`+"\n", chartWidth-marginRight-4, y(th)-4, trim(th), pn.unit)
		}
		for _, track := range sortedKeys(pn.series) {
			pts := pn.series[track]
			if len(pts) == 0 {
				continue
			}
			var coords []string
			for _, pt := range pts {
				coords = append(coords, fmt.Sprintf("%.1f,%.1f", x(pt.At), y(pt.V)))
			}
			fmt.Fprintf(&b, `<polyline class="series" data-track="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n",
				track, colour(trackColours, track), strings.Join(coords, " "))
		}
		for _, r := range p.Rounds {
			if r.Metric != pn.metric || pn.metric == "" {
				continue
			}
			fmt.Fprintf(&b, `<circle class="round" data-verdict="%s" cx="%.1f" cy="%.1f" r="5" fill="%s" stroke="black" stroke-width="0.5"><title>%s %s: %s</title></circle>`+"\n",
				r.Verdict, x(r.At), y(r.Value), colour(verdictColours, r.Verdict), r.Metric, trim(r.Value), r.Verdict)
		}
		for _, rel := range p.Releases {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555" stroke-dasharray="2 3"/>`, x(rel.At), top, x(rel.At), top+panelHeight)
			if i == 0 {
				fmt.Fprintf(&b, `<text class="release" x="%.1f" y="%d" fill="#333">%s → %s</text>`, x(rel.At)+4, top+14, html.EscapeString(rel.Name), html.EscapeString(rel.Outcome))
			}
			b.WriteString("\n")
		}
		// Legend.
		lx := chartWidth - marginRight - 150
		for k, track := range sortedKeys(pn.series) {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">— %s</text>`, lx+k*70, top-8, colour(trackColours, track), track)
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// stepped turns the times a value changed into a step line that holds each value until the
// next change, and the last one until end.
func stepped(pts []Point, end time.Duration) []Point {
	var out []Point
	for i, pt := range pts {
		if i > 0 {
			out = append(out, Point{At: pt.At, V: pts[i-1].V})
		}
		out = append(out, pt)
	}
	if len(pts) > 0 {
		out = append(out, Point{At: end, V: pts[len(pts)-1].V})
	}
	return out
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func tickEvery(end float64) float64 {
	for _, t := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300} {
		if end/t <= 12 {
			return t
		}
	}
	return 600
}

func trim(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

func colour(m map[string]string, k string) string {
	if c, ok := m[k]; ok {
		return c
	}
	return "#333"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
