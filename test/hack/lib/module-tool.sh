# Sourced by the build scripts of tools built from a module of ours under
# test/NAME (build-etcd.sh, build-thanos.sh): modules that require the tool
# because its own go.mod cannot be `go install`ed or is not packaged.
#
#   build_module_tool NAME PACKAGE BIN_DIR [go build flags...]
#
# builds PACKAGE in test/NAME into BIN_DIR/NAME with CGO off, -trimpath (so
# the build does not depend on paths) and -mod=readonly, honoring GOFLAGS.
# A stamp file records what was built (the module's go.mod and go.sum, the
# calling script, this file and the Go version); when it matches and the
# binary is there, it does nothing.

build_module_tool() {
  local name="$1" pkg="$2" bin_dir="$3"
  shift 3
  local test_dir lib mod_dir stamp_file stamp start
  lib="${BASH_SOURCE[0]}"
  test_dir="$(cd "$(dirname "${lib}")/../.." && pwd)"
  mod_dir="${test_dir}/${name}"
  bin_dir="${bin_dir:-${test_dir}/bin}"
  mkdir -p "${bin_dir}"
  bin_dir="$(cd "${bin_dir}" && pwd)"

  stamp_file="${bin_dir}/.${name}-stamp"
  stamp="$(sha256sum "${mod_dir}/go.mod" "${mod_dir}/go.sum" "$0" "${lib}" | sha256sum | cut -c1-16) $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"
  if [[ -x "${bin_dir}/${name}" && -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]]; then
    echo "build-${name}: ${bin_dir}/${name} is up to date; nothing to do"
    return 0
  fi

  rm -f "${stamp_file}"
  start=${SECONDS}
  echo "build-${name}: building ${pkg}"
  (cd "${mod_dir}" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath -mod=readonly" \
    go build "$@" -o "${bin_dir}/${name}" "${pkg}")
  [[ -x "${bin_dir}/${name}" ]] || { echo "build-${name}: ${name} not produced" >&2; return 1; }
  echo "${stamp}" > "${stamp_file}"
  echo "build-${name}: built in $((SECONDS - start))s"
}
