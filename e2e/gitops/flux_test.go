package gitops

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/normalize"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plugin"
)

// Flux's kustomize-controller applies a Kustomization's manifests with fluxcd/pkg/ssa's
// ResourceManager; fluxEngine drives the same library, configured as kustomize-controller's
// apply() configures it:
//
//   - the manifests are normalised (normalize.UnstructuredList: e.g. spec.paused: false and
//     other zero values the API server would drop are dropped);
//   - ApplyAllStaged: each object is dry-run applied first and applied only when the dry-run
//     differs from the live object (drift detection); the ChangeSet says created, configured
//     or unchanged per object;
//   - field-manager cleanup before applying (unless the object carries
//     kustomize.toolkit.fluxcd.io/ssa: Merge): managedFields entries of kubectl (Apply and
//     Update), before-first-apply and kustomize-controller (Update) become Flux's, so a field
//     they set that Git does not is removed: that is how Flux reverts kubectl edits;
//   - force (spec.force or the annotation kustomize.toolkit.fluxcd.io/force: Enabled): an
//     object whose dry-run fails on an immutable field is deleted and created again.
//
// Subresource entries (status, scale) are never taken over.

const (
	fluxManager    = "kustomize-controller"
	fluxGroup      = "kustomize.toolkit.fluxcd.io"
	fluxSSAPolicy  = "kustomize.toolkit.fluxcd.io/ssa"
	fluxNameLabel  = "kustomize.toolkit.fluxcd.io/name"
	fluxNsLabel    = "kustomize.toolkit.fluxcd.io/namespace"
	fluxKustomized = "podinfo"
)

// fluxTakesOver reports whether Flux's cleanup takes over a managedFields entry (the engine
// matches manager names by prefix): what TestFluxApplyKeepsRampFields expects of it.
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
	// commits counts the commits since readGit.
	commits int
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
	g.commits++
	for _, o := range g.objs {
		if o.GetKind() == kind {
			change(o)
		}
	}
}

// drop removes the manifests of kind from Git (a commit).
func (g *gitRepo) drop(kind string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.commits++
	g.objs = slices.DeleteFunc(g.objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
}

// head is the number of commits so far.
func (g *gitRepo) head() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.commits
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

// fluxApply applies the Git manifests as kustomize-controller does, without force.
func (g *gitRepo) fluxApply(ctx context.Context) error {
	_, err := g.fluxApplyWith(ctx, false)
	return err
}

// fluxApplyWith applies the Git manifests with Flux's engine (see fluxEngine), force as the
// Kustomization's spec.force, and returns its ChangeSet.
func (g *gitRepo) fluxApplyWith(ctx context.Context, force bool) (*ssa.ChangeSet, error) {
	objects := g.manifests()
	if err := normalize.UnstructuredList(objects); err != nil {
		return nil, err
	}
	rm := ssa.NewResourceManager(env.Client, nil, ssa.Owner{Field: fluxManager, Group: fluxGroup})
	return rm.ApplyAllStaged(ctx, objects, fluxApplyOptions(force))
}

// fluxApplyOptions are kustomize-controller's apply() options.
func fluxApplyOptions(force bool) ssa.ApplyOptions {
	opts := ssa.DefaultApplyOptions()
	opts.Force = force
	opts.ExclusionSelector = map[string]string{
		fluxGroup + "/reconcile": "disabled",
		fluxSSAPolicy:            "Ignore",
	}
	opts.IfNotPresentSelector = map[string]string{fluxSSAPolicy: "IfNotPresent"}
	opts.ForceSelector = map[string]string{fluxGroup + "/force": "Enabled"}
	opts.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{corev1.LastAppliedConfigAnnotation, fluxGroup + "/checksum", "fluxcd.io/sync-checksum"},
		Labels:      []string{"fluxcd.io/sync-gc-mark"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: fluxManager, OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{fluxSSAPolicy: "Merge"},
	}
	return opts
}

func fieldSet(f *metav1.FieldsV1) (*fieldpath.Set, error) {
	s := &fieldpath.Set{}
	if f == nil || len(f.Raw) == 0 {
		return s, nil
	}
	return s, s.FromJSON(bytes.NewReader(f.Raw))
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
