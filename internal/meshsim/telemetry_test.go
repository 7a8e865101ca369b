package meshsim

import (
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"

	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ramp-dev/ramp/internal/mesh/istio"
)

// gather renders every sample of t as name{labels} -> value (histograms as _bucket, _sum
// and _count).
func gather(t testing.TB, tel *Telemetry) map[string]float64 {
	t.Helper()
	mfs, err := tel.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	key := func(name string, lps []*dto.LabelPair, extra ...string) string {
		var parts []string
		for _, lp := range lps {
			parts = append(parts, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
		}
		parts = append(parts, extra...)
		sort.Strings(parts)
		return name + "{" + strings.Join(parts, ",") + "}"
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			switch {
			case m.Counter != nil:
				out[key(mf.GetName(), m.Label)] = m.Counter.GetValue()
			case m.Histogram != nil:
				for _, b := range m.Histogram.Bucket {
					out[key(mf.GetName()+"_bucket", m.Label, "le="+strconv.Quote(strconv.FormatFloat(b.GetUpperBound(), 'f', -1, 64)))] = float64(b.GetCumulativeCount())
				}
				out[key(mf.GetName()+"_count", m.Label)] = float64(m.Histogram.GetSampleCount())
				out[key(mf.GetName()+"_sum", m.Label)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// The histogram has Istio's buckets and observes milliseconds, per reporter: the client's
// latency includes a fault delay, the pod's does not.
func TestTelemetryHistogram(t *testing.T) {
	tel := NewTelemetry("meshsim", ns)
	ep := &Endpoint{Pod: "p", Namespace: ns, Workload: "web-canary"}
	res := Result{Service: fqdn, Subset: "canary", Code: 200, Flags: "DI", Latency: 230 * time.Millisecond, Endpoint: ep,
		Attempts: []Attempt{{Endpoint: ep, Code: 200, Flags: "-", Latency: 30 * time.Millisecond}}}
	tel.Record(res.Reports(nil))
	got := gather(t, tel)
	key := func(name, reporter, flags string, le ...string) string {
		l := map[string]string{"destination_service": fqdn, "destination_workload": "web-canary", "destination_workload_namespace": ns,
			"reporter": reporter, "response_code": "200", "response_flags": flags, "source_workload": "meshsim", "source_workload_namespace": ns}
		if len(le) > 0 {
			l["le"] = le[0]
		}
		return seriesName(name, l)
	}
	var les []string
	for k := range got {
		if strings.HasPrefix(k, "istio_request_duration_milliseconds_bucket{") && strings.Contains(k, `reporter="destination"`) {
			le := k[strings.Index(k, `le="`)+4:]
			les = append(les, le[:strings.IndexByte(le, '"')])
		}
	}
	var want []string
	for _, b := range IstioBuckets {
		want = append(want, strconv.FormatFloat(b, 'f', -1, 64))
	}
	slices.Sort(les)
	slices.Sort(want)
	if !slices.Equal(les, want) {
		t.Errorf("buckets %v, want Istio's %v", les, want)
	}
	for k, v := range map[string]float64{
		key("istio_requests_total", "source", "DI"):                                 1,
		key("istio_requests_total", "destination", "-"):                             1,
		key("istio_request_duration_milliseconds_sum", "source", "DI"):              230,
		key("istio_request_duration_milliseconds_sum", "destination", "-"):          30,
		key("istio_request_duration_milliseconds_count", "destination", "-"):        1,
		key("istio_request_duration_milliseconds_bucket", "source", "DI", "100"):    0,
		key("istio_request_duration_milliseconds_bucket", "source", "DI", "250"):    1,
		key("istio_request_duration_milliseconds_bucket", "destination", "-", "25"): 0,
		key("istio_request_duration_milliseconds_bucket", "destination", "-", "50"): 1,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// seriesName renders name{labels} with labels sorted, as gather does.
func seriesName(name string, labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

func TestStatsWindow(t *testing.T) {
	ring := &statsRing{retention: time.Minute}
	t0 := time.Now()
	rep := []Report{{Reporter: ReporterSource, Subset: "canary", Workload: "web-canary", Code: 200, Flags: "-"}}
	for i := range 10 {
		ring.add(t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i+1)*time.Second), rep)
	}
	now := t0.Add(10 * time.Second)
	if st := ring.stats(now, 3*time.Second); st.Total(ReporterSource) != 3 || st.Window != 3*time.Second {
		t.Errorf("3s window: %d reports over %s", st.Total(ReporterSource), st.Window)
	}
	if st := ring.stats(now, 2500*time.Millisecond); st.Total(ReporterSource) != 2 {
		t.Errorf("2.5s window: %d reports (only whole ticks count)", st.Total(ReporterSource))
	}
	// Old slots expire and are reused.
	ring.add(t0.Add(100*time.Second), t0.Add(101*time.Second), rep)
	if len(ring.slots) != 1 {
		t.Errorf("%d slots after expiry", len(ring.slots))
	}
}

// A Sim against a fake istiod (ADS) and a fake client: it generates the configured rate,
// follows a push of new routes, takes new behaviours and serves /metrics.
func TestSimWithFakeClient(t *testing.T) {
	var weight atomic.Uint32
	weight.Store(50)
	addr, push := serveADS(t, func() *EnvoyConfig {
		e := envoyConfig(t, weight.Load())
		// envoyConfig's warming cluster has no load assignment: without it the configuration
		// is complete.
		e.Clusters = slices.DeleteFunc(e.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == ClusterName(80, "warming", fqdn) })
		return e
	})
	objs := []client.Object{service()}
	for _, p := range xdsPods() {
		objs = append(objs, &p)
	}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).Build()

	s, err := New(Options{Client: c, Namespace: ns, Service: app, XDSAddr: addr, Seed: 7, Refresh: 50 * time.Millisecond, Tick: 10 * time.Millisecond,
		Traffic: Traffic{RPS: 2000}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if got := s.Router().VirtualService(); got != "demo/web" {
		t.Fatalf("router uses VirtualService %q", got)
	}
	time.Sleep(500 * time.Millisecond)
	st := s.Stats(400 * time.Millisecond)
	rate := float64(st.Total(ReporterSource)) / st.Window.Seconds()
	t.Logf("%d requests in %s: %.0f/s, canary %.1f%%", st.Total(ReporterSource), st.Window, rate, 100*st.Share(ReporterSource, "canary"))
	if rate < 1800 || rate > 2200 {
		t.Errorf("rate %.0f/s, want 2000", rate)
	}
	if sh := st.Share(ReporterSource, "canary"); sh < 0.4 || sh > 0.6 {
		t.Errorf("canary share %.3f, want ~0.5", sh)
	}

	// istiod pushes 100% to stable; the stable image starts failing.
	weight.Store(0)
	push <- struct{}{}
	if err := s.SetBehaviour(stableImage, Behaviour{ErrorRate: 1, ErrorCode: 500}); err != nil {
		t.Fatal(err)
	}
	// The push arrives when it does; poll rather than guess how busy the machine is.
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		st = s.Stats(100 * time.Millisecond)
		w := st.ByWorkload(ReporterDestination)
		if st.Total(ReporterSource) > 0 && st.Share(ReporterSource, "canary") == 0 && w["web"] > 0 && st.ErrorRate(ReporterDestination, "web") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the changes: %d requests, canary share %.3f, workloads %v, stable error rate %v",
				st.Total(ReporterSource), st.Share(ReporterSource, "canary"), w, st.ErrorRate(ReporterDestination, "web"))
		}
	}

	resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`istio_requests_total{destination_service="web.demo.svc.cluster.local",destination_workload="web",destination_workload_namespace="demo",reporter="destination",response_code="500",response_flags="-",source_workload="meshsim",source_workload_namespace="demo"}`,
		`istio_request_duration_milliseconds_bucket{destination_service="web.demo.svc.cluster.local",destination_workload="web-canary",destination_workload_namespace="demo",reporter="destination",response_code="200",response_flags="-",source_workload="meshsim",source_workload_namespace="demo",le="3.6e+06"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	s.Stop()
	if _, err := http.Get("http://" + s.MetricsAddr() + "/metrics"); err == nil {
		t.Error("/metrics still served after Stop")
	}
}

func BenchmarkRoute(b *testing.B) {
	var pods []corev1.Pod
	for i := range 8 {
		pods = append(pods, pod("web-s"+strconv.Itoa(i), "web", stableHash, stableImage, true))
	}
	for i := range 2 {
		pods = append(pods, pod("web-c"+strconv.Itoa(i), "web-canary", canaryHash, canaryImage, true, istio.TrackLabel, istio.TrackCanary))
	}
	r := NewRouter(envoyTopology(b, pods, nil, headerRoute(exactHeader("x-canary", "true")), primaryRoute(25)))
	m := MustModel(DefaultBehaviour, map[string]Behaviour{canaryImage: {ErrorRate: 0.08, LatencyP50: 20 * time.Millisecond, LatencyP99: 450 * time.Millisecond}})
	tr, _ := Traffic{Classes: []Class{{Share: 0.1, Request: header("x-canary", "true")}}}.compiled()
	rng := rand.New(rand.NewPCG(1, 2))
	tel := NewTelemetry("meshsim", ns)
	var st Stats
	var reps []Report
	b.Run("route", func(b *testing.B) {
		for b.Loop() {
			_ = r.Route(rng, m, tr.pick(rng))
		}
	})
	b.Run("route+telemetry+stats", func(b *testing.B) {
		for b.Loop() {
			res := r.Route(rng, m, tr.pick(rng))
			reps = res.Reports(reps[:0])
			tel.Record(reps)
			st.Add(reps)
		}
	})
}
