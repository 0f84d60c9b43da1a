#!/usr/bin/env bash
# Regenerates the flags reference in README.md from the binary's --help.
#
#   hack/update-flags.sh          build bin/metrics-gateway (make build) and rewrite
#                                 the text between the FLAGS markers in README.md
#   hack/update-flags.sh --check  the same, but change nothing: exit 1 and show the
#                                 difference when README.md is stale (make lint)
#
# Trailing blanks that the help formatter pads flag names with are stripped, so the
# README carries no trailing whitespace.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

readme=README.md
begin='<!-- BEGIN FLAGS -->'
end='<!-- END FLAGS -->'

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  -h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "update-flags: unknown argument ${1} (want --check or nothing)" >&2
    exit 2
    ;;
esac

if [[ "$(grep -cxF -- "${begin}" "${readme}" || true)" != 1 || "$(grep -cxF -- "${end}" "${readme}" || true)" != 1 ]]; then
  echo "update-flags: ${readme} needs exactly one '${begin}' line and one '${end}' line" >&2
  exit 1
fi

# The build's own output goes to stderr: stdout stays the script's verdict.
make --no-print-directory build >&2

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

bin/metrics-gateway --help | sed 's/[[:space:]]*$//' >"${tmp}/help.txt"
if [[ ! -s "${tmp}/help.txt" ]]; then
  echo "update-flags: bin/metrics-gateway --help printed nothing" >&2
  exit 1
fi

awk -v begin="${begin}" -v end="${end}" -v help="${tmp}/help.txt" '
  $0 == begin {
    print
    print "```text"
    while ((getline line < help) > 0) print line
    close(help)
    print "```"
    skipping = 1
    next
  }
  $0 == end { skipping = 0; seen_end = 1 }
  !skipping { print }
  END { if (!seen_end) exit 1 }
' "${readme}" >"${tmp}/README.md"

if cmp -s "${readme}" "${tmp}/README.md"; then
  echo "update-flags: ${readme} flags reference is up to date"
  exit 0
fi

if ${check}; then
  echo "update-flags: ${readme} flags reference is stale; run 'make flags'. Difference:" >&2
  diff -u "${readme}" "${tmp}/README.md" >&2 || true
  exit 1
fi

# Rewrite in place, keeping the file's mode and inode.
cat "${tmp}/README.md" >"${readme}"
echo "update-flags: rewrote the flags reference in ${readme}"
