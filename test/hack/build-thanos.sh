#!/usr/bin/env bash
# Builds Thanos (the scale-out end-to-end test's engine: receive and query)
# from its Go module into BIN_DIR/thanos.
#
#   test/hack/build-thanos.sh [BIN_DIR]     (default: test/bin)
#
# Thanos' go.mod has replace directives, so it cannot be `go install`ed;
# test/thanos is a module of ours that requires it and mirrors them. A stamp
# file records what was built (the module's go.sum and the Go version); when
# it matches and the binary is there, the script does nothing. A cold build
# takes 3 to 6 minutes on 2 cores and about 1.6 GB of memory. Honors GOFLAGS.
set -euo pipefail

test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${1:-${test_dir}/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"
mod_dir="${test_dir}/thanos"

stamp_file="${bin_dir}/.thanos-stamp"
stamp="$(sha256sum "${mod_dir}/go.mod" "${mod_dir}/go.sum" "$0" | sha256sum | cut -c1-16) $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"

if [[ -x "${bin_dir}/thanos" && -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]]; then
  echo "build-thanos: ${bin_dir}/thanos is up to date; nothing to do"
  exit 0
fi

rm -f "${stamp_file}"
start=${SECONDS}
echo "build-thanos: building github.com/thanos-io/thanos/cmd/thanos"
# As Thanos' release (.promu.yml): CGO off and the tags netgo and
# slicelabels. Thanos converts its protobuf labels to Prometheus' by casting
# slices, which only the slicelabels layout matches: without the tag
# receive panics on its first write (labels.decodeString) and its gRPC
# answers to query panic in grpc's buffer pool. -trimpath so the build does
# not depend on paths.
version="$(grep -m1 'thanos-io/thanos v' "${mod_dir}/go.mod" | awk '{print $2}')"
(cd "${mod_dir}" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath -mod=readonly" \
  go build -tags netgo,slicelabels \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
    -o "${bin_dir}/thanos" github.com/thanos-io/thanos/cmd/thanos)
[[ -x "${bin_dir}/thanos" ]] || { echo "build-thanos: thanos not produced" >&2; exit 1; }
echo "${stamp}" > "${stamp_file}"
echo "build-thanos: built in $((SECONDS - start))s"
