#!/usr/bin/env bash
# The team deployment (`make services`) runs PostgreSQL from Debian's package: make sure its server
# binaries are present (installed with apt as root, otherwise says what to install). The package's
# own cluster is not used: `make services` runs initdb under ETO_HOME.
set -euo pipefail
source "$(dirname "$0")/apt_install.sh"
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install "the team deployment" postgresql; then
  exit 0
fi
echo "error: the team deployment needs PostgreSQL's server (e.g. 'sudo apt-get install postgresql')" >&2
exit 1
