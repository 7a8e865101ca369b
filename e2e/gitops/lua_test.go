package gitops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Argo CD health statuses a script may return.
const (
	healthy     = "Healthy"
	progressing = "Progressing"
	degraded    = "Degraded"
	suspended   = "Suspended"
)

var argoHealthStatuses = map[string]bool{healthy: true, progressing: true, degraded: true, suspended: true, "Missing": true, "Unknown": true}

// repoFile reads a file of the repository (tests run in e2e/gitops).
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(rel)))
	must(t, err)
	return string(b)
}

// health is what an Argo CD health script returned.
type health struct{ status, message string }

func (h health) String() string { return fmt.Sprintf("%s (%q)", h.status, h.message) }

// runHealthLua runs an Argo CD resource health script the way Argo CD does (util/lua): a
// fresh state with only the package, base and table libraries (no string library unless
// useOpenLibs is set), a one second budget, the object as the global table obj, and the
// script's return value read as a table with status and message.
func runHealthLua(script string, obj *unstructured.Unstructured) (health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(script); err != nil {
		return health{}, err
	}
	tbl, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	st, ok := tbl.RawGetString("status").(lua.LString)
	if !ok || !argoHealthStatuses[string(st)] {
		return health{}, fmt.Errorf("hs.status = %v: not an Argo CD health status", tbl.RawGetString("status"))
	}
	h := health{status: string(st)}
	switch m := tbl.RawGetString("message").(type) {
	case lua.LString:
		h.message = string(m)
	case *lua.LNilType:
	default:
		return health{}, fmt.Errorf("hs.message is a %s", m.Type())
	}
	return h, nil
}

// toLua converts a decoded JSON value as Argo CD's decodeValue does: maps to tables, lists to
// arrays (from 1), numbers to Lua numbers; other types become nil.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, e := range v {
			t.RawSetH(lua.LString(k), toLua(L, e))
		}
		return t
	case []any:
		t := L.CreateTable(len(v), 0)
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	}
	return lua.LNil
}

// mustHealth runs a script and fails the test on a script error.
func mustHealth(t testing.TB, script string, obj *unstructured.Unstructured) health {
	t.Helper()
	h, err := runHealthLua(script, obj)
	if err != nil {
		t.Fatalf("health script on %s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	return h
}

// fixture builds an object from YAML.
func fixture(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	must(t, yaml.Unmarshal([]byte(doc), &u.Object))
	return u
}

// The argocd-cm snippets embed exactly the scripts the other tests run.
func TestArgoCDSnippetsEmbedTheScripts(t *testing.T) {
	for _, c := range []struct{ snippet, key, script string }{
		{"config/argocd/argocd-cm.yaml", "resource.customizations.health.ramp.dev_Rollout", "config/argocd/health.lua"},
		{"config/argocd/argocd-cm-deployment.yaml", "resource.customizations.health.apps_Deployment", "config/argocd/deployment-health.lua"},
	} {
		t.Run(filepath.Base(c.snippet), func(t *testing.T) {
			cm := fixture(t, repoFile(t, c.snippet))
			if cm.GetAPIVersion() != "v1" || cm.GetKind() != "ConfigMap" || cm.GetName() != "argocd-cm" || cm.GetNamespace() != "argocd" {
				t.Errorf("%s is %s %s %s/%s, want the v1 ConfigMap argocd/argocd-cm", c.snippet, cm.GetAPIVersion(), cm.GetKind(), cm.GetNamespace(), cm.GetName())
			}
			data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
			if len(data) != 1 {
				t.Errorf("%s has data keys %v, want only %s", c.snippet, keys(data), c.key)
			}
			got, ok := data[c.key]
			if !ok {
				t.Fatalf("%s lacks data key %s", c.snippet, c.key)
			}
			if want := repoFile(t, c.script); got != want {
				t.Errorf("%s's %s differs from %s:\n--- snippet\n%s\n--- script\n%s", c.snippet, c.key, c.script, got, want)
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The Rollout health check over hand-written statuses, including ones ramp only passes through
// briefly (a spec not yet observed, an object without status).
func TestRolloutHealthLuaFixtures(t *testing.T) {
	script := repoFile(t, "config/argocd/health.lua")
	cond := func(typ, status, reason, msg string) string {
		return fmt.Sprintf("\n    - {type: %s, status: %q, reason: %s, message: %q, lastTransitionTime: \"2026-01-01T00:00:00Z\"}", typ, status, reason, msg)
	}
	rollout := func(generation int, status string) string {
		return fmt.Sprintf("apiVersion: ramp.dev/v1alpha1\nkind: Rollout\nmetadata: {name: web, namespace: t, generation: %d}\nspec: {targetRef: {name: web}}\n%s", generation, status)
	}
	for _, c := range []struct {
		name string
		doc  string
		want health
	}{
		{"no status yet", rollout(1, ""), health{progressing, "waiting for ramp to observe the spec"}},
		{"new spec not observed", rollout(3, "status:\n  observedGeneration: 2\n  phase: Idle\n  message: managing\n  conditions:"+cond("Ready", "True", "Idle", "revision a serves all traffic")),
			health{progressing, "waiting for ramp to observe the spec"}},
		{"initializing", rollout(1, "status:\n  observedGeneration: 1\n  phase: Initializing\n  message: waiting for Deployment \"web\" to finish rolling out before adopting it\n  conditions:"+cond("Ready", "False", "Initializing", "x")+cond("Reconciling", "True", "Initializing", "x")),
			health{progressing, `waiting for Deployment "web" to finish rolling out before adopting it`}},
		{"idle", rollout(1, "status:\n  observedGeneration: 1\n  phase: Idle\n  message: managing Deployment \"web\"\n  conditions:"+cond("Ready", "True", "Idle", "managing Deployment \"web\" at revision a")),
			health{healthy, `managing Deployment "web" at revision a`}},
		{"progressing", rollout(2, "status:\n  observedGeneration: 2\n  phase: Progressing\n  message: \"step 1/3: 5% to canary\"\n  conditions:"+cond("Ready", "False", "Progressing", "step 1/3: 5% to canary")+cond("Reconciling", "True", "Progressing", "step 1/3: 5% to canary")),
			health{progressing, "step 1/3: 5% to canary"}},
		{"paused", rollout(2, "status:\n  observedGeneration: 2\n  phase: Paused\n  message: paused by spec.paused at step 1/3\n  conditions:"+cond("Ready", "False", "Paused", "paused by spec.paused at step 1/3")+cond("Reconciling", "True", "Paused", "paused")),
			health{suspended, "paused by spec.paused at step 1/3"}},
		{"waiting for a window", rollout(2, "status:\n  observedGeneration: 2\n  phase: WaitingForWindow\n  message: holding at 25% outside promotion windows\n  conditions:"+cond("Ready", "False", "WaitingForWindow", "holding")+cond("Reconciling", "True", "WaitingForWindow", "holding")),
			health{suspended, "holding at 25% outside promotion windows"}},
		{"promoting", rollout(2, "status:\n  observedGeneration: 2\n  phase: Promoting\n  message: all traffic to the canary\n  conditions:"+cond("Ready", "False", "Promoting", "x")+cond("Reconciling", "True", "Promoting", "x")),
			health{progressing, "all traffic to the canary"}},
		{"rolling back", rollout(2, "status:\n  observedGeneration: 2\n  phase: RollingBack\n  message: analysis failed 2 times\n  conditions:"+cond("Ready", "False", "RollingBack", "x")+cond("Reconciling", "True", "RollingBack", "x")),
			health{progressing, "analysis failed 2 times"}},
		{"succeeded", rollout(2, "status:\n  observedGeneration: 2\n  phase: Succeeded\n  message: revision b promoted\n  conditions:"+cond("Ready", "True", "Succeeded", "revision b promoted")),
			health{healthy, "revision b promoted"}},
		{"failed", rollout(2, "status:\n  observedGeneration: 2\n  phase: Failed\n  message: \"analysis failed 2 times: error-rate 8.3 > 1\"\n  conditions:"+cond("Ready", "False", "RolloutFailed", "analysis failed 2 times: error-rate 8.3 > 1")+cond("Stalled", "True", "RolloutFailed", "analysis failed 2 times: error-rate 8.3 > 1")),
			health{degraded, "analysis failed 2 times: error-rate 8.3 > 1"}},
		{"failed, reported by a ramp without Stalled", rollout(2, "status:\n  observedGeneration: 2\n  phase: Failed\n  message: aborted by kubectl ramp abort\n  conditions:"+cond("Ready", "False", "RolloutFailed", "aborted by kubectl ramp abort")),
			health{degraded, "aborted by kubectl ramp abort"}},
		{"stalled on the spec", rollout(1, "status:\n  observedGeneration: 1\n  message: \"spec.promotionWindows[0].schedule: bad\"\n  conditions:"+cond("Ready", "False", "InvalidSpec", "spec.promotionWindows[0].schedule: bad")+cond("Stalled", "True", "InvalidSpec", "spec.promotionWindows[0].schedule: bad")),
			health{degraded, "spec.promotionWindows[0].schedule: bad"}},
		{"stalled mid-promotion", rollout(2, "status:\n  observedGeneration: 2\n  phase: Promoting\n  message: revision c arrived while the target was being updated\n  conditions:"+cond("Ready", "False", "NewRevisionDuringPromotion", "revision c arrived")+cond("Stalled", "True", "NewRevisionDuringPromotion", "revision c arrived while the target was being updated")),
			health{degraded, "revision c arrived while the target was being updated"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := mustHealth(t, script, fixture(t, c.doc)); got != c.want {
				t.Errorf("health %s, want %s", got, c.want)
			}
		})
	}
}

// The optional Deployment check is Argo CD's built-in one, except that a paused Deployment
// whose replicas all run its template is Healthy.
func TestDeploymentHealthLuaFixtures(t *testing.T) {
	script := repoFile(t, "config/argocd/deployment-health.lua")
	dep := func(generation int, paused bool, replicas int, status string) string {
		return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: t, generation: %d}\nspec: {replicas: %d, paused: %t}\nstatus: %s", generation, replicas, paused, status)
	}
	for _, c := range []struct {
		name string
		doc  string
		want health
	}{
		// The paused cases, the only ones that differ from Argo CD's built-in check.
		{"paused, rolled out (ramp between rollouts)", dep(2, true, 3, "{observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3}"),
			health{healthy, "Deployment is paused with all 3 replicas on its current template"}},
		{"paused on an older template (ramp holding a new commit)", dep(3, true, 3, "{observedGeneration: 3, replicas: 3, updatedReplicas: 0, readyReplicas: 3, availableReplicas: 3}"),
			health{suspended, "Deployment is paused: 0 replicas on its current template"}},
		{"paused, spec not observed", dep(4, true, 3, "{observedGeneration: 3, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3}"),
			health{suspended, "Deployment is paused: 3 replicas on its current template"}},
		// Not paused: as built in.
		{"generation not observed", dep(2, false, 3, "{observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 3}"),
			health{progressing, "Waiting for rollout to finish: observed deployment generation less than desired generation"}},
		{"progress deadline exceeded", dep(2, false, 3, "{observedGeneration: 2, replicas: 3, updatedReplicas: 1, availableReplicas: 2, conditions: [{type: Progressing, status: \"False\", reason: ProgressDeadlineExceeded}]}"),
			health{degraded, `Deployment "web" exceeded its progress deadline`}},
		{"updating", dep(2, false, 3, "{observedGeneration: 2, replicas: 4, updatedReplicas: 1, availableReplicas: 3}"),
			health{progressing, "Waiting for rollout to finish: 1 out of 3 new replicas have been updated..."}},
		{"old replicas terminating", dep(2, false, 3, "{observedGeneration: 2, replicas: 4, updatedReplicas: 3, availableReplicas: 3}"),
			health{progressing, "Waiting for rollout to finish: 1 old replicas are pending termination..."}},
		{"not available yet", dep(2, false, 3, "{observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 2}"),
			health{progressing, "Waiting for rollout to finish: 2 of 3 updated replicas are available..."}},
		{"rolled out", dep(2, false, 3, "{observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3}"),
			health{healthy, ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := mustHealth(t, script, fixture(t, c.doc)); got != c.want {
				t.Errorf("health %s, want %s", got, c.want)
			}
		})
	}
}

// The runner is as strict as Argo CD's: no string library, a table with a known status.
func TestLuaRunnerIsAsStrictAsArgoCD(t *testing.T) {
	obj := fixture(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}")
	for _, bad := range []string{
		`hs = {}; hs.status = string.format("%s", "Healthy"); return hs`,
		`hs = {}; hs.status = ("Healthy"):lower(); return hs`,
		`hs = {}; hs.status = "Fine"; return hs`,
		`return "Healthy"`,
	} {
		if h, err := runHealthLua(bad, obj); err == nil {
			t.Errorf("script %q ran (%s); Argo CD would reject it", bad, h)
		}
	}
	if h, err := runHealthLua(`hs = {}; hs.status = "Healthy"; hs.message = obj.metadata.name .. " " .. 3; return hs`, obj); err != nil || h != (health{healthy, "x 3"}) {
		t.Errorf("valid script: %s %v", h, err)
	}
}
