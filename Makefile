# metrics-gateway. `make help` lists the targets.
#
# GOFLAGS is left as the caller sets it: nothing here overrides it.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

MODULE  := github.com/metrics-gateway/metrics-gateway
BINARY  := bin/metrics-gateway
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)

# Benchmarks: every package under pkg/, six runs each so benchstat can judge noise.
BENCH_PKGS  ?= ./pkg/...
BENCH_FLAGS := -run '^$$' -bench . -benchmem -count 6
BENCHSTAT   := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

.PHONY: help
help: ## Show the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/metrics-gateway (static, version from git describe).
	CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X $(MODULE)/pkg/server.Version=$(VERSION)" \
		-o $(BINARY) ./cmd/metrics-gateway

.PHONY: test
test: ## Every test: unit and whole-path (-race), the test/ module, and end-to-end on a real control plane.
	@# e2e-build first: the manifests' tests compare their rendering with
	@# test/bin/kubectl's kustomize.
	$(MAKE) e2e-build
	go test -race -count=1 ./...
	@# The test module: kubelet fixtures still what a v1.37 kubelet serves
	@# (-count=1: the cache does not see fixture edits outside the module), the
	@# simulated kubelets, and the control-plane harness.
	cd test && go test -count=1 ./cmd/... ./sim/... ./cluster/... ./env/... ./image/... ./bench/...
	@# The Helm chart (its own module: Helm's dependencies stay out of both
	@# go.mods): rendered equal to manifests/base and the ha overlay, linted.
	cd test/helm && go test -count=1 ./...
	$(MAKE) e2e

TEST_BIN := $(CURDIR)/test/bin

.PHONY: e2e-build
e2e-build: build ## chromium (apt), etcd v3.7.0, control plane v1.37.2 and Thanos v0.40.1 (cached in test/bin), simkubelet, helmchart, gateway.
	test/hack/build-etcd.sh $(TEST_BIN)
	test/hack/install-chromium.sh
	test/hack/build-control-plane.sh $(TEST_BIN)
	test/hack/build-thanos.sh $(TEST_BIN)
	cd test && go build -o $(TEST_BIN)/simkubelet ./cmd/simkubelet
	cd test/helm && go build -o $(TEST_BIN)/helmchart ./cmd/helmchart
	go build -o $(TEST_BIN)/dashcheck ./hack/dashcheck

.PHONY: e2e
e2e: e2e-build ## End-to-end tests: kubectl top, the raw API, an HPA, a bad kubelet, SIGKILL.
	cd test && go test -count=1 -v -timeout 30m ./e2e/

# The soak (issue 14): the gateway in a memory cgroup with manifests/base's
# limit beside 100 pods exposing 10,000 fresh series every scrape and a
# normal workload with two HPAs, for SOAK_DURATION, then SIGKILL and restart.
# Needs root (the cgroup). .ci/run runs it for 5 minutes.
SOAK_DURATION ?= 30m

.PHONY: soak
soak: e2e-build ## The gateway under churn at the shipped memory limit for SOAK_DURATION (30m), then SIGKILL; needs root.
	cd test && go test -count=1 -v -timeout 3h ./soak/ -soak.duration=$(SOAK_DURATION)

# Fuzz targets that take outside input. The corpora that found bugs are
# committed under each package's testdata/fuzz. Each target runs for a count of
# executions sized to about a minute on 2 cores from an empty fuzz cache, not
# for a duration: with -fuzztime <duration>, Go 1.26's fuzz coordinator can
# report its own deadline as "context deadline exceeded" and fail a target that
# found nothing (golang/go#75804, fixed in Go 1.27; CI hit it on
# FuzzSelectorQuery). A count has no deadline to race. FUZZTIME=<N>x or
# FUZZTIME=<duration> overrides every target's budget.
FUZZTIME ?=
FUZZ_TARGETS := FuzzMetricsAPIs:./pkg/server:12000x FuzzSelectorQuery:./pkg/rules:250000x \
	FuzzLoad:./pkg/rules:180000x FuzzConfig:./pkg/scrape:30000x

.PHONY: fuzz
fuzz: ## Each fuzz target for about a minute (FUZZTIME overrides): HTTP on the metrics APIs, selectors into PromQL, adapter and scrape configs.
	@for t in $(FUZZ_TARGETS); do \
		IFS=: read -r name pkg budget <<< "$$t"; override='$(FUZZTIME)'; budget="$${override:-$$budget}"; \
		echo "go test -run '^$$' -fuzz '^$$name$$' -fuzztime $$budget $$pkg"; \
		go test -run '^$$' -fuzz "^$$name$$" -fuzztime "$$budget" -fuzzminimizetime 20x -timeout 20m "$$pkg" 2>&1 | grep -v '^[IWE][0-9]\{4\} ' || exit 1; \
	done

.PHONY: lint
lint: ## gofmt (prints nothing), go vet, and the generated flags reference still the flag set's.
	@echo "gofmt -l ."
	@out="$$(gofmt -l .)"; if [[ -n "$$out" ]]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; \
	fi
	go vet ./...
	cd test && go vet ./...
	cd test/helm && go vet ./...
	@# docs/configuration.md's flag tables are generated (make flags).
	go test -count=1 -run '^TestConfigurationDoc$$' ./manifests

# Side-by-side benchmarks (issue 5), not part of make test; about 30 minutes.
BENCH_ARGS ?=

.PHONY: bench
bench: e2e-build ## metrics-gateway vs metrics-server v0.9.0 and Prometheus 3 on simulated clusters; writes docs/benchmarks.md.
	test/hack/build-bench-tools.sh $(TEST_BIN)
	go build -o $(TEST_BIN)/benchtool ./hack/benchtool
	cd test && nice -n 10 go run ./cmd/sidebyside --bin-dir $(TEST_BIN) --gateway $(CURDIR)/$(BINARY) \
		--benchtool $(TEST_BIN)/benchtool --out $(CURDIR)/docs/benchmarks.md $(BENCH_ARGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of the query paths, six runs each, into bench.out.
	go test $(BENCH_FLAGS) $(BENCH_PKGS) | tee bench.out

# The commit bench-compare measures against, e.g. BENCH_BASE=v0.1.0.
BENCH_BASE ?= HEAD~1

.PHONY: bench-compare
bench-compare: ## Benchmarks on BENCH_BASE (HEAD~1) and the working tree, compared with benchstat.
	@old_tree="$$(mktemp -d /tmp/metrics-gateway-bench.XXXXXX)"; \
	trap 'git worktree remove --force "$$old_tree" >/dev/null 2>&1 || true; rm -rf "$$old_tree"' EXIT; \
	echo "$(BENCH_BASE) ($$(git rev-parse --short $(BENCH_BASE))) in $$old_tree"; \
	git worktree add --quiet --detach "$$old_tree" $(BENCH_BASE); \
	(cd "$$old_tree" && go test $(BENCH_FLAGS) $(BENCH_PKGS)) | tee bench-old.out; \
	echo "working tree"; \
	go test $(BENCH_FLAGS) $(BENCH_PKGS) | tee bench-new.out; \
	go run $(BENCHSTAT) old=bench-old.out new=bench-new.out

.PHONY: demo
demo: e2e-build ## A local control plane, 3 simulated nodes, the gateway; kubectl top and an HPA scaling.
	cd test && go run ./cmd/demo --dir $(CURDIR)/_output/demo

.PHONY: demo-down
demo-down: ## Stop what make demo left running.
	cd test && go run ./cmd/demo --dir $(CURDIR)/_output/demo down

.PHONY: flags
flags: ## Regenerate the flag tables of docs/configuration.md from the flag set.
	go test ./manifests -run TestConfigurationDoc -update

.PHONY: clean
clean: ## Remove build and benchmark outputs (not test/bin: the control plane is slow to build).
	rm -rf bin/ bench.out bench-old.out bench-new.out
	git worktree prune
