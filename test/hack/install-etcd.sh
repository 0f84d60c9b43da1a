#!/usr/bin/env bash
# Installs etcd for the end-to-end harness (test/cluster), from Debian's etcd-server
# package (3.4.x on bookworm), when no `etcd` is on PATH. Safe to run again: it does
# nothing when etcd is already there.
#
#   test/hack/install-etcd.sh
#
# The package ships a systemd unit that would start a default etcd on 2379/2380. The
# harness never talks to it (it picks free ports and runs its own etcd with its own data
# dir), but a stray service would still use memory and disk, so the install runs under a
# temporary policy-rc.d that tells invoke-rc.d/deb-systemd-invoke not to start services.
# If a system etcd is already running, that is fine too: the harness does not collide with it.
set -euo pipefail

if command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: $(command -v etcd) already present ($(etcd --version 2>/dev/null | head -n1)); nothing to do"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "install-etcd: etcd is not on PATH and installing it needs root (apt-get install etcd-server)" >&2
  exit 1
fi

# Only install our own policy-rc.d when none exists, and only for the install: an existing
# one belongs to the machine and stays as it was.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e "${policy}" ]]; then
  printf '#!/bin/sh\n# temporary, from metrics-gateway test/hack/install-etcd.sh\nexit 101\n' > "${policy}"
  chmod 0755 "${policy}"
  own_policy=true
fi
cleanup() {
  if [[ "${own_policy}" == true ]]; then rm -f "${policy}"; fi
}
trap cleanup EXIT

echo "install-etcd: etcd not on PATH; installing Debian's etcd-server (service start suppressed)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends etcd-server >/dev/null

if ! command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: etcd-server installed but etcd is not on PATH" >&2
  exit 1
fi
echo "install-etcd: installed $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
