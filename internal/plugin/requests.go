package plugin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/fieldowners"
	"github.com/ramp-dev/ramp/internal/plan"
)

// DefaultTimeout is how long a request waits for the controller's acknowledgement.
const DefaultTimeout = 5 * time.Second

// ignoredEventGrace is how long, after an acknowledgement that changed nothing, the plugin
// looks for the controller's RequestIgnored event (events are recorded after the status).
const ignoredEventGrace = 2 * time.Second

const gitopsNote = `The request is an annotation written with server-side apply as field manager "ramp-plugin",
and nothing else: Flux and Argo CD re-applying the Rollout from Git leave it alone, because
Git never sets it (Flux only manages fields it applied; Argo CD's three-way merge only removes
what it applied before), and it does not bump metadata.generation.`

// waitFlags are the flags of every request verb.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", true, "wait for the controller to acknowledge the request and say what it did")
	cmd.Flags().DurationVar(&w.timeout, "timeout", DefaultTimeout, "how long to wait for the acknowledgement")
}

// tokenRequest is a request carried by a token annotation and acknowledged in
// status.handledRequests.
type tokenRequest struct {
	verb       string // as typed: promote, promote --full, abort, retry
	annotation string
	handled    func(*rampv1.HandledRequests) string
	// outcome says whether the controller acted on the request, from the Rollout before the
	// request and after its acknowledgement, and what it did.
	outcome func(before, after *rampv1.Rollout) (bool, string)
	// ignoredBecause says why the controller will (or did) ignore the request, judging by the
	// Rollout before it; "" when it should act.
	ignoredBecause func(before *rampv1.Rollout) string
}

var (
	promoteRequest = tokenRequest{
		verb:       "promote",
		annotation: rampv1.AnnotationPromote,
		handled:    func(h *rampv1.HandledRequests) string { return h.Promote },
		outcome: func(before, after *rampv1.Rollout) (bool, string) {
			if before.Status.CurrentStep != after.Status.CurrentStep ||
				(after.Status.Phase == rampv1.PhasePromoting && before.Status.Phase != rampv1.PhasePromoting) {
				return true, "promoted: " + transition(before, after)
			}
			return false, ""
		},
		ignoredBecause: func(before *rampv1.Rollout) string {
			switch before.Status.Phase {
			case rampv1.PhasePromoting:
				return "already promoting revision " + before.Status.CanaryRevision
			case rampv1.PhaseWaitingForWindow:
				return "promote does not override promotion windows: use kubectl ramp promote --full"
			}
			return notInProgress(before)
		},
	}
	promoteFullRequest = tokenRequest{
		verb:       "promote --full",
		annotation: rampv1.AnnotationPromoteFull,
		handled:    func(h *rampv1.HandledRequests) string { return h.PromoteFull },
		outcome: func(before, after *rampv1.Rollout) (bool, string) {
			if after.Status.Phase == rampv1.PhasePromoting && before.Status.Phase != rampv1.PhasePromoting {
				return true, "promoted fully: " + transition(before, after) + " (remaining steps, analysis and promotion windows skipped)"
			}
			return false, ""
		},
		ignoredBecause: func(before *rampv1.Rollout) string {
			if before.Status.Phase == rampv1.PhasePromoting {
				return "already promoting revision " + before.Status.CanaryRevision
			}
			return notInProgress(before)
		},
	}
	abortRequest = tokenRequest{
		verb:       "abort",
		annotation: rampv1.AnnotationAbort,
		handled:    func(h *rampv1.HandledRequests) string { return h.Abort },
		outcome: func(before, after *rampv1.Rollout) (bool, string) {
			if before.Status.Phase == rampv1.PhaseFailed || before.Status.Phase == rampv1.PhaseRollingBack {
				return false, ""
			}
			switch after.Status.Phase {
			case rampv1.PhaseRollingBack:
				return true, fmt.Sprintf("abort acknowledged: rolling back (all traffic to stable revision %s, canary scaled to zero)", after.Status.StableRevision)
			case rampv1.PhaseFailed:
				return true, fmt.Sprintf("abort acknowledged: rolled back to stable revision %s", after.Status.StableRevision)
			}
			return false, ""
		},
		ignoredBecause: func(before *rampv1.Rollout) string {
			if before.Status.Phase == rampv1.PhasePromoting && (before.Status.Stage == plan.StageUpdatingStable ||
				before.Status.Stage == plan.StageSwitchingStableSubset || before.Status.Stage == plan.StageRoutingToStable) {
				return "too late to abort: the target is already being updated to the new revision"
			}
			return notInProgress(before)
		},
	}
	retryRequest = tokenRequest{
		verb:       "retry",
		annotation: rampv1.AnnotationRetry,
		handled:    func(h *rampv1.HandledRequests) string { return h.Retry },
		outcome: func(before, after *rampv1.Rollout) (bool, string) {
			if before.Status.Phase == rampv1.PhaseFailed && after.Status.Phase != rampv1.PhaseFailed && after.Status.CanaryRevision != "" {
				return true, fmt.Sprintf("retry acknowledged: restarting revision %s at %s", after.Status.CanaryRevision, Position(after))
			}
			return false, ""
		},
		ignoredBecause: func(before *rampv1.Rollout) string {
			if before.Status.Phase != rampv1.PhaseFailed {
				return fmt.Sprintf("nothing to retry: the rollout is %s, not Failed", orDash(before.Status.Phase))
			}
			return ""
		},
	}
)

func notInProgress(ro *rampv1.Rollout) string {
	if InProgress(ro.Status.Phase) {
		return ""
	}
	return fmt.Sprintf("no rollout in progress (phase %s): nothing to promote or abort", orDash(ro.Status.Phase))
}

// transition is "step 2/3 → 3/3", "step 3/3 → promotion", "preview → flip".
func transition(before, after *rampv1.Rollout) string {
	from, to := Position(before), Position(after)
	if strings.HasPrefix(from, "step ") && strings.HasPrefix(to, "step ") {
		to = strings.TrimPrefix(to, "step ")
	}
	return from + " → " + to
}

// pausedBy says what holds a rollout, "" when nothing does.
func pausedBy(ro *rampv1.Rollout) string {
	switch {
	case ro.Annotations[rampv1.AnnotationPaused] == "true":
		return pauseWriter(ro)
	case ro.Spec.Paused:
		return "spec.paused in its manifest"
	}
	return ""
}

// pauseWriter names who wrote the annotation ramp.dev/paused: kubectl ramp pause, or the
// field managers that did (kubectl annotate, a GitOps tool applying it from Git).
func pauseWriter(ro *rampv1.Rollout) string {
	writers := fieldowners.Managers(fieldowners.Annotation(ro.ManagedFields, rampv1.AnnotationPaused))
	if len(writers) == 0 || slices.Contains(writers, FieldManager) {
		return "kubectl ramp pause"
	}
	return fmt.Sprintf("the annotation %s (written by %s)", rampv1.AnnotationPaused, strings.Join(writers, ", "))
}

func newPromoteCommand(o *Options) *cobra.Command {
	var w waitFlags
	var full bool
	cmd := &cobra.Command{
		Use:   "promote NAME",
		Short: "Complete the current step now (or, with --full, skip to promotion)",
		Long: `Complete the current step of a rollout now: its pause and pending analysis are skipped and
the rollout moves to the next step (after the last step, to promotion). The controller acts
once the canary is ready for the current step's weight.

With --full, skip all remaining steps, analysis and promotion windows and promote at once.

A rollout that is not in progress ignores the request (exit code 3); a paused one keeps it
until resumed.

` + gitopsNote,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := promoteRequest
			if full {
				req = promoteFullRequest
			}
			cl, err := o.clients()
			if err != nil {
				return err
			}
			return o.runToken(cmd.Context(), cl, args[0], req, w)
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "skip all remaining steps, analysis and promotion windows")
	w.add(cmd)
	return cmd
}

func newAbortCommand(o *Options) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "abort NAME",
		Short: "Roll back the rollout in progress: all traffic to stable, canary scaled to zero",
		Long: `Abort the rollout in progress: all traffic goes back to the stable revision at once and the
canary is scaled to zero; the rollout ends Failed. The target Deployment keeps Git's new
template but stays paused on its old pods. The next Git change starts a fresh rollout;
` + "`kubectl ramp retry`" + ` rolls the same revision out again.

Works on a paused rollout too. Once the target is being updated to the new revision (the end
of promotion) it is too late to abort and the request is ignored (exit code 3).

` + gitopsNote,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.clients()
			if err != nil {
				return err
			}
			return o.runToken(cmd.Context(), cl, args[0], abortRequest, w)
		},
	}
	w.add(cmd)
	return cmd
}

func newRetryCommand(o *Options) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "retry NAME",
		Short: "Roll a failed revision out again from the first step",
		Long: `Retry a Failed rollout: the same revision (still the target's template in Git) is rolled
out again from the first step, with fresh analysis counts. Ignored (exit code 3) when the
rollout is not Failed.

` + gitopsNote,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.clients()
			if err != nil {
				return err
			}
			return o.runToken(cmd.Context(), cl, args[0], retryRequest, w)
		},
	}
	w.add(cmd)
	return cmd
}

// runToken writes a token request and waits for its acknowledgement. The dashboard's
// buttons run it too (dashboard.go).
func (o *Options) runToken(ctx context.Context, cl *clients, name string, req tokenRequest, w waitFlags) error {
	token := o.Now().UTC().Format(time.RFC3339Nano)
	res, err := cl.applyAnnotations(ctx, name, map[string]string{req.annotation: token}, nil)
	if err != nil {
		return err
	}
	before := res.before
	out := o.Out
	if old := before.Annotations[req.annotation]; old != "" && old != req.handled(&before.Status.HandledRequests) {
		fmt.Fprintf(o.ErrOut, "note: replaced the earlier %s request %s, which the controller had not acknowledged yet\n", req.verb, old)
	}
	recorded := fmt.Sprintf("%s request recorded on rollout %s/%s (%s=%s)", req.verb, cl.namespace, name, req.annotation, token)
	if !w.wait {
		fmt.Fprintf(out, "%s; not waiting for the controller\n", recorded)
		return nil
	}
	if by := pausedBy(before); by != "" && (req.annotation == rampv1.AnnotationPromote || req.annotation == rampv1.AnnotationPromoteFull) &&
		InProgress(before.Status.Phase) {
		return &ExitError{Code: ExitNotAcknowledged, Err: fmt.Errorf("%s, but the rollout is paused by %s: the controller acts on it once the rollout is resumed (kubectl ramp resume %s)", recorded, by, name)}
	}

	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	var after *rampv1.Rollout
	err = cl.watchRollout(wctx, name, func(ro *rampv1.Rollout) (bool, error) {
		after = ro
		return req.handled(&ro.Status.HandledRequests) == token, nil
	})
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		msg := fmt.Sprintf("%s, but the controller did not acknowledge it within %s: it acts on it when it next reconciles the rollout (is the ramp controller running?)", recorded, w.timeout)
		if why := req.ignoredBecause(before); why != "" {
			msg += "; it will most likely ignore it: " + why
		} else if after != nil && after.Status.Stage == plan.StageScalingCanary && req.annotation == rampv1.AnnotationPromote {
			msg += fmt.Sprintf("; the canary is still scaling for %s, and promote applies once the step's weight is routed", Position(after))
		}
		return &ExitError{Code: ExitNotAcknowledged, Err: errors.New(msg)}
	}
	if err != nil {
		return err
	}

	if acted, msg := req.outcome(before, after); acted {
		fmt.Fprintln(out, msg)
		return nil
	}
	// Acknowledged without visible effect: the controller ignored it (and says why in a
	// RequestIgnored event naming this request's token), or acted in a way the status does
	// not show yet.
	if why, ok := o.ignoredEvent(ctx, cl, after, req.annotation, token); ok {
		return &ExitError{Code: ExitIgnored, Err: fmt.Errorf("%s ignored by the controller: %s", req.verb, why)}
	}
	if why := req.ignoredBecause(before); why != "" {
		return &ExitError{Code: ExitIgnored, Err: fmt.Errorf("%s ignored by the controller: %s", req.verb, why)}
	}
	fmt.Fprintf(out, "%s acknowledged: %s is at %s\n", req.verb, name, atText(after))
	return nil
}

// ignoredEvent looks, for a short while, for the RequestIgnored event about the request
// annotation=token, and returns why the controller ignored it. Events about other requests,
// however close in time, are not this request's outcome.
func (o *Options) ignoredEvent(ctx context.Context, cl *clients, ro *rampv1.Rollout, annotation, token string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, ignoredEventGrace)
	defer cancel()
	for {
		evs, err := cl.eventsFor(ctx, ro)
		if err == nil {
			if why, ok := ignoredReason(evs, annotation, token); ok {
				return why, true
			}
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ignoredReason finds, among a Rollout's events, why the request annotation=token was ignored.
func ignoredReason(evs []Event, annotation, token string) (string, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Reason != "RequestIgnored" {
			continue
		}
		if why, ok := plan.IgnoredRequest(evs[i].Message, annotation, token); ok {
			return why, true
		}
	}
	return "", false
}

func newPauseCommand(o *Options) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "pause NAME",
		Short: "Hold the rollout where it is (annotation ramp.dev/paused: \"true\")",
		Long: `Hold a rollout where it is: no step advances and no analysis runs; traffic stays at the
current weights. Without a rollout in progress, the next one holds at its first step. Abort
still works on a paused rollout; promote waits until it is resumed.

Sets the annotation ramp.dev/paused: "true". ` + "`kubectl ramp resume`" + ` removes it.

` + gitopsNote,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.clients()
			if err != nil {
				return err
			}
			return o.runPause(cmd.Context(), cl, args[0], w)
		},
	}
	w.add(cmd)
	return cmd
}

func newResumeCommand(o *Options) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "resume NAME",
		Short: "Release a rollout held by kubectl ramp pause",
		Long: `Resume a rollout held by ` + "`kubectl ramp pause`" + `: removes the annotation ramp.dev/paused.

kubectl-ramp applies its annotations again without ramp.dev/paused, which releases its
ownership and makes the API server remove the field; if another field manager also set it,
it is removed with a JSON merge patch and the plugin names that manager. A rollout paused by
spec.paused in its manifest must be resumed in Git.

` + gitopsNote,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := o.clients()
			if err != nil {
				return err
			}
			return o.runResume(cmd.Context(), cl, args[0], w)
		},
	}
	w.add(cmd)
	return cmd
}

func (o *Options) runPause(ctx context.Context, cl *clients, name string, w waitFlags) error {
	res, err := cl.applyAnnotations(ctx, name, map[string]string{rampv1.AnnotationPaused: "true"}, nil)
	if err != nil {
		return err
	}
	before := res.before
	if before.Annotations[rampv1.AnnotationPaused] == "true" && before.Status.Phase == rampv1.PhasePaused {
		fmt.Fprintf(o.Out, "already paused at %s (%s)\n", Position(before), trafficText(before))
		return nil
	}
	ns := cl.namespace
	if !w.wait {
		fmt.Fprintf(o.Out, "pause recorded on rollout %s/%s (%s=\"true\"); not waiting for the controller\n", ns, name, rampv1.AnnotationPaused)
		return nil
	}
	switch before.Status.Phase {
	case rampv1.PhaseProgressing, rampv1.PhaseWaitingForWindow, rampv1.PhasePromoting, rampv1.PhasePaused:
	default:
		fmt.Fprintf(o.Out, "pause recorded: no rollout in progress (phase %s); the next rollout will hold at its first step until kubectl ramp resume %s\n",
			orDash(before.Status.Phase), name)
		return nil
	}
	ro, err := o.waitPhase(ctx, cl, name, w.timeout, func(ro *rampv1.Rollout) bool { return ro.Status.Phase == rampv1.PhasePaused })
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return &ExitError{Code: ExitNotAcknowledged, Err: fmt.Errorf("pause recorded on rollout %s/%s (%s=\"true\"), but the controller did not pause it within %s: it will when it next reconciles the rollout (is the ramp controller running?)",
			ns, name, rampv1.AnnotationPaused, w.timeout)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "paused at %s (%s)\n", Position(ro), trafficText(ro))
	return nil
}

func (o *Options) runResume(ctx context.Context, cl *clients, name string, w waitFlags) error {
	_, cur, err := cl.get(ctx, name)
	if err != nil {
		return err
	}
	if _, ok := cur.Annotations[rampv1.AnnotationPaused]; !ok {
		if cur.Spec.Paused {
			return fmt.Errorf("rollout %s/%s is paused by spec.paused in its manifest, not by kubectl ramp pause: set spec.paused to false in Git", cl.namespace, name)
		}
		fmt.Fprintf(o.Out, "not paused by kubectl ramp pause: nothing to resume (phase %s)\n", orDash(cur.Status.Phase))
		return nil
	}
	res, err := cl.applyAnnotations(ctx, name, nil, []string{rampv1.AnnotationPaused})
	if err != nil {
		return err
	}
	for _, n := range res.notes {
		fmt.Fprintln(o.ErrOut, "warning: "+n)
	}
	before := res.before
	if before.Spec.Paused {
		return fmt.Errorf("removed %s, but rollout %s/%s stays paused: spec.paused is true in its manifest; set it to false in Git", rampv1.AnnotationPaused, cl.namespace, name)
	}
	if !w.wait || before.Status.Phase != rampv1.PhasePaused {
		fmt.Fprintf(o.Out, "resumed: removed %s from rollout %s/%s (phase %s)\n", rampv1.AnnotationPaused, cl.namespace, name, orDash(before.Status.Phase))
		return nil
	}
	ro, err := o.waitPhase(ctx, cl, name, w.timeout, func(ro *rampv1.Rollout) bool { return ro.Status.Phase != rampv1.PhasePaused })
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return &ExitError{Code: ExitNotAcknowledged, Err: fmt.Errorf("removed %s from rollout %s/%s, but the controller did not resume it within %s: it will when it next reconciles the rollout (is the ramp controller running?)",
			rampv1.AnnotationPaused, cl.namespace, name, w.timeout)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "resumed at %s\n", atText(ro))
	return nil
}

// waitPhase waits until cond holds for the Rollout.
func (o *Options) waitPhase(ctx context.Context, cl *clients, name string, timeout time.Duration, cond func(*rampv1.Rollout) bool) (*rampv1.Rollout, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *rampv1.Rollout
	err := cl.watchRollout(wctx, name, func(ro *rampv1.Rollout) (bool, error) {
		last = ro
		return cond(ro), nil
	})
	return last, err
}
