// Package dashboard tests kubectl ramp dashboard (internal/dashboard, wired by
// internal/plugin) in a real browser: headless Chromium, driven with chromedp, against a local
// cluster (internal/harness: a real API server, controller manager, scheduler, KWOK nodes,
// istiod, Prometheus and ramp's manager in-process) during real Deployment rollouts. The page
// must show the canary weight move as ramp moves it (pushed by the server's watch, no reload);
// its promote and abort buttons (abort after a confirmation) must write what the plugin's verbs
// write and get the controller's acknowledgement.
//
// Run:
//
//	KUBEBUILDER_ASSETS=$(hack/cluster-bins.sh local) PROMETHEUS=$(hack/prometheus.sh) \
//	CHROMIUM=$(hack/chromium.sh) RAMP_REQUIRE_PROMETHEUS=1 RAMP_REQUIRE_CHROMIUM=1 \
//	  go test ./e2e/dashboard/ -count=1 -v
//
// Without Chromium or Prometheus the test skips, unless RAMP_REQUIRE_CHROMIUM or
// RAMP_REQUIRE_PROMETHEUS is set (make test sets both): then it fails, saying how to install
// them. On failure it saves screenshots of the page and logs where.
//
// RAMP_DASHBOARD_SCREENSHOT=docs/images/dashboard.png (a path relative to the repository
// root, or absolute) also saves a screenshot of a Rollout's page mid-rollout: the README's
// picture (make dashboard-screenshot). That run puts the apps in readable namespaces (shop/web,
// payments/api) instead of generated ones (t-…): it is the only test on the cluster it starts.
package dashboard
