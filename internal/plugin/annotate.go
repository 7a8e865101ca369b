package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/fieldowners"
)

// How requests are written.
//
// Server-side apply makes the applied object the complete statement of what a field manager
// wants: a field kubectl-ramp applied before and leaves out of the next apply is released,
// and removed when no other manager owns it. So every apply re-states the ramp.dev
// annotations kubectl-ramp owns now (read from managedFields), plus or minus the one that
// changes. The read version is sent as metadata.resourceVersion, which makes the apply
// conditional: if the Rollout changed in between (the controller writes status often) the
// apply fails with a conflict and is retried on a fresh read, so a concurrent request is never
// dropped.

// applyResult is the outcome of an annotation apply.
type applyResult struct {
	before, after *rampv1.Rollout
	// notes are warnings for the user (e.g. another manager also owned a released annotation).
	notes []string
}

// testHookBeforeApply runs between reading the Rollout and applying (tests race it).
var testHookBeforeApply func()

// maxApplyAttempts bounds retries of a conditional apply that lost a race.
const maxApplyAttempts = 8

// applyAnnotations sets the annotations in set and releases those in release (removing them),
// as field manager ramp-plugin, keeping the other annotations ramp-plugin owns.
func (cl *clients) applyAnnotations(ctx context.Context, name string, set map[string]string, release []string) (*applyResult, error) {
	for attempt := 1; ; attempt++ {
		u, before, err := cl.get(ctx, name)
		if err != nil {
			return nil, err
		}
		live := u.GetAnnotations()
		desired := map[string]string{}
		for _, k := range fieldowners.Applied(u.GetManagedFields(), FieldManager) {
			if v, ok := live[k]; ok {
				desired[k] = v
			}
		}
		for k, v := range set {
			desired[k] = v
		}
		for _, k := range release {
			delete(desired, k)
		}
		meta := map[string]any{
			"name":            name,
			"namespace":       cl.namespace,
			"resourceVersion": u.GetResourceVersion(),
		}
		if len(desired) > 0 {
			meta["annotations"] = desired
		}
		body, err := json.Marshal(map[string]any{
			"apiVersion": rampv1.GroupVersion.String(),
			"kind":       "Rollout",
			"metadata":   meta,
		})
		if err != nil {
			return nil, err
		}
		if testHookBeforeApply != nil {
			testHookBeforeApply()
		}
		out, err := cl.rollouts.Namespace(cl.namespace).Patch(ctx, name, types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
		if apierrors.IsConflict(err) && attempt < maxApplyAttempts {
			continue // the Rollout changed since we read it: read again
		}
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("rollout %q not found in namespace %q", name, cl.namespace)
			}
			return nil, fmt.Errorf("applying annotations to rollout %s/%s: %w", cl.namespace, name, err)
		}
		res := &applyResult{before: before}

		// A released annotation another manager also owns survives the apply: remove it with a
		// JSON merge patch, and say who else set it (they may set it again).
		for _, k := range release {
			if _, still := out.GetAnnotations()[k]; !still {
				continue
			}
			owners := annotationOwners(out.GetManagedFields(), k)
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{k: nil}}})
			out, err = cl.rollouts.Namespace(cl.namespace).Patch(ctx, name, types.MergePatchType, patch,
				metav1.PatchOptions{FieldManager: FieldManager})
			if err != nil {
				return nil, fmt.Errorf("removing annotation %s from rollout %s/%s: %w", k, cl.namespace, name, err)
			}
			if len(owners) > 0 {
				res.notes = append(res.notes, fmt.Sprintf("%s was also set by %s; removed it with a merge patch, but %s may set it again (is it in the Git manifest?)",
					k, strings.Join(owners, ", "), plural(len(owners), "that manager", "those managers")))
			}
		}
		if res.after, err = toRollout(out); err != nil {
			return nil, err
		}
		return res, nil
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// annotationOwners returns the managers, other than kubectl-ramp's apply, owning key.
func annotationOwners(mf []metav1.ManagedFieldsEntry, key string) []string {
	var out []string
	for _, e := range fieldowners.Annotation(mf, key) {
		if e.Manager != FieldManager || e.Operation != metav1.ManagedFieldsOperationApply {
			out = append(out, fmt.Sprintf("%s (%s)", e.Manager, e.Operation))
		}
	}
	return out
}
