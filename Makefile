# ramp — see README.md. Every target works on a fresh machine with Go and the module proxy.
SHELL := /usr/bin/env bash -o pipefail
CONTROLLER_GEN = $(shell hack/tool.sh controller-gen)

.PHONY: all
all: build

##@ Development

.PHONY: generate
generate: ## Regenerate deepcopy code, the CRD and RBAC from the API markers.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true rbac:roleName=ramp-manager-role paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: verify-generated
verify-generated: generate ## Fail when the committed generated files differ from a fresh generation.
	@git diff --exit-code -- api config/crd config/rbac || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }

.PHONY: fmt
fmt:
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet:
	go vet ./...

.PHONY: build
build: ## Build the manager and the demo into bin/.
	go build -o bin/manager ./cmd/manager
	go build -o bin/ramp-demo ./cmd/ramp-demo

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

.PHONY: istio-bins
istio-bins: ## Build (once, cached in ~/.cache/ramp/istio) istiod (pilot-discovery) and istio-validate from hack/istio; copy Istio's CRDs.
	hack/istio-bins.sh >/dev/null

.PHONY: test
test: cluster-bins prometheus istio-bins ## Unit tests, integration tests against a real API server, local cluster with istiod, Prometheus and Istio's validation.
	KUBEBUILDER_ASSETS="$$(hack/cluster-bins.sh local)" PROMETHEUS="$$(hack/prometheus.sh)" RAMP_REQUIRE_PROMETHEUS=1 \
		ISTIO_BINS="$$(hack/istio-bins.sh)" RAMP_REQUIRE_ISTIO_BINS=1 \
		go test ./... -count=1 -timeout 30m

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Performance

BENCH_FLAGS ?=
.PHONY: bench
bench: ## Benchmark ramp on a real API server: reaction, rollback, 100/300/1000 rollouts (BENCH_FLAGS=--quick: ~2 min). See docs/performance.md.
	@mkdir -p bin
	KUBEBUILDER_ASSETS="$$(hack/cluster-bins.sh envtest)" go run ./cmd/ramp-bench --json bin/bench.json $(BENCH_FLAGS)
