package istio

import (
	"strings"
	"testing"

	"github.com/ramp-dev/ramp/api/v1alpha1"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ro   *v1alpha1.Rollout
		want []string // substrings of the error; none: valid
	}{
		{"exact header", rollout(), nil},
		{"no header match", rollout(noHeaderMatch), nil},
		{"canary regex", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user", Regex: ptr("^(alice|bob)$")}
		}), nil},
		{"canary regex unclosed", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user", Regex: ptr("(unclosed")}
		}), []string{`spec.strategy.canary.headerMatch.regex: Invalid value: "(unclosed": not an RE2 regular expression`, "missing closing )"}},
		{"canary regex with a Perl lookahead", rollout(func(ro *v1alpha1.Rollout) {
			ro.Spec.Strategy.Canary.HeaderMatch = &v1alpha1.HeaderMatch{Name: "x-user", Regex: ptr("^(?!bot)")}
		}), []string{"spec.strategy.canary.headerMatch.regex", "invalid or unsupported Perl syntax"}},
		{"blue/green default preview", rollout(blueGreen(nil)), nil},
		{"blue/green preview regex invalid", rollout(blueGreen(&v1alpha1.HeaderMatch{Name: "x-env", Regex: ptr("[z-a]")})),
			[]string{"spec.strategy.blueGreen.previewHeader.regex", "invalid character class range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(&tc.ro.Spec).ToAggregate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got none", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
