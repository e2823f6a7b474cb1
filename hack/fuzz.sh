#!/usr/bin/env bash
# Runs every fuzz target in the module for a short budget ($1, default 30000x: a
# count of executions each).
set -euo pipefail
fuzztime=${1:-30000x}
found=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/'); do
    found=$((found+1))
    echo "fuzz $pkg $target ($fuzztime)"
    # Minimising a new input may take up to 60 s by default; 1000 tries is plenty here.
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1000x "$pkg"
  done
done
echo "fuzz: $found targets, 0 crashes"
