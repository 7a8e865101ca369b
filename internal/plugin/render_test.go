package plugin

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"sigs.k8s.io/yaml"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// now is the fixed clock of the rendering tests.
var now = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func ago(d time.Duration) metav1.Time            { return metav1.NewTime(now.Add(-d)) }
func microAgo(d time.Duration) *metav1.MicroTime { t := metav1.NewMicroTime(now.Add(-d)); return &t }

func cond(typ string, status metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: ago(since)}
}

func analysisSpec() *rampv1.AnalysisSpec {
	return &rampv1.AnalysisSpec{
		Interval:   &metav1.Duration{Duration: time.Minute},
		Prometheus: rampv1.PrometheusSpec{Address: "http://prometheus.istio-system:9090"},
		Metrics: []rampv1.Metric{
			{Name: "error-rate", Builtin: rampv1.BuiltinErrorRate, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(1.0)}},
			{Name: "latency", Builtin: rampv1.BuiltinLatencyP99, ThresholdRange: &rampv1.ThresholdRange{Max: ptr.To(500.0)}},
		},
	}
}

func canaryRollout() *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: "shop", CreationTimestamp: ago(72 * time.Hour)},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "podinfo"},
			Service:   rampv1.ServiceSpec{Port: 9898},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps: []rampv1.CanaryStep{
					{SetWeight: 5},
					{SetWeight: 25, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 2 * time.Minute}}},
					{SetWeight: 50, Pause: &rampv1.Pause{}},
					{SetWeight: 100, SkipAnalysis: true},
				},
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
			Analysis: analysisSpec(),
		},
	}
}

// canaryMidRollout: step 2/4 holding at 25%, one failed round, the last round mixed.
func canaryMidRollout() *rampv1.Rollout {
	ro := canaryRollout()
	ro.Annotations = map[string]string{rampv1.AnnotationPromote: "2026-03-14T15:09:20.5Z"}
	ro.Status = rampv1.RolloutStatus{
		Gates: &rampv1.GateStatus{At: rampv1.GateEachStep, Step: 2, Revision: "7f6b9c4d", Passed: []string{"smoke"},
			Held: []rampv1.HeldGate{{Name: "load-test", Result: "503", At: *microAgo(30 * time.Second)}}},
		Phase:                 rampv1.PhaseProgressing,
		Message:               "step 2/4: 25% to canary; waiting for a passing analysis round",
		CurrentStep:           2,
		Steps:                 4,
		CanaryWeight:          25,
		StableRevision:        "5d8f7c9b",
		StablePodTemplateHash: "6c9f8d7b5",
		CanaryRevision:        "7f6b9c4d",
		Stage:                 "Holding",
		StageStartedAt:        microAgo(90 * time.Second),
		FailedChecks:          1,
		InconclusiveChecks:    0,
		LastAnalysisTime:      microAgo(30 * time.Second),
		LastAnalysis: []rampv1.MetricResult{
			{Name: "error-rate", Verdict: rampv1.VerdictPassed, Value: "0.42", StableValue: "0.40", Threshold: "<= 1", Time: ago(30 * time.Second)},
			{Name: "latency", Verdict: rampv1.VerdictFailed, Value: "612", Threshold: "<= 500", Message: "612 ms above 500 ms", Time: ago(31 * time.Second)},
		},
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "Progressing", "step 2/4: 25% to canary; waiting for a passing analysis round", 3*time.Minute),
			cond("Reconciling", metav1.ConditionTrue, "Progressing", "step 2/4: 25% to canary; waiting for a passing analysis round", 3*time.Minute),
		},
	}
	return ro
}

func events() []Event {
	return []Event{
		{UID: "e6", Type: "Warning", Reason: "AnalysisFailed", Message: "check 1/2 failed: latency 612 above 500", Time: now.Add(-30 * time.Second)},
		{UID: "e1", Type: "Normal", Reason: "Adopted", Message: "paused Deployment \"podinfo\" at revision 5d8f7c9b; all traffic to stable", Time: now.Add(-72 * time.Hour)},
		{UID: "e2", Type: "Normal", Reason: "RolloutStarted", Message: "new revision 7f6b9c4d: canary 5% → 25% → 50% → 100%", Time: now.Add(-6 * time.Minute)},
		{UID: "e3", Type: "Normal", Reason: "StepStarted", Message: "step 1/4: 5% to canary", Time: now.Add(-5 * time.Minute)},
		{UID: "e4", Type: "Normal", Reason: "PromoteRequested", Message: "kubectl ramp promote: step 1/4 done", Time: now.Add(-4 * time.Minute)},
		{UID: "e5", Type: "Normal", Reason: "StepStarted", Message: "step 2/4: 25% to canary", Time: now.Add(-90 * time.Second), Count: 2},
	}
}

func blueGreenPreview() *rampv1.Rollout {
	return &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "payments", Namespace: "shop", CreationTimestamp: ago(30 * 24 * time.Hour)},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: "payments"},
			Service:   rampv1.ServiceSpec{Port: 8443},
			Strategy: rampv1.Strategy{BlueGreen: &rampv1.BlueGreenStrategy{
				PrePromotionPause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 15 * time.Minute}},
			}},
			Analysis: analysisSpec(),
		},
		Status: rampv1.RolloutStatus{
			Phase:            rampv1.PhaseProgressing,
			Message:          "preview: new version at full size on the preview header route; waiting for pause until 2026-03-14T15:20:00Z",
			CurrentStep:      1,
			Steps:            1,
			StableRevision:   "a1b2c3d4",
			CanaryRevision:   "e5f6a7b8",
			Stage:            "Holding",
			StageStartedAt:   microAgo(4 * time.Minute),
			LastAnalysisTime: microAgo(time.Minute),
			LastAnalysis: []rampv1.MetricResult{
				{Name: "error-rate", Verdict: rampv1.VerdictPassed, Value: "0", StableValue: "0.1", Threshold: "<= 1", Time: ago(time.Minute)},
				{Name: "latency", Verdict: rampv1.VerdictInconclusive, Threshold: "<= 500", Message: "3 requests in the window, fewer than 10", Time: ago(time.Minute)},
			},
			InconclusiveChecks: 1,
			Conditions: []metav1.Condition{
				cond("Ready", metav1.ConditionFalse, "Progressing", "preview", 4*time.Minute),
				cond("Reconciling", metav1.ConditionTrue, "Progressing", "preview", 4*time.Minute),
			},
		},
	}
}

func failedRollout() *rampv1.Rollout {
	ro := canaryRollout()
	ro.Status = rampv1.RolloutStatus{
		Phase:            rampv1.PhaseFailed,
		Message:          "analysis failed 2 times: latency 730 above 500",
		CurrentStep:      2,
		Steps:            4,
		StableRevision:   "5d8f7c9b",
		CanaryRevision:   "7f6b9c4d",
		Stage:            "Holding",
		StageStartedAt:   microAgo(10 * time.Minute),
		FailedChecks:     2,
		LastAnalysisTime: microAgo(8 * time.Minute),
		LastAnalysis: []rampv1.MetricResult{
			{Name: "error-rate", Verdict: rampv1.VerdictPassed, Value: "0.1", Threshold: "<= 1", Time: ago(8 * time.Minute)},
			{Name: "latency", Verdict: rampv1.VerdictFailed, Value: "730", Threshold: "<= 500", Time: ago(8 * time.Minute)},
		},
		HandledRequests: rampv1.HandledRequests{Promote: "2026-03-14T14:50:00Z"},
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "Failed", "analysis failed 2 times: latency 730 above 500", 8*time.Minute),
		},
	}
	ro.Annotations = map[string]string{rampv1.AnnotationPromote: "2026-03-14T14:50:00Z"}
	return ro
}

func pausedRollout() *rampv1.Rollout {
	ro := canaryRollout()
	ro.Spec.Analysis = nil
	ro.Annotations = map[string]string{rampv1.AnnotationPaused: "true"}
	ro.Status = rampv1.RolloutStatus{
		Phase:          rampv1.PhasePaused,
		Message:        "paused by kubectl ramp pause at step 3/4, 50% to canary",
		CurrentStep:    3,
		Steps:          4,
		CanaryWeight:   50,
		StableRevision: "5d8f7c9b",
		CanaryRevision: "7f6b9c4d",
		Stage:          "Holding",
		StageStartedAt: microAgo(2 * time.Hour),
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "Paused", "paused by kubectl ramp pause at step 3/4, 50% to canary", time.Hour),
			cond("Reconciling", metav1.ConditionTrue, "Paused", "paused by kubectl ramp pause at step 3/4, 50% to canary", time.Hour),
		},
	}
	return ro
}

func idleRollout() *rampv1.Rollout {
	ro := canaryRollout()
	ro.Name = "checkout"
	ro.Spec.TargetRef.Name = "checkout"
	ro.Status = rampv1.RolloutStatus{
		Phase:          rampv1.PhaseIdle,
		Message:        "managing Deployment \"checkout\" at revision 0a1b2c3d",
		StableRevision: "0a1b2c3d",
		Conditions:     []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Idle", "managing Deployment \"checkout\" at revision 0a1b2c3d", 2*time.Hour)},
	}
	return ro
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/plugin -run Render -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./internal/plugin -run Render -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func TestRenderStatus(t *testing.T) {
	cases := []struct {
		name   string
		ro     *rampv1.Rollout
		events []Event
	}{
		{"canary-mid-rollout", canaryMidRollout(), events()},
		{"bluegreen-preview", blueGreenPreview(), nil},
		{"failed", failedRollout(), []Event{
			{UID: "f1", Type: "Warning", Reason: "AnalysisFailed", Message: "rolling back: analysis failed 2 times: latency 730 above 500", Time: now.Add(-8 * time.Minute)},
			{UID: "f2", Type: "Warning", Reason: "RolledBack", Message: "all traffic on stable revision 5d8f7c9b; canary scaled to zero: analysis failed 2 times: latency 730 above 500", Time: now.Add(-8 * time.Minute)},
		}},
		{"paused", pausedRollout(), nil},
		{"idle", idleRollout(), nil},
	}
	for _, tc := range cases {
		for _, color := range []bool{false, true} {
			name := "status-" + tc.name
			if color {
				name += "-color"
			}
			t.Run(name, func(t *testing.T) {
				got := RenderStatus(tc.ro, tc.events, now, color)
				golden(t, name, got)
				if !color && strings.Contains(got, "\x1b[") {
					t.Error("plain output holds ANSI escapes")
				}
				if color && !strings.Contains(got, "\x1b[") {
					t.Error("coloured output holds no ANSI escapes")
				}
				// Colour must not change the text: stripping escapes gives the plain output.
				if color {
					if plain := RenderStatus(tc.ro, tc.events, now, false); stripANSI(got) != plain {
						t.Errorf("coloured output without escapes differs from plain:\n%s\n---\n%s", stripANSI(got), plain)
					}
				}
			})
		}
	}
}

func TestRenderStatusKeepsTheLatestFiveEventsNewestLast(t *testing.T) {
	got := RenderStatus(canaryMidRollout(), events(), now, false)
	if strings.Contains(got, "Adopted") {
		t.Error("the oldest of six events is shown")
	}
	if i, j := strings.Index(got, "RolloutStarted"), strings.Index(got, "AnalysisFailed"); i < 0 || j < 0 || i > j {
		t.Errorf("events not oldest first:\n%s", got)
	}
}

func TestRenderList(t *testing.T) {
	other := pausedRollout()
	other.Namespace = "payments-team"
	other.Name = "ledger"
	items := []rampv1.Rollout{*canaryMidRollout(), *idleRollout(), *blueGreenPreview(), *failedRollout(), *other}
	items[3].Name = "search"
	for _, all := range []bool{false, true} {
		for _, color := range []bool{false, true} {
			name := "list"
			if all {
				name += "-all-namespaces"
			}
			if color {
				name += "-color"
			}
			t.Run(name, func(t *testing.T) {
				got := RenderList(items, now, all, color)
				golden(t, name, got)
				if color && stripANSI(got) != RenderList(items, now, all, false) {
					t.Error("coloured output without escapes differs from plain")
				}
			})
		}
	}
}

func TestPositionAndTransition(t *testing.T) {
	a, b := canaryMidRollout(), canaryMidRollout()
	b.Status.CurrentStep = 3
	if got := transition(a, b); got != "step 2/4 → 3/4" {
		t.Errorf("transition = %q", got)
	}
	b.Status.Phase, b.Status.Stage = rampv1.PhasePromoting, "RoutingToCanary"
	if got := transition(a, b); got != "step 2/4 → promotion" {
		t.Errorf("transition = %q", got)
	}
	g1, g2 := blueGreenPreview(), blueGreenPreview()
	g2.Status.Phase, g2.Status.Stage = rampv1.PhasePromoting, "RoutingToCanary"
	if got := transition(g1, g2); got != "preview → flip" {
		t.Errorf("transition = %q", got)
	}
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && s[j] != 'm' {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// config/krew/ramp.yaml is a krew Plugin for linux and darwin on amd64 and arm64, with the
// release job's placeholders.
func TestKrewManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "krew", "ramp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct{ Name string }
		Spec       struct {
			Version   string
			Platforms []struct {
				Selector struct{ MatchLabels map[string]string } `json:"selector"`
				URI      string                                  `json:"uri"`
				Sha256   string                                  `json:"sha256"`
				Bin      string                                  `json:"bin"`
			}
		}
	}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "ramp" || m.Spec.Version != "{{version}}" {
		t.Errorf("header: %+v", m)
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		osArch := p.Selector.MatchLabels["os"] + "_" + p.Selector.MatchLabels["arch"]
		seen[osArch] = true
		if want := "https://github.com/ramp-dev/ramp/releases/download/{{version}}/kubectl-ramp_{{version}}_" + osArch + ".tar.gz"; p.URI != want {
			t.Errorf("%s: uri %s, want %s", osArch, p.URI, want)
		}
		if p.Sha256 != "{{sha256 kubectl-ramp_"+osArch+".tar.gz}}" || p.Bin != "kubectl-ramp" {
			t.Errorf("%s: sha256 %q, bin %q", osArch, p.Sha256, p.Bin)
		}
	}
	for _, want := range []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"} {
		if !seen[want] {
			t.Errorf("no platform %s", want)
		}
	}
}

func TestPausedByNamesTheWriter(t *testing.T) {
	annotated := func(manager string, op metav1.ManagedFieldsOperationType) *rampv1.Rollout {
		ro := pausedRollout()
		ro.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: manager, Operation: op, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:ramp.dev/paused":{}}}}`)}}}
		return ro
	}
	inGit := canaryRollout()
	inGit.Spec.Paused = true
	for _, tc := range []struct {
		name string
		ro   *rampv1.Rollout
		want string
	}{
		{"kubectl ramp pause", annotated(FieldManager, metav1.ManagedFieldsOperationApply), "kubectl ramp pause"},
		{"kubectl annotate", annotated("kubectl-annotate", metav1.ManagedFieldsOperationUpdate),
			"the annotation ramp.dev/paused (written by kubectl-annotate)"},
		{"no managedFields read", pausedRollout(), "kubectl ramp pause"},
		{"spec.paused", inGit, "spec.paused in its manifest"},
		{"not paused", canaryRollout(), ""},
	} {
		if got := pausedBy(tc.ro); got != tc.want {
			t.Errorf("%s: pausedBy = %q, want %q", tc.name, got, tc.want)
		}
	}
	out := RenderStatus(annotated("flux", metav1.ManagedFieldsOperationApply), nil, now, false)
	if !strings.Contains(out, "paused by the annotation ramp.dev/paused (written by flux)") {
		t.Errorf("status does not name the writer of the pause:\n%s", out)
	}
}
