package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
)

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// frameSeparator separates --watch frames when stdout is not a terminal.
const frameSeparator = "---\n"

func newStatusCommand(o *Options) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a rollout's progress: steps, traffic, revisions, analysis, conditions, events",
		Long: `Show where a rollout is: its steps (✔ done, ▶ current, ✘ failed, · pending) with their weights
(blue/green: preview → flip), the current stable/canary weights, phase and message, the
stable and canary revisions, failed and inconclusive analysis checks against their limits,
the last analysis round (metric, value, stable value, threshold, verdict, age), conditions,
requests not yet acknowledged, and the 5 most recent events (newest last).

With --watch, redraw whenever the Rollout changes (clearing the screen on a terminal,
otherwise separating frames with "---") until interrupted. Colour only on a terminal with
NO_COLOR unset (see --color). Read-only.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.runStatus(cmd.Context(), args[0], watch)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw when the rollout changes, until interrupted")
	return cmd
}

func (o *Options) runStatus(ctx context.Context, name string, watch bool) error {
	cl, err := o.clients()
	if err != nil {
		return err
	}
	color := o.colorOn()
	frame := func(ro *rampv1.Rollout) string {
		events, err := cl.eventsFor(ctx, ro)
		if err != nil {
			events = []Event{{Type: "Warning", Reason: "EventsUnavailable", Message: err.Error(), Time: o.Now()}}
		}
		return RenderStatus(ro, events, o.Now(), color)
	}
	if !watch {
		_, ro, err := cl.get(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprint(o.Out, frame(ro))
		return nil
	}

	terminal := isTerminal(o.Out)
	var last string
	frames := 0
	err = cl.watchRollout(ctx, name, func(ro *rampv1.Rollout) (bool, error) {
		f := frame(ro)
		if f == last {
			return false, nil
		}
		last = f
		switch {
		case terminal:
			fmt.Fprint(o.Out, clearScreen)
		case frames > 0:
			fmt.Fprint(o.Out, frameSeparator)
		}
		fmt.Fprint(o.Out, f)
		frames++
		return false, nil
	})
	switch {
	case errors.Is(err, errDeleted):
		fmt.Fprintf(o.Out, "rollout %s/%s was deleted\n", cl.namespace, name)
		return nil
	case ctx.Err() != nil:
		return nil // interrupted: the normal end of --watch
	}
	return err
}

func newListCommand(o *Options) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List rollouts: name, phase, canary weight, step, age",
		Long: `List the rollouts in the namespace (or, with -A, in all namespaces): NAME, PHASE, WEIGHT (the
canary's share of traffic), STEP (current/total, "-" when no rollout runs) and AGE. Read-only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := o.clients()
			if err != nil {
				return err
			}
			ns := cl.namespace
			if all {
				ns = metav1.NamespaceAll
			}
			ul, err := cl.rollouts.Namespace(ns).List(cmd.Context(), metav1.ListOptions{})
			if err != nil {
				return err
			}
			items := make([]rampv1.Rollout, 0, len(ul.Items))
			for i := range ul.Items {
				ro, err := toRollout(&ul.Items[i])
				if err != nil {
					return err
				}
				items = append(items, *ro)
			}
			if len(items) == 0 {
				if all {
					fmt.Fprintln(o.ErrOut, "No rollouts found.")
				} else {
					fmt.Fprintf(o.ErrOut, "No rollouts found in namespace %s.\n", ns)
				}
				return nil
			}
			fmt.Fprint(o.Out, RenderList(items, o.Now(), all, o.colorOn()))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list rollouts in all namespaces")
	return cmd
}
