#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl at the
# k8s.io/kubernetes version pinned in test/go.mod, for the end-to-end harness.
#
#   test/hack/build-control-plane.sh [BIN_DIR]     (default: test/bin)
#
# The binaries carry the release's version strings, as a release build sets them
# (hack/lib/version.sh), so `kubectl version` and the apiserver's /version report the
# real release. gitCommit is set empty (instead of the "$Format:%H$" placeholder): the
# module proxy does not record the tag's commit.
# buildDate is the tag's time from the proxy, so rebuilds are reproducible.
#
# A stamp file in BIN_DIR records what was built; when it matches and every binary is
# there, the script does nothing. Honors GOFLAGS (e.g. GOFLAGS=-p=1 to keep to one core).
set -euo pipefail

test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${1:-${test_dir}/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"
cd "${test_dir}"

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

read -r version tag_time < <(go list -m -f '{{.Version}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
if [[ ! "${version}" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+ ]]; then
  echo "build-control-plane: unexpected k8s.io/kubernetes version ${version}" >&2
  exit 1
fi
major="${BASH_REMATCH[1]}"
minor="${BASH_REMATCH[2]}"

ldflags=()
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=(
    "-X ${pkg}.gitVersion=${version}"
    "-X ${pkg}.gitMajor=${major}"
    "-X ${pkg}.gitMinor=${minor}"
    "-X ${pkg}.gitCommit="
    "-X ${pkg}.gitTreeState=clean"
    "-X ${pkg}.buildDate=${tag_time}"
  )
done
ldflags_str="-s -w ${ldflags[*]}"

stamp_file="${bin_dir}/.control-plane-stamp"
stamp="k8s.io/kubernetes ${version}; $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH); ldflags ${ldflags_str}"

up_to_date() {
  [[ -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]] || return 1
  local b
  for b in "${binaries[@]}"; do
    [[ -x "${bin_dir}/${b}" ]] || return 1
  done
}

if up_to_date; then
  echo "build-control-plane: ${bin_dir} already holds ${version}; nothing to do"
  exit 0
fi

rm -f "${stamp_file}"
echo "build-control-plane: building ${version} into ${bin_dir} (GOFLAGS=${GOFLAGS:-})"
start_all=${SECONDS}
i=0
for b in "${binaries[@]}"; do
  i=$((i + 1))
  start=${SECONDS}
  echo "build-control-plane: [${i}/${#binaries[@]}] ${b} ..."
  # A cold kube-apiserver takes minutes: say so every 30s rather than go quiet.
  (while sleep 30; do echo "build-control-plane: [${i}/${#binaries[@]}] ${b}: still compiling ($((SECONDS - start))s)"; done) &
  heartbeat=$!
  # Static, like the release builds of these binaries; no VCS stamp from this repo.
  if ! CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "${ldflags_str}" \
    -o "${bin_dir}/${b}" "k8s.io/kubernetes/cmd/${b}"; then
    kill "${heartbeat}" 2>/dev/null || true
    echo "build-control-plane: building ${b} failed" >&2
    exit 1
  fi
  kill "${heartbeat}" 2>/dev/null || true
  wait "${heartbeat}" 2>/dev/null || true
  echo "build-control-plane: [${i}/${#binaries[@]}] ${b} done in $((SECONDS - start))s"
done
printf '%s\n' "${stamp}" > "${stamp_file}.tmp"
mv "${stamp_file}.tmp" "${stamp_file}"
echo "build-control-plane: all done in $((SECONDS - start_all))s"
