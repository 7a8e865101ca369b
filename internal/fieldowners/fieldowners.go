// Package fieldowners reads an object's managedFields: which field managers own a field, and
// which annotations a manager owns. The controller (who paused a rollout, whether ramp owns a
// VirtualService's routes) and kubectl-ramp (which annotations it re-states) share it, so the
// two never disagree about who wrote what.
package fieldowners

import (
	"bytes"
	"slices"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// fields decodes an entry's field set; nil when it has none or it does not parse.
func fields(e metav1.ManagedFieldsEntry) *fieldpath.Set {
	if e.FieldsV1 == nil {
		return nil
	}
	s := &fieldpath.Set{}
	if err := s.FromJSON(bytes.NewReader(e.FieldsV1.Raw)); err != nil {
		return nil
	}
	return s
}

// Owns reports whether e owns the field at path (or, for a map or list, a field under it).
func Owns(e metav1.ManagedFieldsEntry, path ...string) bool {
	s := fields(e)
	if s == nil {
		return false
	}
	return s.Has(fieldpath.MakePathOrDie(toAny(path)...)) || !under(s, path...).Empty()
}

// under returns the fields of s below path, with the path removed.
func under(s *fieldpath.Set, path ...string) *fieldpath.Set {
	for _, name := range path {
		s = s.WithPrefix(fieldpath.PathElement{FieldName: &name})
	}
	return s
}

// Entries returns the entries of mf that own the field at path, status writers excluded.
func Entries(mf []metav1.ManagedFieldsEntry, path ...string) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, e := range mf {
		if e.Subresource == "" && Owns(e, path...) {
			out = append(out, e)
		}
	}
	return out
}

// Annotation returns the entries of mf that own the annotation key.
func Annotation(mf []metav1.ManagedFieldsEntry, key string) []metav1.ManagedFieldsEntry {
	return Entries(mf, "metadata", "annotations", key)
}

// Managers returns the names of the managers of entries, each once, in order.
func Managers(entries []metav1.ManagedFieldsEntry) []string {
	var out []string
	for _, e := range entries {
		if !slices.Contains(out, e.Manager) {
			out = append(out, e.Manager)
		}
	}
	return out
}

// Annotations returns, sorted, the annotation keys e owns.
func Annotations(e metav1.ManagedFieldsEntry) []string {
	s := fields(e)
	if s == nil {
		return nil
	}
	var out []string
	under(s, "metadata", "annotations").Iterate(func(p fieldpath.Path) {
		if len(p) == 1 && p[0].FieldName != nil {
			out = append(out, *p[0].FieldName)
		}
	})
	sort.Strings(out)
	return out
}

// Applied returns the annotation keys manager owns through server-side apply on the main
// resource (not through Update, not on a subresource).
func Applied(mf []metav1.ManagedFieldsEntry, manager string) []string {
	for _, e := range mf {
		if e.Manager == manager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == "" {
			return Annotations(e)
		}
	}
	return nil
}

func toAny(path []string) []any {
	out := make([]any, len(path))
	for i, p := range path {
		out[i] = p
	}
	return out
}
