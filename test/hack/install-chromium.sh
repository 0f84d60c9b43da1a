#!/usr/bin/env bash
# Installs headless Chromium for the end-to-end test of the autoscaling page
# (test/e2e/browser_test.go drives it with chromedp), from Debian's chromium
# package, when no `chromium` is on PATH. Safe to run again.
#
#   test/hack/install-chromium.sh
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "install-chromium: $(command -v chromium) already present ($(chromium --version 2>/dev/null | head -n1))"
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "install-chromium: chromium is not on PATH and installing it needs root (apt-get install chromium)" >&2
  exit 1
fi
echo "install-chromium: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium
chromium --version
