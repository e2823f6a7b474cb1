#!/usr/bin/env bash
# Installs what only `make bench` needs: Debian's docker-registry 2.8.2, the reference
# the registry is measured beside. Its package enables a service on :5000, pullgate's
# default port; it is stopped and disabled here, so it never runs on its own — the
# benchmark starts its own copy on a free port.
set -euo pipefail
if ! command -v docker-registry >/dev/null; then
  echo "installing docker-registry (for make bench only)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q docker-registry
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    $sudo systemctl disable --now docker-registry.service || true
  else
    $sudo service docker-registry stop >/dev/null 2>&1 || true
    $sudo update-rc.d docker-registry disable >/dev/null 2>&1 || true
  fi
fi
