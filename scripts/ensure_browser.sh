#!/usr/bin/env bash
# Browser tests drive Debian's Chromium with Playwright (no browser download): make sure it is
# present (installed with apt as root on Debian/Ubuntu, otherwise says how).
set -euo pipefail
source "$(dirname "$0")/apt_install.sh"
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
apt_install "the browser tests" chromium && exit 0
echo "warning: no chromium on PATH; browser tests will be skipped (sudo apt-get install chromium)" >&2
