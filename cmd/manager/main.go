// Command manager runs ramp's Rollout controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ramp-dev/ramp/internal/endpoints"
	"github.com/ramp-dev/ramp/internal/loadgen"
	"github.com/ramp-dev/ramp/internal/manager"
	"github.com/ramp-dev/ramp/internal/notify"
	"github.com/ramp-dev/ramp/internal/plan"
	"github.com/ramp-dev/ramp/internal/rounds"
	"github.com/ramp-dev/ramp/internal/version"
)

func main() {
	// `manager load`: the load generator gate (internal/loadgen), shipped in the same image.
	if len(os.Args) > 1 && os.Args[1] == "load" {
		os.Exit(runLoad(os.Args[2:]))
	}
	var (
		metricsAddr    = flag.String("metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint (\"0\" disables it).")
		probeAddr      = flag.String("health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
		leaderElect    = flag.Bool("leader-elect", true, "Elect a leader so only one replica acts (keep on when running more than one).")
		leaderNS       = flag.String("leader-election-namespace", "", "Namespace of the leader election Lease. Default: in a cluster, the manager's own namespace; run locally with a kubeconfig, the namespace of its current context (\"default\" when the context sets none).")
		concurrency    = flag.Int("concurrent", 4, "Rollouts reconciled in parallel.")
		analysisWork   = flag.Int("analysis-workers", rounds.DefaultWorkers, "Analysis rounds run at once, off the reconcile workers (more wait for a free worker).")
		analysisTime   = flag.Duration("analysis-timeout", rounds.DefaultTimeout, "Longest an analysis round runs; one that takes longer is inconclusive.")
		subsetSettle   = flag.Duration("subset-settle", plan.DefaultConfig().SubsetSettle, "Wait after pointing the stable subset at new pods before routing traffic to them, so proxies have the subset first.")
		watchNamespace = flag.String("watch-namespace", "", "Only manage Rollouts in this namespace (default: all).")
		watchSelector  = flag.String("watch-label-selector", "", "Shard: only manage Rollouts whose labels match this selector (Flux's convention: 'sharding.fluxcd.io/key=shard1' on a shard's manager, '!sharding.fluxcd.io/key' on the one taking the unlabelled rest; default: all). Each shard elects its own leader; Rollouts of one Deployment must be in the same shard. See docs/performance.md#sharding.")
		allowed        = flag.String("analysis-allowed-endpoints", "", "Comma-separated base URLs (scheme://host[:port][/path]) of the endpoints Rollouts may name in spec.analysis.prometheus.address and spec.gates[].url; a Rollout naming another is Stalled and ramp contacts it not. Empty allows none (docs/security.md).")
		platformNS     = flag.String("platform-namespace", "", "The manager's own namespace, the only one whose Secrets a ClusterMetricTemplate may name (spec.prometheus.secretRef). Default: in a cluster, the pod's namespace; run locally, the namespace of the kubeconfig's current context (docs/security.md).")
		showVersion    = flag.Bool("version", false, "Print the version and commit, and exit.")
		slackFile      = flag.String("slack-webhook-file", "", "File holding a default Slack incoming-webhook URL for Rollouts without spec.notifications.slack (mount it from a Secret; the URL is a credential and never logged).")
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: %s [flags]

ramp's controller: progressive delivery of Git-owned Deployments through Istio.

In a cluster it uses its service account. Outside one it connects with --kubeconfig, else
$KUBECONFIG, else ~/.kube/config, and keeps its leader election Lease in the namespace of the
kubeconfig's current context, so it runs locally with its defaults (the cluster needs ramp's
CRD, kubectl apply -k config/crd, and Istio's):

	go run ./cmd/manager
	go run ./cmd/manager --kubeconfig=PATH --metrics-bind-address=:9080 --health-probe-bind-address=:9081

Sharding: past what one manager handles, run one per shard with --watch-label-selector, as
Flux's controllers are sharded: label Rollouts sharding.fluxcd.io/key=shard1 (shard2, ...),
start one manager with --watch-label-selector=sharding.fluxcd.io/key=shard1 per shard and one
with --watch-label-selector='!sharding.fluxcd.io/key' for the rest. Each caches and reconciles
only its own Rollouts and elects its own leader (docs/performance.md#sharding).

Memory: unless GOMEMLIMIT is set, the Go memory limit is 90%% of the container's memory limit
(cgroup v2 memory.max).

Flags:
`, os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get())
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	log.Info("starting", "version", version.Get().Version, "commit", version.Get().Commit)
	memoryMax, _ := os.ReadFile(manager.CgroupMemoryMax)
	if limit, ok := manager.AutoMemoryLimit(os.Getenv("GOMEMLIMIT"), string(memoryMax)); ok {
		debug.SetMemoryLimit(limit)
		log.Info("Go memory limit set to 90% of the container's (GOMEMLIMIT overrides it)", "bytes", limit)
	}

	if err := run(log, options{
		metricsAddr: *metricsAddr, probeAddr: *probeAddr, leaderElect: *leaderElect, leaderNS: *leaderNS,
		concurrency: *concurrency, analysisWorkers: *analysisWork, analysisTimeout: *analysisTime, cfg: plan.Config{SubsetSettle: *subsetSettle, RoutingGrace: plan.DefaultConfig().RoutingGrace}, namespace: *watchNamespace, selector: *watchSelector,
		slackFile: *slackFile, allowedEndpoints: *allowed, platformNS: *platformNS, kubeconfig: flag.Lookup(config.KubeconfigFlagName).Value.String(),
	}); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

type options struct {
	metricsAddr, probeAddr, leaderNS, namespace, slackFile string
	selector                                               string // --watch-label-selector
	platformNS                                             string
	allowedEndpoints                                       string
	kubeconfig                                             string // --kubeconfig (controller-runtime's flag)
	leaderElect                                            bool
	concurrency, analysisWorkers                           int
	analysisTimeout                                        time.Duration
	cfg                                                    plan.Config
}

func run(log interface {
	Info(string, ...any)
}, o options) error {
	scheme, err := manager.Scheme()
	if err != nil {
		return err
	}
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no API server to connect to (in a cluster: the service account; outside: --kubeconfig, $KUBECONFIG or ~/.kube/config): %w", err)
	}
	if o.leaderElect && o.leaderNS == "" {
		ns, from, err := leaderElectionNamespace(o.kubeconfig)
		if err != nil {
			return fmt.Errorf("finding a namespace for the leader election Lease (set --leader-election-namespace): %w", err)
		}
		o.leaderNS = ns
		log.Info("leader election Lease namespace", "namespace", ns, "from", from)
	}
	if o.platformNS == "" {
		ns, from, err := leaderElectionNamespace(o.kubeconfig)
		if err != nil {
			return fmt.Errorf("finding the manager's namespace (set --platform-namespace): %w", err)
		}
		o.platformNS = ns
		log.Info("platform namespace (ClusterMetricTemplate Secrets)", "namespace", ns, "from", from)
	}
	shard, err := manager.ParseShard(o.selector)
	if err != nil {
		return fmt.Errorf("--watch-label-selector: %w", err)
	}
	if shard != nil {
		// A Lease of its own, named from the selector: every shard elects (docs/performance.md#sharding).
		log.Info("shard: managing only the Rollouts whose labels match", "selector", shard.String(), "lease", manager.LeaderElectionID(o.selector))
	}
	mgrOpts := ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        manager.LeaderElectionID(o.selector),
		LeaderElectionNamespace: o.leaderNS,
		// Release the lease on a clean stop so the next replica takes over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         manager.CacheOptions(o.namespace, shard),
	}
	mgr, err := ctrl.NewManager(restCfg, mgrOpts)
	if err != nil {
		return err
	}
	defaultSlack := ""
	if o.slackFile != "" {
		b, err := os.ReadFile(o.slackFile)
		if err != nil {
			return fmt.Errorf("--slack-webhook-file: %w", err)
		}
		defaultSlack = strings.TrimSpace(string(b))
	}
	sender := notify.NewSender(1000, ctrl.Log.WithName("slack"))
	if err := mgr.Add(sender); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	allowed, err := endpoints.Parse(o.allowedEndpoints)
	if err != nil {
		return fmt.Errorf("--analysis-allowed-endpoints: %w", err)
	}
	log.Info("analysis endpoints Rollouts may name", "allowed", allowed.String())
	if _, err := manager.Setup(ctx, mgr, manager.Options{
		AnalysisEndpoints: &allowed, PlatformNamespace: o.platformNS, Shard: shard,
		Concurrency: o.concurrency, AnalysisWorkers: o.analysisWorkers, AnalysisTimeout: o.analysisTimeout, Plan: o.cfg, Notifier: sender, DefaultSlackURL: defaultSlack,
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting manager", "leaderElection", o.leaderElect)
	return mgr.Start(ctx)
}

// leaderElectionNamespace picks the manager's own namespace (for the Lease when
// --leader-election-namespace is not given, and for --platform-namespace) when it is not
// given, from the same configuration as the API client: the kubeconfig (--kubeconfig, else
// $KUBECONFIG, else ~/.kube/config) and its current context's namespace, "default" when the
// context sets none; in a pod without a kubeconfig, the pod's namespace. from says which.
func leaderElectionNamespace(kubeconfig string) (ns, from string, err error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	ns, _, err = cc.Namespace()
	if err != nil {
		return "", "", err
	}
	raw, err := cc.RawConfig()
	if err != nil {
		return "", "", err
	}
	if raw.CurrentContext == "" {
		return ns, "in-cluster service account", nil
	}
	return ns, fmt.Sprintf("kubeconfig context %q", raw.CurrentContext), nil
}

func runLoad(args []string) int {
	f, err := loadgen.ParseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f.Logf = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := loadgen.Serve(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
