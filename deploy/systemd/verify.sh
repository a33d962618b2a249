#!/usr/bin/env bash
# Checks deploy/systemd/tidemarkd@.service with `systemd-analyze verify`, as an
# instance, against the built binary, inside a scratch root so nothing is installed.
# Usage: deploy/systemd/verify.sh PATH/TO/tidemarkd
set -euo pipefail
binary=${1:?usage: verify.sh PATH/TO/tidemarkd}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "verify-systemd: SKIPPED: systemd-analyze is not installed on this machine"
  exit 0
fi
[ -x "$binary" ] || { echo "verify-systemd: $binary is not built" >&2; exit 1; }
work=$(mktemp -d /tmp/tidemark-unit.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The unit as shipped, with ExecStart pointed at the built binary (verify checks it exists).
sed "s|/usr/local/bin/tidemarkd|$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")|" \
  "$here/tidemarkd@.service" > "$work/tidemarkd@node1.service"
out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$work/tidemarkd@node1.service" 2>&1) || {
  echo "$out"; echo "verify-systemd: FAILED"; exit 1; }
# verify prints problems as warnings too; any line naming our unit is a failure.
if echo "$out" | grep -q "tidemarkd@"; then echo "$out"; echo "verify-systemd: FAILED"; exit 1; fi
echo "verify-systemd: deploy/systemd/tidemarkd@.service OK"
