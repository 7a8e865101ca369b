package fieldowners

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func entry(manager string, op metav1.ManagedFieldsOperationType, sub, raw string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: sub, FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(raw)}}
}

func TestOwnersOfFields(t *testing.T) {
	const apply, update = metav1.ManagedFieldsOperationApply, metav1.ManagedFieldsOperationUpdate
	mf := []metav1.ManagedFieldsEntry{
		entry("ramp-plugin", apply, "", `{"f:metadata":{"f:annotations":{".":{},"f:ramp.dev/paused":{},"f:ramp.dev/promote":{}}}}`),
		entry("kubectl-annotate", update, "", `{"f:metadata":{"f:annotations":{"f:ramp.dev/paused":{}}}}`),
		entry("ramp", apply, "", `{"f:spec":{"f:http":{}}}`),
		entry("ramp", update, "status", `{"f:status":{"f:phase":{}},"f:metadata":{"f:annotations":{"f:ramp.dev/paused":{}}}}`),
		entry("broken", update, "", `not json`),
		{Manager: "empty", Operation: update},
	}
	managers := func(es []metav1.ManagedFieldsEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Manager)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"annotation owners, status writers excluded", managers(Annotation(mf, "ramp.dev/paused")), []string{"ramp-plugin", "kubectl-annotate"}},
		{"annotation nobody owns", managers(Annotation(mf, "ramp.dev/abort")), nil},
		{"an atomic list owned as a leaf", managers(Entries(mf, "spec", "http")), []string{"ramp"}},
		{"a map owned through its children", managers(Entries(mf, "metadata", "annotations")), []string{"ramp-plugin", "kubectl-annotate"}},
		{"annotations applied by a manager", Applied(mf, "ramp-plugin"), []string{"ramp.dev/paused", "ramp.dev/promote"}},
		{"Update is not apply", Applied(mf, "kubectl-annotate"), nil},
		{"annotations of an entry", Annotations(mf[1]), []string{"ramp.dev/paused"}},
		{"an unparsable entry owns nothing", Annotations(mf[4]), nil},
		{"an entry without fields owns nothing", Annotations(mf[5]), nil},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
