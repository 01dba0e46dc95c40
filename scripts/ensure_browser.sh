#!/usr/bin/env bash
# Browser tests drive Debian's Chromium with Playwright (no browser download): make sure it is
# present (installs it with apt when running as root on Debian/Ubuntu, otherwise says how).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium for the browser tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "warning: no chromium on PATH; browser tests will be skipped (sudo apt-get install chromium)" >&2
