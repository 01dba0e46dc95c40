#!/usr/bin/env bash
# Shared by the ensure_*.sh scripts: `apt_install WHAT PACKAGE...` installs Debian packages when
# running as root on Debian/Ubuntu and returns 0; otherwise returns 1 so the caller says what to do.
apt_install() {
  local what="$1"
  shift
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* for $what..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    return 0
  fi
  return 1
}
