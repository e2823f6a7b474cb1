#!/usr/bin/env bash
# Installs what the tests need on a fresh machine with only Go and apt. Idempotent.
set -euo pipefail
# Nothing outside Go is needed yet: kubectl is built from the same Kubernetes
# release pullgate embeds (make build).
exit 0
