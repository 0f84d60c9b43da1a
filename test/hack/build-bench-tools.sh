#!/usr/bin/env bash
# Builds what `make bench` runs beside the gateway, from their Go modules:
# metrics-server v0.9.0 and Prometheus v3 (module version v0.316.0).
#
#   test/hack/build-bench-tools.sh [BIN_DIR]     (default: test/bin)
#
# `go install module@version` builds outside any module of ours, with each tool's own
# go.mod and its replace directives, as its release does. A stamp file in BIN_DIR
# records what was built; when it matches and both binaries are there, the script does
# nothing (a cold build takes about 10 minutes on 2 cores). Honors GOFLAGS.
set -euo pipefail

test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${1:-${test_dir}/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"

tools=(
  "metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server@v0.9.0"
  "prometheus github.com/prometheus/prometheus/cmd/prometheus@v0.316.0"
)

stamp_file="${bin_dir}/.bench-tools-stamp"
stamp="$(printf '%s; ' "${tools[@]}")$(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"

up_to_date() {
  [[ -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]] || return 1
  local t
  for t in "${tools[@]}"; do
    [[ -x "${bin_dir}/${t%% *}" ]] || return 1
  done
}

if up_to_date; then
  echo "build-bench-tools: ${bin_dir} already holds metrics-server and prometheus; nothing to do"
  exit 0
fi

rm -f "${stamp_file}"
for t in "${tools[@]}"; do
  name="${t%% *}"
  pkg="${t#* }"
  start=${SECONDS}
  echo "build-bench-tools: building ${pkg}"
  # Outside our modules so the tools resolve their own dependencies; CGO off as
  # in their release images; -trimpath so the build does not depend on paths.
  (cd / && GOBIN="${bin_dir}" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" GOTOOLCHAIN=auto go install -ldflags "-s -w" "${pkg}")
  [[ -x "${bin_dir}/${name}" ]] || { echo "build-bench-tools: ${name} not produced" >&2; exit 1; }
  echo "build-bench-tools: ${name} built in $((SECONDS - start))s"
done
echo "${stamp}" > "${stamp_file}"
