#!/usr/bin/env bash
# Builds etcd (the control plane's store in test/cluster) from its Go module
# into BIN_DIR/etcd: the version Kubernetes 1.37 runs, which Debian does not
# package (bookworm has 3.4.23; see test/etcd/go.mod for why that matters).
#
#   test/hack/build-etcd.sh [BIN_DIR]     (default: test/bin)
#
# test/etcd is a module of ours that requires go.etcd.io/etcd/server/v3 as a
# tool. A stamp file records what was built (the module's go.sum and the Go
# version); when it matches and the binary is there, the script does
# nothing. A cold build takes about a minute on 2 cores. Honors GOFLAGS.
set -euo pipefail

test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${1:-${test_dir}/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"
mod_dir="${test_dir}/etcd"

stamp_file="${bin_dir}/.etcd-stamp"
stamp="$(sha256sum "${mod_dir}/go.mod" "${mod_dir}/go.sum" "$0" | sha256sum | cut -c1-16) $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"

if [[ -x "${bin_dir}/etcd" && -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]]; then
  echo "build-etcd: ${bin_dir}/etcd is up to date; nothing to do"
  exit 0
fi

rm -f "${stamp_file}"
start=${SECONDS}
echo "build-etcd: building go.etcd.io/etcd/server/v3"
# As etcd's release build: CGO off, -trimpath so the build does not depend
# on paths.
(cd "${mod_dir}" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath -mod=readonly" \
  go build -ldflags "-s -w" -o "${bin_dir}/etcd" go.etcd.io/etcd/server/v3)
[[ -x "${bin_dir}/etcd" ]] || { echo "build-etcd: etcd not produced" >&2; exit 1; }
echo "${stamp}" > "${stamp_file}"
echo "build-etcd: built $("${bin_dir}/etcd" --version | head -n1) in $((SECONDS - start))s"
