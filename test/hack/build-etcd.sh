#!/usr/bin/env bash
# Builds etcd (the control plane's store in test/cluster) from its Go module
# into BIN_DIR/etcd: the version Kubernetes 1.37 runs, which Debian does not
# package (bookworm has 3.4.23; see test/etcd/go.mod for why that matters).
#
#   test/hack/build-etcd.sh [BIN_DIR]     (default: test/bin)
#
# test/etcd is a module of ours that requires go.etcd.io/etcd/server/v3 as a
# tool; lib/module-tool.sh builds it, or does nothing when its stamp says it
# is up to date. A cold build takes about a minute on 2 cores. Honors GOFLAGS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/module-tool.sh"

# As etcd's release build: CGO off, symbols stripped.
build_module_tool etcd go.etcd.io/etcd/server/v3 "${1:-}" -ldflags "-s -w"
