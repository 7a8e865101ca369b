# ramp — see README.md. Every target works on a fresh machine with Go and the module proxy.
SHELL := /usr/bin/env bash -o pipefail
CONTROLLER_GEN = $(shell hack/tool.sh controller-gen)

# What a build says it is (manager --version, kubectl ramp version, the image's labels).
VERSION ?= $(shell cat VERSION)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The image a release runs; override to push to your own registry.
IMAGE ?= ghcr.io/ramp-dev/ramp:v$(VERSION)
LDFLAGS = -X github.com/ramp-dev/ramp/internal/version.Version=$(VERSION) -X github.com/ramp-dev/ramp/internal/version.Commit=$(COMMIT)

.PHONY: all
all: build

##@ Development

.PHONY: generate
generate: ## Regenerate deepcopy code, the CRD and RBAC from the API markers, and the Grafana board.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true rbac:roleName=ramp-manager-role paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./cmd/ramp-release grafana --out config/grafana/ramp.json
	rm -f charts/ramp/crds/*.yaml && cp config/crd/bases/*.yaml charts/ramp/crds/

.PHONY: verify-generated
verify-generated: generate ## Fail when the committed generated files differ from a fresh generation.
	@git diff --exit-code -- api config/crd config/rbac config/grafana charts/ramp/crds || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }

.PHONY: fmt
fmt:
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet:
	go vet ./...

.PHONY: build
build: ## Build the manager, the kubectl plugin and the demo into bin/.
	go build -ldflags "$(LDFLAGS)" -o bin/manager ./cmd/manager
	go build -ldflags "$(LDFLAGS)" -o bin/kubectl-ramp ./cmd/kubectl-ramp
	go build -o bin/ramp-demo ./cmd/ramp-demo

##@ Release

.PHONY: image
image: ## Build the manager's OCI image as bin/ramp-image.tar (no container daemon): kind load image-archive / crane push it.
	@mkdir -p bin/image
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/image/manager ./cmd/manager
	go run ./cmd/ramp-release image --binary bin/image/manager --tag $(IMAGE) --version $(VERSION) --revision $(COMMIT) \
		--created "$$(git log -1 --format=%cI 2>/dev/null || date -u +%FT%TZ)" --out bin/ramp-image.tar

.PHONY: release-manifests
release-manifests: ## Write bin/release/install.yaml (CRDs, RBAC, controller) pinned to $(IMAGE).
	@mkdir -p bin/release
	go run ./cmd/ramp-release manifests --image $(IMAGE) --out bin/release/install.yaml

.PHONY: chart
chart: ## Package the Helm chart as bin/ramp-$(VERSION).tgz (Helm's library, no helm binary): helm install ramp bin/ramp-$(VERSION).tgz.
	go run ./cmd/ramp-chart --chart charts/ramp --version $(VERSION) --out bin

.PHONY: demo
demo: cluster-bins prometheus istio-bins ## Run the local demo: local cluster with istiod, Prometheus, mesh simulator, ramp; v2 promoted, v3 rolled back.
	KUBEBUILDER_ASSETS="$$(hack/cluster-bins.sh local)" PROMETHEUS="$$(hack/prometheus.sh)" ISTIO_BINS="$$(hack/istio-bins.sh)" go run ./cmd/ramp-demo

##@ Tests

.PHONY: cluster-bins
cluster-bins: ## Build (once, cached in ~/.cache/ramp) kube-apiserver, etcd, controller-manager, scheduler, kwok.
	hack/cluster-bins.sh local >/dev/null

.PHONY: prometheus
prometheus: ## Install (once) Debian's prometheus for the analysis integration tests.
	hack/prometheus.sh >/dev/null

.PHONY: chromium
chromium: ## Install (once) Debian's chromium for the dashboard's browser test (e2e/dashboard).
	hack/chromium.sh >/dev/null

.PHONY: istio-bins
istio-bins: ## Build (once, cached in ~/.cache/ramp/istio) istiod (pilot-discovery) and istio-validate from hack/istio; copy Istio's CRDs.
	hack/istio-bins.sh >/dev/null

.PHONY: test
test: cluster-bins prometheus istio-bins chromium ## Unit tests, integration tests against a real API server, local cluster with istiod, Prometheus, Istio's validation, and the dashboard in Chromium.
	KUBEBUILDER_ASSETS="$$(hack/cluster-bins.sh local)" PROMETHEUS="$$(hack/prometheus.sh)" RAMP_REQUIRE_PROMETHEUS=1 \
		ISTIO_BINS="$$(hack/istio-bins.sh)" RAMP_REQUIRE_ISTIO_BINS=1 \
		CHROMIUM="$$(hack/chromium.sh)" RAMP_REQUIRE_CHROMIUM=1 \
		go test ./... -count=1 -timeout 30m

.PHONY: dashboard-screenshot
dashboard-screenshot: cluster-bins prometheus istio-bins chromium ## Retake the README's dashboard screenshot (docs/images/dashboard.png) with the browser test.
	KUBEBUILDER_ASSETS="$$(hack/cluster-bins.sh local)" PROMETHEUS="$$(hack/prometheus.sh)" ISTIO_BINS="$$(hack/istio-bins.sh)" \
		CHROMIUM="$$(hack/chromium.sh)" RAMP_DASHBOARD_SCREENSHOT=docs/images/dashboard.png \
		go test ./e2e/dashboard/ -run TestDashboard -count=1 -v

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Performance

BENCH_FLAGS ?=
.PHONY: bench
bench: ## Benchmark ramp on a real API server: reaction, rollback, 100/300/1000 rollouts (BENCH_FLAGS=--quick: ~2 min). See docs/performance.md.
	@mkdir -p bin
	KUBEBUILDER_ASSETS="$$(hack/cluster-bins.sh envtest)" go run ./cmd/ramp-bench --json bin/bench.json $(BENCH_FLAGS)
