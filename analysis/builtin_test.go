package analysis

import (
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// The built-in queries, as the documentation shows them: reporter="source" (what the calling
// proxies saw); every count windowed, so a series born inside the window counts from zero;
// the canary's error-rate and request count also charge it with the requests for its Service
// that reached no pod (UH, NC: by its qualified name from any caller, by its bare name only
// from callers in its namespace); the stable side and latency do not.
func TestBuiltinQueryGolden(t *testing.T) {
	tests := []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"canary error-rate", func() (string, error) {
			return CanaryBuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web", "web-canary", "1m")
		}, `100 * (sum((increase(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary",response_code=~"0|5.."}[1m]) and istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary",response_code=~"0|5.."} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary",response_code=~"0|5.."}[1m]) unless istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary",response_code=~"0|5.."} offset 1m) or (increase(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"}[1m]) and istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"}[1m]) unless istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"} offset 1m) or (increase(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"}[1m]) and istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"}[1m]) unless istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"} offset 1m)) or vector(0)) / sum((increase(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"}[1m]) and istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"}[1m]) unless istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"} offset 1m) or (increase(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"}[1m]) and istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"}[1m]) unless istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"} offset 1m) or (increase(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"}[1m]) and istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"}[1m]) unless istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"} offset 1m))`},
		{"canary request count", func() (string, error) { return CanaryRequestCountQuery("demo", "web", "web-canary", "1m") }, `sum((increase(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"}[1m]) and istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"}[1m]) unless istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"} offset 1m) or (increase(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"}[1m]) and istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"}[1m]) unless istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web[.]demo([.:].+)?"} offset 1m) or (increase(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"}[1m]) and istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"} offset 1m) or (last_over_time(istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"}[1m]) unless istio_requests_total{reporter="source",destination_workload="unknown",response_flags=~"(.+,)?(UH|NC)(,.+)?",destination_service=~"web(:[0-9]+)?",source_workload_namespace="demo"} offset 1m))`},
		{"stable error-rate", func() (string, error) { return BuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web", "30s") }, `100 * (sum((increase(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web",response_code=~"0|5.."}[30s]) and istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web",response_code=~"0|5.."} offset 30s) or (last_over_time(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web",response_code=~"0|5.."}[30s]) unless istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web",response_code=~"0|5.."} offset 30s)) or vector(0)) / sum((increase(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"}[30s]) and istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"} offset 30s) or (last_over_time(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"}[30s]) unless istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"} offset 30s))`},
		{"stable latency-p99", func() (string, error) { return BuiltinQuery(rampv1.BuiltinLatencyP99, "shop", "api.v2", "5m") }, `histogram_quantile(0.99, sum by (le) ((increase(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="api.v2"}[5m]) and istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="api.v2"} offset 5m) or (last_over_time(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="api.v2"}[5m]) unless istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="api.v2"} offset 5m)))`},
		{"stable request count", func() (string, error) { return RequestCountQuery("demo", "web", "2h") }, `sum((increase(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"}[2h]) and istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"} offset 2h) or (last_over_time(istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"}[2h]) unless istio_requests_total{reporter="source",destination_workload_namespace="demo",destination_workload="web"} offset 2h))`},
		{"canary latency-p99", func() (string, error) {
			return CanaryBuiltinQuery(rampv1.BuiltinLatencyP99, "demo", "web", "web-canary", "90s")
		}, `histogram_quantile(0.99, sum by (le) ((increase(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"}[90s]) and istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"} offset 90s) or (last_over_time(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"}[90s]) unless istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="demo",destination_workload="web-canary"} offset 90s)))`},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
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
		if _, err := CanaryBuiltinQuery(tt.builtin, tt.ns, "web", tt.w, tt.window); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CanaryBuiltinQuery(%q, %q, web, %q, %q) = %v, want error with %q", tt.builtin, tt.ns, tt.w, tt.window, err, tt.want)
		}
		if _, err := BuiltinQuery(tt.builtin, tt.ns, tt.w, tt.window); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("BuiltinQuery(%q, %q, %q, %q) = %v, want error with %q", tt.builtin, tt.ns, tt.w, tt.window, err, tt.want)
		}
	}
}

// Backends (the Gateway API router's Services) join the Service in the unattributed
// failures' destination_service, as one regular-expression alternative.
func TestCanaryQueryWithBackends(t *testing.T) {
	q, err := CanaryRequestCountQuery("demo", "web", "web-canary", "1m", "web-stable", "web-canary")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`destination_service=~"(web|web-stable|web-canary)[.]demo([.:].+)?"`, `destination_service=~"(web|web-stable|web-canary)(:[0-9]+)?",source_workload_namespace="demo"`} {
		if !strings.Contains(q, want) {
			t.Errorf("query lacks %s:\n%s", want, q)
		}
	}
	if _, err := CanaryBuiltinQuery(rampv1.BuiltinErrorRate, "demo", "web", "web-canary", "1m", `x"}`); err == nil || !strings.Contains(err.Error(), "invalid service") {
		t.Errorf("a backend that is not a Service name: %v", err)
	}
}

func TestCanaryQueryRejectsService(t *testing.T) {
	for _, svc := range []string{"", "web.demo", `web"} or vector(1) #`, "Web"} {
		if _, err := CanaryBuiltinQuery(rampv1.BuiltinErrorRate, "demo", svc, "web-canary", "1m"); err == nil || !strings.Contains(err.Error(), "invalid service") {
			t.Errorf("CanaryBuiltinQuery with service %q: %v", svc, err)
		}
		if _, err := CanaryRequestCountQuery("demo", svc, "web-canary", "1m"); err == nil || !strings.Contains(err.Error(), "invalid service") {
			t.Errorf("CanaryRequestCountQuery with service %q: %v", svc, err)
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
