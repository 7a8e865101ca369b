package plugin

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/dashboard"
	"github.com/ramp-dev/ramp/internal/plan"
)

// The dashboard's buttons are enabled when the verb would act.
func TestDashboardEnabledActions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		phase  string
		stage  string
		paused bool
		want   []dashboard.Action
	}{
		{"in progress", rampv1.PhaseProgressing, plan.StageHolding, false, []dashboard.Action{dashboard.Promote, dashboard.Abort, dashboard.Pause}},
		{"paused by kubectl ramp pause", rampv1.PhasePaused, plan.StageHolding, true, []dashboard.Action{dashboard.Promote, dashboard.Abort, dashboard.Resume}},
		{"already promoting, too late to abort", rampv1.PhasePromoting, plan.StageUpdatingStable, false, []dashboard.Action{dashboard.Pause}},
		{"failed", rampv1.PhaseFailed, "", false, []dashboard.Action{dashboard.Pause, dashboard.Retry}},
		{"idle", rampv1.PhaseIdle, "", false, []dashboard.Action{dashboard.Pause}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := &rampv1.Rollout{Status: rampv1.RolloutStatus{Phase: tc.phase, Stage: tc.stage}}
			if tc.paused {
				ro.Annotations = map[string]string{rampv1.AnnotationPaused: "true"}
			}
			if got := enabledActions(ro); !slices.Equal(got, tc.want) {
				t.Errorf("enabled %v, want %v", got, tc.want)
			}
		})
	}
}

// The dashboard describes a Rollout as status does: position, traffic, the step timeline.
func TestDashboardDescribe(t *testing.T) {
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{rampv1.AnnotationPromote: "t1"}},
		Spec: rampv1.RolloutSpec{Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{Steps: []rampv1.CanaryStep{
			{SetWeight: 10}, {SetWeight: 50, Pause: &rampv1.Pause{}}, {SetWeight: 100, Pause: &rampv1.Pause{Duration: &metav1.Duration{Duration: 2 * time.Minute}}},
		}}}, Paused: true},
	}
	midRollout(&ro.Status)
	d := (&dashboardCluster{}).Describe(ro)
	if d.Position != "step 2/3" || d.Traffic != "stable 50%, canary 50%" || d.Strategy != "canary, 3 steps" {
		t.Errorf("position %q, traffic %q, strategy %q", d.Position, d.Traffic, d.Strategy)
	}
	var steps []string
	for _, s := range d.Steps {
		steps = append(steps, strings.TrimSpace(fmt.Sprintf("%s %s %s %s %s", s.State, s.Label, s.Traffic, s.Notes, s.Here)))
	}
	want := []string{"done 1/3 10%", "current 2/3 50% pause until promoted Holding", "pending 3/3 100% pause 2m",
		"pending promote 100% then the target is updated and takes the traffic back"}
	if !slices.Equal(steps, want) {
		t.Errorf("steps\n%q\nwant\n%q", steps, want)
	}
	if !slices.Equal(d.Holds, []string{"paused by spec.paused in its manifest", "promote (ramp.dev/promote=t1) not yet acknowledged"}) {
		t.Errorf("holds %q", d.Holds)
	}
}

// A button runs the verb: the same annotation and acknowledgement, and the verb's own answer
// and exit code, in the Rollout's namespace whatever the dashboard's.
func TestDashboardActRunsTheVerbs(t *testing.T) {
	apiServer(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	fluxApply(ctx, t, ns, "web")
	setStatus(ctx, t, ns, "web", midRollout)

	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &strings.Builder{}, ErrOut: &strings.Builder{}}
	o := &Options{IOStreams: streams, ConfigFlags: genericclioptions.NewConfigFlags(true), Color: "never", Now: time.Now, Getenv: func(string) string { return "" }}
	o.ConfigFlags.KubeConfig = ptr.To(env.Kubeconfig)
	cl, err := o.clients()
	if err != nil {
		t.Fatal(err)
	}
	if cl.namespace == ns {
		t.Fatalf("the dashboard's clients are in %s: the test needs another namespace", ns)
	}
	d := &dashboardCluster{o: o, cl: cl}

	ack := fakeController(ctx, t, ns, "web", rampv1.AnnotationPaused, func(st *rampv1.RolloutStatus) {
		st.Phase, st.Message = rampv1.PhasePaused, "paused by kubectl ramp pause at step 2/3, 50% to canary"
	})
	out := d.Act(ctx, dashboard.Pause, ns, "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if out != (dashboard.Outcome{Code: 0, Message: "paused at step 2/3 (stable 50%, canary 50%)"}) {
		t.Errorf("pause: %+v", out)
	}
	wantAnnotations(t, getRollout(ctx, t, ns, "web"), map[string]string{rampv1.AnnotationPaused: "true"})

	ack = fakeController(ctx, t, ns, "web", rampv1.AnnotationPaused, func(st *rampv1.RolloutStatus) {
		st.Phase, st.Message = rampv1.PhaseProgressing, "step 2/3: 50% to canary; waiting for kubectl ramp promote"
	})
	out = d.Act(ctx, dashboard.Resume, ns, "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if out != (dashboard.Outcome{Code: 0, Message: "resumed at step 2/3: 50% to canary; waiting for kubectl ramp promote"}) {
		t.Errorf("resume: %+v", out)
	}

	ack = fakeController(ctx, t, ns, "web", rampv1.AnnotationPromote, func(st *rampv1.RolloutStatus) {
		st.CurrentStep, st.CanaryWeight, st.Message = 3, 100, "step 3/3: 100% to canary"
	})
	out = d.Act(ctx, dashboard.Promote, ns, "web")
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if out != (dashboard.Outcome{Code: 0, Message: "promoted: step 2/3 → 3/3"}) {
		t.Errorf("promote: %+v", out)
	}
	ro := getRollout(ctx, t, ns, "web")
	if tok := ro.Annotations[rampv1.AnnotationPromote]; tok == "" || tok != ro.Status.HandledRequests.Promote ||
		!contains(ownedBy(ro, FieldManager, metav1.ManagedFieldsOperationApply), rampv1.AnnotationPromote) {
		t.Errorf("promote token %q (acknowledged %q), owned by %s: %v", tok, ro.Status.HandledRequests.Promote, FieldManager,
			ownedBy(ro, FieldManager, metav1.ManagedFieldsOperationApply))
	}

	if out := d.Act(ctx, dashboard.Abort, ns, "nope"); out.Code != 1 || out.Message != fmt.Sprintf("rollout %q not found in namespace %q", "nope", ns) {
		t.Errorf("abort of a missing rollout: %+v", out)
	}
}
