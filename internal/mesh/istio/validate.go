package istio

import (
	"regexp"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

// Validate checks the strings ramp copies into Istio objects that admission cannot: those
// Istio checks with Go code CEL has no equivalent of. Everything else Istio checks is a CEL or
// OpenAPI rule of the CRD. Today that is the header-match regex, which istiod compiles with
// Go's regexp (RE2) and rejects when it does not compile. Each error names its field.
func Validate(spec *v1alpha1.RolloutSpec) field.ErrorList {
	var errs field.ErrorList
	s := field.NewPath("spec", "strategy")
	if c := spec.Strategy.Canary; c != nil {
		errs = append(errs, validateHeaderMatch(c.HeaderMatch, s.Child("canary", "headerMatch"))...)
	}
	if b := spec.Strategy.BlueGreen; b != nil {
		errs = append(errs, validateHeaderMatch(b.PreviewHeader, s.Child("blueGreen", "previewHeader"))...)
	}
	return errs
}

func validateHeaderMatch(hm *v1alpha1.HeaderMatch, p *field.Path) field.ErrorList {
	if hm == nil || hm.Regex == nil {
		return nil
	}
	if _, err := regexp.Compile(*hm.Regex); err != nil {
		return field.ErrorList{field.Invalid(p.Child("regex"), *hm.Regex,
			"not an RE2 regular expression, which Istio requires: "+err.Error())}
	}
	return nil
}
