// Package plugin is kubectl-ramp, the kubectl plugin for ramp Rollouts: it asks the
// controller to promote, abort, pause, resume or retry a rollout through annotations that Git
// sync leaves alone, waits for the controller's acknowledgement, and shows a rollout's progress.
package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// FieldManager is the server-side apply field manager of every request the plugin writes.
// FieldManager owns the request annotations. Its name must not start with "kubectl": Flux
// takes over and then removes fields of managers named kubectl* to revert hand edits.
const FieldManager = "ramp-plugin"

// Exit codes, beyond 0 (done) and 1 (error: nothing was written, or the API failed).
const (
	// ExitNotAcknowledged: the request is recorded on the Rollout but the controller did not
	// acknowledge it in time; it acts on it when it next reconciles the Rollout.
	ExitNotAcknowledged = 2
	// ExitIgnored: the controller acknowledged the request and ignored it (e.g. promote with
	// no rollout in progress); it emitted a RequestIgnored event.
	ExitIgnored = 3
)

// ExitError is an error with a specific exit code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit code for an error returned by the root command.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// Options are shared by every command.
type Options struct {
	genericiooptions.IOStreams
	ConfigFlags *genericclioptions.ConfigFlags

	// Color: auto (a terminal and NO_COLOR unset), always or never.
	Color string
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Getenv reads the environment; tests replace it.
	Getenv func(string) string
}

// colorOn says whether output to Out should be coloured.
func (o *Options) colorOn() bool {
	switch o.Color {
	case "always":
		return true
	case "never":
		return false
	}
	if o.Getenv("NO_COLOR") != "" {
		return false
	}
	return isTerminal(o.Out)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

const rootLong = `kubectl ramp drives ramp Rollouts (ramp.dev/v1alpha1) from the command line, and
from a live web dashboard it serves locally (kubectl ramp dashboard).

Requests (promote, abort, pause, resume, retry) are annotations on the Rollout, written with
server-side apply as field manager "ramp-plugin" and containing nothing else. Git manifests
never set these annotations, so Flux (server-side apply: it only manages fields it applied)
and Argo CD (three-way merge against its last-applied state) leave them alone when they
re-apply the Rollout, and annotations do not change metadata.generation. Each request carries
a fresh token (a timestamp); the controller acts on a token once and acknowledges it in
status.handledRequests, which the plugin waits for (--wait, --timeout).

Exit codes: 0 done; 1 error (nothing written, or resume of a rollout Git pauses); 2 request
recorded but not acknowledged in time (the controller acts on it when it next runs); 3
acknowledged but ignored by the controller (e.g. nothing to promote).`

// NewRootCommand returns the kubectl-ramp command tree writing to streams.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{
		IOStreams:   streams,
		ConfigFlags: genericclioptions.NewConfigFlags(true),
		Now:         time.Now,
		Getenv:      os.Getenv,
	}
	cmd := &cobra.Command{
		Use:   "kubectl-ramp",
		Short: "Promote, abort, pause, resume, retry and inspect ramp Rollouts (also in a local web dashboard)",
		Long:  rootLong,
		Example: `  kubectl ramp status podinfo --watch
  kubectl ramp promote podinfo
  kubectl ramp promote podinfo --full
  kubectl ramp abort podinfo
  kubectl ramp list -A
  kubectl ramp dashboard -A`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			// Shown as "kubectl ramp" in usage when run as a kubectl plugin.
			cobra.CommandDisplayNameAnnotation: "kubectl ramp",
		},
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.Color, "color", "auto", "colour output: auto (when stdout is a terminal and NO_COLOR is unset), always or never")

	cmd.AddCommand(
		newPromoteCommand(o),
		newAbortCommand(o),
		newPauseCommand(o),
		newResumeCommand(o),
		newRetryCommand(o),
		newStatusCommand(o),
		newListCommand(o),
		newDashboardCommand(o),
		newVersionCommand(o),
	)
	return cmd
}

// validateColor rejects an unknown --color value.
func (o *Options) validateColor() error {
	switch o.Color {
	case "auto", "always", "never":
		return nil
	}
	return fmt.Errorf("--color must be auto, always or never, not %q", o.Color)
}
