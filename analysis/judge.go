package analysis

import (
	"strings"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/plan"
)

// MaxReasonLength bounds AnalysisResult.Reason, which ends up in status conditions and events.
const MaxReasonLength = 1024

// Judge turns a round's metric results into its verdict: Failed when any metric failed
// (Reason names them: "error-rate 8.2 > 1"); else Inconclusive when any metric was
// inconclusive (Reason says why, grouping metrics that share a cause); else Passed. A round
// without metrics is Inconclusive: a round never passes on missing evidence.
func Judge(results []rampv1.MetricResult) *plan.AnalysisResult {
	out := &plan.AnalysisResult{Metrics: results}
	if len(results) == 0 {
		out.Verdict = rampv1.VerdictInconclusive
		out.Reason = "no metrics to judge"
		return out
	}
	var failed []string
	var causes []string            // inconclusive messages, in order of first appearance
	names := map[string][]string{} // message → metric names
	for _, r := range results {
		switch r.Verdict {
		case rampv1.VerdictPassed:
		case rampv1.VerdictFailed:
			failed = append(failed, strings.TrimSpace(r.Name+" "+orDefault(r.Message, "failed")))
		default:
			msg := r.Message
			if r.Verdict != rampv1.VerdictInconclusive {
				msg = "unknown verdict " + r.Verdict
			}
			msg = orDefault(msg, "inconclusive")
			if _, ok := names[msg]; !ok {
				causes = append(causes, msg)
			}
			names[msg] = append(names[msg], r.Name)
		}
	}
	switch {
	case len(failed) > 0:
		out.Verdict = rampv1.VerdictFailed
		out.Reason = truncate(strings.Join(failed, "; "), MaxReasonLength)
	case len(causes) > 0:
		out.Verdict = rampv1.VerdictInconclusive
		parts := make([]string, len(causes))
		for i, c := range causes {
			parts[i] = strings.Join(names[c], ", ") + ": " + c
		}
		out.Reason = truncate(strings.Join(parts, "; "), MaxReasonLength)
	default:
		out.Verdict = rampv1.VerdictPassed
	}
	return out
}

func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max-len("…")], "") + "…"
}
