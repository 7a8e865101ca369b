package analysis

import (
	"context"
	"net/http"
	"strings"
	"testing"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// A Rollout naming an address the platform did not allow gets no connection at all.
func TestAnalyzeContactsOnlyAllowedEndpoints(t *testing.T) {
	addr, accepted := testenv.CountConnections(t)

	a := NewAnalyzer(WithAllowedEndpoints(endpoints.MustParse("http://prometheus.istio-system:9090")))
	ro := rollout("http://"+addr, rampv1.Metric{Name: "m", Query: "vector(1)", ThresholdRange: maxR(2)})
	got := a.Analyze(context.Background(), ro)
	if got.Verdict != rampv1.VerdictInconclusive || !strings.Contains(got.Reason, "not an analysis endpoint the platform allows") {
		t.Errorf("%s %q", got.Verdict, got.Reason)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections to an endpoint that is not allowed", n)
	}
}

// What an endpoint answers never reaches the round's results, which go to status, events and
// Slack: an error class and a status code are enough.
func TestAnalyzeCopiesNoAnswerIntoResults(t *testing.T) {
	const secret = "SECRET-BODY-d41d8cd98f00b204"
	for name, answer := range map[string]func(string) (int, string){
		"500 text":       func(string) (int, string) { return http.StatusInternalServerError, "internal: " + secret },
		"401 html":       func(string) (int, string) { return http.StatusUnauthorized, "<html>" + secret + "</html>" },
		"400 api error":  func(string) (int, string) { return http.StatusBadRequest, promError("bad_data", secret) },
		"200 api error":  func(string) (int, string) { return http.StatusOK, promError("execution", secret) },
		"200 not an API": func(string) (int, string) { return http.StatusOK, `{"leak":"` + secret + `"}` },
		"200 garbage":    func(string) (int, string) { return http.StatusOK, secret },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeProm(t, answer)
			got := NewAnalyzer().Analyze(context.Background(), rollout(f.URL, rampv1.Metric{Name: "m", Query: "vector(1)", ThresholdRange: maxR(2)}))
			texts := []string{got.Reason}
			for _, m := range got.Metrics {
				texts = append(texts, m.Message, m.Value, m.StableValue)
			}
			for _, s := range texts {
				if strings.Contains(s, secret) {
					t.Errorf("the endpoint's answer reached the results: %q", s)
				}
			}
			if got.Verdict != rampv1.VerdictInconclusive {
				t.Errorf("verdict %s", got.Verdict)
			}
		})
	}
}
