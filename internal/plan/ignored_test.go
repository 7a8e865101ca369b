package plan

import (
	"strings"
	"testing"
	"time"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// Each RequestIgnored event names the requests it is about, so that two requests ignored in
// one pass (or close together) are told apart by their tokens.
func TestRequestIgnoredNamesItsRequests(t *testing.T) {
	cases := []struct {
		name string
		ro   *rampv1.Rollout
		obs  Observation
		// want maps annotation=token to the reason its event gives; other requests must not
		// match any event.
		want map[string]string
		not  []string
	}{
		{
			name: "idle: promote, promote --full and abort share one event",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), requests(Requests{Promote: "p1", PromoteFull: "f1", Abort: "a1"})),
			want: map[string]string{
				rampv1.AnnotationPromote + "=p1":     "no rollout in progress: nothing to promote or abort",
				rampv1.AnnotationPromoteFull + "=f1": "no rollout in progress: nothing to promote or abort",
				rampv1.AnnotationAbort + "=a1":       "no rollout in progress: nothing to promote or abort",
			},
			not: []string{rampv1.AnnotationPromote + "=f1", rampv1.AnnotationPromote + "=p", rampv1.AnnotationRetry + "=a1"},
		},
		{
			name: "idle: retry and abort get their own reasons",
			ro:   newRollout(),
			obs:  observe(t0, stableTarget(), requests(Requests{Abort: "a1", Retry: "t1"})),
			want: map[string]string{
				rampv1.AnnotationAbort + "=a1": "no rollout in progress: nothing to promote or abort",
				rampv1.AnnotationRetry + "=t1": "nothing to retry: the target runs the stable revision",
			},
		},
		{
			name: "updating stable: abort and promote in the same pass",
			ro:   newRollout(twoSteps, inRollout(promoting, updating, 2, 100, ago(time.Minute))),
			obs:  observe(t0, canaryReady(10), routing(100), requests(Requests{Promote: "2026-05-04T10:00:00.5Z", Abort: "2026-05-04T10:00:00.6Z"})),
			want: map[string]string{
				rampv1.AnnotationAbort + "=2026-05-04T10:00:00.6Z":   "too late to abort: the target is already being updated to the new revision",
				rampv1.AnnotationPromote + "=2026-05-04T10:00:00.5Z": "already promoting revision " + newRev,
			},
			not: []string{rampv1.AnnotationAbort + "=2026-05-04T10:00:00.5Z", rampv1.AnnotationPromote + "=2026-05-04T10:00:00.6Z"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(DefaultConfig(), tc.ro, tc.obs)
			var msgs []string
			for _, e := range d.Events {
				if e.Reason == "RequestIgnored" {
					msgs = append(msgs, e.Message)
				}
			}
			match := func(req string) []string {
				ann, tok, _ := strings.Cut(req, "=")
				var whys []string
				for _, m := range msgs {
					if why, ok := IgnoredRequest(m, ann, tok); ok {
						whys = append(whys, why)
					}
				}
				return whys
			}
			for req, why := range tc.want {
				if got := match(req); len(got) != 1 || got[0] != why {
					t.Errorf("%s: events %q give %q, want one saying %q", req, msgs, got, why)
				}
			}
			for _, req := range tc.not {
				if got := match(req); len(got) != 0 {
					t.Errorf("%s matches events %q", req, got)
				}
			}
		})
	}
}

func TestIgnoredRequest(t *testing.T) {
	cases := []struct {
		msg, annotation, token string
		why                    string
		ok                     bool
	}{
		{"too late [ramp.dev/abort=t1]", "ramp.dev/abort", "t1", "too late", true},
		{"too late [ramp.dev/abort=t1 ramp.dev/promote=t2]", "ramp.dev/promote", "t2", "too late", true},
		{"too late [ramp.dev/abort=t10]", "ramp.dev/abort", "t1", "", false},
		{"too late [ramp.dev/promote-full=t1]", "ramp.dev/promote", "t1", "", false},
		{"too late [ramp.dev/abort=t1]", "ramp.dev/retry", "t1", "", false},
		// From a controller before requests were named: no request can claim it.
		{"no rollout in progress: nothing to promote or abort", "ramp.dev/abort", "t1", "", false},
	}
	for _, tc := range cases {
		why, ok := IgnoredRequest(tc.msg, tc.annotation, tc.token)
		if ok != tc.ok || (ok && why != tc.why) {
			t.Errorf("IgnoredRequest(%q, %s=%s) = %q, %v; want %q, %v", tc.msg, tc.annotation, tc.token, why, ok, tc.why, tc.ok)
		}
	}
}
