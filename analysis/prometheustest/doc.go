// Package prometheustest runs a real Prometheus server for tests, scraping an in-process
// exporter of Istio-style telemetry whose rates are known exactly.
//
// The server binary comes from $PROMETHEUS, PATH or /usr/bin/prometheus (Debian package
// "prometheus"; hack/prometheus.sh installs it). Facts of Prometheus 2.42: it is ready in
// well under a second, but service discovery hands it its targets only ~5 s after start, so
// the first scrape, and two samples for rate(), come ~6-7 s after start with a 1 s scrape
// interval. Poll with WaitForData rather than sleeping.
package prometheustest
