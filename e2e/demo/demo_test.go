package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ramp-dev/ramp/analysis/prometheustest"
	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/demo"
)

// TestStory runs the demo end to end with a short analysis interval and checks its outcome and
// output: v2 walks 5 → 25 → 100 on healthy metrics and is promoted; v3's 8% errors are caught
// at the first step and rolled back.
func TestStory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: a local cluster, Prometheus and the mesh simulator")
	}
	if _, err := prometheustest.Binary(); err != nil {
		if os.Getenv("RAMP_REQUIRE_PROMETHEUS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	picture := filepath.Join(t.TempDir(), "story.svg")
	res, err := demo.Run(ctx, &out, demo.Options{Interval: 3 * time.Second, Replicas: 3, Picture: picture})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome["v2"] != rampv1.PhaseSucceeded || res.Outcome["v3"] != rampv1.PhaseFailed {
		t.Fatalf("outcomes %v: want v2 Succeeded, v3 Failed", res.Outcome)
	}
	if got := weights(res.Rows, "v2"); got != "0 5 25 100 0" {
		t.Errorf("v2 weights %q, want 0 5 25 100 0", got)
	}
	if got := weights(res.Rows, "v3"); got != "0 5 0" {
		t.Errorf("v3 weights %q, want 0 5 0 (rolled back at the first step)", got)
	}
	last := res.Rows[len(res.Rows)-1]
	if !strings.Contains(last.Metrics, "error-rate") || !strings.Contains(last.Metrics, "Failed") {
		t.Errorf("the rollback must show the failing error rate: %q", last.Metrics)
	}
	for _, want := range []string{"Summary", "Platform team: ClusterMetricTemplates istio-error-rate and istio-latency-p99", "VirtualService stable  95% / canary   5%", "analysis: error-rate", "v3 rolled back automatically", "istiod validated the routes", "istiod served the routes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkPicture(t, res, picture)
	// Every query of the Grafana board found data in the story's Prometheus (Run fails
	// otherwise); all of them ran.
	if len(res.Board) < 15 {
		t.Errorf("the Grafana board check ran %d queries: %v", len(res.Board), res.Board)
	}
}

// checkPicture: the picture shows what happened, from Prometheus's own record: v3's canary
// answered errors above the threshold and its round failed, v2's passed.
func checkPicture(t *testing.T, res *demo.Result, path string) {
	t.Helper()
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the picture was not written: %v", err)
	}
	for _, want := range []string{"v2 → Succeeded", "v3 → Failed", `data-verdict="Failed"`, `data-verdict="Passed"`, `data-track="canary"`, `data-track="stable"`} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the picture lacks %s", want)
		}
	}
	pic := res.Picture
	var v3 time.Duration
	for _, r := range pic.Releases {
		if r.Name == "v3" {
			v3 = r.At
		}
	}
	failed, worst := false, 0.0
	for _, r := range pic.Rounds {
		failed = failed || (r.At > v3 && r.Metric == demo.ErrorRateMetric && r.Verdict == rampv1.VerdictFailed)
	}
	for _, pt := range pic.ErrorRate["canary"] {
		if pt.At > v3 {
			worst = max(worst, pt.V)
		}
	}
	if !failed || worst <= pic.Thresholds[demo.ErrorRateMetric] {
		t.Errorf("the picture does not show v3 failing: a failed error-rate round %t, worst canary error rate %.2f%% (v3 at %s; canary error rate %v)", failed, worst, v3, pic.ErrorRate["canary"])
	}
}

// weights lists the distinct consecutive canary weights a release went through.
func weights(rows []demo.Row, release string) string {
	var ws []int32
	for _, r := range rows {
		if r.Release == release && (len(ws) == 0 || ws[len(ws)-1] != r.Weight) {
			ws = append(ws, r.Weight)
		}
	}
	return strings.Trim(fmt.Sprint(ws), "[]")
}
