package analysis

import (
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestBuiltinQueryGolden(t *testing.T) {
	tests := []struct {
		builtin, ns, workload, window, want string
	}{
		{rampv1.BuiltinErrorRate, "demo", "web-canary", "1m",
			`100 * (sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="demo",destination_workload="web-canary",response_code=~"5.."}[1m])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="demo",destination_workload="web-canary"}[1m]))`},
		{rampv1.BuiltinErrorRate, "demo", "web", "30s",
			`100 * (sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="demo",destination_workload="web",response_code=~"5.."}[30s])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="demo",destination_workload="web"}[30s]))`},
		{rampv1.BuiltinLatencyP99, "demo", "web-canary", "90s",
			`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="demo",destination_workload="web-canary"}[90s])))`},
		{rampv1.BuiltinLatencyP99, "shop", "api.v2", "5m",
			`histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="shop",destination_workload="api.v2"}[5m])))`},
	}
	for _, tt := range tests {
		got, err := BuiltinQuery(tt.builtin, tt.ns, tt.workload, tt.window)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.builtin, tt.workload, err)
		}
		if got != tt.want {
			t.Errorf("%s %s %s:\n got %s\nwant %s", tt.builtin, tt.workload, tt.window, got, tt.want)
		}
	}
	got, err := RequestCountQuery("demo", "web-canary", "2h")
	want := `sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="demo",destination_workload="web-canary"}[2h]))`
	if err != nil || got != want {
		t.Errorf("RequestCountQuery:\n got %s (%v)\nwant %s", got, err, want)
	}
}

func TestBuiltinQueryRejects(t *testing.T) {
	for _, tt := range []struct{ builtin, ns, w, window, want string }{
		{"error-ratio", "demo", "web", "1m", "unknown builtin"},
		{rampv1.BuiltinErrorRate, "demo", `x"} or vector(1) #`, "1m", "invalid workload"},
		{rampv1.BuiltinErrorRate, "Demo", "web", "1m", "invalid namespace"},
		{rampv1.BuiltinErrorRate, "demo.x", "web", "1m", "invalid namespace"},
		{rampv1.BuiltinLatencyP99, "demo", "web", "1m]) or vector(1", "window"},
		{rampv1.BuiltinLatencyP99, "demo", "web", "", "window"},
	} {
		if _, err := BuiltinQuery(tt.builtin, tt.ns, tt.w, tt.window); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("BuiltinQuery(%q, %q, %q, %q) = %v, want error with %q", tt.builtin, tt.ns, tt.w, tt.window, err, tt.want)
		}
	}
}

func TestPromDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "30s"},
		{time.Minute, "1m"},
		{90 * time.Second, "90s"},
		{2 * time.Minute, "2m"},
		{90 * time.Minute, "90m"},
		{2 * time.Hour, "2h"},
		{1500 * time.Millisecond, "1500ms"},
		{time.Second + 400*time.Microsecond, "1s"},
		{24 * time.Hour, "24h"},
	} {
		got, err := PromDuration(tt.d)
		if err != nil || got != tt.want {
			t.Errorf("PromDuration(%s) = %q, %v; want %q", tt.d, got, err, tt.want)
		}
		if err := ValidPromDuration(got); err != nil {
			t.Errorf("PromDuration(%s) = %q is not valid PromQL: %v", tt.d, got, err)
		}
	}
	for _, d := range []time.Duration{0, -time.Second, 100 * time.Microsecond} {
		if got, err := PromDuration(d); err == nil {
			t.Errorf("PromDuration(%s) = %q, want error", d, got)
		}
	}
	for _, s := range []string{"", "1", "1x", "-1m", "0s", "1m]"} {
		if ValidPromDuration(s) == nil {
			t.Errorf("ValidPromDuration(%q) = nil, want error", s)
		}
	}
}
