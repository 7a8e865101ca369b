package istio

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// strict decodes like istiod would, except that unknown fields are errors (Istio's own
// UnmarshalJSON allows them, so it would not catch a misspelt field).
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

func parseProtoDuration(s string) (time.Duration, error) {
	var d durationpb.Duration
	if err := strict.Unmarshal([]byte(strconv.Quote(s)), &d); err != nil {
		return 0, err
	}
	return d.AsDuration(), nil
}

// decodeSpec decodes the spec ramp sends for obj into msg with Istio's protobuf types, as
// istiod does.
func decodeSpec(t testing.TB, obj runtime.Object, msg proto.Message) {
	t.Helper()
	b, err := json.Marshal(wire(t, obj)["spec"])
	if err != nil {
		t.Fatal(err)
	}
	if err := strict.Unmarshal(b, msg); err != nil {
		t.Fatalf("%T spec does not decode into Istio's %T: %v\n%s", obj, msg, err, b)
	}
}

// renderCases are inputs covering every field ramp renders.
func renderCases() []struct {
	name string
	ro   *v1alpha1.Rollout
	r    Routing
} {
	return []struct {
		name string
		ro   *v1alpha1.Rollout
		r    Routing
	}{
		{"minimal 0%", rollout(noHeaderMatch), Routing{}},
		{"canary 5% header", rollout(), Routing{CanaryWeight: 5, HeaderRoute: true}},
		{"canary 25% header fault", rollout(retriesAndTimeout), Routing{CanaryWeight: 25, HeaderRoute: true, Fault: faultBoth()}},
		{"canary 100%", rollout(fullTrafficPolicy), Routing{CanaryWeight: 100}},
		{"everything", rollout(fullTrafficPolicy, retriesAndTimeout, func(ro *v1alpha1.Rollout) {
			ro.Spec.Service.Name = "web-svc"
			ro.Spec.Service.Hosts = []string{"web.example.com"}
			ro.Spec.Service.Gateways = []string{"istio-system/public", "mesh"}
		}), Routing{CanaryWeight: 5, HeaderRoute: true, Fault: faultBoth()}},
		{"blue/green preview regex", rollout(blueGreen(&v1alpha1.HeaderMatch{Name: "x-env", Regex: ptr("^gr(ee)?n$")})),
			Routing{HeaderRoute: true, Fault: &v1alpha1.FaultInjection{Abort: &v1alpha1.FaultAbort{Percentage: 50, HTTPStatus: 503}}}},
		{"blue/green default preview 100%", rollout(blueGreen(nil)), Routing{CanaryWeight: 100, HeaderRoute: true}},
	}
}

func TestDecodesIntoIstioTypes(t *testing.T) {
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			var vs networking.VirtualService
			decodeSpec(t, renderVS(t, tc.ro, tc.r), &vs)
			var dr networking.DestinationRule
			decodeSpec(t, mustDR(t, tc.ro), &dr)

			// Spot-check that values landed where Istio reads them.
			primary := vs.GetHttp()[len(vs.GetHttp())-1]
			if primary.GetName() != RoutePrimary || len(primary.GetRoute()) != 2 ||
				primary.GetRoute()[1].GetWeight() != max(0, min(100, tc.r.CanaryWeight)) ||
				primary.GetRoute()[0].GetWeight()+primary.GetRoute()[1].GetWeight() != 100 ||
				primary.GetRoute()[1].GetDestination().GetPort().GetNumber() != uint32(tc.ro.Spec.Service.Port) {
				t.Errorf("decoded primary route: %v", primary)
			}
			if primary.GetFault() != nil {
				t.Errorf("decoded primary route has a fault: %v", primary.GetFault())
			}
			if rt := tc.ro.Spec.Service.Retries; rt != nil {
				for _, h := range vs.GetHttp() {
					if h.GetRetries().GetPerTryTimeout().AsDuration() != rt.PerTryTimeout.Duration ||
						h.GetRetries().GetAttempts() != rt.Attempts || h.GetRetries().GetRetryOn() != rt.RetryOn ||
						h.GetTimeout().AsDuration() != tc.ro.Spec.Service.Timeout.Duration {
						t.Errorf("decoded retries/timeout of %s: %v %v", h.GetName(), h.GetRetries(), h.GetTimeout())
					}
				}
			}
			if f := tc.r.Fault; f != nil && f.Delay != nil && len(vs.GetHttp()) == 2 {
				d := vs.GetHttp()[0].GetFault().GetDelay()
				if d.GetFixedDelay().AsDuration() != f.Delay.FixedDelay.Duration || d.GetPercentage().GetValue() != f.Delay.Percentage {
					t.Errorf("decoded delay: %v", d)
				}
			}
			if f := tc.r.Fault; f != nil && f.Abort != nil && len(vs.GetHttp()) == 2 {
				a := vs.GetHttp()[0].GetFault().GetAbort()
				if a.GetHttpStatus() != f.Abort.HTTPStatus || a.GetPercentage().GetValue() != f.Abort.Percentage {
					t.Errorf("decoded abort: %v", a)
				}
			}
			if tp := tc.ro.Spec.Service.TrafficPolicy; tp != nil && tp.OutlierDetection != nil {
				od := dr.GetTrafficPolicy().GetOutlierDetection()
				cp := dr.GetTrafficPolicy().GetConnectionPool()
				if od.GetConsecutive_5XxErrors().GetValue() != uint32(*tp.OutlierDetection.Consecutive5xxErrors) ||
					od.GetBaseEjectionTime().AsDuration() != tp.OutlierDetection.BaseEjectionTime.Duration ||
					cp.GetTcp().GetConnectTimeout().AsDuration() != tp.ConnectionPool.TCP.ConnectTimeout.Duration ||
					cp.GetHttp().GetHttp2MaxRequests() != *tp.ConnectionPool.HTTP.HTTP2MaxRequests ||
					dr.GetTrafficPolicy().GetTls().GetMode().String() != tp.TLS.Mode ||
					dr.GetTrafficPolicy().GetTls().GetCredentialName() != tp.TLS.CredentialName {
					t.Errorf("decoded trafficPolicy: %v", dr.GetTrafficPolicy())
				}
			}
			if got := dr.GetSubsets(); len(got) != 2 || got[0].GetLabels()["pod-template-hash"] != "6d5f8b7c9" ||
				got[1].GetLabels()[TrackLabel] != TrackCanary {
				t.Errorf("decoded subsets: %v", got)
			}
		})
	}
}

// TestStrictDecodeCatchesTypos proves the decoding above would catch a wrong field name.
func TestStrictDecodeCatchesTypos(t *testing.T) {
	vs := wire(t, VirtualService(rollout(), Routing{HeaderRoute: true}))
	get(t, vs, "spec", "http", 0).(map[string]any)["retry"] = map[string]any{"attempts": int64(1)}
	b, _ := json.Marshal(vs["spec"])
	if err := strict.Unmarshal(b, &networking.VirtualService{}); err == nil {
		t.Fatal("unknown field http[0].retry decoded without error")
	}
	if _, err := parseProtoDuration("1m30s"); err == nil {
		t.Fatal(`"1m30s" parsed as a protobuf Duration; istiod would reject it`)
	}
}

// --- CRD schema ---

var crdOnce struct {
	sync.Once
	schemas map[string]map[string]any // kind -> v1 openAPIV3Schema.properties.spec
	err     error
}

// crdSpecSchemas loads the v1 spec schemas of Istio's VirtualService and DestinationRule
// CRDs from the istio.io/api module.
func crdSpecSchemas(t testing.TB) map[string]map[string]any {
	t.Helper()
	crdOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
		if err != nil {
			crdOnce.err = err
			return
		}
		b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml"))
		if err != nil {
			crdOnce.err = err
			return
		}
		crdOnce.schemas = map[string]map[string]any{}
		for _, doc := range strings.Split(string(b), "\n---\n") {
			if !strings.Contains(doc, "name: virtualservices.networking.istio.io") &&
				!strings.Contains(doc, "name: destinationrules.networking.istio.io") {
				continue
			}
			var crd struct {
				Spec struct {
					Names    struct{ Kind string }
					Versions []struct {
						Name   string
						Schema struct {
							OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
						}
					}
				}
			}
			if err := yaml.Unmarshal([]byte(doc), &crd); err != nil {
				crdOnce.err = err
				return
			}
			for _, v := range crd.Spec.Versions {
				if v.Name == "v1" {
					props, _ := v.Schema.OpenAPIV3Schema["properties"].(map[string]any)
					spec, _ := props["spec"].(map[string]any)
					crdOnce.schemas[crd.Spec.Names.Kind] = spec
				}
			}
		}
	})
	if crdOnce.err != nil {
		t.Skipf("cannot load Istio's CRDs from the istio.io/api module: %v", crdOnce.err)
	}
	if crdOnce.schemas[KindVirtualService] == nil || crdOnce.schemas[KindDestinationRule] == nil {
		t.Fatalf("v1 schemas not found in Istio's CRDs: %v", crdOnce.schemas)
	}
	return crdOnce.schemas
}

// checkSchema checks v against a structural schema: every field is known (the API server
// would otherwise prune it), types match, enums and bounds hold, and strings under a
// duration(self) CEL rule parse as durations of at least 1ms.
func checkSchema(t testing.TB, path string, v any, s map[string]any) {
	t.Helper()
	switch typ, _ := s["type"].(string); typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: %T, want object", path, v)
			return
		}
		props, _ := s["properties"].(map[string]any)
		addl, _ := s["additionalProperties"].(map[string]any)
		for k, fv := range m {
			switch ps, ok := props[k].(map[string]any); {
			case ok:
				checkSchema(t, path+"."+k, fv, ps)
			case addl != nil:
				checkSchema(t, path+"["+k+"]", fv, addl)
			default:
				t.Errorf("%s.%s: not in Istio's schema (the API server would prune it)", path, k)
			}
		}
		for _, r := range asList(s["required"]) {
			if _, ok := m[r.(string)]; !ok {
				t.Errorf("%s: required field %s missing", path, r)
			}
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			t.Errorf("%s: %T, want array", path, v)
			return
		}
		items, _ := s["items"].(map[string]any)
		for i, e := range l {
			checkSchema(t, path+"["+strconv.Itoa(i)+"]", e, items)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			t.Errorf("%s: %T, want string", path, v)
			return
		}
		if enum := asList(s["enum"]); enum != nil && !contains(enum, str) {
			t.Errorf("%s: %q not in %v", path, str, enum)
		}
		for _, rule := range asList(s["x-kubernetes-validations"]) {
			if r, _ := rule.(map[string]any)["rule"].(string); strings.Contains(r, "duration(self)") {
				if d, err := time.ParseDuration(str); err != nil || d < time.Millisecond {
					t.Errorf("%s: %q fails %s", path, str, r)
				}
			}
		}
	case "integer":
		n, ok := v.(int64)
		if !ok {
			t.Errorf("%s: %T, want int64", path, v)
			return
		}
		if lo, ok := s["minimum"].(float64); ok && float64(n) < lo {
			t.Errorf("%s: %d below %v", path, n, lo)
		}
		if hi, ok := s["maximum"].(float64); ok && float64(n) > hi {
			t.Errorf("%s: %d above %v", path, n, hi)
		}
	case "number":
		switch v.(type) {
		case float64, int64:
		default:
			t.Errorf("%s: %T, want number", path, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			t.Errorf("%s: %T, want boolean", path, v)
		}
	default:
		t.Errorf("%s: schema without a known type: %v", path, s)
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

func contains(l []any, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

func TestMatchesIstioCRDSchema(t *testing.T) {
	schemas := crdSpecSchemas(t)
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			checkSchema(t, "VirtualService.spec", wire(t, renderVS(t, tc.ro, tc.r))["spec"], schemas[KindVirtualService])
			checkSchema(t, "DestinationRule.spec", wire(t, mustDR(t, tc.ro))["spec"], schemas[KindDestinationRule])
		})
	}
}

// recorder is a testing.TB that records Errorf calls instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, format)
}

// TestSchemaCheckCatchesMistakes proves checkSchema would catch pruned fields, wrong number
// types and bad durations.
func TestSchemaCheckCatchesMistakes(t *testing.T) {
	schemas := crdSpecSchemas(t)
	for _, tc := range []struct {
		name string
		edit func(spec map[string]any)
	}{
		{"unknown field", func(spec map[string]any) { spec["http"].([]any)[0].(map[string]any)["retry"] = map[string]any{} }},
		{"int32 instead of int64", func(spec map[string]any) {
			spec["http"].([]any)[0].(map[string]any)["route"].([]any)[0].(map[string]any)["weight"] = int32(100)
		}},
		{"integer as string", func(spec map[string]any) {
			spec["http"].([]any)[0].(map[string]any)["fault"].(map[string]any)["abort"].(map[string]any)["httpStatus"] = "503"
		}},
		{"duration below 1ms", func(spec map[string]any) { spec["http"].([]any)[0].(map[string]any)["timeout"] = "0.000100s" }},
		{"[]string", func(spec map[string]any) { spec["hosts"] = []string{"web"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := wire(t, VirtualService(rollout(retriesAndTimeout), Routing{HeaderRoute: true, Fault: faultBoth()}))
			spec := vs["spec"].(map[string]any)
			tc.edit(spec)
			rec := &recorder{TB: t}
			checkSchema(rec, "VirtualService.spec", spec, schemas[KindVirtualService])
			if len(rec.errs) == 0 {
				t.Error("checkSchema found nothing wrong")
			}
		})
	}
}
