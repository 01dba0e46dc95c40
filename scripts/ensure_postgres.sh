#!/usr/bin/env bash
# The team deployment (`make services`) runs PostgreSQL from Debian's package: make sure its server
# binaries are present (installs them with apt when running as root on Debian/Ubuntu, otherwise says
# what to install). The package's own cluster is not used: `make services` runs initdb under ETO_HOME.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian's postgresql package) for the team deployment..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  exit 0
fi
echo "error: the team deployment needs PostgreSQL's server (e.g. 'sudo apt-get install postgresql')" >&2
exit 1
