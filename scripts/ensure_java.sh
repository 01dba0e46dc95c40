#!/usr/bin/env bash
# ScienceWorld runs a Java engine: make sure a Java 17+ runtime is present (installs it with apt
# when running as root on Debian/Ubuntu, otherwise says what to install).
set -euo pipefail
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 17 ] 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Java 17 (openjdk-17-jre-headless) for ScienceWorld..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "error: ScienceWorld needs Java 17 or newer on PATH (e.g. 'sudo apt-get install openjdk-17-jre-headless')" >&2
exit 1
