package plan

import (
	"slices"
	"strings"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// A RequestIgnored event ends with the requests it is about, as annotation=token:
// "too late to abort: … [ramp.dev/abort=2026-05-04T10:00:00.5Z]". Two requests ignored close
// together get events that differ only there, so a client waiting on its own request (kubectl
// ramp) reports its own outcome, never another request's.

// ignored records a RequestIgnored event about the pending requests on annotations.
func (d *decider) ignored(why string, annotations ...string) {
	reqs := make([]string, 0, len(annotations))
	for _, a := range annotations {
		reqs = append(reqs, a+"="+d.obs.Requests.token(a))
	}
	d.event(true, "RequestIgnored", why+" ["+strings.Join(reqs, " ")+"]")
}

func (r Requests) token(annotation string) string {
	switch annotation {
	case rampv1.AnnotationPromote:
		return r.Promote
	case rampv1.AnnotationPromoteFull:
		return r.PromoteFull
	case rampv1.AnnotationAbort:
		return r.Abort
	case rampv1.AnnotationRetry:
		return r.Retry
	}
	return ""
}

// IgnoredRequest says whether a RequestIgnored event's message is about the request
// annotation=token, and why that request was ignored.
func IgnoredRequest(msg, annotation, token string) (why string, ok bool) {
	why, list, found := strings.Cut(msg, " [")
	list, closed := strings.CutSuffix(list, "]")
	if !found || !closed {
		return "", false
	}
	return why, strings.Contains(" "+list+" ", " "+annotation+"="+token+" ")
}

// taken lists, sorted, the annotations whose request this pass took.
func taken(took map[string]bool) []string {
	var out []string
	for a, ok := range took {
		if ok {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}
