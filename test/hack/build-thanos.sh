#!/usr/bin/env bash
# Builds Thanos (the scale-out end-to-end test's engine: receive and query)
# from its Go module into BIN_DIR/thanos.
#
#   test/hack/build-thanos.sh [BIN_DIR]     (default: test/bin)
#
# Thanos' go.mod has replace directives, so it cannot be `go install`ed;
# test/thanos is a module of ours that requires it and mirrors them.
# lib/module-tool.sh builds it, or does nothing when its stamp says it is up
# to date. A cold build takes 3 to 6 minutes on 2 cores and about 1.6 GB of
# memory. Honors GOFLAGS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/module-tool.sh"

# As Thanos' release (.promu.yml): CGO off and the tags netgo and
# slicelabels. Thanos converts its protobuf labels to Prometheus' by casting
# slices, which only the slicelabels layout matches: without the tag
# receive panics on its first write (labels.decodeString) and its gRPC
# answers to query panic in grpc's buffer pool.
test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(grep -m1 'thanos-io/thanos v' "${test_dir}/thanos/go.mod" | awk '{print $2}')"
build_module_tool thanos github.com/thanos-io/thanos/cmd/thanos "${1:-}" -tags netgo,slicelabels \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}"
