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

# gotestsum runs make test: go test's own output, and at the end every skipped test
# with the reason it gave (go test without -v hides them).
gotestsum_version=v1.13.0
if ! "$bin/gotestsum" --version 2>/dev/null | grep -q "${gotestsum_version#v}"; then
  echo "installing gotestsum $gotestsum_version"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "gotest.tools/gotestsum@$gotestsum_version"
fi

# The OCI distribution-spec conformance suite, at the commit the registry is held to.
conformance_version=v0.0.0-20260831232431-97274622c111
if [ "$(cat "$bin/.conformance-version" 2>/dev/null)" != "$conformance_version" ]; then
  echo "installing the OCI conformance suite $conformance_version"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/opencontainers/distribution-spec/conformance@$conformance_version"
  echo "$conformance_version" > "$bin/.conformance-version"
fi

# The Versity S3 Gateway, the S3 server the tests keep blobs in (objects as files
# under a directory, signatures checked): a plain go install, about 2 minutes on 2
# cores with nothing cached, once.
versitygw_version=v1.8.0
if [ "$(cat "$bin/.versitygw-version" 2>/dev/null)" != "$versitygw_version" ] || [ ! -x "$bin/versitygw" ]; then
  echo "installing the Versity S3 Gateway $versitygw_version"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
  echo "$versitygw_version" > "$bin/.versitygw-version"
fi
rm -f "$bin/weed" "$bin/.seaweedfs-version"  # the S3 server before it

# skopeo, podman and chromium (the console's browser tests), unmodified, from Debian;
# as root also containerd, runc, the CNI plugins and iptables (the real node of
# test/realnode, which only root can run). An ordinary user without password-less sudo
# is told the one command to run; the tests that need them then say they were
# skipped, and why.
missing=""
for tool in skopeo podman chromium; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ "$(id -u)" = 0 ]; then
  for pair in containerd:containerd runc:runc iptables:iptables /usr/lib/cni/bridge:containernetworking-plugins; do
    [ -e "${pair%%:*}" ] || command -v "${pair%%:*}" >/dev/null || missing="$missing ${pair#*:}"
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "not installed:$missing — install with: sudo apt-get install -y$missing (their tests are skipped until then)"
    exit 0
  fi
  echo "installing$missing"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
fi
