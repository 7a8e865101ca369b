package gitops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plugin"
)

// How Flux's kustomize-controller applies a Git manifest, as far as ramp can tell:
//
//  1. Unless the manifest carries kustomize.toolkit.fluxcd.io/ssa: Merge, it takes over the
//     fields of "kubectl edits" (fluxcd/pkg/ssa PatchReplaceFieldsManagers): managedFields
//     entries whose manager name starts with "kubectl" (Apply or Update), or is
//     "before-first-apply" (Update), "kustomize-controller" (Update) or "helm" (Update) become
//     part of its own Apply entry. Fields it then owns but does not apply are removed by the
//     apply that follows: that is how Flux reverts kubectl edits.
//  2. It server-side applies the manifest as field manager kustomize-controller, forcing
//     conflicts, with its ownership labels added.
//
// Subresource entries (status, scale) are never taken over.

const (
	fluxManager    = "kustomize-controller"
	fluxSSAPolicy  = "kustomize.toolkit.fluxcd.io/ssa"
	fluxNameLabel  = "kustomize.toolkit.fluxcd.io/name"
	fluxNsLabel    = "kustomize.toolkit.fluxcd.io/namespace"
	fluxKustomized = "podinfo"
)

// fluxTakesOver reports whether Flux's cleanup takes over a managedFields entry.
func fluxTakesOver(e metav1.ManagedFieldsEntry) bool {
	if e.Subresource != "" {
		return false
	}
	switch e.Operation {
	case metav1.ManagedFieldsOperationApply:
		return strings.HasPrefix(e.Manager, "kubectl")
	case metav1.ManagedFieldsOperationUpdate:
		return strings.HasPrefix(e.Manager, "kubectl") || strings.HasPrefix(e.Manager, "before-first-apply") ||
			e.Manager == fluxManager || e.Manager == "helm"
	}
	return false
}

// gitRepo is the Git manifests Flux applies; a test commits by changing them.
type gitRepo struct {
	mu   sync.Mutex
	objs []*unstructured.Unstructured
}

// readGit builds examples/flux/apps/podinfo with kustomize, as kustomize-controller does, into
// namespace ns instead of podinfo (the Namespace object is left out), adds Flux's ownership
// labels, and lets edit adjust each object.
func readGit(t testing.TB, ns string, edit func(*unstructured.Unstructured)) *gitRepo {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", "..", "examples", "flux", "apps", "podinfo"))
	must(t, err)
	g := &gitRepo{}
	for _, r := range res.Resources() {
		b, err := r.MarshalJSON() // JSON numbers, as an API client decodes them
		must(t, err)
		u := &unstructured.Unstructured{}
		must(t, u.UnmarshalJSON(b))
		if u.GetKind() == "Namespace" {
			continue
		}
		u.SetNamespace(ns)
		labels := u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[fluxNameLabel], labels[fluxNsLabel] = fluxKustomized, "flux-system"
		u.SetLabels(labels)
		if edit != nil {
			edit(u)
		}
		g.objs = append(g.objs, u)
	}
	if len(g.objs) != 3 {
		t.Fatalf("examples/flux/apps/podinfo builds %d objects besides the Namespace, want the Deployment, Service and Rollout", len(g.objs))
	}
	return g
}

// commit changes the Git manifest of kind.
func (g *gitRepo) commit(kind string, change func(*unstructured.Unstructured)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, o := range g.objs {
		if o.GetKind() == kind {
			change(o)
		}
	}
}

func (g *gitRepo) manifests() []*unstructured.Unstructured {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*unstructured.Unstructured, len(g.objs))
	for i, o := range g.objs {
		out[i] = o.DeepCopy()
	}
	return out
}

// fluxApply applies the Git manifests as kustomize-controller does.
func (g *gitRepo) fluxApply(ctx context.Context) error {
	for _, o := range g.manifests() {
		if err := fluxApplyOne(ctx, o); err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

func fluxApplyOne(ctx context.Context, desired *unstructured.Unstructured) error {
	if !strings.EqualFold(desired.GetAnnotations()[fluxSSAPolicy], "merge") {
		if err := fluxTakeOver(ctx, desired); err != nil {
			return fmt.Errorf("taking over kubectl-managed fields: %w", err)
		}
	}
	return env.Client.Patch(ctx, desired, client.Apply, client.FieldOwner(fluxManager), client.ForceOwnership)
}

// fluxTakeOver merges the managedFields entries Flux takes over into its own Apply entry. The
// patch is conditional on the version read (a concurrent write, e.g. of the status, would
// otherwise lose its entry), so it is retried on a fresh read.
func fluxTakeOver(ctx context.Context, desired *unstructured.Unstructured) error {
	var err error
	for range 10 {
		if err = fluxTakeOverOnce(ctx, desired); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func fluxTakeOverOnce(ctx context.Context, desired *unstructured.Unstructured) error {
	live, err := getUnstructured(ctx, desired.GetAPIVersion(), desired.GetKind(), desired.GetNamespace(), desired.GetName())
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	var own *metav1.ManagedFieldsEntry
	var taken []metav1.ManagedFieldsEntry
	var kept []metav1.ManagedFieldsEntry
	for _, e := range live.GetManagedFields() {
		switch {
		case e.Manager == fluxManager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == "":
			own = e.DeepCopy()
		case fluxTakesOver(e):
			taken = append(taken, e)
		default:
			kept = append(kept, e)
		}
	}
	if len(taken) == 0 {
		return nil
	}
	for _, e := range taken {
		if own == nil {
			e := e
			e.Manager, e.Operation = fluxManager, metav1.ManagedFieldsOperationApply
			own = &e
			continue
		}
		merged, err := unionFields(own.FieldsV1, e.FieldsV1)
		if err != nil {
			return err
		}
		own.FieldsV1 = merged
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": live.GetResourceVersion()},
		{"op": "replace", "path": "/metadata/managedFields", "value": append(kept, *own)},
	})
	if err != nil {
		return err
	}
	return env.Client.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch))
}

func fieldSet(f *metav1.FieldsV1) (*fieldpath.Set, error) {
	s := &fieldpath.Set{}
	if f == nil || len(f.Raw) == 0 {
		return s, nil
	}
	return s, s.FromJSON(bytes.NewReader(f.Raw))
}

func unionFields(a, b *metav1.FieldsV1) (*metav1.FieldsV1, error) {
	sa, err := fieldSet(a)
	if err != nil {
		return nil, err
	}
	sb, err := fieldSet(b)
	if err != nil {
		return nil, err
	}
	raw, err := sa.Union(sb).ToJSON()
	return &metav1.FieldsV1{Raw: raw}, err
}

// owners lists the managers (manager/Operation[/subresource]) owning the field at path.
func owners(t testing.TB, u *unstructured.Unstructured, path ...any) []string {
	t.Helper()
	p, err := fieldpath.MakePath(path...)
	must(t, err)
	var out []string
	for _, e := range u.GetManagedFields() {
		s, err := fieldSet(e.FieldsV1)
		must(t, err)
		if s.Has(p) {
			o := e.Manager + "/" + string(e.Operation)
			if e.Subresource != "" {
				o += "/" + e.Subresource
			}
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out
}

// gitDiff is Argo CD's question: does the live object hold every value the Git manifest sets?
// It lists the paths where it does not (a subset comparison: the API server's defaults and
// other managers' fields are not a diff).
func gitDiff(want, have any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: live is %T, Git a map", path, have)}
		}
		var out []string
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing in the live object (Git: %v)", path, k, wv))
				continue
			}
			out = append(out, gitDiff(wv, hv, path+"."+k)...)
		}
		return out
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return []string{fmt.Sprintf("%s: live %v, Git %v", path, have, want)}
		}
		var out []string
		for i := range w {
			out = append(out, gitDiff(w[i], h[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	if !reflect.DeepEqual(number(want), number(have)) {
		return []string{fmt.Sprintf("%s: live %v, Git %v", path, have, want)}
	}
	return nil
}

func number(v any) any {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int:
		return float64(n)
	case int32:
		return float64(n)
	}
	return v
}

// What Flux's apply does to the fields ramp relies on. spec.paused on the target is applied by
// ramp's own field manager, which Flux never takes over: it stays. Request annotations on the
// Rollout are written by whoever asks; Flux reverts those of managers named kubectl* unless the
// Rollout in Git carries kustomize.toolkit.fluxcd.io/ssa: Merge, as the example does.
func TestFluxApplyKeepsRampFields(t *testing.T) {
	t.Parallel()
	if fluxTakesOver(metav1.ManagedFieldsEntry{Manager: plugin.FieldManager, Operation: metav1.ManagedFieldsOperationApply}) {
		t.Fatalf("Flux takes over fields of field manager %q: kubectl ramp requests would be reverted", plugin.FieldManager)
	}
	requests := []struct {
		manager string
		apply   bool // server-side apply (kubectl ramp) rather than a patch (kubectl annotate)
		key     string
	}{
		{plugin.FieldManager, true, rampv1.AnnotationPaused},      // kubectl ramp pause
		{"kubectl-annotate", false, rampv1.AnnotationPromote},     // kubectl annotate
		{"flux-client-side-apply", false, rampv1.AnnotationRetry}, // kubectl annotate --field-manager=flux-client-side-apply
	}
	for _, merge := range []bool{true, false} {
		t.Run(fmt.Sprintf("ssa Merge %t", merge), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := env.Namespace(t)
			git := readGit(t, ns, func(u *unstructured.Unstructured) {
				if u.GetKind() == "Deployment" {
					must(t, unstructured.SetNestedField(u.Object, int64(2), "spec", "replicas"))
				}
				if u.GetKind() == "Rollout" && !merge {
					u.SetAnnotations(nil)
				}
			})
			must(t, git.fluxApply(ctx))
			ro := &rampv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}
			settledIn(t, ro, rampv1.PhaseIdle)
			waitFor(t, "target paused", func(ctx context.Context) (bool, error) {
				d, err := getUnstructured(ctx, "apps/v1", "Deployment", ns, "podinfo")
				paused, _, _ := unstructured.NestedBool(d.Object, "spec", "paused")
				return err == nil && paused, err
			})
			// A kubectl edit Flux must revert, next to ramp's field.
			p := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"edited":"by-hand"}}}`))
			must(t, env.Client.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns}}, p, client.FieldOwner("kubectl-edit")))
			for _, r := range requests {
				if r.apply {
					pluginApply(t, ns, "podinfo", map[string]string{r.key: "true"})
				} else {
					annotateAs(t, r.manager, ro, r.key, ptr.To("token-1"))
				}
			}
			// ramp acts on the tokens (ignoring them: nothing to promote or retry) before Flux
			// comes round; the annotations must stay, or a pause would silently end.
			waitRollout(t, ro, "requests acknowledged", func(ro *rampv1.Rollout) bool {
				return ro.Status.HandledRequests.Promote == "token-1" && ro.Status.HandledRequests.Retry == "token-1"
			})

			must(t, git.fluxApply(ctx))
			must(t, git.fluxApply(ctx))

			d, err := getUnstructured(ctx, "apps/v1", "Deployment", ns, "podinfo")
			must(t, err)
			if paused, _, _ := unstructured.NestedBool(d.Object, "spec", "paused"); !paused || !slices.Equal(owners(t, d, "spec", "paused"), []string{"ramp/Apply"}) {
				t.Errorf("target spec.paused %t owned by %v after Flux's apply, want true owned by ramp alone", paused, owners(t, d, "spec", "paused"))
			}
			if _, edited := d.GetLabels()["edited"]; edited {
				t.Errorf("the kubectl edit survived: the emulation does not revert edits as Flux does")
			}
			u := mustGetRollout(t, ns, "podinfo")
			for _, r := range requests {
				_, kept := u.GetAnnotations()[r.key]
				op := metav1.ManagedFieldsOperationUpdate
				if r.apply {
					op = metav1.ManagedFieldsOperationApply
				}
				reverted := !merge && fluxTakesOver(metav1.ManagedFieldsEntry{Manager: r.manager, Operation: op})
				t.Logf("%s written by %s: kept=%t", r.key, r.manager, kept)
				if kept == reverted {
					t.Errorf("%s written by %s (%s): kept=%t, want %t", r.key, r.manager, op, kept, !reverted)
				}
				if kept && slices.Contains(owners(t, u, "metadata", "annotations", r.key), fluxManager+"/Apply") {
					t.Errorf("%s is owned by Flux: its next apply removes it", r.key)
				}
			}
		})
	}
}
