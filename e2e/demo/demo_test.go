package demo_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
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
	res, err := demo.Run(ctx, &out, demo.Options{Interval: 3 * time.Second, Replicas: 3})
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
