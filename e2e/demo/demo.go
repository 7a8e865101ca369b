// Package demo is ramp's scripted local story: a local cluster (real API server, controller
// manager, scheduler and KWOK fake nodes, so Deployments really roll out), ramp's controller
// in-process, and an app whose releases are "committed" by changing its image. The ramp-demo
// command runs it for people to watch; the package test runs it to prove it works.
package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/mesh/istio"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/testenv"
)

// Options tune the story.
type Options struct {
	// StepPause is how long each canary step holds. Defaults to 3s.
	StepPause time.Duration
	// Replicas of the app. Defaults to 4.
	Replicas int32
	// Timeout bounds each release. Defaults to 2m.
	Timeout time.Duration
}

// Row is one line of the summary: a state the rollout was in and for how long.
type Row struct {
	Release  string
	Phase    string
	Step     string
	Weight   int32
	Message  string
	At, Took time.Duration
}

// Result is what the story observed.
type Result struct {
	Rows []Row
	// Outcome per release: the phase each one ended in.
	Outcome map[string]string
}

const (
	ns      = "demo"
	appName = "podinfo"
)

// Run plays the story, printing progress to out. Cancelling ctx (Ctrl-C) stops everything and
// leaves no process behind.
func Run(ctx context.Context, out io.Writer, o Options) (*Result, error) {
	if o.StepPause == 0 {
		o.StepPause = 3 * time.Second
	}
	if o.Replicas == 0 {
		o.Replicas = 4
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	p := &printer{out: out, start: time.Now()}

	p.say("starting a local cluster: kube-apiserver, etcd, kube-controller-manager, kube-scheduler, KWOK fake nodes")
	p.say("(the first run builds them from the Go module proxy and caches them in ~/.cache/ramp: 15-25 minutes)")
	env, err := testenv.Start(ctx, testenv.Options{LocalCluster: true, Nodes: 2})
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	p.say("cluster ready; kubeconfig: %s", env.Kubeconfig)

	mctx, stopManager := context.WithCancel(ctx)
	defer stopManager()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	if _, err := manager.Setup(mctx, mgr, manager.Options{Concurrency: 2, Plan: plan.Config{SubsetSettle: time.Second}}); err != nil {
		return nil, err
	}
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- mgr.Start(mctx) }()
	p.say("ramp controller running in-process")

	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	s := &story{c: c, p: p, o: o, res: &Result{Outcome: map[string]string{}}}
	steps := []func(context.Context) error{s.deployV1, s.releaseV2, s.releaseV3}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return s.res, err
		}
		select {
		case err := <-mgrErr:
			return s.res, fmt.Errorf("controller stopped: %w", err)
		default:
		}
	}
	p.summary(s.res)
	return s.res, nil
}

type story struct {
	c   client.Client
	p   *printer
	o   Options
	res *Result
}

func (s *story) deployV1(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 1. Git: deploy %s v1 (%d replicas) with a Rollout: canary 5%% → 25%% → 100%%, %s per step", appName, s.o.Replicas, s.o.StepPause)
	lbl := map[string]string{"app": appName}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(s.o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: appName, Image: image("v1")}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{{Name: "http", Port: 9898, TargetPort: intstr.FromInt32(9898)}}},
	}
	pause := &rampv1.Pause{Duration: &metav1.Duration{Duration: s.o.StepPause}}
	ro := &rampv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns},
		Spec: rampv1.RolloutSpec{
			TargetRef: rampv1.TargetReference{Name: appName},
			Service:   rampv1.ServiceSpec{Port: 9898},
			Strategy: rampv1.Strategy{Canary: &rampv1.CanaryStrategy{
				Steps:       []rampv1.CanaryStep{{SetWeight: 5, Pause: pause}, {SetWeight: 25, Pause: pause}, {SetWeight: 100, Pause: pause}},
				HeaderMatch: &rampv1.HeaderMatch{Name: "x-canary", Exact: ptr.To("true")},
			}},
		},
	}
	for _, o := range []client.Object{d, svc, ro} {
		if err := s.c.Create(ctx, o); err != nil {
			return err
		}
	}
	_, err := s.watch(ctx, "v1", func(r *rampv1.Rollout) bool { return r.Status.Phase == rampv1.PhaseIdle })
	if err == nil {
		s.p.say("ramp adopted %s: Deployment paused, all traffic on its own pods (stable subset)", appName)
	}
	return err
}

func (s *story) releaseV2(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 2. Git: commit v2 (image %s)", image("v2"))
	if err := s.setImage(ctx, "v2"); err != nil {
		return err
	}
	r, err := s.watch(ctx, "v2", func(r *rampv1.Rollout) bool { return r.Status.Phase == rampv1.PhaseSucceeded })
	if err != nil {
		return err
	}
	s.p.say("v2 promoted: Deployment %q (same name) runs it; canary scaled to zero", appName)
	s.res.Outcome["v2"] = r.Status.Phase
	return nil
}

// releaseV3 plays a bad release caught by a person: at the first step they run
// `kubectl ramp abort`, which the plugin sends as the ramp.dev/abort annotation.
func (s *story) releaseV3(ctx context.Context) error {
	s.p.say("")
	s.p.say("== 3. Git: commit v3 (image %s); at 5%% an operator aborts (what `kubectl ramp abort` sends)", image("v3"))
	if err := s.setImage(ctx, "v3"); err != nil {
		return err
	}
	aborted := false
	r, err := s.watch(ctx, "v3", func(r *rampv1.Rollout) bool {
		if !aborted && r.Status.CanaryWeight == 5 && r.Status.Stage == plan.StageHolding {
			aborted = true
			patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, rampv1.AnnotationAbort, time.Now().UTC().Format(time.RFC3339Nano))))
			if err := s.c.Patch(ctx, r.DeepCopy(), patch); err != nil {
				s.p.say("abort failed: %v", err)
			}
		}
		return r.Status.Phase == rampv1.PhaseFailed
	})
	if err != nil {
		return err
	}
	s.p.say("v3 rolled back: all traffic on v2, canary scaled to zero; the next commit starts a fresh rollout")
	s.res.Outcome["v3"] = r.Status.Phase
	return nil
}

func (s *story) setImage(ctx context.Context, v string) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: ns}}
	patch := client.RawPatch(types.StrategicMergePatchType, []byte(fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, appName, image(v))))
	return s.c.Patch(ctx, d, patch)
}

// watch prints every change of the rollout's state (and the live VirtualService weights)
// until done reports true.
func (s *story) watch(ctx context.Context, release string, done func(*rampv1.Rollout) bool) (*rampv1.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	var last string
	var lastRow *Row
	for {
		ro := &rampv1.Rollout{}
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: appName}, ro); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("release %s: %w", release, ctx.Err())
			}
			return nil, err
		}
		stable, canary := s.liveWeights(ctx)
		st := ro.Status
		if st.Phase == "" {
			st.Phase = "(not seen yet)"
		}
		step := "-"
		if st.CurrentStep > 0 {
			step = fmt.Sprintf("%d/%d", st.CurrentStep, st.Steps)
		}
		key := fmt.Sprint(st.Phase, step, st.CanaryWeight, stable, canary, st.Stage)
		if key != last {
			last = key
			now := time.Since(s.p.start)
			if lastRow != nil {
				lastRow.Took = now - lastRow.At
			}
			s.res.Rows = append(s.res.Rows, Row{Release: release, Phase: st.Phase, Step: step, Weight: st.CanaryWeight, Message: st.Message, At: now})
			lastRow = &s.res.Rows[len(s.res.Rows)-1]
			vs := "no VirtualService yet"
			if stable >= 0 {
				vs = fmt.Sprintf("VirtualService stable %3d%% / canary %3d%%", stable, canary)
			}
			s.p.say("%-4s %-16s step %-4s %s  %s", release, st.Phase, step, vs, st.Message)
		}
		if done(ro) {
			if lastRow != nil {
				lastRow.Took = time.Since(s.p.start) - lastRow.At
			}
			return ro, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("release %s did not finish within %s (phase %s: %s)", release, s.o.Timeout, st.Phase, st.Message)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *story) liveWeights(ctx context.Context) (stable, canary int32) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(istio.APIVersion)
	u.SetKind(istio.KindVirtualService)
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: appName}, u); err != nil {
		return -1, -1
	}
	r, err := istio.ObservedRouting(u)
	if err != nil {
		return -1, -1
	}
	return 100 - r.CanaryWeight, r.CanaryWeight
}

func image(v string) string {
	return "ghcr.io/stefanprodan/podinfo:" + map[string]string{"v1": "6.7.0", "v2": "6.7.1", "v3": "6.8.0"}[v]
}

type printer struct {
	out   io.Writer
	start time.Time
}

func (p *printer) say(format string, args ...any) {
	if format == "" {
		fmt.Fprintln(p.out)
		return
	}
	fmt.Fprintf(p.out, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *printer) summary(r *Result) {
	fmt.Fprintln(p.out)
	fmt.Fprintln(p.out, "Summary")
	fmt.Fprintf(p.out, "%-8s %-17s %-5s %7s %8s  %s\n", "release", "phase", "step", "weight", "took", "message")
	fmt.Fprintln(p.out, strings.Repeat("-", 100))
	for _, row := range r.Rows {
		msg := row.Message
		if len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		fmt.Fprintf(p.out, "%-8s %-17s %-5s %6d%% %7.1fs  %s\n", row.Release, row.Phase, row.Step, row.Weight, row.Took.Seconds(), msg)
	}
}
