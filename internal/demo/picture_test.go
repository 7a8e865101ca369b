package demo

import (
	"encoding/xml"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStepped(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		in   []Point
		want []Point
	}{
		{nil, nil},
		{[]Point{{At: s, V: 5}}, []Point{{At: s, V: 5}, {At: 10 * s, V: 5}}},
		{[]Point{{At: 0, V: 0}, {At: 2 * s, V: 5}, {At: 4 * s, V: 0}},
			[]Point{{At: 0, V: 0}, {At: 2 * s, V: 0}, {At: 2 * s, V: 5}, {At: 4 * s, V: 5}, {At: 4 * s, V: 0}, {At: 10 * s, V: 0}}},
	} {
		if got := stepped(tc.in, 10*s); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("stepped(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// The picture is well-formed SVG with what the story had: a line per track on each panel,
// one marker per round in its verdict's colour, each release labelled with its outcome, and
// the thresholds.
func TestPictureSVG(t *testing.T) {
	s := time.Second
	p := &Picture{
		End:      60 * s,
		Releases: []ReleaseMark{{Name: "v2", At: 5 * s, Outcome: "Succeeded"}, {Name: "v3", At: 35 * s, Outcome: "Failed"}},
		Weight:   []Point{{At: 0, V: 0}, {At: 6 * s, V: 5}, {At: 16 * s, V: 25}, {At: 30 * s, V: 0}, {At: 36 * s, V: 5}, {At: 46 * s, V: 0}},
		ErrorRate: map[string][]Point{"stable": {{At: 1 * s, V: 0.2}, {At: 50 * s, V: 0.3}},
			"canary": {{At: 7 * s, V: 0.3}, {At: 40 * s, V: 8}}},
		P99: map[string][]Point{"stable": {{At: 1 * s, V: 120}}, "canary": {{At: 7 * s, V: 150}}},
		Rounds: []Round{
			{At: 16 * s, Metric: ErrorRateMetric, Value: 0.3, Verdict: "Passed"}, {At: 16 * s, Metric: P99Metric, Value: 150, Verdict: "Passed"},
			{At: 46 * s, Metric: ErrorRateMetric, Value: 8, Verdict: "Failed"}, {At: 46 * s, Metric: P99Metric, Value: 160, Verdict: "Passed"},
		},
		Thresholds: map[string]float64{ErrorRateMetric: 1, P99Metric: 300},
	}
	var doc struct {
		Panels []struct {
			Title string `xml:"data-title,attr"`
			Lines []struct {
				Track string `xml:"data-track,attr"`
			} `xml:"polyline"`
			Circles []struct {
				Verdict string `xml:"data-verdict,attr"`
			} `xml:"circle"`
			Texts    []string `xml:"text"`
			Segments []struct {
				Class string `xml:"class,attr"`
			} `xml:"line"`
		} `xml:"g"`
	}
	svg := p.SVG()
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, svg)
	}
	if len(doc.Panels) != 3 {
		t.Fatalf("%d panels, want 3", len(doc.Panels))
	}
	summary := func(i int) string {
		pn := doc.Panels[i]
		var tracks, verdicts []string
		for _, l := range pn.Lines {
			tracks = append(tracks, l.Track)
		}
		for _, c := range pn.Circles {
			verdicts = append(verdicts, c.Verdict)
		}
		thresholds := 0
		for _, l := range pn.Segments {
			if l.Class == "threshold" {
				thresholds++
			}
		}
		return fmt.Sprintf("lines %v rounds %v thresholds %d", tracks, verdicts, thresholds)
	}
	for i, want := range []string{
		"lines [canary] rounds [] thresholds 0",
		"lines [canary stable] rounds [Passed Failed] thresholds 1",
		"lines [canary stable] rounds [Passed Passed] thresholds 1",
	} {
		if got := summary(i); got != want {
			t.Errorf("panel %d (%s): %s, want %s", i, doc.Panels[i].Title, got, want)
		}
	}
	labels := strings.Join(doc.Panels[0].Texts, "|")
	for _, want := range []string{"v2 → Succeeded", "v3 → Failed"} {
		if !strings.Contains(labels, want) {
			t.Errorf("release labels %q lack %q", labels, want)
		}
	}
}
