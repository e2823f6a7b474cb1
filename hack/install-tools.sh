#!/usr/bin/env bash
# Installs what the tests need on a fresh machine with only Go and apt. Idempotent.
# kubectl is built from the Kubernetes release pullgate embeds (make build); the
# registry clients are pinned releases.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/bin"
mkdir -p "$bin"

crane_version=v0.22.1
if ! "$bin/crane" version 2>/dev/null | grep -qx "$crane_version"; then
  echo "installing crane $crane_version"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/google/go-containerregistry/cmd/crane@$crane_version"
fi

# The OCI distribution-spec conformance suite, at the commit the registry is held to.
conformance_version=v0.0.0-20260831232431-97274622c111
if [ "$(cat "$bin/.conformance-version" 2>/dev/null)" != "$conformance_version" ]; then
  echo "installing the OCI conformance suite $conformance_version"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/opencontainers/distribution-spec/conformance@$conformance_version"
  echo "$conformance_version" > "$bin/.conformance-version"
fi

# skopeo and podman, unmodified, from Debian (podman runs without a daemon).
if ! command -v skopeo >/dev/null || ! command -v podman >/dev/null; then
  echo "installing skopeo and podman"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q skopeo podman
fi
