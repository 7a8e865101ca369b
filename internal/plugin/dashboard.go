package plugin

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rampv1 "github.com/ramp-dev/ramp/api/v1alpha1"
	"github.com/ramp-dev/ramp/internal/dashboard"
)

// DefaultDashboardAddress is where kubectl ramp dashboard listens by default: loopback only.
const DefaultDashboardAddress = "127.0.0.1:3100"

func newDashboardCommand(o *Options) *cobra.Command {
	var address string
	var all bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a live web dashboard of the rollouts on localhost",
		Long: `Serve a web dashboard of the rollouts in the namespace (or, with -A, in all namespaces) on
--address, and print its URL. It runs here, with your kubeconfig and your permissions: nothing
is installed in the cluster, and the page loads nothing from the internet.

The list shows each rollout's phase, canary weight and step, live: the dashboard watches the
Rollouts and pushes every change to the page. A rollout's page shows its step timeline, its
weight over time, each analysis metric's values against its threshold over time, its
conditions and events. The charts hold what the dashboard has seen since it started: the API
server keeps only a rollout's current status and last analysis round.

The promote, pause, resume, abort and retry buttons run the verbs of the same name, exactly
as on the command line (same annotations, field manager "ramp-plugin", acknowledgement), and
show their answer. Abort asks for confirmation.

The URL carries a token for this run: the page trades it for a cookie, and every request
needs it, so other sites and other users of this machine cannot use the dashboard (and your
credentials). Keep --address on loopback unless you know who can reach it.`,
		Example: `  kubectl ramp dashboard -A
  kubectl ramp dashboard -n shop --address 127.0.0.1:0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.runDashboard(cmd.Context(), address, all)
		},
	}
	cmd.Flags().StringVar(&address, "address", DefaultDashboardAddress, "host:port to listen on (port 0: any free port)")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "show rollouts in all namespaces")
	return cmd
}

func (o *Options) runDashboard(ctx context.Context, address string, all bool) error {
	cl, err := o.clients()
	if err != nil {
		return err
	}
	ns := cl.namespace
	if all {
		ns = metav1.NamespaceAll
	}
	srv, err := dashboard.New(dashboard.Options{
		Dynamic: cl.dynamic, Namespace: ns, Cluster: &dashboardCluster{o: o, cl: cl}, Now: o.Now,
		Logf: func(format string, args ...any) { fmt.Fprintf(o.ErrOut, format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("--address: %w", err)
	}
	defer ln.Close()
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !net.ParseIP(host).IsLoopback() {
		fmt.Fprintf(o.ErrOut, "warning: listening on %s, not loopback: whoever can reach it and holds the URL acts with your credentials\n", ln.Addr())
	}
	scope := "namespace " + ns
	if all {
		scope = "all namespaces"
	}
	fmt.Fprintf(o.Out, "ramp dashboard (%s): %s\n", scope, srv.URL(ln))
	fmt.Fprintln(o.ErrOut, "Ctrl-C stops it.")
	return srv.Serve(ctx, ln)
}

// dashboardCluster answers the dashboard with the plugin's own code: Describe with what
// status shows, Events with status's event reading, and Act with the request verbs.
type dashboardCluster struct {
	o  *Options
	cl *clients
}

func (d *dashboardCluster) Describe(ro *rampv1.Rollout) dashboard.Description {
	desc := dashboard.Description{Position: Position(ro), Strategy: strategyText(&ro.Spec), Traffic: trafficText(ro)}
	for _, l := range stepLines(ro) {
		desc.Steps = append(desc.Steps, dashboard.Step{State: l.mark.String(), Label: l.label, Traffic: l.traffic, Notes: l.notes, Here: l.here})
	}
	if by := pausedBy(ro); by != "" {
		desc.Holds = append(desc.Holds, "paused by "+by)
	}
	desc.Holds = append(desc.Holds, pendingRequests(ro)...)
	desc.Enabled = enabledActions(ro)
	return desc
}

// enabledActions are the buttons worth pressing: the others' requests would be ignored
// (promote, abort, retry), or change nothing (pause, resume).
func enabledActions(ro *rampv1.Rollout) []dashboard.Action {
	var out []dashboard.Action
	phase := ro.Status.Phase
	if InProgress(phase) {
		if promoteRequest.ignoredBecause(ro) == "" {
			out = append(out, dashboard.Promote)
		}
		if abortRequest.ignoredBecause(ro) == "" {
			out = append(out, dashboard.Abort)
		}
	}
	if ro.Annotations[rampv1.AnnotationPaused] == "true" {
		out = append(out, dashboard.Resume)
	} else {
		out = append(out, dashboard.Pause)
	}
	if retryRequest.ignoredBecause(ro) == "" {
		out = append(out, dashboard.Retry)
	}
	return out
}

func (d *dashboardCluster) Events(ctx context.Context, ro *rampv1.Rollout) ([]dashboard.Event, error) {
	evs, err := d.cl.eventsFor(ctx, ro)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Event, 0, len(evs))
	for _, e := range latestEvents(evs, len(evs)) {
		out = append(out, dashboard.Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count, Time: e.Time})
	}
	return out, nil
}

// Act runs the verb as `kubectl ramp <action> NAME -n NAMESPACE` does, with its default
// --wait and --timeout, and returns its exit code and what it printed.
func (d *dashboardCluster) Act(ctx context.Context, action dashboard.Action, namespace, name string) dashboard.Outcome {
	var out bytes.Buffer
	o := *d.o
	o.Out, o.ErrOut = &out, &out
	cl := *d.cl
	cl.namespace = namespace
	w := waitFlags{wait: true, timeout: DefaultTimeout}
	var err error
	switch action {
	case dashboard.Promote:
		err = o.runToken(ctx, &cl, name, promoteRequest, w)
	case dashboard.Abort:
		err = o.runToken(ctx, &cl, name, abortRequest, w)
	case dashboard.Retry:
		err = o.runToken(ctx, &cl, name, retryRequest, w)
	case dashboard.Pause:
		err = o.runPause(ctx, &cl, name, w)
	case dashboard.Resume:
		err = o.runResume(ctx, &cl, name, w)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	msg := strings.TrimSpace(out.String())
	if err != nil {
		msg = strings.TrimSpace(msg + "\n" + err.Error())
	}
	return dashboard.Outcome{Code: ExitCode(err), Message: msg}
}
