package scenarios

import (
	"fmt"
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// A healthy v2 walks 10 → 50 → 100 on real Prometheus analysis and is promoted.
func TestCanarySuccess(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{})
	rec := a.record()
	a.setImage(imgV2)
	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseSucceeded {
		t.Fatalf("phase %s: %s (analysis: %s)", ro.Status.Phase, ro.Status.Message, metricsText(ro.Status.LastAnalysis))
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 50 100 0]" {
		t.Errorf("weights %s, want 0 10 50 100 0", got)
	}
	if len(ro.Status.LastAnalysis) == 0 {
		t.Fatal("no analysis results in status")
	}
	for _, m := range ro.Status.LastAnalysis {
		if m.Value == "" || m.Verdict != rampv1.VerdictPassed {
			t.Errorf("metric %s: value %q verdict %s, want a value and Passed", m.Name, m.Value, m.Verdict)
		}
	}
	t.Logf("phases %s; analysis %s", fmt.Sprint(rec.Phases(appName)), metricsText(ro.Status.LastAnalysis))
}

// v2 answers 10% 500s: the first analysis round at 10% fails and all traffic returns to v1.
func TestCanaryRollbackOnErrors(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{})
	rec := a.record()
	a.setImage(imgErrors)
	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseFailed {
		t.Fatalf("phase %s, want Failed: %s", ro.Status.Phase, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 0]" {
		t.Errorf("weights %s, want 0 10 0 (rolled back at step 1)", got)
	}
	failed(t, ro, "error-rate")
}

// v2's P99 is ~900 ms against a 500 ms maximum: rolled back at step 1.
func TestCanaryRollbackOnLatency(t *testing.T) {
	t.Parallel()
	a := newApp(t, appOptions{})
	rec := a.record()
	a.setImage(imgSlow)
	ro := a.waitEnd(3 * time.Minute)
	a.settled(rec)
	if ro.Status.Phase != rampv1.PhaseFailed {
		t.Fatalf("phase %s, want Failed: %s", ro.Status.Phase, ro.Status.Message)
	}
	if got := fmt.Sprint(rec.Weights(appName)); got != "[0 10 0]" {
		t.Errorf("weights %s, want 0 10 0 (rolled back at step 1)", got)
	}
	failed(t, ro, "latency-p99")
}

// failed checks that metric is reported Failed in the rollout's last analysis.
func failed(t *testing.T, ro *rampv1.Rollout, metric string) {
	t.Helper()
	for _, m := range ro.Status.LastAnalysis {
		if m.Name == metric {
			if m.Verdict != rampv1.VerdictFailed || m.Value == "" {
				t.Errorf("%s: value %q verdict %s, want a value and Failed", metric, m.Value, m.Verdict)
			}
			return
		}
	}
	if !strings.Contains(ro.Status.Message, metric) {
		t.Errorf("no %s result in status (%s) nor in the message %q", metric, metricsText(ro.Status.LastAnalysis), ro.Status.Message)
	}
}
